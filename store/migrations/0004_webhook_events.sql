-- 0004: webhook deliveries from Confluence and Jira, stored before the listener answers 2xx
-- and processed by the webhook worker (sync/webhook_worker.py).
--
-- The raw body is never stored (it can hold names, e-mail addresses, comment text): only what
-- the parsers made of it. A delivery is identified by X-Atlassian-Webhook-Identifier when the
-- sender gives one, else by a hash of the route's event and the body; the same delivery is
-- stored once per source.

CREATE TABLE webhook_events (
    event_id        bigserial PRIMARY KEY,
    source          text NOT NULL CHECK (source IN ('confluence', 'jira')),
    delivery_id     text NOT NULL,
    artifact_id     text,            -- NULL only for ignored deliveries
    kind            text CHECK (kind IN ('changed', 'deleted')),
    event           text NOT NULL,   -- normalised event name; '' when the delivery named none
    version         text,            -- the version the body claimed: for logs, never trusted
    received_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'dead', 'ignored', 'superseded')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error      text,
    outcome         text,            -- the sync engine's outcome once done (synced, unchanged...)
    duplicates      integer NOT NULL DEFAULT 0,  -- further deliveries of the same delivery id
    processed_at    timestamptz,
    UNIQUE (source, delivery_id),
    CHECK (status = 'ignored' OR (artifact_id IS NOT NULL AND kind IS NOT NULL))
);

-- The worker's queue: pending events grouped by artifact, oldest first.
CREATE INDEX webhook_events_pending
    ON webhook_events (source, artifact_id, received_at) WHERE status = 'pending';
-- Pruning of finished rows.
CREATE INDEX webhook_events_finished
    ON webhook_events (processed_at) WHERE status <> 'pending';
