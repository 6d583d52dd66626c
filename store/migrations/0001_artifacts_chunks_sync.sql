-- 0001: artifacts, their chunks (embedding + full-text), sync cursors and sync runs.
-- The embedding column's dimension and its HNSW index are fixed when an embedder is bound
-- (store.schema.bind_embedder), because they depend on KB_EMBEDDER.

CREATE TABLE store_meta (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    embedder   text NOT NULL,
    dimension  integer NOT NULL CHECK (dimension > 0),
    bound_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE artifacts (
    artifact_id       text PRIMARY KEY,
    source            text NOT NULL CHECK (source IN ('confluence', 'jira')),
    scope_key         text NOT NULL,
    title             text NOT NULL,
    url               text NOT NULL,
    version           text NOT NULL,
    content_hash      text NOT NULL,
    labels            text[] NOT NULL DEFAULT '{}',
    body              text NOT NULL,
    source_updated_at timestamptz,
    synced_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz,
    CHECK (artifact_id LIKE source || ':%')
);
CREATE INDEX artifacts_live_by_scope ON artifacts (source, scope_key) WHERE deleted_at IS NULL;

CREATE TABLE chunks (
    chunk_id    bigserial PRIMARY KEY,
    artifact_id text NOT NULL REFERENCES artifacts (artifact_id) ON DELETE CASCADE,
    ord         integer NOT NULL,
    source      text NOT NULL,
    scope_key   text NOT NULL,
    title       text NOT NULL,
    heading     text NOT NULL DEFAULT '',
    text        text NOT NULL,
    token_count integer NOT NULL,
    embedding   vector NOT NULL,
    tsv         tsvector GENERATED ALWAYS AS (
                    setweight(to_tsvector('english', title), 'A')
                    || setweight(to_tsvector('english', heading), 'B')
                    || setweight(to_tsvector('english', text), 'C')
                ) STORED,
    UNIQUE (artifact_id, ord)
);
CREATE INDEX chunks_tsv_gin ON chunks USING gin (tsv);
CREATE INDEX chunks_by_scope ON chunks (source, scope_key);

-- Document frequencies of the chunks' lexemes, for BM25 scoring of keyword matches
-- (Postgres full-text ranking has no IDF). Recomputed after sync runs that changed content.
CREATE TABLE term_stats (
    lexeme text PRIMARY KEY,
    ndoc   integer NOT NULL
);
CREATE TABLE corpus_stats (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    chunks      integer NOT NULL,
    avg_length  double precision NOT NULL,
    computed_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sync_cursors (
    source     text NOT NULL,
    scope_key  text NOT NULL,
    cursor     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, scope_key)
);

CREATE TABLE sync_runs (
    run_id      bigserial PRIMARY KEY,
    source      text NOT NULL,
    scopes      text[] NOT NULL,
    mode        text NOT NULL CHECK (mode IN ('incremental', 'full', 'webhook')),
    trigger     text NOT NULL DEFAULT 'manual',
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'ok', 'partial', 'failed')),
    synced      integer NOT NULL DEFAULT 0,
    unchanged   integer NOT NULL DEFAULT 0,
    deleted     integer NOT NULL DEFAULT 0,
    skipped     integer NOT NULL DEFAULT 0,
    failed      integer NOT NULL DEFAULT 0,
    errors      jsonb NOT NULL DEFAULT '[]'::jsonb
);
CREATE INDEX sync_runs_latest ON sync_runs (source, started_at DESC);
