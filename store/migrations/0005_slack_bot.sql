-- 0005: the chat bot's own state. Slack now, Teams next: everything but the event-id dedupe
-- is keyed by platform.

-- Events API deliveries already accepted, so a retried delivery (X-Slack-Retry-Num) is
-- dropped atomically by INSERT ... ON CONFLICT DO NOTHING. Pruned after a day; Slack retries
-- within minutes.
CREATE TABLE slack_events_seen (
    event_id text PRIMARY KEY,
    seen_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX slack_events_seen_by_age ON slack_events_seen (seen_at);

-- Threads the bot has answered in, so follow-ups without a mention are recognised after a
-- restart.
CREATE TABLE bot_threads (
    platform    text NOT NULL,
    channel     text NOT NULL,
    thread      text NOT NULL,
    answered_at timestamptz NOT NULL DEFAULT now(),
    answers     integer NOT NULL DEFAULT 1,
    PRIMARY KEY (platform, channel, thread)
);

-- One vote per person per answer (cached unit), changeable.
CREATE TABLE feedback (
    unit_id    text NOT NULL,
    platform   text NOT NULL,
    user_id    text NOT NULL,
    vote       text NOT NULL CHECK (vote IN ('helpful', 'not_helpful')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (unit_id, platform, user_id)
);

-- Monotonic counters for /metrics (answers posted, retries dropped, ...).
CREATE TABLE bot_counters (
    name  text PRIMARY KEY,
    value bigint NOT NULL DEFAULT 0
);

-- An outbox message being sent right now. A claim outlives a crash: a claim older than the
-- deliverer's lease is checked against the platform (was it posted?) before anything is
-- resent. Kept beside the outbox rather than in it so 0002's table stays as its owner wrote it.
CREATE TABLE outbox_claims (
    message_id bigint PRIMARY KEY REFERENCES outbox (message_id) ON DELETE CASCADE,
    claimed_by text NOT NULL,
    claimed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_claims_by_age ON outbox_claims (claimed_at);
