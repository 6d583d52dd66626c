"""Real ``kb daemon`` / ``kb bot`` processes for the fault scenarios and the deployment test,
and what they share.

Each process is ``python -m kb.cli <command>`` with its own environment and log file, on a
database of its own on the test Postgres; Slack, Confluence and the Messages API are the fakes
of ``tests/fakes`` in the test process, so they outlive a ``kill -9`` of the process under
test and record everything it did before and after. Waits poll with generous timeouts (the
machine is shared); nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from fakes.atlassian import FAKE_EMAIL, FAKE_TOKEN, FakeConfluence, FakeJira
from fakes.http import Request, Response
from fakes.slack_api import SECRET as SLACK_SECRET
from fakes.slack_api import Call, FakeSlack, signed_mention
from sync._webhook_auth import sign

WEBHOOK_SECRET = "a-webhook-secret-long-enough-0123456789"
START_TIMEOUT = 120.0  # a loaded 2-core box loading the ONNX embedder in each process
STEP_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def own_database(pg_url: str) -> Iterator[str]:
    """A database of its own on the test server (processes use the public schema)."""
    name = f"db_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = pg_url.partition("?")
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


class HoldingSlack(FakeSlack):
    """The fake Slack, able to hold its answer to a notice after recording (and keeping) the
    message: the process that sent it has posted it but not heard back, the window a
    ``kill -9`` between the post and the commit falls into."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_notices = False
        self.held = 0

    def _handle(self, request: Request) -> Response:
        response = super()._handle(request)
        if self.hold_notices and b"kb_outbox" in request.body:
            self.held += 1
            deadline = time.monotonic() + 60
            while self.hold_notices and time.monotonic() < deadline:
                time.sleep(0.05)
        return response


class StallingConfluence(FakeConfluence):
    """The fake Confluence, able to hang on every search page after the first (an
    incremental run's second page of results), so a sync can be caught in the middle."""

    stall_later_search_pages = False

    def _dispatch(self, request: Request) -> Response:
        if request.path.endswith("/rest/api/content/search") and "cursor" in request.query:
            deadline = time.monotonic() + 90
            while self.stall_later_search_pages and time.monotonic() < deadline:
                time.sleep(0.05)
        return super()._dispatch(request)


@dataclass
class KbProcess:
    """One ``kb`` process; its output goes to a log file (kept across restarts)."""

    command: str
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> KbProcess:
        with self.log.open("ab") as out:
            out.write(f"\n=== kb {self.command} starts ===\n".encode())
            out.flush()
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "kb.cli", self.command],
                env=self.env,
                cwd=self.log.parent,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def this_run(self) -> str:
        """The output since the latest start."""
        return self.output().rsplit(f"=== kb {self.command} starts ===", 1)[-1]

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill9(self) -> None:
        assert self.popen is not None and self.alive(), self.output()[-3000:]
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(30)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    @property
    def port(self) -> int:
        return int(self.env["PORT" if self.command == "bot" else "KB_WEBHOOK_PORT"])


@dataclass
class World:
    """Fakes, one database, and the kb processes started on them."""

    database_url: str
    slack: HoldingSlack
    wiki: StallingConfluence
    folder: Path
    model: tuple[str, str] = ("", "")  # (key, url) of the fake Messages API, if any
    jira: FakeJira | None = None  # a fake Jira (project OPS) too, when asked for
    http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))
    processes: list[KbProcess] = field(default_factory=list)

    def environment(self, name: str, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DATABASE_URL": self.database_url,
            "KB_CACHE": "postgres",  # bot and daemon are separate processes with their own dirs
            "KB_DATA_DIR": str(self.folder / name / "data"),
            "PORT": str(free_port()),
            "KB_WEBHOOK_PORT": str(free_port()),
            "KB_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "KB_SYNC_EVERY": "600",  # only the sync at start, and the ones a test asks for
            "KB_LOG_LEVEL": "INFO",
            "KB_OPS_CHANNEL": "COPS",
            "KB_ADMINS": "UADMIN",
            "SLACK_BOT_TOKEN": "xoxb-test-token",
            "SLACK_SIGNING_SECRET": SLACK_SECRET,
            "SLACK_API_URL": self.slack.url + "/",
            "CONFLUENCE_BASE_URL": self.wiki.base_url,
            "CONFLUENCE_EMAIL": FAKE_EMAIL,
            "CONFLUENCE_API_TOKEN": FAKE_TOKEN,
            "CONFLUENCE_SPACES": "ENG",
            "CONFLUENCE_TIMEOUT": "2",
            "CONFLUENCE_ATTEMPTS": "2",
        }
        if self.jira is not None:
            env |= {
                "JIRA_BASE_URL": self.jira.base_url,
                "JIRA_EMAIL": FAKE_EMAIL,
                "JIRA_API_TOKEN": FAKE_TOKEN,
                "JIRA_PROJECTS": "OPS",
                "JIRA_TIMEOUT": "2",
                "JIRA_ATTEMPTS": "2",
            }
        if self.model[0]:
            env |= {"ANTHROPIC_API_KEY": self.model[0], "ANTHROPIC_BASE_URL": self.model[1]}
        return env | extra

    def process(self, command: str, name: str, **extra: str) -> KbProcess:
        env = self.environment(name, **extra)
        log = self.folder / name / "log.txt"
        log.parent.mkdir(parents=True, exist_ok=True)
        process = KbProcess(command, env, log)
        self.processes.append(process)
        return process

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.log.parent.name} ---\n{p.output()[-4000:]}" for p in self.processes
        )

    def wait(self, what: str, ready: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.2)

    def healthy(self, process: KbProcess) -> bool:
        try:
            return self.http.get(f"http://127.0.0.1:{process.port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def start_daemon(self, daemon: KbProcess, *, synced: int) -> None:
        """Start it and wait until it listens and its sync at start has finished with
        ``synced`` pages indexed in the store."""
        daemon.start()
        self.wait(
            "the daemon to listen",
            lambda: not daemon.alive() or self.healthy(daemon),
            START_TIMEOUT,
        )
        assert daemon.alive(), self.logs()
        self.wait(
            "the daemon's sync at start",
            lambda: "incremental sync: confluence" in daemon.this_run(),
            START_TIMEOUT,
        )
        assert self.live_artifacts() == synced, self.logs()

    # --- the store, read as an operator would -------------------------------------------

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url) as conn:
            return list(conn.execute(query, params).fetchall())

    def live_artifacts(self) -> int:
        try:
            return int(self.sql("SELECT count(*) FROM artifacts WHERE deleted_at IS NULL")[0][0])
        except psycopg.Error:  # not migrated yet
            return 0

    def duplicate_chunks(self) -> int:
        """Chunk rows beyond one per (artifact, position)."""
        (row,) = self.sql("SELECT count(*) - count(DISTINCT (artifact_id, ord)) FROM chunks")
        return int(row[0])

    def chunk_text(self, page_id: str) -> str:
        rows = self.sql(
            "SELECT text FROM chunks WHERE artifact_id = %s ORDER BY ord", f"confluence:{page_id}"
        )
        return "\n".join(str(r[0]) for r in rows)

    # --- requests, as Slack and Confluence send them ------------------------------------

    def webhook(self, daemon: KbProcess, page_id: str, delivery: str) -> int:
        body = json.dumps({"page": {"id": page_id}}).encode()
        return self._deliver(daemon, "confluence/page_updated", body, delivery)

    def jira_webhook(self, daemon: KbProcess, issue_id: str, key: str, delivery: str) -> int:
        event = {"webhookEvent": "jira:issue_updated", "issue": {"id": issue_id, "key": key}}
        return self._deliver(daemon, "jira", json.dumps(event).encode(), delivery)

    def _deliver(self, daemon: KbProcess, route: str, body: bytes, delivery: str) -> int:
        response = self.http.post(
            f"http://127.0.0.1:{daemon.port}/webhooks/{route}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature": sign(WEBHOOK_SECRET, body),
                "X-Atlassian-Webhook-Identifier": delivery,
            },
        )
        return response.status_code

    def mention(self, bot: KbProcess, ts: str, question: str, channel: str = "CGEN") -> None:
        body, headers = signed_mention(
            question, bot_user=self.slack.bot_user, ts=ts, channel=channel
        )
        response = self.http.post(
            f"http://127.0.0.1:{bot.port}/slack/events", content=body, headers=headers
        )
        assert response.status_code == 200, response.text

    def answers(self, thread: str) -> list[Call]:
        return self.slack.thread_answers(thread)

    def notices(self) -> list[Call]:
        return self.slack.notices()

    def request_sync(self, user: str = "UADMIN", channel: str = "COPS") -> int:
        """What ``/kb-sync confluence`` queues for the daemon (bot/bot_state.py's query)."""
        asker = {"platform": "slack", "user": user, "channel": channel}
        (row,) = self.sql(
            "INSERT INTO sync_requests (source, scopes, requested_by) "
            "VALUES ('confluence', '{}', %s) RETURNING request_id",
            json.dumps(asker),
        )
        return int(row[0])

    def sync_result(self, request_id: int) -> dict[str, Any] | None:
        rows = self.sql(
            "SELECT result FROM sync_requests WHERE request_id = %s AND finished_at IS NOT NULL",
            request_id,
        )
        return rows[0][0] if rows else None

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.http.close()


@contextmanager
def world(
    pg_url: str,
    folder: Path,
    model: tuple[str, str] = ("", ""),
    *,
    limit_cap: int | None = None,
    jira: bool = False,
) -> Iterator[World]:
    """``limit_cap``: Confluence answers lists in pages of at most that many results;
    ``jira``: a fake Jira is configured too."""
    with (
        own_database(pg_url) as database_url,
        HoldingSlack() as slack,
        StallingConfluence(cloud=True, limit_cap=limit_cap) as wiki,
        FakeJira(cloud=True) as fake_jira,
    ):
        assert isinstance(slack, HoldingSlack)
        here = World(database_url, slack, wiki, folder, model, fake_jira if jira else None)
        try:
            yield here
        finally:
            slack.hold_notices = False
            wiki.stall_later_search_pages = False
            here.stop_all()
