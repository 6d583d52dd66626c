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
