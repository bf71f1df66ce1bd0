"""Norm kinds: one :class:`NormKind` record per ``norm.type``, in :data:`NORMS`: its label in diagrams, its parameter
count, and how the emitter builds it (the torch class, by name so that nothing here imports torch, and its
arguments). A new norm is one entry below (plus the regenerated docs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import ir


@dataclass(frozen=True)
class NormKind:
    name: str  # what a spec writes: ``norm: {type: batch}``
    label: str  # in diagrams: BN
    module: str  # the class emit builds, ``module.path.Name``; ``{dims}`` stands for 1, 2 or 3
    arguments: Callable[[ir.Norm, int], dict]  # (the Plan's norm, channels) -> the class's keyword arguments
    affine: bool = True  # a learned scale and shift per channel: 2 * channels parameters, else none

    def params(self, channels: int) -> int:
        return 2 * channels if self.affine else 0

    def module_name(self, dims: int) -> str:
        return self.module.format(dims=dims)


_KINDS = (
    NormKind("batch", "BN", "torch.nn.BatchNorm{dims}d", lambda norm, c: {"num_features": c, "eps": norm.eps, "momentum": norm.momentum}),
    NormKind("group", "GN", "torch.nn.GroupNorm", lambda norm, c: {"num_groups": norm.groups, "num_channels": c, "eps": norm.eps}),
    # affine, as MONAI's instance norm in its U-Nets: a learned scale and shift per channel
    NormKind("instance", "IN", "torch.nn.InstanceNorm{dims}d", lambda norm, c: {"num_features": c, "eps": norm.eps, "affine": True}),
    # over the channels at each position (ConvNeXt's LayerNorm2d), for any number of axes
    NormKind("layer", "LN", "archc.emit.ops.ChannelLayerNorm", lambda norm, c: {"normalized_shape": c, "eps": norm.eps}),
)


def _registry(kinds: tuple[NormKind, ...]) -> dict[str, NormKind]:
    found: dict[str, NormKind] = {}
    for kind in kinds:
        if kind.name in found or not kind.label or "." not in kind.module or not callable(kind.arguments):
            raise TypeError(f"norm kind {kind.name!r}: needs a new name, a label, a module path and an arguments function")
        found[kind.name] = kind
    return found


NORMS: dict[str, NormKind] = _registry(_KINDS)
NORM_NAMES: tuple[str, ...] = tuple(NORMS)
