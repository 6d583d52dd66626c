-- 0008: sources come from the source registry (sync/registry.py), not from a fixed list in the
-- schema, and the outbox also holds "source_change" intents: the cache invalidation and the
-- notices a committed change calls for, written in the same transaction as the change
-- (docs/ARCHITECTURE.md, "Outbox").

ALTER TABLE artifacts DROP CONSTRAINT artifacts_source_check;
ALTER TABLE artifacts ADD CONSTRAINT artifacts_source_name CHECK (source ~ '^[a-z][a-z0-9_]*$');
ALTER TABLE webhook_events DROP CONSTRAINT webhook_events_source_check;
ALTER TABLE webhook_events
    ADD CONSTRAINT webhook_events_source_name CHECK (source ~ '^[a-z][a-z0-9_]*$');
ALTER TABLE sync_requests DROP CONSTRAINT sync_requests_source_check;
ALTER TABLE sync_requests
    ADD CONSTRAINT sync_requests_source_name CHECK (source ~ '^[a-z][a-z0-9_]*$');

ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check
    CHECK (kind IN ('notice', 'ops_alert', 'ops_recovery', 'sync_result', 'source_change'));

-- The applier looks up the pending intents of one artifact right after its commit.
CREATE INDEX outbox_pending_changes ON outbox ((payload ->> 'artifact_id'), message_id)
    WHERE kind = 'source_change' AND sent_at IS NULL AND dead_at IS NULL;
