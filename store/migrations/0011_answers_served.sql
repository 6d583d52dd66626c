-- 0010: every answer the bot posted, whichever answer-cache backend served it (the diskcache
-- backend keeps nothing in Postgres). Read by the App Home's 7-day figures and least helpful
-- answers, and by the assistant pane's suggested prompts (store/answer_stats.py). Rows older
-- than 90 days are pruned a few at a time by the inserts themselves.

CREATE TABLE answers_served (
    served_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    platform      text NOT NULL,
    channel       text NOT NULL,
    thread        text NOT NULL,
    scope_key     text NOT NULL CHECK (scope_key <> ''),  -- store.scope.Scope.key()
    unit_id       text,                                   -- the cached unit, if any
    question      text NOT NULL,                          -- the standalone question
    question_norm text NOT NULL,                          -- store.cache.normalise(question)
    from_cache    boolean NOT NULL,
    served_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX answers_served_by_time ON answers_served (served_at);
-- The pane's prompts: one scope's recent questions, counted from the index alone, and the
-- latest wording of the few shown.
CREATE INDEX answers_served_by_scope ON answers_served (scope_key, served_at)
    INCLUDE (question_norm, from_cache);
CREATE INDEX answers_served_by_question ON answers_served (scope_key, question_norm, served_at);
-- The App Home's least helpful answers: where a voted unit was posted.
CREATE INDEX answers_served_by_unit ON answers_served (unit_id, served_at)
    WHERE unit_id IS NOT NULL;
