-- 0010: which answer each Teams answer message carries, for Teams' native feedback.
-- Teams draws its own thumbs under a message sent with channelData.feedbackLoopEnabled; a
-- click arrives as a message/submitAction invoke that names only the message (replyToId), not
-- anything the bot put in it. So the bot keeps, per posted (or refreshed) answer message, the
-- cached unit it rates and the question it answered. Pruned after 90 days.
CREATE TABLE teams_answer_messages (
    conversation_id text NOT NULL,        -- without ";messageid=": a channel, a chat
    activity_id     text NOT NULL,        -- the id the connector gave the posted message
    unit_id         text NOT NULL,
    question        text NOT NULL,
    posted_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, activity_id)
);
CREATE INDEX teams_answer_messages_by_age ON teams_answer_messages (posted_at);
