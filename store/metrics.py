"""The one metrics module: every figure of ``/metrics`` and ``/healthz``, read from Postgres
with one query per table, in-process request counters, and the Prometheus text exposition
format (0.0.4). docs/ARCHITECTURE.md, "Endpoints", lists the families.

A sample is keyed by its series, ``name{label="value",...}`` (see :func:`series`), so other
parts of the daemon (the answer cache) can hand their counters over as a plain dict. The bot's
own counters (answers, votes, threads) are read here too, so each figure has one name.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import PoolTimeout

from store import sync_state, webhook_events
from store.db import Connection, Database

log = logging.getLogger(__name__)

EVENT_STATUSES = ("pending", "done", "dead", "ignored", "superseded")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# family -> (type, help). Families not listed are counters when named *_total, else gauges.
FAMILIES: dict[str, tuple[str, str]] = {
    "kb_store_up": ("gauge", "1 when the daemon could read the store for this scrape, else 0."),
    "kb_webhook_requests_total": (
        "counter",
        "Webhook listener HTTP responses since the daemon started, by route and status code.",
    ),
    "kb_webhook_events": (
        "gauge",
        "Stored webhook deliveries by source and status (finished rows may be pruned).",
    ),
    "kb_webhook_duplicate_deliveries": (
        "gauge",
        "Repeat deliveries of an already stored webhook delivery, by source.",
    ),
    "kb_webhook_outcomes": (
        "gauge",
        "Processed webhook events by source and sync outcome (synced, unchanged, deleted...).",
    ),
    "kb_webhook_oldest_pending_seconds": (
        "gauge",
        "Age of the oldest webhook event still waiting to be processed (0: none).",
    ),
    "kb_sync_runs_total": ("counter", "Sync runs by source and final status."),
    "kb_sync_artifacts_total": (
        "counter",
        "Artifacts handled by sync runs, by source and outcome (synced = changed and re-indexed).",
    ),
    "kb_sync_last_run_timestamp_seconds": (
        "gauge",
        "When the latest sync run of a source finished (or started, while running), by status.",
    ),
    "kb_artifacts": ("gauge", "Indexed artifacts by source and state (live, deleted)."),
    "kb_outbox_messages": (
        "gauge",
        "Outbox rows (notices, ops alerts, sync results, source-change intents) by kind and state.",
    ),
    "kb_outbox_in_flight": ("gauge", "Outbox messages claimed by a deliverer and being sent."),
    "kb_feedback_votes": ("gauge", "Votes on answers by platform and vote."),
    "kb_threads_answered": ("gauge", "Threads the bot has answered in, by platform."),
    "kb_answer_cache_hits_total": ("counter", "Questions answered from the answer cache."),
    "kb_answer_cache_misses_total": ("counter", "Answer cache lookups that missed, by gate."),
    "kb_answers_dirtied_total": ("counter", "Cached answers marked stale by a source change."),
    "kb_answers_evicted_total": ("counter", "Cached answers evicted because a source was deleted."),
}

_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
_SERIES = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{{{_LABEL}(?:,{_LABEL})*\}})?$")


def series(name: str, **labels: str) -> str:
    """``name{a="x",b="y"}`` with label values escaped as the exposition format requires."""
    if not labels:
        return name
    inner = ",".join(f'{key}="{_escape_label(str(value))}"' for key, value in labels.items())
    return f"{name}{{{inner}}}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render_prometheus(samples: Mapping[str, float]) -> str:
    """Samples as exposition text: each family once, with its HELP and TYPE lines first."""
    families: dict[str, list[tuple[str, float]]] = {}
    for key, value in samples.items():
        match = _SERIES.match(key)
        if match is None:
            log.warning("metric %r is not a valid Prometheus series; left out", key[:200])
            continue
        families.setdefault(match.group(1), []).append((key, float(value)))
    lines: list[str] = []
    for name in sorted(families):
        kind, text = FAMILIES.get(
            name, ("counter" if name.endswith("_total") else "gauge", f"kb-bot metric {name}.")
        )
        lines.append(f"# HELP {name} {text.replace(chr(92), chr(92) * 2)}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{key} {_format_value(value)}" for key, value in families[name])
    return "\n".join(lines) + "\n"


class RequestCounters:
    """HTTP responses of the listener by route and status, since start (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int], int] = {}

    def add(self, route: str, status: int) -> None:
        with self._lock:
            self._counts[(route, status)] = self._counts.get((route, status), 0) + 1

    def samples(self) -> dict[str, float]:
        with self._lock:
            counts = dict(self._counts)
        return {
            series("kb_webhook_requests_total", route=route, code=str(status)): float(n)
            for (route, status), n in sorted(counts.items())
        }


METRIC_COUNTERS = "SELECT name, value FROM bot_counters"
METRIC_VOTES = "SELECT platform, vote, count(*) AS n FROM feedback GROUP BY platform, vote"
METRIC_THREADS = "SELECT platform, count(*) AS n FROM bot_threads GROUP BY platform"
METRIC_IN_FLIGHT = "SELECT count(*) AS n FROM outbox_claims"


def bot_rows(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    """The bot's counters, votes, answered threads and in-flight deliveries."""
    return {
        name: conn.execute(sql).fetchall()
        for name, sql in (
            ("counters", METRIC_COUNTERS),
            ("votes", METRIC_VOTES),
            ("threads", METRIC_THREADS),
            ("in_flight", METRIC_IN_FLIGHT),
        )
    }


def store_metrics(
    db: Database, sources: Sequence[str] = (), *, timeout: float = 5.0
) -> dict[str, float]:
    """Figures from Postgres: webhook events by outcome, syncs, artifacts, the outbox, the
    bot's counters. ``sources`` (the registry's names) get zero series rather than gaps.

    ``kb_store_up`` is 0 (and nothing else is returned) when the store cannot be read.
    """
    try:
        with db.pool.connection(timeout=timeout) as conn:
            rows = webhook_events.metric_rows(conn) | bot_rows(conn)
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning("metrics: the store could not be read (%s)", type(exc).__name__)
        return {"kb_store_up": 0.0}
    out: dict[str, float] = {"kb_store_up": 1.0}
    for source in sources:  # every combination, so dashboards see zeros rather than gaps
        for status in EVENT_STATUSES:
            out[series("kb_webhook_events", source=source, status=status)] = 0.0
        out[series("kb_webhook_duplicate_deliveries", source=source)] = 0.0
    for r in rows["events"]:
        out[series("kb_webhook_events", source=r["source"], status=r["status"])] = r["events"]
        dup_key = series("kb_webhook_duplicate_deliveries", source=r["source"])
        out[dup_key] = out.get(dup_key, 0.0) + r["dups"]
    for r in rows["webhook_outcomes"]:
        out[series("kb_webhook_outcomes", source=r["source"], outcome=r["outcome"])] = r["n"]
    for r in rows["sync_runs"]:
        out[series("kb_sync_runs_total", source=r["source"], status=r["status"])] = r["runs"]
        for outcome in ("synced", "unchanged", "deleted", "skipped", "failed"):
            key = series("kb_sync_artifacts_total", source=r["source"], outcome=outcome)
            out[key] = out.get(key, 0.0) + (r[outcome] or 0.0)
    for r in rows["last_runs"]:
        key = series("kb_sync_last_run_timestamp_seconds", source=r["source"], status=r["status"])
        out[key] = r["at"]
    for r in rows["artifacts"]:
        out[series("kb_artifacts", source=r["source"], state="live")] = r["live"]
        out[series("kb_artifacts", source=r["source"], state="deleted")] = r["deleted"]
    for r in rows["queue"]:
        out["kb_webhook_oldest_pending_seconds"] = r["oldest_pending_seconds"]
    for r in rows["outbox"]:
        out[series("kb_outbox_messages", kind=r["kind"], state=r["state"])] = r["n"]
    for r in rows["in_flight"]:
        out["kb_outbox_in_flight"] = float(r["n"])
    for r in rows["counters"]:
        out[f"kb_{r['name']}_total"] = float(r["value"])
    for r in rows["votes"]:
        out[series("kb_feedback_votes", platform=r["platform"], vote=r["vote"])] = float(r["n"])
    for r in rows["threads"]:
        out[series("kb_threads_answered", platform=r["platform"])] = float(r["n"])
    return out


def health_report(db: Database, *, timeout: float = 0.5) -> dict[str, Any]:
    """``ok`` is whether the store answers; per source, the latest sync run's outcome; the
    webhook queue. Error texts are left out: this endpoint is unauthenticated.

    Answered within about a second whatever Postgres does: a probe with a 0.8 s deadline
    first (store/outage.py), then at most ``timeout`` for a pooled connection."""
    if not db.reachable():  # the probe logs the outage once (store/outage.py)
        return {"ok": False, "database": "unreachable"}
    try:
        with db.connection(timeout=timeout) as conn:
            runs = sync_state.latest_runs(conn)
            queue = webhook_events.queue_stats(conn)
    except (psycopg.Error, PoolTimeout) as exc:
        log.warning("health: the store could not be read (%s)", type(exc).__name__)
        return {"ok": False, "database": "unreachable"}
    return {
        "ok": True,
        "database": "ok",
        "sources": {
            r["source"]: {
                "last_run_id": r["run_id"],
                "status": r["status"],
                "started_at": _iso(r["started_at"]),
                "finished_at": _iso(r["finished_at"]),
                "synced": r["synced"],
                "deleted": r["deleted"],
                "failed": r["failed"],
            }
            for r in runs
        },
        "webhooks": {
            "pending": queue.pending,
            "dead": queue.dead,
            "oldest_pending_seconds": round(queue.oldest_pending_seconds, 3),
        },
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
