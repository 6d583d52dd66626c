from __future__ import annotations

from dataclasses import dataclass

import pytest
from fakes.connector import MemoryConnector
from fakes.embedder import HashingEmbedder

from store.db import Database
from store.schema import bind_embedder
from store.scope import Scope
from store.search import Mode, Retriever
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.engine import SyncEngine

EVERYTHING = Scope.everything()


@dataclass
class Index:
    db: Database
    retriever: Retriever
    embedder: HashingEmbedder

    def ids(self, question: str, scope: Scope = EVERYTHING, *, mode: Mode = "hybrid") -> list[str]:
        vector = self.embedder.embed([question], purpose="query")[0]
        passages = self.retriever.search(question, vector, scope, mode=mode)
        return [p.artifact_id for p in passages]


@pytest.fixture
def index(db: Database) -> Index:
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    engine = SyncEngine(db, embedder, Chunker(TokenCounter()))
    wiki = MemoryConnector("confluence", scopes=("ENG", "HR"))
    wiki.put("1", "VPN on Windows", "Windows laptops connect with the NWP-AOVPN profile.")
    wiki.put("2", "VPN on macOS", "Mac laptops connect with the WireGuard app.")
    wiki.put("3", "Salary bands", "The VPN salary band for engineers is L5.", scope="HR")
    wiki.put(
        "4",
        "Long page",
        "\n\n".join(f"Paragraph {i} about kafka brokers " + "lag " * 300 for i in range(6)),
    )
    jira = MemoryConnector("jira", scopes=("OPS",))
    jira.put(
        "OPS-412",
        "OPS-412: label queue stuck",
        "A malformed message blocked the queue.",
        scope="OPS",
    )
    jira.put(
        "OPS-7",
        "OPS-7: VPN outage",
        "Windows VPN profile NWP-AOVPN failed for an hour.",
        scope="OPS",
    )
    for connector in (wiki, jira):
        engine.run(connector, full=True)
    return Index(db, Retriever(db, TokenCounter()), embedder)


def test_the_page_that_answers_comes_first(index: Index) -> None:
    assert index.ids("Which profile do Windows laptops use for the VPN?")[0] == "confluence:1"


def test_a_scope_is_applied_in_sql_even_to_the_best_match(index: Index) -> None:
    eng = Scope.parse("confluence:ENG")
    found = index.ids("VPN salary band for engineers", eng)
    assert "confluence:3" not in found and found, "HR is outside the channel's scope"
    assert all(a.startswith("confluence:") for a in found)
    assert index.ids("VPN salary band for engineers", Scope.parse("confluence:HR")) == [
        "confluence:3"
    ]


def test_a_whole_source_scope_keeps_only_that_source(index: Index) -> None:
    found = index.ids("Windows VPN NWP-AOVPN", Scope.parse("jira:*"))
    assert found[0] == "jira:OPS-7"
    assert all(a.startswith("jira:") for a in found)


def test_an_exact_jira_key_pulls_that_issue_first(index: Index) -> None:
    assert index.ids("What happened in OPS-412 with the Windows VPN?")[0] == "jira:OPS-412"
    assert "jira:OPS-412" not in index.ids("OPS-412 status", Scope.parse("confluence:ENG"))


def test_results_are_one_per_artifact_with_at_most_two_chunks(index: Index) -> None:
    vector = index.embedder.embed(["kafka brokers lag"], purpose="query")[0]
    passages = index.retriever.search("kafka brokers lag", vector, Scope.everything())
    ids = [p.artifact_id for p in passages]
    assert len(ids) == len(set(ids))
    long_page = next(p for p in passages if p.artifact_id == "confluence:4")
    assert 1 <= len(long_page.chunk_ids) <= 2


def test_the_token_budget_bounds_what_is_returned(index: Index) -> None:
    vector = index.embedder.embed(["kafka brokers lag"], purpose="query")[0]
    passages = index.retriever.search(
        "kafka brokers lag", vector, Scope.everything(), token_budget=200
    )
    counter = TokenCounter()
    assert passages and sum(counter.count(p.text) for p in passages) <= 210


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_each_mode_finds_the_obvious_page(index: Index, mode: Mode) -> None:
    assert index.ids("WireGuard app for Mac laptops", mode=mode)[0] == "confluence:2"


@pytest.mark.parametrize(
    "question", ["", "the of and", "it's \\ 'quoted' & | ! : * ( ) <-> \"phrase", "DROP TABLE x;"]
)
def test_odd_questions_never_break_the_query(index: Index, question: str) -> None:
    index.ids(question)


def test_a_deleted_page_is_never_returned(index: Index) -> None:
    with index.db.connection() as conn:
        conn.execute("UPDATE artifacts SET deleted_at = now() WHERE artifact_id = 'confluence:2'")
    assert "confluence:2" not in index.ids("WireGuard app for Mac laptops")
