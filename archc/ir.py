"""The Plan: every number resolved, data only.

A Plan is what lowering produces and what every emitter reads (the torch module, the diagram, the
summary). It has no logic and does not know the spec exists. Per-axis values (kernel, stride,
resolution) are tuples with one entry per spatial axis, so 1D, 2D and 3D read the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Union, get_args

Axes = tuple[int, ...]

# The closed sets, defined once: the spec's fields take their values from these, and the emitters' tables are
# keyed by them (tests/test_emit.py checks that the activation and gate tables cover their sets exactly); block kinds and norms
# are records in archc.kinds.
Activation = Literal["silu", "relu", "relu6", "hardswish", "gelu", "mish", "identity"]
Gate = Literal["sigmoid", "hardsigmoid"]
HeadType = Literal["conv", "efficient", "pool", "norm"]
Padding = Literal["symmetric", "same"]
UpsampleMode = Literal["nearest", "linear", "transpose"]
FuseMode = Literal["concat", "add"]
StageGenerator = Literal["regnet"]
ACTIVATIONS: tuple[str, ...] = get_args(Activation)
GATES: tuple[str, ...] = get_args(Gate)


@dataclass(frozen=True)
class Norm:
    type: str  # a name in archc.kinds.norms.NORMS
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
    activation: Activation
    norm: bool = True  # False: no norm, and the conv has a bias (MobileNetV3's efficient head)

    @property
    def unit(self) -> "ConvUnit":
        """The same layer as a conv unit (modules ``conv``, ``bn``, ``act``), as analysis and BN folding read it."""
        return ConvUnit("conv", "bn" if self.norm else None, "act", self.in_channels, self.out_channels, self.kernel, self.stride, 1,
                        self.activation, bias=not self.norm)


@dataclass(frozen=True)
class ConvUnit:
    """conv -> [norm] -> [activation], one unit of a block (as timm's ConvNormAct). The names are the module
    names in the emitted block, so state_dict keys: ``conv_dw``, ``bn2``, ``act2``."""

    conv: str  # the conv's module name, which is also the unit's role: conv_pw, conv_dw, conv_pwl, conv_exp, conv
    norm: str | None  # the norm's module name; None: no norm
    act: str | None  # the activation's module name; None: no activation (a linear projection)
    in_channels: int
    out_channels: int
    kernel: Axes
    stride: Axes
    groups: int  # in_channels for a depthwise conv
    activation: Activation | None  # None exactly when act is None
    bias: bool = False
    # Mixed kernels (MixNet, Tan & Le 2019): the channels split into len(kernels) groups, each its own conv with its own
    # kernel (submodules ``0``, ``1``, ...; ``kernel`` is then the largest). Empty: one conv. With groups == in_channels
    # every part is depthwise; with groups == 1 every part is dense (MixNet's split 1x1 convs).
    kernels: tuple[Axes, ...] = ()

    @property
    def name(self) -> str:
        """The layer's name in its block (every layer kind has one): the conv's."""
        return self.conv

    @property
    def folds(self) -> tuple[tuple[str, str], ...]:
        """(conv, norm) module names BN folding merges: this unit's, if it has a norm."""
        return ((self.conv, self.norm),) if self.norm else ()

    @property
    def parts(self) -> tuple[tuple[int, int, Axes, int], ...]:
        """(in, out, kernel, groups) of each conv this unit is: one, or one per channel split of a mixed unit."""
        if not self.kernels:
            return ((self.in_channels, self.out_channels, self.kernel, self.groups),)
        ins, outs = split_channels(self.in_channels, len(self.kernels)), split_channels(self.out_channels, len(self.kernels))
        depthwise = self.groups == self.in_channels
        return tuple((i, o, k, i if depthwise else 1) for i, o, k in zip(ins, outs, self.kernels))


def split_channels(channels: int, parts: int) -> tuple[int, ...]:
    """Equal shares, the remainder to the first (timm ``_split_channels``, TF MixNet ``_split_channels``)."""
    shares = [channels // parts] * parts
    shares[0] += channels - sum(shares)
    return tuple(shares)


@dataclass(frozen=True)
class SqueezeExcite:
    """Global average, 1x1 reduce, activation, 1x1 expand, gate, then the product with the input."""

    name: str  # module name: "se"
    channels: int  # of the map it gates
    squeeze: int  # bottleneck width
    activation: Activation
    gate: Gate
    folds = ()  # nothing for BN folding


@dataclass(frozen=True)
class ECA:
    """Efficient channel attention (Wang et al. 2020, ECA-Net): global average, a 1D conv of ``kernel`` across the
    channels (no bias), the gate, then the product with the input. timm ``EcaModule``: key ``se.conv.weight``."""

    name: str  # module name: "se" (timm's attribute for any attention layer)
    channels: int
    kernel: int  # odd
    gate: Gate = "sigmoid"
    folds = ()  # nothing for BN folding


def eca_kernel(channels: int, gamma: int = 2, beta: int = 1) -> int:
    """ECA-Net's kernel from the channels: ``t = int(|log2(C) + beta| / gamma)``, the next odd number, at least 3 (timm EcaModule)."""
    t = int(abs(math.log(channels, 2) + beta) / gamma)
    return max(t if t % 2 else t + 1, 3)


@dataclass(frozen=True)
class LayerScale:
    """A learned per-channel scale of the residual branch (Touvron et al. 2021; MobileNetV4's UIB)."""

    name: str  # module name: "layer_scale"
    channels: int
    init: float  # initial value of every scale
    folds = ()  # nothing for BN folding


@dataclass(frozen=True)
class Pool:
    """A local max or average pooling, with no parameters (ResNet's stem max-pool: kernel 3, stride 2, padding 1;
    the average-pool shortcut of ResNet-D: kernel 2, ceil_mode, count_include_pad False)."""

    name: str  # module name: "pool" in a stem
    kind: Literal["max", "avg"]
    kernel: Axes
    stride: Axes
    padding: Axes
    ceil_mode: bool = False
    count_include_pad: bool = True  # average pooling only: padded zeros count in the mean (torch's default)
    channels: int = 0  # of the map it pools (for reports)
    folds = ()  # nothing for BN folding

    def output(self, size: Axes) -> Axes:
        """Output size per axis (torch's pooling rule; with ceil_mode a window must start inside the input or its left padding)."""
        sizes = []
        for n, k, s, p in zip(size, self.kernel, self.stride, self.padding):
            span = n + 2 * p - k
            out = (-(-span // s) if self.ceil_mode else span // s) + 1
            if self.ceil_mode and (out - 1) * s >= n + p:
                out -= 1
            sizes.append(out)
        return tuple(sizes)


@dataclass(frozen=True)
class NormLayer:
    """A norm that does not follow a conv: the Plan's norm on ``channels`` (ConvNeXt's downsample normalises before its
    conv). It cannot fold into a conv: the conv comes after it."""

    name: str  # module name: "norm"
    channels: int
    folds = ()  # nothing for BN folding


@dataclass(frozen=True)
class GRN:
    """Global response norm (ConvNeXt-V2, Woo et al. 2023): ``x + weight * (x * Nx) + bias`` with ``Gx`` the L2 norm of
    each channel over every spatial axis and ``Nx = Gx / (mean over channels of Gx + eps)``; weight and bias start at 0."""

    name: str  # module name: "grn" (timm ``mlp.grn``)
    channels: int
    eps: float = 1e-6
    folds = ()  # nothing for BN folding


@dataclass(frozen=True)
class ChannelPad:
    """Zero channels appended after the map's own, up to ``out_channels``: the parameter-free skip of He et al. 2015's
    option A, as MONAI's ResNet builds it (shortcut_type "A", ``_downsample_basic_block``: a stride-s average pool of
    kernel 1, which subsamples, then the zeros). Its input keeps every channel and position it had."""

    name: str  # module name in the skip: "1" after the subsampling pool
    in_channels: int
    out_channels: int  # at least in_channels
    folds = ()  # nothing for BN folding


def conv_padding(kernel: Axes) -> Axes:
    """Symmetric padding per axis: ``k // 2`` for an odd kernel; 0 for an even one, which lowering allows only where the
    kernel equals the stride (a patchify conv: ConvNeXt's stem, k4 s4), so the windows tile the input."""
    return tuple(k // 2 if k % 2 else 0 for k in kernel)


Layer = Union[ConvUnit, SqueezeExcite, ECA, LayerScale, Pool, NormLayer, GRN, ChannelPad]
# The closed set of layer kinds. Each has ``name`` (its module name in the block) and ``folds``; each consumer's
# table keyed by these classes is checked against this tuple at import (archc.kinds.layers.table).
LAYERS: tuple[type, ...] = (ConvUnit, SqueezeExcite, ECA, LayerScale, Pool, NormLayer, GRN, ChannelPad)
SHORTCUT = "downsample"  # the module holding a block's shortcut layers


@dataclass(frozen=True)
class Block:
    """One block of a stage: its layers in order, then the skip. Which layers a kind of block has (``type``) is its
    record's recipe in :mod:`archc.kinds.blocks`; every consumer reads the layers, not the kind."""

    path: str  # "stages.3.1": stage 3, block 1, the module path in the emitted model
    stage: int
    index: int  # global index among all blocks, 0-based
    type: str  # its kind: a name in archc.kinds.blocks.BLOCKS, which holds its recipe, title, colour and peers' names
    in_channels: int
    out_channels: int
    kernel: Axes
    stride: Axes
    expand_ratio: float  # the spec's ratio (1: no expand conv, unless the spec kept it)
    layers: tuple[Layer, ...]  # what the block computes, in order: every consumer reads this
    residual: bool  # a skip: identity (stride 1 and in == out, unless the spec turned it off), or through ``shortcut``
    drop_path: float  # stochastic-depth rate of the skip branch
    # The skip's own layers, under module ``downsample`` (SHORTCUT) as timm and torchvision name ResNet's projection:
    # () is an identity skip. Run on the block's input; their output is added to the layers'.
    shortcut: tuple[Layer, ...] = ()
    activation_after: Activation | None = None  # an activation after the add (ResNet), module ``act_after``; None: none

    @property
    def se_channels(self) -> int:
        """Squeeze width of the block's SE; 0 without one."""
        return next((layer.squeeze for layer in self.layers if isinstance(layer, SqueezeExcite)), 0)

    @property
    def convs(self) -> tuple[ConvUnit, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, ConvUnit))

    @property
    def mixed_kernels(self) -> tuple[Axes, ...]:
        """The kernels of the block's mixed depthwise conv (MixNet), one per channel group; () without one."""
        return next((unit.kernels for unit in self.convs if unit.kernels and unit.groups > 1), ())


@dataclass(frozen=True)
class Stem:
    """The network's first layers: conv units in order, then an optional pooling (ResNet's max-pool). One unit is
    modules ``stem.conv``/``stem.bn``/``stem.act`` (EfficientNet's stem); several are ``conv1``/``bn1``/``act1``,
    ``conv2``, ... (ResNet-D's deep stem); the pool is ``stem.pool``. A unit may have a bias and no norm or activation
    (ConvNeXt's patchify conv)."""

    units: tuple[ConvUnit, ...]
    pool: Pool | None = None
    path: str = "stem"

    @property
    def in_channels(self) -> int:
        return self.units[0].in_channels

    @property
    def out_channels(self) -> int:
        return self.units[-1].out_channels

    @property
    def kernel(self) -> Axes:
        """The first conv's kernel."""
        return self.units[0].kernel

    @property
    def stride(self) -> Axes:
        """Input size over the size of the convs' map (before the pool), per axis: timm taps a ResNet's stem there."""
        return tuple(math.prod(unit.stride[axis] for unit in self.units) for axis in range(len(self.units[0].stride)))

    @property
    def reduction(self) -> Axes:
        """Input size over the stem's output size, per axis: the convs' stride times the pool's."""
        pool = self.pool.stride if self.pool else (1,) * len(self.stride)
        return tuple(s * p for s, p in zip(self.stride, pool))

    @property
    def activation(self) -> Activation | None:
        """The last unit's activation (None: the stem ends in a norm or a conv)."""
        return self.units[-1].activation

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.units + ((self.pool,) if self.pool else ())


@dataclass(frozen=True)
class FeatureLevel:
    """Where the feature map of one reduction level ends (for ``features_only`` encoders)."""

    stage: int  # index of the last stage at this level; -1: the stem's map
    path: str  # its last block
    channels: int
    reduction: Axes  # input size / feature size, per axis


@dataclass(frozen=True)
class Stage:
    """One stage: its blocks, from one or more rows of the spec's table (MobileNetV3's stages mix expansions)."""

    index: int
    blocks: tuple[Block, ...]

    @property
    def stride(self) -> Axes:
        return self.blocks[0].stride


@dataclass(frozen=True)
class Head:
    """``conv``: 1x1 conv, norm, activation, then global pooling (EfficientNet). ``efficient``: global pooling, then
    the 1x1 conv and its activation, on one position (MobileNetV3: with a bias and no norm; MobileNetV4: with a norm).
    ``pool``: global pooling only (MobileNetV1). ``norm``: global pooling, then the Plan's norm on the pooled vector
    (ConvNeXt: timm ``NormMlpClassifierHead``, module ``head.norm``). Then dropout and the linear classifier."""

    conv: ConvLayer | None  # 1x1 conv to the head width; None for ``pool`` and ``norm``
    dropout: float
    num_classes: int  # 0 = no classifier
    type: HeadType = "conv"
    in_channels: int = 0  # the last stage's width, which the head reads

    @property
    def out_channels(self) -> int:
        """The width the classifier reads (timm's ``head_hidden_size``)."""
        return self.conv.out_channels if self.conv else self.in_channels


@dataclass(frozen=True)
class Scaling:
    """How the spec was scaled, for reports: ``phi`` or ``preset`` (or neither) and the multipliers used."""

    phi: float | None
    preset: str | None
    width: float
    depth: float
    resolution: float | tuple[float, ...]  # multiplier over the spec's resolution (one per axis when gamma is)


@dataclass(frozen=True)
class Plan:
    """A network with every number resolved: the start here for anything that reads one.

    ``stem`` (conv units and a pool) -> ``stages`` (each a tuple of :class:`Block`, each block its ordered ``layers``) ->
    ``head`` (pooling and classifier), or no head and the feature maps of ``features`` (``features_only``), or a
    U-Net ``decoder`` over those maps. Channels, kernels, strides and sizes are final: scaling (``scaling`` says
    how) and every spec default were applied by lowering, so a consumer never consults the spec. Per-axis values
    are tuples of ``dims`` entries. ``blocks`` lists every encoder block in order; each block's ``path`` is its
    module path in the emitted network, so its parameters' state_dict keys.
    """

    name: str
    dims: int
    in_channels: int
    resolution: Axes  # input size per spatial axis, after scaling
    padding: Padding  # "symmetric" (k // 2 each side) | "same" (TF, from each input's size at run time)
    norm: Norm
    stem: Stem
    stages: tuple[Stage, ...]
    head: Head | None  # None: a features encoder (``features_only``), which returns one map per level
    scaling: Scaling
    features: tuple[FeatureLevel, ...]  # one per reduction level, in order
    checkpointing: bool = False  # recompute each block's activations in backward (training memory)
    # Initialisation: each residual block's last norm starts with weight 0, so the block starts as its shortcut
    # (timm's ResNet and RegNet, zero_init_last=True).
    zero_init_last: bool = False
    decoder: Decoder | None = None  # a U-Net decoder over ``features`` (then ``head`` is None): the module segments
    # The input size is one a person wrote (the spec's own, or a request's), not one archc computed from phi or a
    # preset: only such a size draws a warning when a stride does not divide it.
    resolution_given: bool = True
    # What wrote the stage table, where the spec did not write its rows: "regnet", the spec's ``regnet:`` section
    # (archc.regnet). Its bottleneck rows look like a ResNet's, but the peers build such a network with their RegNet
    # class, whose keys (timm ``s1.b1.conv1.conv``) importing weights must name. None: the rows as the spec wrote them.
    stage_generator: StageGenerator | None = None

    @property
    def output(self) -> Literal["classifier", "features", "segmentation"]:
        """What the module returns: class scores (pooled features with 0 classes), the feature maps, or a map of
        ``decoder.num_classes`` channels at the input's size."""
        if self.decoder is not None:
            return "segmentation"
        return "features" if self.head is None else "classifier"

    @property
    def blocks(self) -> tuple[Block, ...]:
        return tuple(block for stage in self.stages for block in stage.blocks)


@dataclass(frozen=True)
class Upsample:
    """How a decoder level brings the deeper map to its skip's size: ``transpose``, a transposed conv of kernel and
    stride ``scale``; ``nearest``/``linear``, a 1x1 conv where the width changes, then interpolation by ``scale``.
    Either way the result is cropped to the skip's size (the encoder rounds sizes up, so it is never smaller)."""

    mode: UpsampleMode
    scale: Axes  # per axis: the deeper level's reduction over this level's
    in_channels: int
    out_channels: int  # half the input where a skip is joined (MONAI BasicUNet / FlexibleUNet ``halves``)

    @property
    def conv(self) -> ConvUnit | None:
        """The conv the upsampling has (module ``up.conv``, with a bias as MONAI's), or None: plain interpolation."""
        if self.mode == "transpose":
            return ConvUnit("conv", None, None, self.in_channels, self.out_channels, self.scale, self.scale, 1, None, bias=True)
        if self.in_channels != self.out_channels:
            ones = (1,) * len(self.scale)
            return ConvUnit("conv", None, None, self.in_channels, self.out_channels, ones, ones, 1, None, bias=True)
        return None


@dataclass(frozen=True)
class DecoderLevel:
    """One level of a U-Net decoder: upsample the deeper map, join the encoder's map of this level (the skip),
    then the level's blocks. The last level of an encoder whose finest map is reduced has no skip: it brings the
    map back to the input's size."""

    index: int  # 0: the deepest
    path: str  # "decoder.levels.0", the module path
    skip: FeatureLevel | None  # the encoder level joined here
    up: Upsample
    lateral: Block | None  # fuse "add": a 1x1 conv and norm taking the skip to the upsampled width (``<path>.lateral``)
    blocks: tuple[Block, ...]  # paths "<path>.blocks.<j>"
    aux: Block | None  # deep supervision: a 1x1 conv (with a bias) to the classes from this level's output (``<path>.aux``)
    reduction: Axes  # of this level's output, per axis (all 1 at the input's size)

    @property
    def out_channels(self) -> int:
        return self.blocks[-1].out_channels


@dataclass(frozen=True)
class Decoder:
    """A U-Net decoder: the deepest feature level is the bottleneck; each level upsamples and joins the next
    finer one; the head maps the last level to ``num_classes`` channels at the input's size. The single-conv
    parts (lateral, aux, head) are Blocks of one conv unit, so every consumer treats them as any block."""

    fuse: FuseMode  # concat: [skip, upsampled] along channels (MONAI's order); add: lateral(skip) + upsampled
    levels: tuple[DecoderLevel, ...]
    head: Block  # one kxk conv with a bias, no norm or activation (MONAI SegmentationHead): ``decoder.head``
    num_classes: int
    type: str = "unet"  # its kind: the record (archc.kinds.decoders) every consumer builds, counts and draws it by

    @property
    def blocks(self) -> tuple[Block, ...]:
        """Every block of the decoder in the order it runs, its head last (deep-supervision heads after their level)."""
        parts = []
        for level in self.levels:
            parts += ([level.lateral] if level.lateral else []) + list(level.blocks) + ([level.aux] if level.aux else [])
        return (*parts, self.head)
