-- 0012: when each cached answer was last served (and how often) moves to a narrow table of its
-- own. A hit used to update answer_units itself; the eviction index on used_at made that a
-- non-HOT update, so every hit wrote a new row version into every index of answer_units,
-- the HNSW graph included: a graph insertion (several ms) per served answer, and a graph that
-- grew with dead versions. answer_units rows are now written when cached and when dirtied
-- only (docs/ARCHITECTURE.md, "Retrieval and cache cost at scale").

CREATE TABLE answer_unit_use (
    unit_id       text PRIMARY KEY REFERENCES answer_units (unit_id) ON DELETE CASCADE,
    served_at     timestamptz,
    served_count  integer NOT NULL DEFAULT 0,
    used_at       timestamptz NOT NULL              -- eviction order; -infinity once dirty
);

INSERT INTO answer_unit_use (unit_id, served_at, served_count, used_at)
SELECT unit_id, served_at, served_count, used_at FROM answer_units;

CREATE INDEX answer_unit_use_eviction ON answer_unit_use (used_at, unit_id);

DROP INDEX answer_units_eviction;
ALTER TABLE answer_units DROP COLUMN served_at, DROP COLUMN served_count, DROP COLUMN used_at;
