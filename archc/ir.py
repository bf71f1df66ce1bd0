"""The Plan: every number resolved, data only.

A Plan is what lowering produces and what every emitter reads (the torch module, the diagram, the
summary). It has no logic and does not know the spec exists. Per-axis values (kernel, stride,
resolution) are tuples with one entry per spatial axis, so 1D, 2D and 3D read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

Axes = tuple[int, ...]


@dataclass(frozen=True)
class Norm:
    type: str  # "batch" | "group" | "instance" | "layer"
    eps: float
    momentum: float  # batch norm only
    groups: int  # group norm only


@dataclass(frozen=True)
class ConvLayer:
    """conv -> norm -> activation (the stem and the head's 1x1 conv)."""

    path: str  # module path in the emitted model, e.g. "stem"
    in_channels: int
    out_channels: int
    kernel: Axes
    stride: Axes
    activation: str


@dataclass(frozen=True)
class Block:
    """One block of a stage. By ``type``:

    - ``mbconv``: [1x1 expand] -> depthwise kxk -> [SE] -> 1x1 project [+ skip]
    - ``fused_mbconv``: kxk expand -> [SE] -> 1x1 project [+ skip]; without expansion a single kxk conv
    - ``conv``: kxk conv -> norm -> activation
    """

    path: str  # "stages.3.1": stage 3, block 1, the module path in the emitted model
    stage: int
    index: int  # global index among all blocks, 0-based
    type: str  # "mbconv"
    in_channels: int
    mid_channels: int  # after expansion; equal to in_channels when there is no expand conv
    out_channels: int
    kernel: Axes
    stride: Axes
    expand: bool  # whether an expand conv exists (expand ratio > 1)
    se_channels: int  # squeeze width; 0 = no SE
    se_placement: str  # "after_depthwise" | "after_project"
    se_gate: str  # "sigmoid" | "hardsigmoid"
    se_activation: str
    activation: str
    residual: bool  # identity skip (stride 1 and in == out, unless the spec turned it off)
    drop_path: float  # stochastic-depth rate of the skip branch


@dataclass(frozen=True)
class FeatureLevel:
    """Where the feature map of one reduction level ends (for ``features_only`` encoders)."""

    stage: int  # index of the last stage at this level
    path: str  # its last block
    channels: int
    reduction: Axes  # input size / feature size, per axis


@dataclass(frozen=True)
class Stage:
    index: int
    type: str
    expand_ratio: int
    kernel: Axes
    stride: Axes
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Head:
    conv: ConvLayer  # 1x1 conv to the head width
    dropout: float
    num_classes: int  # 0 = no classifier


@dataclass(frozen=True)
class Scaling:
    """How the spec was scaled, for reports: ``phi`` or ``preset`` (or neither) and the multipliers used."""

    phi: float | None
    preset: str | None
    width: float
    depth: float
    resolution: float  # multiplier over the spec's resolution


@dataclass(frozen=True)
class Plan:
    name: str
    dims: int
    in_channels: int
    resolution: Axes  # input size per spatial axis, after scaling
    padding: str  # "symmetric" (k // 2 each side) | "same" (TF, from each input's size at run time)
    norm: Norm
    stem: ConvLayer
    stages: tuple[Stage, ...]
    head: Head
    scaling: Scaling
    features: tuple[FeatureLevel, ...]  # one per reduction level, in order
    checkpointing: bool = False  # recompute each block's activations in backward (training memory)

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(block for stage in self.stages for block in stage.blocks)
