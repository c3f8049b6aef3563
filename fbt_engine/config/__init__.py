"""Presets and their validation. Pure Python: importing this never imports torch or timm."""
