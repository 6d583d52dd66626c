"""Every captured Atlassian webhook delivered over HTTP to the running listener, signed.

Each file goes to the route its sender would use (Confluence Cloud bodies carry no event name:
the event is in the URL, taken from the file name) and must be answered 200/202 with a stored
row holding what the parsers make of it: the artifact id, kind, event and version, or an
ignored row when the delivery touches nothing indexed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.identities import Secret
from store.db import Database
from store.migrate import migrate
from sync.confluence import parse_confluence_webhook
from sync.jira import parse_jira_webhook
from sync.webhook_events import WebhookChange
from sync.webhooks import build_webhook_app, serve_webhooks, sign

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
if not FIXTURES.is_dir():
    pytest.skip(
        f"shared fixtures not found at {FIXTURES} (clone without ../shared)",
        allow_module_level=True,
    )

HOOKS = FIXTURES / "atlassian_webhooks"
SECRET = "interop-webhook-secret-0123456789"
# The one file whose name does not spell its event: a content-property body that Connect
# delivers on content_created (see tests/interop/test_webhook_payloads.py).
EVENT_OVERRIDES = {"PageContentCreatedSubject": "content_created"}


@dataclass(frozen=True)
class Delivery:
    path: Path
    route: str
    expected: WebhookChange | None


def confluence_event(name: str) -> str:
    """``cloud_PageUpdated__x.json`` -> page_updated; ``cloud_page_moved_captured__x`` ->
    page_moved; ``legacy_userKey_format_page-created__x`` -> page-created (as sent)."""
    stem = name.split("__", 1)[0]
    stem = stem.removeprefix("cloud_").removeprefix("legacy_userKey_format_")
    stem = stem.removesuffix("_captured")
    if stem in EVENT_OVERRIDES:
        return EVENT_OVERRIDES[stem]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "_", stem).lower()


def deliveries() -> list[Delivery]:
    found: list[Delivery] = []
    for path in sorted((HOOKS / "jira").glob("*.json")):
        found.append(Delivery(path, "/webhooks/jira", parse_jira_webhook(load(path))))
    for path in sorted((HOOKS / "confluence").glob("*.json")):
        body = load(path)
        if isinstance(body.get("event"), str):  # Data Center: the body names its event
            found.append(
                Delivery(path, "/webhooks/confluence", parse_confluence_webhook(None, body))
            )
            continue
        event = confluence_event(path.name)
        found.append(
            Delivery(path, f"/webhooks/confluence/{event}", parse_confluence_webhook(event, body))
        )
    return found


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def listener(pg_url: str) -> Iterator[tuple[Database, httpx.Client]]:
    db = Database.open(pg_url, schema=f"t_{uuid.uuid4().hex[:16]}", max_size=4)
    try:
        migrate(db)
        server = serve_webhooks(build_webhook_app(Secret(SECRET), db), "127.0.0.1", 0).start()
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
                yield db, client
        finally:
            server.close()
    finally:
        db.drop_schema()
        db.close()


def test_every_fixture_is_delivered() -> None:
    assert len(deliveries()) == len(list(HOOKS.glob("*/*.json"))) > 0
    assert all(d.route != "/webhooks/confluence/" for d in deliveries())


@pytest.mark.parametrize(
    "delivery", deliveries(), ids=lambda d: f"{d.path.parent.name}/{d.path.name}"
)
def test_a_captured_delivery_is_accepted_and_stored_as_parsed(
    listener: tuple[Database, httpx.Client], delivery: Delivery
) -> None:
    db, client = listener
    raw = delivery.path.read_bytes()  # exactly the captured bytes, signed as Atlassian does
    response = client.post(
        delivery.route,
        content=raw,
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature": sign(SECRET, raw),
            "X-Atlassian-Webhook-Identifier": str(uuid.uuid4()),
        },
    )
    assert response.status_code in (200, 202), response.text
    answer = response.json()
    with db.connection() as conn:
        row = conn.execute(
            "SELECT source, artifact_id, kind, event, version, status FROM webhook_events"
            " WHERE event_id = %s",
            (answer["event_id"],),
        ).fetchone()
    assert row is not None
    assert row["source"] == delivery.path.parent.name
    expected = delivery.expected
    if expected is None:
        assert answer["status"] == "ignored"
        assert (row["status"], row["artifact_id"], row["kind"]) == ("ignored", None, None)
    else:
        assert answer["status"] == "accepted"
        assert row["status"] == "pending"
        assert (row["artifact_id"], row["kind"], row["event"], row["version"]) == (
            expected.artifact_id,
            expected.kind,
            expected.event,
            expected.version,
        )
