"""Keys and records of the diskcache backend (see :mod:`store.cache._disk` for the layout)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from core.errors import CacheError
from store.cache._model import Unit, decode_json, unit_from_dict, unit_to_dict


def exact_key(scope_key: str, normalised: str) -> str:
    digest = hashlib.blake2b(f"{scope_key}\x1f{normalised}".encode(), digest_size=16)
    return f"x:{digest.hexdigest()}"


def order_key(ns: int, unit_id: str) -> str:
    return f"!{ns:020d}:{unit_id}"


@dataclass(frozen=True)
class Record:
    """A unit plus what the backend keeps beside it.

    ``noticed``: an invalidation already reported this unit's places (and dropped it from the
    artifact index); a unit dirtied by the read path is not noticed until one does.
    """

    unit: Unit
    seg: str
    order: int
    size: int
    noticed: bool = False

    def to_json(self) -> str:
        body = {"unit": unit_to_dict(self.unit), "seg": self.seg, "order": self.order}
        body |= {"size": self.size, "noticed": self.noticed}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_value(cls, value: Any) -> Record:
        data = decode_json(value)
        try:
            seg, order, size, noticed = (data[k] for k in ("seg", "order", "size", "noticed"))
        except (KeyError, TypeError) as exc:
            raise CacheError("a cached unit record is malformed") from exc
        if not (isinstance(seg, str) and type(order) is int and type(size) is int):
            raise CacheError("a cached unit record is malformed")
        return cls(unit_from_dict(data["unit"]), seg, order, size, noticed is True)
