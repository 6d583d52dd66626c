"""Suggested prompts at the conversation: no repeats, and a pane still gets the configured
prompts when the store cannot be reached."""

from __future__ import annotations

import uuid

from fakes.flow import FakeFlow

from bot.conversation import ChatPolicy, Conversation
from bot.suggestions import first_distinct
from bot.sync_request import SyncTargets
from store.db import Database
from store.migrate import migrate
from store.scope import Scope


def test_prompts_skip_blanks_and_questions_already_suggested_however_worded() -> None:
    picked = first_distinct(4, ["How do I deploy?", " "], ["how do I DEPLOY", "VPN?"], ["a", "b"])
    assert picked == ("How do I deploy?", "VPN?", "a", "b")


def test_a_pane_gets_the_configured_prompts_while_the_store_is_unreachable(pg_url: str) -> None:
    db = Database.open(pg_url, schema=f"t_{uuid.uuid4().hex[:16]}", max_size=2)
    migrate(db)
    policy = ChatPolicy(
        scope_for=lambda _channel: Scope.everything(),
        admins=frozenset(),
        sync=SyncTargets(()),
        prompts=("Who is on call?",),
    )
    conversation = Conversation("slack", FakeFlow(), db, policy, workers=1)
    try:
        db.drop_schema()
        db.close()  # nothing can be read any more
        assert conversation.suggested_prompts("D0PANE", "CENG") == ("Who is on call?",)
    finally:
        conversation.close()
