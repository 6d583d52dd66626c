"""Atlassian Document Format (Jira REST v3 bodies, Confluence atlas_doc_format) to plain text."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sync._text import (
    Cell,
    collapse,
    fence,
    heading,
    join_blocks,
    labelled,
    link,
    list_item,
    normalize,
    one_line,
    quote,
    render_table,
)
from sync.wiki_markup import wiki_to_text

Node = Mapping[str, Any]

_INLINE_TYPES = frozenset(
    {
        "text",
        "hardBreak",
        "mention",
        "emoji",
        "inlineCard",
        "status",
        "date",
        "placeholder",
        "inlineExtension",
        "mediaInline",
    }
)
_PANEL_LABELS = {
    "info": "Info",
    "note": "Note",
    "tip": "Tip",
    "warning": "Warning",
    "error": "Error",
    "success": "Success",
}
# Inline nodes with no words of their own: a placeholder is only editor hint text.
_SILENT_TYPES = frozenset({"placeholder", "rule"})


def adf_to_text(doc: Mapping[str, Any] | str | None) -> str:
    """Convert an ADF document (or any ADF node) to plain text with Markdown-style structure.

    ``None`` gives ``""``. A plain string is what Jira v2 and older payloads put in the same
    field, i.e. wiki markup, so it goes through :func:`sync.wiki_markup.wiki_to_text`.
    Unknown node types are rendered through their content; malformed input never raises.
    """
    if doc is None:
        return ""
    if isinstance(doc, str):
        return wiki_to_text(doc)
    if not isinstance(doc, Mapping):
        return ""
    try:
        text = join_blocks(_block(doc))
    except RecursionError:
        # Absurdly deep nesting: keep the words, drop the structure.
        text = " ".join(_all_text(doc))
    return normalize(text)


def _nodes(node: Node) -> list[Node]:
    content = node.get("content")
    if not isinstance(content, Sequence) or isinstance(content, str):
        return []
    return [c for c in content if isinstance(c, Mapping)]


def _attrs(node: Node) -> Mapping[str, Any]:
    attrs = node.get("attrs")
    return attrs if isinstance(attrs, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_inline(node: Node) -> bool:
    kind = _str(node.get("type"))  # a malformed, unhashable type must not raise
    return kind in _INLINE_TYPES or (
        kind not in _BLOCK_RENDERERS and "text" in node and not _nodes(node)
    )


def _blocks(nodes: Sequence[Node]) -> list[str]:
    """Render sibling nodes as blocks; stray inline nodes are gathered into a paragraph."""
    out: list[str] = []
    run: list[Node] = []
    for node in nodes:
        if _is_inline(node):
            run.append(node)
            continue
        if run:
            out.append(_paragraph(run))
            run = []
        out.extend(_block(node))
    if run:
        out.append(_paragraph(run))
    return [b for b in out if b.strip()]


def _block(node: Node) -> list[str]:
    renderer = _BLOCK_RENDERERS.get(_str(node.get("type")))
    if renderer is not None:
        return renderer(node)
    if _is_inline(node):
        return [_paragraph([node])]
    content = _nodes(node)
    if not content:  # an unknown leaf may still carry text in its attributes
        return [_str(_attrs(node).get("text"))]
    return _blocks(content)  # doc, layouts, bodiedExtension and anything unknown


def _paragraph(nodes: Sequence[Node]) -> str:
    lines = (line.strip() for line in _inline(nodes).split("\n"))
    return "\n".join(line for line in lines if line)


def _heading(node: Node) -> list[str]:
    level = _attrs(node).get("level")
    return [heading(level if isinstance(level, int) else 1, _inline(_nodes(node)))]


def _list(node: Node) -> list[str]:
    ordered = node.get("type") == "orderedList"
    order = _attrs(node).get("order")
    number = order if isinstance(order, int) and order >= 0 else 1
    items: list[str] = []
    for item in _nodes(node):
        body = "\n".join(_blocks(_nodes(item)) if item.get("type") == "listItem" else _block(item))
        if not body.strip():
            continue
        items.append(list_item(f"{number}. " if ordered else "- ", body))
        number += 1
    return ["\n".join(items)]


def _task_list(node: Node) -> list[str]:
    items: list[str] = []
    for item in _nodes(node):
        kind = item.get("type")
        if kind in ("taskList", "decisionList"):  # nested lists indent under the last item
            nested = "\n".join(_block(item))
            items.append("\n".join(f"  {line}" if line else "" for line in nested.split("\n")))
            continue
        if kind not in ("taskItem", "decisionItem"):  # malformed: keep whatever it says
            items.append("\n".join(_blocks([item])))
            continue
        state = _str(_attrs(item).get("state")).upper()
        if kind == "decisionItem":
            marker = "- Decision: " if state in ("DECIDED", "") else "- Undecided: "
        else:
            marker = "- [x] " if state == "DONE" else "- [ ] "
        items.append(list_item(marker, _paragraph(_nodes(item))))
    return ["\n".join(items)]


def _code(node: Node) -> list[str]:
    code = "".join(
        _str(n.get("text")) if "text" in n else "\n".join(_all_text(n)) for n in _nodes(node)
    )
    return [fence(code, _str(_attrs(node).get("language")))]


def _panel(node: Node) -> list[str]:
    label = _PANEL_LABELS.get(_str(_attrs(node).get("panelType")), "Panel")
    return [labelled(label, None, _blocks(_nodes(node)))]


def _expand(node: Node) -> list[str]:
    return [_str(_attrs(node).get("title")), *_blocks(_nodes(node))]


def _table(node: Node) -> list[str]:
    rows: list[list[Cell]] = []
    for row in _nodes(node):
        if row.get("type") != "tableRow":  # malformed: keep the text as a one-cell row
            rows.append([Cell(one_line("\n".join(_blocks([row]))))])
            continue
        cells: list[Cell] = []
        for cell in _nodes(row):
            is_cell = cell.get("type") in ("tableCell", "tableHeader")
            attrs = _attrs(cell)
            cells.append(
                Cell(
                    one_line("\n".join(_blocks(_nodes(cell) if is_cell else [cell]))),
                    cell.get("type") == "tableHeader",
                    _int(attrs.get("colspan")),
                    _int(attrs.get("rowspan")),
                )
            )
        rows.append(cells)
    return [render_table(rows)]


def _media(node: Node) -> list[str]:
    """Alt texts and captions; media ids and collections are not text."""
    parts: list[str] = []
    for child in [node] if node.get("type") == "media" else _nodes(node):
        kind = child.get("type")
        if kind == "media":
            parts.append(_str(_attrs(child).get("alt")))
        elif kind == "caption":
            parts.append(_paragraph(_nodes(child)))
        else:
            parts.append(one_line(join_blocks(_blocks([child]))))
    return [" ".join(p for p in parts if p)]


def _card(node: Node) -> list[str]:
    return [_card_url(node)]


def _extension(node: Node) -> list[str]:
    return [_str(_attrs(node).get("text")), *_blocks(_nodes(node))]


_BLOCK_RENDERERS: dict[str, Callable[[Node], list[str]]] = {
    "paragraph": lambda n: [_paragraph(_nodes(n))],
    "heading": _heading,
    "bulletList": _list,
    "orderedList": _list,
    "taskList": _task_list,
    "decisionList": _task_list,
    "codeBlock": _code,
    "blockquote": lambda n: [quote(join_blocks(_blocks(_nodes(n))))],
    "panel": _panel,
    "rule": lambda n: ["---"],
    "expand": _expand,
    "nestedExpand": _expand,
    "table": _table,
    "mediaSingle": _media,
    "mediaGroup": _media,
    "media": _media,
    "blockCard": _card,
    "embedCard": _card,
    "extension": _extension,
}


def _inline(nodes: Sequence[Node]) -> str:
    return "".join(_inline_node(n) for n in nodes)


def _inline_node(node: Node) -> str:
    kind = _str(node.get("type"))
    attrs = _attrs(node)
    if kind == "text":
        return _text(node)
    if kind == "hardBreak":
        return "\n"
    if kind == "mention":
        name = _str(attrs.get("text")).strip() or "user"
        return name if name.startswith("@") else f"@{name}"
    if kind == "emoji":
        return _str(attrs.get("text")) or _str(attrs.get("shortName"))
    if kind == "inlineCard":
        return f" {_card_url(node)} "
    if kind == "status":
        text = _str(attrs.get("text")).strip()
        return f"[STATUS: {text}]" if text else ""
    if kind == "date":
        return _date(attrs.get("timestamp"))
    if kind == "inlineExtension":
        return _str(attrs.get("text"))
    if kind == "mediaInline":
        return _str(attrs.get("alt"))
    if kind in _SILENT_TYPES:
        return ""
    if _nodes(node):  # a block node inside inline content: keep its words on the line
        return f" {one_line(join_blocks(_block(node)))} "
    return _str(node.get("text")) or _str(attrs.get("text"))


def _text(node: Node) -> str:
    text = _str(node.get("text"))
    marks = node.get("marks")
    if isinstance(marks, Sequence):
        for mark in marks:
            if isinstance(mark, Mapping) and mark.get("type") == "link":
                href = _str(_attrs(mark).get("href"))
                # link() collapses whitespace; keep the text's own edges so words stay apart
                lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
                return f"{lead}{link(text, href)}{trail}"
    return text


def _card_url(node: Node) -> str:
    attrs = _attrs(node)
    url = _str(attrs.get("url"))
    data = attrs.get("data")
    if not url and isinstance(data, Mapping):  # JSON-LD card data
        name, data_url = _str(data.get("name")), _str(data.get("url"))
        return link(name, data_url) if data_url else name
    return url


def _date(timestamp: Any) -> str:
    try:
        millis = int(timestamp)
        return datetime.fromtimestamp(millis / 1000, tz=UTC).strftime("%Y-%m-%d")
    except (TypeError, ValueError, OverflowError, OSError):
        return _str(timestamp)


def _int(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():  # JSON numbers may arrive as 2.0
        return int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 1


def _walk(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (itself included), iteratively so depth cannot overflow."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(_nodes(current)))


def _all_text(node: Node) -> Iterator[str]:
    for current in _walk(node):
        attrs = _attrs(current)
        for value in (current.get("text"), attrs.get("text"), attrs.get("url")):
            if isinstance(value, str) and value.strip():
                yield collapse(value)
