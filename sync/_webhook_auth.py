"""Webhook authentication: an HMAC signature of the raw body, or a shared token in the URL.

Jira (Cloud and Data Center) and Confluence Data Center 7.13+ sign with the secret registered
with the webhook: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, raw body)>``. Senders that
cannot sign (a Confluence Cloud automation rule) put ``?token=<secret>`` in the URL. Every
comparison is constant-time. Without a secret nothing is accepted: a listener on a public
port that anyone could feed events to would let them drive fetches and notices.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs

from core.identities import Secret

SIGNATURE_HEADER = "HTTP_X_HUB_SIGNATURE"  # X-Hub-Signature in a WSGI environ
_PREFIX = "sha256="
_MIN_SECRET_LENGTH = 16

Verdict = Literal["ok", "missing", "bad"]


@dataclass(frozen=True)
class WebhookAuth:
    """Checks one request against the configured secret (None: every request is refused)."""

    secret: Secret | None

    @property
    def configured(self) -> bool:
        return self.secret is not None and bool(self.secret.reveal())

    def check(self, body: bytes, signature: str | None, query_string: str) -> Verdict:
        """``ok``; ``missing`` (neither a signature nor a token); ``bad`` (one was wrong).

        A signature, when present, must verify even if the URL also carries a token: a
        signed request whose signature is wrong has been tampered with.
        """
        if not self.configured:
            return "missing"
        assert self.secret is not None
        key = self.secret.reveal().encode()
        if signature is not None and signature.strip():
            return "ok" if _signature_matches(key, body, signature.strip()) else "bad"
        tokens = parse_qs(query_string, keep_blank_values=True).get("token")
        if not tokens:
            return "missing"
        if len(tokens) != 1:
            return "bad"
        return "ok" if hmac.compare_digest(tokens[0].encode(), key) else "bad"


def _signature_matches(key: bytes, body: bytes, header: str) -> bool:
    if header[: len(_PREFIX)].lower() != _PREFIX:
        return False  # sha1= and friends: not accepted
    given = header[len(_PREFIX) :].strip().lower()
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    # WSGI header values are latin-1 text; compare bytes so odd characters cannot raise.
    return hmac.compare_digest(expected.encode(), given.encode("latin-1", "replace"))


def sign(secret: str, body: bytes) -> str:
    """The X-Hub-Signature value a sender computes (for tests, benches and docs)."""
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def security_warning(secret: Secret | None, port: int) -> str | None:
    """What ``kb daemon`` prints at start about webhook authentication, or None if all is well."""
    if secret is None or not secret.reveal():
        return (
            f"KB_WEBHOOK_SECRET is not set: the webhook listener on port {port} refuses every "
            "Confluence and Jira delivery (403). Set it to a long random value and register the "
            "same secret with the webhooks; until then answers refresh only on scheduled syncs."
        )
    if len(secret.reveal()) < _MIN_SECRET_LENGTH:
        return (
            f"KB_WEBHOOK_SECRET is shorter than {_MIN_SECRET_LENGTH} characters; use a long "
            "random value (e.g. `openssl rand -hex 32`)."
        )
    return None
