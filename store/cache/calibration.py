"""Calibrating the similarity threshold and margin on labelled question pairs.

``calibration_pairs.json`` (beside this file) holds pairs written for a Confluence/Jira
knowledge base: a question an answer was cached for, a later question, and whether the cached
answer answers it. Negatives are near-misses: another OS, environment, ticket, version,
number, or a neighbouring topic ("security training" vs "compliance training").

Two evaluations, both through the same gate code the caches run (:func:`choose`):

- ``pairwise``: the cache holds only the pair's cached question.
- ``pooled``: the cache holds every cached question of the set at once (each answer citing its
  own page), so runner-ups and the margin gate take part.

A false hit is serving an answer that does not answer the question; a true hit is serving the
right one. Run ``python -m store.cache.calibration [--sweep]`` to print the figures (JSON).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from store.cache._gates import Candidate, choose, entities, normalise
from store.cache._model import Citation, GateSettings, SourceVersion, Unit
from store.embedders import Vectors

PAIRS_FILE = Path(__file__).with_name("calibration_pairs.json")


@dataclass(frozen=True)
class Pair:
    cached: str
    asked: str
    same: bool
    kind: str


@dataclass(frozen=True)
class Report:
    mode: str
    threshold: float
    margin: float
    lookups: int
    positives: int
    negatives: int
    true_hits: int
    false_hits: int
    true_hit_rate: float
    false_hit_rate: float
    misses: dict[str, int]
    false_hit_examples: tuple[tuple[str, str], ...]


def load_pairs(path: Path = PAIRS_FILE) -> list[Pair]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Pair(p["cached"], p["asked"], bool(p["same"]), str(p["kind"])) for p in data["pairs"]]


def _unit(question: str, n: int) -> Unit:
    artifact = f"confluence:{n}"
    return Unit(
        unit_id=f"{n:032x}",
        question=question,
        normalised=normalise(question),
        scope="*",
        answer="",
        citations=(Citation(1, artifact, question, f"https://kb.example/{n}"),),
        provenance={artifact: SourceVersion("h", "1")},
        created_at=datetime(2024, 1, 1, tzinfo=UTC),
    )


def _serve(
    asked: str, vector: Vectors, units: Sequence[Unit], matrix: Vectors, gates: GateSettings
) -> Unit | str:
    """What a cache holding ``units`` (rows of ``matrix``) serves for ``asked``."""
    normalised = normalise(asked)
    for unit in units:
        if unit.normalised == normalised:
            return unit
    sims = matrix @ vector
    order = np.argsort(-sims, kind="stable")[: gates.candidates]
    cutoff = gates.threshold - gates.margin
    candidates = [Candidate(units[i], float(sims[i])) for i in order if sims[i] >= cutoff]
    choice = choose(entities(normalised), candidates, gates)
    return choice.unit if isinstance(choice, Candidate) else choice


def evaluate(
    pairs: Sequence[Pair], vectors: Mapping[str, Vectors], gates: GateSettings
) -> dict[str, Report]:
    """Pairwise and pooled reports; ``vectors`` maps every question to its embedding."""
    # Questions equal after normalisation are one cache entry (the exact-match key).
    answers = {(normalise(p.cached), p.asked) for p in pairs if p.same}
    anchors = list({normalise(p.cached): p.cached for p in reversed(pairs)}.values())[::-1]
    pooled_units = [_unit(q, n) for n, q in enumerate(anchors, start=1)]
    pooled_matrix = np.stack([vectors[q] for q in anchors])
    reports: dict[str, Report] = {}
    for mode in ("pairwise", "pooled"):
        true_hits = false_hits = 0
        misses: Counter[str] = Counter()
        examples: list[tuple[str, str]] = []
        for pair in pairs:
            if mode == "pairwise":
                units: Sequence[Unit] = [_unit(pair.cached, 1)]
                matrix = vectors[pair.cached][None, :]
            else:
                units, matrix = pooled_units, pooled_matrix
            served = _serve(pair.asked, vectors[pair.asked], units, matrix, gates)
            if isinstance(served, str):
                misses[served] += 1
            elif (served.normalised, pair.asked) in answers:
                true_hits += 1
            else:
                false_hits += 1
                examples.append((served.question, pair.asked))
        positives = sum(p.same for p in pairs)
        reports[mode] = Report(
            mode=mode,
            threshold=gates.threshold,
            margin=gates.margin,
            lookups=len(pairs),
            positives=positives,
            negatives=len(pairs) - positives,
            true_hits=true_hits,
            false_hits=false_hits,
            true_hit_rate=round(true_hits / max(positives, 1), 4),
            false_hit_rate=round(false_hits / max(len(pairs), 1), 4),
            misses=dict(sorted(misses.items())),
            false_hit_examples=tuple(examples),
        )
    return reports


def embed_pairs(pairs: Sequence[Pair], embed: Callable[[list[str]], Vectors]) -> dict[str, Vectors]:
    questions = list(dict.fromkeys([p.cached for p in pairs] + [p.asked for p in pairs]))
    return dict(zip(questions, embed(questions), strict=True))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threshold", type=float, default=GateSettings().threshold)
    parser.add_argument("--margin", type=float, default=GateSettings().margin)
    parser.add_argument("--sweep", action="store_true", help="also try thresholds 0.80-0.95")
    args = parser.parse_args(argv)
    from store.embedders.local import LocalEmbedder

    embedder = LocalEmbedder()
    pairs = load_pairs()
    vectors = embed_pairs(pairs, lambda texts: embedder.embed(texts, purpose="query"))
    gates = replace(GateSettings(), threshold=args.threshold, margin=args.margin)
    out: dict[str, object] = {
        "embedder": embedder.identity.name,
        "pairs": len(pairs),
        "reports": {m: asdict(r) for m, r in evaluate(pairs, vectors, gates).items()},
    }
    if args.sweep:
        sweep = {}
        for threshold in np.arange(0.80, 0.951, 0.01):
            point = evaluate(pairs, vectors, replace(gates, threshold=float(threshold)))
            sweep[f"{threshold:.2f}"] = {
                m: {"true_hit_rate": r.true_hit_rate, "false_hits": r.false_hits}
                for m, r in point.items()
            }
        out["sweep"] = sweep
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
