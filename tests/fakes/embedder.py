"""A deterministic, fast fake embedder implementing store.embedders.Embedder.

Vectors are hashed bags of words, so texts sharing words are close: good enough to exercise
retrieval and the cache without loading a model. It records every text it embeds.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

from store.embedders import Purpose, Vectors, normalise_rows
from store.schema import EmbedderIdentity

_WORD = re.compile(r"[a-z0-9]+")


class HashingEmbedder:
    def __init__(self, dimension: int = 64, *, fail_on: str | None = None) -> None:
        self.dimension = dimension
        self.seen: list[str] = []
        self.calls = 0
        self.fail_on = fail_on

    @property
    def identity(self) -> EmbedderIdentity:
        return EmbedderIdentity(f"fake:hashing-{self.dimension}", self.dimension)

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        from core.errors import EmbedderError

        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise EmbedderError(f"fake embedder refuses text containing {self.fail_on!r}")
        if texts:
            self.calls += 1
        self.seen.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "big")
                out[row, h % self.dimension] += 1.0
            out[row, 0] += 1e-3  # never an all-zero vector
        return normalise_rows(out)
