-- 0007: one embedding per sentence (or short line group) of every chunk.
-- A chunk's embedding blurs its sentences together and the embedding model reads only its
-- first 256 word pieces; a question usually paraphrases one sentence. Retrieval scores a
-- candidate chunk by its own cosine plus its best sentence's cosine. Written in the same
-- transaction as the chunks (store.artifacts.replace) and removed with them. Only candidate
-- chunks' sentences are read (by primary key), so the column needs no dimension and no ANN
-- index.

CREATE TABLE chunk_sentences (
    artifact_id text NOT NULL,
    chunk_ord   integer NOT NULL,
    ord         integer NOT NULL,
    embedding   vector NOT NULL,
    PRIMARY KEY (artifact_id, chunk_ord, ord),
    FOREIGN KEY (artifact_id, chunk_ord) REFERENCES chunks (artifact_id, ord) ON DELETE CASCADE
);

-- New rows go straight into the full-text index: with GIN's default pending list, every
-- search after a large sync scans the unsorted list (milliseconds per lexeme) until a vacuum
-- merges it. Retrieval latency matters more than indexing speed here.
ALTER INDEX chunks_tsv_gin SET (fastupdate = off);
