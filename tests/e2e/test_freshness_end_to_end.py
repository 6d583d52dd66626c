"""The promise of kb-bot, end to end: an answer in a Slack thread, then the page it cited
changes, and the thread hears about it within seconds — and the next answer is fresh.

Real components throughout: the Bolt app over signed HTTP, the flow with the answer cache,
the Confluence client, the sync engine, the webhook listener and worker, and the outbox
deliverer. Only Slack, Confluence and the Messages API are fakes on 127.0.0.1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fakes.anthropic_api import FakeMessagesAPI, fake_anthropic, text
from fakes.atlassian import FakeConfluence, FakePage
from fakes.embedder import HashingEmbedder
from fakes.slack_api import RunningBot, reset_bot_tables, running_bot
from slack_sdk import WebClient

from bot.answerer import ClaudeAnswerer, make_client
from bot.condense import condense_without_model
from bot.flow import Flow
from bot.outbox import OutboxDeliverer
from bot.slack.platform import SlackPlatform
from core.http import RetryPolicy
from core.identities import Secret
from store.cache import DiskAnswerCache, StoreHashes
from store.db import Database
from store.schema import bind_embedder
from store.search import Retriever
from store.tokens import TokenCounter
from sync._webhook_auth import sign
from sync.chunking import Chunker
from sync.confluence import ConfluenceConnector
from sync.engine import SyncEngine
from sync.freshness import CacheInvalidator
from sync.webhook_worker import WebhookWorker
from sync.webhooks import build_webhook_app, serve_webhooks

SECRET = "a-webhook-secret-long-enough-0123456789"
QUESTION = "How do I connect to the VPN on Windows?"


class _Crash(BaseException):
    """The process dying: not an Exception, so nothing on the way up swallows it."""


class _DiesAfterCommit:
    """A ChangeListener that kills the "process" when told about a committed change, i.e.
    between the content commit and the cache invalidation (issue 13, item 5)."""

    def source_changed(self, artifact_id: str, *, content_hash: str, version: str) -> None:
        raise _Crash(artifact_id)

    def source_deleted(self, artifact_id: str) -> None:
        raise _Crash(artifact_id)


@dataclass
class World:
    wiki: FakeConfluence
    page: FakePage
    claude: FakeMessagesAPI
    bot: RunningBot
    worker: WebhookWorker
    deliverer: OutboxDeliverer
    hooks: httpx.Client
    db: Database
    cache: DiskAnswerCache
    connector: ConfluenceConnector
    embedder: HashingEmbedder

    def crash_while_syncing(self) -> None:
        """Sync the page with a process that dies right after committing it."""
        dying = SyncEngine(self.db, self.embedder, Chunker(TokenCounter()), _DiesAfterCommit())
        artifact_id = f"confluence:{self.page.id}"
        with pytest.raises(_Crash):
            dying.sync_document(self.connector.fetch(artifact_id), artifact_id)

    def ask(self, ts: str) -> str:
        before = len(self.bot.slack.calls_to("chat.postMessage"))
        cleared = len(self.bot.slack.calls_to("reactions.remove"))
        assert self.bot.mention(QUESTION, ts=ts).status_code == 200
        posts = self.bot.slack.wait_calls("chat.postMessage", before + 1, timeout=30)
        # The working reaction goes once the answer's place is recorded for notices.
        self.bot.slack.wait_calls("reactions.remove", cleared + 1, timeout=30)
        assert len(posts) == before + 1
        assert posts[-1].args["thread_ts"] == ts
        return str(posts[-1].args["text"])

    def webhook(self, event: str) -> None:
        body = json.dumps({"page": {"id": self.page.id}}).encode()
        response = self.hooks.post(
            f"/webhooks/confluence/{event}",
            content=body,
            headers={"Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body)},
        )
        assert response.status_code in (200, 202)
        self.worker.process_due()
        self.deliverer.deliver_due()

    def notices(self) -> list[str]:
        return [str(c.args["text"]) for c in self.bot.slack.notices()]


@pytest.fixture
def world(db: Database, tmp_path: Path) -> Iterator[World]:
    reset_bot_tables(db)
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    cache = DiskAnswerCache(tmp_path / "cache", StoreHashes(db))
    with FakeConfluence(cloud=True) as wiki, fake_anthropic() as claude:
        page = wiki.add_page(
            "ENG", "VPN access for Windows", "<p>Windows laptops use the NWP-AOVPN profile.</p>"
        )
        wiki.add_page("ENG", "Deploy trains", "<p>Trains leave on Tuesdays and Thursdays.</p>")
        connector = ConfluenceConnector(
            wiki.site(), ("ENG",), policy=RetryPolicy(attempts=2, base_delay=0.01)
        )
        engine = SyncEngine(db, embedder, Chunker(TokenCounter()), CacheInvalidator(db, cache))
        assert engine.run(connector, full=True).status == "ok"
        client = make_client(claude.key, claude.url, max_retries=0)
        flow = Flow(
            db=db,
            embedder=embedder,
            retriever=Retriever(db, TokenCounter()),
            cache=cache,
            answerer=ClaudeAnswerer(client, "claude-test-model"),
            condense=condense_without_model,
        )
        worker = WebhookWorker(db, engine, {"confluence": connector}, quiet=0.0, max_wait=0.0)
        listener = serve_webhooks(build_webhook_app(Secret(SECRET), db), "127.0.0.1", 0)
        listener.start()
        with running_bot(db, flow) as bot, httpx.Client(base_url=listener.url) as hooks:
            delivery = WebClient(
                token="xoxb-test-token", base_url=bot.slack.url + "/", retry_handlers=[]
            )
            deliverer = OutboxDeliverer(db, {"slack": SlackPlatform(delivery)}, None)
            yield World(
                wiki, page, claude, bot, worker, deliverer, hooks, db, cache, connector, embedder
            )
        listener.close()
        connector.close()
        client.close()
    cache.close()


def test_a_page_edit_notifies_the_thread_and_the_next_answer_is_fresh(world: World) -> None:
    world.claude.script(text("Use the NWP-AOVPN profile [1]."))
    assert "NWP-AOVPN" in world.ask("100.1")
    assert "NWP-AOVPN" in world.ask("101.1"), "the same question is served from the cache"
    assert len(world.claude.requests) == 1

    world.wiki.edit_page(
        world.page.id, body="<p>Windows laptops now use the GlobalConnect client.</p>"
    )
    world.webhook("page_updated")

    notices = world.notices()
    assert len(notices) == 2 and all("VPN access for Windows" in n for n in notices)
    notice_threads = [c.args["thread_ts"] for c in world.bot.slack.notices()]
    assert sorted(notice_threads) == ["100.1", "101.1"], "one notice in each thread it was posted"
    world.webhook("page_updated")  # the same delivery again: nothing more is sent
    assert len(world.notices()) == 2
    world.claude.reset()  # the fake repeats its last reply; script the next one afresh
    world.claude.script(text("Use the GlobalConnect client [1]."))
    assert "GlobalConnect" in world.ask("102.1")
    assert "GlobalConnect" in FakeMessagesAPI.user_text(world.claude.last_body)


def test_an_edit_that_changes_no_text_dirties_nothing_and_sends_nothing(world: World) -> None:
    world.claude.script(text("Use the NWP-AOVPN profile [1]."))
    world.ask("100.1")
    world.wiki.edit_page(world.page.id, labels=["vpn"])  # a new version, the same text
    world.webhook("page_updated")
    assert world.notices() == []
    assert "NWP-AOVPN" in world.ask("103.1")
    assert len(world.claude.requests) == 1, "still answered from the cache"


def test_a_trashed_page_evicts_its_answers_and_says_so(world: World) -> None:
    world.claude.script(text("Use the NWP-AOVPN profile [1]."))
    world.ask("100.1")
    world.wiki.trash_page(world.page.id)
    world.webhook("page_trashed")
    (notice,) = world.notices()
    assert "VPN access for Windows" in notice and "deleted" in notice.lower()
    world.claude.reset()
    world.claude.script(text("I could not find that in the sources."))
    answer = world.ask("104.1")
    assert "NWP-AOVPN" not in answer
    assert "NWP-AOVPN" not in FakeMessagesAPI.user_text(world.claude.last_body)


def test_a_crash_between_the_commit_and_the_invalidation_still_notifies_each_thread_once(
    world: World,
) -> None:
    world.claude.script(text("Use the NWP-AOVPN profile [1]."))
    world.ask("100.1")
    world.ask("101.1")
    world.wiki.edit_page(
        world.page.id, body="<p>Windows laptops now use the GlobalConnect client.</p>"
    )
    world.crash_while_syncing()
    world.deliverer.deliver_due()
    assert world.notices() == [], "nothing was applied before the crash"

    # The restarted process: a new applier finds the intent committed with the content.
    restarted = CacheInvalidator(world.db, world.cache)
    assert restarted.apply_pending() == 1
    world.deliverer.deliver_due()
    assert restarted.apply_pending() == 0, "an applied intent is not applied again"
    world.webhook("page_updated")  # the next sync or delivery of the same change
    notices = world.notices()
    assert len(notices) == 2 and all("VPN access for Windows" in n for n in notices)
    world.claude.reset()
    world.claude.script(text("Use the GlobalConnect client [1]."))
    assert "GlobalConnect" in world.ask("102.1"), "the stale answer is not served"


def test_a_crash_after_a_deletion_is_committed_still_evicts_and_notifies_once(
    world: World,
) -> None:
    world.claude.script(text("Use the NWP-AOVPN profile [1]."))
    world.ask("100.1")
    world.wiki.trash_page(world.page.id)
    world.crash_while_syncing()
    CacheInvalidator(world.db, world.cache).apply_pending()
    CacheInvalidator(world.db, world.cache).apply_pending()
    world.deliverer.deliver_due()
    world.webhook("page_trashed")
    (notice,) = world.notices()
    assert "deleted" in notice.lower()
