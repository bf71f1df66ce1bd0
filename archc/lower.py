"""Lowering: Spec + scaling request -> Plan. The only module that knows both the spec and the IR.

Every convention that decides a parameter count is applied here, through :mod:`archc.scaling`:
channels ``make_divisible(c * width)``, repeats ``ceil(r * depth)``, SE width from the block input,
head width ``make_divisible(1280 * width)`` (TF, timm, MONAI), drop-path ``rate * i / num_blocks``;
a stem or head with ``scale: false`` and a row with ``scale_depth: false`` stay as written (EfficientNet-Lite, timm).
"""

from __future__ import annotations

import dataclasses
import math

from . import ir
from .errors import LoweringError, ScalingError, format_path, shown
from .scaling import Multipliers, compound, scale_channels, scale_repeats, scale_resolution, squeeze_channels, unknown_preset
from .spec import MAX_SIZE, Spec, Stage


def _check_request(*, phi, preset, dims, in_channels, num_classes, features_only) -> None:
    """The request's arguments come from Python callers and saved files as well as the CLI: check their types
    here, once, so ``dims=True`` or ``phi="x"`` is an error and not a 1 or a traceback."""

    def whole(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if phi is not None and not (whole(phi) or isinstance(phi, float)) or isinstance(phi, float) and not math.isfinite(phi):
        raise LoweringError(f"phi must be a number, got {phi!r}")
    if preset is not None and not isinstance(preset, str):
        raise LoweringError(f"preset must be a name, got {preset!r}")
    if dims is not None and not (whole(dims) and dims in (1, 2, 3)):
        raise LoweringError(f"dims must be 1, 2 or 3, got {dims!r}")
    if in_channels is not None and not (whole(in_channels) and in_channels >= 1):
        raise LoweringError(f"in_channels must be a whole number of at least 1, got {in_channels!r}")
    if num_classes is not None and not (whole(num_classes) and num_classes >= 0):
        raise LoweringError(f"num_classes must be a whole number, 0 or more, got {num_classes!r}")
    if not isinstance(features_only, bool):
        raise LoweringError(f"features_only must be true or false, got {features_only!r}")


MAX_BLOCKS = 10_000  # EfficientNet-B7 has 55; no network anyone trains has ten thousand


def lower(
    spec: Spec,
    *,
    phi: float | None = None,
    preset: str | None = None,
    dims: int | None = None,
    in_channels: int | None = None,
    num_classes: int | None = None,
    resolution: int | tuple[int, ...] | None = None,
    features_only: bool = False,
) -> ir.Plan:
    """Resolve ``spec`` into a :class:`~archc.ir.Plan`.

    ``phi`` (compound scaling) and ``preset`` (a row of ``scaling.presets``) are exclusive; when neither is
    given the spec's own ``scaling.phi`` / ``scaling.preset`` applies, if any. The other arguments replace
    the spec's values; an explicit ``resolution`` wins over a scaled one. ``features_only``: no head, the
    module returns the feature map of each reduction level (a U-Net's encoder).
    """
    _check_request(phi=phi, preset=preset, dims=dims, in_channels=in_channels, num_classes=num_classes, features_only=features_only)  # resolution: Axes.explicit
    dims = spec.dims if dims is None else dims
    axes = _Axes(spec, dims)

    mult, phi, preset = _multipliers(spec, phi, preset)
    s = spec.scaling

    def channels(c: int) -> int:
        return scale_channels(c, mult.width, s.divisor, s.round_limit)

    if resolution is not None:
        res = axes.explicit(resolution)
    elif mult.absolute_resolution is not None:
        res = (mult.absolute_resolution,) * dims
    else:
        res = tuple(scale_resolution(r, mult.resolution, s.resolution_rounding) for r in axes.get(spec.resolution, ("resolution",)))

    stem = ir.ConvLayer(
        path="stem",
        in_channels=spec.in_channels if in_channels is None else in_channels,
        # EfficientNet scales the stem (TF round_filters(32)); Lite keeps it (timm _gen_efficientnet_lite: fix_stem=True).
        out_channels=channels(spec.stem.channels) if spec.stem.scale else spec.stem.channels,
        kernel=axes.get(spec.stem.kernel, ("stem", "kernel")),
        stride=axes.get(spec.stem.stride, ("stem", "stride")),
        activation=spec.activation,
    )

    repeats = _repeats(spec, mult)
    total_blocks = sum(repeats)
    stages, index, width_in = [], 0, stem.out_channels
    for i, (row, n) in enumerate(zip(spec.stages, repeats)):
        out = channels(row.channels)
        kernel = axes.get(row.kernel, ("stages", i, "kernel"))
        stride = axes.get(row.stride, ("stages", i, "stride"))
        blocks = []
        for j in range(n):
            block_in, block_stride = (width_in, stride) if j == 0 else (out, (1,) * dims)
            blocks.append(_block(spec, row, i, j, index, total_blocks, block_in, out, kernel, block_stride))
            index += 1
        stages.append(ir.Stage(i, row.block, row.expand, kernel, stride, tuple(blocks)))
        width_in = out

    head_conv = ir.ConvLayer(
        path="head",
        in_channels=width_in,
        out_channels=channels(spec.head.channels) if spec.head.scale else spec.head.channels,
        kernel=(1,) * dims,
        stride=(1,) * dims,
        activation=spec.activation,
    )
    norm = ir.Norm(spec.norm.type, spec.norm.eps, spec.norm.momentum, spec.norm.groups)
    features = _feature_levels(stem, stages)
    classes = spec.num_classes if num_classes is None else num_classes
    decoder = None if features_only or spec.decoder is None else _decoder(spec, axes, features, classes, num_classes is None)
    if norm.type == "group":
        _check_groups(spec, norm.groups, stem, stages, head_conv, decoder.blocks if decoder else ())
    return ir.Plan(
        name=spec.name,
        dims=dims,
        in_channels=stem.in_channels,
        resolution=res,
        padding=spec.padding,
        norm=norm,
        stem=stem,
        stages=tuple(stages),
        head=None if features_only or decoder else ir.Head(
            conv=head_conv,
            dropout=spec.head.dropout if mult.dropout is None else mult.dropout,
            num_classes=classes,
        ),
        scaling=ir.Scaling(phi=phi, preset=preset, width=mult.width, depth=mult.depth, resolution=mult.resolution),
        features=features,
        checkpointing=spec.checkpointing,
        decoder=decoder,
    )


def block_count(spec: Spec, *, phi: float | None = None, preset: str | None = None) -> int:
    """Blocks the Plan of ``spec`` at this phi or preset would have, computed without building any."""
    return sum(_repeats(spec, _multipliers(spec, phi, preset)[0]))


def _repeats(spec: Spec, mult: Multipliers) -> list[int]:
    s = spec.scaling
    # A row with scale_depth false keeps its repeats: EfficientNet-Lite's first and last stage
    # (timm _gen_efficientnet_lite: decode_arch_def(fix_first_last=True) scales them by 1.0).
    repeats = [scale_repeats(row.repeats, mult.depth if row.scale_depth else 1.0, s.depth_rounding) for row in spec.stages]
    if sum(repeats) > MAX_BLOCKS:  # checked before any block exists: phi=100 would ask for millions
        raise ScalingError(
            f"depth {mult.depth:.4g} gives {sum(repeats):,} blocks; archc stops at {MAX_BLOCKS:,} (is phi or a preset's depth a typo?)"
        )
    return repeats


def _block(spec: Spec, row, stage: int, j: int, index: int, total: int, block_in: int, out: int, kernel, stride) -> ir.Block:
    """One block of a stage row, every number resolved, as its layers in order."""
    activation = row.activation or spec.activation
    if row.block == "conv":
        se_ratio, expand = 0.0, 1  # conv-norm-act: no expansion, no SE, no skip
    else:
        se_ratio = spec.se.ratio if row.se is None else row.se
        expand = row.expand
    if spec.se.placement == "none":
        se_ratio = 0.0
    mid = block_in * expand  # TF: input_filters * expand_ratio
    before, after = _convs(row.block, block_in, mid, out, kernel, stride, expand != 1, activation)
    se = []
    if se_ratio:
        squeeze = squeeze_channels(block_in if spec.se.relative_to == "block_input" else mid, se_ratio)
        gated = (before[-1] if spec.se.placement == "after_depthwise" or not after else after[-1]).out_channels
        se = [ir.SqueezeExcite("se", gated, squeeze, spec.se.activation or row.activation or spec.activation, row.se_gate or spec.se.gate)]
    layers = before + se + after if spec.se.placement == "after_depthwise" else before + after + se
    return ir.Block(
        path=f"stages.{stage}.{j}",
        stage=stage,
        index=index,
        type=row.block,
        in_channels=block_in,
        out_channels=out,
        kernel=kernel,
        stride=stride,
        expand_ratio=expand,
        layers=tuple(layers),
        residual=row.block != "conv" and row.residual and block_in == out and all(st == 1 for st in stride),
        # Linear in the global block index (TF drop_connect_rate, timm, MONAI, torchvision).
        drop_path=spec.stochastic_depth * index / total,
    )


def _convs(block_type: str, c_in: int, mid: int, out: int, kernel, stride, expands: bool, activation) -> tuple[list, list]:
    """A block's conv units before and after the place of its SE (after the depthwise, or the fused expand).
    Names are timm's roles, and the state_dict keys of the emitted block."""
    ones = (1,) * len(kernel)

    def unit(conv, norm, act, c_from, c_to, k, s, groups=1):
        return ir.ConvUnit(conv, norm, act, c_from, c_to, k, s, groups, activation if act else None)

    if block_type == "conv":
        return [unit("conv", "bn", "act", c_in, out, kernel, stride)], []
    if block_type == "fused_mbconv":
        if not expands:  # a single kxk conv (torchvision FusedMBConv with expand ratio 1)
            return [unit("conv_exp", "bn1", "act1", c_in, out, kernel, stride)], []
        return [unit("conv_exp", "bn1", "act1", c_in, mid, kernel, stride)], [unit("conv_pwl", "bn2", None, mid, out, ones, ones)]
    expand = [unit("conv_pw", "bn1", "act1", c_in, mid, ones, ones)] if expands else []
    depthwise = unit("conv_dw", "bn2", "act2", mid, mid, kernel, stride, groups=mid)
    return expand + [depthwise], [unit("conv_pwl", "bn3", None, mid, out, ones, ones)]  # linear bottleneck: no activation


def _feature_levels(stem: ir.ConvLayer, stages: list[ir.Stage]) -> tuple[ir.FeatureLevel, ...]:
    """The last stage of each reduction level: where timm's ``features_only`` taps an EfficientNet."""
    levels: list[ir.FeatureLevel] = []
    reduction = stem.stride
    for stage in stages:
        for block in stage.blocks:
            reduction = tuple(r * st for r, st in zip(reduction, block.stride))
        last = stage.blocks[-1]
        level = ir.FeatureLevel(stage.index, last.path, last.out_channels, reduction)
        if levels and levels[-1].reduction == reduction:
            levels[-1] = level  # a later stage at the same level replaces the earlier one
        else:
            levels.append(level)
    return tuple(levels)


def _decoder(spec: Spec, axes: _Axes, features: tuple[ir.FeatureLevel, ...], num_classes: int, spec_classes: bool) -> ir.Decoder:
    """The spec's U-Net decoder over the encoder's feature levels. The deepest level is the bottleneck; the decoder
    has one level per finer feature level (its skip), deepest first, and one more without a skip when the finest
    feature level is reduced, which brings the map back to the input's size. Each level upsamples by the ratio of
    the two reductions per axis, so an encoder that reduces the axes unevenly gets a decoder that undoes exactly that."""
    d = spec.decoder
    ones = (1,) * axes.dims
    if num_classes < 1:
        where = _where(spec, ("num_classes",)) if spec_classes else {}
        raise LoweringError(f"got {num_classes}, but with a decoder num_classes is the number of output channels: at least 1", **where)
    skips: list[ir.FeatureLevel | None] = list(reversed(features[:-1]))
    if features[0].reduction != ones:
        skips.append(None)
    count = len(skips)
    if count == 0:
        raise LoweringError("the encoder has a single feature level at the input's size: a U-Net decoder has nothing to upsample",
                            **_where(spec, ("decoder",)))
    if d.channels is None:
        widths = [d.width * 2 ** (count - 1 - i) for i in range(count)]  # 16 -> 256, 128, 64, 32, 16 (MONAI, SMP)
    elif len(d.channels) != count:
        raise LoweringError(f"got {len(d.channels)} widths, but this encoder gives the decoder {count} levels; give {count}, deepest first",
                            **_where(spec, ("decoder", "channels")))
    else:
        widths = list(d.channels)
    if d.deep_supervision > count - 1:
        raise LoweringError(f"got {d.deep_supervision}, but only the {count - 1} levels before the last can have a deep-supervision head",
                            **_where(spec, ("decoder", "deep_supervision")))
    kernel = axes.get(d.kernel, ("decoder", "kernel"))
    # The spec's block machinery builds the decoder's blocks, as a stage row would (SE as the network's).
    row = Stage.model_construct(block=d.block, expand=d.expand if d.block != "conv" else 1, channels=1, activation=d.activation or spec.activation)

    def one_conv(path: str, level: int, c_in: int, c_out: int, k, norm: str | None) -> ir.Block:
        unit = ir.ConvUnit("conv", norm, None, c_in, c_out, k, ones, 1, None, bias=norm is None)
        return ir.Block(path, level, -1, "conv", c_in, c_out, k, ones, 1, (unit,), residual=False, drop_path=0.0)

    levels, c_in, deeper = [], features[-1].channels, features[-1].reduction
    for i, (skip, out) in enumerate(zip(skips, widths)):
        path = f"decoder.levels.{i}"
        reduction = ones if skip is None else skip.reduction
        up = ir.Upsample(d.upsample, tuple(a // b for a, b in zip(deeper, reduction)), c_in, c_in if skip is None else max(1, c_in // 2))
        lateral = one_conv(f"{path}.lateral", i, skip.channels, up.out_channels, ones, "bn") if skip and d.fuse == "add" else None
        width = up.out_channels + (skip.channels if skip and d.fuse == "concat" else 0)
        blocks = []
        for j in range(d.repeats):
            block = _block(spec, row, i, j, j, d.repeats, width if j == 0 else out, out, kernel, ones)
            # No stochastic depth: the spec's rate is a schedule over the encoder's blocks.
            blocks.append(dataclasses.replace(block, path=f"{path}.blocks.{j}", index=-1, drop_path=0.0))
        aux = one_conv(f"{path}.aux", i, out, num_classes, ones, None) if count - 1 - d.deep_supervision <= i < count - 1 else None
        levels.append(ir.DecoderLevel(i, path, skip, up, lateral, tuple(blocks), aux, reduction))
        c_in, deeper = out, reduction
    # MONAI's SegmentationHead: a 3x3 conv with a bias, no norm or activation.
    head = one_conv("decoder.head", count, c_in, num_classes, (3,) * axes.dims, None)
    return ir.Decoder(d.fuse, tuple(levels), head, num_classes)


def _check_groups(spec: Spec, groups: int, stem, stages, head, decoder_blocks=()) -> None:
    widths = {stem.out_channels: "stem", head.out_channels: "head"}
    for stage in stages:
        for block in stage.blocks:
            for unit in block.convs:  # every normalised width
                if unit.norm:
                    widths.setdefault(unit.out_channels, f"{block.path}.{unit.norm}")
    for block in decoder_blocks:
        for unit in block.convs:
            if unit.norm:
                widths.setdefault(unit.out_channels, f"{block.path}.{unit.norm}")
    for width, where in sorted(widths.items()):
        if width % groups:
            raise LoweringError(
                f"got {groups}, but it does not divide the {width} channels of {where}; "
                f"choose a divisor of every width (widths are multiples of {spec.scaling.divisor})",
                **_where(spec, ("norm", "groups")),
            )


def _multipliers(spec: Spec, phi: float | None, preset: str | None) -> tuple[Multipliers, float | None, str | None]:
    s = spec.scaling
    if phi is not None and preset is not None:
        raise ScalingError("give phi or preset, not both")
    if phi is None and preset is None:  # the spec's own default, if any
        phi, preset = s.phi, s.preset
    if preset is not None:
        if preset not in s.presets:
            raise ScalingError(unknown_preset(preset, s.presets), **_where(spec, ("scaling", "presets")))
        p = s.presets[preset]
        return Multipliers(p.width, p.depth, 1.0, p.resolution, p.dropout), None, preset
    if phi is not None:
        return compound(float(phi), s.alpha, s.beta, s.gamma), float(phi), None
    return Multipliers(), None, None


def _where(spec: Spec, path: tuple) -> dict:
    """Where ``path`` of the spec was written (or which override set it), for an error."""
    file, line = spec.source.locate(path)
    return {"file": file, "line": line, "path": format_path(path)}


class _Axes:
    """Broadcasts the spec's per-axis values to ``dims`` axes, with located errors."""

    def __init__(self, spec: Spec, dims: int):
        self.spec, self.dims = spec, dims

    def get(self, value: tuple[int, ...], path: tuple) -> tuple[int, ...]:
        if len(value) == 1:
            return value * self.dims
        if len(value) != self.dims:
            raise LoweringError(
                f"got {len(value)} values {list(value)} for a {self.dims}D network; give one number or {self.dims}",
                **_where(self.spec, path),
            )
        return tuple(value)

    def explicit(self, value: int | tuple[int, ...]) -> tuple[int, ...]:
        values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        if not values or any(not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= MAX_SIZE for v in values):
            raise LoweringError(f"resolution must be integers from 1 to {MAX_SIZE:,}, got {shown(value)}")
        if len(values) not in (1, self.dims):
            raise LoweringError(f"resolution has {len(values)} values for a {self.dims}D network; give 1 or {self.dims}")
        return values * self.dims if len(values) == 1 else values
