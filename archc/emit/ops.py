"""Dimension tables: the one place that knows Conv1d/Conv2d/Conv3d apart (MONAI's factory idea, no more)."""

from __future__ import annotations

from torch import nn

from ..errors import EmitError

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}

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


def conv(dims: int, in_channels: int, out_channels: int, kernel, stride=1, groups: int = 1, bias: bool = False) -> nn.Module:
    """A convolution with symmetric ``k // 2`` padding per axis."""
    kernel = tuple(kernel) if isinstance(kernel, (tuple, list)) else (kernel,) * dims
    padding = tuple(k // 2 for k in kernel)
    return CONV[dims](in_channels, out_channels, kernel, stride=stride, padding=padding, groups=groups, bias=bias)


def norm(dims: int, kind: str, channels: int, eps: float, momentum: float) -> nn.Module:
    if kind != "batch":
        raise EmitError(f"unknown norm {kind!r}")
    return BATCH_NORM[dims](channels, eps=eps, momentum=momentum)
