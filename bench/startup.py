"""``kb ask`` start-up: wall time from exec to the first line of output, on a warm store
(issue 14's target: <= 1.5 s), and what the imports cost.

Run: .venv/bin/python bench/startup.py [--runs 5] [--data-dir DIR]

Warms the bundled sample first (``kb demo -q``: embedded Postgres, the sample synced into the
demo's schema, the model cache), then times ``kb ask --demo`` ``--runs`` times, each a fresh
process, interleaved with fresh processes that only import ``kb.commands`` (what ``kb ask``
loads before it can print) and ``anthropic`` alone, so the share of start-up the imports take
is measured in the same run. No API key is set: the answer is extractive, as on a fresh clone.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Who do I page for a SEV1?"


def first_line_seconds(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Seconds to the first stdout line and to exit, and that line."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    first = time.perf_counter() - started
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {err[-2000:]}")
    return first, time.perf_counter() - started, line.strip()


def import_seconds(module: str, env: dict[str, str]) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data = args.data_dir or Path(tempfile.mkdtemp(prefix="kb-startup-"))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(data)),
        "KB_DATA_DIR": str(data),
    }
    kb = [sys.executable, "-m", "kb.cli"]
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()} {os.cpu_count()} cores",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    _, warm, _ = first_line_seconds([*kb, "demo", "-q", QUESTION], env)
    report["warm_up_demo_seconds"] = round(warm, 1)
    firsts: list[float] = []
    totals: list[float] = []
    commands: list[float] = []
    anthropic: list[float] = []
    line = ""
    for _ in range(args.runs):
        first, total, line = first_line_seconds([*kb, "ask", "--demo", QUESTION], env)
        firsts.append(first)
        totals.append(total)
        commands.append(import_seconds("kb.commands", env))
        anthropic.append(import_seconds("anthropic", env))
    report["kb_ask_first_line"] = line[:80]
    report["kb_ask_first_line_seconds_median"] = round(statistics.median(firsts), 2)
    report["kb_ask_first_line_seconds_all"] = [round(x, 2) for x in firsts]
    report["kb_ask_exit_seconds_median"] = round(statistics.median(totals), 2)
    report["import_kb_commands_seconds_median"] = round(statistics.median(commands), 2)
    report["import_anthropic_alone_seconds_median"] = round(statistics.median(anthropic), 2)
    report["target_seconds"] = 1.5
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
