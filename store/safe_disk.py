"""A diskcache ``Disk`` that never pickles or unpickles.

diskcache pickles any value that is not bytes, str, int or float, and unpickles whatever a
row says is pickled: anyone who can write the cache directory could run code in kb-bot. This
Disk stores only raw values (callers encode JSON themselves) and refuses pickled rows.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import diskcache

from core.errors import CacheError

_RAW_TYPES = (bytes, str, int, float)


class SafeDisk(diskcache.Disk):  # type: ignore[misc]
    def put(self, key: Any) -> tuple[Any, bool]:
        if not isinstance(key, str | bytes):
            raise TypeError(f"cache keys must be str or bytes, not {type(key).__name__}")
        result: tuple[Any, bool] = super().put(key)
        return result

    def get(self, key: Any, raw: bool) -> Any:
        if not raw:
            raise CacheError("the cache holds a pickled key it did not write; it was refused")
        return super().get(key, raw)

    def store(self, value: Any, read: bool, key: Any = diskcache.UNKNOWN) -> Any:
        if read or not isinstance(value, _RAW_TYPES):
            raise TypeError(f"cache values must be bytes or str, not {type(value).__name__}")
        return super().store(value, read, key=key)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode not in (
            diskcache.core.MODE_RAW,
            diskcache.core.MODE_BINARY,
            diskcache.core.MODE_TEXT,
        ):
            raise CacheError(
                "the cache holds a pickled or unknown value it did not write; it was refused"
            )
        return super().fetch(mode, filename, value, read)


def private_directory(path: Path) -> Path:
    """Create ``path`` readable only by this user (0700), tightening it if it exists."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def open_cache(path: Path, **settings: Any) -> diskcache.Cache:
    """A diskcache.Cache on a private directory with :class:`SafeDisk`."""
    return diskcache.Cache(str(private_directory(path)), disk=SafeDisk, **settings)
