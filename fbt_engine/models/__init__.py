"""Models: fbt's small models (registered into timm) and the four-stage adapters."""
