"""Rebuild the sample knowledge base's shipped vectors (``kb/sample_kb/vectors.*``).

Run ``python -m kb.sample_vectors`` after changing the sample, the chunker or the model: it
syncs the sample through the same engine ``kb demo`` builds, into a throw-away embedded
Postgres, and records every (text, sentence spans) the engine embedded with the local model.
tests/kb/test_sample_vectors.py fails while the shipped file is stale.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kb import wiring
from kb.sample import VECTORS_MANIFEST, VECTORS_ROWS, sample_connectors
from kb.settings import load_settings
from store.db import Database, start_embedded
from store.embedders.shipped import ShippedEmbedder, ShippedVectors
from store.migrate import migrate
from store.schema import bind_embedder

SAMPLE = Path(__file__).resolve().parent / "sample_kb"


def record(url: str, data_dir: Path) -> ShippedVectors:
    """Sync the sample into a fresh schema of ``url``, keeping what the model computed."""
    settings = load_settings({"KB_DATA_DIR": str(data_dir)})
    inner = wiring.build_embedder(settings, memo=False)
    recorder = ShippedEmbedder(inner, ShippedVectors(inner.identity.name, "", {}))
    db = Database.open(url, schema="kb_sample_vectors")
    try:
        migrate(db)
        bind_embedder(db, inner.identity)
        engine = wiring.build_engine(settings, db, recorder, None)
        for connector in sample_connectors():
            engine.run(connector, full=True, trigger="build")
    finally:
        db.drop_schema()
        db.close()
    return recorder.recorded()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SAMPLE)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kb-sample-vectors-") as scratch:
        url = start_embedded(Path(scratch) / "pg", ephemeral=True)
        table = record(url, Path(scratch) / "data")
    manifest, rows = table.dump()
    (args.out / VECTORS_MANIFEST).write_text(manifest, encoding="utf-8")
    (args.out / VECTORS_ROWS).write_bytes(rows)
    print(f"{len(table.entries)} texts, model sha256 {table.model_sha256[:12]}, {len(rows)} bytes")


if __name__ == "__main__":
    main()
