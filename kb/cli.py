"""The ``kb`` command line (docs/ARCHITECTURE.md, "Commands"). Every command opens what it
needs through :func:`kb.runtime.open_runtime` and :mod:`kb.wiring`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from core.errors import KbError
from kb import wiring
from kb.settings import Settings, load_settings
from sync.registry import BUILT_IN, SourceRegistry

Command = Callable[[Settings, argparse.Namespace], int]


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from store.migrate import applied

    db = wiring.open_store(settings)
    try:
        numbers = applied(db)
        print(f"schema is at migration {max(numbers, default=0):04d} ({len(numbers)} applied)")
    finally:
        db.close()
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from kb.evaluation import evaluate, format_report, json_view, load_queries
    from store.search import Mode
    from store.tokens import TokenCounter

    queries = load_queries(args.queries, args.qrels, args.limit)
    modes: list[Mode] = ["hybrid", "vector", "keyword"] if args.mode == "all" else [args.mode]
    results = evaluate(
        wiring.database_url(settings),
        wiring.build_embedder(settings),
        TokenCounter(),
        args.corpus,
        queries,
        modes,
        k=args.k,
    )
    for result in results:
        print(json.dumps(json_view(result)) if args.json else format_report(result, args.k))
    return 0


def cmd_sync(settings: Settings, args: argparse.Namespace) -> int:
    from kb.commands import run_sync

    return run_sync(settings, args.source, args.scope or [], args.full, sys.stdout)


def cmd_ask(settings: Settings, args: argparse.Namespace) -> int:
    from kb import demo
    from kb.commands import run_ask

    if args.demo:
        return run_ask(
            settings,
            args.question,
            args.channel,
            args.json,
            schema=demo.SCHEMA,
            cache_dir=demo.cache_dir(settings),
        )
    return run_ask(settings, args.question, args.channel, args.json)


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from kb.demo import prompt_lines, run_demo

    interactive = not args.question and sys.stdin.isatty()
    questions = args.question or (prompt_lines() if interactive else sys.stdin)
    return run_demo(settings, questions, sys.stdout, interactive=interactive)


def cmd_bot(settings: Settings, args: argparse.Namespace) -> int:
    from kb.processes import run_bot

    return run_bot(settings)


def cmd_daemon(settings: Settings, args: argparse.Namespace) -> int:
    from kb.processes import run_daemon

    return run_daemon(settings)


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from kb.processes import run_up

    return run_up(settings)


def build_parser(sources: SourceRegistry = BUILT_IN) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kb", description="kb-bot: answers from Confluence and Jira, with sources."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply pending schema migrations").set_defaults(run=cmd_migrate)

    demo = sub.add_parser(
        "demo", help="sync the bundled sample knowledge base and answer questions (offline)"
    )
    demo.add_argument(
        "-q", "--question", action="append", help="ask this instead of prompting (repeatable)"
    )
    demo.set_defaults(run=cmd_demo)

    sub.add_parser(
        "bot",
        help="the chat bot: Slack (HTTP on $PORT at /slack/events, or Socket Mode) and Teams",
    ).set_defaults(run=cmd_bot)
    sub.add_parser(
        "daemon", help="scheduled syncs, /kb-sync requests, webhooks, notice delivery"
    ).set_defaults(run=cmd_daemon)
    sub.add_parser("up", help="bot and daemon together on one machine").set_defaults(run=cmd_up)

    sync = sub.add_parser("sync", help="one sync run in the foreground")
    sync.add_argument("--source", choices=[*sources.names, "all"], default="all")
    sync.add_argument("--scope", nargs="+", metavar="KEY", help="only these spaces/projects")
    sync.add_argument("--full", action="store_true", help="full reconciliation (finds deletions)")
    sync.set_defaults(run=cmd_sync)

    ask = sub.add_parser("ask", help="one answer through the same pipeline the bot uses")
    ask.add_argument("question")
    ask.add_argument("--channel", help="answer with this channel's scope (KB_CHANNEL_SCOPES)")
    ask.add_argument("--json", action="store_true", help="print {answer, cached, sources}")
    ask.add_argument(
        "--demo", action="store_true", help="ask the sample knowledge base `kb demo` synced"
    )
    ask.set_defaults(run=cmd_ask)

    ev = sub.add_parser("eval", help="measure retrieval on a BEIR-layout data set (no model calls)")
    ev.add_argument("--corpus", type=Path, required=True, help="corpus.jsonl (_id, title, text)")
    ev.add_argument(
        "--queries", type=Path, required=True, help="queries.jsonl (_id, text, answers)"
    )
    ev.add_argument("--qrels", type=Path, required=True, help="qrels.tsv (query_id, passage_id)")
    ev.add_argument("--k", type=_positive, default=5, help="cut-off for the printed report")
    ev.add_argument("--limit", type=_positive, help="evaluate only the first N judged queries")
    ev.add_argument("--mode", choices=["hybrid", "vector", "keyword", "all"], default="hybrid")
    ev.add_argument("--json", action="store_true", help="print one JSON object per mode")
    ev.set_defaults(run=cmd_eval)
    return parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None, sources: SourceRegistry = BUILT_IN) -> int:
    """``sources``: the source registry (tests register one more source here)."""
    parser = build_parser(sources)
    args = parser.parse_args(argv)
    env = {**wiring.read_dotenv(Path(".env")), **os.environ}
    try:
        settings = load_settings(env, sources)
        wiring.configure_logging(settings)
        run: Command = args.run
        return run(settings, args)
    except KbError as exc:
        print(f"kb {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
