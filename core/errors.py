"""The one exception tree of kb-bot.

Every error a person or operator can see derives from :class:`KbError`; its message names
what failed and what to do about it, and never carries a secret.

    KbError
    ├── SettingsError            a setting is missing or malformed (names the key)
    ├── StoreError               the database could not be reached or used
    │   ├── MigrationError       a numbered migration failed (names the file)
    │   └── EmbedderMismatch     the store was built by another embedder or dimension
    ├── EmbedderError            an embedder could not produce vectors
    │   └── ModelFileError       the bundled model or tokenizer is missing or corrupt
    ├── RemoteError              a remote service answered badly or not at all
    │   ├── AuthError            401/403: names the setting holding the credentials
    │   ├── RateLimited          429 after all retries
    │   └── BadResponse          malformed or unexpected payload
    ├── SyncError                a sync run could not complete
    ├── CacheError               the answer cache refused data it cannot trust
    └── AnswerError              an answer could not be generated
"""

from __future__ import annotations


class KbError(Exception):
    """Base of every kb-bot error; ``str(err)`` is fit to show an operator."""


class SettingsError(KbError):
    """A setting is missing or malformed."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


class StoreError(KbError):
    """The store (Postgres with pgvector) could not be reached or used."""


class MigrationError(StoreError):
    """A numbered schema migration failed."""


class EmbedderMismatch(StoreError):
    """The store holds vectors from a different embedder or dimension."""


class EmbedderError(KbError):
    """An embedder could not produce vectors."""


class ModelFileError(EmbedderError):
    """The bundled embedding model or tokenizer is missing or does not match its checksum."""


class RemoteError(KbError):
    """A remote service (Atlassian, Slack, an embedding API, Claude) failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class AuthError(RemoteError):
    """The remote service refused our credentials (401/403)."""


class RateLimited(RemoteError):
    """The remote service kept answering 429 after every retry."""


class BadResponse(RemoteError):
    """The remote service answered with a payload we cannot use."""


class SyncError(KbError):
    """A sync run could not complete."""


class CacheError(KbError):
    """The answer cache found data it cannot trust."""


class AnswerError(KbError):
    """An answer could not be generated."""
