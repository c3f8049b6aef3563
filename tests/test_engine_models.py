"""The four-stage adapters reproduce every model family exactly, and a distillation step never
changes the teacher."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from fbt_engine.config.schema import DataSection
from fbt_engine.data.sources import load_data
from fbt_engine.methods.base import build_method
from fbt_engine.methods.params import METHOD_PARAMS
from fbt_engine.models.factory import build_staged
from fbt_engine.models.names import own_model_names
from fbt_engine.train.loop import fit_channels
from fbt_engine.train.optim import OptimSpec, build_optimizer

SMALL = [n for n in own_model_names() if not n.endswith("_224")]
SMALL_224 = [n for n in own_model_names() if n.endswith("_224")]
# timm families at their native 224 px, one split point each (together they cover k = 1..4)
TIMM_224 = [("resnet18", 1), ("mobilenetv2_100", 2), ("deit_tiny_patch16_224", 3), ("resmlp_12_224", 4),
            ("mixer_b16_224", 1), ("convnext_tiny", 2), ("swin_tiny_patch4_window7_224", 3)]


def _reproduces(name: str, size: int, ks: tuple[int, ...], batch: int) -> None:
    torch.manual_seed(0)
    staged = build_staged(name, 10, size)
    staged.model.eval()
    x = torch.randn(batch, staged.in_chans, size, size)
    with torch.no_grad():
        reference = staged.model(x)
        for k in ks:
            outs = staged.run_to(x, k)
            assert len(outs) == k
            head = staged.run_from(outs[k - 1], k)
            assert torch.equal(head.logits, reference), (name, size, k)
            assert head.feature.shape == (batch, staged.specs[3].width)


def test_the_small_models_are_registered():
    assert {"resnet10_cifar", "resnet10_cifar_slim", "resnet18_cifar", "deit_nano", "deit_micro", "mixer_nano",
            "mixer_micro", "resmlp_nano", "resmlp_micro"} <= set(SMALL)


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("name", SMALL)
def test_small_models_are_reproduced_exactly_from_every_stage(name, size):
    _reproduces(name, size, (1, 2, 3, 4), batch=2)


@pytest.mark.parametrize("name", SMALL_224)
def test_small_224px_models_are_reproduced_exactly_from_every_stage(name):
    _reproduces(name, 224, (1, 2, 3, 4), batch=1)


@pytest.mark.parametrize("name,k", TIMM_224, ids=[n for n, _ in TIMM_224])
def test_timm_families_at_224px_are_reproduced_exactly(name, k):
    _reproduces(name, 224, (k,), batch=1)


def test_stage_specs_come_from_probing_at_the_configured_size():
    at28, at32 = build_staged("deit_nano", 10, 28), build_staged("deit_nano", 10, 32)
    assert at28.specs[3].grid == (7, 7) and at32.specs[3].grid == (8, 8)
    assert at28.specs[3].prefix_tokens == 1 and at28.specs[0].width == 64
    cnn = build_staged("resnet10_cifar", 10, 32)
    assert [s.grid for s in cnn.specs] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    assert [s.width for s in cnn.specs] == [16, 32, 64, 128]


# -- the teacher stays frozen --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def batch():
    data = load_data(DataSection(subset=100, batch_size=32, pad=2), torch.device("cpu"), seed=0)
    return next(iter(data.train.epoch(0)))


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("method,teacher,student", [
    ("fbt", "resnet10_cifar_slim", "mixer_nano"),  # a CNN teacher: BatchNorm buffers must not move either
    ("fbt", "mixer_nano", "resnet10_cifar_slim"),
    ("kd", "resnet10_cifar_slim", "deit_nano"),
    ("ofa_logit", "resnet10_cifar_slim", "resnet10_cifar_slim"),
    ("fitnet_mse", "resnet10_cifar_slim", "resmlp_nano"),
])
def test_a_training_step_changes_the_student_and_never_the_teacher(batch, method, teacher, student):
    torch.manual_seed(0)
    s, t = build_staged(student, 10, 28), build_staged(teacher, 10, 28)
    distiller = build_method(s, t, METHOD_PARAMS.get(method)(), label_smoothing=0.1)
    optimizer = build_optimizer([distiller], OptimSpec("sgd", 0.1, 5e-4), torch.device("cpu"))
    teacher_before, student_before = _snapshot(t.model), _snapshot(s.model)
    distiller.train()
    assert not t.model.training and all(not p.requires_grad for p in t.model.parameters())
    x, y = batch
    for _ in range(2):
        out = distiller(fit_channels(x, s.in_chans), y)
        optimizer.zero_grad(set_to_none=True)
        sum(out.losses.values()).backward()
        assert all(p.grad is None for p in t.model.parameters())
        optimizer.step()
    teacher_after = _snapshot(t.model)
    assert all(torch.equal(teacher_before[k], teacher_after[k]) for k in teacher_before), \
        [k for k in teacher_before if not torch.equal(teacher_before[k], teacher_after[k])]
    assert not all(torch.equal(v, s.model.state_dict()[k]) for k, v in student_before.items())
    assert not any(p is q for p in distiller.parameters() for q in t.model.parameters())


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The hub client's default cache, empty, and a hub at a closed port."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    return tmp_path / "hub"


def _hub_cache(cache: Path, name: str, weights: dict[str, torch.Tensor]) -> Path:
    """`weights` as timm/`name`'s model.safetensors in a cache laid out as huggingface_hub lays it
    out; the file."""
    repo = cache / f"models--timm--{name}"
    (repo / "snapshots" / "0123abc").mkdir(parents=True)
    save_file(weights, repo / "snapshots" / "0123abc" / "model.safetensors")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    return repo / "snapshots" / "0123abc" / "model.safetensors"


def _test_resnet_weights() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return timm.create_model("test_resnet").state_dict()


@pytest.mark.parametrize("given", [False, True], ids=["default-cache", "kwargs-cache_dir"])
def test_pretrained_weights_in_the_local_cache_load_from_there(offline_hub, tmp_path, given):
    """Cached weights are read from the cache's file, without asking the hub whether they changed
    (offline, the hub client retries for about 50 s before falling back to them): from the default
    cache, or from the one the model's cache_dir keyword names."""
    weights = _test_resnet_weights()
    cache = tmp_path / "given" if given else offline_hub
    file = _hub_cache(cache, "test_resnet.r160_in1k", weights)
    kwargs = {"pretrained": True} | ({"cache_dir": str(cache)} if given else {})
    model = build_staged("test_resnet.r160_in1k", 10, 32, kwargs).model
    assert model.pretrained_cfg["file"] == str(file)
    loaded = model.state_dict()
    body = [name for name in weights if not name.startswith("fc.")]  # the 10-class head is new
    assert body and all(torch.equal(loaded[name], weights[name]) for name in body)


def test_weights_the_kwargs_point_to_need_neither_cache_nor_hub(offline_hub, tmp_path):
    """pretrained_cfg_overlay={file=…} names the weights itself: an empty cache and an unreachable
    hub must not refuse the model."""
    weights = _test_resnet_weights()
    save_file(weights, tmp_path / "mine.safetensors")
    model = build_staged("test_resnet.r160_in1k", 10, 32, {
        "pretrained": True, "pretrained_cfg_overlay": {"file": str(tmp_path / "mine.safetensors")}}).model
    assert torch.equal(model.state_dict()["conv1.0.weight"], weights["conv1.0.weight"])


def test_cached_weights_of_a_model_with_a_custom_loader_load_too(offline_hub):
    """The registry loads some ViTs' original .npz weights with their own loader (custom_load);
    the hub's safetensors copy is a plain state dict. timm before 1.0.31 (1.0.29 on the GPU
    image) still sent a file given in its place to that loader, which refused it."""
    name = "vit_tiny_patch16_224.augreg_in21k"
    assert timm.models.get_pretrained_cfg(name).custom_load  # what makes this case
    torch.manual_seed(0)
    weights = timm.create_model("vit_tiny_patch16_224", num_classes=21843).state_dict()
    _hub_cache(offline_hub, name, weights)
    model = build_staged(name, 10, 224, {"pretrained": True}).model
    assert torch.equal(model.state_dict()["patch_embed.proj.weight"], weights["patch_embed.proj.weight"])


@pytest.mark.parametrize("hub_file, taken", [("pytorch_model.bin", "model.safetensors"),
                                             ("open_clip_pytorch_model.bin", "open_clip_model.safetensors"),
                                             ("weights.bin", "weights.safetensors"), ("model.pth", "model.pth")])
def test_the_cached_file_looked_for_is_the_one_timm_takes(hub_file, taken):
    from fbt_engine.models.pretrained import safe_alternative

    assert safe_alternative(hub_file) == taken


def test_a_hanging_name_lookup_does_not_hold_the_refusal_back(offline_hub, monkeypatch):
    """The resolver can wait far longer than a connection's timeout; the probe gives up on time."""
    import socket

    from fbt_engine.models import pretrained

    release = threading.Event()
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: release.wait(60) and [])
    monkeypatch.setattr(pretrained, "PROBE_TIMEOUT_S", 0.2)
    try:
        assert pretrained._unreachable("https://huggingface.co") == "no answer from huggingface.co within 0.2 s"
    finally:
        release.set()
