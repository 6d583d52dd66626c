"""The command line as an operator uses it: `kb sync` against fake Confluence and Jira servers,
then `kb ask --json`, each a real process sharing one Postgres and one KB_DATA_DIR."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fakes.atlassian import FAKE_EMAIL, FAKE_TOKEN, FakeConfluence, FakeJira


def kb(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kb.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_sync_then_ask_answers_with_the_synced_sources(tmp_path: Path, database_url: str) -> None:
    with FakeConfluence(cloud=True) as wiki, FakeJira(cloud=True) as jira:
        wiki.add_page(
            "ENG",
            "VPN access for Windows",
            "<p>Windows laptops connect with the <strong>NWP-AOVPN</strong> profile.</p>",
        )
        wiki.add_page(
            "ENG", "Deploy trains", "<p>Release trains leave on Tuesdays and Thursdays.</p>"
        )
        wiki.add_page("ENG", "Salary bands", "<p>Band L5.</p>", restricted=True)
        jira.add_issue(
            "OPS",
            "Label printer queue stuck",
            {
                "type": "doc",
                "version": 1,
                "content": [
                    {
                        "type": "paragraph",
                        "content": [
                            {"type": "text", "text": "Root cause: a malformed Kafka message."}
                        ],
                    }
                ],
            },
        )
        env = {
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": database_url,
            "KB_DATA_DIR": str(tmp_path / "data"),
            "CONFLUENCE_BASE_URL": wiki.base_url,
            "CONFLUENCE_EMAIL": FAKE_EMAIL,
            "CONFLUENCE_API_TOKEN": FAKE_TOKEN,
            "CONFLUENCE_SPACES": "ENG",
            "JIRA_BASE_URL": jira.base_url,
            "JIRA_EMAIL": FAKE_EMAIL,
            "JIRA_API_TOKEN": FAKE_TOKEN,
            "JIRA_PROJECTS": "OPS",
        }
        synced = kb(["sync", "--full"], env, tmp_path)
        assert synced.returncode == 0, synced.stderr
        assert "confluence: synced 2, unchanged 0, deleted 0, skipped 1, failed 0" in synced.stdout
        assert "jira: synced 1," in synced.stdout
        again = kb(["sync"], env, tmp_path)
        assert "confluence: synced 0, unchanged 2" in again.stdout
        asked = kb(
            ["ask", "Which profile do Windows laptops connect with?", "--json"], env, tmp_path
        )
        assert asked.returncode == 0, asked.stderr
        answer = json.loads(asked.stdout)
        assert set(answer) == {"answer", "cached", "sources"}
        assert answer["cached"] is False
        assert "NWP-AOVPN" in answer["answer"]
        assert answer["sources"][0]["title"] == "VPN access for Windows"
        assert answer["sources"][0]["url"].startswith(wiki.url)
        assert answer["sources"][0]["artifact_id"].startswith("confluence:")
        cached = json.loads(
            kb(
                ["ask", "which profile do windows laptops connect with", "--json"], env, tmp_path
            ).stdout
        )
        assert cached["cached"] is True and cached["answer"] == answer["answer"]
        key = kb(["ask", "What was the root cause of OPS-1?", "--json"], env, tmp_path)
        assert json.loads(key.stdout)["sources"][0]["artifact_id"] == "jira:OPS-1"


def test_a_refused_token_fails_the_sync_with_the_setting_to_fix(
    tmp_path: Path, database_url: str
) -> None:
    with FakeConfluence(cloud=True) as wiki:
        wiki.add_page("ENG", "Page", "<p>x</p>")
        env = {
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": database_url,
            "KB_DATA_DIR": str(tmp_path / "data"),
            "CONFLUENCE_BASE_URL": wiki.base_url,
            "CONFLUENCE_EMAIL": FAKE_EMAIL,
            "CONFLUENCE_API_TOKEN": "wrong-secret-token-123",
            "CONFLUENCE_SPACES": "ENG",
        }
        result = kb(["sync"], env, tmp_path)
    assert result.returncode == 1
    assert "CONFLUENCE_API_TOKEN" in result.stdout
    assert "wrong-secret-token-123" not in result.stdout + result.stderr
