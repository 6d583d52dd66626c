-- 0008: term statistics kept current by the writes themselves (store/term_stats.py).
-- A full recompute (ts_stat over every chunk) after each sync took 4.5 s at 100,000 chunks.
-- Statement-level triggers add the lexemes of inserted chunks and subtract those of deleted
-- ones, so the cost follows the rows written. corpus_stats gets the total length, so the
-- average can be kept exactly.
--
-- Lock order: every writer locks the corpus_stats row first, then term_stats rows. Writers
-- of chunks therefore queue on that row until the earlier one commits (a page's transaction
-- lasts milliseconds: embedding happens before it), and can never hold term_stats rows in an
-- order that deadlocks with each other across their several statements.

ALTER TABLE corpus_stats ADD COLUMN total_length bigint NOT NULL DEFAULT 0;
UPDATE corpus_stats SET total_length = round(chunks * avg_length)::bigint;

CREATE FUNCTION chunks_term_stats_apply(sign integer, changed_chunks bigint, changed_length bigint,
                                        lexemes text[], counts integer[])
RETURNS void LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO corpus_stats AS s (chunks, avg_length, total_length)
    VALUES (greatest(sign * changed_chunks, 0), 1, greatest(sign * changed_length, 0))
    ON CONFLICT (singleton) DO UPDATE SET
        chunks = s.chunks + sign * changed_chunks,
        total_length = s.total_length + sign * changed_length,
        avg_length = greatest(s.total_length + sign * changed_length, 1)::double precision
                     / greatest(s.chunks + sign * changed_chunks, 1),
        computed_at = now();
    INSERT INTO term_stats AS t (lexeme, ndoc)
    SELECT d.lexeme, d.n FROM unnest(lexemes, counts) AS d (lexeme, n)
    WHERE sign > 0
    ORDER BY d.lexeme
    ON CONFLICT (lexeme) DO UPDATE SET ndoc = t.ndoc + EXCLUDED.ndoc;
    IF sign < 0 THEN
        UPDATE term_stats t SET ndoc = t.ndoc - d.n
        FROM unnest(lexemes, counts) AS d (lexeme, n)
        WHERE t.lexeme = d.lexeme;
        DELETE FROM term_stats WHERE lexeme = ANY(lexemes) AND ndoc <= 0;
    END IF;
END $$;

CREATE FUNCTION chunks_term_stats_added() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM added_rows) THEN
        RETURN NULL;  -- e.g. the DELETE before a new page's first insert
    END IF;
    PERFORM chunks_term_stats_apply(
        1,
        (SELECT count(*) FROM added_rows),
        (SELECT coalesce(sum(length(tsv)), 0) FROM added_rows),
        coalesce(array_agg(x.lexeme ORDER BY x.lexeme), '{}'),
        coalesce(array_agg(x.n ORDER BY x.lexeme), '{}'))
    FROM (SELECT u.lexeme, count(*)::integer AS n
          FROM added_rows r, unnest(r.tsv) u GROUP BY u.lexeme) x;
    RETURN NULL;
END $$;

CREATE FUNCTION chunks_term_stats_removed() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM removed_rows) THEN
        RETURN NULL;  -- e.g. the DELETE before a new page's first insert
    END IF;
    PERFORM chunks_term_stats_apply(
        -1,
        (SELECT count(*) FROM removed_rows),
        (SELECT coalesce(sum(length(tsv)), 0) FROM removed_rows),
        coalesce(array_agg(x.lexeme ORDER BY x.lexeme), '{}'),
        coalesce(array_agg(x.n ORDER BY x.lexeme), '{}'))
    FROM (SELECT u.lexeme, count(*)::integer AS n
          FROM removed_rows r, unnest(r.tsv) u GROUP BY u.lexeme) x;
    RETURN NULL;
END $$;

CREATE TRIGGER chunks_term_stats_insert AFTER INSERT ON chunks
    REFERENCING NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_term_stats_added();
CREATE TRIGGER chunks_term_stats_delete AFTER DELETE ON chunks
    REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_term_stats_removed();
-- An UPDATE that rewrites the text (none does today: a page is replaced by delete + insert)
-- counts as the old rows removed and the new ones added.
CREATE TRIGGER chunks_term_stats_update_old AFTER UPDATE ON chunks
    REFERENCING OLD TABLE AS removed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_term_stats_removed();
CREATE TRIGGER chunks_term_stats_update_new AFTER UPDATE ON chunks
    REFERENCING NEW TABLE AS added_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chunks_term_stats_added();
