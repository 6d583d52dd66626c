"""Teams has no slash commands: an admin (KB_TEAMS_ADMINS) types "@kb sync confluence"."""

from __future__ import annotations

from fakes.flow import FakeFlow
from fakes.teams import USER_AAD, channel_message, reset_teams_tables, running_teams_bot

from store.db import Database


def _requests(db: Database) -> list[dict[str, object]]:
    with db.connection() as conn:
        return conn.execute("SELECT source, scopes, requested_by FROM sync_requests").fetchall()


def test_an_admins_sync_message_queues_the_same_request_as_kb_sync(module_db: Database) -> None:
    db = reset_teams_tables(module_db)
    flow = FakeFlow()
    with running_teams_bot(db, flow, KB_TEAMS_ADMINS=USER_AAD) as bot:
        bot.post(channel_message(bot.connector.url, "sync confluence ENG"))
        [reply] = bot.connector.wait_messages()
        assert "Queued a sync of Confluence" in str(reply.body.get("text"))
    [request] = _requests(db)
    assert request["source"] == "confluence" and request["scopes"] == ["ENG"]
    requested_by = request["requested_by"]
    assert isinstance(requested_by, dict)
    assert requested_by["platform"] == "teams" and requested_by["user"] == USER_AAD
    assert flow.calls == []  # a command, not a question


def test_anyone_elses_sync_message_is_an_ordinary_question(module_db: Database) -> None:
    db = reset_teams_tables(module_db)
    flow = FakeFlow()
    with running_teams_bot(db, flow, KB_TEAMS_ADMINS="someone-else") as bot:
        bot.post(channel_message(bot.connector.url, "sync issues with Outlook?"))
        bot.connector.wait_messages()
    assert _requests(db) == []
    assert flow.calls[0].question == "sync issues with Outlook?"
