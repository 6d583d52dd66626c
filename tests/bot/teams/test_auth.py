"""Inbound Bot Framework tokens: only a correctly signed token for this app, from the Bot
Framework, unexpired, vouching for the activity's service URL, gets anything done."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fakes.flow import FakeFlow
from fakes.teams import (
    APP_ID,
    FakeLogin,
    RunningTeamsBot,
    channel_message,
    public_jwk,
    reset_teams_tables,
    running_teams_bot,
    signing_key,
)

from bot.teams.auth import BotFrameworkAuth, OpenIdKeys, Unauthorized
from store.db import Database


@pytest.fixture(scope="module")
def bot(module_db: Database) -> Iterator[tuple[RunningTeamsBot, FakeFlow]]:
    # One running bot for the module: every case here must leave nothing behind anyway.
    flow = FakeFlow()
    with running_teams_bot(module_db, flow) as running:
        yield running, flow


@pytest.fixture
def running(bot: tuple[RunningTeamsBot, FakeFlow], module_db: Database) -> RunningTeamsBot:
    reset_teams_tables(module_db)
    bot[0].connector.sent.clear()
    bot[0].login.token_requests.clear()
    bot[1].calls.clear()
    return bot[0]


def _refused(running: RunningTeamsBot, token: str | None, activity: dict[str, object]) -> None:
    response = running.post(activity, token=token)
    assert response.status_code == 401, response.text
    assert response.json() == {"error": "unauthorized"}  # no hint of which check failed
    time.sleep(0.2)  # nothing may have been queued either
    assert running.connector.sent == []
    assert running.login.token_requests == []  # not even a token fetched to answer with
    with running.db.connection() as conn:  # and nothing remembered about the conversation
        assert conn.execute("SELECT count(*) AS n FROM teams_conversations").fetchone() == {"n": 0}


def _unsigned(claims: dict[str, object], header: dict[str, object]) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_a_valid_token_is_accepted(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    assert running.post(activity).status_code == 200
    assert running.connector.wait_messages()


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"aud": "99999999-9999-9999-9999-999999999999"}, id="wrong-aud"),
        pytest.param({"aud": None}, id="no-aud"),
        pytest.param({"iss": "https://sts.windows.net/evil/"}, id="wrong-iss"),
        pytest.param({"exp": int(time.time()) - 301 - 60}, id="expired"),
        pytest.param({"exp": None}, id="no-exp"),
        pytest.param({"nbf": int(time.time()) + 900}, id="not-yet-valid"),
        pytest.param({"serviceurl": "https://attacker.example/"}, id="serviceurl-mismatch"),
        pytest.param({"serviceurl": None}, id="no-serviceurl"),
    ],
)
def test_bad_claims_are_refused(running: RunningTeamsBot, claims: dict[str, Any]) -> None:
    activity = channel_message(running.connector.url, "hello?")
    token = running.login.sign(activity["serviceUrl"], **claims)
    _refused(running, token, activity)


def test_expiry_allows_five_minutes_of_clock_skew(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    token = running.login.sign(activity["serviceUrl"], exp=int(time.time()) - 240)
    assert running.post(activity, token=token).status_code == 200
    assert running.connector.wait_messages()


def test_unknown_key_is_refused_after_refetching_the_key_set(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    before = running.login.key_fetches
    _refused(running, running.login.sign(activity["serviceUrl"], kid="rogue-key"), activity)
    assert running.login.key_fetches == before + 1  # it looked again before refusing


def test_a_rotated_key_is_picked_up_on_first_sight(running: RunningTeamsBot) -> None:
    running.login.kids.append("key-2")
    try:
        activity = channel_message(running.connector.url, "hello?")
        token = running.login.sign(activity["serviceUrl"], kid="key-2")
        assert running.post(activity, token=token).status_code == 200
        assert running.connector.wait_messages()
    finally:
        running.login.kids.remove("key-2")


def test_algorithm_none_and_confusion_are_refused(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    now = int(time.time())
    claims = {
        "iss": "https://api.botframework.com",
        "aud": APP_ID,
        "serviceurl": activity["serviceUrl"],
        "exp": now + 600,
    }
    _refused(running, _unsigned(claims, {"alg": "none", "kid": "key-1", "typ": "JWT"}), activity)
    _refused(running, running.login.sign(activity["serviceUrl"], alg="none"), activity)
    # HS256 keyed with the public key's PEM: the classic RS/HS confusion.
    public_pem = (
        signing_key("key-1")
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    _refused(running, _hs256(claims, public_pem), activity)


def _hs256(claims: dict[str, object], secret: bytes) -> str:
    def part(data: dict[str, object]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "kid": "key-1", "typ": "JWT"}) + b"." + part(claims)
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


def test_signed_by_a_key_we_do_not_publish_is_refused(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    # Right kid, wrong private key.
    claims = {
        "iss": "https://api.botframework.com",
        "aud": APP_ID,
        "exp": int(time.time()) + 600,
        "serviceurl": activity["serviceUrl"],
    }
    token = jwt.encode(
        claims,
        signing_key("impostor"),
        algorithm="RS256",
        headers={"kid": "key-1"},
    )
    _refused(running, token, activity)


def test_missing_or_malformed_authorization_is_refused(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    _refused(running, None, activity)
    _refused(running, "not.a.jwt", activity)
    response = running.http.post(
        "/api/messages",
        content=json.dumps(activity),
        headers={"Authorization": "Basic dXNlcjpwYXNz", "Content-Type": "application/json"},
    )
    assert response.status_code == 401


def signing_key_not_endorsed_for_the_channel_is_refused(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    activity["channelId"] = "webchat"  # key-1 is endorsed for msteams only
    _refused(running, running.login.sign(activity["serviceUrl"]), activity)


def test_another_tenant_is_turned_away(running: RunningTeamsBot) -> None:
    activity = channel_message(running.connector.url, "hello?")
    activity["channelData"]["tenant"]["id"] = "ffffffff-ffff-ffff-ffff-ffffffffffff"
    assert running.post(activity).status_code == 403
    time.sleep(0.2)
    assert running.connector.sent == []


def signing_keys_are_cached_between_requests(running: RunningTeamsBot) -> None:
    fetches = running.login.key_fetches
    for _ in range(3):
        activity = channel_message(running.connector.url, "hello?")
        assert running.post(activity).status_code == 200
    assert running.login.key_fetches == fetches
    assert len(running.connector.wait_messages(3)) == 3


def test_unknown_kids_do_not_refetch_more_than_once_a_minute() -> None:
    """Unit level: a flood of made-up kids costs one refetch, not one per request."""
    with FakeLogin() as login, httpx.Client(timeout=5) as http:
        clock = [1000.0]
        keys = OpenIdKeys(login.metadata_url, http, min_refresh=60, clock=lambda: clock[0])
        auth = BotFrameworkAuth(APP_ID, keys)
        service = "https://smba.example/"
        auth.verify(f"Bearer {login.sign(service)}")
        assert login.key_fetches == 1
        clock[0] += 61
        for n in range(5):
            with pytest.raises(Unauthorized):
                auth.verify(f"Bearer {login.sign(service, kid=f'made-up-{n}')}")
        assert login.key_fetches == 2
        clock[0] += 61
        login.kids.append("key-3")
        auth.verify(f"Bearer {login.sign(service, kid='key-3')}")
        assert login.key_fetches == 3
        assert public_jwk("key-3")["endorsements"] == ["msteams"]


def test_unreachable_key_set_turns_requests_away_with_503(module_db: Database) -> None:
    flow = FakeFlow()
    with running_teams_bot(
        module_db, flow, TEAMS_OPENID_METADATA_URL="http://127.0.0.1:9/x"
    ) as bot:
        activity = channel_message(bot.connector.url, "hello?")
        response = bot.post(activity)
        assert response.status_code == 503  # retryable: the connector will redeliver
        time.sleep(0.2)
        assert bot.connector.sent == [] and flow.calls == []
