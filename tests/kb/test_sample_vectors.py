"""The vectors shipped with the sample knowledge base (kb/sample_kb/vectors.*) match the
sample as it is now: a stale file (a sample page, the chunker or the model changed without
`python -m kb.sample_vectors`) fails here, not silently in a slow first `kb demo`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kb import wiring
from kb.sample import sample_connectors, sample_vectors
from kb.settings import load_settings
from store.db import Database
from store.embedders import Spans, Vectors
from store.embedders.local import LocalEmbedder
from store.embedders.shipped import ShippedEmbedder, with_shipped
from store.schema import EmbedderIdentity, bind_embedder


class Watching:
    """Passes every call to the shipped embedder and keeps what the engine asked for."""

    def __init__(self, inner: ShippedEmbedder) -> None:
        self.inner = inner
        self.asked: list[tuple[str, Spans]] = []
        self.given: list[Vectors] = []

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed(self, texts: Sequence[str], *, purpose: str = "document") -> Vectors:
        return self.inner.embed(texts)

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Spans]
    ) -> tuple[Vectors, list[Vectors | None]]:
        vectors, units = self.inner.embed_spans(texts, spans)
        self.asked += zip(texts, spans, strict=True)
        self.given += list(vectors)
        return vectors, units


def test_the_shipped_vectors_cover_every_text_the_demo_sync_embeds(
    db: Database, tmp_path: Path
) -> None:
    table = sample_vectors()
    assert table is not None, "kb/sample_kb/vectors.json and vectors.npy ship with the sample"
    model = LocalEmbedder()
    shipped = with_shipped(model, table)
    assert isinstance(shipped, ShippedEmbedder), "made with the model file installed here"
    watching = Watching(shipped)
    bind_embedder(db, model.identity)
    settings = load_settings({"KB_DATA_DIR": str(tmp_path)})
    engine = wiring.build_engine(settings, db, watching, None)
    for connector in sample_connectors():
        assert not engine.run(connector, full=True).counts.failed
    assert shipped.misses == 0, "a text of the sample has no shipped vector: rebuild the file"
    assert shipped.hits == len(table.entries)
    assert model.stats.texts == 0
    # The same code made them: a few of them, embedded now, are the same vectors.
    texts, spans = zip(*watching.asked[:3], strict=True)
    fresh, _ = LocalEmbedder().embed_spans(texts, spans)
    assert np.allclose(np.stack(watching.given[:3]), fresh, atol=1e-4)
