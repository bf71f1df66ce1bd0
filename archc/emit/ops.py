"""Dimension tables and the layer factory: the one place that knows Conv1d/Conv2d/Conv3d apart
(MONAI's factory idea, no more). No axis is hard-coded anywhere."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import ir
from ..errors import EmitError
from ..kinds.norms import NORMS as NORM_KINDS
from .depthwise import DepthwiseConv1d, DepthwiseConv2d, DepthwiseConv3d

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
MAX_POOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}

ACTIVATION = {
    "silu": lambda: nn.SiLU(inplace=True),
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "gelu": lambda: nn.GELU(),
    "mish": lambda: nn.Mish(inplace=True),
    "identity": lambda: nn.Identity(),
}

GATE = {"sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid}


@torch.fx.wrap  # one node of a torch.fx graph, computed from each input's size when the graph runs
def pad_same(x: torch.Tensor, kernel: list[int], stride: list[int], dilation: list[int]) -> torch.Tensor:
    """``x`` padded as TF's "same" padding pads it for this conv: per axis, in total
    ``max((ceil(n / s) - 1) * s + (k - 1) * d + 1 - n, 0)``, the extra pixel after."""
    pads: list[int] = []
    for axis in range(len(kernel) - 1, -1, -1):  # F.pad lists the last axis first
        n, k, s, d = x.shape[2 + axis], kernel[axis], stride[axis], dilation[axis]
        # ceil(n / s) written without a negative floor division, which ONNX export lowers as truncation
        total = max(((n + s - 1) // s - 1) * s + (k - 1) * d + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads) if any(pads) else x


class SamePadding:
    """Mixed in before an ``nn.ConvNd``: TF's "same" padding (:func:`pad_same`), computed from each input's size
    (not fixed to one image size). The classes are defined at module level (not made by a function) so that
    models pickle."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad_input(x)
        if torch.jit.is_scripting():  # TorchScript compiles no super(): the conv itself, as the ConvNd's forward runs it
            return self._conv_forward(x, self.weight, self.bias)
        return super().forward(x)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        return pad_same(x, list(self.kernel_size), list(self.stride), list(self.dilation))


class Conv1dSame(SamePadding, nn.Conv1d):
    pass


class Conv2dSame(SamePadding, nn.Conv2d):
    pass


class Conv3dSame(SamePadding, nn.Conv3d):
    pass


class DepthwiseConv1dSame(SamePadding, DepthwiseConv1d):
    pass


class DepthwiseConv2dSame(SamePadding, DepthwiseConv2d):
    pass


class DepthwiseConv3dSame(SamePadding, DepthwiseConv3d):
    pass


SAME_CONV = {1: Conv1dSame, 2: Conv2dSame, 3: Conv3dSame}
# Depthwise convs (groups == in == out) get their own classes: same parameters and state_dict keys, a faster backward.
DEPTHWISE_CONV = {1: DepthwiseConv1d, 2: DepthwiseConv2d, 3: DepthwiseConv3d}
SAME_DEPTHWISE_CONV = {1: DepthwiseConv1dSame, 2: DepthwiseConv2dSame, 3: DepthwiseConv3dSame}


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels at each position (ConvNeXt's LayerNorm2d), for any number of axes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # nn.LayerNorm's forward, without super() for TorchScript
        return F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps).movedim(-1, 1)


NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class LayerFactory:
    """Makes the layers of one Plan: its dimensionality, norm and padding decided once."""

    dims: int
    norm_cfg: ir.Norm
    padding: str

    @classmethod
    def of(cls, plan: ir.Plan) -> "LayerFactory":
        return cls(plan.dims, plan.norm, plan.padding)

    def conv(self, in_channels: int, out_channels: int, kernel=1, stride=1, groups: int = 1, bias: bool = False) -> nn.Module:
        kernel, stride = _axes(kernel, self.dims), _axes(stride, self.dims)
        if any(k % 2 == 0 and k != s for k, s in zip(kernel, stride)):
            raise EmitError(f"kernel {list(kernel)} with stride {list(stride)}: an even kernel must equal its stride (a patchify conv, padding 0)")
        is_depthwise = groups > 1 and in_channels == out_channels == groups
        if self.padding == "same" and (any(k > 1 for k in kernel) or any(s > 1 for s in stride)):
            same = SAME_DEPTHWISE_CONV if is_depthwise else SAME_CONV
            return same[self.dims](in_channels, out_channels, kernel, stride=stride, groups=groups, bias=bias)
        padding = ir.conv_padding(kernel)
        plain = DEPTHWISE_CONV if is_depthwise else CONV
        return plain[self.dims](in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=bias)

    def pool(self, pool: ir.Pool) -> nn.Module:
        if pool.kind == "max":
            return MAX_POOL[self.dims](pool.kernel, pool.stride, pool.padding, ceil_mode=pool.ceil_mode)
        return AVG_POOL[self.dims](pool.kernel, pool.stride, pool.padding, ceil_mode=pool.ceil_mode, count_include_pad=pool.count_include_pad)

    def norm(self, channels: int) -> nn.Module:
        cfg = self.norm_cfg
        if cfg.type not in NORM_KINDS:
            raise EmitError(f"unknown norm {cfg.type!r}; archc knows {', '.join(NORM_KINDS)}")
        kind = NORM_KINDS[cfg.type]
        return _named_class(kind.module_name(self.dims))(**kind.arguments(cfg, channels))

    @staticmethod
    def act(name: str) -> nn.Module:
        if name not in ACTIVATION:
            raise EmitError(f"no module for activation {name!r}; archc knows {', '.join(ACTIVATION)}")
        return ACTIVATION[name]()


def _named_class(name: str) -> type:
    """The class a kind names by ``module.path.Name`` (kinds name torch's classes and never import torch)."""
    module, _, attribute = name.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def _axes(value, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dims


# The transposed convs of a U-Net decoder's upsampling (``emit.decoder``); "same" padding does not apply to them:
# kernel and stride are equal, so each input position writes its own block of outputs.
CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
