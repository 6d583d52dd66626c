from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
from fakes.http import Request, Response, serve

from core.errors import AuthError, BadResponse, RateLimited, RemoteError
from core.http import RetryPolicy
from store.embedders.remote import HttpEmbedder, OpenAIEmbedder, VoyageEmbedder

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0)
_made: list[HttpEmbedder] = []
E = TypeVar("E", bound=HttpEmbedder)


def make(cls: type[E], **kwargs: Any) -> E:
    embedder = cls(**kwargs)
    _made.append(embedder)
    return embedder


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def _vector(text: str) -> list[float]:
    rng = random.Random(text)
    return [rng.uniform(-1, 1) for _ in range(8)]


def _embeddings_api(request: Request) -> Response:
    texts = request.json()["input"]
    data = [
        {"object": "embedding", "index": i, "embedding": _vector(t)} for i, t in enumerate(texts)
    ]
    data.reverse()  # servers may answer out of order; `index` is what counts
    return Response(200, {"object": "list", "data": data, "model": request.json()["model"]})


def test_openai_compatible_batches_and_keeps_input_order() -> None:
    with serve(_embeddings_api) as server:
        embedder = make(
            OpenAIEmbedder,
            base_url=server.url + "/v1",
            model="nomic-embed-text",
            api_key="sk-test-123456",
            batch_size=2,
            policy=FAST,
        )
        vectors = embedder.embed(["a", "b", "c", "d", "e"])
    assert len(server.requests) == 3
    assert [r.json()["input"] for r in server.requests] == [["a", "b"], ["c", "d"], ["e"]]
    assert server.requests[0].path == "/v1/embeddings"
    assert server.requests[0].headers["authorization"] == "Bearer sk-test-123456"
    expected = np.array(_vector("c"), dtype=np.float32)
    assert np.allclose(vectors[2], expected / np.linalg.norm(expected), atol=1e-6)


def test_unknown_model_dimension_is_learned_from_the_server() -> None:
    with serve(_embeddings_api) as server:
        embedder = make(
            OpenAIEmbedder, base_url=server.url, model="local-model", api_key=None, policy=FAST
        )
        assert embedder.identity.dimension == 8
        assert embedder.identity.name == "openai:local-model"
    assert "authorization" not in server.requests[0].headers


def test_voyage_says_whether_it_embeds_documents_or_a_query() -> None:
    with serve(_embeddings_api) as server:
        embedder = make(
            VoyageEmbedder, base_url=server.url, model="voyage-x", api_key="pa-k", policy=FAST
        )
        embedder.embed(["doc"])
        embedder.embed(["question?"], purpose="query")
    assert [r.json()["input_type"] for r in server.requests] == ["document", "query"]


def test_429_is_retried_after_the_servers_retry_after() -> None:
    calls = {"n": 0}

    def limited(request: Request) -> Response:
        calls["n"] += 1
        if calls["n"] == 1:
            return Response(429, {"error": "slow down"}, {"Retry-After": "1"})
        return _embeddings_api(request)

    with serve(limited) as server:
        embedder = make(
            VoyageEmbedder, base_url=server.url, model="voyage-x", api_key="pa-k", policy=FAST
        )
        started = time.monotonic()
        vectors = embedder.embed(["x"])
        waited = time.monotonic() - started
    assert vectors.shape == (1, 8)
    assert len(server.requests) == 2
    assert waited >= 1.0


def test_a_server_that_keeps_answering_429_gives_a_rate_limit_error() -> None:
    with serve(lambda r: Response(429, {}, {"Retry-After": "0"})) as server:
        embedder = make(
            VoyageEmbedder, base_url=server.url, model="voyage-x", api_key="pa-k", policy=FAST
        )
        with pytest.raises(RateLimited, match="Voyage AI kept answering HTTP 429 after 3 attempts"):
            embedder.embed(["x"])
    assert len(server.requests) == 3


def test_5xx_is_retried_then_succeeds() -> None:
    answers = iter([Response(503, "busy"), Response(500, "oops")])

    def flaky(request: Request) -> Response:
        return next(answers, None) or _embeddings_api(request)

    with serve(flaky) as server:
        embedder = make(OpenAIEmbedder, base_url=server.url, model="m", api_key="k", policy=FAST)
        assert embedder.embed(["x"]).shape == (1, 8)
    assert len(server.requests) == 3


def test_a_refused_key_names_the_setting_and_never_the_key() -> None:
    with serve(lambda r: Response(401, {"detail": "bad key"})) as server:
        embedder = make(
            VoyageEmbedder, base_url=server.url, model="v", api_key="pa-secret-value", policy=FAST
        )
        with pytest.raises(AuthError) as caught:
            embedder.embed(["x"])
    assert "VOYAGE_API_KEY" in str(caught.value)
    assert "pa-secret-value" not in str(caught.value)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Response(200, "<html>gateway</html>"), "not JSON"),
        (Response(200, {"data": []}), "one embedding per input"),
        (Response(200, {"data": [{"index": 0}]}), "without an embedding list"),
        (Response(200, {"data": [{"index": 0, "embedding": ["a", "b"]}]}), "not lists of numbers"),
        (Response(200, {"data": [{"index": 5, "embedding": [1.0]}]}), "bad index"),
        (Response(404, {"error": "no such model"}), "HTTP 404"),
    ],
)
def test_malformed_answers_are_reported_not_stored(answer: Response, message: str) -> None:
    with serve(lambda r: answer) as server:
        embedder = make(OpenAIEmbedder, base_url=server.url, model="m", api_key="k", policy=FAST)
        with pytest.raises(BadResponse, match=message):
            embedder.embed(["x"])


def test_an_unreachable_server_is_reported_after_retries() -> None:
    embedder = make(
        OpenAIEmbedder, base_url="http://127.0.0.1:9", model="m", api_key="k", policy=FAST
    )
    with pytest.raises(RemoteError, match="could not be reached after 3 attempts"):
        embedder.embed(["x"])
