"""Shipped vectors: used for a (text, spans) pair only when the embedder, the model file and
the text all match the ones that made them; anything else is embedded by the real model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from core.errors import KbError
from store.embedders.local import LocalEmbedder
from store.embedders.shipped import ShippedEmbedder, ShippedVectors, with_shipped

TEXTS = [
    "On-call handbook\nPage the primary. Then page the Incident Commander.",
    "VPN access\nInstall the client. Sign in with your badge.",
]
SPANS = [
    [[(17, 35)], [(36, 71)]],
    [[(11, 30)], [(31, 56)]],
]


@pytest.fixture(scope="module")
def made() -> ShippedVectors:
    """A table recorded the way `python -m kb.sample_vectors` records the sample's."""
    recorder = ShippedEmbedder(LocalEmbedder(), ShippedVectors("", "", {}))
    recorder.embed_spans(TEXTS, SPANS)
    manifest, rows = recorder.recorded().dump()
    return ShippedVectors.load(manifest, rows)


def test_matching_texts_take_the_shipped_vectors_and_the_model_does_no_work(
    made: ShippedVectors,
) -> None:
    model = LocalEmbedder()
    shipped = with_shipped(model, made)
    assert isinstance(shipped, ShippedEmbedder)
    vectors, units = shipped.embed_spans(TEXTS, SPANS)
    assert model.stats.texts == 0, "not one text went through the model"
    fresh, fresh_units = LocalEmbedder().embed_spans(TEXTS, SPANS)
    assert np.allclose(vectors, fresh, atol=1e-5)
    for got, want in zip(units, fresh_units, strict=True):
        assert got is not None and want is not None
        assert np.allclose(got, want, atol=1e-5)


def test_a_changed_text_is_embedded_again_and_the_others_still_shipped(
    made: ShippedVectors,
) -> None:
    model = LocalEmbedder()
    shipped = with_shipped(model, made)
    changed = [TEXTS[0], TEXTS[1].replace("badge", "token")]
    vectors, _ = shipped.embed_spans(changed, SPANS)
    assert model.stats.texts == 1, "only the changed text is embedded"
    assert np.allclose(vectors[1], LocalEmbedder().embed([changed[1]])[0], atol=1e-5)
    assert isinstance(shipped, ShippedEmbedder) and (shipped.hits, shipped.misses) == (1, 1)


def test_changed_sentence_spans_are_a_different_text(made: ShippedVectors) -> None:
    model = LocalEmbedder()
    shipped = with_shipped(model, made)
    shipped.embed_spans(TEXTS[:1], [[[(17, 71)]]])
    assert model.stats.texts == 1


def test_vectors_made_with_another_model_file_are_not_used(made: ShippedVectors) -> None:
    model = LocalEmbedder()
    other_model = replace(made, model_sha256="0" * 64)
    assert with_shipped(model, other_model) is model
    assert model.model_sha256() == made.model_sha256, "the table names the model it was made by"


def test_vectors_made_by_another_embedder_are_not_used(made: ShippedVectors) -> None:
    model = LocalEmbedder()
    assert with_shipped(model, replace(made, embedder="openai:text-embedding-3-small")) is model


def test_a_truncated_or_mislabelled_file_is_refused(made: ShippedVectors) -> None:
    manifest, rows = made.dump()
    short = ShippedVectors(made.embedder, made.model_sha256, dict(list(made.entries.items())[:1]))
    _, short_rows = short.dump()
    with pytest.raises(KbError, match="cannot be read"):
        ShippedVectors.load(manifest, short_rows)
    with pytest.raises(KbError, match="cannot be read"):
        ShippedVectors.load(manifest.replace('"format": 1', '"format": 2'), rows)
