"""Building the chat side from the settings: the conversations, the platform adapters mounted
on the chat host, and the outbox's delivery platforms (docs/ARCHITECTURE.md, "Chat platforms").

A platform is registered by one line in :func:`build_chat` (and, if it delivers outbox
messages, one in :func:`build_delivery_platforms`); ``bot/`` never sees :class:`Settings`.
"""

from __future__ import annotations

from bot.answers import AnswerFlow
from bot.conversation import ChatPolicy, Conversation
from bot.host import Mount
from bot.platform import ChatPlatform
from bot.slack.app import build_slack_app, slack_client, slack_mount
from bot.slack.platform import SlackPlatform, build_delivery_client
from bot.sync_request import SyncSource, SyncTargets
from bot.teams.handler import build_teams_handler, teams_mount
from bot.teams.platform import build_teams_platform
from kb.settings import Settings
from store.db import Database


def sync_targets(settings: Settings) -> SyncTargets:
    """What ``/kb-sync`` may name: every registered source, read from the source registry."""
    targets = []
    for spec in settings.sources:
        values = settings.source_values.get(spec.name, {})
        query = spec.selecting_query(values)
        targets.append(
            SyncSource(
                name=spec.name,
                label=spec.display_name,
                key_noun=spec.scope_noun.lower(),
                configured=spec.configured(values),
                keys=spec.selected_keys(values),
                setting=spec.enabled_by,
                by_query=f"a {query.split('_')[-1]} query ({query})" if query else None,
            )
        )
    return SyncTargets(tuple(targets))


def chat_policy(settings: Settings, admins: frozenset[str]) -> ChatPolicy:
    return ChatPolicy(
        scope_for=settings.scope_for,
        admins=admins,
        sync=sync_targets(settings),
        dm_scope=settings.direct_scope,
        prompts=settings.suggested_prompts,
    )


def build_slack(settings: Settings, flow: AnswerFlow, db: Database) -> Mount:
    token, signing_secret = settings.require_slack()
    conversation = Conversation("slack", flow, db, chat_policy(settings, settings.admins))
    client = slack_client(token, settings.slack_api_url)
    app = build_slack_app(
        conversation,
        db,
        signing_secret=signing_secret,
        client=client,
    )
    return slack_mount(app, signing_secret=signing_secret, app_token=settings.slack_app_token)


def build_teams(settings: Settings, flow: AnswerFlow, db: Database) -> Mount:
    # KB_ADMINS holds Slack user ids; Teams admins are Entra object ids (KB_TEAMS_ADMINS).
    conversation = Conversation("teams", flow, db, chat_policy(settings, settings.teams_admins))
    return teams_mount(build_teams_handler(settings.require_teams(), conversation, db))


def build_chat(settings: Settings, flow: AnswerFlow, db: Database) -> list[Mount]:
    """Every configured chat platform, ready for :func:`bot.host.serve`."""
    mounts: list[Mount] = []
    if settings.slack_bot_token is not None:
        mounts.append(build_slack(settings, flow, db))
    if settings.teams is not None:
        mounts.append(build_teams(settings, flow, db))
    return mounts


def build_delivery_platforms(settings: Settings, db: Database) -> dict[str, ChatPlatform]:
    """The outbox's platforms by name; close them with :func:`close_platforms`."""
    platforms: dict[str, ChatPlatform] = {}
    if settings.slack_bot_token is not None:
        client = build_delivery_client(settings.slack_bot_token, settings.slack_api_url)
        platforms["slack"] = SlackPlatform(client)
    if settings.teams is not None:
        platforms["teams"] = build_teams_platform(settings.teams, db)
    return platforms


def close_platforms(platforms: dict[str, ChatPlatform]) -> None:
    for platform in platforms.values():
        close = getattr(platform, "close", None)
        if callable(close):
            close()
