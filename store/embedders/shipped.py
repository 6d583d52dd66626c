"""Vectors computed ahead of time for known texts (the bundled sample knowledge base), used
only where they provably match what the embedder would compute now.

A table records which embedder and which model file (sha256) made it, and keys every entry
by the sha256 of the exact text and sentence spans that were embedded. :func:`with_shipped`
wraps an embedder with the table only if the embedder and the model file are the same;
:class:`ShippedEmbedder` then answers a (text, spans) pair from the table when its hash is
there and sends everything else to the real embedder, so a changed text is re-embedded.
Files are JSON (the manifest) and a NumPy ``.npy`` array of float32 loaded with
``allow_pickle=False``: nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from core.errors import KbError
from store.embedders import Embedder, Purpose, Spans, Vectors, span_embedder
from store.schema import EmbedderIdentity

log = logging.getLogger(__name__)

FORMAT = 1


@runtime_checkable
class ModelFingerprint(Protocol):
    """An embedder that can say which model file it runs (its sha256)."""

    def model_sha256(self) -> str: ...


def model_fingerprint(embedder: Embedder) -> str | None:
    """The sha256 of the model file behind ``embedder`` (or the one it wraps), if it has one."""
    current: object = embedder
    while current is not None:
        if isinstance(current, ModelFingerprint):
            return current.model_sha256()
        current = getattr(current, "inner", None)
    return None


def entry_key(embedder: str, text: str, spans: Spans) -> str:
    """The content hash an entry is stored under: embedder, text and sentence spans."""
    units = [[list(span) for span in unit] for unit in spans]
    payload = json.dumps([embedder, text, units], ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    vector: Vectors  # the text's own vector, shape (dimension,)
    units: Vectors | None  # one row per sentence unit (NaN: past the model's reach)


@dataclass(frozen=True)
class ShippedVectors:
    embedder: str
    model_sha256: str
    entries: dict[str, Entry]

    def dump(self) -> tuple[str, bytes]:
        """The manifest (JSON) and the rows (``.npy``): each entry's vector, then its units."""
        keys = sorted(self.entries)
        rows: list[Vectors] = []
        listed: list[list[object]] = []
        for key in keys:
            entry = self.entries[key]
            units = entry.units
            listed.append([key, -1 if units is None else len(units)])
            rows.append(entry.vector[None, :])
            if units is not None and len(units):
                rows.append(units)
        head = {"format": FORMAT, "embedder": self.embedder, "model_sha256": self.model_sha256}
        lines = ",\n".join(json.dumps(item) for item in listed)  # one entry a line: diffable
        manifest = json.dumps(head)[:-1] + f', "entries": [\n{lines}\n]}}\n'
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate(rows).astype("<f4"), allow_pickle=False)
        return manifest, buffer.getvalue()

    @classmethod
    def load(cls, manifest_json: str, rows_npy: bytes) -> ShippedVectors:
        """Parse a dumped table; anything malformed raises :class:`KbError`."""
        try:
            manifest = json.loads(manifest_json)
            rows = np.load(io.BytesIO(rows_npy), allow_pickle=False)
            if manifest["format"] != FORMAT or rows.ndim != 2 or rows.dtype != np.dtype("<f4"):
                raise ValueError("unknown format")
            entries: dict[str, Entry] = {}
            at = 0
            for key, count in manifest["entries"]:
                vector = rows[at]
                n = max(int(count), 0)
                units = None if count < 0 else rows[at + 1 : at + 1 + n]
                if units is not None and len(units) != n:
                    raise ValueError("fewer rows than the manifest lists")
                entries[str(key)] = Entry(vector, units)
                at += 1 + n
            if at != len(rows):
                raise ValueError("more rows than the manifest lists")
            return cls(str(manifest["embedder"]), str(manifest["model_sha256"]), entries)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise KbError(f"the shipped vectors cannot be read: {exc}") from None


class ShippedEmbedder:
    """An embedder that takes a (text, spans) pair's vectors from a table when its hash is
    there and embeds the rest with ``inner``; what it embedded is kept in ``fresh`` (the
    build script of the sample's vectors records a table this way)."""

    def __init__(self, inner: Embedder, table: ShippedVectors) -> None:
        self.inner = inner
        self._table = table
        self.fresh: dict[str, Entry] = {}
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        return self.inner.embed(texts, purpose=purpose)

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Spans]
    ) -> tuple[Vectors, list[Vectors | None]]:
        name = self.inner.identity.name
        if not texts:
            return np.zeros((0, self.inner.identity.dimension), dtype=np.float32), []
        keys = [entry_key(name, text, unit) for text, unit in zip(texts, spans, strict=True)]
        found = [self._table.entries.get(key) for key in keys]
        missing = [i for i, entry in enumerate(found) if entry is None]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            spanner = span_embedder(self.inner)
            if spanner is None:
                raise KbError("the shipped vectors wrap an embedder that cannot pool spans")
            vectors, units = spanner.embed_spans(
                [texts[i] for i in missing], [spans[i] for i in missing]
            )
            for n, i in enumerate(missing):
                found[i] = self.fresh[keys[i]] = Entry(vectors[n], units[n])
        out = np.stack([entry.vector for entry in found if entry is not None]).astype(np.float32)
        return out, [entry.units if entry is not None else None for entry in found]

    def recorded(self) -> ShippedVectors:
        """What this embedder computed itself, as a table for the same model."""
        fingerprint = model_fingerprint(self.inner) or ""
        return ShippedVectors(self.inner.identity.name, fingerprint, dict(self.fresh))


def with_shipped(embedder: Embedder, table: ShippedVectors) -> Embedder:
    """``embedder`` answering from ``table`` where it matches, or ``embedder`` itself when the
    table was made by another embedder or another model file (every text is embedded)."""
    if table.embedder != embedder.identity.name or span_embedder(embedder) is None:
        log.info("shipped vectors not used: they were made by %s", table.embedder)
        return embedder
    try:
        fingerprint = model_fingerprint(embedder)
    except KbError:  # no model file: loading the embedder will say so
        fingerprint = None
    if fingerprint != table.model_sha256:
        log.info("shipped vectors not used: the model file differs from the one that made them")
        return embedder
    return ShippedEmbedder(embedder, table)
