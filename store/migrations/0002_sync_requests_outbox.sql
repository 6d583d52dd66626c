-- 0002: sync requests queued for the daemon (by /kb-sync), and the outbox of messages to
-- deliver (source-updated notices, ops alerts, sync results). Both are durable queues.

CREATE TABLE sync_requests (
    request_id   bigserial PRIMARY KEY,
    source       text NOT NULL CHECK (source IN ('all', 'confluence', 'jira')),
    scopes       text[] NOT NULL DEFAULT '{}',
    full_sync    boolean NOT NULL DEFAULT false,
    requested_by jsonb NOT NULL DEFAULT '{}'::jsonb,
    requested_at timestamptz NOT NULL DEFAULT now(),
    claimed_at   timestamptz,
    finished_at  timestamptz,
    result       jsonb
);
CREATE INDEX sync_requests_pending ON sync_requests (requested_at) WHERE claimed_at IS NULL;

CREATE TABLE outbox (
    message_id      bigserial PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('notice', 'ops_alert', 'ops_recovery', 'sync_result')),
    dedupe_key      text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    dead_at         timestamptz,
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE sent_at IS NULL AND dead_at IS NULL;

-- One row per source that is failing: when it was last alerted, so an ongoing failure is
-- announced at most once an hour and its recovery once.
CREATE TABLE ops_alert_state (
    source        text PRIMARY KEY,
    failing_since timestamptz NOT NULL DEFAULT now(),
    last_alert_at timestamptz NOT NULL DEFAULT now(),
    last_error    text NOT NULL
);
