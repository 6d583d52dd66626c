from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import SettingsError
from core.identities import AtlassianSite
from kb.settings import Secret, load_settings
from store.scope import Scope
from sync._atlassian import site_from

CONFLUENCE = {
    "CONFLUENCE_BASE_URL": "https://acme.atlassian.net/wiki",
    "CONFLUENCE_EMAIL": "bot@acme.test",
    "CONFLUENCE_API_TOKEN": "ATATT-confluence-token",
    "CONFLUENCE_SPACES": "eng, ops",
}


def test_defaults_need_no_settings_at_all() -> None:
    settings = load_settings({})
    assert settings.embedder == "local"
    assert settings.port == 3000 and settings.webhook_port == 8080
    assert settings.sync_every_minutes == 15
    assert settings.data_dir == Path(".kb")
    assert settings.default_scope.is_everything
    assert settings.configured_sources() == ()


def test_channel_scopes_map_channels_and_fall_back_to_the_default() -> None:
    settings = load_settings(
        {
            "KB_CHANNEL_SCOPES": "C0123=confluence:ENG,jira:OPS;C0456=*",
            "KB_DEFAULT_SCOPE": "confluence:PUBLIC",
        }
    )
    assert settings.scope_for("C0123") == Scope(frozenset({"confluence:ENG", "jira:OPS"}))
    assert settings.scope_for("C0456").is_everything
    assert settings.scope_for("C9999") == Scope(frozenset({"confluence:PUBLIC"}))


def _confluence_site(env: dict[str, str]) -> AtlassianSite | None:
    return site_from(load_settings(env).source_values["confluence"], "CONFLUENCE")


def test_confluence_cloud_uses_email_and_data_center_uses_a_bearer_token() -> None:
    cloud = _confluence_site(CONFLUENCE)
    assert cloud is not None and cloud.is_cloud
    assert cloud.base_url == "https://acme.atlassian.net/wiki"
    dc = _confluence_site({**CONFLUENCE, "CONFLUENCE_EMAIL": ""})
    assert dc is not None and not dc.is_cloud


def test_source_keys_are_read_once_through_the_registry() -> None:
    settings = load_settings(CONFLUENCE)
    assert settings.configured_sources() == ("confluence",)
    spec = settings.sources.get("confluence")
    assert spec is not None
    assert spec.selected_keys(settings.source_values["confluence"]) == ("ENG", "OPS")


@pytest.mark.parametrize(
    ("env", "key", "problem"),
    [
        ({"KB_SYNC_EVERY": "abc"}, "KB_SYNC_EVERY", "whole number"),
        ({"KB_SYNC_EVERY": "0"}, "KB_SYNC_EVERY", "positive"),
        ({"PORT": "70000"}, "PORT", "TCP port"),
        ({"KB_EMBEDDER": "bert"}, "KB_EMBEDDER", "one of local, voyage, openai"),
        ({"KB_EMBEDDER": "voyage"}, "VOYAGE_API_KEY", "KB_EMBEDDER=voyage needs it"),
        ({"KB_EMBEDDER": "openai"}, "OPENAI_API_KEY", "KB_EMBEDDER=openai needs it"),
        ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL", "http(s) URL"),
        ({"SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN", "start with 'xoxb-'"),
        ({"KB_CHANNEL_SCOPES": "C1"}, "KB_CHANNEL_SCOPES", "C0123=confluence:ENG"),
        ({"KB_CHANNEL_SCOPES": "C1=github:x"}, "KB_CHANNEL_SCOPES", "channel C1"),
        ({"KB_INCLUDE_RESTRICTED": "maybe"}, "KB_INCLUDE_RESTRICTED", "true or false"),
        ({**CONFLUENCE, "CONFLUENCE_API_TOKEN": ""}, "CONFLUENCE_API_TOKEN", "is not set"),
        ({**CONFLUENCE, "CONFLUENCE_SPACES": ""}, "CONFLUENCE_SPACES", "name the space keys"),
        ({"JIRA_API_TOKEN": "t"}, "JIRA_BASE_URL", "is not set"),
        ({"JIRA_PROJECTS": "OPS", "JIRA_JQL": "project = OPS"}, "JIRA_JQL", "not both"),
        ({"JIRA_BASE_URL": "acme.atlassian.net", "JIRA_API_TOKEN": "t"}, "JIRA_BASE_URL", "URL"),
        (
            {"JIRA_BASE_URL": "https://acme.atlassian.net", "JIRA_API_TOKEN": "t"},
            "JIRA_PROJECTS",
            "name project keys",
        ),
    ],
)
def test_a_bad_setting_is_named_with_what_is_wrong(
    env: dict[str, str], key: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(env)
    assert caught.value.key == key
    assert problem in str(caught.value)


def test_secrets_never_show_in_reprs() -> None:
    settings = load_settings({**CONFLUENCE, "SLACK_BOT_TOKEN": "xoxb-very-secret"})
    assert "xoxb-very-secret" not in repr(settings)
    assert "ATATT-confluence-token" not in repr(settings)
    assert repr(Secret("x")) == "Secret('***')"


def test_the_command_line_stops_with_one_line_naming_the_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kb.cli", "migrate"],
        env={"KB_SYNC_EVERY": "soon", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kb migrate: KB_SYNC_EVERY: must be a whole number, got 'soon'"
    ]


def test_a_dotenv_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("# comment\nexport KB_SYNC_EVERY='x'\nPORT=1\n")
    result = subprocess.run(
        [sys.executable, "-m", "kb.cli", "migrate"],
        env={"PORT": "99999", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PORT: must be a TCP port" in result.stderr
