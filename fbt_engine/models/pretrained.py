"""Where timm's pretrained weights come from. Weights already in the local Hugging Face cache as
safetensors are loaded from there with no network at all: left to itself, the hub client first asks
the hub whether they changed, and offline it retries for about 50 s before it falls back to them.
Weights that are not cached need the hub: when it cannot be reached the run is refused at once,
instead of after those retries."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import timm.models
from huggingface_hub import constants, try_to_load_from_cache

# the file timm asks the hub for when the registry names none, and the safetensors file it takes
# instead where the repository has one (timm.models._hub: _get_safe_alternatives)
HUB_WEIGHTS = "pytorch_model.bin"
SAFE_ALTERNATIVES = {"pytorch_model.bin": "model.safetensors",
                     "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
# overlay keys that say themselves where the weights are (timm's _PRETRAINED_SOURCE_KEYS, and a state dict)
SOURCE_KEYS = ("file", "url", "hf_hub_id", "hf_hub_filename", "state_dict")
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
PROBE_TIMEOUT_S = 5.0  # for the name lookup and the connection together


class WeightsUnreachable(Exception):
    """Pretrained weights that are neither cached nor downloadable now."""


def safe_alternative(filename: str) -> str:
    """The safetensors file timm takes, when the repository has it, instead of `filename`."""
    if filename in SAFE_ALTERNATIVES:
        return SAFE_ALTERNATIVES[filename]
    return filename[:-len(".bin")] + ".safetensors" if filename.endswith(".bin") else filename


def pretrained_overlay(name: str, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """timm.create_model's `pretrained_cfg_overlay` for `name` ("arch" or "arch.tag") built with
    pretrained=True: the cached safetensors file, or nothing where timm must see to it (weights from
    a URL, a cached pickle, which the hub client unpickles safely, a custom loader). Raises
    WeightsUnreachable when nothing is cached and the hub cannot be reached."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id or cfg.custom_load == "hf" or os.environ.get("TIMM_USE_OLD_CACHE"):
        return {}
    repo, _, revision = cfg.hf_hub_id.partition("@")
    cache = str(cache_dir or constants.HF_HUB_CACHE)

    filename = cfg.hf_hub_filename or HUB_WEIGHTS
    for candidate in dict.fromkeys((safe_alternative(filename), filename)):  # timm's order, each name once
        path = try_to_load_from_cache(repo, candidate, cache_dir=cache, revision=revision or None)
        if isinstance(path, str):
            # custom_load describes the registry's own source (an .npz URL for some ViTs); older
            # timm kept it for a file given in its place
            return {"file": path, "custom_load": False} if path.endswith(".safetensors") else {}
    where = f"{repo}'s weights are not in the Hugging Face cache ({cache})"
    fetch = ("download them where there is a network (python -c \"import timm; timm.create_model("
             f"'{name}', pretrained=True)\") and copy the cache here")
    if constants.HF_HUB_OFFLINE:
        raise WeightsUnreachable(f"{where} and the hub is set offline (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): "
                                 f"{fetch}")
    unreachable = _unreachable(constants.ENDPOINT)
    if unreachable:
        raise WeightsUnreachable(f"{where} and {constants.ENDPOINT} cannot be reached ({unreachable}): {fetch}")
    return {}


def locates_weights(overlay: dict[str, Any]) -> bool:
    """Whether a user's pretrained_cfg_overlay says itself where the weights are."""
    return any(overlay.get(key) for key in SOURCE_KEYS)


def _unreachable(endpoint: str) -> str | None:
    """Why the hub's host takes no connection, or None when it does (or when a proxy, which this
    check cannot go through, is configured: the hub client then has its say)."""
    if any(os.environ.get(v) for v in PROXY_VARIABLES):
        return None
    url = urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((url.hostname or "", port), timeout=PROBE_TIMEOUT_S).close()
            outcome.append(None)
        except Exception as exc:  # OSError mostly; a malformed endpoint's host raises UnicodeError
            outcome.append(f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")

    # A resolver that hangs keeps its own, longer timeout, which create_connection cannot bound:
    # the lookup runs in a daemon thread, left behind if it outlasts the probe.
    worker = threading.Thread(target=probe, name="fbt-hub-probe", daemon=True)
    worker.start()
    worker.join(PROBE_TIMEOUT_S)
    return outcome[0] if outcome else f"no answer from {url.hostname} within {PROBE_TIMEOUT_S:g} s"
