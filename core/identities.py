"""Identities every layer passes around: secrets that never print, Atlassian sites, the Teams app.

These are plain values built by the composition root (``kb/settings.py``) and handed down; this
module imports nothing from the project (see docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Bot Framework's published signing keys (public cloud); TEAMS_OPENID_METADATA_URL overrides it.
TEAMS_OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"


@dataclass(frozen=True)
class Secret:
    """A credential that never shows itself in a repr, a log line or an error."""

    value: str = field(repr=False)

    def reveal(self) -> str:
        return self.value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class AtlassianSite:
    """One Confluence or Jira site: Cloud (email + API token) or Data Center (PAT, Bearer)."""

    base_url: str
    email: str | None
    token: Secret

    @property
    def is_cloud(self) -> bool:
        return self.email is not None


@dataclass(frozen=True)
class TeamsApp:
    """A single-tenant Azure bot: its app registration, its client secret and its tenant.

    ``openid_metadata_url`` (where inbound tokens' keys are published) and ``token_url``
    (where the bot gets its own tokens) default to Microsoft's public cloud; tests point them
    at local fakes.
    """

    app_id: str
    password: Secret
    tenant_id: str
    openid_metadata_url: str = TEAMS_OPENID_METADATA_URL
    token_url: str = ""

    @property
    def client_token_url(self) -> str:
        return (
            self.token_url
            or f"https://login.microsoftonline.com/{self.tenant_id}/oauth2/v2.0/token"
        )
