"""The U-Net decoder of a Plan (``plan.decoder``) as modules: one level per ``ir.DecoderLevel``, each upsampling the
deeper map, cropping it to its skip's size, joining the skip and running its blocks; then the head.

Any input size works: the encoder rounds every size up (``ceil(n / stride)`` with either padding), so upsampling
by the exact ratio of the reductions gives a map at least as large as the skip's, and the crop at the far end
removes what the rounding added (the rows and columns past the input's edge). The last level crops to the input's
size, so the output always has it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ir
from .blocks import Block, CheckpointedStage
from .ops import CONV_TRANSPOSE, LINEAR_MODE, LayerFactory


class Upsample(nn.Module):
    """``up.conv`` (a transposed conv, or the 1x1 conv before interpolation where the width halves), then
    interpolation by the level's factor per axis (nearest, or (bi/tri)linear without aligned corners)."""

    def __init__(self, up: ir.Upsample, layers: LayerFactory):
        super().__init__()
        unit = up.conv
        if up.mode == "transpose":
            self.conv = CONV_TRANSPOSE[layers.dims](up.in_channels, up.out_channels, up.scale, stride=up.scale, bias=True)
        elif unit is not None:
            self.conv = layers.conv(unit.in_channels, unit.out_channels, bias=True)
        else:
            self.conv = nn.Identity()
        self.mode = None if up.mode == "transpose" else "nearest" if up.mode == "nearest" else LINEAR_MODE[layers.dims]
        self.scale = tuple(float(s) for s in up.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)  # (N, C_up, *S)
        if self.mode is None:
            return x  # the transposed conv has upsampled
        corners = None if self.mode == "nearest" else False
        return F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=corners)  # (N, C_up, *S * scale)

    def extra_repr(self) -> str:
        return f"mode={self.mode or 'transpose'}, scale={self.scale}"


class DecoderLevel(nn.Module):
    def __init__(self, level: ir.DecoderLevel, layers: LayerFactory, checkpointing: bool):
        super().__init__()
        self.up = Upsample(level.up, layers)
        self.lateral = Block(level.lateral, layers) if level.lateral else None
        self.blocks = CheckpointedStage(*(Block(block, layers) for block in level.blocks), checkpointing=checkpointing)
        self.aux = Block(level.aux, layers) if level.aux else None

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None, size: list[int]) -> torch.Tensor:
        x = _crop(self.up(x), size)  # (N, C_up, *size): size is the skip's, or the input's at the last level
        if skip is not None:  # fuse "concat": [skip, x] (MONAI's order: skip first); "add": lateral(skip) + x
            x = torch.cat([skip, x], dim=1) if self.lateral is None else self.lateral(skip) + x
        return self.blocks(x)  # (N, C_out, *size)


class UNetDecoder(nn.Module):
    """Feature maps (finest first, as ``Network.forward_pyramid`` gives them) -> (N, num_classes, *input size).
    With deep-supervision heads, in training: [output, each head's output at the input's size, finest first]."""

    def __init__(self, plan: ir.Plan, layers: LayerFactory):
        super().__init__()
        decoder = plan.decoder
        self.levels = nn.ModuleList(DecoderLevel(level, layers, plan.checkpointing) for level in decoder.levels)
        self.skips = tuple(None if level.skip is None else plan.features.index(level.skip) for level in decoder.levels)
        self.head = Block(decoder.head, layers)

    def forward(self, maps: list[torch.Tensor], size: list[int]) -> torch.Tensor | list[torch.Tensor]:
        x = maps[-1]  # the bottleneck: the deepest level
        aux: list[torch.Tensor] = []
        for level, index in zip(self.levels, self.skips):
            skip = None if index is None else maps[index]
            x = level(x, skip, size if skip is None else skip.shape[2:])
            if level.aux is not None and self.training:
                aux.insert(0, F.interpolate(level.aux(x), size=size, mode="nearest"))  # finest first
        out = self.head(_crop(x, size))  # (N, num_classes, *size)
        if aux:
            return [out] + aux
        return out


@torch.fx.wrap  # one node of a torch.fx graph: the sizes are known when the graph runs
def _crop(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """The first ``size`` positions of each spatial axis: what the encoder's rounding up added lies past the end."""
    for axis, n in enumerate(size):
        x = x.narrow(2 + axis, 0, n)
    return x
