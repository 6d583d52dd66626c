"""Fault class 2 (the webhook endpoints only): odd signed bodies never give a 500 or a traceback.

Every body here is signed correctly, so it passes authentication and reaches the parsers: JSON
of the wrong shape, deep nesting, huge numbers, invalid UTF-8. Each must be answered 2xx
(ignored) or 4xx, with no traceback in the log. This held already when it was written; it is
here so that a regression shows up in CI.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest

from core.identities import Secret
from store.db import Database
from sync.webhooks import build_webhook_app, serve_webhooks, sign

SECRET = "fault-suite-webhook-secret-0123456789"
PATHS = ("/webhooks/jira", "/webhooks/confluence", "/webhooks/confluence/page_updated")
BODIES = [
    b"[]",
    b"null",
    b"1",
    b'"x"',
    b"\xff\xfe{",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
    b'{"webhookEvent": 5}',
    b'{"webhookEvent": "jira:issue_updated", "issue": []}',
    b'{"webhookEvent": "jira:issue_updated", "issue": {"key": ["OPS-1"]}}',
    b'{"webhookEvent": "jira:issue_updated", "issue": {"key": "OPS-1", "fields": 5}}',
    b'{"webhookEvent": "comment_created", "comment": 5, "issue": "x"}',
    b'{"timestamp": "x", "webhookEvent": "jira:issue_deleted", "issue": {"key": "OPS-1"}}',
    b'{"event": ["page_updated"], "page": 5}',
    b'{"page": {"id": {"a": 1}}}',
    b'{"page": {"id": 1e400}}',
    b'{"page": {"id": 99999999999999999999999999999999999999}}',
    b'{"page": {"id": "1", "version": []}, "timestamp": []}',
    b'{"userAccountId": [], "page": {"id": "\\u00b2"}}',
]


@pytest.fixture(scope="module")
def client(module_db: Database) -> Iterator[httpx.Client]:
    server = serve_webhooks(build_webhook_app(Secret(SECRET), module_db), "127.0.0.1", 0)
    server.start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        server.close()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("body", BODIES, ids=lambda b: b[:24].decode("latin-1"))
def test_an_odd_signed_body_is_refused_or_ignored_without_a_traceback(
    client: httpx.Client, path: str, body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response = client.post(path, content=body, headers={"X-Hub-Signature": sign(SECRET, body)})
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
