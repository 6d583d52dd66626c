from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import diskcache
import numpy as np

from store.embedders import Purpose, Vectors, normalise_rows
from store.embedders.memo import MemoEmbedder
from store.schema import EmbedderIdentity


class CountingEmbedder:
    """A deterministic fake embedder that records every text it was asked to embed."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    @property
    def identity(self) -> EmbedderIdentity:
        return EmbedderIdentity("fake:counting", 4)

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        self.seen.extend(texts)
        rows = [[len(t), t.count("a") + 1, 1.0 if purpose == "query" else 2.0, 3.0] for t in texts]
        return normalise_rows(np.array(rows, dtype=np.float32).reshape(len(texts), 4))


def test_unchanged_text_is_never_embedded_twice(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    memo = MemoEmbedder(inner, tmp_path / "memo")
    first = memo.embed(["alpha", "beta"])
    again = memo.embed(["beta", "alpha", "gamma"])
    assert inner.seen == ["alpha", "beta", "gamma"]
    assert np.array_equal(again[0], first[1]) and np.array_equal(again[1], first[0])
    assert (memo.hits, memo.misses) == (2, 3)


def test_the_memo_survives_a_restart(tmp_path: Path) -> None:
    MemoEmbedder(CountingEmbedder(), tmp_path / "memo").embed(["alpha"])
    inner = CountingEmbedder()
    MemoEmbedder(inner, tmp_path / "memo").embed(["alpha"])
    assert inner.seen == []


def test_duplicates_in_one_batch_are_embedded_once(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    out = MemoEmbedder(inner, tmp_path / "memo").embed(["same", "same", "other"])
    assert inner.seen == ["same", "other"]
    assert np.array_equal(out[0], out[1])


def test_queries_and_documents_are_memoised_separately(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    memo = MemoEmbedder(inner, tmp_path / "memo")
    doc = memo.embed(["vpn"])
    query = memo.embed(["vpn"], purpose="query")
    assert inner.seen == ["vpn", "vpn"]
    assert not np.array_equal(doc, query)


def test_the_memo_directory_is_private(tmp_path: Path) -> None:
    MemoEmbedder(CountingEmbedder(), tmp_path / "memo")
    assert (tmp_path / "memo").stat().st_mode & 0o777 == 0o700


def test_a_pickled_value_planted_in_the_memo_is_never_unpickled(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    memo = MemoEmbedder(inner, tmp_path / "memo")
    key = MemoEmbedder._key("fake:counting", "document", "planted")
    memo.close()

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path("/nonexistent/should-not-run").touch, ())  # type: ignore[return-value]

    with diskcache.Cache(str(tmp_path / "memo")) as raw:  # the default, pickling Disk
        raw.set(key, Boom())  # stored pickled
    assert pickle.dumps(Boom())  # the payload really is a pickle
    memo = MemoEmbedder(inner, tmp_path / "memo")
    vectors = memo.embed(["planted"])
    assert inner.seen == ["planted"], "the planted value is treated as a miss and replaced"
    assert vectors.shape == (1, 4)


def test_a_value_of_the_wrong_size_is_re_embedded(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    memo = MemoEmbedder(inner, tmp_path / "memo")
    memo._cache.set(MemoEmbedder._key("fake:counting", "document", "x"), b"\x00" * 3)
    memo.embed(["x"])
    assert inner.seen == ["x"]
