"""Shapes, parameters, MACs, receptive field and activation memory computed from the Plan alone.

MACs count the multiply-accumulates of convolutions and linear layers (what the EfficientNet paper calls
FLOPs, and half of what ``torch.utils.flop_counter`` reports); norms, activations and pooling are free.
Parameters are trainable tensors (norm running statistics are buffers). Everything is per sample.

Activation memory is what a training step keeps for backward: every conv, norm and activation output,
each SE product and residual sum (measured with ``torch.autograd.graph.saved_tensors_hooks``: PyTorch keeps
an activation's output apart from its input even when the module is in-place), except the output of a batch
norm followed by an activation whose backward reads its input, which ``emit.fusion.NormAct`` recomputes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

from . import ir
from .formatting import axes as format_axes
from .formatting import shape as format_shape
from .kinds.blocks import BLOCKS
from .kinds.decoders import decoder_kind
from .kinds.layers import table
from .kinds.norms import NORMS

# The activations after which a batch norm's output is recomputed in backward, not kept (emit.fusion.INPUT_BACKWARD;
# tests/test_fusion.py checks the two agree).
RECOMPUTED_NORM_OUTPUT = frozenset({"silu", "hardswish", "mish", "gelu"})


@dataclass(frozen=True)
class Cost:
    """One part of the network: ``stem``, a block (``stages.3.1``), ``head`` or ``classifier``."""

    path: str
    params: int
    macs: int
    activations: int  # elements kept for backward in training
    shape: tuple[int, ...]  # output shape of one sample: (C, *spatial)
    receptive_field: tuple[int, ...]  # per axis, in input pixels, at the part's output


@dataclass(frozen=True)
class StageRow:
    """One line of the summary table."""

    name: str  # "stem", "0".."N-1" (stages numbered as in ``stages[i]`` and module names), "head", "classifier"
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
    activations: int
    receptive_field: tuple[int, ...]


@dataclass(frozen=True)
class LayerCost:
    """One module of the emitted network that computes something: a conv, norm, activation, SE gate or linear."""

    path: str  # its module path: "stages.3.1.conv_dw", "stages.3.1.se.conv_reduce", "classifier"
    type: str  # conv | norm | act | gate | linear | pool | pad | upsample (a U-Net decoder's interpolation, or its transposed conv's output)
    detail: str  # what kind: "depthwise", "batch", "silu", "sigmoid", ...
    in_channels: int
    out_channels: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    groups: int
    shape: tuple[int, ...]  # output of one sample: (C, *spatial)
    params: int
    macs: int


@dataclass(frozen=True)
class Report:
    plan: ir.Plan
    input_shape: tuple[int, ...]  # (C, *spatial)
    parts: tuple[Cost, ...]
    rows: tuple[StageRow, ...]
    warnings: tuple[str, ...]  # resolution problems found on the way: collapsing axes, strides that do not divide
    collapses: tuple[str, ...] = ()  # those of the warnings where an axis fell below a kernel, or to 1 too early
    layers: tuple[LayerCost, ...] = ()  # every module that computes, in order

    @property
    def collapsed(self) -> bool:
        return bool(self.collapses)

    @property
    def params(self) -> int:
        return sum(p.params for p in self.parts)

    @property
    def macs(self) -> int:
        return sum(p.macs for p in self.parts)

    @property
    def activations(self) -> int:
        return sum(p.activations for p in self.parts)

    def to_dict(self) -> dict:
        """The report as plain JSON values: what ``archc info --json`` prints."""
        plan = self.plan
        scaling = plan.scaling
        return {
            "name": plan.name,
            "dims": plan.dims,
            "input_shape": list(self.input_shape),
            "padding": plan.padding,
            "scaling": {"phi": scaling.phi, "preset": scaling.preset, "width": scaling.width, "depth": scaling.depth},
            "params": self.params,
            "macs": self.macs,
            "activation_bytes": {"fp32": self.activation_bytes(4), "bf16": self.activation_bytes(2)},
            "stages": [
                {"name": r.name, "block": r.block, "repeats": r.repeats, "in_channels": r.in_channels, "out_channels": r.out_channels,
                 "kernel": list(r.kernel), "stride": list(r.stride), "se_channels": r.se_channels, "output_shape": list(r.shape),
                 "params": r.params, "macs": r.macs, "activations": r.activations, "receptive_field": list(r.receptive_field)}
                for r in self.rows
            ],
            "blocks": [
                {"path": p.path, "params": p.params, "macs": p.macs, "activations": p.activations, "output_shape": list(p.shape),
                 "receptive_field": list(p.receptive_field)}
                for p in self.parts
            ],
            "layers": [
                {"path": layer.path, "type": layer.type, "detail": layer.detail, "in_channels": layer.in_channels,
                 "out_channels": layer.out_channels, "kernel": list(layer.kernel), "stride": list(layer.stride), "groups": layer.groups,
                 "output_shape": list(layer.shape), "params": layer.params, "macs": layer.macs}
                for layer in self.layers
            ],
            "features": [{"stage": f.stage, "module": f.path, "channels": f.channels, "reduction": list(f.reduction)} for f in plan.features],
            "warnings": list(self.warnings),
        }

    def activation_bytes(self, bytes_per_element: int = 4) -> int:
        """Training activation memory of one sample (4: float32, 2: bfloat16/float16)."""
        return self.activations * bytes_per_element

    # Lookups by name go through indexes built once: a diagram asks for every block's and stage's figures, and a
    # scan per question made drawing ten thousand blocks quadratic (minutes). Built from the end, so that a name
    # given twice finds its first entry, as the scan did.
    @functools.cached_property
    def _parts_at(self) -> dict[str, int]:
        return {p.path: i for i, p in reversed(list(enumerate(self.parts)))}

    @functools.cached_property
    def _rows_by_name(self) -> dict[str, StageRow]:
        return {row.name: row for row in reversed(self.rows)}

    @functools.cached_property
    def _layers_by_path(self) -> dict[str, LayerCost]:
        return {layer.path: layer for layer in reversed(self.layers)}

    def part(self, path: str) -> Cost:
        return self.parts[self._parts_at[path]]

    def part_before(self, path: str) -> Cost:
        """The part computed just before ``path``: what feeds it."""
        return self.parts[self._parts_at[path] - 1]

    def shape_of(self, path: str) -> tuple[int, ...]:
        return self.part(path).shape

    def row(self, name: str) -> StageRow:
        return self._rows_by_name[name]

    def layer(self, path: str) -> LayerCost:
        return self._layers_by_path[path]


def conv_output(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...], padding: str = "symmetric") -> tuple[int, ...]:
    """Output size per axis: symmetric ``k // 2`` padding, or TF "same" (``ceil(n / stride)``)."""
    if padding == "same":
        return tuple(-(-n // s) for n, s in zip(size, stride))
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, ir.conv_padding(kernel)))


class _Walker:
    """Follows the tensor through the network, accumulating costs per part."""

    def __init__(self, plan: ir.Plan):
        self.plan = plan
        self.size = plan.resolution
        self.rf = (1,) * plan.dims  # receptive field
        self.jump = (1,) * plan.dims  # distance in input pixels between neighbouring outputs
        self.warnings: list[str] = []
        self.collapses: list[str] = []
        self.rounded: dict[str, set[int]] = {}  # where a stride met a size it does not divide -> the axes
        self.layers: list[LayerCost] = []

    def conv(self, conv: ir.ConvUnit, where: str, prefix: str) -> tuple[int, int, int]:
        """(params, macs, activation elements) of one conv [+ norm] [+ act], each recorded as a layer of module
        path ``prefix.<name>``; advances the size."""
        self._check(conv, where)
        out = conv_output(self.size, conv.kernel, conv.stride, self.plan.padding)
        self.rf = tuple(r + (k - 1) * j for r, k, j in zip(self.rf, conv.kernel, self.jump))
        self.jump = tuple(j * s for j, s in zip(self.jump, conv.stride))
        self.size = out
        shape = (conv.out_channels, *out)
        # One layer per conv module: the unit's own, or each part of a mixed conv (MixNet: ``conv_dw.0``, ``conv_dw.1``, ...)
        modules = [(f"{prefix}.{conv.conv}", conv)] if not conv.kernels else [
            (f"{prefix}.{conv.conv}.{i}", dataclasses.replace(conv, in_channels=c_in, out_channels=c_out, kernel=kernel, groups=groups, kernels=()))
            for i, (c_in, c_out, kernel, groups) in enumerate(conv.parts)]
        weights, norm_params = 0, NORMS[self.plan.norm.type].params(conv.out_channels)
        for path, part in modules:
            w = part.out_channels * (part.in_channels // part.groups) * math.prod(part.kernel)
            weights += w
            self._layer(path, "conv", _conv_kind(part), part, (part.out_channels, *out), w + (part.out_channels if part.bias else 0), w * math.prod(out))
        if conv.norm:
            self._layer(f"{prefix}.{conv.norm}", "norm", self.plan.norm.type, conv, shape, norm_params, 0)
        if conv.act:
            self._layer(f"{prefix}.{conv.act}", "act", conv.activation, conv, shape, 0, 0)
        params = weights + (conv.out_channels if conv.bias else 0) + (norm_params if conv.norm else 0)
        recomputed = self.plan.norm.type == "batch" and conv.norm and conv.act and conv.activation in RECOMPUTED_NORM_OUTPUT
        kept = math.prod(shape) * (1 + bool(conv.norm) + bool(conv.act) - bool(recomputed))  # conv, norm, activation outputs
        return params, weights * math.prod(out), kept

    def _layer(self, path: str, kind: str, detail: str, conv: ir.ConvUnit, shape, params: int, macs: int) -> None:
        pointwise = kind != "conv"
        self.layers.append(LayerCost(path, kind, detail, conv.out_channels if pointwise else conv.in_channels, conv.out_channels,
                                     () if pointwise else conv.kernel, () if pointwise else conv.stride,
                                     1 if pointwise else conv.groups, shape, params, macs))

    def collapse(self, warning: str) -> None:
        self.warnings.append(warning)
        self.collapses.append(warning)

    def se(self, se: ir.SqueezeExcite, prefix: str) -> tuple[int, int, int]:
        """SE on a map of ``channels``: two 1x1 convs on the pooled vector, then the gated product."""
        c, squeeze, ones = se.channels, se.squeeze, (1,) * self.plan.dims
        path = f"{prefix}.{se.name}"
        self.layers += [
            LayerCost(f"{path}.conv_reduce", "conv", "dense", c, squeeze, ones, ones, 1, (squeeze, *ones), c * squeeze + squeeze, c * squeeze),
            LayerCost(f"{path}.act", "act", se.activation, squeeze, squeeze, (), (), 1, (squeeze, *ones), 0, 0),
            LayerCost(f"{path}.conv_expand", "conv", "dense", squeeze, c, ones, ones, 1, (c, *ones), squeeze * c + c, squeeze * c),
            LayerCost(f"{path}.gate", "gate", se.gate, c, c, (), (), 1, (c, *ones), 0, 0),  # then x * gate keeps x's shape
        ]
        params = c * squeeze + squeeze + squeeze * c + c
        pooled = c + 2 * squeeze + 2 * c  # mean, reduce, act, expand, gate outputs
        return params, 2 * c * squeeze, pooled + c * math.prod(self.size)

    def eca(self, eca: ir.ECA, prefix: str) -> tuple[int, int, int]:
        """ECA on a map of ``channels``: a 1D conv of ``kernel`` over the pooled channels (C * k MACs), then the gated product."""
        c, path = eca.channels, f"{prefix}.{eca.name}"
        self.layers += [
            LayerCost(f"{path}.conv", "conv", "dense", 1, 1, (eca.kernel,), (1,), 1, (1, c), eca.kernel, c * eca.kernel),  # the channels as a sequence
            LayerCost(f"{path}.gate", "gate", eca.gate, c, c, (), (), 1, (1, c), 0, 0),
        ]
        return eca.kernel, c * eca.kernel, 3 * c + c * math.prod(self.size)  # mean, conv, gate outputs; the gated input

    def scale(self, scale: ir.LayerScale, prefix: str) -> tuple[int, int, int]:
        shape = (scale.channels, *self.size)
        self.layers.append(LayerCost(f"{prefix}.{scale.name}", "scale", "layer scale", scale.channels, scale.channels, (), (), 1, shape, scale.channels, 0))
        return scale.channels, 0, math.prod(shape)

    def norm(self, norm: ir.NormLayer, prefix: str) -> tuple[int, int, int]:
        """A norm on its own (not after a conv): its parameters, no MACs (FlopCounterMode counts none)."""
        shape, params = (norm.channels, *self.size), NORMS[self.plan.norm.type].params(norm.channels)
        self.layers.append(LayerCost(f"{prefix}.{norm.name}", "norm", self.plan.norm.type, norm.channels, norm.channels, (), (), 1, shape, params, 0))
        return params, 0, math.prod(shape)

    def grn(self, grn: ir.GRN, prefix: str) -> tuple[int, int, int]:
        shape = (grn.channels, *self.size)
        self.layers.append(LayerCost(f"{prefix}.{grn.name}", "scale", "grn", grn.channels, grn.channels, (), (), 1, shape, 2 * grn.channels, 0))
        return 2 * grn.channels, 0, math.prod(shape)
    def local_pool(self, pool: ir.Pool, prefix: str) -> tuple[int, int, int]:
        """A max or average pooling: no parameters and no MACs (FlopCounterMode counts none); advances the size.
        Kept for backward: a max-pool its indices' worth of output, an average pool nothing."""
        channels = pool.channels
        self.rf = tuple(r + (k - 1) * j for r, k, j in zip(self.rf, pool.kernel, self.jump))
        self.jump = tuple(j * s for j, s in zip(self.jump, pool.stride))
        self.size = pool.output(self.size)
        shape = (channels, *self.size)
        self.layers.append(LayerCost(f"{prefix}.{pool.name}", "pool", f"{pool.kind} pool", channels, channels, pool.kernel, pool.stride, 1, shape, 0, 0))
        return 0, 0, math.prod(shape) if pool.kind == "max" else 0

    def channel_pad(self, pad: ir.ChannelPad, prefix: str) -> tuple[int, int, int]:
        """Zero channels appended (ResNet's option-A skip): no parameters, no MACs, nothing kept for backward; the size stays."""
        shape = (pad.out_channels, *self.size)
        self.layers.append(LayerCost(f"{prefix}.{pad.name}", "pad", "zero channels", pad.in_channels, pad.out_channels, (), (), 1, shape, 0, 0))
        return 0, 0, 0

    def pool(self) -> None:
        """Global average pooling: every spatial axis to 1 (the efficient head's conv runs after it)."""
        self.size = (1,) * self.plan.dims

    def _check(self, conv: ir.ConvUnit, where: str) -> None:
        small = [axis for axis, (n, k) in enumerate(zip(self.size, conv.kernel)) if 1 < k and n < k]
        if small:
            self.collapse(f"{where}: the {format_shape(self.size)} input is smaller than the {format_shape(conv.kernel)} kernel on {_list(small)}")
        odd = [axis for axis, (n, s) in enumerate(zip(self.size, conv.stride)) if s > 1 and n % s]
        if odd:
            self.rounded.setdefault(where, set()).update(odd)

    def stride_warning(self) -> str | None:
        """One warning for all the maps that round a stride: the cause is the input size, so it says which to use."""
        if not self.rounded:
            return None
        axes = sorted(set().union(*self.rounded.values()))
        total = total_stride(self.plan)
        choices = {axis: _nearest_multiples(self.plan.resolution[axis], total[axis]) for axis in axes}
        hint = next(iter(choices.values())) if len(set(choices.values())) == 1 else "; ".join(f"axis {a}: {c}" for a, c in choices.items())
        return (f"the {format_shape(self.plan.resolution)} input is not a multiple of the total stride {format_shape(total)} on {_list(axes)}, "
                f"so {', '.join(self.rounded)} round the size up; use a multiple ({hint})")


def analyze(plan: ir.Plan) -> Report:
    """Per-part and per-stage figures of ``plan`` at its resolution, with warnings about the resolution."""
    walk = _Walker(plan)
    stem = plan.stem
    params = macs = kept = 0
    for unit in stem.units:
        p, m, k = walk.conv(unit, "stem", "stem")
        params, macs, kept = params + p, macs + m, kept + k
    # feature level -> the walker's (size, receptive field, jump) at its end, for a decoder's skips (the stem's: -1, before its pool)
    taps = {f: (walk.size, walk.rf, walk.jump) for f in plan.features if f.stage < 0}
    if stem.pool:
        kept += walk.local_pool(stem.pool, "stem")[2]
    parts = [Cost("stem", params, macs, kept, (stem.out_channels, *walk.size), walk.rf)]
    cost = parts[0]  # the stem's row strides by its pool too
    rows = [StageRow("stem", "conv", 1, stem.in_channels, stem.out_channels, stem.kernel, stem.reduction, 0, cost.shape, cost.params, cost.macs,
                     cost.activations, cost.receptive_field)]
    for stage in plan.stages:
        costs = [_block(walk, block) for block in stage.blocks]
        parts += costs
        taps.update({f: (walk.size, walk.rf, walk.jump) for f in plan.features if f.stage == stage.index})
        first = stage.blocks[0]
        rows.append(
            StageRow(
                name=str(stage.index),
                block=stage_title(stage),
                repeats=len(stage.blocks),
                in_channels=first.in_channels,
                out_channels=stage.blocks[-1].out_channels,
                kernel=first.kernel,
                stride=stage.stride,
                se_channels=first.se_channels,
                shape=costs[-1].shape,
                params=sum(c.params for c in costs),
                macs=sum(c.macs for c in costs),
                activations=sum(c.activations for c in costs),
                receptive_field=costs[-1].receptive_field,
            )
        )
        if stage is not plan.stages[-1] and all(n == 1 for n in walk.size) and math.prod(plan.resolution) > 1:
            walk.collapse(f"stage {stage.index}: the feature map has shrunk to 1 on every axis before the last stage")
    if plan.head is not None:
        _head(walk, plan.head, parts, rows)
    if plan.decoder is not None:
        decoder_kind(plan.decoder.type).part("analysis")(walk, plan.decoder, taps, parts, rows)
    rounded = walk.stride_warning() if plan.resolution_given else None
    warnings = ([rounded] if rounded else []) + walk.warnings
    return Report(plan, (plan.in_channels, *plan.resolution), tuple(parts), tuple(rows), tuple(dict.fromkeys(warnings)),
                  tuple(dict.fromkeys(walk.collapses)), tuple(walk.layers))


def _head(walk: _Walker, plan_head: ir.Head, parts: list, rows: list) -> None:
    conv = plan_head.conv
    if plan_head.type != "conv":
        walk.pool()
    if plan_head.type == "norm":  # the pooled vector normalised: parameters, no MACs (FlopCounterMode counts none)
        c = plan_head.in_channels
        params = NORMS[walk.plan.norm.type].params(c)
        walk.layers.append(LayerCost("head.norm", "norm", walk.plan.norm.type, c, c, (), (), 1, (c, *walk.size), params, 0))
        head = Cost("head", params, 0, c, (c, *walk.size), walk.rf)
        parts.append(head)
        rows.append(StageRow("head", "norm", 1, c, c, (), (), 0, (c, *walk.size), params, 0, c, walk.rf))
    if conv is not None:
        params, macs, kept = walk.conv(conv.unit, "head", "head")
        head = Cost("head", params, macs, kept, (conv.out_channels, *walk.size), walk.rf)
        parts.append(head)
        rows.append(_row("head", "conv", 1, conv, head))
    if plan_head.num_classes:
        c_in, c_out = plan_head.out_channels, plan_head.num_classes
        classifier = Cost("classifier", c_in * c_out + c_out, c_in * c_out, 2 * c_in + c_out, (c_out,), walk.rf)
        walk.layers.append(LayerCost("classifier", "linear", "dense", c_in, c_out, (), (), 1, (c_out,), classifier.params, classifier.macs))
        parts.append(classifier)
        rows.append(StageRow("classifier", "linear", 1, c_in, c_out, (), (), 0, (c_out,), classifier.params, classifier.macs, classifier.activations, walk.rf))


def _block(walk: _Walker, block: ir.Block, where: str | None = None) -> Cost:
    params = macs = kept = 0
    where = where or f"stage {block.stage}"
    entry = (walk.size, walk.rf, walk.jump)
    for layer in block.layers:
        p, m, k = _COSTS[type(layer)](walk, layer, where, block.path)
        params, macs, kept = params + p, macs + m, kept + k
    if block.shortcut:  # the skip's layers run on the block's input; the map and receptive field are the layers' path's
        state, (walk.size, walk.rf, walk.jump) = (walk.size, walk.rf, walk.jump), entry
        for layer in block.shortcut:
            p, m, k = _COSTS[type(layer)](walk, layer, where, f"{block.path}.{ir.SHORTCUT}")
            params, macs, kept = params + p, macs + m, kept + k
        walk.size, walk.rf, walk.jump = state
    if block.residual:
        kept += block.out_channels * math.prod(walk.size)  # the sum
    if block.activation_after:
        shape = (block.out_channels, *walk.size)
        walk.layers.append(LayerCost(f"{block.path}.act_after", "act", block.activation_after, block.out_channels, block.out_channels, (), (), 1, shape, 0, 0))
        kept += math.prod(shape)
    return Cost(block.path, params, macs, kept, (block.out_channels, *walk.size), walk.rf)


# Each layer kind's (params, MACs, elements kept for backward), recorded as layers of module path ``prefix.<name>``;
# the walker's size advances past it. Called as (walker, layer, where: for warnings, prefix: the block's path).
_COSTS = table("analysis", {
    ir.ConvUnit: lambda walk, layer, where, prefix: walk.conv(layer, where, prefix),
    ir.SqueezeExcite: lambda walk, layer, where, prefix: walk.se(layer, prefix),
    ir.ECA: lambda walk, layer, where, prefix: walk.eca(layer, prefix),
    ir.LayerScale: lambda walk, layer, where, prefix: walk.scale(layer, prefix),
    ir.NormLayer: lambda walk, layer, where, prefix: walk.norm(layer, prefix),
    ir.GRN: lambda walk, layer, where, prefix: walk.grn(layer, prefix),
    ir.Pool: lambda walk, layer, where, prefix: walk.local_pool(layer, prefix),
    ir.ChannelPad: lambda walk, layer, where, prefix: walk.channel_pad(layer, prefix),
})


def _conv_kind(conv: ir.ConvUnit) -> str:
    return "depthwise" if conv.groups > 1 and conv.groups == conv.in_channels else "grouped" if conv.groups > 1 else "dense"


def unet_costs(walk: _Walker, decoder: ir.Decoder, taps: dict, parts: list, rows: list) -> None:
    """A U-Net decoder's levels after the encoder: each upsamples the walker's map to its skip's size (or the input's),
    joins the skip, runs its blocks. The receptive field is the deeper path's (the larger); the jump shrinks by the
    upsampling factor. Kept for backward: the joined map (the first conv's input) and what the blocks keep; an
    upsampling's own output and a head's output are kept by no operation (nearest and linear interpolation,
    concatenation and the crop keep none of their inputs)."""
    for level in decoder.levels:
        up, where = level.up, f"decoder level {level.index}"
        size, before = walk.size, len(parts)
        upsampled = tuple(n * s for n, s in zip(size, up.scale))  # before the crop, as the module returns it
        conv = up.conv
        params = macs = 0
        if conv is not None:
            weights = conv.out_channels * conv.in_channels * math.prod(conv.kernel)
            params, macs = weights + conv.out_channels, weights * math.prod(size)  # a transposed conv: per input position
            out = upsampled if up.mode == "transpose" else size
            walk.layers.append(LayerCost(f"{level.path}.up.conv", "conv", "transposed" if up.mode == "transpose" else "dense", conv.in_channels,
                                         conv.out_channels, conv.kernel, conv.stride, 1, (conv.out_channels, *out), params, macs))
        walk.layers.append(LayerCost(f"{level.path}.up", "upsample", up.mode, up.out_channels, up.out_channels, (), up.scale, 1,
                                     (up.out_channels, *upsampled), 0, 0))
        target, skip_rf, skip_jump = taps[level.skip] if level.skip else (walk.plan.resolution, None, None)
        walk.size, walk.jump = target, tuple(j // s for j, s in zip(walk.jump, up.scale))
        parts.append(Cost(f"{level.path}.up", params, macs, 0, (up.out_channels, *target), walk.rf))
        joined = up.out_channels
        if level.lateral is not None:  # runs on the skip: the walker visits it there and comes back
            state = (walk.rf, walk.jump)
            walk.rf, walk.jump = skip_rf, skip_jump
            parts.append(_block(walk, level.lateral, where))
            walk.rf, walk.jump = state
        elif level.skip is not None:
            joined += level.skip.channels
        kept = joined * math.prod(target)  # the concatenation or the sum, which the first conv keeps
        parts[-1] = dataclasses.replace(parts[-1], activations=parts[-1].activations + kept)
        parts += [_block(walk, block, where) for block in level.blocks]
        if level.aux is not None:
            state = (walk.size, walk.rf, walk.jump)
            parts.append(dataclasses.replace(_block(walk, level.aux, where), activations=0))
            walk.size, walk.rf, walk.jump = state
        costs = parts[before:]
        first = level.blocks[0]
        rows.append(StageRow(f"decoder.{level.index}", f"{block_title(first)}, up {format_axes(up.scale)} {up.mode}",
                             len(level.blocks), up.in_channels, level.out_channels, first.kernel, first.stride, first.se_channels,
                             (level.out_channels, *walk.size), sum(c.params for c in costs), sum(c.macs for c in costs),
                             sum(c.activations for c in costs), walk.rf))
    head = dataclasses.replace(_block(walk, decoder.head, "decoder head"), activations=0)  # its output leaves the module
    parts.append(head)
    rows.append(_row("decoder.head", "conv", 1, decoder.head, head))


def _row(name: str, block: str, repeats: int, layer: ir.ConvLayer, cost: Cost) -> StageRow:
    return StageRow(name, block, repeats, layer.in_channels, layer.out_channels, layer.kernel, layer.stride, 0,
                    cost.shape, cost.params, cost.macs, cost.activations, cost.receptive_field)


def block_title(block: ir.Block) -> str:
    """``MBConv6``, ``MBConv2.5``, ``FusedMBConv4``, ``DSConv``, ``Conv``, ``UIB4`` as papers name them; mixed depthwise
    kernels follow (``MBConv6 k3,5,7``)."""
    kind = BLOCKS[block.type]
    name = kind.title + (f"{block.expand_ratio:g}" if kind.expands else "")
    mixed = block.mixed_kernels
    return name + (" k" + ",".join(kernel_size(k) for k in mixed) if mixed else "")


def kernel_size(kernel: tuple[int, ...]) -> str:
    """``3`` for a 3x3 (or 3x3x3) kernel, ``1x3x3`` where the axes differ."""
    return str(kernel[0]) if len(set(kernel)) == 1 else format_shape(kernel)


def stage_title(stage: ir.Stage) -> str:
    """The titles of a stage's blocks, each once, in order: ``MBConv6`` or ``MBConv6 + MBConv2.5 + MBConv2.3``."""
    return " + ".join(dict.fromkeys(block_title(block) for block in stage.blocks))


def total_stride(plan: ir.Plan) -> tuple[int, ...]:
    """Input size over the last feature map's size, per axis, when every stride divides."""
    strides = [plan.stem.reduction] + [block.stride for block in plan.blocks]
    return tuple(math.prod(s[axis] for s in strides) for axis in range(plan.dims))


def _nearest_multiples(n: int, multiple: int) -> str:
    below, above = n // multiple * multiple, (n // multiple + 1) * multiple
    return f"{below} or {above}" if below else str(above)


def _list(axes: list[int]) -> str:
    return ("axis " if len(axes) == 1 else "axes ") + ", ".join(map(str, axes))
