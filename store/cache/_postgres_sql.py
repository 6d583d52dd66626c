"""Named queries of the Postgres answer cache (store/cache/_postgres.py, migrations 0003, 0012,
0013)."""

_UNIT = """
SELECT u.unit_id, u.scope_key, u.question_norm, u.body, u.dirty, u.created_at, w.served_at,
       coalesce(w.served_count, 0) AS served_count,
       (SELECT coalesce(jsonb_object_agg(s.artifact_id,
                                         jsonb_build_array(s.content_hash, s.version)),
                        '{}'::jsonb)
          FROM answer_unit_sources s WHERE s.unit_id = u.unit_id) AS provenance,
       (SELECT coalesce(jsonb_agg(jsonb_build_array(p.platform, p.channel, p.thread)
                                  ORDER BY p.posted_at, p.platform, p.channel, p.thread),
                        '[]'::jsonb)
          FROM answer_unit_posts p WHERE p.unit_id = u.unit_id) AS places,
       -- The sources' current state, read with the unit: serving needs no further round trip
       -- (store/cache/_freshness.py reads the same rows the same way).
       (SELECT coalesce(jsonb_object_agg(a.artifact_id,
                                         jsonb_build_array(a.content_hash, a.source, a.scope_key)),
                        '{}'::jsonb)
          FROM answer_unit_sources s
          JOIN artifacts a ON a.artifact_id = s.artifact_id AND a.deleted_at IS NULL
         WHERE s.unit_id = u.unit_id) AS current
FROM answer_units u LEFT JOIN answer_unit_use w ON w.unit_id = u.unit_id
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
# embedding::halfvec(dim) WHERE dim = <dim>, see _ensure_index and migration 0013). The scope
# and liveness filters apply inside the index scan, and pgvector 0.8's iterative scan keeps
# reading the graph until LIMIT rows pass them. Rows of other dimensions are not in that
# partial index, and a scan checks its WHERE before it computes the ORDER BY key, so the cast
# never meets them. The graph orders by half-precision vectors; the similarity the gates see
# is computed again at full precision, for the LIMIT rows only.
UNITS_NEAREST_INDEXED = (
    """
WITH near AS (
    SELECT unit_id, 1 - (embedding::vector({dim}) <=> %(q)s::vector({dim})) AS similarity
    FROM answer_units WHERE dim = {dim} AND scope_key = %(scope)s AND NOT dirty
    ORDER BY embedding::halfvec({dim}) <=> %(q)s::vector({dim})::halfvec({dim})
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
# Half precision halves the graph (43 % smaller at 100,000 units; the lookup is as fast, within
# noise) and indexes up to 4,000 dimensions where vector's HNSW stops at 2,000; ranking by it
# found the same nearest unit as full precision for every paraphrase (docs/BENCHMARKS.md).
INDEXED_DIMS_MAX = 4000
INDEX_NAME = "answer_units_halfvec_{dim}"  # migration 0013 builds the same names
CREATE_INDEX = """
CREATE INDEX IF NOT EXISTS {name} ON answer_units
USING hnsw ((embedding::halfvec({dim})) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64)
WHERE dim = {dim}
"""
_INDEX_LOCK = 0x6B62_6378  # "kbcx": advisory-lock namespace of the index creation
# Serving a unit and counting the hit in one statement: the counters move only if the unit
# was still live. FOR SHARE waits for a concurrent dirtying (source_changed holds the unit
# FOR UPDATE) and then sees it, so a unit dirtied since it was read is neither served nor
# counted. The unit's own row is not written (migration 0012).
SERVE = """
WITH live AS (
    SELECT unit_id FROM answer_units WHERE unit_id = %(unit_id)s AND NOT dirty FOR SHARE
), served AS (
    UPDATE answer_unit_use w
    SET served_at = clock_timestamp(), served_count = w.served_count + 1,
        used_at = clock_timestamp()
    FROM live WHERE w.unit_id = live.unit_id
    RETURNING w.served_at, w.served_count
), counted AS (
    INSERT INTO answer_cache_counters (name, value)
    SELECT unnest(%(counters)s::text[]), 1 FROM served
    ON CONFLICT (name) DO UPDATE SET value = answer_cache_counters.value + EXCLUDED.value
)
SELECT served_at, served_count FROM served
"""
# A dirty unit is evicted first: its use row goes to the front of the eviction order.
MARK_STALE = """
WITH marked AS (
    UPDATE answer_units SET dirty = true WHERE unit_id = %s AND NOT dirty RETURNING unit_id
)
UPDATE answer_unit_use w SET used_at = '-infinity' FROM marked WHERE w.unit_id = marked.unit_id
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
SELECT unit_id FROM answer_unit_use WHERE unit_id <> %s ORDER BY used_at, unit_id LIMIT %s
"""
INSERT_UNIT = """
WITH unit AS (
    INSERT INTO answer_units (unit_id, scope_key, question_norm, body, embedding, dim,
                              created_at, size_bytes)
    VALUES (%s, %s, %s, %s, %s::vector, %s, %s, %s)
    RETURNING unit_id
)
INSERT INTO answer_unit_use (unit_id, used_at) SELECT unit_id, clock_timestamp() FROM unit
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
WITH marked AS (
    UPDATE answer_units SET dirty = true, noticed = true WHERE unit_id = ANY(%s)
    RETURNING unit_id
)
UPDATE answer_unit_use w SET used_at = '-infinity' FROM marked WHERE w.unit_id = marked.unit_id
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
