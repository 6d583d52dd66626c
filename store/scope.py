"""Scopes: which Confluence spaces and Jira projects an answer may draw on."""

from __future__ import annotations

from dataclasses import dataclass

SOURCES = ("confluence", "jira")


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
    def parse(cls, text: str) -> Scope:
        """Parse ``*`` or ``confluence:ENG,jira:OPS``; ``ValueError`` names a bad entry."""
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
            if not sep or source not in SOURCES or not key:
                raise ValueError(
                    f"{entry!r} is not a scope entry; write confluence:SPACE, jira:PROJECT or *"
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
