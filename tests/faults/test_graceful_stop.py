"""Fault class 4: ``kb bot`` stops cleanly on SIGTERM/SIGINT, and a SIGKILL is recovered from.

Real processes: ``kb bot`` against a fake Slack on 127.0.0.1, on its own embedded Postgres.
SIGTERM used to kill it at once, orphaning the server with a stale pid in its users list, so
it never stopped by itself again. Now the bot finishes (or hands back) its answers within the
grace, exits 0 and, being the last user, stops the server; and a user that died by SIGKILL is
forgotten by the next one, whose exit then stops the server.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.slack_api import BASE_ENV, FakeSlack

GRACE = 20.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: concurrent pytest sessions prune each other's basetemp.
    root = Path(tempfile.mkdtemp(prefix="kb-graceful-"))
    yield root / "data"
    _stop_orphan(root / "data" / "pg")
    shutil.rmtree(root, ignore_errors=True)


def _stop_orphan(pgdata: Path) -> None:
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():  # the behaviour under test failed: do not leave the server running
        os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        _wait_gone(pid_file, 30)


def _wait_gone(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_bot(
    slack: FakeSlack, data_dir: Path, command: str = "bot"
) -> tuple[subprocess.Popen[str], int]:
    port, webhook_port = _free_port(), _free_port()
    health = [f"http://127.0.0.1:{port}/healthz"]
    if command == "up":  # the daemon's listener too: both children are serving
        health.append(f"http://127.0.0.1:{webhook_port}/healthz")
    env = {
        **BASE_ENV,
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "SLACK_API_URL": slack.url + "/",
        "KB_DATA_DIR": str(data_dir),
        "PORT": str(port),
        "KB_WEBHOOK_PORT": str(webhook_port),
        "KB_SYNC_EVERY": "600",
    }
    bot = subprocess.Popen(
        [sys.executable, "-m", "kb.cli", command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert bot.poll() is None, bot.communicate()[0]
        try:
            if all(httpx.get(url, timeout=1).status_code == 200 for url in health):
                return bot, port
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    bot.kill()
    raise AssertionError("kb bot never became healthy: " + bot.communicate()[0][-2000:])


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_bot_and_releases_the_embedded_postgres(
    data_dir: Path, signum: int
) -> None:
    with FakeSlack() as slack:
        bot, _ = _start_bot(slack, data_dir)
        assert (data_dir / "pg" / "postmaster.pid").exists()
        started = time.monotonic()
        bot.send_signal(signum)
        try:
            output, _ = bot.communicate(timeout=GRACE + 10)
        finally:
            bot.kill()
        assert bot.returncode == 0, output[-2000:]
        assert time.monotonic() - started < GRACE + 10
        assert "Traceback" not in output
        assert "kb bot stopped" in output
    # The bot was the server's only user: leaving stops it.
    assert _wait_gone(data_dir / "pg" / "postmaster.pid", 30), "embedded Postgres orphaned"


_USER = textwrap.dedent(
    """
    import pathlib, sys, time
    from store.db import start_embedded
    data, ready, release = (pathlib.Path(a) for a in sys.argv[1:4])
    start_embedded(data)
    ready.touch()
    while not release.exists():
        time.sleep(0.05)
    """
)


def test_a_restart_after_sigkill_forgets_the_dead_user_and_stops_the_server(
    data_dir: Path,
) -> None:
    root = data_dir.parent

    def user(name: str) -> subprocess.Popen[bytes]:
        ready, release = root / f"{name}.ready", root / f"{name}.go"
        proc = subprocess.Popen(
            [sys.executable, "-c", _USER, str(data_dir), str(ready), str(release)]
        )
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        return proc

    killed = user("killed")
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    pid_file = data_dir / "pg" / "postmaster.pid"
    assert pid_file.exists()  # nobody stopped it: SIGKILL runs no exit hook
    restarted = user("restarted")
    (root / "restarted.go").touch()
    assert restarted.wait(60) == 0
    assert _wait_gone(pid_file, 30), "the stale pid kept the embedded Postgres running"


def test_kb_up_passes_sigterm_on_and_everything_stops(data_dir: Path) -> None:
    with FakeSlack() as slack:
        up, _ = _start_bot(slack, data_dir, "up")
        up.send_signal(signal.SIGTERM)
        try:
            output, _ = up.communicate(timeout=GRACE + 20)
        finally:
            up.kill()
        assert up.returncode == 0, output[-2000:]
        assert "Traceback" not in output
        assert "kb bot stopped" in output  # the bot child stopped gracefully, not killed
    assert _wait_gone(data_dir / "pg" / "postmaster.pid", 30), "embedded Postgres orphaned"
