"""Question embeddings of the diskcache backend: per-scope segments of raw binary files.

A segment (one scope, one dimension) is four append-only files, row ``i`` of each describing
one unit: ``ids`` (32-byte uuid hex), ``codes`` (256-bit SimHash sign codes), ``vecs`` (float32)
and ``dead`` (one byte, non-zero once the unit may no longer be served). They hold plain
numbers — nothing in them is ever unpickled or executed — and are memory-mapped, so opening
100k units costs milliseconds. How many rows are committed, and which generation of the files
is current, lives in the diskcache (:class:`SegmentMeta`), written in the same transaction as
the rows; a reader never looks past the committed count.

Search: Hamming distance on the codes picks every row that could reach the similarity cutoff
(the bound below is 5 standard deviations wide), then exact float32 cosine re-ranks them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.errors import CacheError
from store.embedders import Vectors
from store.safe_disk import private_directory

BITS = 256
WORDS = BITS // 64
ID_BYTES = 32
_RERANK = 512  # most rows re-ranked exactly, when a dense cluster passes the Hamming bound
_KINDS = ("ids", "codes", "vecs", "dead")

Codes = npt.NDArray[np.uint64]


@lru_cache(maxsize=8)
def _projection(dim: int) -> Vectors:
    """Fixed random +-1 hyperplanes derived from a hash: identical in every process, forever."""
    raw = hashlib.shake_256(f"kb-answer-cache:{dim}:{BITS}".encode()).digest(dim * BITS // 8)
    bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8)).reshape(dim, BITS)
    out: Vectors = bits.astype(np.float32) * 2.0 - 1.0
    return out


def codes_of(vectors: Vectors) -> Codes:
    """(m, WORDS) sign codes of (m, dim) vectors."""
    signs = (vectors @ _projection(vectors.shape[1])) > 0
    out: Codes = np.packbits(signs, axis=1).view("<u8").astype(np.uint64)
    return out


def hamming_bound(cutoff: float) -> int:
    """Most differing bits a row with cosine >= cutoff shows, with overwhelming probability."""
    p = math.acos(max(-1.0, min(1.0, cutoff))) / math.pi
    return math.ceil(BITS * p + 5.0 * math.sqrt(BITS * p * (1.0 - p)))


@dataclass(frozen=True)
class SegmentMeta:
    name: str
    scope_key: str
    dim: int
    gen: int = 0
    count: int = 0
    dead: int = 0

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, data: Any) -> SegmentMeta:
        try:
            meta = cls(**data)
        except TypeError as exc:
            raise CacheError("a vector segment record is malformed") from exc
        ints = (meta.dim, meta.gen, meta.count, meta.dead)
        if not all(type(v) is int and v >= 0 for v in ints) or meta.dim == 0:
            raise CacheError("a vector segment record is malformed")
        if not isinstance(meta.name, str) or not isinstance(meta.scope_key, str):
            raise CacheError("a vector segment record is malformed")
        return meta


def segment_name(scope_key: str, dim: int) -> str:
    return f"{hashlib.blake2b(scope_key.encode(), digest_size=10).hexdigest()}-{dim}"


@dataclass
class _View:
    """One process's mapping of a segment at (gen, count); arrays are never written."""

    gen: int
    count: int
    ids: npt.NDArray[np.bytes_]
    vecs: Vectors
    dead: npt.NDArray[np.uint8]
    codes_t: Codes  # (WORDS, capacity): column-major so each word is one contiguous scan
    rows: dict[bytes, int] | None = None  # unit id -> row, built only by writers


class VectorStore:
    def __init__(self, root: Path) -> None:
        self._root = private_directory(root)
        self._lock = threading.Lock()
        self._views: dict[str, _View] = {}

    def _path(self, meta: SegmentMeta, gen: int, kind: str) -> Path:
        return self._root / f"{meta.name}.{gen}.{kind}"

    def _widths(self, dim: int) -> dict[str, int]:
        return {"ids": ID_BYTES, "codes": WORDS * 8, "vecs": dim * 4, "dead": 1}

    # -- reading ------------------------------------------------------------------------------

    def _map(self, meta: SegmentMeta, kind: str, dtype: Any, shape: tuple[int, ...]) -> Any:
        path = self._path(meta, meta.gen, kind)
        if os.path.getsize(path) < math.prod(shape) * np.dtype(dtype).itemsize:
            raise CacheError(f"vector file {path.name} is shorter than its committed rows")
        return np.memmap(path, dtype=dtype, mode="r", shape=shape)

    def _load(self, meta: SegmentMeta, old: _View | None) -> _View:
        n = meta.count
        ids = self._map(meta, "ids", f"S{ID_BYTES}", (n,))
        vecs = self._map(meta, "vecs", np.float32, (n, meta.dim))
        dead = self._map(meta, "dead", np.uint8, (n,))
        start = old.count if old is not None and old.gen == meta.gen else 0
        codes_path = self._path(meta, meta.gen, "codes")
        if os.path.getsize(codes_path) < n * WORDS * 8:
            raise CacheError(f"vector file {codes_path.name} is shorter than its committed rows")
        tail = np.fromfile(
            codes_path, dtype="<u8", count=(n - start) * WORDS, offset=start * WORDS * 8
        ).reshape(n - start, WORDS)
        if start and old is not None and old.codes_t.shape[1] >= n:
            codes_t = old.codes_t  # columns past old.count are free: no reader looks there
        else:
            codes_t = np.zeros((WORDS, max(n * 2, 1024)), dtype=np.uint64)
            if start and old is not None:
                codes_t[:, :start] = old.codes_t[:, :start]
        codes_t[:, start:n] = tail.T
        rows = None
        if start and old is not None and old.rows is not None:
            rows = old.rows
            rows.update(zip(np.asarray(ids[start:n]).tolist(), range(start, n), strict=True))
        return _View(meta.gen, n, ids, vecs, dead, codes_t, rows)

    def view(self, meta: SegmentMeta) -> _View | None:
        """The current mapping of a segment, refreshed if another process wrote to it."""
        with self._lock:
            old = self._views.get(meta.name)
            if old is not None and old.gen == meta.gen and old.count == meta.count:
                return old
            if meta.count == 0:
                self._views.pop(meta.name, None)
                return None
            if old is not None and (old.gen != meta.gen or old.count > meta.count):
                old = None
            view = self._load(meta, old)
            self._views[meta.name] = view
            return view

    def search(
        self, meta: SegmentMeta, query: Vectors, cutoff: float, limit: int
    ) -> list[tuple[str, float]]:
        """(unit id, cosine) of live rows with cosine >= cutoff, best first, at most ``limit``."""
        view = self.view(meta)
        if view is None:
            return []
        n = view.count
        q_codes = codes_of(query[None, :])[0]
        distance = np.zeros(n, dtype=np.uint16)
        scratch = np.empty(n, dtype=np.uint64)  # reused: one pass of memory per word
        for w in range(WORDS):
            np.bitwise_xor(view.codes_t[w, :n], q_codes[w], out=scratch)
            np.add(distance, _popcount(scratch), out=distance)
        distance[view.dead != 0] = np.iinfo(np.uint16).max
        rows = np.flatnonzero(distance <= hamming_bound(cutoff))
        if rows.size > _RERANK:
            rows = rows[np.argpartition(distance[rows], _RERANK)[:_RERANK]]
        if rows.size == 0:
            return []
        rows.sort()  # ascending offsets: sequential reads of the mapped file
        sims = np.asarray(view.vecs[rows], dtype=np.float32) @ query
        keep = np.flatnonzero(np.isfinite(sims) & (sims >= cutoff))
        best = keep[np.argsort(-sims[keep], kind="stable")][:limit]
        out: list[tuple[str, float]] = []
        for i in best:
            unit_id = _decode_id(view.ids[rows[i]])
            if unit_id:
                out.append((unit_id, float(sims[i])))
        return out

    # -- writing (the caller holds the diskcache transaction) ---------------------------------

    def append(self, meta: SegmentMeta, unit_id: str, vector: Vectors) -> SegmentMeta:
        row = meta.count
        data = {
            "ids": unit_id.encode("ascii"),
            "codes": codes_of(vector[None, :]).astype("<u8").tobytes(),
            "vecs": vector.astype("<f4").tobytes(),
            "dead": b"\x00",
        }
        widths = self._widths(meta.dim)
        for kind in _KINDS:
            # pwrite at the committed end: rows left by a rolled-back writer are overwritten.
            _pwrite(self._path(meta, meta.gen, kind), data[kind], row * widths[kind])
        return replace(meta, count=row + 1)

    def mark_dead(self, meta: SegmentMeta, unit_id: str) -> SegmentMeta:
        view = self.view(meta)
        if view is None:
            return meta
        with self._lock:
            if view.rows is None:
                ids = np.asarray(view.ids).tolist()
                view.rows = dict(zip(ids, range(view.count), strict=True))
            row = view.rows.get(unit_id.encode("ascii"))
        if row is None or view.dead[row]:
            return meta
        _pwrite(self._path(meta, meta.gen, "dead"), b"\x01", row)
        return replace(meta, dead=meta.dead + 1)

    def compact(self, meta: SegmentMeta) -> tuple[SegmentMeta, list[Path]]:
        """Rewrite the live rows as the next generation; returns the old files to unlink."""
        view = self.view(meta)
        new = replace(meta, gen=meta.gen + 1, count=0, dead=0)
        old_files = [self._path(meta, meta.gen, kind) for kind in _KINDS]
        if view is None:
            return new, old_files
        alive = np.flatnonzero(np.asarray(view.dead) == 0)
        columns = {
            "ids": np.asarray(view.ids)[alive].tobytes(),
            "codes": np.ascontiguousarray(view.codes_t[:, alive].T).astype("<u8").tobytes(),
            "vecs": np.asarray(view.vecs)[alive].astype("<f4").tobytes(),
            "dead": bytes(alive.size),
        }
        for kind in _KINDS:
            path = self._path(new, new.gen, kind)
            _pwrite(path, columns[kind], 0, truncate=True)
        return replace(new, count=int(alive.size)), old_files


def _pwrite(path: Path, data: bytes, offset: int, *, truncate: bool = False) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.pwrite(fd, view, offset)
            view, offset = view[written:], offset + written
    finally:
        os.close(fd)


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(words: Codes) -> npt.NDArray[np.uint8]:
    """Set bits per uint64 (numpy >= 2 has it built in; a byte table otherwise)."""
    builtin = getattr(np, "bitwise_count", None)
    if builtin is not None:
        out: npt.NDArray[np.uint8] = builtin(words)
        return out
    per_byte = _BYTE_BITS[np.ascontiguousarray(words).view(np.uint8)].reshape(-1, 8)
    summed: npt.NDArray[np.uint8] = per_byte.sum(axis=1, dtype=np.uint8)
    return summed


def _decode_id(raw: bytes) -> str:
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return ""
    return text if len(text) == ID_BYTES and all(c in "0123456789abcdef" for c in text) else ""
