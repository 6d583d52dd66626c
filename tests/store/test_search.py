"""Hybrid retrieval against a real Postgres: scope in SQL, Jira keys, grouping, budgets,
modes, deletions, term statistics, sentence vectors and questions that could break a query.

Pages go in through the real sync engine (chunking, sentence splitting, embedding, the
one-transaction replace); the fake embedder hashes words, so texts sharing words are close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from fakes.connector import MemoryConnector
from fakes.embedder import HashingEmbedder

from store._scoring import parse_tsvector, pick_lexemes
from store.db import Database
from store.passages import Passage
from store.schema import bind_embedder
from store.scope import Scope
from store.search import Mode, Retriever, SearchSettings
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.engine import SyncEngine

EVERYTHING = Scope.everything()


@dataclass
class Rig:
    db: Database
    embedder: HashingEmbedder
    engine: SyncEngine
    wiki: MemoryConnector
    jira: MemoryConnector

    def sync(self) -> None:
        for connector in (self.wiki, self.jira):
            report = self.engine.run(connector, full=True)
            assert report.status == "ok", report.errors

    def retriever(self, settings: SearchSettings | None = None) -> Retriever:
        return Retriever(self.db, TokenCounter(), settings)

    def search(
        self,
        question: str,
        scope: Scope = EVERYTHING,
        *,
        mode: Mode = "hybrid",
        retriever: Retriever | None = None,
        limit: int = 8,
        token_budget: int = 3000,
    ) -> list[Passage]:
        vector = self.embedder.embed([question], purpose="query")[0]
        return (retriever or self.retriever()).search(
            question, vector, scope, mode=mode, limit=limit, token_budget=token_budget
        )

    def ids(
        self,
        question: str,
        scope: Scope = EVERYTHING,
        *,
        mode: Mode = "hybrid",
        retriever: Retriever | None = None,
        limit: int = 8,
    ) -> list[str]:
        passages = self.search(question, scope, mode=mode, retriever=retriever, limit=limit)
        return [p.artifact_id for p in passages]

    def count(self, sql: str) -> int:
        with self.db.connection() as conn:
            row = conn.execute(sql).fetchone()
        assert row is not None
        return int(next(iter(row.values())))


@pytest.fixture
def rig(db: Database) -> Rig:
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    engine = SyncEngine(db, embedder, Chunker(TokenCounter(), size=120, overlap=20))
    wiki = MemoryConnector("confluence", scopes=("ENG", "HR"))
    jira = MemoryConnector("jira", scopes=("OPS", "SEC"))
    wiki.put("1", "VPN on Windows", "Windows laptops connect with the NWP-AOVPN profile.")
    wiki.put("2", "VPN on macOS", "Mac laptops connect with the WireGuard app.")
    wiki.put("3", "Expense policy", "Travel expenses are claimed in the finance portal.")
    wiki.put("10", "Salary bands", "The salary band for staff engineers is L6.", scope="HR")
    jira.put(
        "OPS-412", "OPS-412: label queue stuck", "A malformed message blocked it.", scope="OPS"
    )
    jira.put("OPS-7", "OPS-7: VPN outage", "Windows VPN profile NWP-AOVPN failed.", scope="OPS")
    jira.put("SEC-1", "SEC-1: salary export", "Salary band export leaked to a share.", scope="SEC")
    return Rig(db, embedder, engine, wiki, jira)


# --- scope -----------------------------------------------------------------------------------


def test_scope_filters_in_sql_before_the_candidate_limits(rig: Rig) -> None:
    # Many out-of-scope pages beat the one in-scope page on both signals: a filter applied
    # after the top-k cut would leave nothing, a filter in SQL still finds the ENG page.
    for i in range(12):
        rig.wiki.put(
            f"hr{i}", f"Salary review {i}", "Salary band review for engineers.", scope="HR"
        )
    rig.wiki.put("4", "Career ladder", "Engineers grow from L4 to L6; salary follows the band.")
    rig.sync()
    narrow = rig.retriever(SearchSettings(vector_candidates=3, keyword_candidates=3))
    question = "salary band review for engineers"
    assert rig.ids(question, retriever=narrow)[0].startswith("confluence:hr")
    found = rig.ids(question, Scope.parse("confluence:ENG"), retriever=narrow)
    assert found and found[0] == "confluence:4"
    assert all(a in {"confluence:1", "confluence:2", "confluence:3", "confluence:4"} for a in found)


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_the_best_match_outside_the_scope_never_comes_back(rig: Rig, mode: Mode) -> None:
    rig.sync()
    question = "salary band for staff engineers"
    assert rig.ids(question, mode=mode)[0] == "confluence:10"
    for scope in ("confluence:ENG", "jira:OPS", "confluence:ENG,jira:OPS"):
        found = rig.ids(question, Scope.parse(scope), mode=mode)
        assert "confluence:10" not in found and "jira:SEC-1" not in found


def test_a_whole_source_scope_keeps_only_that_source(rig: Rig) -> None:
    rig.sync()
    found = rig.ids("Windows VPN profile NWP-AOVPN", Scope.parse("jira:*"))
    assert found[0] == "jira:OPS-7"
    assert set(found) <= {"jira:OPS-7", "jira:OPS-412", "jira:SEC-1"}
    both = rig.ids("Windows VPN profile NWP-AOVPN", Scope.parse("jira:*,confluence:ENG"))
    assert {"jira:OPS-7", "confluence:1"} <= set(both)
    assert "confluence:10" not in both


def test_the_everything_scope_sees_every_source_and_space(rig: Rig) -> None:
    rig.sync()
    found = rig.ids("salary band", EVERYTHING, limit=10)
    assert {"confluence:10", "jira:SEC-1"} <= set(found)


# --- Jira keys -------------------------------------------------------------------------------


def test_an_exact_jira_key_pulls_that_issue_first(rig: Rig) -> None:
    rig.sync()
    question = "Did OPS-412 break the Windows VPN profile NWP-AOVPN?"
    assert rig.ids("Windows VPN profile NWP-AOVPN")[0] != "jira:OPS-412"
    assert rig.ids(question)[0] == "jira:OPS-412"
    assert rig.ids(question, mode="keyword")[0] == "jira:OPS-412"
    assert "jira:OPS-412" not in rig.ids(question, Scope.parse("confluence:ENG"))


def test_an_unknown_or_deleted_jira_key_changes_nothing(rig: Rig) -> None:
    rig.sync()
    assert rig.ids("Windows VPN profile OPS-999")[0] in {"jira:OPS-7", "confluence:1"}
    rig.jira.docs.pop("jira:OPS-412")
    rig.sync()
    assert "jira:OPS-412" not in rig.ids("OPS-412 label queue stuck")


# --- grouping and budget ---------------------------------------------------------------------


def _long_page(rig: Rig) -> None:
    paragraphs = [
        f"Section {i}: the kafka brokers report consumer lag. " + "Filler words here. " * 30
        for i in range(8)
    ]
    paragraphs[5] = "Section 5: the zookeeper quorum lost its leader during the kafka upgrade."
    rig.wiki.put("20", "Kafka operations", "\n\n".join(paragraphs))


def test_one_passage_per_artifact_holding_its_best_chunks(rig: Rig) -> None:
    _long_page(rig)
    rig.sync()
    assert rig.count("SELECT count(*) FROM chunks WHERE artifact_id = 'confluence:20'") > 3
    passages = rig.search("zookeeper quorum leader kafka")
    ids = [p.artifact_id for p in passages]
    assert len(ids) == len(set(ids))
    kafka = passages[0]
    assert kafka.artifact_id == "confluence:20"
    assert 1 <= len(kafka.chunk_ids) <= 2
    assert "zookeeper quorum" in kafka.text
    one = rig.search(
        "zookeeper quorum leader kafka",
        retriever=rig.retriever(SearchSettings(chunks_per_artifact=1)),
    )
    assert len(one[0].chunk_ids) == 1 and "zookeeper quorum" in one[0].text


def test_the_token_budget_bounds_the_passages(rig: Rig) -> None:
    _long_page(rig)
    rig.sync()
    counter = TokenCounter()
    passages = rig.search("kafka brokers consumer lag laptops", token_budget=150)
    assert passages and sum(counter.count(p.text) for p in passages) <= 160
    everything = rig.search("kafka brokers consumer lag laptops", token_budget=10**6)
    assert sum(counter.count(p.text) for p in everything) > 160
    assert len(rig.search("kafka brokers consumer lag laptops", limit=2)) <= 2


# --- modes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_each_mode_finds_the_obvious_page(rig: Rig, mode: Mode) -> None:
    rig.sync()
    assert rig.ids("WireGuard app for Mac laptops", mode=mode)[0] == "confluence:2"


def test_keyword_mode_needs_a_shared_word_and_vector_mode_does_not(rig: Rig) -> None:
    rig.sync()
    assert rig.ids("zyzzyva quixotic", mode="keyword") == []
    assert rig.ids("zyzzyva quixotic", mode="vector") != []
    assert rig.ids("zyzzyva quixotic", mode="hybrid") != [], "no indexed word: vector only"


def test_vector_mode_without_a_vector_returns_nothing(rig: Rig) -> None:
    rig.sync()
    retriever = rig.retriever()
    assert retriever.search("WireGuard", None, EVERYTHING, mode="vector") == []
    found = retriever.search("WireGuard", None, EVERYTHING, mode="hybrid")
    assert [p.artifact_id for p in found][:1] == ["confluence:2"], "keyword only"


def test_a_question_of_stopwords_only_still_gets_vector_results(rig: Rig) -> None:
    rig.sync()
    assert rig.ids("what is the of and", mode="keyword") == []
    assert rig.ids("what is the of and") != []


@pytest.mark.parametrize(
    "question",
    [
        "",
        "   ",
        "it's O'Neil's \\ 'quoted' \"phrase\"",
        "& | ! : * ( ) <-> <2> :* :A",
        "a\\b c:\\users\\x 'a''b' \\'",
        "DROP TABLE chunks; -- %s %(x)s {0}",
        "ünïcödé ∑ 😀 NUL-free",
    ],
)
@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_sql_special_characters_never_break_the_query(rig: Rig, question: str, mode: Mode) -> None:
    rig.wiki.put("30", "Odd page", "O'Neil's C:\\temp\\x path & pipes | bangs ! (parens) *")
    rig.sync()
    rig.search(question, mode=mode)
    assert rig.count("SELECT count(*) FROM chunks") > 0


def test_apostrophes_and_backslashes_still_match_their_page(rig: Rig) -> None:
    rig.wiki.put("30", "Odd page", "O'Neil's runbook lives under C:\\ops\\runbooks today.")
    rig.sync()
    assert rig.ids("O'Neil's runbook C:\\ops", mode="keyword")[0] == "confluence:30"


# --- freshness -------------------------------------------------------------------------------


def test_deleted_artifacts_are_never_returned(rig: Rig) -> None:
    rig.sync()
    assert "confluence:2" in rig.ids("WireGuard app for Mac laptops")
    rig.wiki.docs.pop("confluence:2")
    rig.sync()
    for mode in ("hybrid", "vector", "keyword"):
        assert "confluence:2" not in rig.ids("WireGuard app for Mac laptops", mode=mode)
    assert rig.count("SELECT count(*) FROM chunk_sentences WHERE artifact_id = 'confluence:2'") == 0


def test_a_tombstoned_artifact_whose_chunks_linger_is_not_returned(rig: Rig) -> None:
    rig.sync()
    with rig.db.connection() as conn:
        conn.execute("UPDATE artifacts SET deleted_at = now() WHERE artifact_id = 'confluence:2'")
    assert "confluence:2" not in rig.ids("WireGuard app for Mac laptops")


def test_term_stats_refresh_after_a_sync_changes_scores(rig: Rig) -> None:
    rig.sync()
    before = rig.search("WireGuard", mode="keyword")
    assert before[0].artifact_id == "confluence:2"
    # WireGuard becomes a common word: its IDF, and so the page's BM25 score, drops.
    for i in range(8):
        rig.wiki.put(f"w{i}", f"Note {i}", f"WireGuard is mentioned in note {i}.")
    rig.sync()
    after = rig.search("WireGuard", mode="keyword", limit=20)
    page = next(p for p in after if p.artifact_id == "confluence:2")
    assert page.score < before[0].score
    assert rig.count("SELECT ndoc FROM term_stats WHERE lexeme = 'wireguard'") == 9


def test_an_edit_is_searchable_at_once_and_the_old_text_is_gone(rig: Rig) -> None:
    rig.sync()
    rig.wiki.put("2", "VPN on macOS", "Mac laptops now use the Tailscale client.")
    rig.sync()
    assert rig.ids("Tailscale client", mode="keyword") == ["confluence:2"]
    assert "confluence:2" not in rig.ids("WireGuard", mode="keyword")


# --- sentence vectors ------------------------------------------------------------------------


def test_each_chunk_has_its_sentences_embedded_and_replaced_with_it(rig: Rig) -> None:
    rig.wiki.put("5", "Backups", "Backups run nightly at two. Restores are tested monthly.")
    rig.sync()
    rows = rig.count("SELECT count(*) FROM chunk_sentences WHERE artifact_id = 'confluence:5'")
    assert rows == 2
    calls = rig.embedder.calls
    rig.sync()
    assert rig.embedder.calls == calls, "unchanged text: no embedding at all"
    rig.wiki.put("5", "Backups", "Backups run hourly now.")
    rig.sync()
    assert rig.count("SELECT count(*) FROM chunk_sentences WHERE artifact_id = 'confluence:5'") == 1
    assert "Backups run hourly now." in rig.embedder.seen


def test_the_best_sentence_lifts_a_long_chunk_that_contains_the_answer(rig: Rig) -> None:
    filler = " ".join(
        f"The cafeteria menu for day {i} lists soup, bread, salad and fruit." for i in range(9)
    )
    rig.wiki.put("40", "Office handbook", f"{filler} Rotate the signing keys every month.")
    rig.sync()
    question = "rotate the signing keys every month"
    with_sentences = rig.ids(question, mode="vector")
    chunk_only = rig.ids(
        question, mode="vector", retriever=rig.retriever(SearchSettings(sentence_weight=0.0))
    )
    assert with_sentences[0] == "confluence:40"
    assert chunk_only[0] != "confluence:40", "the whole-chunk vector is diluted by the filler"


def test_chunks_without_sentence_rows_fall_back_to_the_chunk_cosine(rig: Rig) -> None:
    rig.sync()
    with rig.db.connection() as conn:
        conn.execute("DELETE FROM chunk_sentences")
    assert rig.ids("WireGuard app for Mac laptops", mode="vector")[0] == "confluence:2"


def test_pick_lexemes_reads_what_parse_tsvector_reads() -> None:
    text = "'bowl':2A,5 'o''neil':7C 'super':1A,4,9B 'a\\\\b':3"
    full = parse_tsvector(text)
    picked = pick_lexemes(text, ["super", "o'neil", "missing", "bowl"], full.length)
    assert picked.tf == {k: full.tf[k] for k in ("super", "o'neil", "bowl")}
    assert picked.positions["super"] == (1, 4, 9)
    assert pick_lexemes(text, ["neil", "a\\b"], 1).tf == {"a\\b": 1.0}


def test_rank_chunks_orders_scores_best_first(rig: Rig) -> None:
    rig.sync()
    vector = rig.embedder.embed(["WireGuard app"], purpose="query")[0]
    ranked = rig.retriever().rank_chunks("WireGuard app", vector, EVERYTHING)
    scores = list(ranked.values())
    assert scores == sorted(scores, reverse=True)
    assert isinstance(vector, np.ndarray)


def test_a_word_every_candidate_shares_does_not_outvote_the_word_that_sets_one_apart(
    db: Database,
) -> None:
    # Every page of the gateway team names the parcel gateway: the words are rare in the store
    # as a whole, so their corpus IDF is high, but they say nothing about which page answers.
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    engine = SyncEngine(db, embedder, Chunker(TokenCounter(), size=120, overlap=20))
    wiki = MemoryConnector("confluence", scopes=("ENG",))
    for i in range(100):
        chore = "Rotate the lunch menu weekly." if i < 60 else "Soup is served daily."
        wiki.put(f"other{i}", f"Team note {i}", f"Cafeteria page {i}. {chore}")
    keys = "The parcel gateway uses signing keys that rotate every ninety days."
    wiki.put("rotation", "Runbook A", keys)
    wiki.put(
        "dashboard",
        "Runbook B",
        "Parcel gateway keys: the parcel gateway dashboard shows parcel gateway latency, "
        "parcel gateway errors and parcel gateway queues.",
    )
    for i in range(20):
        wiki.put(f"gw{i}", f"Runbook {i}", f"Restart parcel gateway node {i}.")
    assert engine.run(wiki, full=True).status == "ok"
    question = "How often do the parcel gateway keys rotate?"
    vector = embedder.embed([question], purpose="query")[0]

    def first(settings: SearchSettings) -> str:
        retriever = Retriever(db, TokenCounter(), settings)
        return retriever.search(question, vector, EVERYTHING, mode="keyword")[0].artifact_id

    assert first(SearchSettings()) == "confluence:rotation"
    # Weighting by corpus rarity alone, the page that repeats the shared words wins.
    assert first(SearchSettings(candidate_idf_power=0.0)) == "confluence:dashboard"


def _postings_store(db: Database) -> SyncEngine:
    """130 filler pages; "zebra" in 12 pages (the longest of them also says "stripe"), and
    "stripe" in 30 pages in all: rare enough to be informative, past a budget of 20."""
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    engine = SyncEngine(db, embedder, Chunker(TokenCounter(), size=120, overlap=20))
    wiki = MemoryConnector("confluence", scopes=("ENG",))
    for i in range(130):
        wiki.put(f"filler{i}", f"Cafeteria {i}", f"Lunch menu {i} lists soup and bread.")
    for i in range(11):
        wiki.put(f"zebra{i}", f"Zoo note {i}", f"The zebra {i} eats grass.")
    wiki.put(
        "both",
        "Zoo note long",
        "The zebra with the widest stripe eats grass near the river every morning at dawn.",
    )
    for i in range(29):
        wiki.put(f"stripe{i}", f"Paint note {i}", f"A stripe of paint {i} marks the road.")
    assert engine.run(wiki, full=True).status == "ok"
    return engine


def _keyword_ids(db: Database, question: str, settings: SearchSettings) -> list[str]:
    vector = HashingEmbedder().embed([question], purpose="query")[0]
    passages = Retriever(db, TokenCounter(), settings).search(
        question, vector, EVERYTHING, mode="keyword", limit=50
    )
    return [p.artifact_id for p in passages]


def test_a_lexeme_past_the_postings_budget_does_not_pick_keyword_candidates(db: Database) -> None:
    _postings_store(db)
    bounded = _keyword_ids(db, "zebra stripe", SearchSettings(keyword_postings=20))
    # Only the 12 zebra pages' postings are read: the 30 of "stripe" would pass the budget.
    assert len(bounded) == 12
    assert all(a.startswith(("confluence:zebra", "confluence:both")) for a in bounded)
    unbounded = _keyword_ids(db, "zebra stripe", SearchSettings(keyword_postings=None))
    assert len(unbounded) == 12 + 29


def test_a_lexeme_past_the_budget_still_ranks_the_rarer_lexemes_candidates(db: Database) -> None:
    _postings_store(db)
    one = {"keyword_postings": 20, "keyword_candidates": 1}
    # A pool of the 12 best zebra pages: the one candidate is the zebra page that also says
    # "stripe", though it is the longest.
    pooled = _keyword_ids(db, "zebra stripe", SearchSettings(**one, keyword_pool=12))
    assert pooled == ["confluence:both"]
    # Without the second look at the pool, the shortest zebra page would be taken.
    shortest = _keyword_ids(db, "zebra stripe", SearchSettings(**one, keyword_pool=1))
    assert shortest != ["confluence:both"]


def test_when_even_the_rarest_word_is_past_the_budget_the_pages_holding_every_word_are_read(
    db: Database,
) -> None:
    _postings_store(db)
    # "zebra" (12 pages) alone is past a budget of 10: instead of reading it whole, only the
    # pages holding both words are candidates.
    assert _keyword_ids(db, "zebra stripe", SearchSettings(keyword_postings=10)) == [
        "confluence:both"
    ]


def test_a_single_common_word_reads_no_more_rows_than_the_budget(db: Database) -> None:
    _postings_store(db)
    assert len(_keyword_ids(db, "stripe", SearchSettings(keyword_postings=10))) == 10
    assert len(_keyword_ids(db, "stripe", SearchSettings(keyword_postings=None))) == 30
