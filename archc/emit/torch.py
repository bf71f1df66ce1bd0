"""build(plan) -> nn.Module: a direct translation of Plan nodes, one code path for 1D, 2D and 3D.

Submodule names are roles (``conv_pw``, ``conv_dw``, ``se``, ``conv_pwl`` as in timm) because they are
state_dict keys that checkpoints depend on: rename one and every saved model breaks.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .. import ir
from .ops import ACTIVATION, GATE, conv, norm


class ConvNormAct(nn.Sequential):
    """conv -> norm -> activation; the stem and the head's 1x1 conv."""

    def __init__(self, layer: ir.ConvLayer, dims: int, norm_cfg: ir.Norm):
        super().__init__(
            OrderedDict(
                conv=conv(dims, layer.in_channels, layer.out_channels, layer.kernel, layer.stride),
                bn=norm(dims, norm_cfg.type, layer.out_channels, norm_cfg.eps, norm_cfg.momentum),
                act=ACTIVATION[layer.activation](),
            )
        )


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): global average, 1x1 reduce, activation, 1x1 expand, gate."""

    def __init__(self, dims: int, channels: int, squeeze: int, activation: str, gate: str):
        super().__init__()
        self.spatial = tuple(range(2, 2 + dims))  # every spatial axis, whatever dims is
        self.conv_reduce = conv(dims, channels, squeeze, 1, bias=True)
        self.act = ACTIVATION[activation]()
        self.conv_expand = conv(dims, squeeze, channels, 1, bias=True)
        self.gate = GATE[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(self.spatial, keepdim=True)  # (N, C, 1, ...)
        s = self.act(self.conv_reduce(s))  # (N, S, 1, ...)
        s = self.gate(self.conv_expand(s))  # (N, C, 1, ...)
        return x * s


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the residual branch per sample while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class MBConv(nn.Module):
    """Inverted residual (Sandler et al. 2018) with SE, as in EfficientNet."""

    def __init__(self, block: ir.Block, dims: int, norm_cfg: ir.Norm):
        super().__init__()
        act = ACTIVATION[block.activation]
        mid, se_after_project = block.mid_channels, block.se_placement == "after_project"

        def bn(channels: int) -> nn.Module:
            return norm(dims, norm_cfg.type, channels, norm_cfg.eps, norm_cfg.momentum)

        if block.expand:
            self.conv_pw, self.bn1, self.act1 = conv(dims, block.in_channels, mid, 1), bn(mid), act()
        else:  # expand ratio 1: no expand conv, no keys in the state_dict
            self.conv_pw = self.bn1 = self.act1 = nn.Identity()
        self.conv_dw = conv(dims, mid, mid, block.kernel, block.stride, groups=mid)
        self.bn2, self.act2 = bn(mid), act()
        if block.se_channels:
            se_width = block.out_channels if se_after_project else mid
            self.se = SqueezeExcite(dims, se_width, block.se_channels, block.se_activation, block.se_gate)
        else:
            self.se = nn.Identity()
        self.se_after_project = se_after_project
        self.conv_pwl, self.bn3 = conv(dims, mid, block.out_channels, 1), bn(block.out_channels)
        self.has_residual = block.residual
        self.drop_path = DropPath(block.drop_path) if block.residual and block.drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))  # expand:    (N, mid, *S)
        x = self.act2(self.bn2(self.conv_dw(x)))  # depthwise: (N, mid, *S/stride)
        if not self.se_after_project:
            x = self.se(x)
        x = self.bn3(self.conv_pwl(x))  # project:   (N, out, *S/stride), linear bottleneck: no activation
        if self.se_after_project:
            x = self.se(x)
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x


class Network(nn.Module):
    """stem -> stages -> head -> global average pool -> dropout -> classifier. ``plan`` is what it was built from."""

    def __init__(self, plan: ir.Plan):
        super().__init__()
        self.plan = plan
        dims = plan.dims
        self.spatial = tuple(range(2, 2 + dims))
        self.stem = ConvNormAct(plan.stem, dims, plan.norm)
        self.stages = nn.Sequential(
            *(nn.Sequential(*(MBConv(block, dims, plan.norm) for block in stage.blocks)) for stage in plan.stages)
        )
        self.head = ConvNormAct(plan.head.conv, dims, plan.norm)
        self.dropout = nn.Dropout(plan.head.dropout)
        num_classes, width = plan.head.num_classes, plan.head.conv.out_channels
        self.classifier = nn.Linear(width, num_classes) if num_classes else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, *S) -> (N, C_head, *S/32): the last feature map, before pooling."""
        return self.head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)  # (N, C_head, *S')
        x = x.mean(self.spatial)  # (N, C_head)
        return self.classifier(self.dropout(x))  # (N, num_classes)


def instantiate(plan: ir.Plan) -> Network:
    """The module's structure on the meta device: shapes and no memory, for counting or for loading weights into."""
    with torch.device("meta"):
        return Network(plan)


def build(plan: ir.Plan, *, seed: int | None = None, device: torch.device | str = "cpu") -> Network:
    """Emit the module for ``plan``, initialised as TF EfficientNet and timm do.

    The module is laid out on the meta device and materialised once, so weights are written a single time
    (not by torch's default init and then again by ours). With ``seed``, weights are bit-identical across
    runs and processes; without it, torch's global generator is used.
    """
    model = instantiate(plan)
    model.to_empty(device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    init_weights(model, generator)
    return model


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Convs: normal(0, sqrt(2 / fan_out)) with fan_out = k^d * out / groups (TF ``conv_kernel_initializer``,
    timm ``_init_weight_goog``: grouped and depthwise convs are not over-scaled as torch's own fan_out is).
    Linear: uniform(+-1/sqrt(out_features)) (TF ``dense_kernel_initializer``, torchvision). Norms: 1 and 0."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out), generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
            module.reset_running_stats()
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -bound, bound, generator=generator)
            nn.init.zeros_(module.bias)
