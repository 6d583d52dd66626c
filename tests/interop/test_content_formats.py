"""The content converters over every real captured body in ../shared/fixtures."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.adf import adf_to_text
from sync.storage_format import storage_to_text
from sync.wiki_markup import wiki_to_text

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"
if not FIXTURES.is_dir():
    pytest.skip(
        f"shared fixtures not found at {FIXTURES} (clone without ../shared)",
        allow_module_level=True,
    )

CONTENT = FIXTURES / "content_formats"
STORAGE_FILES = sorted(CONTENT.glob("storage/**/*.storage.xml"))
MD_SOURCED = [
    p for p in STORAGE_FILES if p.with_name(p.name.replace(".storage.xml", ".source.md")).exists()
]
JIRA_FILES = sorted(
    [*FIXTURES.glob("rest_responses/jira/*.json"), *FIXTURES.glob("atlassian_webhooks/jira/*.json")]
)
# Storage-format markup that is never visible text on a rendered page.
LEAKS = ("ac:", "ri:", "CDATA", "schema-version", "panelIcon", "bgColor", "UUID", "&nbsp;")


def words(text: str) -> set[str]:
    """Alphanumeric words of three or more characters, case-folded."""
    return {w.casefold() for w in re.findall(r"[^\W_]+", text) if len(w) >= 3}


def storage_visible_text(xhtml: str) -> str:
    """A deliberately naive rendering of storage format, independent of the converter."""
    xhtml = re.sub(
        r"<ac:(parameter|task-id|task-uuid|task-status)\b[^>]*>.*?</ac:\1>",
        " ",
        xhtml,
        flags=re.DOTALL,
    )
    xhtml = xhtml.replace("<![CDATA[", "").replace("]]>", "")
    return html.unescape(re.sub(r"<[^>]+>", " ", xhtml))


def markdown_visible_text(md: str) -> str:
    """The text a reader sees in the Markdown a storage fixture was generated from."""
    md = re.sub(r"\A---\n.*?\n---\n", "", md, flags=re.DOTALL)  # front matter
    md = re.sub(r"<!--.*?-->", " ", md, flags=re.DOTALL)

    def fenced(match: re.Match[str]) -> str:
        # md2conf passes ```csf blocks through as raw storage format; other fences keep
        # their code but the info string (```python) is syntax.
        body = match.group(2)
        return storage_visible_text(body) if match.group(1) == "csf" else body

    md = re.sub(r"^```(\w*)\n(.*?)^```", fenced, md, flags=re.DOTALL | re.MULTILINE)
    md = re.sub(r"\{#[^}]*\}", " ", md)  # heading attributes
    md = re.sub(r"\[\[_\w+_\]\]", " ", md)  # GitLab [[_TOC_]] macros
    md = re.sub(r"\[([^\]]*)\]\((?:<[^>]*>|[^)\s]*)(?:\s+\"[^\"]*\")?\)", r" \1 ", md)
    md = re.sub(r"\[([^\]]*)\]\[[^\]]*\]", r" \1 ", md)  # reference links and images
    md = re.sub(r"<(?:https?|mailto):[^>]*>", " ", md)  # autolinks are URLs
    md = re.sub(r"https?://\S+", " ", md)
    md = re.sub(r"<[^>]+>", " ", md)
    return html.unescape(md)


@pytest.mark.parametrize("path", STORAGE_FILES, ids=lambda p: p.name)
def test_storage_fixture_keeps_all_visible_text_and_leaks_no_markup(path: Path) -> None:
    xhtml = path.read_text(encoding="utf-8")
    text = storage_to_text(xhtml)
    missing = words(storage_visible_text(xhtml)) - words(text)
    assert not missing, f"{path.name} lost {sorted(missing)}"
    for leak in LEAKS:
        assert leak not in text, f"{path.name} leaked {leak!r}"
    assert "\n\n\n" not in text and "\u00a0" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))


@pytest.mark.parametrize("path", MD_SOURCED, ids=lambda p: p.name)
def test_storage_fixture_keeps_the_words_of_its_markdown_source(path: Path) -> None:
    source = path.with_name(path.name.replace(".storage.xml", ".source.md"))
    expected = words(markdown_visible_text(source.read_text(encoding="utf-8")))
    assert len(expected) >= 3, f"{source.name}: the word extraction found nothing"
    missing = expected - words(storage_to_text(path.read_text(encoding="utf-8")))
    assert not missing, f"{path.name} lost {sorted(missing)}"


def test_md2conf_structures_render_with_the_agreed_conventions() -> None:
    def convert(name: str) -> str:
        return storage_to_text((CONTENT / "storage" / "md2conf" / name).read_text("utf-8"))

    table = convert("table.storage.xml")
    assert "Arabic: 1986 | Roman: MCMLXXXVI" in table
    assert "Number: 2 | English: two | Hungarian: kettő" in table
    assert "\nKey | Value\n" in table
    code = convert("code.storage.xml")
    assert "```java\nclass Simple {\n    public static void main(String args[]) {\n" in code
    assert "```py\ndef func(n: int) -> str:\n    return str(n)\n```" in code
    assert "- [x] Finished action\n- [ ] Unfinished action" in convert("tasklist.storage.xml")
    assert "- [STATUS: purple]" in convert("status.storage.xml")
    assert "Tip: Tip of the day\n" in convert("admonition.storage.xml")
    assert "## Basic features" in convert("basic.storage.xml")
    assert "- List item 1\n  - Nested item 1\n    1. Item 1\n" in convert("basic.storage.xml")
    toc = convert("toc.storage.xml")
    assert toc.endswith("Table of contents macro:\n\nChild pages macro:")
    assert "Tips for collapsed sections\n\nYou can add text" in convert("collapsed.storage.xml")


def test_meeting_notes_template_renders_dates_emoticons_and_users() -> None:
    xhtml = (
        CONTENT / "storage" / "meeting_notes_template_body__mcp-atlassian.storage.xml"
    ).read_text(encoding="utf-8")
    assert storage_to_text(xhtml) == (
        "## :blue-star: Date\n\n2024-01-01\n\n## :blue-star: Participants\n\n- @user\n\n"
        "## :blue-star: Goals\n\n- Example goal\n\n@user"
    )
    named = storage_to_text(xhtml, user_name={"user123": "Person A"}.get)
    assert "- @Person A" in named and "@user" not in named


def test_adf_rich_document_matches_the_expected_markdown_text() -> None:
    document = json.loads((CONTENT / "adf" / "adf_rich_document__jira-cli.json").read_text())
    expected = (CONTENT / "adf" / "adf_rich_document__jira-cli.expected_markdown.txt").read_text()
    text = adf_to_text(document)
    assert words(expected) - words(text) == set()
    # Nothing invented beyond the panel labels.
    assert words(text) - words(expected) == {"info", "warning"}
    for line in (
        "# H1",
        "## H2",
        "> Blockquote text",
        "@Person A",
        "Link (https://ankit.pl)",
        "Info: Panel paragraph",
        "Warning: Strong Paragraph 1",
        "      - New level",
        "            1. fourth level",
        "Table Header 1: Table row 2 column 1 | Table Header 2: Table row 2 column 2 | "
        "Table Header 3: Table row 2 column 3",
    ):
        assert line in text.split("\n"), line
    assert '```go\npackage main\n\nimport (\n\t"fmt"\n)\n' in text


def test_jira_issue_with_adf_description_converts() -> None:
    issue = json.loads(
        (CONTENT / "adf" / "jira_issue_with_adf_description__jira-cli.json").read_text()
    )
    fields = issue["fields"]
    assert adf_to_text(fields["description"]) == "Test description"
    for comment in fields.get("comment", {}).get("comments", []):
        assert adf_to_text(comment["body"]).strip()


def test_every_adf_schema_node_type_renders_its_text() -> None:
    schema = json.loads((CONTENT / "adf" / "adf_json_schema__gofluence.json").read_text())
    has_content: dict[str, bool] = {}
    for name, definition in schema["definitions"].items():
        props = definition.get("properties", {})
        for kind in props.get("type", {}).get("enum", []) if name.endswith("_node") else []:
            has_content[kind] = has_content.get(kind, False) or "content" in props
    assert len(has_content) >= 30
    attrs = {
        "text": "Tx",
        "url": "https://u.io/x",
        "title": "Ti",
        "shortName": ":sn:",
        "timestamp": "1714521600000",
        "alt": "Alt",
        "level": 2,
        "panelType": "note",
        "language": "sh",
        "state": "DONE",
    }
    leaves = {
        "mention": "@Tx",
        "emoji": "Tx",
        "status": "[STATUS: Tx]",
        "date": "2024-05-01",
        "inlineCard": "https://u.io/x",
        "blockCard": "https://u.io/x",
        "embedCard": "https://u.io/x",
        "media": "Alt",
        "mediaInline": "Alt",
        "extension": "Tx",
        "inlineExtension": "Tx",
        "rule": "---",
        "hardBreak": "",
        "placeholder": "",
        "text": "Tx",
        "mediaSingle": "",
    }
    for kind, container in sorted(has_content.items()):
        node: dict[str, Any] = {"type": kind, "attrs": attrs, "text": "Tx"}
        if container:
            for inner in (
                {"type": "text", "text": f"inside{kind}"},
                {"type": "paragraph", "content": [{"type": "text", "text": f"inside{kind}"}]},
            ):
                rendered = adf_to_text({"type": "doc", "content": [{**node, "content": [inner]}]})
                assert f"inside{kind}" in rendered, (kind, rendered)
        else:
            del node["text"]
            if kind == "text":
                node = {"type": "text", "text": "Tx"}
            assert adf_to_text({"type": "doc", "content": [node]}) == leaves[kind], kind


def jira_wiki_bodies(payload: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Issue descriptions and comment bodies that are strings (wiki markup), with a path."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            here = f"{path}/{key}"
            if key == "renderedFields":
                continue  # HTML, not wiki markup
            if isinstance(value, str) and (
                (key == "description" and path.endswith("/fields"))
                or (key == "body" and ("comment" in path))
            ):
                yield here, value
            else:
                yield from jira_wiki_bodies(value, here)
    elif isinstance(payload, list):
        for index, value in enumerate(payload):
            yield from jira_wiki_bodies(value, f"{path}[{index}]")


def test_jira_fixtures_hold_enough_wiki_bodies_to_be_a_real_check() -> None:
    bodies = [b for p in JIRA_FILES for b in jira_wiki_bodies(json.loads(p.read_text("utf-8")))]
    assert len(bodies) >= 30


@pytest.mark.parametrize("path", JIRA_FILES, ids=lambda p: p.name)
def test_jira_wiki_bodies_convert_and_keep_their_words(path: Path) -> None:
    for where, body in jira_wiki_bodies(json.loads(path.read_text(encoding="utf-8"))):
        text = wiki_to_text(body)
        missing = words(body) - words(text)
        assert not missing, f"{path.name}{where} lost {sorted(missing)}"
        assert text == text.strip()


def test_jira_wiki_escapes_in_a_real_comment_are_resolved() -> None:
    payload = json.loads(
        (
            FIXTURES
            / "rest_responses"
            / "jira"
            / "cloud_v2_issue_wiki_markup_comments_domain_rewritten__jira-to-matrix.json"
        ).read_text(encoding="utf-8")
    )
    bodies = [c["body"] for c in payload["fields"]["comment"]["comments"]]
    assert [wiki_to_text(b) for b in bodies] == [
        "Proyecto privado - no se puede asignar",
        "Proyecto público - puede asignar",
        "Proyecto limitada - no se puede asignar",
    ]
