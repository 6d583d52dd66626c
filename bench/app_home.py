"""App Home and pane prompts: what the answers_served record costs, at 100k rows.

Run: .venv/bin/python bench/app_home.py [--rows 100000] [--reps 200]
(or ``python -m bench.app_home``).

Fills ``answers_served`` with ``--rows`` answers spread over 90 days (20 scopes, the busiest
holding 40% of them, 2,000 distinct questions) and 5,000 votes of the last 7 days, then times,
interleaved so machine noise hits both sides alike, each new cost beside a baseline that the
bot already pays:

* a pane's prompts (``popular_cached_questions`` in the busiest scope) vs ``is_bot_thread``
  (one indexed lookup the bot makes for every thread reply);
* an admin's App Home (``read_home`` with the admin figures + ``render_home``) vs a plain
  user's;
* recording one answer served (``record_served``, with its pruning) vs the counter bump every
  posted answer already does.

Uses the embedded Postgres (a temporary data dir) unless KB_BENCH_DATABASE_URL is set.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

# Run as a script, bench/ is first on sys.path and would shadow top-level packages.
_BENCH = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _BENCH]
sys.path.insert(0, str(_BENCH.parent))

from bot import bot_state  # noqa: E402
from bot.slack.home import render_home  # noqa: E402
from store import answer_stats  # noqa: E402
from store.answer_stats import Served  # noqa: E402
from store.app_home import read_home  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.migrate import migrate  # noqa: E402

BUSIEST = "confluence:S00"
SOURCES = (("confluence", "Confluence"), ("jira", "Jira"))


def fill(db: Database, rows: int) -> None:
    with db.connection() as conn:
        conn.execute(
            """
            INSERT INTO answers_served (platform, channel, thread, scope_key, unit_id,
                                        question, question_norm, from_cache, served_at)
            SELECT 'slack', 'C' || lpad((n %% 300)::text, 8, '0'),
                   (1700000000 + n) || '.000100',
                   CASE WHEN n %% 5 < 2 THEN %(busiest)s
                        ELSE 'confluence:S' || lpad((n %% 19 + 1)::text, 2, '0') END,
                   'u' || (n %% 2000), 'How do I do task ' || (n %% 2000) || '?',
                   'how do i do task ' || (n %% 2000), n %% 3 > 0,
                   now() - make_interval(secs => (n::float / %(rows)s) * 89 * 86400)
            FROM generate_series(1, %(rows)s) AS n
            """,
            {"rows": rows, "busiest": BUSIEST},
        )
        conn.execute(
            """
            INSERT INTO feedback (unit_id, platform, user_id, vote, updated_at)
            SELECT 'u' || (n % 2000), 'slack', 'U' || n,
                   CASE WHEN n % 3 = 0 THEN 'not_helpful' ELSE 'helpful' END,
                   now() - make_interval(secs => n % (7 * 86400))
            FROM generate_series(1, 5000) AS n
            """
        )
    with db.pool.connection() as conn:  # as autovacuum leaves a table (VACUUM needs autocommit)
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE answers_served")
        conn.execute("VACUUM ANALYZE feedback")
        conn.autocommit = False


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3)


def versus(reps: int, new: Callable[[], object], base: Callable[[], object]) -> dict[str, object]:
    """Interleaved timings (ms) of ``new`` and ``base``, and the ratio of their medians."""
    times: dict[str, list[float]] = {"new": [], "baseline": []}
    for i in range(reps + 10):
        for name, run in (("new", new), ("baseline", base))[:: 1 if i % 2 else -1]:
            started = time.perf_counter()
            run()
            if i >= 10:  # warm-up
                times[name].append((time.perf_counter() - started) * 1000)
    out: dict[str, object] = {
        name: {"p50_ms": pct(v, 0.5), "p95_ms": pct(v, 0.95)} for name, v in times.items()
    }
    out["ratio_p50"] = round(pct(times["new"], 0.5) / pct(times["baseline"], 0.5), 2)
    return out


def measure(db: Database, reps: int) -> dict[str, object]:
    def prompts() -> object:
        with db.connection() as conn:
            return answer_stats.popular_cached_questions(conn, BUSIEST, limit=4)

    def bot_thread() -> object:
        with db.connection() as conn:
            return bot_state.is_bot_thread(conn, "slack", "C00000001", "1.1")

    def admin_home() -> object:
        with db.connection() as conn:
            home = read_home(conn, "slack", sync_sources=SOURCES)
        return render_home(home, "D0HOME", team_url="https://kb.slack.com/")

    def plain_home() -> object:
        with db.connection() as conn:
            home = read_home(conn, "slack", sync_sources=None)
        return render_home(home, "D0HOME")

    served = Served("slack", "CBENCH", "1800000000.000100", BUSIEST, "u1", "How do I x?", True)

    def record() -> object:
        with db.connection() as conn:
            answer_stats.record_served(conn, served)
        return None

    def bump() -> object:
        with db.connection() as conn:
            bot_state.bump(conn, "slack_answers_posted")
        return None

    return {
        "pane_prompts_vs_is_bot_thread": versus(reps, prompts, bot_thread),
        "admin_home_vs_plain_home": versus(reps, admin_home, plain_home),
        "record_served_vs_counter_bump": versus(reps, record, bump),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    db = Database.open(url, schema=f"bench_{uuid.uuid4().hex[:8]}", max_size=4)
    try:
        migrate(db)
        fill(db, args.rows)
        result = {
            "bench": "app_home",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} cpus, "
            f"Python {platform.python_version()}",
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "rows": args.rows,
            "reps": args.reps,
            **measure(db, args.reps),
        }
    finally:
        db.drop_schema()
        db.close()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
