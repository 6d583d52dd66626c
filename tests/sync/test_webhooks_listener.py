"""The webhook listener over real HTTP: waitress on 127.0.0.1, httpx, a real Postgres schema.

Authentication, limits, parsing into stored rows, duplicates, /healthz and /metrics. What
happens to a stored event afterwards is in test_webhooks_worker.py.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from core.identities import Secret
from store.db import Database
from sync.webhooks import (
    MAX_BODY,
    WebhookApp,
    build_webhook_app,
    security_warning,
    series,
    serve_webhooks,
    sign,
)

SECRET = "webhook-test-secret-0123456789abcdef"

ISSUE_UPDATED = {
    "timestamp": 1760000000000,
    "webhookEvent": "jira:issue_updated",
    "issue_event_type_name": "issue_generic",
    "issue": {
        "id": "10002",
        "key": "OPS-12",
        "fields": {"summary": "VPN drops", "updated": "2026-10-14T09:00:00.000-0600"},
    },
}
PAGE_UPDATED = {
    "userAccountId": "557058:someone",
    "page": {"id": 294914, "spaceKey": "ENG", "title": "Runbook", "version": 2},
    "timestamp": 1760000000000,
}


@contextmanager
def listening(app: WebhookApp) -> Iterator[httpx.Client]:
    server = serve_webhooks(app, "127.0.0.1", 0, threads=4).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            yield client
    finally:
        server.close()


@pytest.fixture
def client(db: Database) -> Iterator[httpx.Client]:
    with listening(build_webhook_app(Secret(SECRET), db)) as c:
        yield c


def post_signed(
    client: httpx.Client,
    path: str,
    payload: Any,
    *,
    secret: str = SECRET,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    body = json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", "X-Hub-Signature": sign(secret, body)}
    sent.update(headers or {})
    return client.post(path, content=body, headers=sent)


def rows(db: Database) -> list[dict[str, Any]]:
    with db.connection() as conn:
        return conn.execute("SELECT * FROM webhook_events ORDER BY event_id").fetchall()


# --- authentication ---------------------------------------------------------------------------


def test_a_signed_jira_delivery_is_stored_before_it_is_accepted(
    db: Database, client: httpx.Client
) -> None:
    response = post_signed(
        client, "/webhooks/jira", ISSUE_UPDATED, headers={"X-Atlassian-Webhook-Identifier": "d-1"}
    )
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    [row] = rows(db)
    assert row["event_id"] == response.json()["event_id"]
    assert (row["source"], row["artifact_id"], row["kind"], row["event"]) == (
        "jira",
        "jira:OPS-12",
        "changed",
        "jira:issue_updated",
    )
    assert row["version"] == "2026-10-14T09:00:00.000-0600"
    assert (row["status"], row["delivery_id"], row["attempts"]) == ("pending", "id:d-1", 0)
    # What was parsed is kept, not the body (it can hold personal data).
    assert "VPN drops" not in json.dumps(row, default=str)


def test_the_event_is_committed_before_the_sender_hears_2xx(db: Database) -> None:
    seen: list[int] = []

    def on_stored() -> None:  # runs just before the answer; reads through another connection
        with db.connection() as conn:
            row = conn.execute("SELECT count(*) AS n FROM webhook_events").fetchone()
        seen.append(row["n"] if row else -1)

    with listening(build_webhook_app(Secret(SECRET), db, on_stored=on_stored)) as c:
        assert post_signed(c, "/webhooks/jira", ISSUE_UPDATED).status_code == 202
    assert seen == [1]


def test_unsigned_and_wrongly_signed_deliveries_get_401_and_store_nothing(
    db: Database, client: httpx.Client
) -> None:
    body = json.dumps(ISSUE_UPDATED).encode()
    assert client.post("/webhooks/jira", content=body).status_code == 401
    wrong_secret = post_signed(client, "/webhooks/jira", ISSUE_UPDATED, secret="not-the-secret")
    assert wrong_secret.status_code == 401
    other_body = client.post(
        "/webhooks/jira", content=body, headers={"X-Hub-Signature": sign(SECRET, body + b" ")}
    )
    assert other_body.status_code == 401
    sha1 = client.post(
        "/webhooks/jira", content=body, headers={"X-Hub-Signature": "sha1=" + "0" * 40}
    )
    assert sha1.status_code == 401
    garbage = client.post("/webhooks/jira", content=body, headers={"X-Hub-Signature": "sha256=zz"})
    assert garbage.status_code == 401
    # A bad signature is not rescued by a right token: the body was tampered with.
    both = client.post(
        f"/webhooks/jira?token={SECRET}",
        content=body,
        headers={"X-Hub-Signature": sign("nope", body)},
    )
    assert both.status_code == 401
    assert rows(db) == []


def test_a_token_in_the_query_authenticates_senders_that_cannot_sign(
    db: Database, client: httpx.Client
) -> None:
    body = json.dumps(PAGE_UPDATED).encode()
    ok = client.post("/webhooks/confluence/page_updated", params={"token": SECRET}, content=body)
    assert ok.status_code == 202
    bad = client.post("/webhooks/confluence/page_updated", params={"token": "guess"}, content=body)
    assert bad.status_code == 401
    twice = client.post(
        f"/webhooks/confluence/page_updated?token={SECRET}&token=guess", content=body
    )
    assert twice.status_code == 401
    [row] = rows(db)
    assert (row["artifact_id"], row["event"], row["version"]) == (
        "confluence:294914",
        "page_updated",
        "2",
    )


def test_without_a_secret_every_delivery_is_refused(db: Database) -> None:
    with listening(build_webhook_app(None, db)) as c:
        response = post_signed(c, "/webhooks/jira", ISSUE_UPDATED)
        assert response.status_code == 403
        assert "KB_WEBHOOK_SECRET" in response.json()["error"]
        assert c.post("/webhooks/confluence?token=", content=b"{}").status_code == 403
        assert c.get("/healthz").status_code == 200, "health and metrics still answer"
    assert rows(db) == []
    warning = security_warning(None, 8080)
    assert warning is not None and "KB_WEBHOOK_SECRET" in warning and "8080" in warning
    assert "short" in (security_warning(Secret("abc"), 8080) or "")
    assert security_warning(Secret(SECRET), 8080) is None


# --- limits and malformed input -----------------------------------------------------------------


def test_a_declared_oversized_body_gets_413_without_being_read(client: httpx.Client) -> None:
    port = client.base_url.port
    assert port is not None
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /webhooks/jira HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {2 * MAX_BODY}\r\n\r\n".encode()
            + b'{"webhookEvent": '  # a sliver of the 2 MiB it announced; the rest never comes
        )
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert time.monotonic() - started < 4, "answered at once, without waiting for the body"


def test_a_body_just_over_the_limit_gets_413_from_the_app(client: httpx.Client) -> None:
    body = b'{"pad": "' + b"x" * MAX_BODY + b'"}'
    response = client.post("/webhooks/jira", content=body)
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]


def test_an_oversized_chunked_body_gets_413(client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):  # 2.5 MiB in 64 KiB chunks
            yield b" " * (64 << 10)

    try:
        response = client.post("/webhooks/jira", content=chunks())
    except httpx.TransportError:
        return  # the server may close the connection before the client has finished sending
    assert response.status_code == 413


def test_a_small_chunked_body_is_accepted(db: Database, client: httpx.Client) -> None:
    body = json.dumps(ISSUE_UPDATED).encode()
    response = client.post(
        "/webhooks/jira",
        content=iter([body[:10], body[10:]]),
        headers={"X-Hub-Signature": sign(SECRET, body)},
    )
    assert response.status_code == 202
    assert len(rows(db)) == 1


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1, 2, 3]", b'"text"', b"\xff\xfe{}", b"", b"[" * 100_000]
)
def test_a_body_that_is_not_a_json_object_gets_400(
    db: Database, client: httpx.Client, body: bytes
) -> None:
    response = client.post(
        "/webhooks/jira", content=body, headers={"X-Hub-Signature": sign(SECRET, body)}
    )
    assert response.status_code == 400
    assert rows(db) == []


def test_the_server_runs_as_a_daemon_task_until_stopped(db: Database) -> None:
    server = serve_webhooks(build_webhook_app(Secret(SECRET), db), "127.0.0.1", 0)
    stop = threading.Event()
    task = threading.Thread(target=server.serve_until, args=(stop,))
    task.start()
    try:
        _wait_until_listening(server.port)
        assert httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200
    finally:
        stop.set()
        task.join(10)
    assert not task.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=2)


def _wait_until_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError("the server did not start listening")


def test_routes_and_methods(client: httpx.Client) -> None:
    assert client.get("/webhooks/jira").status_code == 405
    assert client.get("/webhooks/jira").headers["Allow"] == "POST"
    assert client.post("/healthz").status_code == 405
    assert client.post("/webhooks/github", content=b"{}").status_code == 404
    assert client.post("/webhooks/confluence/bad%20event", content=b"{}").status_code == 404
    assert client.post("/webhooks/confluence/a/b", content=b"{}").status_code == 404


# --- what is stored ------------------------------------------------------------------------------


def test_a_duplicate_delivery_is_stored_once(db: Database, client: httpx.Client) -> None:
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-7", "X-Atlassian-Webhook-Retry": "1"}
    first = post_signed(client, "/webhooks/jira", ISSUE_UPDATED, headers=headers)
    again = post_signed(client, "/webhooks/jira", ISSUE_UPDATED, headers=headers)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    # Without an identifier the body (and the route's event) identify the delivery.
    post_signed(client, "/webhooks/confluence/page_updated", PAGE_UPDATED)
    repeat = post_signed(client, "/webhooks/confluence/page_updated", PAGE_UPDATED)
    assert repeat.json()["status"] == "duplicate"
    other_event = post_signed(client, "/webhooks/confluence/page_moved", PAGE_UPDATED)
    assert other_event.json()["status"] == "accepted"
    stored = rows(db)
    assert [(r["source"], r["event"], r["duplicates"]) for r in stored] == [
        ("jira", "jira:issue_updated", 1),
        ("confluence", "page_updated", 1),
        ("confluence", "page_moved", 0),
    ]


def test_a_data_center_body_names_its_event_and_may_carry_only_an_id(
    db: Database, client: httpx.Client
) -> None:
    body = {"event": "page_trashed", "page": {"id": 123}, "timestamp": 1}
    assert post_signed(client, "/webhooks/confluence", body).status_code == 202
    [row] = rows(db)
    assert (row["artifact_id"], row["kind"], row["event"]) == (
        "confluence:123",
        "deleted",
        "page_trashed",
    )


def test_an_unknown_event_is_ignored_with_202_and_counted(
    db: Database, client: httpx.Client
) -> None:
    sprint = {"webhookEvent": "sprint_started", "sprint": {"id": 1}}
    response = post_signed(client, "/webhooks/jira", sprint)
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    comment = {"comment": {"id": 5}, "timestamp": 2}
    assert post_signed(client, "/webhooks/confluence/comment_created", comment).status_code == 202
    assert [(r["status"], r["artifact_id"], r["event"]) for r in rows(db)] == [
        ("ignored", None, "sprint_started"),
        ("ignored", None, "comment_created"),
    ]
    metrics = parse_exposition(client.get("/metrics").text)
    assert metrics[series("kb_webhook_events", source="jira", status="ignored")] == 1
    assert metrics[series("kb_webhook_events", source="confluence", status="ignored")] == 1


def test_sender_chosen_text_is_made_storable(db: Database, client: httpx.Client) -> None:
    """Postgres text cannot hold NUL: a delivery refused for it would be retried for ever."""
    odd = {"webhookEvent": "sprint\u0000_started" + "x" * 500}
    response = post_signed(
        client, "/webhooks/jira", odd, headers={"X-Atlassian-Webhook-Identifier": "id\tone"}
    )
    assert response.status_code == 202
    [row] = rows(db)
    assert row["event"] == "sprint_started" + "x" * 86
    assert row["delivery_id"] == "id:idone"


def test_the_store_being_unavailable_answers_503_so_the_sender_retries(db: Database) -> None:
    closed = Database.open(db.url, schema=db.schema, max_size=1)
    closed.close()
    with listening(build_webhook_app(Secret(SECRET), closed)) as c:
        response = post_signed(c, "/webhooks/jira", ISSUE_UPDATED)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "30"
        assert c.get("/healthz").status_code == 503
        assert "kb_store_up 0" in c.get("/metrics").text
    assert rows(db) == []


# --- /healthz and /metrics ------------------------------------------------------------------------


def test_healthz_reports_the_store_and_the_last_sync_of_each_source(
    db: Database, client: httpx.Client
) -> None:
    with db.connection() as conn:
        conn.execute(
            "INSERT INTO sync_runs (source, scopes, mode, status, finished_at, synced, errors)"
            " VALUES ('confluence', '{ENG}', 'full', 'ok', now(), 4, '[]'),"
            " ('jira', '{OPS}', 'incremental', 'failed', now(), 0,"
            " '[\"jira OPS: Jira answered 500 for a secret page\"]')"
        )
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["ok"] is True and report["database"] == "ok"
    assert report["sources"]["confluence"]["status"] == "ok"
    assert report["sources"]["confluence"]["synced"] == 4
    assert report["sources"]["jira"]["status"] == "failed"
    assert "secret page" not in response.text, "error texts stay out of an open endpoint"
    assert report["webhooks"] == {"pending": 0, "dead": 0, "oldest_pending_seconds": 0}


def test_healthz_uses_the_daemons_report_when_given(db: Database) -> None:
    app = build_webhook_app(Secret(SECRET), db, health=lambda: {"ok": False, "why": "stopping"})
    with listening(app) as c:
        response = c.get("/healthz")
    assert (response.status_code, response.json()["why"]) == (503, "stopping")

    def broken() -> dict[str, object]:
        raise RuntimeError("scheduler gone")

    with listening(build_webhook_app(Secret(SECRET), db, health=broken)) as c:
        assert c.get("/healthz").status_code == 503


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? (\S+)$'
)


def parse_exposition(text: str) -> dict[str, float]:
    """A strict reader of the text format: every family's HELP and TYPE before its samples."""
    assert text.endswith("\n")
    samples: dict[str, float] = {}
    typed: dict[str, str] = {}
    helped: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split()[2]
            assert name not in helped, f"{name} described twice"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in ("counter", "gauge") and name not in typed
            typed[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match.group(1)
            assert name in typed and name in helped, f"{name} sampled before its HELP/TYPE"
            assert line.rsplit(" ", 1)[0] not in samples, f"duplicate series {line!r}"
            samples[line.rsplit(" ", 1)[0]] = float(match.group(3))
    return samples


def test_metrics_are_valid_prometheus_text_with_every_figure(db: Database) -> None:
    def extra() -> dict[str, float]:
        return {
            "kb_answer_cache_hits_total": 3,
            series("kb_answer_cache_misses_total", gate="similarity"): 2,
            "kb_answers_dirtied_total": 1,
        }

    with db.connection() as conn:
        conn.execute(
            "INSERT INTO sync_runs (source, scopes, mode, status, finished_at, synced, deleted)"
            " VALUES ('confluence', '{ENG}', 'full', 'ok', now(), 5, 1)"
        )
        conn.execute(
            "INSERT INTO outbox (kind, dedupe_key, payload, sent_at) VALUES"
            " ('notice', 'a', '{}', now()), ('notice', 'b', '{}', NULL),"
            " ('ops_alert', 'c', '{}', NULL)"
        )
        conn.execute("UPDATE outbox SET dead_at = now() WHERE dedupe_key = 'c'")
    with listening(build_webhook_app(Secret(SECRET), db, extra_metrics=extra)) as c:
        post_signed(c, "/webhooks/jira", ISSUE_UPDATED)
        c.post("/webhooks/jira", content=b"{}")  # 401
        response = c.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    m = parse_exposition(response.text)
    assert "# TYPE kb_webhook_requests_total counter" in response.text
    assert m[series("kb_webhook_requests_total", route="jira", code="202")] == 1
    assert m[series("kb_webhook_requests_total", route="jira", code="401")] == 1
    assert m[series("kb_webhook_events", source="jira", status="pending")] == 1
    assert m[series("kb_webhook_events", source="confluence", status="dead")] == 0
    assert m[series("kb_sync_runs_total", source="confluence", status="ok")] == 1
    assert m[series("kb_sync_artifacts_total", source="confluence", outcome="synced")] == 5
    assert m[series("kb_sync_artifacts_total", source="confluence", outcome="deleted")] == 1
    assert m[series("kb_outbox_messages", kind="notice", state="sent")] == 1
    assert m[series("kb_outbox_messages", kind="notice", state="pending")] == 1
    assert m[series("kb_outbox_messages", kind="ops_alert", state="dead")] == 1
    assert m["kb_answer_cache_hits_total"] == 3
    assert m[series("kb_answer_cache_misses_total", gate="similarity")] == 2
    assert m["kb_store_up"] == 1
    assert m["kb_webhook_oldest_pending_seconds"] >= 0


def test_the_bots_figures_appear_once_each_under_one_name(db: Database) -> None:
    with db.connection() as conn:
        conn.execute("INSERT INTO bot_counters (name, value) VALUES ('slack_answers', 4)")
        conn.execute(
            "INSERT INTO bot_threads (platform, channel, thread) VALUES ('slack', 'C1', '1.1')"
        )
        conn.execute(
            "INSERT INTO outbox (kind, dedupe_key, payload, sent_at) VALUES"
            " ('notice', 'a', '{}', now())"
        )
    with listening(build_webhook_app(Secret(SECRET), db)) as c:
        m = parse_exposition(c.get("/metrics").text)
    assert m["kb_slack_answers_total"] == 4
    assert m[series("kb_threads_answered", platform="slack")] == 1
    assert m[series("kb_outbox_messages", kind="notice", state="sent")] == 1
    assert m["kb_outbox_in_flight"] == 0
    assert not [k for k in m if k.startswith("kb_outbox_notice")], "no second name for a count"


def test_a_failing_extra_collector_does_not_hide_the_other_metrics(db: Database) -> None:
    def broken() -> dict[str, float]:
        raise RuntimeError("collector bug")

    bad_name: Callable[[], dict[str, float]] = lambda: {"not a metric": 1.0}  # noqa: E731
    for extra in (broken, bad_name):
        with listening(build_webhook_app(Secret(SECRET), db, extra_metrics=extra)) as c:
            response = c.get("/metrics")
        assert response.status_code == 200
        assert parse_exposition(response.text)["kb_store_up"] == 1
