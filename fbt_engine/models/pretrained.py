"""Where timm's pretrained weights come from. Weights already in the local Hugging Face cache are
loaded from there with no network at all: left to itself, the hub client first asks the hub whether
they changed, and offline it retries for about 50 s before it falls back to them. Weights that are
not cached need the hub: when it cannot be reached the run is refused at once, instead of after
those retries."""

from __future__ import annotations

import os
import socket
from typing import Any
from urllib.parse import urlsplit

import timm.models
from huggingface_hub import constants, try_to_load_from_cache

# timm's order: the safetensors file first, the pickled one where a repository has only that
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
CONNECT_TIMEOUT_S = 5.0


class WeightsUnreachable(Exception):
    """Pretrained weights that are neither cached nor downloadable now."""


def pretrained_overlay(name: str) -> dict[str, Any]:
    """timm.create_model's `pretrained_cfg_overlay` for `name` ("arch" or "arch.tag") built with
    pretrained=True: the cached weights' file, or nothing when the hub must be asked (or the
    weights come from elsewhere than the hub). Raises WeightsUnreachable when the hub must be
    asked and cannot be reached."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        return {}
    repo, _, revision = cfg.hf_hub_id.partition("@")
    for filename in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else WEIGHT_FILES:
        cached = try_to_load_from_cache(repo, filename, cache_dir=constants.HF_HUB_CACHE, revision=revision or None)
        if isinstance(cached, str):
            return {"file": cached}
    where = f"{repo}'s weights are not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        raise WeightsUnreachable(f"{where} and HF_HUB_OFFLINE is set")
    unreachable = _unreachable(constants.ENDPOINT)
    if unreachable:
        raise WeightsUnreachable(f"{where} and {constants.ENDPOINT} cannot be reached ({unreachable}): download "
                                 "them where there is a network (python -c \"import timm; timm.create_model("
                                 f"'{name}', pretrained=True)\") and copy the cache here")
    return {}


def _unreachable(endpoint: str) -> str | None:
    """Why the hub's host takes no connection, or None when it does (or when a proxy, which this
    check cannot go through, is configured: the hub client then has its say)."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    return None
