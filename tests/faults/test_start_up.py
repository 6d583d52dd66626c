"""Fault class 11 (start-up and logging) and the rest of class 4 (a signal during start-up).

Real ``kb`` processes. ``kb bot`` with Slack unreachable, or refusing the token, used to print
about 60 lines of traceback from inside Bolt's ``auth.test``; now it prints one line naming
what failed and what to check, and exits non-zero. A forged request is one warning line with
the peer's address and nothing of its body, even at DEBUG. ``kb daemon`` used to install its
signal handler only once running, so a SIGTERM while the embedded Postgres started or the
migrations ran killed it outright and orphaned the server; now it unwinds, exits 0 and
releases the server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fakes.postgres_outage import KbProcess, free_port
from fakes.slack_api import BASE_ENV, FakeSlack

FORGED_MARKER = "body-text-that-must-never-be-logged"


@pytest.fixture
def folder() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="kb-start-up-"))
    yield root
    pid_file = root / "data" / "pg" / "postmaster.pid"
    if pid_file.exists():  # the behaviour under test failed: do not leave the server running
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
            _wait_gone(pid_file, 30)
    shutil.rmtree(root, ignore_errors=True)


def _wait_gone(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not path.exists()


def _run_bot(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kb.cli", "bot"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]


def test_kb_bot_with_slack_unreachable_says_so_in_one_line(database_url: str, folder: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
    env = {**BASE_ENV, "SLACK_API_URL": closed, "DATABASE_URL": database_url}
    env["KB_DATA_DIR"] = str(folder / "data")
    done = _run_bot(env)
    lines = _lines(done)
    assert done.returncode != 0
    assert len(lines) == 1, lines
    assert "could not reach Slack" in lines[0] and "SLACK_API_URL" in lines[0]
    assert "xoxb-test-token" not in lines[0]


def test_kb_bot_with_a_refused_token_names_the_setting_in_one_line(
    database_url: str, folder: Path
) -> None:
    with FakeSlack() as slack:
        slack.fail("auth.test", status=200, error="invalid_auth", times=5)
        env = {**BASE_ENV, "SLACK_API_URL": slack.url + "/", "DATABASE_URL": database_url}
        env["KB_DATA_DIR"] = str(folder / "data")
        done = _run_bot(env)
    lines = _lines(done)
    assert done.returncode != 0
    assert len(lines) == 1, lines
    assert "invalid_auth" in lines[0] and "SLACK_BOT_TOKEN" in lines[0]


def test_a_forged_request_is_one_warning_with_the_peer_and_no_body(
    database_url: str, folder: Path
) -> None:
    with FakeSlack() as slack:
        port = free_port()
        env = {
            **BASE_ENV,
            "SLACK_API_URL": slack.url + "/",
            "DATABASE_URL": database_url,
            "KB_DATA_DIR": str(folder / "data"),
            "PORT": str(port),
            "KB_LOG_LEVEL": "DEBUG",  # Bolt logs bodies at INFO and DEBUG if it gets them
        }
        bot = KbProcess("bot", env, folder)
        try:
            bot.wait_healthy(f"http://127.0.0.1:{port}/healthz")
            before = bot.output()
            event = f'{{"type":"app_mention","text":"{FORGED_MARKER}"}}'
            body = f'{{"type":"event_callback","event":{event}}}'
            forged = httpx.post(
                f"http://127.0.0.1:{port}/slack/events",
                content=body.encode(),
                headers={
                    "Content-Type": "application/json",
                    "X-Slack-Request-Timestamp": str(int(time.time())),
                    "X-Slack-Signature": "v0=" + "0" * 64,
                },
            )
            time.sleep(1)  # let the log reach the file
        finally:
            assert bot.stop() == 0
        assert forged.status_code == 401
        logged = bot.output()[len(before) :]
        assert FORGED_MARKER not in bot.output()
        warnings = [line for line in logged.splitlines() if " WARNING " in line]
        assert len(warnings) == 1, warnings
        assert "127.0.0.1" in warnings[0]
        assert "Traceback" not in logged


def test_sigterm_while_the_daemon_starts_stops_it_and_releases_the_embedded_postgres(
    folder: Path,
) -> None:
    env = {**BASE_ENV, "KB_DATA_DIR": str(folder / "data"), "KB_WEBHOOK_PORT": str(free_port())}
    env["SLACK_API_URL"] = f"http://127.0.0.1:{free_port()}/api/"  # never reached in start-up
    daemon = KbProcess("daemon", env, folder)
    pid_file = folder / "data" / "pg" / "postmaster.pid"
    deadline = time.monotonic() + 120
    while not pid_file.exists():  # the embedded Postgres is starting: start-up is under way
        assert daemon.proc.poll() is None, daemon.output()[-3000:]
        assert time.monotonic() < deadline, daemon.output()[-3000:]
        time.sleep(0.02)
    daemon.proc.send_signal(signal.SIGTERM)
    code = daemon.stop()
    output = daemon.output()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output
    assert "kb daemon stopped during start-up" in output, output[-3000:]
    assert _wait_gone(pid_file, 30), "embedded Postgres orphaned"
