"""One small generic registry: name -> entry, for each kind of thing a user can add (networks,
methods, benchmarks, data sources). An entry is a frozen dataclass with a `name` that owns its
facts; a registry holds entries and looks them up, nothing else. No torch."""

from __future__ import annotations

from typing import Generic, Iterator, TypeVar

T = TypeVar("T")
_MISSING = object()


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

    def get(self, name: str, default=_MISSING) -> T:
        """The entry `name`; an unknown name is an error naming the known ones (or `default`)."""
        if name in self._entries:
            return self._entries[name]
        if default is not _MISSING:
            return default
        raise self.error(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self._entries)}")

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __setitem__(self, name: str, entry: T) -> None:
        """Replace (or add) an entry outright: for tests that change one entry for a while."""
        self._entries[name] = entry

    def __delitem__(self, name: str) -> None:
        del self._entries[name]

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
