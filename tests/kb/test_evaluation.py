"""`kb eval` as the project is measured from outside: a real process, a BEIR-layout data set,
the real ingest (chunks, sentences, the offline MiniLM embedder) and the real retriever."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

JSON_KEYS = {
    "queries",
    "mode",
    "recall@1",
    "recall@5",
    "recall@10",
    "mrr@10",
    "containment@1",
    "containment@5",
    "containment@10",
    "latency_p50_ms",
    "latency_p95_ms",
}

DOCS = [
    ("vpn", "VPN access", "Windows laptops connect to the office VPN with the NWP-AOVPN profile."),
    ("deploy", "Deploy trains", "Release trains leave on Tuesdays and Thursdays at noon."),
    ("oncall", "On-call", "The on-call engineer acknowledges a page within five minutes."),
    ("backup", "Backups", "Database backups run nightly and are kept for thirty days."),
    ("lunch", "Cafeteria", "The cafeteria serves lunch from eleven thirty until two."),
]
QUERIES = [
    ("q1", "Which profile do Windows laptops use for the VPN?", ["NWP-AOVPN"], "vpn"),
    ("q2", "On which days do release trains leave?", ["Tuesdays and Thursdays"], "deploy"),
    ("q3", "How quickly must the on-call engineer acknowledge a page?", ["five minutes"], "oncall"),
    ("q4", "How long are database backups kept?", ["thirty days"], "backup"),
]


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for doc_id, title, text in DOCS:
            fh.write(json.dumps({"_id": doc_id, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text, answers, _ in QUERIES:
            fh.write(json.dumps({"_id": qid, "text": text, "answers": answers}) + "\n")
    with (folder / "qrels.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query_id\tpassage_id\trelevance\n")
        for qid, _, _, doc_id in QUERIES:
            fh.write(f"{qid}\t{doc_id}\t1\n")
    return folder


def kb_eval(dataset: Path, pg_url: str, tmp_path: Path, *extra: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kb.cli",
            "eval",
            "--corpus",
            str(dataset / "corpus.jsonl"),
            "--queries",
            str(dataset / "queries.jsonl"),
            "--qrels",
            str(dataset / "qrels.tsv"),
            "--json",
            *extra,
        ],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": pg_url,
            "KB_DATA_DIR": str(tmp_path / "data"),
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def test_kb_eval_prints_one_json_object_with_the_promised_keys(
    dataset: Path, pg_url: str, tmp_path: Path
) -> None:
    (report,) = kb_eval(dataset, pg_url, tmp_path)
    assert set(report) == JSON_KEYS
    assert report["queries"] == 4 and report["mode"] == "hybrid"
    assert report["recall@10"] == 1.0 and report["containment@10"] == 1.0
    assert report["recall@1"] == 1.0, "every question names its page's words"
    assert report["mrr@10"] == 1.0 and report["containment@1"] == 1.0
    for key in ("recall@1", "recall@5", "containment@1", "containment@5"):
        assert 0.0 <= float(report[key]) <= 1.0  # type: ignore[arg-type]
    p50, p95 = float(report["latency_p50_ms"]), float(report["latency_p95_ms"])  # type: ignore[arg-type]
    assert 0.0 < p50 <= p95
    with psycopg.connect(pg_url) as conn:
        left = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name LIKE 'kb_eval_%'"
        ).fetchone()
    assert left == (0,), "the throw-away schema is dropped"


def test_kb_eval_compares_modes_and_honours_the_limit(
    dataset: Path, pg_url: str, tmp_path: Path
) -> None:
    reports = kb_eval(dataset, pg_url, tmp_path, "--mode", "all", "--limit", "2")
    assert [r["mode"] for r in reports] == ["hybrid", "vector", "keyword"]
    for report in reports:
        assert set(report) == JSON_KEYS
        assert report["queries"] == 2
        assert report["recall@10"] == 1.0
