"""One runtime context for every command: the embedder, the store, the answer cache and the
source connectors, opened in one place and closed in reverse order (docs/ARCHITECTURE.md,
"Processes")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kb import wiring
from kb.settings import Settings
from store.cache import AnswerCache
from store.cache_backend_lock import CacheBackendLock
from store.db import Database
from store.embedders import Embedder
from store.tokens import load_encoding
from sync.engine import SyncEngine
from sync.freshness import CacheInvalidator
from sync.source import SourceConnector


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    embedder: Embedder
    db: Database
    cache: AnswerCache
    # Applies the engine's outbox intents: cache invalidation and notices.
    invalidator: CacheInvalidator
    connectors: dict[str, SourceConnector] = field(default_factory=dict)

    def engine(self) -> SyncEngine:
        return wiring.build_engine(self.settings, self.db, self.embedder, self.invalidator)


@contextmanager
def open_runtime(
    settings: Settings,
    *,
    pool_size: int = 8,
    schema: str = "public",
    cache_dir: Path | None = None,
    connectors: bool = False,
    warm: bool = False,
) -> Iterator[Runtime]:
    """Open what a command needs; ``connectors``: also the configured sources' clients.

    ``schema`` and ``cache_dir`` keep ``kb demo`` apart from a real store; ``warm`` loads the
    embedding model and the token encoding on a thread while Postgres starts."""
    with ExitStack() as stack:
        embedder = wiring.build_embedder(settings)
        if warm:
            warming = threading.Thread(target=_warm, args=(embedder,), daemon=True)
            warming.start()
            # A process must not exit while the thread is inside onnxruntime: it aborts.
            stack.callback(warming.join)
        db = wiring.open_bound_store(settings, embedder, pool_size=pool_size, schema=schema)
        stack.callback(db.close)
        # Every process of a store on one answer-cache backend (store/cache_backend_lock.py).
        backend_lock = CacheBackendLock(db, settings.cache_backend)
        backend_lock.acquire()
        stack.callback(backend_lock.release)
        cache = wiring.build_cache(settings, db, directory=cache_dir)
        stack.callback(cache.close)
        clients = wiring.build_connectors(settings) if connectors else {}
        for client in clients.values():
            close = getattr(client, "close", None)
            if callable(close):
                stack.callback(close)
        yield Runtime(settings, embedder, db, cache, CacheInvalidator(db, cache), clients)


def _warm(embedder: Embedder) -> None:
    """Load what the first sync and the first question will need. A failure is left for the
    real call to report (the model's own load raises it again)."""
    current: object = embedder
    while current is not None and not callable(getattr(current, "load", None)):
        current = getattr(current, "inner", None)
    try:
        load_encoding()
        if current is not None:
            current.load()  # type: ignore[attr-defined]
    except Exception:  # reported again by the call that needs it
        return
