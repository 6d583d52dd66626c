"""The deployment of README "Deployment at scale", as real processes: two ``kb bot`` and two
``kb daemon`` (the second one started by mistake) on one Postgres, with ``KB_CACHE=postgres``.

Each process is ``python -m kb.cli`` with its own environment and its own KB_DATA_DIR
(``tests/fakes/real_processes.py``), so the only thing they share is the database. Slack,
Confluence and the Messages API are fakes on 127.0.0.1. Every wait polls with a generous
timeout; nothing asserts how long anything took.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, text
from fakes.atlassian import FakePage
from fakes.real_processes import START_TIMEOUT, KbProcess, World, world

QUESTION = "How do I connect to the VPN on Windows?"


@dataclass
class Deployment:
    world: World
    claude: FakeMessagesAPI
    page: FakePage
    bots: tuple[KbProcess, KbProcess]
    daemons: tuple[KbProcess, KbProcess]

    def ask(self, bot: KbProcess, ts: str) -> str:
        """Mention the bot in a new thread, as Slack delivers it (a signed event), and return
        the answer posted in that thread."""
        self.world.mention(bot, ts, QUESTION)
        self.world.wait(f"an answer in thread {ts}", lambda: bool(self.world.answers(ts)))
        (answer,) = self.world.answers(ts)
        return str(answer.args["text"])

    def edit_webhook(self, daemon: KbProcess) -> None:
        # Confluence's delivery id: a retry of one delivery carries the same one.
        status = self.world.webhook(daemon, self.page.id, f"delivery-{self.page.id}")
        assert status in (200, 202), self.world.logs()

    def sync_runs(self) -> list[tuple[str, str]]:
        rows = self.world.sql("SELECT mode, trigger FROM sync_runs ORDER BY run_id")
        return [(str(mode), str(trigger)) for mode, trigger in rows]

    def webhook_events(self) -> list[tuple[str, str | None, int]]:
        """(status, outcome, duplicates) of each stored webhook delivery."""
        rows = self.world.sql(
            "SELECT status, outcome, duplicates FROM webhook_events ORDER BY event_id"
        )
        return [(str(s), None if o is None else str(o), int(d)) for s, o, d in rows]


@pytest.fixture
def deployment(pg_url: str, tmp_path: Path) -> Iterator[Deployment]:
    with fake_anthropic() as claude, world(pg_url, tmp_path, (claude.key, claude.url)) as here:
        page = here.wiki.add_page(
            "ENG", "VPN access for Windows", "<p>Windows laptops use the NWP-AOVPN profile.</p>"
        )
        here.wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays and Thursdays.</p>")
        first = here.process("daemon", "daemon-1").start()
        # The first daemon migrates the store and holds the daemon lock before anything else
        # starts, so which daemon is the standby is not left to a race.
        here.wait(
            "the first daemon to run",
            lambda: not first.alive() or "kb daemon running" in first.output(),
            START_TIMEOUT,
        )
        bots = (here.process("bot", "bot-1").start(), here.process("bot", "bot-2").start())
        second = here.process("daemon", "daemon-2").start()
        here.wait(
            "the first daemon's initial sync",
            lambda: "incremental sync: confluence: synced 2" in first.output(),
            START_TIMEOUT,
        )
        for process in (*bots, second):
            here.wait(
                f"{process.log.parent.name} to listen",
                lambda process=process: not process.alive() or here.healthy(process),
                START_TIMEOUT,
            )
            assert process.alive(), here.logs()
        yield Deployment(here, claude, page, bots, (first, second))


def test_two_bots_share_answers_and_freshness_and_a_second_daemon_doubles_nothing(
    deployment: Deployment,
) -> None:
    world, claude = deployment.world, deployment.claude
    bot_1, bot_2 = deployment.bots
    active, standby = deployment.daemons
    claude.script(text("Use the NWP-AOVPN profile [1]."))

    # A question asked through each bot is generated once: the second bot finds the first
    # bot's answer in the shared Postgres cache.
    assert "NWP-AOVPN" in deployment.ask(bot_1, "100.1")
    assert "NWP-AOVPN" in deployment.ask(bot_2, "200.1")
    assert len(claude.requests) == 1, world.logs()

    # The second daemon says it stands by.
    world.wait(
        "the second daemon to report the first",
        lambda: "another kb daemon is running" in standby.output(),
    )

    # The page changes; Confluence's webhook reaches the standby's listener (behind one
    # address either may get it). The active daemon's worker syncs it and sends one notice
    # to each thread the old answer was posted in.
    world.wiki.edit_page(
        deployment.page.id, body="<p>Windows laptops now use the GlobalConnect client.</p>"
    )
    claude.reset()
    claude.script(text("Use the GlobalConnect client [1]."))
    deployment.edit_webhook(standby)
    world.wait("a notice in both threads", lambda: len(world.notices()) >= 2)
    # Confluence retries the same delivery and this time the active daemon's listener gets it.
    deployment.edit_webhook(active)

    # The answer is dirty for both bots: the next ask through the second bot regenerates,
    # and the first bot then serves that fresh answer, not its old one.
    assert "GlobalConnect" in deployment.ask(bot_2, "201.1")
    assert "GlobalConnect" in deployment.ask(bot_1, "101.1")
    assert len(claude.requests) == 1, "regenerated once, then served from the cache"
    assert "GlobalConnect" in FakeMessagesAPI.user_text(claude.last_body)

    notices = world.notices()
    assert sorted(c.args["thread_ts"] for c in notices) == ["100.1", "200.1"], (
        "one notice per thread that had the answer, none doubled"
    )
    assert all("VPN access for Windows" in str(c.args["text"]) for c in notices)

    # No job ran twice: one initial scheduled sync (the standby's scheduler never started);
    # the delivery, received by both listeners, stored once and synced once by one worker.
    assert deployment.sync_runs() == [("incremental", "schedule")]
    assert deployment.webhook_events() == [("done", "synced", 1)]
    assert "kb daemon running" not in standby.output()
    jobs = ("sync.engine", "sync.webhook_worker", "sync.freshness", "bot.outbox")
    assert not [line for line in standby.output().splitlines() if any(j in line for j in jobs)]
    assert all(p.alive() for p in (*deployment.bots, *deployment.daemons)), world.logs()

    # A manual `kb sync` that forgot KB_CACHE (default disk) would apply changes to a cache
    # no bot reads: it refuses, naming the key.
    spare = world.folder / "spare"
    spare.mkdir()
    forgot = subprocess.run(
        [sys.executable, "-m", "kb.cli", "sync"],
        env=world.environment("spare", KB_CACHE="disk"),
        cwd=spare,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert forgot.returncode == 2, forgot.stdout + forgot.stderr
    assert "KB_CACHE" in forgot.stderr
    assert deployment.sync_runs() == [("incremental", "schedule")]
