"""Fault class 2 on the Slack and Teams endpoints: the signature is checked on the raw bytes
first, and a signed body of a shape the platform never sends is acknowledged (200, so it is not
retried) with one warning line: never a 500, never a traceback (docs/ARCHITECTURE.md,
"Security stance")."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from fakes.flow import FakeFlow
from fakes.slack_api import RunningBot, running_bot
from fakes.teams import running_teams_bot

from store.db import Database

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ODD_BODIES = {
    "payload that is not JSON": (b"payload=notjson", FORM),
    "invalid JSON": (b"{not json", JSON),
    "binary bytes": (bytes(range(256)), "application/octet-stream"),
    "event as a string": (b'{"type":"event_callback","event":"x"}', JSON),
    "actions as a string": (
        b"payload=%7B%22type%22%3A%22block_actions%22%2C%22actions%22%3A%22x%22%7D",
        FORM,
    ),
    "payload is a list": (b"payload=%5B%5D", FORM),
    "payload is null": (b"payload=null", FORM),
    "JSON 5,000 deep": (b"[" * 5000 + b"]" * 5000, JSON),
    "an empty form": (b"", FORM),
}


@pytest.fixture(scope="module")
def bot(module_db: Database) -> Iterator[tuple[RunningBot, FakeFlow]]:
    flow = FakeFlow()
    with running_bot(module_db, flow) as running:
        yield running, flow


@pytest.mark.parametrize("name", list(ODD_BODIES))
def test_a_signed_body_of_an_odd_shape_is_acked_with_one_warning_and_no_traceback(
    bot: tuple[RunningBot, FakeFlow], name: str, caplog: pytest.LogCaptureFixture
) -> None:
    running, flow = bot
    body, content_type = ODD_BODIES[name]
    with caplog.at_level(logging.INFO):
        response = running.post(body, content_type)
    assert response.status_code == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "ignored a signed Slack request" in warnings[0].getMessage()
    assert flow.calls == []


def test_a_timestamp_that_is_not_a_number_is_refused_before_parsing(
    bot: tuple[RunningBot, FakeFlow], caplog: pytest.LogCaptureFixture
) -> None:
    running, _ = bot
    headers = {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": "abc",
        "X-Slack-Signature": "v0=" + "0" * 64,
    }
    with caplog.at_level(logging.INFO):
        response = running.http.post("/slack/events", content=b"payload=notjson", headers=headers)
    assert response.status_code == 401
    assert not [r for r in caplog.records if r.exc_info]
    # The forged body itself is never logged.
    assert not [r for r in caplog.records if "notjson" in r.getMessage()]


def test_a_well_formed_signed_event_still_reaches_the_bot(
    bot: tuple[RunningBot, FakeFlow],
) -> None:
    running, _ = bot
    response = running.post(b'{"type":"url_verification","challenge":"c-123"}', JSON)
    assert response.status_code == 200 and response.json()["challenge"] == "c-123"


TEAMS_ODD_BODIES = {
    "invalid JSON": b"{not json",
    "a JSON list": b"[]",
    "null": b"null",
    "an activity without its fields": b'{"type":"message"}',
    "JSON 5,000 deep": b"[" * 5000 + b"]" * 5000,
    "binary bytes": bytes(range(256)),
}


@pytest.mark.parametrize("name", list(TEAMS_ODD_BODIES))
def test_a_signed_teams_request_that_is_not_an_activity_is_acked_with_one_warning(
    module_db: Database, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    flow = FakeFlow()
    with running_teams_bot(module_db, flow) as teams:
        token = teams.login.sign("https://smba.example/")
        with caplog.at_level(logging.INFO):
            response = teams.http.post(
                "/api/messages",
                content=TEAMS_ODD_BODIES[name],
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
            )
    assert response.status_code == 200
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if "not an activity" in r.getMessage()]
    assert len(warnings) == 1
    assert flow.calls == []
