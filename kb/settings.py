"""Settings: one immutable object built from the environment once, in the composition root.

Every key of docs/ARCHITECTURE.md ("Settings") is read here and nowhere else; a registered source
declares its keys (sync/registry.py) and is handed their values, it never reads them itself.
A malformed value raises :class:`~core.errors.SettingsError` naming the key; a value a command
needs but does not have is reported by the ``require_*`` methods when that command starts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from core.errors import SettingsError
from core.identities import TEAMS_OPENID_METADATA_URL, Secret, TeamsApp
from store.scope import Scope
from sync.registry import BUILT_IN, SourceRegistry

EMBEDDERS = ("local", "voyage", "openai")
DEFAULT_MODEL = "claude-sonnet-5-5"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: Secret | None
    port: int
    webhook_port: int
    webhook_secret: Secret | None
    sync_every_minutes: int
    include_restricted: bool
    # Slack
    slack_bot_token: Secret | None
    slack_signing_secret: Secret | None
    slack_app_token: Secret | None
    slack_api_url: str
    ops_channel: str | None
    admins: frozenset[str]
    channel_scopes: Mapping[str, Scope]
    default_scope: Scope
    # Models
    anthropic_api_key: Secret | None
    anthropic_base_url: str | None
    model: str
    embedder: str
    embed_model: str | None
    voyage_api_key: Secret | None
    openai_api_key: Secret | None
    openai_base_url: str | None
    log_level: str
    cache_backend: str = "disk"
    teams: TeamsApp | None = None
    # Scope of direct messages to the bot (KB_DM_SCOPE); None means the default scope.
    dm_scope: Scope | None = None
    # Suggested prompts in Slack's assistant pane (KB_SUGGESTED_PROMPTS, "|"-separated).
    suggested_prompts: tuple[str, ...] = ()
    # Teams users (Entra object ids) allowed to ask "@kb sync …" (KB_TEAMS_ADMINS).
    teams_admins: frozenset[str] = frozenset()
    # The registered sources and, per source, the values of the keys it declares.
    sources: SourceRegistry = BUILT_IN
    source_values: Mapping[str, Mapping[str, str]] = field(default_factory=dict, repr=False)

    @property
    def source_names(self) -> tuple[str, ...]:
        """Every registered source (for /kb-sync validation and CLI choices)."""
        return self.sources.names

    def configured_sources(self) -> tuple[str, ...]:
        return tuple(
            s.name for s in self.sources if s.configured(self.source_values.get(s.name, {}))
        )

    def scope_for(self, channel: str | None) -> Scope:
        if channel is None:
            return self.default_scope
        return self.channel_scopes.get(channel, self.default_scope)

    @property
    def direct_scope(self) -> Scope:
        """What a direct message to the bot may draw on (KB_DM_SCOPE, else the default)."""
        return self.dm_scope if self.dm_scope is not None else self.default_scope

    def require_slack(self) -> tuple[Secret, Secret]:
        if self.slack_bot_token is None:
            raise SettingsError(
                "SLACK_BOT_TOKEN",
                "is not set; the bot needs its xoxb- token (or, for Teams only, TEAMS_APP_ID, "
                "TEAMS_APP_PASSWORD and TEAMS_TENANT_ID)",
            )
        if self.slack_signing_secret is None and self.slack_app_token is None:
            raise SettingsError(
                "SLACK_SIGNING_SECRET", "is not set; HTTP mode needs it to verify Slack's requests"
            )
        return self.slack_bot_token, self.slack_signing_secret or Secret("")

    def require_teams(self) -> TeamsApp:
        if self.teams is None:
            raise SettingsError(
                "TEAMS_APP_ID",
                "is not set; Teams needs TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID",
            )
        return self.teams

    def require_chat(self) -> None:
        """At least one chat platform is configured (Slack, Teams, or both)."""
        if self.teams is None or self.slack_bot_token is not None:
            self.require_slack()

    def require_a_source(self) -> None:
        if not self.configured_sources():
            keys = [s.enabled_by for s in self.sources]
            raise SettingsError(keys[0], f"no source is configured; set {' or '.join(keys)}")


def load_settings(env: Mapping[str, str], sources: SourceRegistry = BUILT_IN) -> Settings:
    """Build :class:`Settings` from an environment; raises SettingsError on the first bad key."""
    r = _Reader(env, sources.names)
    embedder = r.choice("KB_EMBEDDER", EMBEDDERS, "local")
    voyage_key = r.secret("VOYAGE_API_KEY")
    openai_key = r.secret("OPENAI_API_KEY")
    openai_base = r.url("OPENAI_BASE_URL")
    if embedder == "voyage" and voyage_key is None:
        raise SettingsError("VOYAGE_API_KEY", "is not set but KB_EMBEDDER=voyage needs it")
    if embedder == "openai" and openai_key is None and openai_base is None:
        raise SettingsError(
            "OPENAI_API_KEY",
            "is not set; KB_EMBEDDER=openai needs it "
            "(or OPENAI_BASE_URL for a keyless local server)",
        )
    source_values = {spec.name: spec.values(env) for spec in sources}
    for spec in sources:  # each source checks the keys it declares (sync/registry.py)
        spec.check(source_values[spec.name])
    return Settings(
        data_dir=Path(r.text("KB_DATA_DIR") or ".kb"),
        database_url=r.secret("DATABASE_URL"),
        port=r.port("PORT", 3000),
        webhook_port=r.port("KB_WEBHOOK_PORT", 8080),
        webhook_secret=r.secret("KB_WEBHOOK_SECRET"),
        sync_every_minutes=r.positive_int("KB_SYNC_EVERY", 15),
        include_restricted=r.boolean("KB_INCLUDE_RESTRICTED", False),
        slack_bot_token=r.secret("SLACK_BOT_TOKEN", prefix="xoxb-"),
        slack_signing_secret=r.secret("SLACK_SIGNING_SECRET"),
        slack_app_token=r.secret("SLACK_APP_TOKEN", prefix="xapp-"),
        slack_api_url=r.url("SLACK_API_URL") or "https://slack.com/api/",
        ops_channel=r.text("KB_OPS_CHANNEL"),
        admins=frozenset(r.csv("KB_ADMINS")),
        channel_scopes=r.channel_scopes("KB_CHANNEL_SCOPES"),
        default_scope=r.scope("KB_DEFAULT_SCOPE", "*"),
        dm_scope=r.scope("KB_DM_SCOPE", r.text("KB_DEFAULT_SCOPE") or "*"),
        teams_admins=frozenset(r.csv("KB_TEAMS_ADMINS")),
        suggested_prompts=tuple(
            p.strip() for p in (r.text("KB_SUGGESTED_PROMPTS") or "").split("|") if p.strip()
        ),
        anthropic_api_key=r.secret("ANTHROPIC_API_KEY"),
        anthropic_base_url=r.url("ANTHROPIC_BASE_URL"),
        model=r.text("KB_MODEL") or DEFAULT_MODEL,
        embedder=embedder,
        embed_model=r.text("KB_EMBED_MODEL"),
        voyage_api_key=voyage_key,
        openai_api_key=openai_key,
        openai_base_url=openai_base,
        log_level=r.choice(
            "KB_LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR"), "INFO", upper=True
        ),
        cache_backend=r.choice("KB_CACHE", ("disk", "postgres"), "disk"),
        teams=r.teams(),
        sources=sources,
        source_values=source_values,
    )


class _Reader:
    """Typed access to the environment; each method names its key in the error it raises."""

    def __init__(self, env: Mapping[str, str], source_names: tuple[str, ...]) -> None:
        self._env = env
        self._source_names = source_names

    def text(self, key: str) -> str | None:
        value = self._env.get(key, "").strip()
        return value or None

    def secret(self, key: str, *, prefix: str | None = None) -> Secret | None:
        value = self.text(key)
        if value is None:
            return None
        if prefix and not value.startswith(prefix):
            raise SettingsError(key, f"does not look right: it should start with {prefix!r}")
        return Secret(value)

    def url(self, key: str) -> str | None:
        value = self.text(key)
        if value is None:
            return None
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise SettingsError(key, "is not an http(s) URL, e.g. https://example.atlassian.net")
        return value

    def positive_int(self, key: str, default: int) -> int:
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise SettingsError(key, f"must be a whole number, got {value!r}") from None
        if number <= 0:
            raise SettingsError(key, f"must be positive, got {number}")
        return number

    def port(self, key: str, default: int) -> int:
        number = self.positive_int(key, default)
        if number > 65535:
            raise SettingsError(key, f"must be a TCP port (1-65535), got {number}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        value = self.text(key)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(key, f"must be true or false, got {value!r}")

    def choice(
        self, key: str, choices: tuple[str, ...], default: str, *, upper: bool = False
    ) -> str:
        value = self.text(key)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in choices:
            raise SettingsError(key, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def csv(self, key: str, *, upper: bool = False) -> tuple[str, ...]:
        value = self.text(key) or ""
        items = [item.strip() for item in value.split(",") if item.strip()]
        return tuple(item.upper() if upper else item for item in items)

    def scope(self, key: str, default: str) -> Scope:
        try:
            return Scope.parse(self.text(key) or default, self._source_names)
        except ValueError as exc:
            raise SettingsError(key, str(exc)) from None

    def channel_scopes(self, key: str) -> dict[str, Scope]:
        value = self.text(key)
        scopes: dict[str, Scope] = {}
        if value is None:
            return scopes
        for part in value.split(";"):
            part = part.strip()
            if not part:
                continue
            # The last "=": a scope never holds one, a chat platform's channel id might.
            channel, sep, spec = part.rpartition("=")
            if not sep or not channel.strip():
                raise SettingsError(key, f"{part!r} should look like C0123=confluence:ENG,jira:OPS")
            try:
                scopes[channel.strip()] = Scope.parse(spec, self._source_names)
            except ValueError as exc:
                raise SettingsError(key, f"channel {channel.strip()}: {exc}") from None
        return scopes

    def teams(self) -> TeamsApp | None:
        keys = ("TEAMS_APP_ID", "TEAMS_APP_PASSWORD", "TEAMS_TENANT_ID")
        app_id = self.text("TEAMS_APP_ID")
        password = self.secret("TEAMS_APP_PASSWORD")
        tenant = self.text("TEAMS_TENANT_ID")
        given = [k for k, v in zip(keys, (app_id, password, tenant), strict=True) if v is not None]
        if not given:
            return None
        if app_id is None or password is None or tenant is None:
            missing = next(k for k in keys if k not in given)
            raise SettingsError(missing, f"is not set but {given[0]} is; Teams needs all three")
        # Single-tenant only (new Azure bots must be): "common" or a domain name is refused.
        for key, value in (("TEAMS_APP_ID", app_id), ("TEAMS_TENANT_ID", tenant)):
            if not _GUID.match(value):
                raise SettingsError(
                    key, "should be a GUID like 00000000-0000-0000-0000-000000000000"
                )
        return TeamsApp(
            app_id=app_id.lower(),
            password=password,
            tenant_id=tenant.lower(),
            openid_metadata_url=self.url("TEAMS_OPENID_METADATA_URL") or TEAMS_OPENID_METADATA_URL,
            token_url=self.url("TEAMS_TOKEN_URL") or "",
        )
