"""Atlassian Document Format -> plain text."""

from __future__ import annotations

from typing import Any

from sync.adf import adf_to_text


def doc(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": list(content)}


def text(value: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def para(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(content)}


def item(*content: dict[str, Any]) -> dict[str, Any]:
    return {"type": "listItem", "content": list(content)}


def cell(value: str, kind: str = "tableCell", **attrs: Any) -> dict[str, Any]:
    return {"type": kind, "attrs": attrs, "content": [para(text(value))] if value else []}


def test_none_and_empty_documents_give_empty_text() -> None:
    assert adf_to_text(None) == ""
    assert adf_to_text(doc()) == ""
    assert adf_to_text({}) == ""


def test_a_plain_string_body_is_treated_as_wiki_markup() -> None:
    assert adf_to_text("Fix *now*\u00a0please  \n\n\n\nthanks ") == "Fix now please\n\nthanks"


def test_headings_paragraphs_and_hard_breaks() -> None:
    body = doc(
        {"type": "heading", "attrs": {"level": 2}, "content": [text("Steps")]},
        para(text("one"), {"type": "hardBreak"}, text("two")),
        para(text("three")),
    )
    assert adf_to_text(body) == "## Steps\n\none\ntwo\n\nthree"


def test_nested_and_ordered_lists_are_indented() -> None:
    body = doc(
        {
            "type": "bulletList",
            "content": [
                item(
                    para(text("a")),
                    {
                        "type": "orderedList",
                        "attrs": {"order": 3},
                        "content": [item(para(text("b"))), item(para(text("c")))],
                    },
                ),
                item(para(text("d"))),
            ],
        },
    )
    assert adf_to_text(body) == "- a\n  3. b\n  4. c\n- d"


def test_table_rows_keep_their_column_headers() -> None:
    body = doc(
        {
            "type": "table",
            "content": [
                {
                    "type": "tableRow",
                    "content": [cell("Key", "tableHeader"), cell("Value", "tableHeader")],
                },
                {"type": "tableRow", "content": [cell("timeout"), cell("30s")]},
                {"type": "tableRow", "content": [cell("retries"), cell("")]},
            ],
        }
    )
    assert adf_to_text(body) == "Key: timeout | Value: 30s\nKey: retries"


def test_merged_table_cells_do_not_shift_columns() -> None:
    body = doc(
        {
            "type": "table",
            "content": [
                {
                    "type": "tableRow",
                    "content": [
                        cell("A", "tableHeader"),
                        cell("B", "tableHeader"),
                        cell("C", "tableHeader"),
                    ],
                },
                {"type": "tableRow", "content": [cell("wide", colspan=2), cell("c1")]},
                {"type": "tableRow", "content": [cell("tall", rowspan=2), cell("b2"), cell("c2")]},
                {"type": "tableRow", "content": [cell("b3"), cell("c3")]},
            ],
        }
    )
    assert adf_to_text(body) == (
        "A: wide | C: c1\nA: tall | B: b2 | C: c2\nA: tall | B: b3 | C: c3"
    )


def test_mentions_emoji_status_date_and_cards_render_inline() -> None:
    body = doc(
        para(
            {"type": "mention", "attrs": {"id": "1", "text": "@Ada"}},
            text(" and "),
            {"type": "mention", "attrs": {"id": "2", "text": "Bob"}},
            text(" "),
            {"type": "mention", "attrs": {"id": "3"}},
            text(" "),
            {"type": "emoji", "attrs": {"shortName": ":rocket:", "text": "🚀"}},
            {"type": "emoji", "attrs": {"shortName": ":party:"}},
            text(" "),
            {"type": "status", "attrs": {"text": "IN REVIEW", "color": "blue"}},
            text(" due "),
            {"type": "date", "attrs": {"timestamp": "1714521600000"}},
            text(" see"),
            {"type": "inlineCard", "attrs": {"url": "https://example.atlassian.net/browse/OPS-1"}},
        )
    )
    assert adf_to_text(body) == (
        "@Ada and @Bob @user 🚀:party: [STATUS: IN REVIEW] due 2024-05-01 see "
        "https://example.atlassian.net/browse/OPS-1"
    )


def test_links_keep_their_text_and_external_url() -> None:
    link = {"type": "link", "attrs": {"href": "https://wiki.example.com/x"}}
    same = {"type": "link", "attrs": {"href": "https://a.io"}}
    body = doc(
        para(
            text("Read "),
            text("the guide", link, {"type": "strong"}),
            text(" or "),
            text("https://a.io", same),
        )
    )
    assert adf_to_text(body) == "Read the guide (https://wiki.example.com/x) or https://a.io"


def test_code_block_is_fenced_with_its_language_and_kept_verbatim() -> None:
    code = "def f():\n    return {'a': 1}\n"
    body = doc({"type": "codeBlock", "attrs": {"language": "python"}, "content": [text(code)]})
    assert adf_to_text(body) == "```python\ndef f():\n    return {'a': 1}\n```"


def test_panels_are_labelled_by_their_type() -> None:
    body = doc(
        {"type": "panel", "attrs": {"panelType": "warning"}, "content": [para(text("Careful"))]},
        {"type": "panel", "attrs": {"panelType": "custom"}, "content": [para(text("Hi"))]},
    )
    assert adf_to_text(body) == "Warning: Careful\n\nPanel: Hi"


def test_expand_and_nested_expand_render_title_then_body() -> None:
    body = doc(
        {
            "type": "expand",
            "attrs": {"title": "More"},
            "content": [
                para(text("outer")),
                {
                    "type": "nestedExpand",
                    "attrs": {"title": "Inner"},
                    "content": [para(text("deep"))],
                },
            ],
        }
    )
    assert adf_to_text(body) == "More\n\nouter\n\nInner\n\ndeep"


def test_task_and_decision_items_show_their_state() -> None:
    body = doc(
        {
            "type": "taskList",
            "attrs": {"localId": "t"},
            "content": [
                {
                    "type": "taskItem",
                    "attrs": {"localId": "1", "state": "DONE"},
                    "content": [text("write")],
                },
                {
                    "type": "taskItem",
                    "attrs": {"localId": "2", "state": "TODO"},
                    "content": [text("ship")],
                },
            ],
        },
        {
            "type": "decisionList",
            "attrs": {"localId": "d"},
            "content": [
                {
                    "type": "decisionItem",
                    "attrs": {"localId": "3", "state": "DECIDED"},
                    "content": [text("use Postgres")],
                },
            ],
        },
    )
    assert adf_to_text(body) == "- [x] write\n- [ ] ship\n\n- Decision: use Postgres"


def test_media_renders_its_alt_text_or_nothing() -> None:
    body = doc(
        {
            "type": "mediaSingle",
            "content": [
                {
                    "type": "media",
                    "attrs": {"type": "file", "id": "abc", "collection": "c", "alt": "diagram.png"},
                }
            ],
        },
        {
            "type": "mediaGroup",
            "content": [
                {"type": "media", "attrs": {"type": "file", "id": "def", "collection": "c"}}
            ],
        },
        para(text("after")),
    )
    assert adf_to_text(body) == "diagram.png\n\nafter"


def test_blockquote_rule_and_block_card() -> None:
    body = doc(
        {"type": "blockquote", "content": [para(text("q1")), para(text("q2"))]},
        {"type": "rule"},
        {"type": "blockCard", "attrs": {"url": "https://x.io/p"}},
    )
    assert adf_to_text(body) == "> q1\n>\n> q2\n\n---\n\nhttps://x.io/p"


def test_unknown_and_malformed_nodes_never_crash_and_keep_their_text() -> None:
    body = doc(
        {"type": "futureContainer", "content": [para(text("inside unknown"))]},
        {
            "type": "layoutSection",
            "content": [
                {"type": "layoutColumn", "attrs": {"width": 50}, "content": [para(text("col"))]}
            ],
        },
        {"type": "paragraph", "content": "not a list"},
        {"type": "heading", "attrs": "oops", "content": [text("H")]},
        {"type": "bulletList", "content": [7, None, item(para(text("ok")))]},
        {"no": "type"},
        {"type": ["not", "hashable"], "content": [para(text("still here"))]},
        {"type": "date", "attrs": {"timestamp": "soon"}},
    )
    assert adf_to_text(body) == "inside unknown\n\ncol\n\n# H\n\n- ok\n\nstill here\n\nsoon"


def test_pathologically_deep_documents_keep_their_text() -> None:
    node: dict[str, Any] = para(text("bottom"))
    for _ in range(5000):
        node = {"type": "blockquote", "content": [node]}
    assert "bottom" in adf_to_text(doc(node))


def test_unknown_leaf_nodes_keep_text_from_their_attributes() -> None:
    body = doc(
        {"type": "futureLeaf", "attrs": {"text": "leaf words"}},
        para(text("a "), {"type": "futureInline", "attrs": {"text": "b"}}),
    )
    assert adf_to_text(body) == "leaf words\n\na b"
