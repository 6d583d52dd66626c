-- 0007: Microsoft Teams. bot_threads and feedback (0005) are shared with Slack; these tables
-- hold what Teams does not let a bot look up later.

-- Where to reach a conversation proactively. The Bot Framework gives a bot no way to find a
-- conversation's service URL except from an activity it received, so every verified activity
-- refreshes its row; the outbox reads it to post "source updated" notices into threads.
CREATE TABLE teams_conversations (
    conversation_id   text PRIMARY KEY,   -- without ";messageid=": a channel, a chat
    service_url       text NOT NULL,
    tenant_id         text,
    conversation_type text NOT NULL DEFAULT 'personal',  -- channel | groupChat | personal
    bot_id            text NOT NULL,      -- "28:<app id>", the "from" of what we send
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- The conversation so far in threads the bot answered in. A bot cannot read a Teams thread
-- back (the connector has no history call; Graph would need more permissions), so follow-ups
-- get their context from what the bot itself saw. Pruned after 30 days.
CREATE TABLE teams_turns (
    turn_id         bigserial PRIMARY KEY,
    conversation_id text NOT NULL,
    thread          text NOT NULL,        -- root message id; the conversation id in chats
    role            text NOT NULL CHECK (role IN ('user', 'bot')),
    text            text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX teams_turns_by_thread ON teams_turns (conversation_id, thread, turn_id);
CREATE INDEX teams_turns_by_age ON teams_turns (at);

-- Activities already accepted: the connector redelivers when we answer slowly or not at all,
-- and a redelivery must not produce a second answer. Activity ids are unique per conversation.
CREATE TABLE teams_activities_seen (
    conversation_id text NOT NULL,
    activity_id     text NOT NULL,
    seen_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, activity_id)
);
CREATE INDEX teams_activities_seen_by_age ON teams_activities_seen (seen_at);
