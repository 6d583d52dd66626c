"""Question normalisation, entity extraction and the gates a cached unit must pass.

Pure functions, shared by both backends, so both refuse exactly the same things.

Entities are what an embedding blurs but an answer depends on: "VPN on Windows" and "VPN on
macOS" embed at 0.71-0.9 similarity, "release 2.4.1" and "2.4.2" at 0.98. A candidate is only
eligible when its entity sequence equals the question's.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from store.scope import Scope

if TYPE_CHECKING:
    from store.cache._freshness import ArtifactState
    from store.cache._model import GateSettings, MissReason, Unit

# -- normalisation ---------------------------------------------------------------------------

_APOSTROPHES = re.compile(r"['\u2019\u2018`]")
# A dot survives only between digits (2.4.1) and a hyphen only before a digit (OPS-412, utf-8):
# those carry entities. Every other punctuation mark becomes a space.
_KEEP_DOT = r"(?<=\d)\.(?=\d)"
_KEEP_HYPHEN = r"(?<=[0-9a-z])-(?=\d)"
_PUNCT = re.compile(rf"{_KEEP_DOT}|{_KEEP_HYPHEN}|([^\w\s]|_)")
_SPACE = re.compile(r"\s+")


def _strip_punct(match: re.Match[str]) -> str:
    return " " if match.group(1) is not None else match.group(0)


def normalise(question: str) -> str:
    """Case-, punctuation- and whitespace-insensitive form used for exact matching."""
    text = unicodedata.normalize("NFKC", question).casefold()
    text = _APOSTROPHES.sub("", text)
    text = _PUNCT.sub(_strip_punct, text)
    return _SPACE.sub(" ", text).strip()


# -- entities --------------------------------------------------------------------------------

_OS = {
    "windows": "windows",
    "win": "windows",
    "macos": "macos",
    "mac os": "macos",
    "mac os x": "macos",
    "osx": "macos",
    "os x": "macos",
    "mac": "macos",
    "macbook": "macos",
    "linux": "linux",
    "ubuntu": "ubuntu",
    "debian": "debian",
    "fedora": "fedora",
    "centos": "centos",
    "rhel": "rhel",
    "red hat": "rhel",
    "ios": "ios",
    "iphone": "ios",
    "ipad": "ios",
    "ipados": "ios",
    "android": "android",
    "chromeos": "chromeos",
    "chrome os": "chromeos",
    "chromebook": "chromeos",
}
_ENV = {
    "production": "prod",
    "prod": "prod",
    "pre prod": "preprod",
    "preprod": "preprod",
    "pre production": "preprod",
    "preproduction": "preprod",
    "staging": "staging",
    "stage": "staging",
    "stg": "staging",
    "development": "dev",
    "dev": "dev",
    "qa": "qa",
    "uat": "uat",
    "sandbox": "sandbox",
}
_NAMES = {**{k: f"os:{v}" for k, v in _OS.items()}, **{k: f"env:{v}" for k, v in _ENV.items()}}
_WORDS = "|".join(re.escape(k) for k in sorted(_NAMES, key=len, reverse=True))
_ENTITY = re.compile(
    r"\b(?:"
    r"(?P<ticket>[a-z][a-z0-9]+-\d+)"
    r"|v?(?P<version>\d+(?:\.\d+)+)"
    r"|v(?P<major>\d+)"
    rf"|(?P<name>{_WORDS})"
    r"|(?P<number>\d+)"
    r"|(?P<code>[a-z]+\d[a-z0-9]*|\d+[a-z][a-z0-9]*)"
    r")\b"
)


def entities(normalised: str) -> tuple[str, ...]:
    """Ticket keys, versions, numbers, OS and environment names, in order of appearance.

    Order matters ("upgrade from 1.9 to 2.0" is not "from 2.0 to 1.9"); repeats do not.
    Tokens mixing letters and digits (``p1``, ``q3``, ``sev1``, ``ipv6``) count as codes.
    """
    found: list[str] = []
    for match in _ENTITY.finditer(normalised):
        kind = match.lastgroup
        text = match.group(kind or 0)
        if kind == "ticket":
            value = f"ticket:{text.upper()}"
        elif kind in ("version", "major"):
            value = f"version:{text}"
        elif kind == "name":
            value = _NAMES[text]
        else:
            value = f"{kind}:{text}"
        if value not in found:
            found.append(value)
    return tuple(found)


# -- gates -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """A unit found for a question. ``current``: its sources' current state, when the
    backend read it in the same statement as the unit (else the flow asks CurrentHashes)."""

    unit: Unit
    similarity: float
    current: Mapping[str, ArtifactState] | None = field(default=None, compare=False)


def choose(
    question_entities: tuple[str, ...],
    candidates: Sequence[Candidate],
    gates: GateSettings,
) -> Candidate | MissReason:
    """The nearest candidate passing threshold, entity and margin gates, or the refusing gate.

    ``candidates`` are live units of the request's scope, best first, down to
    ``threshold - margin``. A rival only counts against the margin when it could have been
    served (same entities) and would have said something else (other sources).
    """
    if not candidates or candidates[0].similarity < gates.threshold:
        return "threshold"
    same = [c for c in candidates if entities(c.unit.normalised) == question_entities]
    eligible = [c for c in same if c.similarity >= gates.threshold]
    if not eligible:
        return "entities"
    best = eligible[0]
    sources = set(best.unit.provenance)
    for rival in same:
        if rival is best or set(rival.unit.provenance) == sources:
            continue
        if rival.similarity >= best.similarity - gates.margin:
            return "margin"
    return best


Verdict = Literal["ok", "scope", "stale"]


def admits(unit: Unit, scope: Scope, current: Mapping[str, ArtifactState]) -> Verdict:
    """Scope and freshness gates against the store's current artifacts.

    Scope: the unit must have been built in a scope the request's scope contains (a unit built
    in a wider scope may rest on retrieval the narrower one cannot see), and every source it
    depends on must be visible in the request's scope now. Freshness: every source must still
    exist, undeleted, with the content hash the unit was built from.
    """
    for artifact_id, seen in unit.provenance.items():
        state = current.get(artifact_id)
        if state is None or state.content_hash != seen.content_hash:
            return "stale"
    try:
        built_in = Scope.parse(unit.scope)
    except ValueError:
        return "scope"
    if not scope.contains(built_in):
        return "scope"
    for artifact_id in unit.provenance:
        state = current[artifact_id]
        if not scope.allows(state.source, state.scope_key):
            return "scope"
    return "ok"
