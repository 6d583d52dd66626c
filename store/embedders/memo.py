"""An embedding memo keyed by content hash: unchanged text is never embedded twice.

Keys are sha256 of (embedder name, purpose, text); values are the raw float32 bytes of the
vector in a :mod:`store.safe_disk` cache (never pickled). A value of the wrong length is
treated as a miss and replaced.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.errors import CacheError
from store.embedders import Embedder, Purpose, Vectors
from store.safe_disk import open_cache
from store.schema import EmbedderIdentity

log = logging.getLogger(__name__)


class MemoEmbedder:
    """Wraps an :class:`Embedder`; the inner embedder only sees texts it has never seen."""

    def __init__(self, inner: Embedder, directory: Path, *, size_limit: int = 2**30) -> None:
        self.inner = inner
        self._cache = open_cache(directory, size_limit=size_limit)
        self.hits = 0
        self.misses = 0

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        identity = self.inner.identity
        width = identity.dimension * 4
        keys = [self._key(identity.name, purpose, text) for text in texts]
        out = np.zeros((len(texts), identity.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            try:
                raw = self._cache.get(key)
            except CacheError:
                log.warning("embedding memo: refused an untrusted value; re-embedding")
                raw = None
            if isinstance(raw, bytes) and len(raw) == width:
                out[i] = np.frombuffer(raw, dtype=np.float32)
            else:
                missing.setdefault(key, []).append(i)
        self.hits += len(texts) - sum(len(v) for v in missing.values())
        if missing:
            firsts = [positions[0] for positions in missing.values()]
            fresh = self.inner.embed([texts[i] for i in firsts], purpose=purpose)
            self.misses += len(firsts)
            for (key, positions), vector in zip(missing.items(), fresh, strict=True):
                self._cache.set(key, np.ascontiguousarray(vector, dtype=np.float32).tobytes())
                out[positions] = vector
        return out

    @staticmethod
    def _key(name: str, purpose: str, text: str) -> str:
        return hashlib.sha256(f"{name}\0{purpose}\0{text}".encode()).hexdigest()

    def close(self) -> None:
        self._cache.close()
