-- 0013: the answer cache's HNSW indexes order by half-precision vectors. The graph is 43 %
-- smaller at 100,000 units (lookups as fast, within noise), and vectors of up to 4,000
-- dimensions can be indexed (vector's HNSW stops at 2,000). The full-precision indexes
-- go, and each dimension present gets the index store/cache/_postgres.py would otherwise build
-- on its first lookup, so that lookup does not wait for it
-- (docs/ARCHITECTURE.md, "Retrieval and cache cost at scale").

-- Both lists are read whole first: a table a loop still reads cannot be indexed in the loop.
DO $$
DECLARE
    old_indexes text[];
    widths integer[];
    old_index text;
    width integer;
BEGIN
    SELECT coalesce(array_agg(indexname), '{}') INTO old_indexes FROM pg_indexes
    WHERE schemaname = current_schema() AND tablename = 'answer_units'
      AND indexname LIKE 'answer\_units\_hnsw\_%';
    FOREACH old_index IN ARRAY old_indexes LOOP
        EXECUTE format('DROP INDEX %I', old_index);
    END LOOP;
    SELECT coalesce(array_agg(DISTINCT dim ORDER BY dim), '{}') INTO widths
    FROM answer_units WHERE dim <= 4000;
    FOREACH width IN ARRAY widths LOOP
        EXECUTE format(
            'CREATE INDEX IF NOT EXISTS %I ON answer_units USING hnsw '
            '((embedding::halfvec(%s)) halfvec_cosine_ops) WITH (m = 16, ef_construction = 64) '
            'WHERE dim = %s',
            'answer_units_halfvec_' || width, width, width);
    END LOOP;
END $$;
