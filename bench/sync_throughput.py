"""Sync throughput: a generated space served by the fake Confluence (Cloud, REST v2 listing)
into the store with the local embedder, then a re-sync of the unchanged space.

Run: .venv/bin/python bench/sync_throughput.py [--pages 300 2000] [--rounds 1] [--signals ...]
[--no-raw]
For each size, in the same run and on the same pages: a full sync with chunk vectors only
(the baseline), with pooled sentence vectors (shipped) and with separately embedded sentence
vectors, interleaved when --rounds > 1. Reports
pages/s, the ratio to chunk-only, the share of wall time outside the embedder, padding waste,
the embedder's rate against raw onnxruntime on the very same batches, and the unchanged
re-sync's embedding calls and pages/s. The fake server lives in tests/fakes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The repo root first (its packages, not tests/ namespace folders of the same names), then
# tests/ for the fake Confluence server.
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "tests"))

import numpy as np  # noqa: E402
from fakes.atlassian import FakeConfluence  # noqa: E402

from core.http import RetryPolicy  # noqa: E402
from store.db import Database, start_embedded  # noqa: E402
from store.embedders import Purpose, Spans, Vectors  # noqa: E402
from store.embedders.local import EmbedStats, LocalEmbedder, default_model_path  # noqa: E402
from store.migrate import migrate  # noqa: E402
from store.schema import EmbedderIdentity, bind_embedder  # noqa: E402
from store.tokens import TokenCounter  # noqa: E402
from sync.chunking import Chunker  # noqa: E402
from sync.confluence import ConfluenceConnector  # noqa: E402
from sync.embedding import SentenceSignal  # noqa: E402
from sync.engine import SyncEngine  # noqa: E402

WORDS = [
    "deploy",
    "rollback",
    "kafka",
    "broker",
    "partition",
    "on-call",
    "escalation",
    "runbook",
    "database",
    "failover",
    "certificate",
    "vault",
    "secret",
    "rotation",
    "latency",
    "incident",
    "postmortem",
    "dashboard",
    "alert",
    "pager",
    "service",
    "gateway",
    "dispatch",
    "orders",
    "tracking",
    "label",
    "queue",
    "consumer",
    "lag",
    "retry",
    "timeout",
]


class TimedEmbedder:
    """Wraps the local embedder, counting calls and keeping every text it was given."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner
        self.calls = 0
        self.texts: list[list[str]] = []

    @property
    def identity(self) -> EmbedderIdentity:
        return self.inner.identity

    def embed(self, texts: Sequence[str], *, purpose: Purpose = "document") -> Vectors:
        self.calls += 1
        self.texts.append(list(texts))
        return self.inner.embed(texts, purpose=purpose)

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Spans]
    ) -> tuple[Vectors, list[Vectors | None]]:
        self.calls += 1
        self.texts.append(list(texts))
        return self.inner.embed_spans(texts, spans)


def page_body(rng: random.Random, n: int) -> str:
    paragraphs = []
    for p in range(4):
        words = " ".join(rng.choice(WORDS) for _ in range(55))
        paragraphs.append(f"<h2>Section {p} of page {n}</h2><p>{words}.</p>")
    rows = "".join(
        f"<tr><td>host-{n}-{r}</td><td>{rng.randint(1, 65535)}</td></tr>" for r in range(3)
    )
    return "".join(paragraphs) + f"<table><tr><th>Host</th><th>Port</th></tr>{rows}</table>"


def raw_onnx_seconds(embedder: LocalEmbedder, calls: list[list[str]]) -> float:
    """Bare onnxruntime (bench/embedder.py's baseline: default session, tokenizer, run, pool)
    on exactly the batches the embedder formed for these calls."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(default_model_path()), opts, providers=["CPUExecutionProvider"])
    tok = embedder._tokenizer  # the embedder's own tokenizer: same word pieces
    seconds = 0.0
    for texts in calls:
        encodings = tok.encode_batch(texts)
        for idx in embedder._batches([len(e.ids) for e in encodings]):
            started = time.perf_counter()
            rows = [encodings[i].ids for i in idx]
            width = max(map(len, rows))
            ids = np.zeros((len(rows), width), dtype=np.int64)
            for n, row in enumerate(rows):
                ids[n, : len(row)] = row
            mask = (ids != 0).astype(np.int64)
            out = sess.run(
                None,
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )[0]
            (out * mask[..., None]).sum(1)
            seconds += time.perf_counter() - started
    return seconds


def rss_mb() -> int:
    """This process's resident memory now (Linux /proc), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return -1


def one_sync(
    url: str, site: Any, pages: int, signal: SentenceSignal, resync: bool, raw_replay: bool = True
) -> dict[str, Any]:
    db = Database.open(url, schema=f"bench_sync_{uuid.uuid4().hex[:8]}")
    local = LocalEmbedder()
    local.load()
    embedder = TimedEmbedder(local)
    connector = ConfluenceConnector(
        site, ("ENG",), policy=RetryPolicy(attempts=3, base_delay=0.05), page_size=100
    )
    try:
        migrate(db)
        bind_embedder(db, embedder.identity)
        engine = SyncEngine(db, embedder, Chunker(TokenCounter()), sentence_signal=signal)
        before = local.stats
        started = time.perf_counter()
        first = engine.run(connector, full=True)
        seconds = time.perf_counter() - started
        stats = local.stats
        used = EmbedStats(
            stats.texts - before.texts,
            stats.tokens - before.tokens,
            stats.padded_tokens - before.padded_tokens,
            stats.batches - before.batches,
            stats.seconds - before.seconds,
        )
        result: dict[str, Any] = {
            "synced": first.counts.synced,
            "failed": first.counts.failed,
            "seconds": round(seconds, 1),
            "pages_per_s": round(pages / seconds, 2),
            "texts_embedded": used.texts,
            "embedding_calls": embedder.calls,
            "model_batches": used.batches,
            "padding_waste": round(used.padding_waste, 3),
            "embedder_seconds": round(used.seconds, 1),
            "share_outside_embedder": round(1 - used.seconds / seconds, 3),
            "rss_mb_after_sync": rss_mb(),
        }
        if raw_replay:
            raw = raw_onnx_seconds(local, embedder.texts)
            result["raw_onnxruntime_seconds_same_batches"] = round(raw, 1)
            result["embedder_rate_vs_raw"] = round(raw / used.seconds, 3)
        if resync:
            calls = embedder.calls
            started = time.perf_counter()
            again = engine.run(connector, full=True)
            took = time.perf_counter() - started
            result["unchanged_resync"] = {
                "unchanged": again.counts.unchanged,
                "embedding_calls": embedder.calls - calls,
                "seconds": round(took, 2),
                "pages_per_s": round(pages / took, 1),
            }
        return result
    finally:
        connector.close()
        db.drop_schema()
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pages", type=int, nargs="+", default=[300, 2000])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--signals",
        nargs="+",
        choices=["none", "pooled", "separate"],
        default=["none", "pooled", "separate"],
        help="sentence signals to compare; 'none' (chunk-only) is the baseline",
    )
    parser.add_argument(
        "--no-raw",
        action="store_true",
        help="skip the bare-onnxruntime replay (halves the model time of a 2,000-page run)",
    )
    args = parser.parse_args()
    url = os.environ.get("KB_BENCH_DATABASE_URL") or start_embedded(
        Path(tempfile.mkdtemp()), ephemeral=True
    )
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for pages in args.pages:
        rng = random.Random(11)
        with FakeConfluence(cloud=True) as fake:
            for n in range(pages):
                fake.add_page("ENG", f"Generated page {n}", page_body(rng, n))
            runs: dict[str, list[dict[str, Any]]] = {signal: [] for signal in args.signals}
            for r in range(args.rounds):
                # Interleaved, so a load change on the shared machine hits every side.
                for signal in args.signals:
                    resync = r == 0 and signal == args.signals[-1]
                    runs[signal].append(
                        one_sync(url, fake.site(), pages, signal, resync, not args.no_raw)
                    )
        best: dict[str, Any] = {k: max(v, key=lambda x: x["pages_per_s"]) for k, v in runs.items()}
        if "none" in best:
            for signal in args.signals:
                best[f"{signal}_vs_chunk_only"] = round(
                    best[signal]["pages_per_s"] / best["none"]["pages_per_s"], 3
                )
        report[f"{pages}_pages"] = best
    report["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
