"""Every model name `timm.create_model` knows, found without importing torch or timm.

timm registers each model with `@register_model` above its entry-point function, and fbt's own
small models register the same way, so reading those sources gives the exact registry (a test
compares it with `timm.list_models()`). Config validation uses this to reject an unknown model
before anything heavy is imported.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

_REGISTERED = re.compile(r"@register_model\s*(?:\([^)]*\))?\s*\ndef\s+(\w+)")
_DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
_DICT_KEY = re.compile(r"['\"]([\w.\-]+)['\"]\s*:")
OWN_MODEL_SOURCES = ("small.py",)


def _names_in(source: str) -> set[str]:
    names = set(_REGISTERED.findall(source))
    for block in _DEPRECATIONS.findall(source):
        names.update(_DICT_KEY.findall(block))
    return names


@functools.cache
def known_model_names() -> frozenset[str]:
    names: set[str] = set()
    spec = importlib.util.find_spec("timm")
    if spec is not None and spec.origin:
        for path in (Path(spec.origin).parent / "models").rglob("*.py"):
            names |= _names_in(path.read_text(encoding="utf-8"))
    here = Path(__file__).parent
    for own in OWN_MODEL_SOURCES:
        names |= _names_in((here / own).read_text(encoding="utf-8"))
    return frozenset(names)


@functools.cache
def own_model_names() -> tuple[str, ...]:
    here = Path(__file__).parent
    return tuple(sorted(n for own in OWN_MODEL_SOURCES for n in _names_in((here / own).read_text())))


def is_known_model(name: str) -> bool:
    """`name` or `name.pretrained_tag`, as timm.create_model accepts them."""
    return name.split(".", 1)[0] in known_model_names()
