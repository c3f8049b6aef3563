"""torch.compile with a way out: a compiled call that fails is made again without the compiler."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def call_with_fallback(compiled: Callable[[], T], plain: Callable[[], T], fell_back: Callable[[str], None]) -> T:
    """`compiled()`, or `plain()` if that raises. When `plain()` succeeds the compiler was at fault
    (no toolchain, an unsupported backend or op) and `fell_back` hears why ("Error: message"), to
    drop the compiled version and say so; when it raises too, the error is the call's own and
    propagates, blaming no compiler. `plain()` runs once the failed call's frames are gone, so
    that the tensors they held (a failed step's activations) are freed first."""
    try:
        return compiled()
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
    out = plain()
    fell_back(why)
    return out
