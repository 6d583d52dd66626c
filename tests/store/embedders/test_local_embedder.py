from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import ModelFileError
from store.embedders.local import LocalEmbedder, default_tokenizer_path


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    local = LocalEmbedder()
    local.load()
    return local


def test_vectors_have_384_unit_length_dimensions(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(["How do I rotate the TLS certificate?", "Deploys run on Tuesdays"])
    assert vectors.shape == (2, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_similar_questions_are_closer_than_unrelated_ones(embedder: LocalEmbedder) -> None:
    q, same, other = embedder.embed(
        [
            "How do I reset my password?",
            "What are the steps to change my account password?",
            "When does the Kafka upgrade happen?",
        ],
        purpose="query",
    )
    assert float(q @ same) > float(q @ other) + 0.3


def test_a_batch_gives_the_same_vectors_as_one_text_at_a_time(embedder: LocalEmbedder) -> None:
    texts = [
        "short",
        "a much longer sentence about the on-call rotation " * 5,
        "medium length text",
    ]
    batch = embedder.embed(texts)
    singles = np.stack([embedder.embed([t])[0] for t in texts])
    assert np.allclose(batch, singles, atol=1e-4)


def test_long_text_is_truncated_not_rejected(embedder: LocalEmbedder) -> None:
    assert embedder.embed(["word " * 5000]).shape == (1, 384)


def test_an_empty_batch_gives_an_empty_matrix(embedder: LocalEmbedder) -> None:
    assert embedder.embed([]).shape == (0, 384)


def test_a_corrupt_tokenizer_file_is_refused_at_load(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    shutil.copy(default_tokenizer_path(), bad)
    with bad.open("ab") as fh:
        fh.write(b" ")
    with pytest.raises(ModelFileError, match="does not match its pinned sha256"):
        LocalEmbedder(tokenizer_path=bad).load()


def test_a_missing_model_file_is_reported_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"model file .*missing"):
        LocalEmbedder(model_path=tmp_path / "nope.onnx").embed(["x"])


def test_chunks_and_sentences_embedded_together_waste_little_on_padding() -> None:
    embedder = LocalEmbedder()
    chunks = [f"Chunk {n} about the deploy pipeline and its rollback. " * 30 for n in range(20)]
    sentences = [
        f"Sentence {n} {'is short' if n % 2 else 'says a little more about the on-call rota'}."
        for n in range(200)
    ]
    embedder.embed(chunks + sentences)
    assert embedder.stats.texts == 220
    assert embedder.stats.padding_waste < 0.15


def test_a_batch_is_cut_by_its_padded_size() -> None:
    embedder = LocalEmbedder(batch_tokens=1024, max_batch=64)
    lengths = [200] * 10 + [10] * 100
    batches = embedder._batches(lengths)
    assert all(len(b) * max(lengths[i] for i in b) <= 1024 for b in batches)
    assert all(len(b) <= 64 for b in batches)
    assert all(len({lengths[i] for i in b}) == 1 for b in batches), "no 10s padded to 200"
    assert sorted(i for b in batches for i in b) == list(range(110))


# A fresh process loads the model and embeds a full-size batch, then trims once more: whatever
# that last trim gives back is memory the embedder left resident (freed, kept by glibc).
_LEFT_RESIDENT = """
import ctypes, ctypes.util, sys
from pathlib import Path
from store.embedders.local import LocalEmbedder

def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

embedder = LocalEmbedder()
embedder.load()
embedder.embed([" ".join(["certificate rotation runbook"] * 90)] * 8)
before = rss_mb()
ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
print(before - rss_mb())
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux /proc")
def test_the_embedder_returns_freed_model_memory_to_the_os() -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _LEFT_RESIDENT], capture_output=True, text=True, check=True
    )
    assert float(out.stdout) < 10  # MB; about 65 MB before the embedder trimmed


def test_pooled_units_with_context_also_average_their_neighbours_word_pieces() -> None:
    text = "The pager rotates weekly. Deploys are frozen on Fridays."
    units = [[(0, 25)], [(26, len(text))]]
    _, (own,) = LocalEmbedder().embed_spans([text], [units])
    _, (wide,) = LocalEmbedder(span_context=100).embed_spans([text], [units])
    assert own is not None and wide is not None
    assert float(own[0] @ own[1]) < 0.9, "without context each unit pools its own words"
    assert np.allclose(wide[0], wide[1], atol=1e-6), "context wider than the text: all of it"
    _, (near,) = LocalEmbedder(span_context=2).embed_spans([text], [units])
    assert near is not None and float(own[0] @ own[1]) < float(near[0] @ near[1]) < 1 - 1e-6
