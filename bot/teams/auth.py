"""Bot Framework authentication, both directions.

Inbound: every request to ``POST /api/messages`` carries ``Authorization: Bearer <JWT>``
issued by the Bot Framework. It is accepted only when it is RS256, signed by a key published in
the Bot Framework's OpenID metadata (that key endorsed for the activity's channel), issued by
``https://api.botframework.com``, addressed to our app id, unexpired (5 minutes' skew), and its
``serviceurl`` claim names the service URL the activity asks us to answer at. The last check
matters most: replies carry our own token, so an unsigned service URL would let anyone make us
send it to them.

Outbound: calls to the connector carry a client-credentials token for our app from our own
tenant (single-tenant), cached until shortly before it expires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from core.errors import RemoteError
from core.identities import Secret

log = logging.getLogger(__name__)

BOT_FRAMEWORK_ISSUER = "https://api.botframework.com"
BOT_FRAMEWORK_SCOPE = "https://api.botframework.com/.default"
CLOCK_SKEW_SECONDS = 300
KEYS_TTL_SECONDS = 24 * 3600.0
# Unknown kids come from anyone who can reach the endpoint; a refetch per request would let
# them make us hammer Microsoft's metadata. Key rotations are announced days ahead anyway.
MIN_REFRESH_SECONDS = 60.0
TOKEN_EARLY_RENEWAL_SECONDS = 300.0


class Unauthorized(Exception):
    """A request's token was refused. The message says why, for logs; it never holds the
    token itself."""


class KeysUnavailable(Exception):
    """The Bot Framework's signing keys could not be fetched at all: we cannot tell a good
    token from a bad one, so the request is turned away with a retryable status."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    key: Any  # a cryptography RSA public key, as PyJWK builds it
    endorsements: frozenset[str] | None  # channel ids this key may sign for; None: any


@dataclass(frozen=True)
class VerifiedToken:
    claims: Mapping[str, Any]
    endorsements: frozenset[str] | None


class OpenIdKeys:
    """The signing keys published through an OpenID metadata document, cached for a day and
    refetched when a token names a key we do not know (at most once a ``min_refresh``)."""

    def __init__(
        self,
        metadata_url: str,
        http: httpx.Client,
        *,
        ttl: float = KEYS_TTL_SECONDS,
        min_refresh: float = MIN_REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._metadata_url = metadata_url
        self._http = http
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None

    def get(self, kid: str) -> SigningKey | None:
        with self._lock:
            now = self._clock()
            refreshed = False
            stale = self._fetched_at is None or now - self._fetched_at >= self._ttl
            if stale and self._may_try(now):
                self._refresh(now)
                refreshed = True
            key = self._keys.get(kid)
            if key is None and self._keys and not refreshed and self._may_try(now):
                log.info("token signed with unknown key %r; refetching the key set", kid[:64])
                self._refresh(now)
                key = self._keys.get(kid)
            if not self._keys:
                raise KeysUnavailable("no Bot Framework signing keys could be fetched")
            return key

    def _may_try(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_refresh

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        try:
            metadata = self._get_json(self._metadata_url)
            jwks_uri = metadata.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise ValueError("the OpenID metadata has no jwks_uri")
            keys = _parse_jwks(self._get_json(jwks_uri))
        except (httpx.HTTPError, ValueError) as exc:
            # Keep the keys we have: a hiccup at Microsoft must not lock every user out.
            log.warning("could not refresh Bot Framework signing keys: %s", exc)
            return
        self._keys = keys
        self._fetched_at = now

    def _get_json(self, url: str) -> dict[str, Any]:
        response = self._http.get(url)
        response.raise_for_status()
        data = response.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not answer a JSON object")
        return data


def _parse_jwks(jwks: dict[str, Any]) -> dict[str, SigningKey]:
    keys: dict[str, SigningKey] = {}
    for raw in jwks.get("keys") or []:
        if not isinstance(raw, dict) or raw.get("kty") != "RSA" or not raw.get("kid"):
            continue
        try:
            key = jwt.PyJWK(raw, algorithm="RS256").key
        except (jwt.PyJWKError, ValueError, TypeError) as exc:
            log.warning("skipping an unusable signing key %r: %s", str(raw.get("kid"))[:64], exc)
            continue
        endorsed = raw.get("endorsements")
        endorsements = frozenset(str(e) for e in endorsed) if isinstance(endorsed, list) else None
        keys[str(raw["kid"])] = SigningKey(str(raw["kid"]), key, endorsements)
    if not keys:
        raise ValueError("the key set holds no usable RSA key")
    return keys


class BotFrameworkAuth:
    """Checks inbound Bot Framework tokens for one app id."""

    def __init__(
        self,
        app_id: str,
        keys: OpenIdKeys,
        *,
        issuer: str = BOT_FRAMEWORK_ISSUER,
        leeway: int = CLOCK_SKEW_SECONDS,
    ) -> None:
        self._app_id = app_id
        self._keys = keys
        self._issuer = issuer
        self._leeway = leeway

    def verify(self, authorization: str | None) -> VerifiedToken:
        """The token's claims, or :class:`Unauthorized`. The activity-bound checks follow in
        :meth:`check_activity`, once the body is parsed."""
        scheme, _, token = (authorization or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("no Bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"malformed token ({type(exc).__name__})") from None
        # Pinned before any key is looked up: "none", HS256 with the public key as a secret
        # and other algorithm confusions never reach a verifier.
        if header.get("alg") != "RS256":
            raise Unauthorized(f"algorithm {str(header.get('alg'))[:20]!r} is not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("token names no signing key (kid)")
        signing = self._keys.get(kid)
        if signing is None:
            raise Unauthorized(f"signing key {kid[:64]!r} is not in the Bot Framework's key set")
        try:
            claims = jwt.decode(
                token,
                signing.key,
                algorithms=["RS256"],
                audience=self._app_id,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"token refused: {exc}") from None
        return VerifiedToken(claims=claims, endorsements=signing.endorsements)

    @staticmethod
    def check_activity(token: VerifiedToken, *, service_url: str, channel_id: str) -> None:
        """The token must vouch for where we will answer, and its key for the channel."""
        claimed = token.claims.get("serviceurl")
        if not isinstance(claimed, str) or not claimed:
            raise Unauthorized("token has no serviceurl claim")
        if _normal_url(claimed) != _normal_url(service_url):
            raise Unauthorized("token's serviceurl does not match the activity's serviceUrl")
        if token.endorsements is not None and channel_id not in token.endorsements:
            raise Unauthorized(f"signing key is not endorsed for channel {channel_id[:40]!r}")


def _normal_url(url: str) -> str:
    return url.strip().rstrip("/").lower()


# --- outbound: our own token --------------------------------------------------------------------


class TokenUnavailable(RemoteError):
    """The token endpoint did not give us a token. ``retry_after`` is set on HTTP 429."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ClientCredentials:
    """OAuth client-credentials tokens for the Bot Connector, from our tenant's token
    endpoint, shared by every thread and renewed five minutes before they expire.

    A plain form POST rather than MSAL: MSAL insists on an https authority it can discover,
    which an offline test cannot offer, and this is the whole of what the bot needs from it.
    """

    def __init__(
        self,
        token_url: str,
        app_id: str,
        password: Secret,
        http: httpx.Client,
        *,
        scope: str = BOT_FRAMEWORK_SCOPE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._token_url = token_url
        self._app_id = app_id
        self._password = password
        self._http = http
        self._scope = scope
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._clock() >= self._renew_at:
                self._token, lifetime = self._fetch()
                # Renew early; a token shorter-lived than the margin is renewed at half-life.
                early = min(TOKEN_EARLY_RENEWAL_SECONDS, lifetime / 2)
                self._renew_at = self._clock() + lifetime - early
            return self._token

    def invalidate(self, token: str) -> None:
        """The connector refused ``token`` (401): fetch a new one next time."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self._app_id,
            "client_secret": self._password.reveal(),
            "scope": self._scope,
        }
        try:
            response = self._http.post(self._token_url, data=form)
        except httpx.HTTPError as exc:
            raise TokenUnavailable(f"token endpoint unreachable ({type(exc).__name__})") from None
        if response.status_code == 429:
            raise TokenUnavailable(
                "token endpoint rate limited (HTTP 429)",
                status=429,
                retry_after=retry_after_seconds(response.headers),
            )
        try:
            data = response.json()
        except ValueError:
            data = {}
        token = data.get("access_token") if isinstance(data, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            # Only the error code: descriptions echo request details we keep out of logs.
            code = str(data.get("error", "?"))[:60] if isinstance(data, dict) else "?"
            raise TokenUnavailable(
                f"token endpoint refused the bot's credentials (HTTP {response.status_code}, "
                f"{code}); check TEAMS_APP_ID, TEAMS_APP_PASSWORD and TEAMS_TENANT_ID",
                status=response.status_code,
            )
        try:
            lifetime = float(data.get("expires_in", 3600))
        except (TypeError, ValueError):
            lifetime = 3600.0
        return token, max(lifetime, 1.0)


DEFAULT_RETRY_AFTER = 30.0


def retry_after_seconds(headers: Mapping[str, str] | httpx.Headers) -> float:
    """``Retry-After`` in seconds (at least one), or a cautious default when absent or a date."""
    raw = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(1.0, float(raw)) if raw is not None else DEFAULT_RETRY_AFTER
    except ValueError:
        return DEFAULT_RETRY_AFTER
