"""What bench/soak.py measures besides its own requests: memory per process (from /proc), the
store's counts (deliveries, sync runs, notices), percentiles and the run's latency drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg

Samples = list[tuple[float, dict[str, dict[str, float]]]]


def _memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, private anonymous memory) in MiB. Postgres backends' RSS grows as they touch more
    of the shared buffers, which is not a leak; RssAnon is what each process holds alone."""
    found = {"VmRSS:": 0.0, "RssAnon:": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0] + ":"
            if key in found:
                found[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return found["VmRSS:"], found["RssAnon:"]


def memory(pids: list[int]) -> dict[str, float]:
    pairs = [_memory_mb(pid) for pid in pids]
    return {"rss": sum(r for r, _ in pairs), "anon": sum(a for _, a in pairs)}


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def processes(up: int, pgdata: Path) -> dict[str, list[int]]:
    named: dict[str, list[int]] = {"up": [up]}
    for child in _children(up):
        name = "bot" if _cmdline(child).rstrip().endswith(" bot") else "daemon"
        named[name] = [child]
    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists():
        postmaster = int(pid_file.read_text().split()[0])
        named["postgres"] = [postmaster, *_children(postmaster)]
    return named


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def memory_summary(samples: Samples) -> dict[str, dict[str, float]]:
    """Per process: RSS first/last/max/growth and private memory growth, from the first sample
    taken after the warm-up minute."""
    warm = [s for t, s in samples if t >= 60] or [s for _, s in samples]

    def figure(name: str, kind: str, at: int) -> float:
        return round(warm[at].get(name, {}).get(kind, 0.0), 1)

    return {
        name: {
            "first_mb": figure(name, "rss", 0),
            "last_mb": figure(name, "rss", -1),
            "max_mb": round(max(s.get(name, {}).get("rss", 0.0) for s in warm), 1),
            "growth_mb": round(figure(name, "rss", -1) - figure(name, "rss", 0), 1),
            "anon_first_mb": figure(name, "anon", 0),
            "anon_growth_mb": round(figure(name, "anon", -1) - figure(name, "anon", 0), 1),
        }
        for name in sorted({n for s in warm for n in s})
    }


def latency_drift(timed: list[tuple[float, float]], span: float) -> dict[str, float | None]:
    """The run's own baseline: answer p95 of the first five minutes after the warm-up against
    the last five (``timed``: seconds into the run when asked, seconds to the answer)."""
    early = [x for t, x in timed if 60 <= t < 360]
    late = [x for t, x in timed if t >= span - 300]
    early_p95, late_p95 = percentile(early, 0.95), percentile(late, 0.95)
    return {
        "answer_p95_first_5_min_ms": early_p95,
        "answer_p95_last_5_min_ms": late_p95,
        "ratio_last_to_first": round(late_p95 / early_p95, 2) if early_p95 and late_p95 else None,
    }


def store_counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        events = dict(
            conn.execute("SELECT status, count(*) FROM webhook_events GROUP BY 1").fetchall()
        )
        p95 = conn.execute(
            "SELECT percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM "
            "processed_at - received_at)) FROM webhook_events WHERE status = 'done'"
        ).fetchone()
        runs = dict(
            conn.execute(
                "SELECT status, count(*) FROM sync_runs WHERE mode = 'incremental' GROUP BY 1"
            ).fetchall()
        )
        notices = dict(
            conn.execute(
                "SELECT CASE WHEN sent_at IS NOT NULL THEN 'sent' WHEN dead_at IS NOT NULL "
                "THEN 'dead' ELSE 'pending' END, count(*) FROM outbox WHERE kind = 'notice' "
                "GROUP BY 1"
            ).fetchall()
        )
    return {
        "webhooks_done": int(events.get("done", 0)),
        "webhooks_superseded": int(events.get("superseded", 0)),
        "webhooks_pending": int(events.get("pending", 0)),
        "webhooks_dead": int(events.get("dead", 0)),
        "webhook_processed_p95_ms": None if not p95 or p95[0] is None else round(p95[0] * 1000),
        "sync_runs": {str(k): int(v) for k, v in runs.items()},
        "notices_in_outbox": {str(k): int(v) for k, v in notices.items()},
    }
