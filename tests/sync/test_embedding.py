from __future__ import annotations

import numpy as np
import pytest
from fakes.embedder import HashingEmbedder

from core.errors import KbError
from store.artifacts import ChunkRow
from store.embedders.local import LocalEmbedder
from sync.chunking import sentence_units
from sync.embedding import PageText, PageVectors, embed_pages, search_settings


@pytest.fixture(scope="module")
def local() -> LocalEmbedder:
    embedder = LocalEmbedder()
    embedder.load()
    return embedder


def _page(title: str, *texts: str) -> PageText:
    return PageText(
        title,
        tuple(ChunkRow(n, "", t, len(t.split()), sentence_units(t)) for n, t in enumerate(texts)),
    )


RUNBOOK = _page(
    "Kafka runbook",
    "Restart the broker with the systemd unit before anything else. "
    "If consumer lag keeps growing, page the data platform on-call engineer.",
    "Certificates for the gateway rotate every ninety days through Vault.",
)


def test_pooled_sentences_come_from_the_chunks_own_pass_and_resemble_their_own_vectors(
    local: LocalEmbedder,
) -> None:
    before = local.stats.texts
    (pooled,) = embed_pages(local, "pooled", [RUNBOOK])
    assert isinstance(pooled, PageVectors)
    assert local.stats.texts - before == 2, "only the two chunks went through the model"
    assert [len(c.sentences) for c in pooled.chunks] == [2, 1]
    assert pooled.sentence_vectors.shape == (3, 384)
    alone = local.embed([s for c in RUNBOOK.chunks for s in c.sentences])
    similarity = np.sum(pooled.sentence_vectors * alone, axis=1)
    assert similarity.min() > 0.6
    # Each pooled sentence is closer to its own text than to the other sentences.
    assert (np.argmax(pooled.sentence_vectors @ alone.T, axis=1) == [0, 1, 2]).all()


def test_a_sentence_past_the_models_window_gets_no_pooled_vector(local: LocalEmbedder) -> None:
    filler = "The weekly report lists every open incident and its owner. " * 30
    page = _page("Reports", filler + "Escalations go to the duty manager on the bridge.")
    (pooled,) = embed_pages(local, "pooled", [page])
    assert isinstance(pooled, PageVectors)
    kept = pooled.chunks[0].sentences
    assert 0 < len(kept) < len(page.chunks[0].sentences)
    assert not any("duty manager" in s for s in kept)
    assert pooled.sentence_vectors.shape == (len(kept), 384)
    assert np.isfinite(pooled.sentence_vectors).all()


def test_separate_sentences_are_embedded_on_their_own_and_none_stores_none(
    local: LocalEmbedder,
) -> None:
    before = local.stats.texts
    (separate,) = embed_pages(local, "separate", [RUNBOOK])
    assert local.stats.texts - before == 5
    assert isinstance(separate, PageVectors) and separate.sentence_vectors.shape == (3, 384)
    (bare,) = embed_pages(local, "none", [RUNBOOK])
    assert isinstance(bare, PageVectors) and bare.sentence_vectors.shape == (0, 384)
    assert all(c.sentences == () for c in bare.chunks)
    assert np.allclose(bare.chunk_vectors, separate.chunk_vectors, atol=1e-4)


def test_an_embedder_that_cannot_pool_embeds_sentences_separately() -> None:
    fake = HashingEmbedder()
    (page,) = embed_pages(fake, "pooled", [RUNBOOK])
    assert isinstance(page, PageVectors) and page.sentence_vectors.shape == (3, 64)
    assert len(fake.seen) == 5


def test_a_page_the_embedder_refuses_fails_alone() -> None:
    fake = HashingEmbedder(fail_on="POISON")
    results = embed_pages(fake, "separate", [RUNBOOK, _page("Bad", "POISON here."), RUNBOOK])
    assert isinstance(results[0], PageVectors) and isinstance(results[2], PageVectors)
    assert isinstance(results[1], KbError)


def test_the_best_sentence_weighs_more_when_its_vector_was_pooled_than_embedded_alone(
    local: LocalEmbedder,
) -> None:
    pooled = search_settings(local, "pooled").sentence_weight
    separate = search_settings(local, "separate").sentence_weight
    assert pooled > separate, "measured on squad-dev: docs/BENCHMARKS.md, Sentence signal"
    assert search_settings(HashingEmbedder(), "pooled").sentence_weight == separate, (
        "an embedder that cannot pool stores separate vectors, and is weighed as such"
    )
