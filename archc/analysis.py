"""Shapes, parameters and MACs computed from the Plan alone, without building a module.

MACs count the multiply-accumulates of convolutions and linear layers (what the EfficientNet paper calls
FLOPs, and half of what ``torch.utils.flop_counter`` reports); norms, activations and pooling are free.
Counts are per sample. Parameters are trainable tensors; BatchNorm running statistics are buffers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import ir


@dataclass(frozen=True)
class Cost:
    """One part of the network: ``stem``, a block (``stages.3.1``), ``head`` or ``classifier``."""

    path: str
    params: int
    macs: int
    shape: tuple[int, ...]  # output shape of one sample: (C, *spatial)


@dataclass(frozen=True)
class StageRow:
    """One line of the summary table."""

    name: str  # "stem", "1".."N" (stages counted from 1, as in the paper), "head", "classifier"
    block: str
    repeats: int
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    se_channels: int
    shape: tuple[int, ...]
    params: int
    macs: int


@dataclass(frozen=True)
class Report:
    plan: ir.Plan
    input_shape: tuple[int, ...]  # (C, *spatial)
    parts: tuple[Cost, ...]
    rows: tuple[StageRow, ...]

    @property
    def params(self) -> int:
        return sum(p.params for p in self.parts)

    @property
    def macs(self) -> int:
        return sum(p.macs for p in self.parts)

    def shape_of(self, path: str) -> tuple[int, ...]:
        return next(p.shape for p in self.parts if p.path == path)


def conv_output(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> tuple[int, ...]:
    """Output size of a convolution with symmetric ``k // 2`` padding, per axis."""
    return tuple((n + 2 * (k // 2) - k) // s + 1 for n, k, s in zip(size, kernel, stride))


def _conv(in_c: int, out_c: int, kernel, out_size, groups: int = 1, bias: bool = False) -> tuple[int, int]:
    weights = out_c * (in_c // groups) * math.prod(kernel)
    return weights + (out_c if bias else 0), weights * math.prod(out_size)


def _conv_norm(in_c: int, out_c: int, kernel, out_size, groups: int = 1) -> tuple[int, int]:
    params, macs = _conv(in_c, out_c, kernel, out_size, groups)
    return params + 2 * out_c, macs  # norm: weight and bias


def _layer(layer: ir.ConvLayer, size) -> tuple[Cost, tuple[int, ...]]:
    out = conv_output(size, layer.kernel, layer.stride)
    params, macs = _conv_norm(layer.in_channels, layer.out_channels, layer.kernel, out)
    return Cost(layer.path, params, macs, (layer.out_channels, *out)), out


def _block(block: ir.Block, size) -> tuple[Cost, tuple[int, ...]]:
    out = conv_output(size, block.kernel, block.stride)
    params = macs = 0
    parts = []
    if block.expand:
        parts.append(_conv_norm(block.in_channels, block.mid_channels, (1,), size))
    parts.append(_conv_norm(block.mid_channels, block.mid_channels, block.kernel, out, groups=block.mid_channels))
    if block.se_channels:
        c = block.mid_channels if block.se_placement == "after_depthwise" else block.out_channels
        parts.append(_conv(c, block.se_channels, (1,), (1,), bias=True))  # on the pooled 1x1 map
        parts.append(_conv(block.se_channels, c, (1,), (1,), bias=True))
    parts.append(_conv_norm(block.mid_channels, block.out_channels, (1,), out))
    for p, m in parts:
        params, macs = params + p, macs + m
    return Cost(block.path, params, macs, (block.out_channels, *out)), out


def analyze(plan: ir.Plan) -> Report:
    """Per-part and per-stage shapes, parameters and MACs of ``plan`` at its resolution."""
    size = plan.resolution
    stem, size = _layer(plan.stem, size)
    parts, rows = [stem], [_row("stem", "conv", 1, plan.stem, stem)]
    for stage in plan.stages:
        costs = []
        for block in stage.blocks:
            cost, size = _block(block, size)
            costs.append(cost)
        parts += costs
        first = stage.blocks[0]
        rows.append(
            StageRow(
                name=str(stage.index + 1),
                block=f"{_block_name(stage.type)}{stage.expand_ratio}",
                repeats=len(stage.blocks),
                in_channels=first.in_channels,
                out_channels=first.out_channels,
                kernel=stage.kernel,
                stride=stage.stride,
                se_channels=first.se_channels,
                shape=costs[-1].shape,
                params=sum(c.params for c in costs),
                macs=sum(c.macs for c in costs),
            )
        )
    head, size = _layer(plan.head.conv, size)
    parts.append(head)
    rows.append(_row("head", "conv", 1, plan.head.conv, head))
    if plan.head.num_classes:
        c_in, c_out = plan.head.conv.out_channels, plan.head.num_classes
        classifier = Cost("classifier", c_in * c_out + c_out, c_in * c_out, (c_out,))
        parts.append(classifier)
        rows.append(StageRow("classifier", "linear", 1, c_in, c_out, (), (), 0, (c_out,), classifier.params, classifier.macs))
    return Report(plan, (plan.in_channels, *plan.resolution), tuple(parts), tuple(rows))


def _row(name: str, block: str, repeats: int, layer: ir.ConvLayer, cost: Cost) -> StageRow:
    return StageRow(name, block, repeats, layer.in_channels, layer.out_channels, layer.kernel, layer.stride, 0, cost.shape, cost.params, cost.macs)


def _block_name(block_type: str) -> str:
    return {"mbconv": "MBConv"}.get(block_type, block_type)
