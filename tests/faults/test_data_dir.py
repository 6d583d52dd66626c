"""Fault class 9: KB_DATA_DIR is 0700, whatever creates it, and checked at every start.

It holds the embedded database, the answer cache and the embedding memo. A process under the
usual umask 022 used to leave it 0755; now a new folder is made 0700, one found wider is
narrowed at start, and one that cannot be (a file, another user's folder) stops the process
with one line naming the setting.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.private_dir import ensure_private_dir
from kb import wiring
from kb.settings import load_settings
from store.db import start_embedded


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_store_opened_at_start_leaves_the_data_dir_0700(
    tmp_path: Path, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "state"
    data_dir.mkdir(mode=0o755)  # as an earlier version, or a cache library, left it
    settings = load_settings({"KB_DATA_DIR": str(data_dir), "DATABASE_URL": database_url})
    db = wiring.open_store(settings)
    db.close()
    assert mode_of(data_dir) == 0o700
    assert "had mode 0755; it is now 0700" in caplog.text


def test_the_answer_cache_creates_the_data_dir_0700(tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "fresh" / "state"
    settings = load_settings({"KB_DATA_DIR": str(data_dir), "DATABASE_URL": database_url})
    db = wiring.open_store(settings)
    try:
        cache = wiring.build_cache(settings, db)
        cache.close()  # type: ignore[attr-defined]
    finally:
        db.close()
    assert mode_of(data_dir) == 0o700
    assert mode_of(data_dir / "answer-cache") == 0o700


def test_the_embedded_postgres_narrows_a_wide_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "embedded"
    data_dir.mkdir(mode=0o755)
    start_embedded(data_dir, ephemeral=True)
    # As root, Postgres runs as its own user, which may only pass through to pg/.
    assert mode_of(data_dir) == (0o711 if os.geteuid() == 0 else 0o700)
    assert mode_of(data_dir / "pg") in (0o700, 0o750)  # Postgres refuses anything wider


def test_a_data_dir_that_is_a_file_stops_the_start_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_text("not a folder")
    with pytest.raises(SettingsError) as caught:
        ensure_private_dir(path)
    message = str(caught.value)
    assert message.startswith("KB_DATA_DIR: ") and "not a directory" in message
    assert "\n" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root may chmod any folder")
def test_another_users_wide_folder_is_refused_naming_the_fix(tmp_path: Path) -> None:
    # /tmp itself is the classic: mode 1777, owned by root.
    shared = Path("/tmp")
    if shared.stat().st_uid == os.geteuid():
        pytest.skip("/tmp belongs to this user here")
    with pytest.raises(SettingsError, match=r"KB_DATA_DIR: /tmp has mode 1777 .*chmod 700"):
        ensure_private_dir(shared)
