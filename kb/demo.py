"""``kb demo``: the sample knowledge base, synced through the real engine, answering questions.

Everything lives under KB_DATA_DIR in a schema of its own (``kb_demo``), so the demo never
mixes with a real store. Needs no credentials and no network; uses Claude when
ANTHROPIC_API_KEY is set, otherwise a clearly labelled extractive answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TextIO

from kb import wiring
from kb.commands import format_answer
from kb.runtime import open_runtime
from kb.sample import sample_connectors
from kb.settings import Settings

SCHEMA = "kb_demo"
PROMPT = "ask> "


def run_demo(
    settings: Settings, questions: Iterable[str], out: TextIO, *, interactive: bool
) -> int:
    with open_runtime(
        settings, schema=SCHEMA, cache_dir=settings.data_dir / "demo-answer-cache"
    ) as runtime:
        engine = runtime.engine()
        print(
            "Syncing the sample knowledge base (Northwind Parcel: Confluence ENG, "
            "Jira OPS) through the real sync engine...",
            file=out,
        )
        for connector in sample_connectors():
            print("  " + engine.run(connector, full=True, trigger="demo").summary(), file=out)
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
    return 0


def prompt_lines(prompt: str = PROMPT) -> Iterator[str]:
    """Questions typed at an interactive prompt, until end of input."""
    while True:
        try:
            yield input(prompt)
        except EOFError:
            return
