"""Embedders behind one batch-first protocol.

``local`` (default) runs all-MiniLM-L6-v2 int8 on onnxruntime with no network at all;
``voyage`` and ``openai`` (any OpenAI-compatible server) call HTTP APIs. :class:`MemoEmbedder`
wraps any of them so unchanged text is never embedded twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt

from store.schema import EmbedderIdentity

Purpose = Literal["document", "query"]
Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors, one row per text, in order."""

    @property
    def identity(self) -> EmbedderIdentity: ...

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors: ...


def normalise_rows(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: Vectors = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return out
