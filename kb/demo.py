"""``kb demo``: the sample knowledge base, synced through the real engine, answering questions.

Everything lives under KB_DATA_DIR in a schema of its own (``kb_demo``), so the demo never
mixes with a real store. Needs no credentials and no network; uses Claude when
ANTHROPIC_API_KEY is set, otherwise a clearly labelled extractive answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from kb import wiring
from kb.commands import format_answer
from kb.runtime import open_runtime
from kb.sample import sample_connectors, sample_vectors
from kb.settings import Settings
from store import artifacts
from store.db import Database
from store.embedders import Embedder
from store.embedders.shipped import ShippedEmbedder, with_shipped

SCHEMA = "kb_demo"
PROMPT = "ask> "
CLOSING = """\
The sample lives in its own schema (kb_demo), apart from your own knowledge base.
  Ask it again without the demo:  kb ask --demo "Who do I page for a SEV1?"
  Use your own Confluence: set CONFLUENCE_BASE_URL, CONFLUENCE_EMAIL, CONFLUENCE_API_TOKEN
  and CONFLUENCE_SPACES (see .env.example), run `kb sync`, then `kb ask "..."`."""


def cache_dir(settings: Settings) -> Path:
    """The demo's own answer cache, beside (never inside) the real one."""
    return settings.data_dir / "demo-answer-cache"


def run_demo(
    settings: Settings, questions: Iterable[str], out: TextIO, *, interactive: bool
) -> int:
    with open_runtime(settings, schema=SCHEMA, cache_dir=cache_dir(settings), warm=True) as runtime:
        embedder = _with_sample_vectors(runtime.embedder)
        engine = wiring.build_engine(settings, runtime.db, embedder, runtime.invalidator)
        print(
            "Syncing the sample knowledge base (Northwind Parcel: Confluence ENG, "
            "Jira OPS) through the real sync engine...",
            file=out,
        )
        first_synced = _first_synced(runtime.db)
        reports = [engine.run(c, full=True, trigger="demo") for c in sample_connectors()]
        for report in reports:
            print("  " + report.summary(), file=out)
        if isinstance(embedder, ShippedEmbedder) and embedder.hits:
            print(
                f"  {embedder.hits} of {embedder.hits + embedder.misses} texts took their "
                "vectors from the ones shipped with the sample (same model, same text)",
                file=out,
            )
        if first_synced is not None and not any(r.counts.synced for r in reports):
            print(
                f"  (unchanged since it was synced on {first_synced:%Y-%m-%d %H:%M} UTC)",
                file=out,
            )
        flow = wiring.build_flow(settings, runtime.db, runtime.embedder, runtime.cache)
        mode = (
            f"Claude ({settings.model})"
            if settings.anthropic_api_key
            else "extractive quotes (set ANTHROPIC_API_KEY for written answers)"
        )
        print(f"Answers: {mode}. Ask about on-call, runbooks, VPN, deploys, OPS-412...", file=out)
        if interactive:
            print("Type a question, or 'quit'.", file=out)
        for question in questions:
            question = question.strip()
            if not question:
                continue
            if question.lower() in ("quit", "exit", ":q"):
                break
            if not interactive:
                print(f"\n{PROMPT}{question}", file=out)
            answer = flow.answer(question, scope=settings.default_scope)
            print(format_answer(answer) + "\n", file=out)
        print(CLOSING, file=out)
    return 0


def _with_sample_vectors(embedder: Embedder) -> Embedder:
    """The embedder, answering from the sample's shipped vectors where model and text match,
    so a first demo does not wait for the model to embed the whole sample."""
    table = sample_vectors()
    return embedder if table is None else with_shipped(embedder, table)


def _first_synced(db: Database) -> datetime | None:
    """When the sample was first synced into this store (None on a fresh one)."""
    with db.connection() as conn:
        at = artifacts.oldest_sync(conn)
    return at.astimezone(UTC) if at else None


def prompt_lines(prompt: str = PROMPT) -> Iterator[str]:
    """Questions typed at an interactive prompt, until end of input."""
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return
