"""Follow-up condensation: with Claude (against the fake Messages API) and the offline heuristic."""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, overloaded, text, unauthorized

from bot.answers import Turn
from bot.condense import CONDENSE_MAX_TOKENS, condense, condense_without_model
from bot.prompts import CONDENSE_SYSTEM

MODEL = "claude-test-model"
VPN_THREAD = (
    Turn("user", "How do I connect to the VPN on macOS?"),
    Turn("bot", "Install GlobalProtect from Self Service and connect to vpn.example.com [1]."),
)


@pytest.fixture(scope="module")
def shared_api() -> Iterator[FakeMessagesAPI]:
    with fake_anthropic() as fake:
        yield fake


@pytest.fixture
def api(shared_api: FakeMessagesAPI) -> FakeMessagesAPI:
    shared_api.reset()
    return shared_api


@pytest.fixture
def client(api: FakeMessagesAPI) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(api_key=api.key, base_url=api.url, max_retries=1) as c:
        yield c


def test_claude_rewrites_the_follow_up(api: FakeMessagesAPI, client: anthropic.Anthropic) -> None:
    api.script(text("How do I connect to the VPN on Windows?"))

    standalone = condense(client, MODEL, "and on Windows?", VPN_THREAD)

    assert standalone == "How do I connect to the VPN on Windows?"
    body = api.last_body
    assert body["model"] == MODEL
    assert body["max_tokens"] == CONDENSE_MAX_TOKENS <= 100
    assert body["system"] == CONDENSE_SYSTEM
    user = api.user_text(body)
    assert '<turn role="user">How do I connect to the VPN on macOS?</turn>' in user
    assert "[1]" not in user, "citation markers of earlier answers are noise here"
    assert user.index("</conversation>") < user.index("<follow_up>and on Windows?</follow_up>")


def test_no_history_means_no_model_call(api: FakeMessagesAPI, client: anthropic.Anthropic) -> None:
    assert condense(client, MODEL, "and on Windows?", ()) == "and on Windows?"
    assert api.requests == []


def test_model_output_is_cleaned(api: FakeMessagesAPI, client: anthropic.Anthropic) -> None:
    api.script(text('Standalone question: "How do I connect to the VPN on Windows?"\n\nDone.'))
    standalone = condense(client, MODEL, "and on Windows?", VPN_THREAD)
    assert standalone == "How do I connect to the VPN on Windows?"


@pytest.mark.parametrize("failure", [overloaded(), unauthorized(), text("   ")])
def test_model_failure_falls_back_to_the_heuristic(
    api: FakeMessagesAPI, client: anthropic.Anthropic, failure: object
) -> None:
    api.script(failure)  # type: ignore[arg-type]
    standalone = condense(client, MODEL, "and on Windows?", VPN_THREAD)
    assert standalone == "How do I connect to the VPN on Windows?"
    assert api.requests, "Claude was asked first"


def test_a_rambling_reply_falls_back_to_the_heuristic(
    api: FakeMessagesAPI, client: anthropic.Anthropic
) -> None:
    api.script(text("Sure! " + "On Windows you would open the client and " * 20))
    standalone = condense(client, MODEL, "and on Windows?", VPN_THREAD)
    assert standalone == "How do I connect to the VPN on Windows?"


def user(text_: str) -> Turn:
    return Turn("user", text_)


@pytest.mark.parametrize(
    ("history", "follow_up", "expected"),
    [
        # An entity of the same kind replaces the previous one.
        (VPN_THREAD, "and on Windows?", "How do I connect to the VPN on Windows?"),
        (
            [user("How do I connect to the VPN on Mac?")],
            "Windows 11?",
            "How do I connect to the VPN on Windows 11?",
        ),
        (
            [user("What is the status of OPS-412?")],
            "and OPS-413?",
            "What is the status of OPS-413?",
        ),
        (
            [user("How do I deploy the API to production?")],
            "what about staging?",
            "How do I deploy the API to staging?",
        ),
        (
            [user("How do I deploy the API to production?")],
            "What about the staging environment?",
            "How do I deploy the API to staging?",
        ),
        (
            [user("How do I upgrade Postgres to 15.4?")],
            "and to 16.1?",
            "How do I upgrade Postgres to 16.1?",
        ),
        ([user("What's the SLA for P1 incidents?")], "and P2?", "What's the SLA for P2 incidents?"),
        (
            [user("How long do we keep logs older than 30 days?")],
            "and 90 days?",
            "How long do we keep logs older than 90 days?",
        ),
        # A follow-up to a follow-up builds on the resolved question.
        (
            [*VPN_THREAD, user("and on Windows?"), Turn("bot", "Use the Windows client [2].")],
            "and on Linux?",
            "How do I connect to the VPN on Linux?",
        ),
        # A qualifier the previous question lacked is appended to it.
        (
            [user("How do I connect to the VPN?")],
            "and on Windows?",
            "How do I connect to the VPN on Windows?",
        ),
        # Elliptical without an entity to swap: "previous — follow-up".
        (
            [user("How do I restart the billing worker?")],
            "Who owns it?",
            "How do I restart the billing worker? — Who owns it?",
        ),
        (
            VPN_THREAD,
            "and what if it times out?",
            "How do I connect to the VPN on macOS? — what if it times out?",
        ),
        # A standalone question is left alone.
        (VPN_THREAD, "How do I reset my Okta password?", "How do I reset my Okta password?"),
        (
            VPN_THREAD,
            "What is the on-call rotation for the payments team?",
            "What is the on-call rotation for the payments team?",
        ),
        # No earlier question to lean on.
        ([], "and on Windows?", "and on Windows?"),
        ([Turn("bot", "Hello!")], "and on Windows?", "and on Windows?"),
        # A leading Slack mention is not part of the question.
        (
            [user("<@U024BE7LH> How do I connect to the VPN on macOS?")],
            "<@U024BE7LH> and on Windows?",
            "How do I connect to the VPN on Windows?",
        ),
    ],
)
def test_heuristic_condensation(history: list[Turn], follow_up: str, expected: str) -> None:
    assert condense_without_model(follow_up, history) == expected


def test_heuristic_never_just_glues_a_swapped_entity_on() -> None:
    result = condense_without_model("and on Windows?", VPN_THREAD)
    assert result != "How do I connect to the VPN on macOS? and on Windows?"
    assert "macOS" not in result
