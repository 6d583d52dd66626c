"""The source registry: every system kb-bot reads, described once (docs/ARCHITECTURE.md,
"Sources").

A :class:`SourceSpec` names a source and carries what every layer needs from it: the settings
keys it declares (kb/settings.py reads them, nothing here touches the environment), a
connector factory over those keys' values, the webhook parser, and the scope syntax
(``<name>:<KEY>``). Scope parsing, the CLI's ``--source`` choices, ``/kb-sync`` validation,
webhook routes (``/webhooks/<name>``), metrics and wiring all read the registry. Adding a
source is one module that defines a spec and one line in :data:`BUILT_IN` (tests add theirs
with :meth:`SourceRegistry.with_source`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sync.confluence import CONFLUENCE
from sync.jira import JIRA
from sync.source import SourceSpec


@dataclass(frozen=True)
class SourceRegistry:
    specs: tuple[SourceSpec, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError(f"a source is registered twice: {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def get(self, name: str) -> SourceSpec | None:
        return next((s for s in self.specs if s.name == name), None)

    def with_source(self, spec: SourceSpec) -> SourceRegistry:
        return SourceRegistry((*self.specs, spec))

    def settings_keys(self) -> tuple[str, ...]:
        return tuple(k for s in self.specs for k in s.settings_keys)

    def scope_syntax(self) -> str:
        return ", ".join(s.scope_example() for s in self.specs)

    def __iter__(self) -> Iterator[SourceSpec]:
        return iter(self.specs)


# One line per source.
BUILT_IN = SourceRegistry((CONFLUENCE, JIRA))
