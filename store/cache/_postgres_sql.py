"""Named queries of the Postgres answer cache (store/cache/_postgres.py, migration 0003)."""

_UNIT = """
SELECT u.unit_id, u.scope_key, u.question_norm, u.body, u.dirty, u.created_at, u.served_at,
       u.served_count,
       (SELECT coalesce(jsonb_object_agg(s.artifact_id,
                                         jsonb_build_array(s.content_hash, s.version)),
                        '{}'::jsonb)
          FROM answer_unit_sources s WHERE s.unit_id = u.unit_id) AS provenance,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(p.platform, p.channel, p.thread)
                                  ORDER BY p.posted_at, p.platform, p.channel, p.thread),
                        '[]'::jsonb)
          FROM answer_unit_posts p WHERE p.unit_id = u.unit_id) AS places
FROM answer_units u
"""
UNIT_BY_ID = _UNIT + "WHERE u.unit_id = %s"
UNIT_EXACT = (
    _UNIT
    + """
WHERE u.scope_key = %s AND u.question_norm = %s
ORDER BY u.created_at DESC LIMIT 1
"""
)
# The CASE keeps the distance from ever meeting a row of another dimension (pgvector raises
# on mixed dimensions, and WHERE clauses have no guaranteed evaluation order).
UNITS_NEAREST = (
    """
WITH near AS (
    SELECT unit_id, 1 - d AS similarity FROM (
        SELECT unit_id, CASE WHEN dim = %(dim)s THEN embedding <=> %(q)s::vector END AS d
        FROM answer_units WHERE scope_key = %(scope)s AND dim = %(dim)s AND NOT dirty
    ) scored
    ORDER BY d LIMIT %(limit)s
)
SELECT near.similarity, x.* FROM near
JOIN LATERAL ("""
    + _UNIT
    + """ WHERE u.unit_id = near.unit_id) x ON true
WHERE near.similarity >= %(cutoff)s
ORDER BY near.similarity DESC
"""
)
# Over a large scope: the HNSW index of the query's dimension (an expression index on
# embedding::vector(dim) WHERE dim = <dim>, see _ensure_index). The scope and liveness filters
# apply inside the index scan, and pgvector 0.8's iterative scan keeps reading the graph
# until LIMIT rows pass them. Rows of other dimensions are not in that partial index, and a
# scan checks its WHERE before it computes the ORDER BY key, so the cast never meets them.
UNITS_NEAREST_INDEXED = (
    """
WITH near AS (
    SELECT unit_id, 1 - (embedding::vector({dim}) <=> %(q)s::vector({dim})) AS similarity
    FROM answer_units WHERE dim = {dim} AND scope_key = %(scope)s AND NOT dirty
    ORDER BY embedding::vector({dim}) <=> %(q)s::vector({dim})
    LIMIT %(limit)s
)
SELECT near.similarity, x.* FROM near
JOIN LATERAL ("""
    + _UNIT.replace("{", "{{").replace("}", "}}")
    + """ WHERE u.unit_id = near.unit_id) x ON true
WHERE near.similarity >= %(cutoff)s
ORDER BY near.similarity DESC
"""
)
# The settings of the index path, for this transaction. The planner may cost a sort of the
# whole scope below the graph walk it does not know is bounded (at this size the sort is many
# times slower); pgvector 0.8's strict-order iterative scan keeps reading the graph until
# LIMIT rows pass the scope filter (older pgvector has no such setting).
INDEX_SCAN_SETTINGS = """
SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true),
       set_config('hnsw.ef_search', %(ef)s, true),
       CASE WHEN %(iterative)s THEN set_config('hnsw.iterative_scan', 'strict_order', true) END
"""
# How many live units of this dimension the scope holds, counted up to a limit (an index-only
# walk of answer_units_live): small scopes are searched exactly, large ones through HNSW.
LIVE_IN_SCOPE = """
SELECT count(*) AS n FROM (
    SELECT 1 FROM answer_units WHERE scope_key = %s AND dim = %s AND NOT dirty LIMIT %s
) live
"""
INDEX_EXISTS = "SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s"
CREATE_INDEX = """
CREATE INDEX IF NOT EXISTS {name} ON answer_units
USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
WHERE dim = {dim}
"""
_INDEX_LOCK = 0x6B62_6378  # "kbcx": advisory-lock namespace of the index creation
SERVE = """
UPDATE answer_units
SET served_at = clock_timestamp(), served_count = served_count + 1, used_at = clock_timestamp()
WHERE unit_id = %s AND NOT dirty
RETURNING unit_id
"""
MARK_STALE = """
UPDATE answer_units SET dirty = true, used_at = '-infinity' WHERE unit_id = %s AND NOT dirty
"""
COUNT = """
INSERT INTO answer_cache_counters (name, value) SELECT unnest(%s::text[]), %s
ON CONFLICT (name) DO UPDATE SET value = answer_cache_counters.value + EXCLUDED.value
"""
LOCK_SIZE = """
SELECT name, value FROM answer_cache_counters WHERE name IN ('units', 'bytes') FOR UPDATE
"""
SUPERSEDED = """
SELECT unit_id FROM answer_units
WHERE scope_key = %s AND question_norm = %s AND dirty AND noticed
"""
EVICT = "DELETE FROM answer_units WHERE unit_id = ANY(%s) RETURNING size_bytes"
OLDEST = """
SELECT unit_id FROM answer_units WHERE unit_id <> %s ORDER BY used_at, unit_id LIMIT %s
"""
INSERT_UNIT = """
INSERT INTO answer_units (unit_id, scope_key, question_norm, body, embedding, dim,
                          created_at, used_at, size_bytes)
VALUES (%s, %s, %s, %s, %s::vector, %s, %s, clock_timestamp(), %s)
"""
INSERT_SOURCE = """
INSERT INTO answer_unit_sources (artifact_id, unit_id, content_hash, version)
VALUES (%s, %s, %s, %s)
"""
INSERT_POST = """
INSERT INTO answer_unit_posts (unit_id, platform, channel, thread)
SELECT unit_id, %s, %s, %s FROM answer_units WHERE unit_id = %s
ON CONFLICT DO NOTHING
RETURNING unit_id
"""
MATCHED = """
SELECT s.unit_id, s.content_hash, s.version
FROM answer_unit_sources s JOIN answer_units u USING (unit_id)
WHERE s.artifact_id = %s AND NOT u.noticed
ORDER BY s.unit_id
FOR UPDATE OF u
"""
DIRTY_NOTICED = """
UPDATE answer_units SET dirty = true, noticed = true, used_at = '-infinity'
WHERE unit_id = ANY(%s)
"""
NEW_VERSION = """
UPDATE answer_unit_sources SET version = %s WHERE artifact_id = %s AND unit_id = ANY(%s)
"""
PLACES = """
SELECT unit_id, platform, channel, thread FROM answer_unit_posts
WHERE unit_id = ANY(%s) ORDER BY unit_id, posted_at, platform, channel, thread
"""
STATS = "SELECT name, value FROM answer_cache_counters"
# A lookup's writes are bookkeeping (hit and miss counters, when a unit was last served): a
# crash may lose the last few, never corrupt them, so the commit does not wait for the WAL
# flush (one disk sync per lookup otherwise, the largest part of a lookup on a busy disk).
BOOKKEEPING = "SET LOCAL synchronous_commit = off"
_LARGE_FOR_S = 60.0
