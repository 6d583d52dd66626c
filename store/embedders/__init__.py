"""Embedders behind one batch-first protocol.

``local`` (default) runs all-MiniLM-L6-v2 int8 on onnxruntime with no network at all;
``voyage`` and ``openai`` (any OpenAI-compatible server) call HTTP APIs. :class:`MemoEmbedder`
wraps any of them so unchanged text is never embedded twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

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


Spans = Sequence[Sequence[tuple[int, int]]]  # units, each some character spans of one text


@runtime_checkable
class SpanEmbedder(Protocol):
    """An embedder that can also pool parts of each text from the same forward pass."""

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Spans]
    ) -> tuple[Vectors, list[Vectors | None]]: ...


def span_embedder(embedder: Embedder) -> SpanEmbedder | None:
    """The embedder itself, or the one a wrapper (``inner``) delegates to, if it pools spans."""
    current: object = embedder
    while current is not None:
        if isinstance(current, SpanEmbedder):
            return current
        current = getattr(current, "inner", None)
    return None
