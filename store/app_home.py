"""What an App Home shows, read from Postgres on each open (docs/ARCHITECTURE.md, "Slack AI
surface"): what kb-bot knows for everyone, and for admins how syncing and answering go (the
answer figures come from :mod:`store.answer_stats`, so they hold for either cache backend).

Platform-neutral values; ``bot/slack/home.py`` renders them. Plain SQL, named queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.answer_stats import RatedAnswer, ServedFigures, least_helpful_7d, served_7d
from store.db import Connection

LEAST_HELPFUL_SHOWN = 10

KNOWLEDGE = """
SELECT source, scope_key, count(*) AS items, max(synced_at) AS last_synced
FROM artifacts WHERE deleted_at IS NULL
GROUP BY source, scope_key ORDER BY source, scope_key
"""

RUNS_7D = """
SELECT source, count(*) AS runs, count(*) FILTER (WHERE status = 'failed') AS failed,
       max(started_at) FILTER (WHERE status = 'failed') AS last_failure,
       max(finished_at) FILTER (WHERE status IN ('ok', 'partial')) AS last_ok
FROM sync_runs WHERE started_at > now() - interval '7 days'
GROUP BY source ORDER BY source
"""

DEAD_WEBHOOKS = """
SELECT source, count(*) AS dead FROM webhook_events WHERE status = 'dead'
GROUP BY source ORDER BY source
"""

VOTES_7D = """
SELECT vote, count(*) AS n FROM feedback
WHERE platform = %s AND updated_at > now() - interval '7 days' GROUP BY vote
"""

ANSWERED_CHANNELS = """
SELECT channel FROM bot_threads WHERE platform = %s AND channel NOT LIKE 'D%%'
GROUP BY channel ORDER BY max(answered_at) DESC LIMIT 50
"""


@dataclass(frozen=True)
class ScopeRow:
    source: str
    scope_key: str
    items: int
    last_synced: datetime | None


@dataclass(frozen=True)
class SourceHealth:
    source: str
    runs: int
    failed: int
    last_failure: datetime | None
    last_ok: datetime | None
    dead_webhooks: int


@dataclass(frozen=True)
class AdminFigures:
    sources: tuple[SourceHealth, ...]
    helpful: int  # votes in the last 7 days
    not_helpful: int
    served: ServedFigures  # answers posted in the last 7 days, and how many from the cache
    least_helpful: tuple[RatedAnswer, ...]  # the worst LEAST_HELPFUL_SHOWN of 7 days
    least_helpful_total: int
    sync_sources: tuple[tuple[str, str], ...]  # (name, label) of each configured source


@dataclass(frozen=True)
class Home:
    knowledge: tuple[ScopeRow, ...]
    channels: tuple[str, ...]
    admin: AdminFigures | None


def read_home(
    conn: Connection, platform: str, *, sync_sources: tuple[tuple[str, str], ...] | None
) -> Home:
    """The home for one person; ``sync_sources`` is given only for an admin."""
    knowledge = tuple(
        ScopeRow(r["source"], r["scope_key"], int(r["items"]), r["last_synced"])
        for r in conn.execute(KNOWLEDGE).fetchall()
    )
    channels = tuple(r["channel"] for r in conn.execute(ANSWERED_CHANNELS, (platform,)))
    if sync_sources is None:
        return Home(knowledge, channels, None)
    dead = {r["source"]: int(r["dead"]) for r in conn.execute(DEAD_WEBHOOKS).fetchall()}
    runs = {r["source"]: r for r in conn.execute(RUNS_7D).fetchall()}
    names = sorted({*runs, *dead, *(name for name, _ in sync_sources)})
    health = tuple(
        SourceHealth(
            source=name,
            runs=int(runs[name]["runs"]) if name in runs else 0,
            failed=int(runs[name]["failed"]) if name in runs else 0,
            last_failure=runs[name]["last_failure"] if name in runs else None,
            last_ok=runs[name]["last_ok"] if name in runs else None,
            dead_webhooks=dead.get(name, 0),
        )
        for name in names
    )
    votes = {r["vote"]: int(r["n"]) for r in conn.execute(VOTES_7D, (platform,)).fetchall()}
    worst, worst_total = least_helpful_7d(conn, platform, limit=LEAST_HELPFUL_SHOWN)
    figures = AdminFigures(
        sources=health,
        helpful=votes.get("helpful", 0),
        not_helpful=votes.get("not_helpful", 0),
        served=served_7d(conn, platform),
        least_helpful=worst,
        least_helpful_total=worst_total,
        sync_sources=sync_sources,
    )
    return Home(knowledge, channels, figures)
