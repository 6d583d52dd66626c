"""The answer cache contract (docs/ARCHITECTURE.md, "The answer cache"), run over both backends."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest
from cache_kit import Store, axis, make_unit, toward

from store.cache import CacheLimits, Generated, Hit, Miss, Place, Unit
from store.cache._core import CacheCore
from store.scope import Scope

CacheFactory = Callable[..., CacheCore]

EVERYTHING = Scope.everything()


def hit(result: Hit | Miss | Generated) -> Hit:
    assert isinstance(result, Hit), result
    return result


def miss(result: Hit | Miss | Generated) -> Miss:
    assert isinstance(result, Miss), result
    return result


# -- lookup ------------------------------------------------------------------------------------


def test_exact_match_ignores_case_punctuation_and_whitespace(cache: CacheCore) -> None:
    unit = make_unit("How do I request VPN access?")
    cache.put(unit, axis(0))
    # An unrelated embedding: only the normalised text can match.
    found = hit(cache.lookup("  how do i REQUEST vpn   access ", EVERYTHING, axis(5)))
    assert found.exact and found.unit.unit_id == unit.unit_id
    assert found.unit.answer == "Do the thing [1]."
    assert found.unit.served_count == 1


def test_nearest_neighbour_at_or_above_the_threshold_is_served(cache: CacheCore) -> None:
    unit = make_unit("How do I request VPN access?")
    cache.put(unit, axis(0))
    found = hit(cache.lookup("What's the process to get VPN access", EVERYTHING, toward(0, 0.95)))
    assert not found.exact and found.unit.unit_id == unit.unit_id
    assert found.similarity == pytest.approx(0.95, abs=1e-4)


def test_below_the_threshold_is_a_miss(cache: CacheCore) -> None:
    cache.put(make_unit("How do I request VPN access?"), axis(0))
    result = miss(cache.lookup("How do I request GitHub access?", EVERYTHING, toward(0, 0.80)))
    assert result.reason == "threshold"


def test_two_close_candidates_with_different_sources_is_a_margin_miss(
    cache: CacheCore, store: Store
) -> None:
    store.artifact("confluence:2")
    cache.put(make_unit("Who owns billing?"), toward(0, 0.95, away=1))
    cache.put(make_unit("Who owns invoicing?", {"confluence:2": ("h1", "1")}), toward(0, 0.94, 2))
    result = miss(cache.lookup("who runs billing and invoicing", EVERYTHING, axis(0)))
    assert result.reason == "margin"
    # A clear winner passes: the runner-up is more than the margin behind.
    cache.put(make_unit("Who owns accounts payable?"), toward(3, 0.99, away=4))
    cache.put(make_unit("Who owns receivables?", {"confluence:2": ("h1", "1")}), toward(3, 0.9, 5))
    assert hit(cache.lookup("who runs payables", EVERYTHING, axis(3)))


def test_close_candidates_citing_the_same_sources_are_not_rivals(cache: CacheCore) -> None:
    cache.put(make_unit("Who owns billing?"), toward(0, 0.95, away=1))
    cache.put(make_unit("Which team owns billing?"), toward(0, 0.94, away=2))
    assert hit(cache.lookup("who is the billing owner", EVERYTHING, axis(0)))


def test_different_entities_are_never_served_however_similar(cache: CacheCore) -> None:
    cache.put(make_unit("How do I set up the VPN on macOS?"), axis(0))
    result = cache.lookup("How do I set up the VPN on Windows?", EVERYTHING, toward(0, 0.99))
    assert miss(result).reason == "entities"
    result = cache.lookup("How do I set up the VPN on a Mac?", EVERYTHING, toward(0, 0.99))
    assert hit(result)


def test_a_unit_built_in_a_wider_scope_is_never_served_to_a_narrower_one(
    cache: CacheCore,
) -> None:
    cache.put(make_unit("How do I request VPN access?", scope=EVERYTHING), axis(0))
    narrow = Scope.parse("confluence:ENG")
    assert miss(cache.lookup("How do I request VPN access?", narrow, axis(0)))
    # ... and the other way round: the scopes are separate caches.
    cache.put(make_unit("How do I rotate keys?", scope=narrow), axis(1))
    assert miss(cache.lookup("How do I rotate keys?", EVERYTHING, axis(1)))
    assert hit(cache.lookup("How do I rotate keys?", narrow, axis(1)))


def test_a_source_the_scope_cannot_see_now_is_refused(cache: CacheCore, store: Store) -> None:
    narrow = Scope.parse("confluence:ENG")
    cache.put(make_unit("How do I request VPN access?", scope=narrow), axis(0))
    store.artifact("confluence:1", scope_key="HR")  # the page moved to a space ENG cannot see
    result = miss(cache.lookup("How do I request VPN access?", narrow, axis(0)))
    assert result.reason == "scope"


# -- freshness on read -------------------------------------------------------------------------


def test_a_unit_whose_source_moved_in_the_store_is_refused_and_dirtied(
    cache: CacheCore, store: Store
) -> None:
    unit = make_unit("How do I request VPN access?")
    cache.put(unit, axis(0))
    store.artifact("confluence:1", content_hash="h2", version="2")  # nobody told the cache
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "stale"
    assert cache.get(unit.unit_id).dirty  # type: ignore[union-attr]
    store.artifact("confluence:1", content_hash="h1", version="1")
    # Dirtied units are never served again, even when the source comes back.
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "dirty"
    assert miss(cache.lookup("How to request VPN access", EVERYTHING, toward(0, 0.99)))
    assert cache.stats()["stale_prevented"] == 2


def test_a_unit_citing_a_deleted_artifact_is_refused(cache: CacheCore, store: Store) -> None:
    cache.put(make_unit("How do I request VPN access?"), axis(0))
    store.artifact("confluence:1", deleted=True)
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "stale"


def test_a_unit_citing_an_artifact_the_store_never_had_is_refused(cache: CacheCore) -> None:
    cache.put(make_unit("Who owns billing?", {"jira:OPS-1": ("h", "1")}), axis(0))
    assert miss(cache.lookup("Who owns billing?", EVERYTHING, axis(0))).reason == "stale"


# -- invalidation ------------------------------------------------------------------------------


def test_version_only_change_is_skipped_and_keeps_serving(cache: CacheCore, store: Store) -> None:
    unit = make_unit("How do I request VPN access?")
    cache.put(unit, axis(0))
    store.artifact("confluence:1", content_hash="h1", version="7")
    result = cache.source_changed("confluence:1", content_hash="h1", version="7")
    assert (result.dirtied, result.skipped_unchanged, result.matched) == (0, 1, 1)
    assert result.places == ()
    served = hit(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).unit
    assert served.provenance["confluence:1"].version == "7"


def test_identical_resync_is_skipped(cache: CacheCore) -> None:
    cache.put(make_unit("How do I request VPN access?"), axis(0))
    result = cache.source_changed("confluence:1", content_hash="h1", version="1")
    assert (result.dirtied, result.skipped_unchanged, result.evicted, result.matched) == (
        0,
        1,
        0,
        1,
    )
    assert hit(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0)))


def test_hash_change_dirties_exactly_the_citing_units_and_returns_their_places(
    cache: CacheCore, store: Store
) -> None:
    store.artifact("confluence:2")
    citing = make_unit("How do I request VPN access?")
    other = make_unit("Who owns billing?", {"confluence:2": ("h1", "1")})
    cache.put(citing, axis(0))
    cache.put(other, axis(1))
    thread = Place("slack", "C1", "1712.0001")
    cache.record_post(citing.unit_id, thread)
    cache.record_post(citing.unit_id, thread)  # recorded once
    store.artifact("confluence:1", content_hash="h2", version="2")
    result = cache.source_changed("confluence:1", content_hash="h2", version="2")
    assert (result.dirtied, result.skipped_unchanged, result.matched) == (1, 0, 1)
    assert result.places == ((citing.unit_id, thread),)
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "dirty"
    assert hit(cache.lookup("Who owns billing?", EVERYTHING, axis(1)))
    # Reported once: the same change arriving again (webhook and sync) matches nothing.
    again = cache.source_changed("confluence:1", content_hash="h2", version="2")
    assert (again.dirtied, again.matched, again.places) == (0, 0, ())
    assert cache.stats()["dirtied"] == 1


def test_a_unit_dirtied_by_a_read_still_gets_its_notice(cache: CacheCore, store: Store) -> None:
    unit = make_unit("How do I request VPN access?")
    cache.put(unit, axis(0))
    cache.record_post(unit.unit_id, Place("slack", "C1", "1.1"))
    store.artifact("confluence:1", content_hash="h2", version="2")
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "stale"
    # The bot noticed first; the daemon's invalidation still reports the thread.
    result = cache.source_changed("confluence:1", content_hash="h2", version="2")
    assert result.dirtied == 1 and result.places == ((unit.unit_id, Place("slack", "C1", "1.1")),)


def test_source_deleted_evicts_and_returns_places(cache: CacheCore, store: Store) -> None:
    unit = make_unit("How do I request VPN access?")
    cache.put(unit, axis(0))
    cache.record_post(unit.unit_id, Place("slack", "C1", "1.1"))
    cache.record_post(unit.unit_id, Place("teams", "T1", "r1"))
    store.artifact("confluence:1", deleted=True)
    result = cache.source_deleted("confluence:1")
    assert (result.evicted, result.matched) == (1, 1)
    assert {p for _, p in result.places} == {
        Place("slack", "C1", "1.1"),
        Place("teams", "T1", "r1"),
    }
    assert cache.get(unit.unit_id) is None
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "empty"
    assert cache.stats()["units"] == 0 and cache.stats()["evictions"] == 1


def test_a_change_nothing_depends_on_is_reported_and_warned(
    cache: CacheCore, caplog: pytest.LogCaptureFixture
) -> None:
    cache.put(make_unit("How do I request VPN access?"), axis(0))
    with caplog.at_level(logging.WARNING, logger="store.cache"):
        result = cache.source_changed("confluence:999", content_hash="x", version="2")
        deleted = cache.source_deleted("jira:NOPE-1")
    assert result.matched == 0 and deleted.matched == 0
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("confluence:999" in m for m in warned)
    assert any("jira:NOPE-1" in m for m in warned)


def test_a_replaced_answer_serves_the_new_unit(cache: CacheCore, store: Store) -> None:
    first = make_unit("How do I request VPN access?", answer="old")
    cache.put(first, axis(0))
    store.artifact("confluence:1", content_hash="h2", version="2")
    cache.source_changed("confluence:1", content_hash="h2", version="2")
    second = make_unit("How do I request VPN access?", {"confluence:1": ("h2", "2")}, answer="new")
    cache.put(second, axis(0))
    assert (
        hit(cache.lookup("how do i request vpn access", EVERYTHING, axis(0))).unit.answer == "new"
    )
    assert cache.get(first.unit_id) is None  # the reported, superseded unit is gone


# -- size bound --------------------------------------------------------------------------------


def test_size_bound_evicts_least_recently_served_first(
    make_cache: CacheFactory, store: Store
) -> None:
    store.artifact("confluence:1")
    cache = make_cache(limits=CacheLimits(max_units=3, max_bytes=10_000_000))
    units = [make_unit(q) for q in ("alpha one", "bravo two", "charlie three")]
    for i, unit in enumerate(units):
        cache.put(unit, axis(i))
    time.sleep(0.002)
    hit(cache.lookup("alpha one", EVERYTHING, axis(0)))
    hit(cache.lookup("charlie three", EVERYTHING, axis(2)))
    cache.put(make_unit("delta four"), axis(3))
    assert cache.get(units[1].unit_id) is None  # never served since it was stored
    assert cache.get(units[0].unit_id) is not None and cache.get(units[2].unit_id) is not None
    stats = cache.stats()
    assert stats["units"] == 3 and stats["evictions"] == 1
    assert miss(cache.lookup("bravo two", EVERYTHING, axis(1)))


def test_size_bound_in_bytes(make_cache: CacheFactory, store: Store) -> None:
    store.artifact("confluence:1")
    cache = make_cache(limits=CacheLimits(max_units=1000, max_bytes=6000))
    for i in range(8):
        cache.put(make_unit(f"question number {i}", answer="x" * 1000), axis(i))
    stats = cache.stats()
    assert 0 < stats["units"] < 8 and stats["bytes"] <= 6000
    assert hit(cache.lookup("question number 7", EVERYTHING, axis(7)))


def test_dirty_units_are_evicted_before_live_ones(make_cache: CacheFactory, store: Store) -> None:
    store.artifact("confluence:1")
    store.artifact("confluence:2")
    cache = make_cache(limits=CacheLimits(max_units=2, max_bytes=10_000_000))
    live = make_unit("alpha one")
    doomed = make_unit("bravo two", {"confluence:2": ("h1", "1")})
    cache.put(live, axis(0))
    cache.put(doomed, axis(1))
    cache.source_changed("confluence:2", content_hash="h2", version="2")
    cache.put(make_unit("charlie three"), axis(2))
    assert cache.get(doomed.unit_id) is None and cache.get(live.unit_id) is not None


# -- single flight -----------------------------------------------------------------------------


def test_concurrent_identical_misses_generate_once(cache: CacheCore) -> None:
    calls: list[int] = []
    results: list[object] = []
    barrier = threading.Barrier(8)

    def generate() -> Unit:
        calls.append(1)
        time.sleep(0.3)
        return make_unit("How do I request VPN access?", answer="generated once")

    def ask() -> None:
        barrier.wait()
        results.append(
            cache.get_or_generate("how do I request VPN access", EVERYTHING, axis(0), generate)
        )

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(calls) == 1
    assert len(results) == 8
    generated = [r for r in results if isinstance(r, Generated)]
    hits = [r for r in results if isinstance(r, Hit)]
    assert len(generated) == 1 and len(hits) == 7
    assert {h.unit.unit_id for h in hits} == {generated[0].unit.unit_id}
    assert all(h.unit.answer == "generated once" for h in hits)
    assert cache.stats()["generations"] == 1


def test_a_failed_generation_is_never_cached(cache: CacheCore) -> None:
    def boom() -> Unit:
        raise RuntimeError("model overloaded")

    with pytest.raises(RuntimeError):
        cache.get_or_generate("How do I request VPN access?", EVERYTHING, axis(0), boom)
    nothing = cache.get_or_generate(
        "How do I request VPN access?", EVERYTHING, axis(0), lambda: None
    )
    assert isinstance(nothing, Miss)
    assert miss(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0))).reason == "empty"
    # The lock was released: the next attempt generates and is cached.
    made = cache.get_or_generate(
        "How do I request VPN access?",
        EVERYTHING,
        axis(0),
        lambda: make_unit("How do I request VPN access?"),
    )
    assert isinstance(made, Generated) and made.cached
    assert hit(cache.lookup("How do I request VPN access?", EVERYTHING, axis(0)))


def test_an_answer_that_depends_on_nothing_is_not_cached(cache: CacheCore) -> None:
    bare = make_unit("Is there a page about llamas?", {})
    made = cache.get_or_generate("Is there a page about llamas?", EVERYTHING, axis(0), lambda: bare)
    assert isinstance(made, Generated) and not made.cached
    assert miss(cache.lookup("Is there a page about llamas?", EVERYTHING, axis(0)))
    with pytest.raises(ValueError):
        cache.put(bare, axis(0))


# -- counters and sharing ----------------------------------------------------------------------


def test_stats_count_hits_and_misses_by_gate(cache: CacheCore) -> None:
    cache.put(make_unit("How do I set up the VPN on macOS?"), axis(0))
    hit(cache.lookup("How do I set up the VPN on macOS?", EVERYTHING, axis(0)))
    hit(cache.lookup("How to set up VPN on a mac", EVERYTHING, toward(0, 0.97)))
    miss(cache.lookup("How do I set up the VPN on Windows?", EVERYTHING, toward(0, 0.97)))
    miss(cache.lookup("Who owns billing?", EVERYTHING, axis(4)))
    stats = cache.stats()
    assert (stats["hits"], stats["hits_exact"], stats["hits_nearest"]) == (2, 1, 1)
    assert (stats["misses"], stats["miss_entities"], stats["miss_threshold"]) == (2, 1, 1)


def test_two_handles_on_one_cache_see_each_others_writes(
    make_cache: CacheFactory, store: Store
) -> None:
    store.artifact("confluence:1")
    bot, daemon = make_cache(), make_cache()
    unit = make_unit("How do I request VPN access?")
    daemon.put(unit, axis(0))
    assert hit(bot.lookup("How do I request VPN access?", EVERYTHING, toward(0, 0.99)))
    store.artifact("confluence:1", content_hash="h2", version="2")
    daemon.source_changed("confluence:1", content_hash="h2", version="2")
    assert miss(bot.lookup("How do I request VPN access?", EVERYTHING, toward(0, 0.99)))
    assert bot.stats()["hits"] == 1
