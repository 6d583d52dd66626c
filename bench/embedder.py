"""Local embedder throughput and latency against raw onnxruntime on the same input.

Run: .venv/bin/python bench/embedder.py [--chunks 1000]
     .venv/bin/python bench/embedder.py --sessions [--chunks 256] [--rounds 2]
Prints a JSON object; figures go to docs/BENCHMARKS.md. ``--sessions`` compares onnxruntime
session settings, each in its own process (so resident memory is its own), interleaved over
rounds: chunks/s relative to the shipped settings, RSS after a 32x256 and a 64x256 batch, and
the CPU burnt per query when queries arrive 50 ms apart (what spinning costs a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from store.embedders.local import LocalEmbedder, default_model_path, default_tokenizer_path
from store.tokens import TokenCounter

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "qa" / "squad-dev" / "corpus.jsonl"


def make_chunks(n: int, tokens: int = 300) -> list[str]:
    """n chunks of about ``tokens`` cl100k tokens of real English prose."""
    counter = TokenCounter()
    if CORPUS.exists():
        texts = [json.loads(line)["text"] for line in CORPUS.open()]
    else:
        texts = ["The on-call engineer rotates every Monday and pages the incident lead. " * 8]
    stream = " ".join(texts).split()
    chunks: list[str] = []
    start = 0
    while len(chunks) < n:
        words = stream[start : start + 230]
        if len(words) < 230:
            start = 0
            continue
        chunks.append(counter.trim(" ".join(words), tokens))
        start += 230
    return chunks


def raw_onnx(chunks: list[str], batch: int = 32) -> float:
    """The baseline: tokenizer + one InferenceSession run per batch + pooling, nothing else."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(default_tokenizer_path()))
    tok.enable_truncation(max_length=256)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(default_model_path()), opts, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    for i in range(0, len(chunks), batch):
        enc = tok.encode_batch(chunks[i : i + batch])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        out = sess.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        (out * mask[..., None]).sum(1)
    return time.perf_counter() - started


VARIANTS: dict[str, dict[str, object]] = {
    "shipped (threads=cores, no spin, no arena, opt all)": {},
    "memory arena on": {"memory_arena": True},
    "spinning on": {"spinning": True},
    "onnxruntime defaults (arena + spinning)": {"memory_arena": True, "spinning": True},
    "graph opt basic": {"optimization": "basic"},
    "graph opt extended": {"optimization": "extended"},
    "1 intra-op thread": {"threads": 1},
}


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one_variant(name: str, n: int) -> dict[str, float]:
    """Run in a child process: one session with these settings."""
    embedder = LocalEmbedder(max_batch=32, **VARIANTS[name])  # type: ignore[arg-type]
    embedder.load()
    chunks = make_chunks(n)
    embedder.embed(chunks[:8])
    started = time.perf_counter()
    embedder.embed(chunks)
    seconds = time.perf_counter() - started
    rss_32 = _rss_mb()
    embedder._max_batch, embedder._batch_tokens = 64, 64 * 256
    embedder.embed(chunks[:64])
    rss_64 = _rss_mb()
    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(20):
        embedder.embed(["who is on call this week for the payments service?"])
        time.sleep(0.05)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    return {
        "chunks_per_s": len(chunks) / seconds,
        "rss_mb_after_32x256": rss_32,
        "rss_mb_after_64x256": rss_64,
        "cpu_ms_per_query_50ms_apart": cpu / 20 * 1000,
    }


def sessions(n: int, rounds: int) -> None:
    results: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for _ in range(rounds):
        for name in VARIANTS:
            out = subprocess.run(
                [sys.executable, __file__, "--variant", name, "--chunks", str(n)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            results[name].append(json.loads(out))
    base = max(r["chunks_per_s"] for r in results[next(iter(VARIANTS))])
    table = {}
    for name, runs in results.items():
        best = max(r["chunks_per_s"] for r in runs)
        table[name] = {
            "chunks_per_s": round(best, 2),
            "vs_shipped": round(best / base, 3),
            "rss_mb_after_32x256": round(min(r["rss_mb_after_32x256"] for r in runs)),
            "rss_mb_after_64x256": round(min(r["rss_mb_after_64x256"] for r in runs)),
            "cpu_ms_per_query_50ms_apart": round(
                statistics.median(r["cpu_ms_per_query_50ms_apart"] for r in runs), 1
            ),
        }
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "load_average": [round(x, 2) for x in os.getloadavg()],
                "chunks": n,
                "rounds": rounds,
                "variants": table,
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=1000)
    parser.add_argument("--sessions", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.chunks)))
        return
    if args.sessions:
        sessions(args.chunks, args.rounds)
        return
    chunks = make_chunks(args.chunks)
    counter = TokenCounter()
    embedder = LocalEmbedder()
    embedder.load()
    embedder.embed(chunks[:8])  # warm-up
    raw_onnx(chunks[:8])
    # Interleaved and best-of-two, so a load change on a shared machine hits both sides.
    raw_runs, ours_runs = [], []
    for _ in range(2):
        raw_runs.append(raw_onnx(chunks))
        started = time.perf_counter()
        embedder.embed(chunks)
        ours_runs.append(time.perf_counter() - started)
    raw_seconds, ours_seconds = min(raw_runs), min(ours_runs)
    queries = ["How do I rotate the TLS certificate on the api gateway?"] * 5 + [
        "who is on call",
        "what caused OPS-412 and how was it fixed after the 4.3 release?",
    ]
    latencies = []
    for _ in range(30):
        for q in queries:
            t = time.perf_counter()
            embedder.embed([q], purpose="query")
            latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    print(
        json.dumps(
            {
                "date": time.strftime("%Y-%m-%d"),
                "machine": f"{platform.machine()} {os.cpu_count()} cores",
                "python": platform.python_version(),
                "chunks": len(chunks),
                "mean_tokens_cl100k": round(statistics.mean(counter.count(c) for c in chunks), 1),
                "kb_chunks_per_s": round(len(chunks) / ours_seconds, 2),
                "raw_onnxruntime_chunks_per_s": round(len(chunks) / raw_seconds, 2),
                "ratio_kb_to_raw": round(raw_seconds / ours_seconds, 3),
                "query_p50_ms": round(latencies[len(latencies) // 2], 2),
                "query_p95_ms": round(latencies[int(len(latencies) * 0.95)], 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
