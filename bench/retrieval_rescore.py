"""Offline re-scoring of retrieval variants on squad-dev (docs/BENCHMARKS.md, "Closing the gap
at query time"): the rows marked † there, and the search over settings.

One ingest through the real sync engine (as bench/retrieval.py), then, for every question, the
retriever's own rank query with each candidate's sentence similarities kept one by one instead
of their maximum, and its keyword signals (BM25, phrase, window) computed by the retriever's
code; also every chunk's and sentence's vector, each sentence's lexemes and, for pooled
vectors, each chunk's token states (captured from the ingest's own forward passes, so variants
of the pooling need no model work). Variants are then re-ranked in numpy on those candidates,
on bench/retrieval.py's slices and on the questions in no slice (held out from any search).
The first row re-ranks as the retriever does: it must equal bench/retrieval.py's figures.

Run: .venv/bin/python bench/retrieval_rescore.py --sentences pooled --data-dir DIR
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

import store.search as search  # noqa: E402
from kb.evaluation import EVAL_SCOPE, eval_store, load_queries  # noqa: E402
from kb.settings import load_settings  # noqa: E402
from kb.wiring import database_url  # noqa: E402
from store._scoring import bm25, densest_window, pick_lexemes, proximity  # noqa: E402
from store.embedders.local import LocalEmbedder  # noqa: E402
from store.embedders.memo import MemoEmbedder  # noqa: E402
from store.search import Retriever, SearchSettings  # noqa: E402
from store.tokens import TokenCounter  # noqa: E402
from sync.chunking import sentence_spans  # noqa: E402
from sync.embedding import embedding_text  # noqa: E402

DATA = ROOT.parent / "shared" / "qa" / "squad-dev"
PER_SENTENCE = search.RANK_QUERY.replace(
    "max(1 - (s.embedding <=> %(vector)s))",
    "array_agg(1 - (s.embedding <=> %(vector)s) ORDER BY s.ord)",
)
STOP_WORDS = (
    "a an the of in on at to for from by with and or but is are was were be been being as that "
    "this these those it its which who whom what when where why how than then there their they "
    "he she his her him we you i not no do does did has have had will would can could may might "
    "into over under about after before during"
)
STOP = set(STOP_WORDS.split())


class TokenCapture(LocalEmbedder):
    """The local embedder, keeping each text's token states for offline pooling variants."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[tuple[int, ...], Any] = {}

    def _forward(self, rows: list[list[int]]) -> tuple[Any, Any]:
        hidden, mask = super()._forward(rows)
        for n, row in enumerate(rows):
            if len(row) > 20:  # chunks, not questions
                self.states[tuple(row)] = hidden[n, : len(row)].astype(np.float16)
        return hidden, mask


def dump(args: argparse.Namespace, questions: list[Any]) -> dict[str, Any]:
    settings = load_settings({"KB_DATA_DIR": str(args.data_dir)})
    capture = TokenCapture() if args.sentences == "pooled" else None
    inner = capture or LocalEmbedder()
    embedder = MemoEmbedder(inner, args.data_dir / "embed-memo") if capture is None else inner
    counter = TokenCounter()
    corpus = DATA / "corpus.jsonl"
    url = database_url(settings)
    with eval_store(url, embedder, counter, corpus, sentence_signal=args.sentences) as st:
        vectors = embedder.embed([q.text for q in questions], purpose="query")
        retriever = Retriever(st.db, counter, SearchSettings())
        s = retriever.settings
        with st.db.connection() as conn:
            chunks = conn.execute(
                "SELECT c.chunk_id, c.ord, c.heading, c.text, c.embedding::text AS e, a.title "
                "FROM chunks c JOIN artifacts a USING (artifact_id) ORDER BY c.chunk_id"
            ).fetchall()
            sentences = conn.execute(
                "SELECT c.chunk_id, s.embedding::text AS e FROM chunk_sentences s "
                "JOIN chunks c ON c.artifact_id = s.artifact_id AND c.ord = s.chunk_ord "
                "ORDER BY c.chunk_id, s.ord"
            ).fetchall()
            lexemes = {}
            for c in chunks:
                units = [" ".join(c["text"][a:b] for a, b in u) for u in sentence_spans(c["text"])]
                lexemes[c["chunk_id"]] = [
                    set(
                        conn.execute(
                            "SELECT array(SELECT lexeme FROM unnest(to_tsvector("
                            "'english', %s))) AS l",
                            (u,),
                        ).fetchone()["l"]
                    )
                    for u in units
                ]
        records = []
        base = search._scope_params(EVAL_SCOPE)
        for q, v in zip(questions, vectors, strict=True):
            params = {
                **base, "question": q.text, "common": s.max_common_share,
                "postings": s.keyword_postings, "vector": v,
                "vector_limit": s.vector_candidates, "keyword_limit": s.keyword_candidates,
                "keyword_pool": s.keyword_pool * s.keyword_candidates, "with_terms": True,
            }  # fmt: skip
            with st.db.connection() as conn, conn.pipeline():
                conn.execute("SET LOCAL enable_seqscan = off")
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute(f"SET LOCAL hnsw.ef_search = {int(s.vector_candidates)}")
                rows = conn.execute(PER_SENTENCE, params).fetchall()
            records.append(candidates(retriever, rows))
    states = {}
    if capture is not None:
        tokenizer = capture._tokenizer
        for c in chunks:
            text = embedding_text(c["title"], c["heading"], c["text"])
            enc = tokenizer.encode(text)
            shift = len(text) - len(c["text"])
            units = [[(a + shift, b + shift) for a, b in u] for u in sentence_spans(c["text"])]
            states[c["chunk_id"]] = (capture.states[tuple(enc.ids)], enc, units)
    sentence_rows: dict[int, list[Any]] = {}
    for r in sentences:
        sentence_rows.setdefault(r["chunk_id"], []).append(json.loads(r["e"]))
    return {
        "questions": np.asarray(vectors, dtype=np.float32),
        "records": records,
        "text": {c["chunk_id"]: c["text"].lower() for c in chunks},
        "chunk": {c["chunk_id"]: np.array(json.loads(c["e"]), np.float32) for c in chunks},
        "sentences": {k: np.array(v, np.float32) for k, v in sentence_rows.items()},
        "lexemes": lexemes,
        "states": states,
    }


def candidates(retriever: Retriever, rows: list[Any]) -> dict[str, Any]:
    terms = retriever._terms(rows[0]) if rows else None
    docs = {r["chunk_id"]: pick_lexemes(r["tsv"] or "", terms.ordered, int(r["length"]))
            for r in rows} if terms else {}  # fmt: skip
    s = retriever.settings
    weighted = (
        search._candidate_weighted(terms, docs.values(), s.candidate_idf_power) if terms else None
    )
    out: dict[str, Any] = {"chunk": [], "artifact": [], "ord": [], "sim": [], "sents": [], "kw": []}
    for r in rows:
        out["chunk"].append(r["chunk_id"])
        out["artifact"].append(r["artifact_id"])
        out["ord"].append(r["ord"])
        out["sim"].append(float(r["similarity"]))
        out["sents"].append(np.array(r["sentence_similarity"] or [], dtype=np.float64))
        if weighted is None:
            out["kw"].append((0.0, 0.0, 0.0))
            continue
        d = docs[r["chunk_id"]]
        out["kw"].append((
            bm25(d, weighted.weights, weighted.avg_length, k1=s.bm25_k1, b=s.bm25_b),
            proximity(d, weighted.ordered, weighted.weights),
            densest_window(d, weighted.weights, s.window_width),
        ))  # fmt: skip
    out["terms"] = weighted.weights if weighted else {}
    out["sim"] = np.array(out["sim"])
    out["kw"] = np.array(out["kw"]).reshape(-1, 3)
    return out


def pooled_sentences(data: dict[str, Any], how: str) -> dict[int, Any]:
    """Each chunk's sentence vectors re-pooled from its token states (``nostop``, ``idf``,
    ``sub:A`` span mean minus A x chunk mean); units past the model's window get none."""
    df: dict[int, int] = {}
    for _, enc, _ in data["states"].values():
        for t in set(enc.ids):
            df[t] = df.get(t, 0) + 1
    n = len(data["states"])
    out = {}
    for cid, (states, enc, units) in data["states"].items():
        h = states.astype(np.float32)
        offsets = np.array(enc.offsets)
        real = np.array(enc.special_tokens_mask) == 0
        keep = np.ones(len(enc.ids), bool)
        if how == "nostop":
            keep = np.array([t.isalnum() and t not in STOP for t in enc.tokens])
        weights = np.ones(len(enc.ids), np.float32)
        if how == "idf":
            weights = np.array([np.log((n + 1) / (df[t] + 0.5)) for t in enc.ids], np.float32)
        vecs = []
        for unit in units:
            inside = np.zeros(len(enc.ids), bool)
            for a, b in unit:
                inside |= (
                    (offsets[:, 0] >= a) & (offsets[:, 1] <= b) & (offsets[:, 1] > offsets[:, 0])
                )
            inside &= real
            if not inside.any():
                continue
            picked = inside & keep if (inside & keep).any() else inside
            v = (h[picked] * weights[picked, None]).sum(0) / weights[picked].sum()
            if how.startswith("sub:"):
                v = v - float(how.split(":")[1]) * h[real].mean(0)
            vecs.append(v / np.linalg.norm(v))
        if vecs:
            out[cid] = np.array(vecs)
    return out


def scaled(v: Any) -> Any:
    span = (v.max() - v.min()) or 1.0
    return (v - v.min()) / span


def zscored(v: Any) -> Any:
    return (v - v.mean()) / (v.std() or 1.0)


Scorer = Callable[[int, dict[str, Any]], Any]


def scorer(data: dict[str, Any], spec: dict[str, str]) -> Scorer:
    w = float(spec.get("w", 2.0))
    share = float(spec.get("share", 0.4))
    phrase, window = float(spec.get("phrase", 1.0)), float(spec.get("window", 1.0))
    coverage = float(spec.get("coverage", 0.0))
    norm = zscored if spec.get("fusion") == "zscore" else scaled
    kind, _, value = spec.get("pool", "max").partition(":")
    a = float(value) if value else 0.0
    q_all, chunk, sents = data["questions"], data["chunk"], data["sentences"]
    if kind in ("nostop", "idf", "sub"):
        sents = pooled_sentences(data, spec["pool"])
    if kind == "center":
        mean = np.concatenate(list(sents.values())).mean(0)
        sents = {k: (v - a * mean) / np.linalg.norm(v - a * mean, axis=1, keepdims=True)
                 for k, v in sents.items()}  # fmt: skip

    def sentence(i: int, cid: int, sim: float, stored: Any) -> float:
        if kind in ("max", "margin", "top2", "lift", "nb") and not len(stored):
            return sim
        if kind == "contrast":
            if cid not in sents:
                return sim
            s, c, q = sents[cid], chunk[cid], q_all[i]
            return float(((s @ q - a * sim) / np.sqrt(1 + a * a - 2 * a * (s @ c))).max())
        if kind in ("nostop", "idf", "sub", "center"):
            return float((sents[cid] @ q_all[i]).max()) if cid in sents else sim
        top = np.sort(stored)[::-1]
        second = top[1] if len(top) > 1 else top[0]
        if kind == "margin":
            return float(top[0] + a * (top[0] - second))
        if kind == "top2":
            return float(top[0] + a * second)
        if kind == "lift":
            return float(top[0] + a * (top[0] - stored.mean()))
        if kind == "nb" and len(stored) > 1:
            pad = np.concatenate([[-1.0], stored, [-1.0]])
            return float((stored + a * np.maximum(pad[:-2], pad[2:])).max())
        return float(top[0] * (1 + a) if kind == "nb" else top[0])

    def score(i: int, rec: dict[str, Any]) -> Any:
        sent = np.array(
            [
                sentence(i, c, s, x)
                for c, s, x in zip(rec["chunk"], rec["sim"], rec["sents"], strict=True)
            ]
        )
        semantic = rec["sim"] + w * sent
        kw = rec["kw"][:, 0] + phrase * rec["kw"][:, 1] + window * rec["kw"][:, 2]
        if coverage:
            terms = rec["terms"]
            lexemes = data["lexemes"]
            kw = kw + coverage * np.array([
                max((sum(terms[t] for t in lex if t in terms) for lex in lexemes[c]), default=0.0)
                for c in rec["chunk"]
            ])  # fmt: skip
        if not kw.any():
            return semantic
        return share * norm(kw) + (1 - share) * norm(semantic)

    return score


def judge(rec: dict[str, Any], scores: Any, query: Any, text: dict[int, str]) -> tuple[float, bool]:
    """Recall@1 and containment@5 as kb.evaluation.run_mode counts them (two chunks per
    artifact, in score order)."""
    order = np.argsort(-scores, kind="stable")
    chosen: dict[str, int] = {}
    contained = False
    for j in order:
        artifact = rec["artifact"][j]
        if artifact not in chosen:
            if len(chosen) >= 5:
                continue
            chosen[artifact] = 0
        if chosen[artifact] < 2:
            chosen[artifact] += 1
            body = text[rec["chunk"][j]]
            contained = contained or any(x.lower() in body for x in query.answers)
    if not len(order):
        return 0.0, False
    first = rec["artifact"][order[0]]
    return (1 / len(query.relevant) if first in query.relevant else 0.0), contained


def evaluate(
    data: dict[str, Any], questions: Sequence[Any], slices: dict[str, Any], spec: dict[str, str]
) -> dict[str, tuple[float, float]]:
    score = scorer(data, spec)
    m = np.array(
        [
            judge(rec, score(i, rec), questions[i], data["text"])
            for i, rec in enumerate(data["records"])
        ],
        dtype=float,
    )
    return {
        name: (float(m[idx, 0].mean()), float(m[idx, 1].mean())) for name, idx in slices.items()
    }


def parse(spec: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in spec.split(",") if part)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", choices=["pooled", "separate"], default="pooled")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--variant", action="append", default=[])
    parser.add_argument("--grid", type=int, default=0, help="random settings to search")
    parser.add_argument("--bar", default="", help="first,s0..s4 as r@1/c@5 pairs, for --grid")
    args = parser.parse_args()
    questions = load_queries(DATA / "queries.jsonl", DATA / "qrels.tsv", None)
    n = len(questions)
    picked = {"first 1000": list(range(1000))}
    for seed in range(5):
        picked[f"seed {seed}"] = sorted(random.Random(seed).sample(range(n), 1000))
    held = sorted(set(range(n)) - set().union(*map(set, picked.values())))
    slices = {k: np.array(v) for k, v in {**picked, f"held out {len(held)}": held}.items()}
    data = dump(args, questions)
    for spec in ["w=2" if args.sentences == "pooled" else "w=1", *args.variant]:
        res = evaluate(data, questions, slices, parse(spec))
        print(
            json.dumps({"variant": spec, **{k: f"{r:.3f} / {c:.3f}" for k, (r, c) in res.items()}}),
            flush=True,
        )
    if args.grid:
        bar = [tuple(map(float, pair.split("/"))) for pair in args.bar.split(",")]
        grid = [
            f"w={w},share={s},phrase={p},window={x},pool={pool},fusion={f}"
            for w in (1.5, 2, 2.5, 3, 4) for s in (0.36, 0.38, 0.4, 0.42, 0.44)
            for p in (0.5, 1, 1.5, 2) for x in (0.5, 1, 1.5)
            for pool in ("max", "contrast:0.1", "contrast:0.2", "contrast:0.3", "margin:0.25",
                         "margin:0.5")
            for f in ("minmax", "zscore")
        ]  # fmt: skip
        best = []
        for spec in random.Random(1).sample(grid, args.grid):
            res = evaluate(data, questions, slices, parse(spec))
            worst = min(
                min(r - br, c - bc)
                for (r, c), (br, bc) in zip(list(res.values())[:6], bar, strict=True)
            )
            best.append((worst, spec, res))
        for worst, spec, res in sorted(best, key=lambda b: b[0], reverse=True)[:5]:
            print(
                json.dumps(
                    {
                        "worst slice vs bar": round(worst, 3),
                        "variant": spec,
                        **{k: f"{r:.3f} / {c:.3f}" for k, (r, c) in res.items()},
                    }
                )
            )


if __name__ == "__main__":
    main()
