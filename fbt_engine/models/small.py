"""fbt's own small models, registered into timm's registry so `timm.create_model(name)` builds
them like any other timm model. Sized to train in seconds per epoch on two CPU cores at 28–32 px.

The token models reuse timm's own classes (VisionTransformer, MlpMixer) at small widths with
4-pixel patches; the CNN is a CIFAR-style ResNet with four stages of basic blocks.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import ClassifierHead
from timm.models import register_model
from timm.models.mlp_mixer import Affine, MlpMixer, ResBlock
from timm.models.swin_transformer import SwinTransformer
from timm.models.vision_transformer import VisionTransformer
from torch import nn

# create_model passes these to every entry point; the small models have no pretrained weights.
_FACTORY_ONLY = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def _model_kwargs(defaults: dict[str, Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("pretrained"):
        raise ValueError("fbt's small models have no pretrained weights")
    return {**defaults, **{k: v for k, v in kwargs.items() if k not in _FACTORY_ONLY}}


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_chs, out_chs, 1, stride, bias=False), nn.BatchNorm2d(out_chs))
            if stride != 1 or in_chs != out_chs else nn.Identity()
        )
        self.act2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.bn2(self.conv2(x))
        return self.act2(x + shortcut)


class CifarResNet(nn.Module):
    """3×3 stem at full resolution, then four stages of basic blocks at strides 1, 2, 2, 2."""

    def __init__(
        self,
        layers: tuple[int, ...] = (1, 1, 1, 1),
        widths: tuple[int, ...] = (16, 32, 64, 128),
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
    ):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.act1 = nn.ReLU(inplace=True)
        in_chs = widths[0]
        for i, (n, width) in enumerate(zip(layers, widths)):
            blocks = [BasicBlock(in_chs if j == 0 else width, width, (1 if i == 0 else 2) if j == 0 else 1)
                      for j in range(n)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_chs = width
        self.num_features = self.head_hidden_size = in_chs
        self.head = ClassifierHead(in_chs, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for block in self.modules():  # zero-init the last BN of each residual branch
            if isinstance(block, BasicBlock):
                nn.init.zeros_(block.bn2.weight)

    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head.reset(num_classes, global_pool)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cifar_resnet(layers: tuple[int, ...], width: int, **kwargs: Any) -> CifarResNet:
    widths = tuple(width * 2**i for i in range(4))
    return CifarResNet(**_model_kwargs(dict(layers=layers, widths=widths), kwargs))


@register_model
def resnet10_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Four stages of one basic block, widths 16-32-64-128 (≈0.3 M parameters)."""
    return _cifar_resnet((1, 1, 1, 1), 16, pretrained=pretrained, **kwargs)


@register_model
def resnet10_cifar_slim(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Four stages of one basic block, widths 8-16-32-64 (≈80 k parameters)."""
    return _cifar_resnet((1, 1, 1, 1), 8, pretrained=pretrained, **kwargs)


@register_model
def resnet18_cifar(pretrained: bool = False, **kwargs: Any) -> CifarResNet:
    """Four stages of two basic blocks, widths 16-32-64-128 (≈0.7 M parameters)."""
    return _cifar_resnet((2, 2, 2, 2), 16, pretrained=pretrained, **kwargs)


_SMALL_IMAGE = dict(img_size=28, patch_size=4)


def _vit(embed_dim: int, heads: int, **kwargs: Any) -> VisionTransformer:
    defaults = dict(_SMALL_IMAGE, embed_dim=embed_dim, depth=12, num_heads=heads, mlp_ratio=2.0,
                    global_pool="avg")
    return VisionTransformer(**_model_kwargs(defaults, kwargs))


@register_model
def deit_nano(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-like ViT: 12 blocks, width 64, 2 heads, 4-px patches, class token."""
    return _vit(64, 2, pretrained=pretrained, **kwargs)


@register_model
def deit_micro(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """DeiT-like ViT: 12 blocks, width 128, 4 heads, 4-px patches, class token."""
    return _vit(128, 4, pretrained=pretrained, **kwargs)


def _mixer(embed_dim: int, **kwargs: Any) -> MlpMixer:
    defaults = dict(_SMALL_IMAGE, num_blocks=12, embed_dim=embed_dim, mlp_ratio=(0.5, 2.0))
    return MlpMixer(**_model_kwargs(defaults, kwargs))


@register_model
def mixer_nano(pretrained: bool = False, **kwargs: Any) -> MlpMixer:
    """MLP-Mixer: 12 blocks, width 64, 4-px patches."""
    return _mixer(64, pretrained=pretrained, **kwargs)


@register_model
def mixer_micro(pretrained: bool = False, **kwargs: Any) -> MlpMixer:
    """MLP-Mixer: 12 blocks, width 128, 4-px patches."""
    return _mixer(128, pretrained=pretrained, **kwargs)


def _resmlp(embed_dim: int, **kwargs: Any) -> MlpMixer:
    defaults = dict(_SMALL_IMAGE, num_blocks=12, embed_dim=embed_dim, mlp_ratio=2,
                    block_layer=ResBlock, norm_layer=Affine)
    return MlpMixer(**_model_kwargs(defaults, kwargs))


@register_model
def resmlp_nano(pretrained: bool = False, **kwargs: Any) -> MlpMixer:
    """ResMLP: 12 residual MLP blocks with affine norms, width 64, 4-px patches."""
    return _resmlp(64, pretrained=pretrained, **kwargs)


@register_model
def resmlp_micro(pretrained: bool = False, **kwargs: Any) -> MlpMixer:
    """ResMLP: 12 residual MLP blocks with affine norms, width 128, 4-px patches."""
    return _resmlp(128, pretrained=pretrained, **kwargs)


def _swin(embed_dim: int, heads: tuple[int, ...], **kwargs: Any) -> SwinTransformer:
    defaults = dict(patch_size=4, window_size=7, embed_dim=embed_dim, depths=(2, 2, 2, 2), num_heads=heads)
    return SwinTransformer(**_model_kwargs(defaults, kwargs))


@register_model
def swin_pico_patch4_window7_224(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """Swin-Pico of OFA-KD / FBT's CIFAR-100 pairs: width 48, depths 2-2-2-2 (not in timm)."""
    return _swin(48, (3, 6, 12, 24), pretrained=pretrained, **kwargs)


@register_model
def swin_nano_patch4_window7_224(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """Swin-Nano of OFA-KD / FBT's CIFAR-100 pairs: width 64, depths 2-2-2-2 (not in timm)."""
    return _swin(64, (2, 4, 8, 16), pretrained=pretrained, **kwargs)
