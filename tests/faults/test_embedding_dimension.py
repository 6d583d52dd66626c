"""Fault class 11 (the dimension part): an unchanged restart sends no embedding request.

An OpenAI-compatible model whose dimension is not built in (here ``nomic-embed-text`` on a
fake server) used to be probed with one text at every process start. The dimension is stored
with the database when it is first bound; later starts read it from there.
"""

from __future__ import annotations

import random
from pathlib import Path

from fakes.http import Request, Response, serve

from kb import wiring
from kb.settings import load_settings
from store.embedders.memo import MemoEmbedder
from store.embedders.remote import HttpEmbedder


def _embeddings_api(request: Request) -> Response:
    texts = request.json()["input"]
    data = [
        {"object": "embedding", "index": i, "embedding": [random.Random(t).uniform(-1, 1)] * 12}
        for i, t in enumerate(texts)
    ]
    return Response(200, {"object": "list", "data": data, "model": request.json()["model"]})


def _start(env: dict[str, str]) -> int:
    """One process start: build the embedder, open and bind the store; the bound dimension."""
    settings = load_settings(env)
    memo = wiring.build_embedder(settings)
    assert isinstance(memo, MemoEmbedder) and isinstance(memo.inner, HttpEmbedder)
    try:
        wiring.open_bound_store(settings, memo).close()
        return memo.identity.dimension
    finally:
        memo.close()
        memo.inner.close()


def test_a_restart_reads_the_stored_dimension_instead_of_probing(
    tmp_path: Path, database_url: str
) -> None:
    with serve(_embeddings_api) as server:
        env = {
            "KB_DATA_DIR": str(tmp_path / "state"),
            "DATABASE_URL": database_url,
            "KB_EMBEDDER": "openai",
            "OPENAI_BASE_URL": server.url + "/v1",
            "OPENAI_API_KEY": "sk-test-0123456789",
            "KB_EMBED_MODEL": "nomic-embed-text",
        }
        assert _start(env) == 12
        assert len(server.requests) == 1, "the first start learns the dimension once"
        assert _start(env) == 12
        assert _start(env) == 12
        assert len(server.requests) == 1, "later starts send nothing"
