"""`kb demo` end to end, non-interactively: the bundled knowledge base synced through the real
engine with the local embedder, questions read from stdin, answers with their sources."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_the_demo_answers_questions_from_stdin_with_sources(
    tmp_path: Path, database_url: str
) -> None:
    questions = (
        "How do I connect to the VPN on Windows?\nWhat caused OPS-412?\n"
        "how do I connect to the VPN on windows\nquit\nnever asked\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "kb.cli", "demo"],
        input=questions,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": database_url,
            "KB_DATA_DIR": str(tmp_path / "data"),
            "KB_LOG_LEVEL": "ERROR",
        },
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "confluence: synced 17, unchanged 0, deleted 0, skipped 1, failed 0" in out, (
        "every page but the read-restricted one"
    )
    assert "jira: synced 12, unchanged 0, deleted 0, skipped 1, failed 0" in out, (
        "every issue but the one with a security level"
    )
    assert "extractive quotes (set ANTHROPIC_API_KEY" in out
    shipped = re.search(r"(\d+) of (\d+) texts took their vectors from the ones shipped", out)
    assert shipped and shipped[1] == shipped[2], "a fresh demo embeds nothing of the sample"
    answers = out.split("ask> ")[1:]
    assert len(answers) == 3, "stops at quit"
    windows, ops412, again = answers
    assert "[1] VPN access for Windows" in windows and "NWP-AOVPN" in windows
    assert "No language model is configured" in windows
    assert "[1] OPS-412:" in ops412
    assert "answered from cache" in again and "answered from cache" not in windows
    assert "Salary" not in out
    assert 'kb ask --demo "' in out, "the closing lines say how to ask the sample again"
    assert "CONFLUENCE_BASE_URL" in out, "and how to point kb-bot at a real Confluence"


def test_a_second_demo_run_reuses_the_synced_knowledge_base(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": database_url,
        "KB_DATA_DIR": str(tmp_path / "data"),
        "KB_LOG_LEVEL": "ERROR",
    }
    outputs = []
    for expected in ("synced 17", "synced 0, unchanged 17"):
        result = subprocess.run(
            [sys.executable, "-m", "kb.cli", "demo", "-q", "Who do I page for a SEV1?"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert f"confluence: {expected}" in result.stdout
        assert "On-call handbook" in result.stdout
        outputs.append(result.stdout)
    assert "unchanged since it was synced on" not in outputs[0]
    assert "unchanged since it was synced on" in outputs[1], "a warm run says when it synced"
    asked = subprocess.run(
        [sys.executable, "-m", "kb.cli", "ask", "--demo", "Who do I page for a SEV1?"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env=env,
    )
    assert asked.returncode == 0, asked.stderr
    assert "On-call handbook" in asked.stdout, "kb ask --demo reads the demo's knowledge base"
