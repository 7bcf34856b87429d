"""One small generic registry: name -> entry, for each kind of thing a user can add (networks,
methods, benchmarks, data sources). An entry is a frozen dataclass with a `name` that owns its
facts; a registry holds entries and looks them up, nothing else. No torch."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name. `register` refuses a name twice; `get` names the known entries
    when a name is unknown (with the registry's own error type)."""

    def __init__(self, kind: str, error: type[Exception] = ValueError):
        self.kind, self.error = kind, error
        self._entries: dict[str, T] = {}

    def register(self, entry: T) -> T:
        name = entry.name  # type: ignore[attr-defined]
        if name in self._entries:
            raise self.error(f"{self.kind} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise self.error(f"unknown {self.kind} {name!r}; known: {', '.join(self._entries)}") from None

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def items(self):
        return self._entries.items()

    def values(self):
        return self._entries.values()

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
