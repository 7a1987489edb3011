"""Name → object registries (PDE families, models). Generic code looks things up here by name."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import check_choice

T = TypeVar("T")


class Registry(Generic[T]):
    """A mapping from names to classes or factories, with an error that lists what exists."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@REG.register("fno")`` adds the decorated object under ``name``."""

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        """The object registered under ``name``; raises ``UserError`` naming the allowed names."""
        check_choice(self.kind, name, self._items)
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
