"""Scopes: which spaces, projects (or other keys of a source) an answer may draw on.

The source names are not known here: the store sits below the source registry
(sync/registry.py), so the composition root passes the registered names to :meth:`Scope.parse`
(docs/ARCHITECTURE.md, "Sources").
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

_SOURCE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Scope:
    """A set of ``source:KEY`` entries (``confluence:ENG``, ``jira:OPS``, ``jira:*``).

    ``entries`` of ``None`` means everything. ``source:*`` means every key of one source.
    """

    entries: frozenset[str] | None = None

    @classmethod
    def everything(cls) -> Scope:
        return cls(None)

    @classmethod
    def parse(cls, text: str, sources: Collection[str] | None = None) -> Scope:
        """Parse ``*`` or ``confluence:ENG,jira:OPS``; ``ValueError`` names a bad entry.

        ``sources``: the registered source names; an entry of any other source is refused.
        None accepts any well-formed name (for callers that only compare scopes)."""
        text = text.strip()
        if text == "*":
            return cls(None)
        entries: set[str] = set()
        for raw in text.split(","):
            entry = raw.strip()
            if not entry:
                continue
            source, sep, key = entry.partition(":")
            source = source.strip().lower()
            key = key.strip()
            known = _SOURCE_NAME.match(source) if sources is None else source in sources
            if not sep or not known or not key:
                example = ", ".join(f"{name}:KEY" for name in sorted(sources or ()))
                raise ValueError(
                    f"{entry!r} is not a scope entry; write {example or 'source:KEY'} or *"
                )
            entries.add(f"{source}:{key if key == '*' else key.upper()}")
        if not entries:
            raise ValueError("an empty scope; write * for everything")
        return cls(frozenset(entries))

    @property
    def is_everything(self) -> bool:
        return self.entries is None

    def allows(self, source: str, key: str) -> bool:
        """Whether an artifact of ``source`` in space/project ``key`` is inside this scope."""
        if self.entries is None:
            return True
        return f"{source}:{key.upper()}" in self.entries or f"{source}:*" in self.entries

    def contains(self, other: Scope) -> bool:
        """Whether everything ``other`` allows is also allowed here."""
        if self.entries is None:
            return True
        if other.entries is None:
            return False
        return all(self.allows(*entry.split(":", 1)) for entry in other.entries)

    def sql_filter(self) -> tuple[list[str], list[str]] | None:
        """(exact ``source:KEY`` list, whole-source list) for SQL, or None for everything."""
        if self.entries is None:
            return None
        exact = sorted(e for e in self.entries if not e.endswith(":*"))
        whole = sorted(e.split(":", 1)[0] for e in self.entries if e.endswith(":*"))
        return exact, whole

    def key(self) -> str:
        """A canonical text form, used to key caches."""
        return "*" if self.entries is None else ",".join(sorted(self.entries))

    def __str__(self) -> str:
        return self.key()
