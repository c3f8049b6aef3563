"""Distillation methods. `params` is torch-free (config validation uses it); the rest is torch."""
