"""Issue 13, fault suite: ``kill -9`` of ``kb daemon`` while it sends "source updated" notices.

A real ``kb bot`` answers the same question in three threads (one answer, cited in all three);
the page changes and Confluence's webhook reaches a real ``kb daemon``, which queues one
notice per thread. Slack records the first notice and holds its answer, so the daemon has
posted it but not yet marked it sent when it is killed. After a restart every thread has
exactly one notice: the posted one is found in the thread (its ``kb_outbox`` marker) and
marked sent instead of posted again, the other two are sent. The guarantee this holds is in
docs/ARCHITECTURE.md, "Outbox".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, text
from fakes.real_processes import World, world

QUESTION = "How do I connect to the VPN on Windows?"
THREADS = ("100.1", "200.1", "300.1")


@pytest.fixture
def model() -> Iterator[FakeMessagesAPI]:
    with fake_anthropic(text("Use the NWP-AOVPN profile [1].")) as api:
        yield api


@pytest.fixture
def here(pg_url: str, tmp_path: Path, model: FakeMessagesAPI) -> Iterator[World]:
    with world(pg_url, tmp_path, (model.key, model.url)) as w:
        yield w


def test_every_thread_gets_its_notice_exactly_once_across_a_kill_mid_send(here: World) -> None:
    page = here.wiki.add_page("ENG", "VPN access for Windows", "<p>Use the NWP-AOVPN profile.</p>")
    here.wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays.</p>")
    daemon = here.process("daemon", "daemon")
    here.start_daemon(daemon, synced=2)
    bot = here.process("bot", "bot").start()
    here.wait("the bot to listen", lambda: not bot.alive() or here.healthy(bot), 120)
    for thread in THREADS:
        here.mention(bot, thread, QUESTION)
        here.wait(f"the answer in {thread}", lambda thread=thread: bool(here.answers(thread)))

    here.slack.hold_notices = True
    here.wiki.edit_page(page.id, body="<p>Use the GlobalConnect client.</p>")
    assert here.webhook(daemon, page.id, "delivery-edit") == 202
    here.wait("the first notice to be posted", lambda: here.slack.held >= 1)
    daemon.kill9()
    here.slack.hold_notices = False
    assert len(here.notices()) == 1  # posted, but the daemon died before it heard back

    daemon.start()
    here.wait("a notice in every thread", lambda: len(here.notices()) >= len(THREADS))
    here.wait(
        "every notice to be marked sent",
        lambda: (
            here.sql("SELECT count(*) FROM outbox WHERE kind = 'notice' AND sent_at IS NOT NULL")[
                0
            ][0]
            == len(THREADS)
        ),
    )
    notices = here.notices()
    assert sorted(c.args["thread_ts"] for c in notices) == sorted(THREADS), "one per thread"
    assert all("VPN access for Windows" in str(c.args["text"]) for c in notices)
    assert here.sql("SELECT count(*) FROM outbox WHERE dead_at IS NOT NULL")[0][0] == 0
    assert daemon.alive() and bot.alive(), here.logs()
    assert "Traceback" not in daemon.output() + bot.output(), here.logs()
