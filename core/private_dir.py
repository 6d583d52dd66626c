"""The local state folder (``KB_DATA_DIR``): readable by the service user only (mode 0700).

It holds the embedded database, the answer cache and the embedding memo: answers quote pages
that may be restricted elsewhere. Every creator goes through :func:`ensure_private_dir`, and
every process checks it at start: a folder found wider is narrowed (and said so), one that
cannot be narrowed stops the process with one line naming the setting.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from core.errors import SettingsError

log = logging.getLogger(__name__)

PRIVATE_MODE = 0o700
# As root, the embedded Postgres runs as its own system user, which must pass through (not
# list, not read) KB_DATA_DIR to reach pg/ (0700, its own): the one wider mode accepted.
ROOT_TRAVERSABLE_MODE = 0o711


def ensure_private_dir(path: Path, *, setting: str = "KB_DATA_DIR") -> Path:
    """Create ``path`` (and its parents) with mode 0700, or make an existing one 0700;
    returns ``path``. Raises SettingsError when it is not a directory or cannot be narrowed
    (another user's folder)."""
    if path.exists() and not path.is_dir():
        raise SettingsError(setting, f"{path} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_MODE)  # the umask may narrow it
        info = path.stat()
    except OSError as exc:
        raise SettingsError(setting, f"cannot create {path}: {exc.strerror or exc}") from exc
    mode = stat.S_IMODE(info.st_mode)
    if mode == PRIVATE_MODE or (mode == ROOT_TRAVERSABLE_MODE and os.geteuid() == 0):
        return path
    if info.st_uid != os.geteuid():
        raise SettingsError(
            setting,
            f"{path} has mode {mode:04o} and belongs to another user; "
            f"run 'chmod 700 {path}' as its owner",
        )
    try:
        os.chmod(path, PRIVATE_MODE)
    except OSError as exc:
        raise SettingsError(
            setting, f"{path} has mode {mode:04o} and cannot be made 0700: {exc.strerror}"
        ) from exc
    if mode & 0o077:
        log.warning("%s had mode %04o; it is now 0700 (it holds the store and caches)", path, mode)
    return path
