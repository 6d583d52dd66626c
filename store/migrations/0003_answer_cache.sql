-- 0003: the Postgres variant of the answer cache (store/cache/_postgres.py), for deployments
-- whose bot and daemon run on different machines. The default diskcache backend keeps its
-- units under KB_DATA_DIR and does not use these tables.

CREATE TABLE answer_units (
    unit_id       text PRIMARY KEY CHECK (unit_id ~ '^[0-9a-f]{32}$'),
    scope_key     text NOT NULL,
    question_norm text NOT NULL,
    body          jsonb NOT NULL,      -- question, answer, citations
    -- No fixed dimension: it depends on KB_EMBEDDER, and a cache may outlive an embedder
    -- change. Searches compare only rows of the query's dimension (dim).
    embedding     vector NOT NULL,
    dim           integer NOT NULL CHECK (dim > 0),
    dirty         boolean NOT NULL DEFAULT false,  -- never served again
    noticed       boolean NOT NULL DEFAULT false,  -- an invalidation reported its places
    created_at    timestamptz NOT NULL,
    served_at     timestamptz,
    served_count  integer NOT NULL DEFAULT 0,
    used_at       timestamptz NOT NULL,            -- eviction order; -infinity once dirty
    size_bytes    integer NOT NULL CHECK (size_bytes > 0)
);
CREATE INDEX answer_units_exact ON answer_units (scope_key, question_norm, created_at DESC);
CREATE INDEX answer_units_live ON answer_units (scope_key, dim) WHERE NOT dirty;
CREATE INDEX answer_units_eviction ON answer_units (used_at);

-- Provenance, and the artifact -> units index that makes invalidation cost proportional to
-- the units affected.
CREATE TABLE answer_unit_sources (
    artifact_id  text NOT NULL,
    unit_id      text NOT NULL REFERENCES answer_units (unit_id) ON DELETE CASCADE,
    content_hash text NOT NULL,
    version      text NOT NULL,
    PRIMARY KEY (artifact_id, unit_id)
);
CREATE INDEX answer_unit_sources_by_unit ON answer_unit_sources (unit_id);

CREATE TABLE answer_unit_posts (
    unit_id   text NOT NULL REFERENCES answer_units (unit_id) ON DELETE CASCADE,
    platform  text NOT NULL,
    channel   text NOT NULL,
    thread    text NOT NULL,
    posted_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (unit_id, platform, channel, thread)
);

-- Hits, misses by gate, evictions...; 'units' and 'bytes' are the running size of the cache.
CREATE TABLE answer_cache_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0
);
INSERT INTO answer_cache_counters (name) VALUES ('units'), ('bytes');
