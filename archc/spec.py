"""The spec: pydantic v2 models of what a user writes in YAML, and loading with located errors.

Every model forbids unknown keys and is frozen. Numbers are strict (``stride: "2"`` or ``stride: yes``
is an error, not a silent conversion). A kernel, stride or resolution is one number for every spatial
axis or a list with one per axis; the list's length is checked against ``dims`` when lowering, since
``--dims`` may change it.
"""

from __future__ import annotations

import difflib
import re
import typing
from pathlib import Path as FilePath
from typing import Annotated, Literal, Optional, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Strict,
    Tag,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from .errors import SpecError, shown
from .files import read_bytes
from .ir import Activation, FuseMode, Gate, HeadType, Padding, UpsampleMode
from .kinds.blocks import BLOCK_NAMES, BLOCKS, ROW_FIELDS
from .kinds.decoders import DECODERS
from .kinds.norms import NORM_NAMES
from .regnet import generate as generate_regnet
from .scaling import MAX_BLOCKS, MAX_MULTIPLIER, unknown_preset
from .yaml_source import MAX_BYTES, Path, Source, format_path, read_yaml


def _one_of(*allowed: int):
    def check(value: int) -> int:
        if value not in allowed:
            raise ValueError("expected " + _or_list(allowed))
        return value

    return AfterValidator(check)


def _odd(value: int) -> int:
    if value % 2 == 0:
        raise ValueError("expected an odd kernel size")
    return value


def _per_axis(value):
    """A scalar applies to every spatial axis; it is kept as a 1-tuple and broadcast when lowering.
    ``"3x5"`` / ``"1x3x3"`` is a size per axis, written so it cannot be mistaken for a list of mixed kernels."""
    if isinstance(value, str) and re.fullmatch(r"\d{1,7}(x\d{1,7}){1,2}", value):
        return tuple(int(size) for size in value.split("x"))
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, tuple):
        return value
    return (value,)


def _as_tuple(value):
    return tuple(value) if isinstance(value, list) else value


def _se_ratio(value):
    # null, like "none", false and 0, is no SE: a row's se written as null (YAML's ~, Python's None in an override)
    # reads as "no squeeze-and-excitation", never as "the network's". Leaving the key out gives the network's.
    return 0.0 if value is None or value in ("none", False) else value


def _doc(text: str) -> Field:
    return Field(description=text)


def _per_axis_schema(item: dict) -> WithJsonSchema:
    """The JSON Schema of a per-axis value: one number, or a list of one per spatial axis."""
    return WithJsonSchema({"anyOf": [item, {"type": "array", "items": item, "minItems": 1, "maxItems": 3}]})


MAX_SIZE = 1_000_000  # the largest channel count, resolution, kernel or repeat count a spec may give (B7: 640 and 600)
MAX_PRESETS = 100  # EfficientNet has 8 or 9; `archc validate` lowers every one

PositiveInt = Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE)]
# Strict floats still take ints (1 -> 1.0), never strings; .inf, .nan and 1e400 (read as inf) are refused.
Float = Annotated[float, Strict(), Field(allow_inf_nan=False)]
Fraction = Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False)]
Multiplier = Annotated[float, Strict(), Field(gt=0, le=MAX_MULTIPLIER, allow_inf_nan=False)]
OddSize = Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), AfterValidator(_odd)]
Kernel = Annotated[
    tuple[OddSize, ...],
    BeforeValidator(_per_axis), Field(min_length=1, max_length=3),
    WithJsonSchema({"anyOf": [{"type": "integer", "minimum": 1}, {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 3},
                              {"type": "string", "pattern": "^[0-9]+(x[0-9]+){1,2}$"}]}),
]
Stride = Annotated[
    tuple[Annotated[int, Strict(), _one_of(1, 2)], ...],
    BeforeValidator(_per_axis), Field(min_length=1, max_length=3), _per_axis_schema({"enum": [1, 2]}),
]
Resolution = Annotated[
    tuple[PositiveInt, ...],
    BeforeValidator(_per_axis), Field(min_length=1, max_length=3), _per_axis_schema({"type": "integer", "minimum": 1}),
]


class SpecPart(BaseModel):
    """A part of the spec as written (pydantic): unknown keys refused, frozen, strict types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


NormType = Literal[NORM_NAMES]  # the kinds of archc.kinds.norms


class Norm(SpecPart):
    """The normalisation layer after every convolution."""

    type: Annotated[NormType, _doc(
        "batch; group (GroupNorm with `groups`); instance (affine); layer (LayerNorm over channels at each position)"
    )] = "batch"
    eps: Annotated[float, Strict(), Field(gt=0, lt=1, allow_inf_nan=False), _doc("added to the variance; TF EfficientNet uses 1e-3")] = 1e-5
    momentum: Annotated[float, Strict(), Field(gt=0, le=1, allow_inf_nan=False), _doc(
        "batch norm only: running-statistics update, PyTorch convention (TF's 0.99 is 0.01 here)"
    )] = 0.1
    groups: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("group norm only: number of groups; must divide every width")] = 8


AnySize = Annotated[
    tuple[PositiveInt, ...],
    BeforeValidator(_per_axis), Field(min_length=1, max_length=3), _per_axis_schema({"type": "integer", "minimum": 1}),
]
PoolPadding = Annotated[
    tuple[Annotated[int, Strict(), Field(ge=0, le=MAX_SIZE)], ...],
    BeforeValidator(_per_axis), Field(min_length=1, max_length=3), _per_axis_schema({"type": "integer", "minimum": 0}),
]


def _even_is_patchify(kernel: tuple[int, ...], stride: tuple[int, ...]) -> None:
    """An even kernel has no centre, so symmetric padding cannot keep the map aligned: it is allowed only where it
    equals the stride (a patchify conv, padded 0: ConvNeXt's k4 s4 stem), where the windows tile the input."""
    strides = stride * len(kernel) if len(stride) == 1 else stride
    kernels = kernel * len(strides) if len(kernel) == 1 else kernel
    for k, st in zip(kernels, strides):
        if k % 2 == 0 and k != st:
            raise ValueError(f"kernel {k} with stride {st}: an even kernel is allowed only where it equals the stride (a patchify conv, "
                             "padding 0); use an odd kernel")


class StemLayer(SpecPart):
    """One conv unit of a stem of several (ResNet-D's deep stem: three 3x3 convs; ConvNeXt's patchify conv)."""

    channels: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("output channels, before width scaling")]
    kernel: Annotated[AnySize, _doc("kernel size, one for all axes or one per axis: odd, or even and equal to the stride (a patchify conv, padding 0)")] = (3,)
    stride: Annotated[AnySize, _doc("stride, one for all axes or one per axis")] = (1,)
    bias: Annotated[bool, Strict(), _doc("the conv has a bias (ConvNeXt's patchify conv)")] = False
    norm: Annotated[bool, Strict(), _doc("a norm after the conv")] = True
    activation: Annotated[bool, Strict(), _doc("the network's activation after the norm (ConvNeXt's stem has none)")] = True

    @model_validator(mode="after")
    def _kernel_fits_stride(self):
        _even_is_patchify(self.kernel, self.stride)
        return self


class StemPool(SpecPart):
    """A pooling after the stem's convs (ResNet: max, kernel 3, stride 2, padding 1)."""

    type: Annotated[Literal["max", "avg"], _doc("max or average pooling")] = "max"
    kernel: Annotated[AnySize, _doc("window size, one for all axes or one per axis")] = (3,)
    stride: Annotated[AnySize, _doc("stride, one for all axes or one per axis")] = (2,)
    padding: Annotated[Optional[PoolPadding], _doc("zero padding per side; null: kernel // 2 (ResNet's 1 for a 3 window)")] = None
    ceil_mode: Annotated[bool, Strict(), _doc("round output sizes up (MONAI SENet's stem pool)")] = False
    count_include_pad: Annotated[bool, Strict(), _doc("average pooling: padded zeros count in the mean (torch's default)")] = True


class Stem(SpecPart):
    """The first convolution (conv, norm, activation), or several (``layers``), then an optional pooling (``pool``)."""

    channels: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("output channels, before width scaling")] = 32
    kernel: Annotated[Kernel, _doc("odd kernel size, one for all axes or one per axis")] = (3,)
    stride: Annotated[Stride, _doc("1 or 2, one for all axes or one per axis")] = (2,)
    scale: Annotated[bool, Strict(), _doc(
        "scale the stem width with the network width (EfficientNet: TF, timm, MONAI); false keeps it as written "
        "(EfficientNet-Lite: timm fix_stem=True)"
    )] = True
    layers: Annotated[Optional[tuple[StemLayer, ...]], BeforeValidator(_as_tuple), Field(min_length=1, max_length=8), _doc(
        "the stem's conv units in order, instead of channels/kernel/stride: ResNet-D's deep stem [{channels: 32, stride: 2}, "
        "{channels: 32}, {channels: 64}] (modules stem.conv1, stem.bn1, stem.act1, ...); one layer keeps the names stem.conv, stem.bn, "
        "stem.act; null: one conv of channels, kernel and stride"
    )] = None
    pool: Annotated[Optional[StemPool], _doc("a pooling after the convs (ResNet's max-pool); null: none")] = None

    @model_validator(mode="after")
    def _layers_or_one(self):
        both = sorted({"channels", "kernel", "stride"} & self.model_fields_set)
        if self.layers is not None and both:
            raise ValueError(f"give layers or {', '.join(both)}, not both (layers lists every conv of the stem)")
        return self


class Head(SpecPart):
    """1x1 conv, norm, activation, global average pooling, dropout, linear classifier."""

    type: Annotated[HeadType, _doc(
        "conv: 1x1 conv, norm, activation, then global pooling (EfficientNet); efficient: global pooling first, then the "
        "1x1 conv and the activation on one position (MobileNetV3's efficient last stage); pool: global pooling only, "
        "the classifier reads the last stage (MobileNetV1); norm: global pooling, then the network's norm on the pooled "
        "vector (ConvNeXt: timm NormMlpClassifierHead with head_norm_first false). channels, scale and norm do not apply "
        "to pool and norm"
    )] = "conv"
    norm: Annotated[Optional[bool], Strict(), _doc(
        "a norm after the head's conv; null or left out: yes for conv, no for efficient (MobileNetV3: a bias instead; "
        "MobileNetV4 has one)"
    )] = None
    channels: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("width of the head's 1x1 conv")] = 1280
    scale: Annotated[Literal[True, False, "up"], _doc(
        "true: scale the head width with the network width (EfficientNet: TF, timm, MONAI); false: keep it fixed "
        "(EfficientNetV2, MobileNetV3); up: scale it but never below the written width (TinyNet, MobileNetV2 below 1.0: "
        "max(1280, scaled))"
    )] = True
    dropout: Annotated[Fraction, _doc("dropout before the classifier; a preset may replace it")] = 0.2

    @model_validator(mode="after")
    def _norm_head_has_no_conv(self):
        given = sorted({"channels", "scale", "norm"} & self.model_fields_set) if self.type == "norm" else []
        if given:
            raise ValueError(f"{', '.join(given)} does not apply to a norm head (pooling, the network's norm, the classifier: no conv)")
        return self


class SE(SpecPart):
    """Squeeze-and-excitation: global pool, reduce to a bottleneck, activation, expand, gate."""

    type: Annotated[Literal["se", "eca"], _doc(
        "se: squeeze-and-excitation (two 1x1 convs); eca: efficient channel attention (Wang et al. 2020: a 1D conv across the "
        "channels, its kernel from their number as timm's EcaModule; ratio, relative_to and rounding do not apply)"
    )] = "se"
    ratio: Annotated[Fraction, _doc("squeeze width = max(1, int(reference channels * ratio)); 0 turns SE off")] = 0.25
    placement: Annotated[Literal["after_depthwise", "after_project", "none"], _doc(
        "after the depthwise conv (the paper), after the projection, or nowhere"
    )] = "after_depthwise"
    relative_to: Annotated[Literal["block_input", "expanded"], _doc(
        "the channels the ratio applies to: the block's input (TF, MONAI, torchvision) or its expanded width"
    )] = "block_input"
    rounding: Annotated[Literal["floor", "divisor"], _doc(
        "floor: max(1, int(channels * ratio)) (TF, MONAI, torchvision); divisor: rounded to a multiple of scaling.divisor "
        "as channels are (MobileNetV3, LCNet: timm rd_round_fn=round_channels)"
    )] = "floor"
    gate: Annotated[Gate, _doc("the gating function")] = "sigmoid"
    activation: Annotated[Optional[Activation], _doc("activation inside the squeeze; null or left out: the block's")] = None


def _unambiguous_kernel(value, info: ValidationInfo):
    """``kernel: [3, 5]`` could mean one 3x5 kernel or MixNet's 3x3 and 5x5 kernels over channel groups: a list of
    different sizes, all above 1, is refused and the spellings valid for the spec's dims are offered. Lists like
    [1, 3, 3] (anisotropic 3D) or [3, 5, 5] cannot be mixed kernels (those differ pairwise and have no 1) and keep
    meaning one size per axis."""
    if isinstance(value, list) and len(value) > 1 and all(isinstance(k, int) and k > 1 and k % 2 for k in value) and len(set(value)) == len(value):
        dims = (info.context or {}).get("dims")
        dims = dims if dims in (1, 2, 3) else len(value)
        mixed = f"mixed_kernels: {value} for depthwise kernels over channel groups (MixNet)"
        if dims == 1:  # one axis: a size per axis is one number
            raise ValueError(f"{value} is ambiguous in 1D: write one size (like {value[0]}) for one kernel, or {mixed}")
        if len(value) > dims:
            raise ValueError(f"{value} is ambiguous: a {dims}D kernel has {dims} sizes, so write {mixed}, or one size per axis "
                             f"(like {'x'.join(map(str, value[-dims:]))})")
        per_axis = [value[0]] * (dims - len(value)) + value  # [3, 5] in 3D: 3x3x5 (depth, height, width)
        raise ValueError(f"{value} is ambiguous: write one size per axis ({dims}D: {_AXES[dims]}), like "
                         f"{'x'.join(map(str, per_axis))}, for one kernel, or {mixed}")
    return value


_AXES = {2: "height, width", 3: "depth, height, width"}


BlockType = Literal[BLOCK_NAMES]  # the kinds of archc.kinds.blocks


class Stage(SpecPart):
    """One row of the stage table (the paper's Table 1). A row is a stage, or continues the one above (``continues``)."""

    block: Annotated[BlockType, _doc("; ".join(f"{kind.name}: {kind.summary}" for kind in BLOCKS.values()))] = "mbconv"
    expand: Annotated[float, Strict(), Field(ge=1, le=MAX_SIZE, allow_inf_nan=False), _doc(
        "expansion ratio of the inverted bottleneck (1: no expand conv). A whole ratio multiplies the input width exactly; "
        "a fractional one (2.5, 4.5, 3.67) is rounded to a multiple of scaling.divisor (timm make_divisible)"
    )] = 6
    channels: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("output channels, before width scaling")]
    repeats: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("blocks of this row, before depth scaling")] = 1
    continues: Annotated[bool, Strict(), _doc(
        "true: this row's blocks continue the stage of the row above instead of starting a new one (one stage of several "
        "block kinds: MobileNetV3, MixNet, MobileNetV4). Depth scaling then scales the stage's total and shares it out "
        "over its rows, the last rows first (timm _scale_stage_depth)"
    )] = False
    scale_depth: Annotated[bool, Strict(), _doc(
        "false: this stage keeps its repeats under depth scaling (EfficientNet-Lite exempts its first and last "
        "stage: timm fix_first_last=True). A per-row flag rather than a first/last option: it stands in the row it "
        "changes, reads as a table column, and any stage may use it"
    )] = True
    stride: Annotated[Stride, _doc("stride of the row's first block: 1 or 2, per axis or one for all")] = (1,)
    kernel: Annotated[Optional[Kernel], BeforeValidator(_unambiguous_kernel), _doc(
        "odd kernel size of the spatial conv: one for all axes, or one per axis ([1, 3, 3] or 1x3x3; a list of different "
        "sizes above 1, like [3, 5], is refused as ambiguous). uib: the middle depthwise conv, null for none; other blocks "
        "refuse null unless mixed_kernels is given"
    )] = (3,)
    mixed_kernels: Annotated[Optional[Annotated[tuple[OddSize, ...], BeforeValidator(_as_tuple), Field(min_length=2, max_length=8)]], _doc(
        "depthwise kernels over channel groups instead of one kernel (MixNet's MixConv: [3, 5, 7] splits the channels in "
        "three, the remainder to the first); each kernel is the same on every axis. Leave kernel out (or null). null or left "
        "out: one kernel"
    )] = None
    start_kernel: Annotated[Optional[Kernel], BeforeValidator(_unambiguous_kernel), _doc(
        "uib only: odd kernel of a depthwise conv before the expansion (MobileNetV4's ExtraDW and ConvNeXt-like blocks); "
        "null: none"
    )] = None
    mid: Annotated[Optional[int], Strict(), Field(gt=0, le=MAX_SIZE), _doc(
        "bottleneck only: the inner width of its convs, before width scaling (ResNet-50: a quarter of channels; ResNeXt 32x4d "
        "and wide_resnet50_2: a half); required by a bottleneck row, null for every other kind"
    )] = None
    shortcut: Annotated[Optional[Literal["conv", "conv_bias", "avg"]], _doc(
        "basic and bottleneck: the skip where the shape changes: conv, a 1x1 conv with the stride and a norm; conv_bias, the "
        "same with a bias on the conv (MONAI's ResNet: shortcut_type B, bias_downsample); avg (ResNet-D), an average pool "
        "with the stride, then the 1x1 conv and norm; null or left out: conv"
    )] = None
    group_size: Annotated[Optional[int], Strict(), Field(gt=0, le=MAX_SIZE), _doc(
        "channels per group of the spatial conv; null or left out: depthwise (1) for mbconv, ds, dsa and uib, dense for "
        "fused_mbconv and conv"
    )] = None
    expand_groups: Annotated[int, Strict(), Field(gt=0, le=64), _doc(
        "the 1x1 expansion as this many convs over channel groups (MixNet's grouped pointwise convs, timm's a1.1)"
    )] = 1
    project_groups: Annotated[int, Strict(), Field(gt=0, le=64), _doc(
        "the 1x1 projection as this many convs over channel groups (MixNet, timm's p1.1)"
    )] = 1
    expand_from: Annotated[Optional[int], Strict(), Field(gt=0, le=MAX_SIZE), _doc(
        "mbconv and fused_mbconv: the width (before width scaling) the expansion ratio multiplies, instead of the block's "
        "input (EfficientNet-EdgeTPU's first stage, timm's fc option); null or left out: the block's input"
    )] = None
    expand_conv: Annotated[Optional[bool], Strict(), _doc(
        "true: keep the block's full structure at expand 1: mbconv keeps its 1x1 expansion conv (FBNet, timm's ir at e1), "
        "fused_mbconv its 1x1 projection (EfficientNetV2-rw, timm's er at e1). null or left out: dropped at expand 1"
    )] = None
    se: Annotated[Optional[Fraction], BeforeValidator(_se_ratio), _doc(
        "SE ratio for this row; 0, none or null turn SE off for the row; left out: the network's se.ratio"
    )] = None
    se_gate: Annotated[Optional[Gate], _doc("SE gate for this row; null or left out: se.gate")] = None
    activation: Annotated[Optional[Activation], _doc("activation for this row; null or left out: the network's")] = None
    residual: Annotated[Optional[bool], Strict(), _doc(
        "identity skip where shapes allow (stride 1, same channels). null or left out: yes, except conv and dsa blocks; "
        "true gives a conv block one (timm's skip), false takes it away (timm's noskip)"
    )] = None
    layer_scale: Annotated[Optional[float], Strict(), Field(gt=0, le=MAX_MULTIPLIER, allow_inf_nan=False), _doc(
        "uib and convnext only: a learned per-channel scale of the residual branch, initialised to this value (MobileNetV4, "
        "ConvNeXt V1's 1e-6); null: none"
    )] = None
    grn: Annotated[bool, Strict(), _doc(
        "convnext only: a global response norm after the MLP's activation (ConvNeXt-V2)"
    )] = False

    @model_validator(mode="after")
    def _fits_its_block(self):
        given = self.model_fields_set
        kind = BLOCKS[self.block]
        block = kind.name
        if self.mixed_kernels is not None:
            if not kind.mixed_kernels:
                raise ValueError(f"mixed_kernels needs a depthwise block ({_names(k.name for k in BLOCKS.values() if k.mixed_kernels)}), not {block}")
            if "kernel" in given and self.kernel is not None:
                raise ValueError("give kernel or mixed_kernels, not both")
        elif self.kernel is None and not kind.kernel_optional:
            raise ValueError(f"kernel: a {block} block needs a kernel size (null means no middle depthwise conv, for "
                             f"{_names(k.name for k in BLOCKS.values() if k.kernel_optional)} only)")
        wrong = [name for name in ROW_FIELDS if name in given and getattr(self, name) not in (None, 1, False) and name not in kind.fields]
        if wrong:
            name = wrong[0]
            raise ValueError(f"{name} does not apply to a {block} block (only to {', '.join(k.name for k in BLOCKS.values() if name in k.fields)})")
        if not kind.expands and "expand" in given and self.expand != 1:
            raise ValueError(f"a {block} block has no expansion: expand must be 1 (or use mbconv)")
        problem = kind.check(self)
        if problem:
            raise ValueError(problem)
        return self


_unknown = set(ROW_FIELDS) - set(Stage.model_fields)
if _unknown:  # a kind's optional field must be one a row can write
    raise TypeError(f"archc.kinds.blocks.ROW_FIELDS names {sorted(_unknown)}, which are no stage-row fields")


def _names(names) -> str:
    names = list(names)
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


class Preset(SpecPart):
    """One released model size, e.g. EfficientNet-B3."""

    width: Annotated[Multiplier, _doc("channel multiplier")]
    depth: Annotated[Multiplier, _doc("repeats multiplier")]
    resolution: Annotated[Optional[Resolution], _doc(
        "input size, one for every spatial axis or one per axis; archc does not warn about it (a published size, like B2's 260); "
        "null or left out: the spec's resolution"
    )] = None
    dropout: Annotated[Optional[Fraction], _doc("classifier dropout; null or left out: head.dropout")] = None


class Scaling(SpecPart):
    """Compound scaling (depth alpha**phi, width beta**phi, resolution gamma**phi) and named presets."""

    alpha: Annotated[Multiplier, _doc("depth base (paper, section 3.3)")] = 1.2
    beta: Annotated[Multiplier, _doc("width base")] = 1.1
    gamma: Annotated[Union[Annotated[Multiplier, Tag("one")], Annotated[tuple[Multiplier, ...], BeforeValidator(_as_tuple), Field(min_length=2, max_length=3), Tag("axes")]],
                     Discriminator(lambda v: "axes" if isinstance(v, (list, tuple)) else "one"),
                     WithJsonSchema({"anyOf": [{"type": "number", "exclusiveMinimum": 0},
                                               {"type": "array", "items": {"type": "number", "exclusiveMinimum": 0}, "minItems": 2, "maxItems": 3}]}),
                     _doc("resolution base, one for every axis or one per axis; 1 holds an axis fixed (the slices of a thin-slab scan: [1, 1.15, 1.15])")] = 1.15
    divisor: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("channels are rounded to multiples of this")] = 8
    round_limit: Annotated[float, Strict(), Field(ge=0, le=1, allow_inf_nan=False), _doc("rounding never goes below this share of channels * width")] = 0.9
    depth_rounding: Annotated[Literal["ceil", "round"], _doc("how scaled repeats are rounded (TF: ceil)")] = "ceil"
    resolution_rounding: Annotated[Literal["round", "ceil", "floor", "stride"], _doc(
        "how a scaled resolution is rounded; stride: to the nearest multiple of each axis's total stride (every strided conv divides it)"
    )] = "round"
    phi: Annotated[Optional[Float], _doc("compound coefficient used when the caller gives neither phi nor preset; null: unscaled (or preset)")] = None
    preset: Annotated[Optional[str], _doc("preset used when the caller gives neither phi nor preset; null: none")] = None
    presets: Annotated[dict[str, Preset], _doc(f"named multipliers, e.g. the released b0..b7 (at most {MAX_PRESETS})")] = {}

    @field_validator("presets", mode="before")
    @classmethod
    def _few_presets(cls, value):
        if isinstance(value, dict) and len(value) > MAX_PRESETS:  # checked before validating a thousand of them
            raise ValueError(f"{len(value)} presets; a spec may define at most {MAX_PRESETS}")
        return value

    @model_validator(mode="after")
    def _phi_or_preset(self):
        if self.phi is not None and self.preset is not None:
            raise ValueError("give phi or preset, not both")
        if self.preset is not None and self.preset not in self.presets:
            raise ValueError(unknown_preset(self.preset, self.presets))
        return self


def _decoder_type(value: str) -> str:
    # The registry is read as each spec is checked, so a kind registered after import is accepted like archc's own.
    if value not in DECODERS:
        raise ValueError("expected " + _or_list(map(repr, DECODERS)))
    return value


class Decoder(SpecPart):
    """A decoder over the encoder's feature levels (a U-Net by default): the network then segments, `num_classes`
    output channels at the input's size (docs/segmentation.md). Each type is a record of archc.kinds.decoders."""

    type: Annotated[str, Strict(), AfterValidator(_decoder_type), WithJsonSchema({"type": "string", "enum": list(DECODERS)}), _doc(
        "; ".join(kind.summary for kind in DECODERS.values())
    )] = "unet"
    width: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc(
        "width of the finest level, doubling per level deeper: 16 gives 256, 128, 64, 32, 16 for EfficientNet's five "
        "levels (MONAI FlexibleUNet's and SMP's default decoder_channels); not scaled with the network's width"
    )] = 16
    channels: Annotated[Optional[list[Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE)]]], Field(min_length=1), _doc(
        "instead of width: the output width of every level, deepest first; one per level (the encoder's feature levels "
        "but the deepest, plus one back to the input's size when the finest level is reduced: archc info lists them); "
        "null or left out: from width"
    )] = None
    block: Annotated[BlockType, _doc("the block at each level: conv (conv, norm, activation: a U-Net's two convs with repeats 2), mbconv or fused_mbconv")] = "conv"
    repeats: Annotated[int, Strict(), Field(gt=0, le=MAX_BLOCKS), _doc(
        f"blocks per level; the network, encoder and decoder, has at most {MAX_BLOCKS:,} blocks"
    )] = 2
    expand: Annotated[int, Strict(), Field(ge=1, le=MAX_SIZE), _doc("mbconv and fused_mbconv blocks: expansion ratio")] = 6
    kernel: Annotated[Kernel, _doc("odd kernel size of the blocks' spatial convs, one for all axes or one per axis")] = (3,)
    upsample: Annotated[UpsampleMode, _doc(
        "nearest or linear: interpolation (after a 1x1 conv where the width halves); transpose: a transposed conv. "
        "The factor per axis is the ratio of the two levels' reductions, so anisotropic encoders work"
    )] = "nearest"
    fuse: Annotated[FuseMode, _doc("how a skip joins: concat (along channels, skip first) or add (after a 1x1 conv and norm of the skip)")] = "concat"
    activation: Annotated[Optional[Activation], _doc("activation of the decoder's blocks; null or left out: the network's")] = None
    deep_supervision: Annotated[int, Strict(), Field(ge=0, le=MAX_SIZE), _doc(
        "extra 1x1 heads on this many levels before the last; in training the module returns [output, head outputs "
        "finest first], each at the input's size; in evaluation the output alone"
    )] = 0

    @model_validator(mode="after")
    def _fields_of_its_kind(self):
        kind = DECODERS[self.type]
        wrong = sorted(self.model_fields_set - kind.fields - {"type"})
        if wrong:
            raise ValueError(f"{wrong[0]} does not apply to a {self.type} decoder (its fields: {', '.join(sorted(kind.fields)) or 'none'})")
        return self


# Each decoder kind reads fields of this section: one naming a field it does not have fails at import, with its name.
for _kind in DECODERS.values():
    if _kind.fields - set(Decoder.model_fields):
        raise SpecError(f"decoder kind {_kind.name!r} reads {', '.join(sorted(_kind.fields - set(Decoder.model_fields)))}, not a decoder field")


class RegNet(SpecPart):
    """RegNet's design space (Radosavovic et al. 2020): five numbers that generate the stage table. Reading the spec turns
    them into ordinary bottleneck rows (3x3 grouped conv, stride 2, projection shortcut), so `archc info`, diagrams,
    `--set stages[i]...` and scaling see plain rows; give it instead of `stages`."""

    w0: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("initial width, a multiple of 8")]
    wa: Annotated[float, Strict(), Field(ge=0, le=MAX_SIZE, allow_inf_nan=False), _doc("slope of the linear width rule")]
    wm: Annotated[float, Strict(), Field(gt=1, le=MAX_SIZE, allow_inf_nan=False), _doc("width multiplier between stages (> 1)")]
    depth: Annotated[int, Strict(), Field(gt=0, le=MAX_BLOCKS), _doc("blocks in all")]
    group_width: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("channels per group of the 3x3 conv")]
    bottle_ratio: Annotated[float, Strict(), Field(gt=0, le=MAX_SIZE, allow_inf_nan=False), _doc("inner width / block width")] = 1.0
    rounding: Annotated[Literal["pycls", "torchvision"], _doc(
        "how each inner width becomes a multiple of its group width: pycls (timm's default, the nearest multiple) or torchvision "
        "(never more than 10% below: timm's *_tv names)"
    )] = "pycls"


def _printable(text: str) -> str:
    # A name travels to terminals and diagram files: an escape sequence or a NUL in it would act there.
    bad = next((c for c in text if not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"expected printable text; character U+{ord(bad):04X} is a control or format character")
    return text


class Spec(SpecPart):
    """A whole network, as written."""

    @model_validator(mode="after")
    def _first_row_starts_a_stage(self):
        if self.stages and self.stages[0].continues:
            raise ValueError("stages[0].continues: the first row has no stage above to continue")
        return self

    @model_validator(mode="after")
    def _aliases_name_presets(self):
        unknown = {alias: preset for alias, preset in self.aliases.items() if preset is not None and preset not in self.scaling.presets}
        if unknown:
            alias, preset = next(iter(unknown.items()))
            raise ValueError(f"alias {alias!r}: {unknown_preset(preset, self.scaling.presets)}")
        return self

    name: Annotated[str, Strict(), Field(min_length=1, max_length=200), AfterValidator(_printable), _doc(
        "the network's name (printable text: it is echoed to terminals and drawn in diagrams)"
    )]
    dims: Annotated[int, Strict(), _one_of(1, 2, 3), WithJsonSchema({"enum": [1, 2, 3]}), _doc(
        "spatial dimensions: 1 signals, 2 images, 3 volumes"
    )] = 2
    in_channels: Annotated[int, Strict(), Field(gt=0, le=MAX_SIZE), _doc("input channels")] = 3
    num_classes: Annotated[int, Strict(), Field(ge=0, le=MAX_SIZE), _doc("classes; 0: no classifier, pooled features out")] = 1000
    resolution: Annotated[Resolution, _doc("input size, one for all axes or one per axis (before scaling)")] = (224,)
    activation: Annotated[Activation, _doc("activation after every norm except the projections")] = "silu"
    padding: Annotated[Padding, _doc(
        "symmetric: k//2 on each side; same: TF's asymmetric 'same' padding, computed from each input at run time"
    )] = "symmetric"
    norm: Annotated[Norm, _doc("normalisation after every conv")] = Norm()
    stem: Annotated[Stem, _doc("the first conv")] = Stem()
    head: Annotated[Head, _doc("the last conv and the classifier")] = Head()
    stochastic_depth: Annotated[float, Strict(), Field(ge=0, lt=1, allow_inf_nan=False), _doc(
        "drop-path rate, linear in the global block index i of the encoder's N blocks (stochastic_depth_schedule says how)"
    )] = 0.0
    stochastic_depth_schedule: Annotated[Literal["efficientnet", "linspace"], _doc(
        "efficientnet: block i drops with rate * i / N (TF's drop_connect_rate; timm's EfficientNet and MobileNet, MONAI, "
        "torchvision's EfficientNet); linspace: rate * i / (N - 1), the last block at the full rate (torch.linspace(0, rate, N): "
        "timm's ResNet, RegNet and ConvNeXt, torchvision's ConvNeXt)"
    )] = "efficientnet"
    se: Annotated[SE, _doc("squeeze-and-excitation, for every block unless a row overrides it")] = SE()
    stages: Annotated[list[Stage], Field(min_length=1), _doc(
        "the stage table: a list of rows, or {columns: [...], rows: [[...], ...]} like the paper's Table 1"
    )]
    scaling: Annotated[Scaling, _doc("compound scaling coefficients, rounding rules and presets")] = Scaling()
    regnet: Annotated[Optional[RegNet], _doc(
        "instead of writing stages: RegNet's generator, which fills stages with the rows it gives (stages must then be left out); "
        "null: the stages are written out"
    )] = None
    aliases: Annotated[dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")], Optional[str]], _doc(
        "other names of this network, each for one of its presets (null: the spec as written), e.g. timm's "
        "efficientnet_b3: b3; a shipped spec is loaded by any of them (archc list shows them)"
    )] = {}
    zero_init_last: Annotated[bool, Strict(), _doc(
        "initialise the last norm of each residual block's branch to weight 0, so every block starts as its shortcut "
        "(Goyal et al. 2017; timm's ResNet and RegNet do by default, zero_init_last=True)"
    )] = False
    checkpointing: Annotated[bool, Strict(), _doc(
        "activation checkpointing: each block recomputes its activations in backward (less memory, more time)"
    )] = False
    decoder: Annotated[Optional[Decoder], _doc(
        "a U-Net decoder: the network segments (num_classes output channels at the input's size) instead of classifying; "
        "head is then unused. `--set decoder.type=unet` turns any spec into a U-Net with the defaults; null or left out: "
        "no decoder (a classifier)"
    )] = None

    _source: Source = PrivateAttr(default=Source(file="<spec>"))

    @property
    def source(self) -> Source:
        return self._source


# --------------------------------------------------------------------------- loading


def load_spec(path: str | FilePath, overrides: Overrides | None = None) -> Spec:
    """Read and validate a spec file. Raises :class:`SpecError` with file and line."""
    return parse_spec(read_bytes(path, SpecError, "spec file", limit=MAX_BYTES), file=str(path), overrides=overrides)


def parse_spec(text: str | bytes, file: str = "<spec>", overrides: Overrides | None = None) -> Spec:
    """Validate spec text. ``file`` names it in error messages. ``overrides`` replace values before validation:
    ``{"stages[3].se": "none", "norm.type": "group"}``, or CLI-style ``["stages[3].se=none", ...]``."""
    raw, source = read_yaml(text, file)
    if not isinstance(raw, dict):
        raise SpecError(
            f"a spec is a mapping of keys (name, stages, ...), got {_yaml_kind(raw)}", file=file, line=source.line_of(())
        )
    raw = _expand_stage_table(_regnet_stages(raw, source), source)
    for path, value, origin in _parse_overrides(overrides or {}):
        _apply_override(raw, path, value, origin)
        source.origins[path] = origin
        source.applied[format_path(path)] = value
    try:
        spec = Spec.model_validate(raw, context={"dims": raw.get("dims", Spec.model_fields["dims"].default)})  # for the hints
    except ValidationError as exc:
        raise _spec_error(exc, source) from None
    spec._source = source
    return spec


Overrides = typing.Union[dict, list, tuple]
_PATH_PART = re.compile(r"([A-Za-z_]\w*)|\[(\d+)\]")


def parse_override_path(text: str) -> Path:
    """``stages[3].se`` -> ``("stages", 3, "se")``."""
    parts: list = []
    for piece in text.split("."):
        matches = list(_PATH_PART.finditer(piece))
        if not piece or "".join(m.group(0) for m in matches) != piece or (matches and matches[0].group(1) is None):
            raise SpecError(f"{text!r} is not a field path (like stages[3].se or norm.type)", file=f"override {text!r}")
        parts += [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in matches]
    return tuple(parts)


def _parse_overrides(overrides: Overrides) -> list[tuple[Path, object, str]]:
    """(path, value, how to name it in errors) per override."""
    parsed = []
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            parsed.append((parse_override_path(str(key)), value, f"overrides[{str(key)!r}]"))
        return parsed
    for item in overrides:
        key, sep, text = str(item).partition("=")
        origin = f"--set {_show_text(str(item))}"
        if not sep or not key.strip():
            raise SpecError("expected PATH=VALUE, like stages[3].se=none", file=origin)
        try:
            value, _ = read_yaml(text, origin) if text.strip() else (None, None)  # YAML: 3, none, [1, 2, 2], true
        except SpecError as exc:
            raise SpecError(exc.message, file=origin) from None  # one line of the user's own: no line number
        parsed.append((parse_override_path(key.strip()), value, origin))
    return parsed


def _apply_override(raw: dict, path: Path, value: object, origin: str) -> None:
    node: object = raw
    for depth, part in enumerate(path[:-1]):
        nxt = path[depth + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                size = f"has {len(node)} rows" if isinstance(node, list) else "is not a list"
                raise SpecError(f"{format_path(path[:depth])} {size}", file=origin, path=format_path(path[: depth + 1]))
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise SpecError("is not a mapping", file=origin, path=format_path(path[:depth]))
            if part not in node or node[part] is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = path[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise SpecError("no such row", file=origin, path=format_path(path))
    elif not isinstance(node, dict):
        raise SpecError("is not a mapping", file=origin, path=format_path(path[:-1]))
    node[last] = value


def _regnet_stages(raw: dict, source: Source) -> dict:
    """Write the rows of a ``regnet:`` section into ``stages`` (timm regnet.py's stages: one bottleneck row per generated
    stage, stride 2, a projection shortcut), each row's location the section's, so errors and overrides name plain rows."""
    section = raw.get("regnet")
    if section is None:
        return raw

    def fail(message: str, path: Path) -> SpecError:
        return SpecError(message, file=source.file, line=source.line_of(path), path=format_path(path))

    if "stages" in raw:
        raise fail("give regnet or stages, not both: regnet generates the stage table", ("stages",))
    try:
        section = RegNet.model_validate(section)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ("regnet", *error["loc"])
        raise fail(f"{error['msg']}", where) from None
    try:
        stages = generate_regnet(section.w0, section.wa, section.wm, section.depth, section.group_width,
                                 bottle_ratio=section.bottle_ratio, rounding=section.rounding)
    except SpecError as exc:
        raise fail(exc.message, ("regnet",)) from None
    rows = [{"block": "bottleneck", "kernel": 3, "stride": 2, "channels": width, "mid": int(width * section.bottle_ratio),
             "group_size": group, "repeats": depth, "shortcut": "conv"}
            for width, depth, group in zip(stages.widths, stages.depths, stages.group_widths)]
    for r, row in enumerate(rows):
        for key in (("stages", r), *(("stages", r, column) for column in row)):
            source.lines[key] = source.line_of(("regnet",))
    return {**raw, "stages": rows}


def _expand_stage_table(raw: dict, source: Source) -> dict:
    """Turn the compact form ``stages: {columns: [...], rows: [[...], ...]}`` into one mapping per row,
    carrying each cell's line over to the path pydantic will report (``stages[3].stride``)."""
    table = raw.get("stages")
    if not isinstance(table, dict):
        return raw

    def fail(message: str, path: Path) -> SpecError:
        return SpecError(message, file=source.file, line=source.line_of(path), path=format_path(path))

    unknown = set(table) - {"columns", "rows"}
    if unknown:
        key = sorted(unknown)[0]
        raise fail(f"unknown key {key!r}; a stage table has 'columns' and 'rows'", ("stages", key))
    columns, rows = table.get("columns"), table.get("rows")
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise fail("expected a list of column names (e.g. [block, expand, channels, repeats, stride, kernel])", ("stages", "columns"))
    for i, column in enumerate(columns):
        if column not in Stage.model_fields:
            raise fail(_unknown_key_message(column, list(Stage.model_fields)), ("stages", "columns", i))
        if column in columns[:i]:
            raise fail(f"column {column!r} is listed twice", ("stages", "columns", i))
    if not isinstance(rows, list):
        raise fail("expected a list of rows, one list of values per stage", ("stages", "rows"))
    expanded = []
    for r, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != len(columns):
            got = f"{len(row)} values" if isinstance(row, list) else _yaml_kind(row)
            raise fail(f"got {got}, expected {len(columns)} values ({', '.join(columns)})", ("stages", "rows", r))
        expanded.append(dict(zip(columns, row)))
        source.lines[("stages", r)] = source.line_of(("stages", "rows", r))
        for c, column in enumerate(columns):
            source.lines[("stages", r, column)] = source.line_of(("stages", "rows", r, c))
            for k in range(3):  # per-axis lists inside a cell
                if ("stages", "rows", r, c, k) in source.lines:
                    source.lines[("stages", r, column, k)] = source.lines[("stages", "rows", r, c, k)]
    return {**raw, "stages": expanded}


# --------------------------------------------------------------------------- error messages


def _spec_error(exc: ValidationError, source: Source) -> SpecError:
    """One message per pydantic error, each with file, line, field path, bad value and what is allowed."""
    errors = []
    seen = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if error["type"] == "missing":
            path, message = loc, f"missing required key {loc[-1]!r}"
        elif error["type"] == "extra_forbidden":
            path, message = loc, _unknown_key_message(loc[-1], _allowed_keys(loc[:-1]))
        else:
            path = loc if loc in source.lines or loc in source.origins else source.known_prefix(loc)
            path = path or loc
            # A check across several keys (a model validator) gets the whole mapping as input: don't echo it.
            got = "" if isinstance(error["input"], dict) else f"got {shown(error['input'])}, "
            message = got + _expected(error)
        key = (path, message)
        if key in seen:
            continue
        seen.add(key)
        file, line = source.locate(loc)
        errors.append(SpecError(message, file=file, line=line, path=format_path(path) or None))
    errors.sort(key=lambda e: e.line or 0)
    first = errors[0]
    first.also = tuple(errors[1:])
    return first


_PER_AXIS_FIELDS = ("kernel", "start_kernel", "stride", "resolution")


def _expected(error: dict) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "literal_error":
        return f"expected {ctx['expected']}"
    if kind in ("too_long", "too_short"):  # pydantic's "at most 3 items after validation", in the spec's words
        field = next((part for part in reversed(error["loc"]) if isinstance(part, str)), "")
        if field in _PER_AXIS_FIELDS:
            return "expected one number for every axis, or one per axis (at most 3: depth, height, width)"
        bound = f"at most {ctx['max_length']}" if kind == "too_long" else f"at least {ctx['min_length']}"
        return f"expected {bound} value{'' if bound.endswith(' 1') else 's'}"
    message = error["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix):]
    if message.startswith("Input should be "):
        return "expected " + message[len("Input should be "):]
    return message[0].lower() + message[1:]


def _unknown_key_message(key: object, allowed: list[str]) -> str:
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        message += f" (did you mean {close[0]!r}?)"
    if allowed:
        message += f"; allowed: {', '.join(allowed)}"
    return message


def _allowed_keys(loc: Path) -> list[str]:
    """Field names of the model found at ``loc`` (walking the Spec's annotations)."""
    annotation: object = Spec
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(part, int):
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
        elif isinstance(annotation, type) and issubclass(annotation, BaseModel) and part in annotation.model_fields:
            annotation = annotation.model_fields[part].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        else:
            return []
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _unwrap(annotation: object) -> object:
    while typing.get_origin(annotation) in (Annotated, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = args[0]
    return annotation


def _show_text(text: str) -> str:
    return text if len(text) <= 80 else text[:72] + "..."


def _or_list(items) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + (" or " + items[-1] if items else "")


def _yaml_kind(value: object) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "nothing" if value is None else type(value).__name__
    )
