"""Embedding APIs over HTTP: Voyage AI and any OpenAI-compatible server.

OpenAI-compatible covers OpenAI, Azure OpenAI's v1 endpoint, Ollama, TEI and vLLM. Requests
are batched; 429/5xx are retried honouring ``Retry-After`` (core.http); a malformed answer is a
BadResponse naming the service.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from core.errors import BadResponse
from core.http import DEFAULT_POLICY, RetryPolicy, json_body, send
from store.embedders import Purpose, Vectors, normalise_rows
from store.schema import EmbedderIdentity

KNOWN_DIMENSIONS = {
    "voyage-3.5": 1024,
    "voyage-3.5-lite": 1024,
    "voyage-3-large": 1024,
    "voyage-3": 1024,
    "voyage-3-lite": 512,
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class HttpEmbedder:
    """Shared batching, retries and parsing; subclasses say how to build a request."""

    service = "embedding API"
    credentials_setting = "the embedder's API key"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None,
        batch_size: int = 128,
        timeout: float = 60.0,
        policy: RetryPolicy = DEFAULT_POLICY,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=timeout,
            transport=transport,
        )
        self._model = model
        self._batch_size = batch_size
        self._policy = policy
        self._dimension: int | None = KNOWN_DIMENSIONS.get(model)

    @property
    def name(self) -> str:
        """The identity's name, known without a call to the server."""
        return f"{self.kind}:{self._model}"

    @property
    def identity(self) -> EmbedderIdentity:
        if self._dimension is None:
            # Unknown model, and no store told us (assume_dimension): ask the server once;
            # every vector after must match.
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return EmbedderIdentity(self.name, self._dimension)

    def assume_dimension(self, dimension: int) -> None:
        """The dimension stored with the database this model built: no probe is sent, and
        every vector must still match it."""
        if self._dimension is None:
            self._dimension = dimension

    kind = "http"

    def _payload(self, texts: Sequence[str], purpose: Purpose) -> dict[str, Any]:
        return {"input": list(texts), "model": self._model}

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        rows: list[Vectors] = []
        for start in range(0, len(texts), self._batch_size):
            rows.append(self._embed_batch(texts[start : start + self._batch_size], purpose))
        if not rows:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        return np.concatenate(rows)

    def _embed_batch(self, texts: Sequence[str], purpose: Purpose) -> Vectors:
        payload = self._payload(texts, purpose)
        response = send(
            lambda: self._client.post("embeddings", json=payload),
            service=self.service,
            credentials_setting=self.credentials_setting,
            policy=self._policy,
        )
        body = json_body(response, service=self.service)
        vectors = _parse_embeddings(body, len(texts), service=self.service)
        if self._dimension is not None and vectors.shape[1] != self._dimension:
            raise BadResponse(
                f"{self.service} returned {vectors.shape[1]}-dimensional vectors for "
                f"{self._model}, expected {self._dimension}"
            )
        self._dimension = vectors.shape[1]
        return normalise_rows(vectors)

    def close(self) -> None:
        self._client.close()


class VoyageEmbedder(HttpEmbedder):
    service = "Voyage AI"
    credentials_setting = "VOYAGE_API_KEY"
    kind = "voyage"

    def _payload(self, texts: Sequence[str], purpose: Purpose) -> dict[str, Any]:
        return {"input": list(texts), "model": self._model, "input_type": purpose}


class OpenAIEmbedder(HttpEmbedder):
    service = "the OpenAI-compatible embedding API"
    credentials_setting = "OPENAI_API_KEY"
    kind = "openai"


def _parse_embeddings(body: object, expected: int, *, service: str) -> Vectors:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list) or len(data) != expected:
        raise BadResponse(f"{service} answered without one embedding per input")
    rows: list[tuple[int, list[float]]] = []
    for position, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("embedding"), list):
            raise BadResponse(f"{service} answered an item without an embedding list")
        index = item.get("index", position)
        if not isinstance(index, int) or not 0 <= index < expected:
            raise BadResponse(f"{service} answered an embedding with a bad index {index!r}")
        rows.append((index, item["embedding"]))
    rows.sort(key=lambda pair: pair[0])
    if [i for i, _ in rows] != list(range(expected)):
        raise BadResponse(f"{service} answered duplicate or missing embedding indexes")
    try:
        matrix = np.array([vec for _, vec in rows], dtype=np.float32)
    except (TypeError, ValueError):
        raise BadResponse(f"{service} answered embeddings that are not lists of numbers") from None
    if matrix.ndim != 2 or matrix.shape[1] == 0 or not np.isfinite(matrix).all():
        raise BadResponse(f"{service} answered ragged, empty or non-finite embeddings")
    return matrix
