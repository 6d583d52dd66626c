"""Values of the answer cache and their JSON form.

Everything here is a frozen dataclass. Units cross process boundaries only as JSON produced and
checked by :func:`unit_to_json` / :func:`unit_from_json`; anything else found in the cache is
refused with :class:`CacheError`, never executed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal

from core.errors import CacheError
from store.cache._gates import normalise
from store.scope import Scope

MissReason = Literal["empty", "threshold", "margin", "entities", "scope", "stale", "dirty"]
MISS_REASONS: tuple[MissReason, ...] = (
    "empty",
    "threshold",
    "margin",
    "entities",
    "scope",
    "stale",
    "dirty",
)
_UNIT_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Citation:
    """One numbered source of an answer: the ``[n]`` marker, where it links, the chunks used."""

    n: int
    artifact_id: str
    title: str
    url: str
    chunk_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Place:
    """Where an answer was posted: ``("slack", "C0123", "1712345678.000100")``."""

    platform: str
    channel: str
    thread: str


@dataclass(frozen=True)
class SourceVersion:
    """The content hash and source version of an artifact an answer was built from."""

    content_hash: str
    version: str


@dataclass(frozen=True)
class Unit:
    """A cached answer. ``provenance`` maps every artifact it depends on to what it saw."""

    unit_id: str
    question: str
    normalised: str
    scope: str
    answer: str
    citations: tuple[Citation, ...]
    provenance: Mapping[str, SourceVersion] = field(hash=False)
    created_at: datetime
    served_at: datetime | None = None
    served_count: int = 0
    places: tuple[Place, ...] = ()
    dirty: bool = False
    mode: str = "claude"  # how the answer was made: "claude" or "extractive" (labelled)

    def __post_init__(self) -> None:
        # A read-only copy: a unit handed out by the cache cannot be changed under its owner.
        frozen = MappingProxyType(dict(sorted(self.provenance.items())))
        object.__setattr__(self, "provenance", frozen)

    @classmethod
    def new(
        cls,
        question: str,
        scope: Scope,
        answer: str,
        citations: tuple[Citation, ...],
        provenance: Mapping[str, SourceVersion],
        *,
        now: datetime | None = None,
    ) -> Unit:
        return cls(
            unit_id=uuid.uuid4().hex,
            question=question,
            normalised=normalise(question),
            scope=scope.key(),
            answer=answer,
            citations=citations,
            provenance=provenance,
            created_at=now or datetime.now(UTC),
        )

    def with_post(self, place: Place) -> Unit:
        return self if place in self.places else replace(self, places=(*self.places, place))


@dataclass(frozen=True)
class Hit:
    unit: Unit
    similarity: float
    exact: bool


@dataclass(frozen=True)
class Miss:
    """No unit was served; ``reason`` names the gate that refused (for metrics and tests)."""

    reason: MissReason
    similarity: float | None = None
    unit_id: str | None = None


@dataclass(frozen=True)
class Generated:
    """``get_or_generate`` produced (and cached) a new unit after ``miss``."""

    unit: Unit
    miss: Miss
    cached: bool


@dataclass(frozen=True)
class Invalidation:
    """What one ``source_changed``/``source_deleted`` did; ``places`` are for notices."""

    dirtied: int = 0
    skipped_unchanged: int = 0
    evicted: int = 0
    matched: int = 0
    places: tuple[tuple[str, Place], ...] = ()


@dataclass(frozen=True)
class CacheLimits:
    """The size bound; least recently served units go first (dirty ones before all)."""

    max_units: int = 20_000
    max_bytes: int = 512 * 1024 * 1024


@dataclass(frozen=True)
class GateSettings:
    """Similarity gates, calibrated for all-MiniLM-L6-v2 (see store/cache/calibration.py)."""

    threshold: float = 0.88
    margin: float = 0.03
    candidates: int = 16


# -- JSON ------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def unit_to_dict(unit: Unit) -> dict[str, Any]:
    return {
        "unit_id": unit.unit_id,
        "question": unit.question,
        "normalised": unit.normalised,
        "scope": unit.scope,
        "answer": unit.answer,
        "citations": [
            {
                "n": c.n,
                "artifact_id": c.artifact_id,
                "title": c.title,
                "url": c.url,
                "chunk_ids": list(c.chunk_ids),
            }
            for c in unit.citations
        ],
        "provenance": {a: [s.content_hash, s.version] for a, s in unit.provenance.items()},
        "created_at": _iso(unit.created_at),
        "served_at": _iso(unit.served_at),
        "served_count": unit.served_count,
        "places": [[p.platform, p.channel, p.thread] for p in unit.places],
        "dirty": unit.dirty,
        "mode": unit.mode,
    }


def unit_to_json(unit: Unit) -> str:
    return json.dumps(unit_to_dict(unit), ensure_ascii=False, separators=(",", ":"))


def _want(value: Any, kind: type, what: str) -> Any:
    # bool is an int subclass; a count must not silently accept true/false.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CacheError(f"cached unit field {what} is not {kind.__name__}")
    return value


def _moment(value: Any, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(_want(value, str, what))
    except ValueError as exc:
        raise CacheError(f"cached unit field {what} is not a timestamp") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def unit_from_dict(data: Any) -> Unit:
    """Rebuild a unit from decoded JSON, checking every field; CacheError on anything odd."""
    d = _want(data, dict, "unit")
    try:
        unit_id = _want(d["unit_id"], str, "unit_id")
        if not _UNIT_ID.match(unit_id):
            raise CacheError("cached unit id is not a uuid hex")
        citations = tuple(
            Citation(
                n=_want(c["n"], int, "citation.n"),
                artifact_id=_want(c["artifact_id"], str, "citation.artifact_id"),
                title=_want(c["title"], str, "citation.title"),
                url=_want(c["url"], str, "citation.url"),
                chunk_ids=tuple(_want(i, int, "chunk id") for i in _want(c["chunk_ids"], list, "")),
            )
            for c in _want(d["citations"], list, "citations")
        )
        provenance: dict[str, SourceVersion] = {}
        for artifact, pair in _want(d["provenance"], dict, "provenance").items():
            h, v = _want(pair, list, "provenance entry")
            provenance[artifact] = SourceVersion(_want(h, str, "hash"), _want(v, str, "version"))
        places = tuple(
            Place(*(_want(x, str, "place") for x in _want(p, list, "place")))
            for p in _want(d["places"], list, "places")
        )
        served_at = d["served_at"]
        return Unit(
            unit_id=unit_id,
            question=_want(d["question"], str, "question"),
            normalised=_want(d["normalised"], str, "normalised"),
            scope=_want(d["scope"], str, "scope"),
            answer=_want(d["answer"], str, "answer"),
            citations=citations,
            provenance=provenance,
            created_at=_moment(d["created_at"], "created_at"),
            served_at=None if served_at is None else _moment(served_at, "served_at"),
            served_count=_want(d["served_count"], int, "served_count"),
            places=places,
            dirty=_want(d["dirty"], bool, "dirty"),
            mode=_want(d.get("mode", "claude"), str, "mode"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CacheError(f"a cached unit is malformed ({exc!r}); it was ignored") from exc


def unit_from_json(text: Any) -> Unit:
    return unit_from_dict(decode_json(text))


def decode_json(text: Any) -> Any:
    """Decode JSON we wrote; bytes, non-UTF-8 or invalid JSON raise CacheError."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CacheError("a cache value is not UTF-8 text; it was ignored") from exc
    if not isinstance(text, str):
        raise CacheError(f"a cache value is {type(text).__name__}, not JSON text")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise CacheError("a cache value is not valid JSON; it was ignored") from exc
