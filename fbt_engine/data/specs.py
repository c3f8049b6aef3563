"""Augmentation settings that need parsing, without torch (config validation uses them)."""

from __future__ import annotations


def parse_randaugment(spec: str) -> tuple[float, float, int]:
    """(magnitude, magnitude std, ops per image) from timm's "rand-m9-mstd0.5-inc1" form.
    Only timm's "increasing" op set is implemented, so "inc1" is implied."""
    parts = spec.split("-")
    if parts[0] != "rand":
        raise ValueError(f'a RandAugment spec starts with "rand-", e.g. "rand-m9-mstd0.5-inc1"; got {spec!r}')
    magnitude, std, n = 10.0, 0.0, 2
    for part in parts[1:]:
        try:
            if part.startswith("mstd"):
                std = float(part[4:])
            elif part.startswith("m"):
                magnitude = float(part[1:])
            elif part.startswith("n"):
                n = int(part[1:])
            elif part != "inc1":
                raise ValueError
        except ValueError:
            raise ValueError(f"unsupported RandAugment option {part!r} in {spec!r} (m, mstd, n, inc1)") from None
    return magnitude, std, n
