"""The Markdown an answer is written in, as both renderers read it: the patterns that find
code fences, headings, links and stray HTML. Each adapter decides what to turn them into."""

from __future__ import annotations

import re

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
# The URL may hold balanced parentheses (Wikipedia-style ``Foo_(bar)``).
LINK = re.compile(r"\[([^\]\n]+)\]\(((?:[^\s()]|\([^\s()]*\))+)(?:\s+\"[^\"\n]*\")?\)")
HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>]*)?/?>")
# Only these stay live links; relative and javascript: links have no useful target in chat.
SAFE_URL = re.compile(r"^(https?://|mailto:)", re.IGNORECASE)

# Links in answer text come from synced content or model output, so none of them may be live:
# only the citations the renderers build from artifact URLs are (docs/ARCHITECTURE.md,
# "Security stance"). ``unlink`` is the one place that makes them inert, for both platforms.
AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^<>\s]+)>", re.IGNORECASE)
# A scheme or ``www.`` and the host after it: what Slack's and Teams' linkifiers look for.
_URL_HEAD = re.compile(r"\b((?:https?|ftp)://|www\.)([^\s/?#<>()\[\]|`\"']*)", re.IGNORECASE)
_RATIO = "\u2236"  # looks like ':' but starts no scheme
_DOT = "\u2024"  # looks like '.' but joins no domain name


def defang_urls(text: str) -> str:
    """Every URL in ``text`` shown readably but in a form no chat client turns into a link."""

    def defang(match: re.Match[str]) -> str:
        head = match[1].replace(":", _RATIO).replace(".", _DOT)
        return head + match[2].replace(".", _DOT)

    return _URL_HEAD.sub(defang, text)


def unlink(text: str) -> str:
    """Answer text with its Markdown links, ``<url>`` autolinks and bare URLs made plain text:
    ``[label](url)`` becomes ``label (url)`` (just ``label`` for a non-web target)."""

    def plain(match: re.Match[str]) -> str:
        label, url = match[1], match[2]
        return f"{label} ({url})" if SAFE_URL.match(url) else label

    return defang_urls(AUTOLINK.sub(r"\1", LINK.sub(plain, text)))
