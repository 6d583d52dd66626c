"""Fault class 3 for Teams: while Postgres is down the messaging endpoint still answers at
once (never 500, never the pool's 30 s), the asker is told in the chat that the knowledge
store is unreachable, a redelivery is acted on once, and a click is answered with the same
sentence instead of an error."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from fakes.flow import FakeFlow
from fakes.postgres_outage import StoppablePostgres
from fakes.teams import PERSONAL, card_action, personal_message, running_teams_bot

from bot.wording import REFRESHING, STORE_DOWN
from store.db import Database
from store.migrate import migrate

ACK_DEADLINE = 3.0


@pytest.fixture
def store() -> Iterator[tuple[StoppablePostgres, Database]]:
    server = StoppablePostgres()
    db = Database.open(server.url, max_size=4)
    try:
        migrate(db)
        yield server, db
    finally:
        db.close()
        server.close()


def test_teams_while_the_store_is_down_acks_at_once_and_says_so_in_the_chat(
    store: tuple[StoppablePostgres, Database],
) -> None:
    server, db = store
    with running_teams_bot(db, FakeFlow()) as bot:
        server.stop()
        question = personal_message(bot.connector.url, "how do I get VPN access?", id="down-1")
        started = time.monotonic()
        response = bot.post(question)
        assert response.status_code == 200
        assert time.monotonic() - started < ACK_DEADLINE

        [reply] = bot.connector.wait_messages(timeout=10)
        assert reply.conversation == PERSONAL
        assert STORE_DOWN in json.dumps(reply.body, ensure_ascii=False)

        assert bot.post(question).status_code == 200  # Teams redelivers: acted on once
        time.sleep(0.5)
        assert len(bot.connector.messages()) == 1

        click = card_action(
            bot.connector.url,
            "kb_refresh",
            {"kb": json.dumps({"u": "unit-1", "q": "how do I get VPN access?"})},
            conversation=PERSONAL,
            card_id=reply.activity_id,
        )
        started = time.monotonic()
        answered = bot.post(click)
        assert answered.status_code == 200
        assert time.monotonic() - started < ACK_DEADLINE
        assert answered.json()["value"] == REFRESHING
        # The refresh runs after the ack; the card it was pressed on then says why it failed.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            updates = [s for s in bot.connector.sent if s.activity_id == reply.activity_id]
            if any(STORE_DOWN in json.dumps(u.body, ensure_ascii=False) for u in updates[1:]):
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the refreshed card never said the store is down: {bot.connector.sent}")
        server.start()
