"""The deployment of README "Deployment at scale", as real processes: two ``kb bot`` and two
``kb daemon`` (the second one started by mistake) on one Postgres, with ``KB_CACHE=postgres``.

Each process is ``python -m kb.cli`` with its own environment and its own KB_DATA_DIR, so the
only thing they share is the database. Slack, Confluence and the Messages API are fakes on
127.0.0.1. Every wait polls with a generous timeout; nothing asserts how long anything took.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, text
from fakes.atlassian import FAKE_EMAIL, FAKE_TOKEN, FakeConfluence, FakePage
from fakes.slack_api import SECRET as SLACK_SECRET
from fakes.slack_api import Call, FakeSlack, signed_mention

from sync._webhook_auth import sign

WEBHOOK_SECRET = "a-webhook-secret-long-enough-0123456789"
QUESTION = "How do I connect to the VPN on Windows?"
# A loaded 2-core box starts four Python processes that each load the embedder: be patient.
START_TIMEOUT = 90.0
STEP_TIMEOUT = 60.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait(what: str, ready: Callable[[], bool], timeout: float, logs: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{logs()}")
        time.sleep(0.2)


@dataclass
class Process:
    """One ``kb`` process; its output goes to a log file the test reads."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Topology:
    slack: FakeSlack
    wiki: FakeConfluence
    page: FakePage
    claude: FakeMessagesAPI
    database_url: str
    bots: tuple[Process, Process]
    daemons: tuple[Process, Process]
    http: httpx.Client
    env: dict[str, str]  # what a further process on this store gets

    def logs(self) -> str:
        return "\n".join(
            f"--- kb {p.name} ---\n{p.output()[-3000:]}" for p in (*self.bots, *self.daemons)
        )

    def wait(self, what: str, ready: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
        _wait(what, ready, timeout, self.logs)

    def ask(self, bot: Process, ts: str) -> str:
        """Mention the bot in a new thread, as Slack delivers it (a signed event), and return
        the answer posted in that thread."""
        body, headers = signed_mention(QUESTION, bot_user=self.slack.bot_user, ts=ts)
        response = self.http.post(
            f"http://127.0.0.1:{bot.port}/slack/events", content=body, headers=headers
        )
        assert response.status_code == 200, response.text
        self.wait(f"kb {bot.name}'s answer in thread {ts}", lambda: bool(self.answers(ts)))
        (answer,) = self.answers(ts)
        return str(answer.args["text"])

    def answers(self, ts: str) -> list[Call]:
        return self.slack.thread_answers(ts)

    def notices(self) -> list[Call]:
        return self.slack.notices()

    def edit_webhook(self, daemon: Process) -> None:
        body = json.dumps({"page": {"id": self.page.id}}).encode()
        response = self.http.post(
            f"http://127.0.0.1:{daemon.port}/webhooks/confluence/page_updated",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature": sign(WEBHOOK_SECRET, body),
                # Confluence's delivery id: a retry of one delivery carries the same one.
                "X-Atlassian-Webhook-Identifier": f"delivery-{self.page.id}",
            },
        )
        assert response.status_code in (200, 202), response.text

    def sync_runs(self) -> list[tuple[str, str]]:
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT mode, trigger FROM sync_runs ORDER BY run_id").fetchall()
        return [(str(mode), str(trigger)) for mode, trigger in rows]

    def webhook_events(self) -> list[tuple[str, str | None, int]]:
        """(status, outcome, duplicates) of each stored webhook delivery."""
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute(
                "SELECT status, outcome, duplicates FROM webhook_events ORDER BY event_id"
            ).fetchall()
        return [(str(s), None if o is None else str(o), int(d)) for s, o, d in rows]


def _environment(
    database_url: str,
    data_dir: Path,
    slack: FakeSlack,
    wiki: FakeConfluence,
    claude: FakeMessagesAPI,
    *,
    port: int,
    webhook_port: int,
) -> dict[str, str]:
    """What README "Deployment at scale" says each process needs (every process gets all of
    it here; a bot ignores the Atlassian keys and a daemon the model keys)."""
    return {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "KB_CACHE": "postgres",
        "KB_DATA_DIR": str(data_dir),
        "PORT": str(port),
        "KB_WEBHOOK_PORT": str(webhook_port),
        "KB_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "KB_LOG_LEVEL": "INFO",
        "SLACK_BOT_TOKEN": "xoxb-test-token",
        "SLACK_SIGNING_SECRET": SLACK_SECRET,
        "SLACK_API_URL": slack.url + "/",
        "CONFLUENCE_BASE_URL": wiki.base_url,
        "CONFLUENCE_EMAIL": FAKE_EMAIL,
        "CONFLUENCE_API_TOKEN": FAKE_TOKEN,
        "CONFLUENCE_SPACES": "ENG",
        "ANTHROPIC_API_KEY": claude.key,
        "ANTHROPIC_BASE_URL": claude.url,
    }


@pytest.fixture
def topology(database_url: str, tmp_path: Path) -> Iterator[Topology]:
    with ExitStack() as stack:
        slack = stack.enter_context(FakeSlack())
        wiki = stack.enter_context(FakeConfluence(cloud=True))
        claude = stack.enter_context(fake_anthropic())
        page = wiki.add_page(
            "ENG", "VPN access for Windows", "<p>Windows laptops use the NWP-AOVPN profile.</p>"
        )
        wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays and Thursdays.</p>")
        http = stack.enter_context(httpx.Client(timeout=30, verify=False))
        processes: list[Process] = []

        def start(name: str, command: str) -> Process:
            port, webhook_port = _free_port(), _free_port()
            env = _environment(
                database_url,
                tmp_path / name / "data",
                slack,
                wiki,
                claude,
                port=port,
                webhook_port=webhook_port,
            )
            log = tmp_path / name / "log.txt"
            log.parent.mkdir(parents=True)
            with log.open("wb") as out:
                popen = subprocess.Popen(
                    [sys.executable, "-m", "kb.cli", command],
                    env=env,
                    cwd=tmp_path / name,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            process = Process(name, popen, log, port if command == "bot" else webhook_port)
            processes.append(process)
            return process

        def all_logs() -> str:
            return "\n".join(f"--- kb {p.name} ---\n{p.output()[-3000:]}" for p in processes)

        stack.callback(lambda: [p.stop() for p in reversed(processes)])
        first = start("daemon-1", "daemon")
        # The first daemon migrates the store and holds the daemon lock before anything else
        # starts, so which daemon is the standby is not left to a race.
        _wait(
            "the first daemon to run",
            lambda: first.exited() or "kb daemon running" in first.output(),
            START_TIMEOUT,
            all_logs,
        )
        bots = (start("bot-1", "bot"), start("bot-2", "bot"))
        second = start("daemon-2", "daemon")
        spare = tmp_path / "spare"
        spare.mkdir()
        env = _environment(
            database_url, spare, slack, wiki, claude, port=_free_port(), webhook_port=_free_port()
        )
        daemons = (first, second)
        world = Topology(slack, wiki, page, claude, database_url, bots, daemons, http, env)
        _wait(
            "the first daemon's initial sync",
            lambda: "incremental sync: confluence: synced 2" in first.output(),
            START_TIMEOUT,
            all_logs,
        )
        for process in (*bots, second):
            _wait(
                f"kb {process.name} to listen",
                lambda process=process: process.exited() or _healthy(http, process.port),
                START_TIMEOUT,
                all_logs,
            )
            assert not process.exited(), all_logs()
        yield world


def _healthy(http: httpx.Client, port: int) -> bool:
    try:
        return http.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def test_two_bots_share_answers_and_freshness_and_a_second_daemon_doubles_nothing(
    topology: Topology,
) -> None:
    world = topology
    bot_1, bot_2 = world.bots
    active, standby = world.daemons
    world.claude.script(text("Use the NWP-AOVPN profile [1]."))

    # A question asked through each bot is generated once: the second bot finds the first
    # bot's answer in the shared Postgres cache.
    assert "NWP-AOVPN" in world.ask(bot_1, "100.1")
    assert "NWP-AOVPN" in world.ask(bot_2, "200.1")
    assert len(world.claude.requests) == 1, world.logs()

    # The second daemon says it stands by.
    world.wait(
        "the second daemon to report the first",
        lambda: "another kb daemon is running" in standby.output(),
    )

    # The page changes; Confluence's webhook reaches the standby's listener (behind one
    # address either may get it). The active daemon's worker syncs it and sends one notice
    # to each thread the old answer was posted in.
    world.wiki.edit_page(
        world.page.id, body="<p>Windows laptops now use the GlobalConnect client.</p>"
    )
    world.claude.reset()
    world.claude.script(text("Use the GlobalConnect client [1]."))
    world.edit_webhook(standby)
    world.wait("a notice in both threads", lambda: len(world.notices()) >= 2)
    # Confluence retries the same delivery and this time the active daemon's listener gets it.
    world.edit_webhook(active)

    # The answer is dirty for both bots: the next ask through the second bot regenerates,
    # and the first bot then serves that fresh answer, not its old one.
    assert "GlobalConnect" in world.ask(bot_2, "201.1")
    assert "GlobalConnect" in world.ask(bot_1, "101.1")
    assert len(world.claude.requests) == 1, "regenerated once, then served from the cache"
    assert "GlobalConnect" in FakeMessagesAPI.user_text(world.claude.last_body)

    notices = world.notices()
    assert sorted(c.args["thread_ts"] for c in notices) == ["100.1", "200.1"], (
        "one notice per thread that had the answer, none doubled"
    )
    assert all("VPN access for Windows" in str(c.args["text"]) for c in notices)

    # No job ran twice: one initial scheduled sync (the standby's scheduler never started);
    # the delivery, received by both listeners, stored once and synced once by one worker.
    assert world.sync_runs() == [("incremental", "schedule")]
    assert world.webhook_events() == [("done", "synced", 1)]
    assert "kb daemon running" not in standby.output()
    jobs = ("sync.engine", "sync.webhook_worker", "sync.freshness", "bot.outbox")
    assert not [line for line in standby.output().splitlines() if any(j in line for j in jobs)]
    assert not any(p.exited() for p in (*world.bots, *world.daemons)), world.logs()

    # A manual `kb sync` that forgot KB_CACHE (default disk) would apply changes to a cache
    # no bot reads: it refuses, naming the key.
    forgot = subprocess.run(
        [sys.executable, "-m", "kb.cli", "sync"],
        env={**world.env, "KB_CACHE": "disk"},
        cwd=world.env["KB_DATA_DIR"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert forgot.returncode == 2, forgot.stdout + forgot.stderr
    assert "KB_CACHE" in forgot.stderr
    assert world.sync_runs() == [("incremental", "schedule")]
