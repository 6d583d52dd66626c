"""Document frequencies of the chunks' lexemes and the corpus size, for BM25 (term_stats,
corpus_stats).

Kept current by triggers on ``chunks`` (migration 0009): each write adds or subtracts the
lexemes of the rows it touched, so a sync pays for what it changed, not for the corpus.
``rebuild`` recomputes everything from the chunks; it is for bulk loads that disabled the
triggers, and it runs by itself when ``refresh`` finds the counts out of step.
"""

from __future__ import annotations

from store.db import Connection

_LOCK = 0x6B62_7473  # "kbts": advisory-lock namespace of the statistics rebuild

REBUILD = [
    # Writers queue behind this (their triggers would race the DELETE and INSERT below).
    "LOCK TABLE chunks IN SHARE MODE",
    "DELETE FROM term_stats",
    """INSERT INTO term_stats (lexeme, ndoc)
       SELECT word, ndoc FROM ts_stat('SELECT tsv FROM chunks')""",
    "DELETE FROM corpus_stats",
    """INSERT INTO corpus_stats (chunks, avg_length, total_length)
       SELECT count(*), coalesce(avg(length(tsv)), 1), coalesce(sum(length(tsv)), 0)
       FROM chunks""",
]

# One statement, one snapshot: a commit landing between two reads cannot fake a mismatch.
IN_STEP = """
SELECT coalesce((SELECT chunks FROM corpus_stats), 0) = (SELECT count(*) FROM chunks) AS ok
"""


def rebuild(conn: Connection) -> None:
    """Recompute the statistics from every chunk (seconds at 100,000 chunks)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_LOCK,))
    for statement in REBUILD:
        conn.execute(statement)


def refresh(conn: Connection) -> bool:
    """Make sure the statistics match the chunks; True if they had to be rebuilt.

    With the triggers in place this is one count (milliseconds); a rebuild happens only
    after a bulk load that bypassed them."""
    row = conn.execute(IN_STEP).fetchone()
    if row is not None and row["ok"]:
        return False
    rebuild(conn)
    return True
