"""The store: Postgres with pgvector, migrations, search, embedders and the answer cache."""
