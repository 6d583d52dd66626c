"""The outbox (store/outbox.py): typed messages, dedupe keys, and the two families of rows —
intents for the change applier, deliveries for the deliverer — never crossing."""

from __future__ import annotations

from store import outbox
from store.db import Database
from store.outbox import Notice, OpsAlert, SourceChange


def _notice(thread: str = "1.1", change_key: str = "hash-2") -> Notice:
    return Notice(
        platform="slack",
        channel="C1",
        thread=thread,
        artifact_id="confluence:42",
        title="VPN",
        url="https://wiki.example/42",
        change="updated",
        old_version="1",
        new_version="2",
        question="How do I connect?",
        unit_id="u" * 32,
        change_key=change_key,
    )


def test_the_same_notice_queued_twice_is_stored_once(db: Database) -> None:
    with db.connection() as conn:
        assert outbox.enqueue(conn, _notice())
        assert not outbox.enqueue(conn, _notice())
        assert outbox.enqueue(conn, _notice(thread="2.2"))
        rows = conn.execute("SELECT payload FROM outbox ORDER BY message_id").fetchall()
    assert [r["payload"]["thread"] for r in rows] == ["1.1", "2.2"]
    assert "change_key" not in rows[0]["payload"], "the payload is what the deliverer reads"


def test_every_commit_gets_its_own_intent_even_for_a_text_seen_before(db: Database) -> None:
    with db.connection() as conn:
        assert outbox.enqueue(conn, SourceChange("confluence:42", "updated", "hash-a", "1"))
        assert outbox.enqueue(conn, SourceChange("confluence:42", "updated", "hash-a", "1"))


def test_the_deliverer_claims_deliveries_and_the_applier_claims_intents(db: Database) -> None:
    with db.connection() as conn:
        outbox.enqueue(conn, SourceChange("confluence:42", "deleted"))
        outbox.enqueue(conn, OpsAlert("jira", "boom", 7, ongoing=False, key="run:7"))
    with db.connection() as conn:
        claimed = outbox.claim_one(conn, "deliverer-1")
        assert claimed is not None and claimed.kind == "ops_alert"
        assert claimed.payload == {"source": "jira", "error": "boom", "run_id": 7, "ongoing": False}
        assert outbox.claim_one(conn, "deliverer-1") is None, "an intent is never sent"
    with db.connection() as conn:
        ((message_id, change),) = outbox.claim_changes(conn, artifact_id="confluence:42")
        assert (change.artifact_id, change.change, change.content_hash) == (
            "confluence:42",
            "deleted",
            None,
        )
        outbox.mark_applied(conn, message_id)
    with db.connection() as conn:
        assert outbox.claim_changes(conn) == []
