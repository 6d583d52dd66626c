"""/kb-sync arguments checked against what the deployment syncs (bot/sync_request.py)."""

from __future__ import annotations

import pytest

from bot.sync_request import SyncArgsError, parse_sync_request
from kb.chat_wiring import sync_targets
from kb.settings import load_settings

TARGETS = sync_targets(
    load_settings(
        {
            "CONFLUENCE_BASE_URL": "https://wiki.example",
            "CONFLUENCE_API_TOKEN": "t",
            "CONFLUENCE_SPACES": "ENG,OPS",
            "JIRA_BASE_URL": "https://jira.example",
            "JIRA_API_TOKEN": "t",
            "JIRA_PROJECTS": "OPS,SUP",
        }
    )
)


@pytest.mark.parametrize(
    ("text", "source", "keys"),
    [
        ("", "all", ()),
        ("CONFLUENCE", "confluence", ()),
        ("eng", "confluence", ("ENG",)),
        ("sup", "jira", ("SUP",)),
        ("ops", "all", ("OPS",)),  # both a space and a project
        ("jira ops, sup", "jira", ("OPS", "SUP")),
    ],
)
def test_sync_request_parsing(text: str, source: str, keys: tuple[str, ...]) -> None:
    request = parse_sync_request(text, TARGETS)
    assert (request.source, request.keys) == (source, keys)


@pytest.mark.parametrize("text", ["jira ENG", "confluence SUP", "FOO", "help"])
def test_sync_request_refusals(text: str) -> None:
    with pytest.raises(SyncArgsError):
        parse_sync_request(text, TARGETS)


def test_a_sync_request_names_what_it_syncs() -> None:
    assert parse_sync_request("", TARGETS).describe() == "all sources"
    assert parse_sync_request("confluence", TARGETS).describe() == "Confluence"
    assert parse_sync_request("sup", TARGETS).describe() == "Jira SUP"
    assert parse_sync_request("ops eng", TARGETS).describe() == "OPS, ENG"


def test_an_unknown_key_is_refused_with_the_keys_that_exist_and_the_usage() -> None:
    with pytest.raises(SyncArgsError) as caught:
        parse_sync_request("FOO", TARGETS)
    message = str(caught.value)
    assert "a configured Confluence space (ENG, OPS)" in message
    assert "a configured Jira project (OPS, SUP)" in message
    assert message.endswith("Usage: /kb-sync [all|confluence|jira] [SPACE or PROJECT …]")


def test_with_no_source_configured_there_is_nothing_to_sync() -> None:
    with pytest.raises(SyncArgsError, match="nothing to sync"):
        parse_sync_request("", sync_targets(load_settings({})))
