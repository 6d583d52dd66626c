from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, overloaded, text
from fakes.connector import MemoryConnector
from fakes.embedder import HashingEmbedder

from bot.answerer import ClaudeAnswerer, make_client
from bot.answers import Turn
from bot.condense import condense_without_model
from bot.extractive import ExtractiveAnswerer
from bot.fallback import FALLBACK_LABEL
from bot.flow import Flow
from store.cache import DiskAnswerCache, StoreHashes
from store.db import Database
from store.schema import bind_embedder
from store.scope import Scope
from store.search import Retriever
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.engine import SyncEngine
from sync.freshness import CacheInvalidator


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeMessagesAPI]:
    with fake_anthropic() as api:
        yield api


@dataclass
class Rig:
    db: Database
    source: MemoryConnector
    engine: SyncEngine
    flow: Flow
    cache: DiskAnswerCache
    api: FakeMessagesAPI

    def outbox(self) -> list[dict[str, object]]:
        with self.db.connection() as conn:
            rows = conn.execute("SELECT payload FROM outbox WHERE kind = 'notice'").fetchall()
        return [r["payload"] for r in rows]


@pytest.fixture
def rig(db: Database, tmp_path: Path, claude: FakeMessagesAPI) -> Iterator[Rig]:
    claude.reset()
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    cache = DiskAnswerCache(tmp_path / "cache", StoreHashes(db))
    source = MemoryConnector(scopes=("ENG", "HR"))
    engine = SyncEngine(
        db,
        embedder,
        Chunker(TokenCounter()),
        CacheInvalidator(db, cache),
        clock=lambda: source.clock,
    )
    client = make_client("test-key", claude.url, max_retries=1)
    flow = Flow(
        db=db,
        embedder=embedder,
        retriever=Retriever(db, TokenCounter()),
        cache=cache,
        answerer=ClaudeAnswerer(client, "claude-test-model"),
        condense=condense_without_model,
    )
    source.put("1", "VPN on Windows", "Windows laptops connect with the NWP-AOVPN profile.")
    source.put("2", "VPN on macOS", "Mac laptops connect with the WireGuard app.")
    source.put("3", "Salary bands", "Band L5 is paid quarterly.", scope="HR")
    engine.run(source)
    yield Rig(db, source, engine, flow, cache, claude)
    cache.close()
    client.close()


ENG = Scope.parse("confluence:ENG")


def test_citations_are_renumbered_in_the_order_they_are_cited(rig: Rig) -> None:
    rig.api.script(text("First claim [2]; second claim [1]."))
    answer = rig.flow.answer("How do I connect to the VPN?", scope=ENG)
    shown = re.findall(
        r'<source n="(\d)" title="([^"]+)"', FakeMessagesAPI.user_text(rig.api.last_body)
    )
    titles = dict(shown)
    assert answer.mode == "claude" and not answer.cached
    assert answer.text == "First claim [1]; second claim [2]."
    assert [(s.n, s.title) for s in answer.sources] == [(1, titles["2"]), (2, titles["1"])]


def test_the_same_question_again_comes_from_the_cache_without_a_model_call(rig: Rig) -> None:
    rig.api.script(text("Use the NWP-AOVPN profile [1]."))
    first = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    again = rig.flow.answer("how do I connect to the VPN on windows", scope=ENG)
    assert again.cached and again.text == first.text
    assert [s.artifact_id for s in again.sources] == [s.artifact_id for s in first.sources]
    assert len(rig.api.requests) == 1


def test_an_edited_source_makes_the_next_answer_fresh_and_notifies_the_thread(rig: Rig) -> None:
    rig.api.script(
        text("Use the NWP-AOVPN profile [1]."), text("Use the new GlobalConnect client [1].")
    )
    first = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    assert first.unit_id is not None
    rig.flow.record_post(first.unit_id, platform="slack", channel="C1", thread="111.222")
    rig.source.put("1", "VPN on Windows", "Windows laptops now use the GlobalConnect client.")
    rig.engine.run(rig.source)
    second = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    assert not second.cached and "GlobalConnect" in second.text
    (notice,) = rig.outbox()
    assert notice["thread"] == "111.222" and notice["change"] == "updated"
    assert notice["title"] == "VPN on Windows"
    assert (notice["old_version"], notice["new_version"]) == ("1", "2")


def test_a_cached_answer_says_when_its_sources_were_last_synced(rig: Rig) -> None:
    rig.api.script(text("Use the NWP-AOVPN profile [1]."))
    rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    again = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    with rig.db.connection() as conn:
        row = conn.execute(
            "SELECT synced_at FROM artifacts WHERE artifact_id = %s",
            (again.sources[0].artifact_id,),
        ).fetchone()
    assert again.cached and row is not None
    assert again.sources[0].synced_at == row["synced_at"]
    assert again.sources_checked_at == row["synced_at"]


def test_an_edit_to_a_source_the_answer_did_not_cite_keeps_it_cached(rig: Rig) -> None:
    rig.api.script(text("Use the NWP-AOVPN profile [1]."))
    rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    rig.source.put("2", "VPN on macOS", "Mac laptops connect with Tunnelblick now.")
    rig.engine.run(rig.source)
    again = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    assert again.cached, "provenance is what was cited, not everything shown"


def test_claude_overloaded_falls_back_to_quoting_and_caches_nothing(rig: Rig) -> None:
    rig.api.script(overloaded(), overloaded(), text("Use the NWP-AOVPN profile [1]."))
    failed = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    assert failed.mode == "extractive" and failed.text.startswith(FALLBACK_LABEL)
    assert failed.unit_id is None
    retried = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG, fresh=True)
    assert retried.mode == "claude" and "NWP-AOVPN" in retried.text


def test_refresh_bypasses_the_cache_and_replaces_the_answer(rig: Rig) -> None:
    rig.api.script(text("Old answer [1]."), text("New answer [1]."))
    rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    refreshed = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG, fresh=True)
    assert refreshed.text == "New answer [1]." and not refreshed.cached
    again = rig.flow.answer("How do I connect to the VPN on Windows?", scope=ENG)
    assert again.cached and again.text == "New answer [1]."


def test_invented_citation_numbers_never_reach_the_answer(rig: Rig) -> None:
    rig.api.script(text("Use NWP-AOVPN [1] as documented [7]."))
    answer = rig.flow.answer("Windows VPN profile?", scope=ENG)
    assert "[7]" not in answer.text
    assert [s.n for s in answer.sources] == [1]


def test_a_channel_scope_never_sees_sources_outside_it(rig: Rig) -> None:
    rig.api.script(text("Nothing about salaries here."))
    rig.flow.answer("What is band L5 paid?", scope=ENG)
    sent = FakeMessagesAPI.user_text(rig.api.last_body)
    assert "Salary bands" not in sent and "L5 is paid" not in sent


def test_a_follow_up_is_condensed_into_its_own_question(rig: Rig) -> None:
    rig.api.script(text("WireGuard [1]."), text("NWP-AOVPN [1]."))
    rig.flow.answer("How do I connect to the VPN on macOS?", scope=ENG)
    history = [Turn("user", "How do I connect to the VPN on macOS?"), Turn("bot", "WireGuard [1].")]
    answer = rig.flow.answer("and on Windows?", scope=ENG, history=history)
    assert answer.standalone_question == "How do I connect to the VPN on Windows?"
    assert not answer.cached, "the follow-up has its own cache entry"
    assert "Windows" in FakeMessagesAPI.user_text(rig.api.last_body)


def test_without_a_model_the_answer_quotes_passages_and_says_so(rig: Rig) -> None:
    flow = Flow(
        db=rig.db,
        embedder=HashingEmbedder(),
        retriever=Retriever(rig.db, TokenCounter()),
        cache=rig.cache,
        answerer=ExtractiveAnswerer(),
        condense=condense_without_model,
    )
    answer = flow.answer("Which profile do Windows laptops connect with?", scope=ENG)
    assert answer.mode == "extractive"
    assert answer.text.startswith("No language model is configured")
    assert "NWP-AOVPN" in answer.text and answer.sources[0].title == "VPN on Windows"
    again = flow.answer("Which profile do Windows laptops connect with?", scope=ENG)
    assert again.cached and again.mode == "extractive"
