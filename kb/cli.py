"""The ``kb`` command line. Every command builds its objects through :mod:`kb.wiring`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kb import wiring
from kb.errors import KbError
from kb.settings import Settings, load_settings

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kb", description="kb-bot: answers from Confluence and Jira, with sources."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("migrate", help="apply pending schema migrations").set_defaults(run=cmd_migrate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    env = {**wiring.read_dotenv(Path(".env")), **os.environ}
    try:
        settings = load_settings(env)
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
