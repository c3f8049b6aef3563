"""One generic name → object registry, filled by decorator, with "did you mean" on misses."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest choice, or '' when nothing is close. A choice of the
    name's family (the letters it starts with: "deit" of deit_tiny) comes first, and of those one
    the name begins: by letters alone, deit_tiny is closest to rdnet_tiny and resnet_x to
    test_convnext."""
    choices = list(choices)
    family = re.match(r"[a-z]{3,}", name.lower())
    kin = [c for c in choices if family and c.lower().startswith(family.group())]
    longer = sorted((c for c in kin if c.startswith(name)), key=len)[:1]  # deit_tiny: deit_tiny_patch16_224
    close = (longer or difflib.get_close_matches(name, kin, n=1, cutoff=0.4)
             or difflib.get_close_matches(name, choices, n=1, cutoff=0.6))
    return f' (did you mean "{close[0]}"?)' if close else ""


class UnknownName(KeyError):
    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind, self.name = kind, name
        self.choices = sorted(choices)
        super().__init__(f'unknown {kind} "{name}"{did_you_mean(name, self.choices)}')

    def __str__(self) -> str:
        return self.args[0]


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(self.kind, name, self._items) from None

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def names(self) -> list[str]:
        return list(self._items)
