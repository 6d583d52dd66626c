"""Confluence storage format (XHTML with ``ac:``/``ri:`` elements) to normalised plain text."""

from __future__ import annotations

import html
import textwrap
import warnings
from collections.abc import Callable
from posixpath import basename
from urllib.parse import unquote, urlsplit

from bs4 import BeautifulSoup, MarkupResemblesLocatorWarning, XMLParsedAsHTMLWarning
from bs4.element import CData, NavigableString, PageElement, PreformattedString, Tag

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

_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_BLOCK_TAGS = frozenset(
    {
        *_HEADINGS,
        "p",
        "div",
        "section",
        "article",
        "aside",
        "header",
        "footer",
        "main",
        "nav",
        "center",
        "blockquote",
        "pre",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "table",
        "hr",
        "figure",
        "figcaption",
        "details",
        "summary",
        "address",
        "form",
        "fieldset",
        "ac:layout",
        "ac:layout-section",
        "ac:layout-cell",
        "ac:task-list",
        "ac:rich-text-body",
        "ac:adf-extension",
    }
)
_DROPPED_TAGS = frozenset(
    {"script", "style", "head", "title", "ac:placeholder", "ac:parameter", "ac:adf-attribute"}
)
_PANELS = {
    "info": "Info",
    "note": "Note",
    "warning": "Warning",
    "tip": "Tip",
    "panel": "Panel",
    "success": "Success",
    "error": "Error",
}
_CODE_MACROS = frozenset({"code", "noformat"})
_INLINE_MACROS = frozenset({"status", "anchor", "jira", "profile", "profile-picture"})
_FILE_MACROS = frozenset({"view-file", "viewpdf", "viewdoc", "viewxls", "viewppt", "multimedia"})
_MACRO_TAGS = frozenset({"ac:structured-macro", "ac:macro"})


def storage_to_text(xhtml: str, *, user_name: Callable[[str], str | None] | None = None) -> str:
    """Convert a storage-format fragment to plain text with Markdown-style structure.

    ``user_name`` maps an account id (or a Server user key / name) to a display name; users
    it does not know, or all users when it is absent, read as ``@user``.
    """
    if not xhtml or not xhtml.strip():
        return ""
    soup = _parse(xhtml)
    try:
        text = join_blocks(_Renderer(user_name).blocks(soup))
    except RecursionError:
        # Pathologically deep nesting: keep every word rather than fail the sync.
        text = soup.get_text("\n")
    return normalize(text)


def _parse(xhtml: str) -> BeautifulSoup:
    # Newer html.parser versions treat CDATA outside SVG/MathML as a bogus comment that ends
    # at the first ">", which would cut code short; turn CDATA into escaped text beforehand.
    markup = _unwrap_cdata(xhtml)
    with warnings.catch_warnings():
        # Storage format is XHTML on purpose, and a short body may look like a file name.
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        return BeautifulSoup(markup, "html.parser")


def _unwrap_cdata(xhtml: str) -> str:
    """Replace each CDATA section by its escaped content (a linear scan, unlike a regex)."""
    out: list[str] = []
    pos = 0
    while (start := xhtml.find("<![CDATA[", pos)) != -1:
        end = xhtml.find("]]>", start + 9)
        if end == -1:
            break
        out += [xhtml[pos:start], html.escape(xhtml[start + 9 : end], quote=False)]
        pos = end + 3
    out.append(xhtml[pos:])
    return "".join(out)


def _attr(tag: Tag, name: str) -> str:
    value = tag.get(name)
    if value is None:
        return ""
    return value if isinstance(value, str) else " ".join(value)


def _child(tag: Tag, name: str) -> Tag | None:
    found = tag.find(name, recursive=False)
    return found if isinstance(found, Tag) else None


def _is_text(node: PageElement) -> bool:
    # Comments, doctypes and processing instructions are strings too, but not content.
    return isinstance(node, NavigableString) and (
        not isinstance(node, PreformattedString) or isinstance(node, CData)
    )


def _macro_name(tag: Tag) -> str:
    return _attr(tag, "ac:name").strip().lower()


def _params(tag: Tag) -> dict[str, Tag]:
    return {
        _attr(p, "ac:name").lower(): p
        for p in tag.find_all("ac:parameter", recursive=False)
        if isinstance(p, Tag)
    }


def _param(tag: Tag, name: str) -> str:
    param = _params(tag).get(name)
    return collapse(param.get_text()).strip() if param is not None else ""


class _Renderer:
    """Walks the parsed tree; holds only the caller's user-name lookup."""

    def __init__(self, user_name: Callable[[str], str | None] | None) -> None:
        self._user_name = user_name

    # -- structure -------------------------------------------------------------------------

    def _is_block(self, node: PageElement) -> bool:
        if not isinstance(node, Tag):
            return False
        if node.name in _MACRO_TAGS:
            return _macro_name(node) not in _INLINE_MACROS
        if node.name in _BLOCK_TAGS:
            return True
        # An inline element wrapping blocks (e.g. a <p> around a code macro) acts as a
        # container; looking one level down is enough for what editors produce.
        return any(
            isinstance(c, Tag)
            and (
                c.name in _BLOCK_TAGS
                or (c.name in _MACRO_TAGS and _macro_name(c) not in _INLINE_MACROS)
            )
            for c in node.children
        )

    def blocks(self, container: Tag) -> list[str]:
        """Render the children of ``container`` as blocks, gathering inline runs as paragraphs."""
        out: list[str] = []
        run: list[str] = []

        def flush() -> None:
            lines = (line.strip() for line in "".join(run).split("\n"))
            text = "\n".join(line for line in lines if line)
            if text:
                out.append(text)
            run.clear()

        for node in container.children:
            if self._is_block(node) and isinstance(node, Tag):
                flush()
                out.extend(b for b in self.block(node) if b.strip())
            else:
                run.append(self.inline(node))
        flush()
        return out

    def block(self, tag: Tag) -> list[str]:
        name = tag.name
        if name in _DROPPED_TAGS:
            return []
        if name in _HEADINGS:
            return [heading(_HEADINGS[name], self.inline_children(tag))]
        if name in ("ul", "ol"):
            return [self.html_list(tag)]
        if name == "ac:task-list":
            return [self.task_list(tag)]
        if name == "table":
            caption = _child(tag, "caption")
            title = one_line(join_blocks(self.blocks(caption))) if caption is not None else ""
            return [title, render_table(self.table_rows(tag))]
        if name == "blockquote":
            return [quote(join_blocks(self.blocks(tag)))]
        if name == "pre":
            return [fence(tag.get_text())]
        if name == "hr":
            return ["---"]
        if name in _MACRO_TAGS:
            return self.macro(tag)
        if name == "ac:adf-extension" and _child(tag, "ac:adf-node") is not None:
            fallback = _child(tag, "ac:adf-fallback")
            if fallback is not None:  # the fallback repeats the node's text
                fallback.decompose()
        return self.blocks(tag)

    def html_list(self, tag: Tag) -> str:
        ordered = tag.name == "ol"
        start = _attr(tag, "start")
        number = int(start) if start.strip().isdigit() else 1
        items: list[str] = []
        for child in tag.children:
            if isinstance(child, Tag) and child.name in ("ul", "ol") and items:
                # A list nested directly in a list (invalid HTML editors still emit) belongs
                # to the item before it.
                items[-1] += "\n" + textwrap.indent(self.html_list(child), "  ")
                continue
            if isinstance(child, Tag) and child.name == "li":
                body = "\n".join(self.blocks(child))
            else:
                body = self.inline(child).strip()
            if not body.strip():
                continue
            items.append(list_item(f"{number}. " if ordered else "- ", body))
            number += 1
        return "\n".join(items)

    def task_list(self, tag: Tag) -> str:
        items: list[str] = []
        for task in tag.find_all("ac:task", recursive=False):
            if not isinstance(task, Tag):
                continue
            status = _child(task, "ac:task-status")
            done = status is not None and status.get_text().strip().lower() == "complete"
            body_tag = _child(task, "ac:task-body")
            body = "\n".join(self.blocks(body_tag)) if body_tag is not None else ""
            items.append(list_item("- [x] " if done else "- [ ] ", body.strip()))
        return "\n".join(items)

    def table_rows(self, table: Tag) -> list[list[Cell]]:
        rows: list[list[Cell]] = []
        # Only this table's own rows: those of a nested table belong to that table's cell.
        sections = [c for c in table.children if isinstance(c, Tag)]
        own_rows = [
            r
            for c in sections
            for r in ([c] if c.name == "tr" else c.find_all("tr", recursive=False))
        ]
        for tr in own_rows:
            if not isinstance(tr, Tag):
                continue
            in_head = isinstance(tr.parent, Tag) and tr.parent.name == "thead"
            cells: list[Cell] = []
            for td in tr.find_all(("td", "th"), recursive=False):
                if isinstance(td, Tag):
                    cells.append(
                        Cell(
                            one_line("\n".join(self.blocks(td))),
                            in_head or td.name == "th",
                            _span(_attr(td, "colspan")),
                            _span(_attr(td, "rowspan")),
                        )
                    )
            rows.append(cells)
        return rows

    # -- macros ----------------------------------------------------------------------------

    def macro(self, tag: Tag) -> list[str]:
        name = _macro_name(tag)
        rich = _child(tag, "ac:rich-text-body")
        plain = _child(tag, "ac:plain-text-body")
        if name in _CODE_MACROS or (plain is not None and rich is None):
            code = plain.get_text() if plain is not None else ""
            language = _param(tag, "language") or (name if name not in _CODE_MACROS else "")
            title = _param(tag, "title")
            return [b for b in (title, fence(code, language)) if b]
        if name in _PANELS:
            body = self.blocks(rich) if rich is not None else []
            return [labelled(_PANELS[name], _param(tag, "title"), body)]
        if name == "expand":
            body = self.blocks(rich) if rich is not None else []
            return [_param(tag, "title"), *body]
        inline = self.inline_macro(tag, name)
        if inline is not None:
            return [inline]
        return self.blocks(rich) if rich is not None else []  # toc, children, anchor...

    def inline_macro(self, tag: Tag, name: str) -> str | None:
        if name == "status":
            title = _param(tag, "title") or _param(tag, "colour")
            return f"[STATUS: {title}]" if title else ""
        if name == "anchor":
            return ""
        if name == "jira":
            return _param(tag, "key")
        if name in ("profile", "profile-picture"):
            user = tag.find("ri:user")
            return self.user(user) if isinstance(user, Tag) else ""
        if name in _FILE_MACROS:
            attachment = tag.find("ri:attachment")
            return _attr(attachment, "ri:filename") if isinstance(attachment, Tag) else ""
        return None

    # -- inline ----------------------------------------------------------------------------

    def inline_children(self, tag: Tag) -> str:
        return "".join(self.inline(c) for c in tag.children)

    def inline(self, node: PageElement) -> str:
        if _is_text(node):
            return collapse(str(node))
        if not isinstance(node, Tag):
            return ""
        name = node.name
        if name in _DROPPED_TAGS:
            return ""
        if name == "br":
            return "\n"
        if name == "a":
            return link(self.inline_children(node), _attr(node, "href"))
        if name == "ac:link":
            return self.ac_link(node)
        if name in ("img", "ac:image"):
            return self.image(node)
        if name == "ac:emoticon":
            fallback = _attr(node, "ac:emoji-fallback") or _attr(node, "ac:emoji-shortname")
            emoticon = _attr(node, "ac:name")
            return fallback or (f":{emoticon}:" if emoticon else "")
        if name == "time":
            return _attr(node, "datetime") or self.inline_children(node)
        if name == "ri:user":
            return self.user(node)
        if name in _MACRO_TAGS:
            inline = self.inline_macro(node, _macro_name(node))
            return inline if inline is not None else f" {one_line(join_blocks(self.block(node)))} "
        if self._is_block(node):
            return f" {one_line(join_blocks(self.block(node)))} "
        return self.inline_children(node)

    def ac_link(self, tag: Tag) -> str:
        body = _child(tag, "ac:link-body") or _child(tag, "ac:plain-text-link-body")
        text = collapse(self.inline_children(body)).strip() if body is not None else ""
        for child in tag.children:
            if not isinstance(child, Tag):
                continue
            if child.name == "ri:user":
                return text or self.user(child)
            if child.name in ("ri:page", "ri:blog-post", "ri:attachment"):
                # The page title or file name is kept beside differing link text: both are
                # things a reader may search for.
                target = _attr(child, "ri:content-title") or _attr(child, "ri:filename")
                return (
                    f"{text} ({target})" if text and target and text != target else (text or target)
                )
            if child.name == "ri:space":
                return text or _attr(child, "ri:space-key")
            if child.name == "ri:url":
                return link(text, _attr(child, "ri:value"))
        return text or _attr(tag, "ac:anchor")

    def image(self, tag: Tag) -> str:
        name = _attr(tag, "ac:alt") or _attr(tag, "alt") or _attr(tag, "ac:title")
        if not name:
            attachment = tag.find("ri:attachment")
            url = tag.find("ri:url")
            if isinstance(attachment, Tag):
                name = _attr(attachment, "ri:filename")
            elif isinstance(url, Tag):
                name = _file_name(_attr(url, "ri:value"))
            else:
                name = _file_name(_attr(tag, "src"))
        caption = _child(tag, "ac:caption")
        text = one_line(join_blocks(self.blocks(caption))) if caption is not None else ""
        return f" {name} ({text}) " if name and text else f" {name or text} "

    def user(self, tag: Tag) -> str:
        key = _attr(tag, "ri:account-id") or _attr(tag, "ri:userkey") or _attr(tag, "ri:username")
        display = self._user_name(key) if key and self._user_name is not None else None
        return f"@{display}" if display else "@user"


def _span(value: str) -> int:
    return int(value) if value.strip().isdigit() else 1


def _file_name(url: str) -> str:
    return unquote(basename(urlsplit(url).path)) if url else ""
