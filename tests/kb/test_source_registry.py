"""Adding a source is one module and one registration line: a "notes" source (tests/fakes/notes.py)
goes through the real seams — settings and scope parsing, the CLI's choices and ``kb sync``
into the store, the webhook route and worker, and /metrics."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fakes.embedder import HashingEmbedder
from fakes.notes import NOTES

from core.errors import SettingsError
from core.identities import Secret
from kb.cli import build_parser
from kb.settings import load_settings
from store.db import Database
from store.schema import bind_embedder
from store.tokens import TokenCounter
from sync._webhook_auth import sign
from sync.chunking import Chunker
from sync.engine import SyncEngine
from sync.registry import BUILT_IN
from sync.webhook_worker import WebhookWorker
from sync.webhooks import build_webhook_app, serve_webhooks

REGISTRY = BUILT_IN.with_source(NOTES)  # the one registration line
SECRET = "a-webhook-secret-long-enough-0123456789"


def _write(root: Path, note: str, title: str, body: str) -> None:
    path = root / f"{note}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{title}\n{body}\n", encoding="utf-8")


def _artifacts(db: Database) -> dict[str, str]:
    with db.connection() as conn:
        rows = conn.execute(
            "SELECT artifact_id, body FROM artifacts WHERE deleted_at IS NULL"
        ).fetchall()
    return {r["artifact_id"]: r["body"] for r in rows}


def test_a_registered_source_is_a_cli_choice_and_an_unregistered_one_is_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert build_parser(REGISTRY).parse_args(["sync", "--source", "notes"]).source == "notes"
    with pytest.raises(SystemExit):
        build_parser(BUILT_IN).parse_args(["sync", "--source", "notes"])
    assert "invalid choice: 'notes'" in capsys.readouterr().err


def test_channel_scopes_accept_the_registered_source_and_refuse_unknown_ones() -> None:
    env = {"KB_CHANNEL_SCOPES": "C1=notes:team,confluence:ENG", "NOTES_DIR": "/tmp/notes"}
    settings = load_settings(env, REGISTRY)
    assert settings.scope_for("C1").allows("notes", "TEAM")
    assert not settings.scope_for("C1").allows("jira", "OPS")
    assert settings.configured_sources() == ("notes",)
    assert "notes" in settings.source_names
    with pytest.raises(SettingsError, match="KB_CHANNEL_SCOPES") as refused:
        load_settings(env, BUILT_IN)
    assert "confluence:KEY, jira:KEY" in str(refused.value)


def test_kb_sync_of_the_new_source_indexes_its_notes_into_the_store(
    tmp_path: Path, database_url: str
) -> None:
    notes = tmp_path / "notes"
    _write(notes, "TEAM/vpn", "VPN on Linux", "Use the wg-quick profile named corp0.")
    _write(notes, "TEAM/oncall", "On-call", "Pages are answered within 15 minutes.")
    env = {
        "DATABASE_URL": database_url,
        "KB_DATA_DIR": str(tmp_path / "data"),
        "NOTES_DIR": str(notes),
    }
    settings = load_settings(env, REGISTRY)
    args = build_parser(REGISTRY).parse_args(["sync", "--source", "notes", "--full"])
    assert args.run(settings, args) == 0
    db = Database.open(database_url, max_size=2)
    try:
        indexed = _artifacts(db)
    finally:
        db.close()
    assert set(indexed) == {"notes:TEAM/vpn", "notes:TEAM/oncall"}
    assert "corp0" in indexed["notes:TEAM/vpn"]


def test_a_webhook_for_the_new_source_is_routed_stored_and_synced(
    db: Database, tmp_path: Path
) -> None:
    notes = tmp_path / "notes"
    _write(notes, "TEAM/vpn", "VPN on Linux", "Use the wg-quick profile named corp0.")
    connector = NOTES.connect({"NOTES_DIR": str(notes)})
    assert connector is not None
    embedder = HashingEmbedder()
    bind_embedder(db, embedder.identity)
    engine = SyncEngine(db, embedder, Chunker(TokenCounter()))
    worker = WebhookWorker(db, engine, {"notes": connector}, quiet=0.0, max_wait=0.0)
    listener = serve_webhooks(
        build_webhook_app(Secret(SECRET), db, sources=REGISTRY), "127.0.0.1", 0
    )
    built_in = serve_webhooks(build_webhook_app(Secret(SECRET), db), "127.0.0.1", 0)
    listener.start()
    built_in.start()
    try:
        body = json.dumps({"note": "TEAM/vpn"}).encode()
        headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body)}
        with httpx.Client(base_url=built_in.url) as client:
            assert client.post("/webhooks/notes", content=body, headers=headers).status_code == 404
        with httpx.Client(base_url=listener.url) as client:
            response = client.post("/webhooks/notes/note_saved", content=body, headers=headers)
            assert response.status_code == 202
            assert response.json()["status"] == "accepted"
            worker.process_due()
            assert "corp0" in _artifacts(db)["notes:TEAM/vpn"]
            metrics = client.get("/metrics").text
        assert 'kb_webhook_events{source="notes",status="done"} 1' in metrics
        assert 'kb_artifacts{source="notes",state="live"} 1' in metrics
    finally:
        listener.close()
        built_in.close()
