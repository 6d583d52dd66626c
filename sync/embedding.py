"""Embedding a group of changed pages in one call, with the sentence signal retrieval adds.

The signal comes one of three ways (docs/BENCHMARKS.md, "Sentence signal"):
``pooled`` (default) - each sentence's vector is the mean of its token states in the chunk's
own forward pass: no extra model work; sentences past the model's 256 word pieces get none.
``separate`` - every sentence is embedded on its own, at its own length (about 2x the work).
``none`` - chunk vectors only.
An embedder that cannot pool spans (the HTTP ones) falls back from ``pooled`` to ``separate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from core.errors import KbError
from store.artifacts import ChunkRow
from store.embedders import Embedder, Vectors, span_embedder
from store.search import SearchSettings
from sync.chunking import sentence_spans

SentenceSignal = Literal["pooled", "separate", "none"]

# The best sentence's weight in the semantic score, by how the sentence vectors are made
# (docs/BENCHMARKS.md, "Sentence signal"): pooled ones, which share their chunk's context, rank
# best at 2 (+0.004 recall@1 on squad-dev's first 1,000); separate ones lose 0.006-0.007 at 2.
SENTENCE_WEIGHT: dict[SentenceSignal, float] = {"pooled": 2.0, "separate": 1.0, "none": 1.0}


def effective_signal(embedder: Embedder, signal: SentenceSignal) -> SentenceSignal:
    """What ``signal`` becomes with this embedder: one that cannot pool embeds separately."""
    if signal == "pooled" and span_embedder(embedder) is None:
        return "separate"
    return signal


def search_settings(embedder: Embedder, signal: SentenceSignal = "pooled") -> SearchSettings:
    """The retriever's settings for a store whose sentence vectors this embedder made."""
    return SearchSettings(sentence_weight=SENTENCE_WEIGHT[effective_signal(embedder, signal)])


def embedding_text(title: str, heading: str, text: str) -> str:
    """What is embedded for a chunk: the page title (and section) give it context."""
    return f"{title}\n{heading}\n{text}" if heading and heading != title else f"{title}\n{text}"


@dataclass(frozen=True)
class PageVectors:
    """A page's chunks as they will be stored (sentences without a vector dropped), one
    vector per chunk and one per remaining sentence, in order."""

    chunks: tuple[ChunkRow, ...]
    chunk_vectors: Vectors
    sentence_vectors: Vectors


@dataclass(frozen=True)
class PageText:
    title: str
    chunks: tuple[ChunkRow, ...]


def embed_pages(
    embedder: Embedder, signal: SentenceSignal, pages: Sequence[PageText]
) -> list[PageVectors | KbError]:
    """One embedder call for all the pages; if it fails, page by page, so a page the embedder
    refuses fails alone."""
    if not pages:
        return []
    try:
        spanner = span_embedder(embedder) if signal == "pooled" else None
        if spanner is not None:
            texts, spans = [], []
            for page in pages:
                for c in page.chunks:
                    text = embedding_text(page.title, c.heading, c.text)
                    shift = len(text) - len(c.text)
                    texts.append(text)
                    spans.append(
                        [
                            [(a + shift, b + shift) for a, b in unit]
                            for unit in sentence_spans(c.text)
                        ]
                    )
            chunk_vectors, unit_vectors = spanner.embed_spans(texts, spans)
            return _split_pooled(pages, chunk_vectors, unit_vectors)
        texts = []
        for page in pages:
            texts += [embedding_text(page.title, c.heading, c.text) for c in page.chunks]
            if signal != "none":
                texts += [s for c in page.chunks for s in c.sentences]
        return _split_separate(pages, embedder.embed(texts), with_sentences=signal != "none")
    except KbError as exc:
        if len(pages) == 1:
            return [exc]
        return [v for page in pages for v in embed_pages(embedder, signal, [page])]


def _split_separate(
    pages: Sequence[PageText], flat: Vectors, *, with_sentences: bool
) -> list[PageVectors | KbError]:
    out: list[PageVectors | KbError] = []
    at = 0
    for page in pages:
        chunks = (
            page.chunks if with_sentences else tuple(replace(c, sentences=()) for c in page.chunks)
        )
        n_chunks, n_sentences = len(chunks), sum(len(c.sentences) for c in chunks)
        end = at + n_chunks
        out.append(PageVectors(chunks, flat[at:end], flat[end : end + n_sentences]))
        at = end + n_sentences
    return out


def _split_pooled(
    pages: Sequence[PageText], chunk_vectors: Vectors, unit_vectors: list[Vectors | None]
) -> list[PageVectors | KbError]:
    out: list[PageVectors | KbError] = []
    at = 0
    for page in pages:
        chunks: list[ChunkRow] = []
        sentence_rows: list[Vectors] = []
        for c in page.chunks:
            units = unit_vectors[at]
            at += 1
            if units is None or not len(c.sentences):
                chunks.append(replace(c, sentences=()))
                continue
            seen = ~np.isnan(units[:, 0])
            chunks.append(
                replace(c, sentences=tuple(s for s, k in zip(c.sentences, seen, strict=True) if k))
            )
            sentence_rows.append(units[seen])
        first = at - len(page.chunks)
        sentences = (
            np.concatenate(sentence_rows)
            if sentence_rows
            else np.zeros((0, chunk_vectors.shape[1]), dtype=np.float32)
        )
        out.append(PageVectors(tuple(chunks), chunk_vectors[first:at], sentences))
    return out
