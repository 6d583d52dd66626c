"""``/kb-sync`` arguments: ``[all|<source>] [KEY …]`` checked against what this deployment syncs.

The sources are passed in as :class:`SyncTargets` (built by the composition root from the
settings), so the chat layer names no source itself (docs/ARCHITECTURE.md, "Chat platforms").
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = "all"


@dataclass(frozen=True)
class SyncSource:
    """One source as ``/kb-sync`` sees it.

    ``keys``: what a sync of it can be narrowed to (spaces, projects). ``setting``: the setting
    that turns it on, named when someone asks for it while it is off. ``by_query``: how it is
    selected when a query (not a key list) decides, e.g. "a JQL query (JIRA_JQL)"; such a
    source cannot be narrowed to keys.
    """

    name: str
    label: str
    key_noun: str
    configured: bool
    keys: tuple[str, ...] = ()
    setting: str = ""
    by_query: str | None = None


@dataclass(frozen=True)
class SyncTargets:
    sources: tuple[SyncSource, ...]

    def get(self, name: str) -> SyncSource | None:
        return next((s for s in self.sources if s.name == name), None)

    @property
    def usage(self) -> str:
        names = "|".join((ALL, *(s.name for s in self.sources)))
        nouns = " or ".join(s.key_noun.upper() for s in self.sources)
        return f"Usage: /kb-sync [{names}] [{nouns} …]"


class SyncArgsError(ValueError):
    """The arguments of a sync request are not usable; the message says what to type."""


@dataclass(frozen=True)
class SyncRequest:
    source: str  # "all" or a source name
    keys: tuple[str, ...]
    label: str  # the source's label, or "all sources"

    def describe(self) -> str:
        if not self.keys:
            return self.label
        keys = ", ".join(self.keys)
        return keys if self.source == ALL else f"{self.label} {keys}"


def parse_sync_request(text: str, targets: SyncTargets) -> SyncRequest:
    """Check ``[all|<source>] [KEY ...]`` against what this deployment syncs."""
    words = text.replace(",", " ").split()
    source = ALL
    if words and (words[0].lower() == ALL or targets.get(words[0].lower())):
        source = words.pop(0).lower()
    elif words and words[0].lower() in ("help", "-h", "--help"):
        raise SyncArgsError(targets.usage)
    chosen = targets.get(source)
    if chosen is not None and not chosen.configured:
        raise SyncArgsError(f"{chosen.label} isn't configured here ({chosen.setting} is not set).")
    on = [s for s in targets.sources if s.configured]
    if not on:
        raise SyncArgsError("No source is configured here, so there is nothing to sync.")
    candidates = [s for s in on if source in (ALL, s.name)]
    keys = tuple(dict.fromkeys(w.upper() for w in words))
    for key in keys:
        if any(key in s.keys for s in candidates):
            continue
        query = next((s for s in candidates if s.by_query), None)
        if query is not None and not any(key in s.keys for s in on):
            raise SyncArgsError(
                f"{query.label} is synced by {query.by_query} here, so it can't be narrowed to "
                f"{key}; run /kb-sync {query.name} without keys to sync everything the query "
                "selects."
            )
        raise SyncArgsError(f"{key} isn't {_known_keys(source, candidates)}. {targets.usage}")
    if source == ALL and keys:
        # Keys of one source only: ask for that source, so the daemon does not try ENG in Jira.
        owners = {s.name for s in on for key in keys if key in s.keys}
        if len(owners) == 1:
            source = owners.pop()
    found = targets.get(source)
    return SyncRequest(source=source, keys=keys, label=found.label if found else "all sources")


def _known_keys(source: str, candidates: list[SyncSource]) -> str:
    parts = [
        f"a configured {s.label} {s.key_noun} ({', '.join(sorted(s.keys))})"
        for s in candidates
        if s.keys
    ]
    return " or ".join(parts) or f"something {source} can be narrowed to here"
