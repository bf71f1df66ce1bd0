"""Lowering: Spec + scaling request -> Plan. The only module that knows both the spec and the IR.

Every convention that decides a parameter count is applied here, through :mod:`archc.scaling`:
channels ``make_divisible(c * width)``, repeats ``ceil(r * depth)``, SE width from the block input,
head width ``make_divisible(1280 * width)`` (TF, timm, MONAI), drop-path ``rate * i / num_blocks``;
a stem or head with ``scale: false`` and a row with ``scale_depth: false`` stay as written (EfficientNet-Lite, timm).
"""

from __future__ import annotations

import dataclasses
import math
import os

from . import ir
from .errors import ArgumentError, LoweringError, ScalingError, format_path, shown
from .kinds.blocks import BLOCKS
from .kinds.decoders import decoder_kind
from .request import BuildRequest
from .scaling import MAX_BLOCKS, Multipliers, compound, make_divisible, scale_channels, scale_repeats, scale_resolution, squeeze_channels, unknown_preset
from .spec import MAX_SIZE, Spec, Stage


def _check_request(**fields) -> None:
    """The request's arguments come from Python callers and saved files as well as the CLI: checked by the one
    record of a request (:class:`~archc.request.BuildRequest`), so ``dims=True`` is an error and not a 1."""
    BuildRequest(**fields)


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
    _check_request(phi=phi, preset=preset, dims=dims, in_channels=in_channels, num_classes=num_classes, resolution=resolution, features_only=features_only)
    dims = spec.dims if dims is None else dims
    axes = _Axes(spec, dims)

    mult, phi, preset = _multipliers(spec, phi, preset)
    s = spec.scaling

    def channels(c: int) -> int:
        return scale_channels(c, mult.width, s.divisor, s.round_limit)

    if resolution is not None:
        res = axes.explicit(resolution)
    elif mult.absolute_resolution is not None:
        res = axes.get(mult.absolute_resolution, ("scaling", "presets", preset, "resolution"))
    else:
        gammas = axes.get(mult.resolution, ("scaling", "gamma")) if isinstance(mult.resolution, tuple) else (mult.resolution,) * dims
        res = tuple(scale_resolution(r, m, s.resolution_rounding, t) for r, m, t in zip(axes.get(spec.resolution, ("resolution",)), gammas, _total_stride(spec, axes)))
    # archc warns about sizes people wrote, not about those it computed from phi or took from a preset as published
    given = resolution is not None or (mult.absolute_resolution is None and all(m == 1 for m in _axes_of(mult.resolution)))

    # EfficientNet scales the stem (TF round_filters(32)); Lite keeps it (timm _gen_efficientnet_lite: fix_stem=True).
    stem = _stem(spec, axes, spec.in_channels if in_channels is None else in_channels, channels if spec.stem.scale else (lambda c: c))

    repeats = _repeats(spec, mult)
    # Stochastic depth grows over the network's depth: its blocks, not the stage transitions (ConvNeXt's downsample).
    in_depth = [not BLOCKS[row.block].once for row in spec.stages]
    depth = sum(r for r, counted in zip(repeats, in_depth) if counted)
    stages, index, deeper, width_in = [], 0, 0, stem.out_channels
    for number, rows in enumerate(_stage_rows(spec)):
        blocks: list[ir.Block] = []
        for i in rows:
            row, out = spec.stages[i], channels(spec.stages[i].channels)
            shape = _RowShape(axes, row, i, channels(row.expand_from) if row.expand_from else None, _mid(row, mult.width, s) if row.mid else None)
            for j in range(repeats[i]):
                block_in, block_stride = (width_in, shape.stride) if j == 0 else (out, (1,) * dims)
                drop_path = _drop_path(spec, deeper, depth) if in_depth[i] else 0.0
                blocks.append(_block(spec, row, shape, f"stages.{number}.{len(blocks)}", number, index, drop_path, block_in, out, block_stride))
                index += 1
                deeper += in_depth[i]
            width_in = out
        stages.append(ir.Stage(number, tuple(blocks)))

    head_conv = ir.ConvLayer(
        path="head",
        in_channels=width_in,
        out_channels=_head_width(spec.head.channels, spec.head.scale, channels),
        kernel=(1,) * dims,
        stride=(1,) * dims,
        activation=spec.activation,
        # MobileNetV3's efficient head: the conv runs on the pooled vector, with a bias and no norm
        norm=spec.head.type == "conv" if spec.head.norm is None else spec.head.norm,
    )
    norm = ir.Norm(spec.norm.type, spec.norm.eps, spec.norm.momentum, spec.norm.groups)
    features = _feature_levels(stem, stages)
    classes = spec.num_classes if num_classes is None else num_classes
    decoder = None if features_only or spec.decoder is None else \
        decoder_kind(spec.decoder.type).part("lowering")(spec, axes, features, classes, num_classes is None, stages)
    if norm.type == "group":
        head = head_conv if decoder is None and spec.head.type in ("conv", "efficient") and head_conv.norm else None
        _check_groups(spec, norm.groups, stem, stages, head, decoder.blocks if decoder else ())
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
            conv=head_conv if spec.head.type in ("conv", "efficient") else None,
            dropout=spec.head.dropout if mult.dropout is None else mult.dropout,
            num_classes=classes,
            type=spec.head.type,
            in_channels=width_in,
        ),
        scaling=ir.Scaling(phi=phi, preset=preset, width=mult.width, depth=mult.depth, resolution=mult.resolution),
        features=features,
        checkpointing=spec.checkpointing,
        zero_init_last=spec.zero_init_last,
        decoder=decoder,
        resolution_given=given,
        stage_generator="regnet" if spec.regnet is not None else None,
    )


def _stem(spec: Spec, axes: "_Axes", c_in: int, channels) -> ir.Stem:
    """The stem's conv units (one, modules conv/bn/act; or ``layers``, modules conv1/bn1/act1, ...) and its pool."""
    stem = spec.stem
    if stem.layers is None:
        units = [ir.ConvUnit("conv", "bn", "act", c_in, channels(stem.channels), axes.get(stem.kernel, ("stem", "kernel")),
                             axes.get(stem.stride, ("stem", "stride")), 1, spec.activation)]
    else:
        units = []
        for i, layer in enumerate(stem.layers):
            n = "" if len(stem.layers) == 1 else str(i + 1)  # one layer keeps the one-conv stem's names
            out = channels(layer.channels)
            units.append(ir.ConvUnit(f"conv{n}", f"bn{n}" if layer.norm else None, f"act{n}" if layer.activation else None, c_in, out,
                                     axes.get(layer.kernel, ("stem", "layers", i, "kernel")), axes.get(layer.stride, ("stem", "layers", i, "stride")), 1,
                                     spec.activation if layer.activation else None, bias=layer.bias))
            c_in = out
    return ir.Stem(tuple(units), _stem_pool(stem.pool, axes, units[-1].out_channels))


def _stem_pool(pool, axes: "_Axes", channels: int) -> ir.Pool | None:
    if pool is None:
        return None
    kernel = axes.get(pool.kernel, ("stem", "pool", "kernel"))
    padding = tuple(k // 2 for k in kernel) if pool.padding is None else axes.get(pool.padding, ("stem", "pool", "padding"))
    return ir.Pool("pool", pool.type, kernel, axes.get(pool.stride, ("stem", "pool", "stride")), padding, pool.ceil_mode, pool.count_include_pad, channels)


def _stem_strides(spec: Spec, axes: "_Axes") -> list[tuple[int, ...]]:
    """The strides of the stem's convs and pool, in order."""
    stem = spec.stem
    if stem.layers is None:
        strides = [axes.get(stem.stride, ("stem", "stride"))]
    else:
        strides = [axes.get(layer.stride, ("stem", "layers", i, "stride")) for i, layer in enumerate(stem.layers)]
    return strides + ([axes.get(stem.pool.stride, ("stem", "pool", "stride"))] if stem.pool else [])


def _total_stride(spec: Spec, axes: "_Axes") -> tuple[int, ...]:
    """Input size over the last map's, per axis: the stem's strides times each row's (a row strides once, whatever its depth)."""
    strides = _stem_strides(spec, axes) + [axes.get(row.stride, ("stages", i, "stride")) for i, row in enumerate(spec.stages)]
    return tuple(math.prod(s[a] for s in strides) for a in range(axes.dims))


def _axes_of(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def block_count(spec: Spec, *, phi: float | None = None, preset: str | None = None) -> int:
    """Blocks the Plan of ``spec`` at this phi or preset would have, computed without building any."""
    return sum(_repeats(spec, _multipliers(spec, phi, preset)[0]))


def _stage_rows(spec: Spec) -> list[list[int]]:
    """The spec's row indices grouped into stages: a row starts one unless it ``continues`` the one above."""
    stages: list[list[int]] = []
    for i, row in enumerate(spec.stages):
        if row.continues and stages:
            stages[-1].append(i)
        else:
            stages.append([i])
    return stages


def _repeats(spec: Spec, mult: Multipliers) -> list[int]:
    """Blocks per row after depth scaling. A stage of one row: ``ceil(repeats * depth)`` (TF round_repeats). A stage
    of several rows scales its total and shares it out over the rows from the last, each keeping at least one
    (timm ``_scale_stage_depth``, which that rule reduces to for one row)."""
    s = spec.scaling
    repeats = [0] * len(spec.stages)
    for rows in _stage_rows(spec):
        for i in rows:  # a kind that is one block per row (ConvNeXt's downsample) keeps it at any depth
            repeats[i] = spec.stages[i].repeats
        rows = [i for i in rows if not BLOCKS[spec.stages[i].block].once]
        if not rows:
            continue
        exempt = {spec.stages[i].scale_depth for i in rows}
        if len(exempt) > 1:
            raise LoweringError("the rows of one stage must agree on scale_depth", **_where(spec, ("stages", rows[-1], "scale_depth")))
        # A row with scale_depth false keeps its repeats: EfficientNet-Lite's first and last stage
        # (timm _gen_efficientnet_lite: decode_arch_def(fix_first_last=True) scales them by 1.0).
        depth = mult.depth if exempt.pop() else 1.0
        left = sum(spec.stages[i].repeats for i in rows)
        left_scaled = scale_repeats(left, depth, s.depth_rounding)
        for i in reversed(rows):
            share = max(1, round(spec.stages[i].repeats / left * left_scaled))
            repeats[i] = share
            left, left_scaled = left - spec.stages[i].repeats, left_scaled - share
    if sum(repeats) > MAX_BLOCKS:  # checked before any block exists: phi=100 would ask for millions
        raise ScalingError(
            f"depth {mult.depth:.4g} gives {sum(repeats):,} blocks; archc stops at {MAX_BLOCKS:,} (is phi or a preset's depth a typo?)"
        )
    return repeats


def _head_width(written: int, scale, channels) -> int:
    if scale is False:
        return written
    scaled = channels(written)
    # "up": TinyNet and MobileNetV2 below width 1.0 keep 1280 (timm: max(1280, round_chs_fn(1280))).
    return max(written, scaled) if scale == "up" else scaled


def _mid(row, width: float, s) -> int:
    """A bottleneck's inner width, scaled as channels are but to a multiple of its group size too, so that width scaling
    keeps the row's group size (ResNeXt 32x4d: 4 channels per group) and the groups divide the width."""
    return scale_channels(row.mid, width, math.lcm(s.divisor, row.group_size or 1), s.round_limit)


class _RowShape:
    """The per-axis values of one row, broadcast to the network's axes once for all its blocks."""

    def __init__(self, axes: "_Axes", row, i: int, expand_from: int | None, mid: int | None = None):
        self.stride = axes.get(row.stride, ("stages", i, "stride"))
        self.kernel = None if row.kernel is None or row.mixed_kernels else axes.get(row.kernel, ("stages", i, "kernel"))
        self.mixed = tuple((k,) * axes.dims for k in row.mixed_kernels or ())
        self.start = None if row.start_kernel is None else axes.get(row.start_kernel, ("stages", i, "start_kernel"))
        self.expand_from = expand_from  # already width-scaled
        self.mid = mid  # a bottleneck's inner width, already width-scaled
        self.path = ("stages", i)

    @property
    def block_kernel(self) -> tuple[int, ...]:
        """The kernel a block is known by: its spatial conv's, the largest of mixed ones; a uib's middle depthwise, else
        its first; 1 for a uib with neither (MobileNetV4's FFN)."""
        return self.kernel or (max(self.mixed) if self.mixed else self.start or (1,) * len(self.stride))


def _block(spec: Spec, row, shape: _RowShape, path: str, stage: int, index: int, drop_path: float, block_in: int, out: int, stride) -> ir.Block:
    """One block of a stage row, every number resolved, as its layers in order."""
    activation = row.activation or spec.activation
    kind = BLOCKS[row.block]
    expand = row.expand if kind.expands else 1
    mid = _expanded(block_in if shape.expand_from is None else shape.expand_from, expand, spec.scaling.divisor) if kind.expands else shape.mid or block_in
    keep = expand != 1 or bool(row.expand_conv) or kind.always_expands  # the expansion (or the fused projection) stays
    parts = kind.recipe(_Convs(spec, row, shape, path, activation), shape, block_in, mid, out, stride, keep)
    before, after = list(parts.before), list(parts.after)
    se = _squeeze_excite(spec, row, activation, block_in, mid, before, after) if kind.se else []
    layers = before + se + after if spec.se.placement == "after_depthwise" else before + after + se
    if row.layer_scale:
        layers.append(ir.LayerScale("layer_scale", out, row.layer_scale))
    # timm: ConvBnAct has no skip unless asked; dsa never (MobileNetV1). A kind with a shortcut (ResNet's projection)
    # has a skip whatever the shapes; the others only an identity one, where shapes allow.
    skip = kind.skip if row.residual is None else row.residual
    residual = skip and (bool(parts.shortcut) or block_in == out and all(st == 1 for st in stride))
    return ir.Block(
        path=path,
        stage=stage,
        index=index,
        type=row.block,
        in_channels=block_in,
        out_channels=out,
        kernel=parts.kernel or shape.block_kernel,
        stride=stride,
        expand_ratio=expand,
        layers=tuple(layers),
        residual=residual,
        shortcut=tuple(parts.shortcut) if residual else (),
        activation_after=activation if parts.act_after else None,
        drop_path=drop_path,
    )


def _drop_path(spec: Spec, index: int, depth: int) -> float:
    """The stochastic-depth rate of block ``index`` of ``depth``: linear in the block's index, the last block at
    ``rate * (N - 1) / N`` (TF's drop_connect_rate, timm's EfficientNet) or at the full rate (timm's ResNet)."""
    steps = depth if spec.stochastic_depth_schedule == "efficientnet" else depth - 1
    return spec.stochastic_depth * index / steps if steps else 0.0


def _expanded(width: int, ratio: float, divisor: int) -> int:
    """Width of the expansion: ``width * ratio`` when that is whole (TF ``input_filters * expand_ratio``), else rounded to a
    multiple of the divisor (timm ``make_divisible(in_chs * exp_ratio)``: MobileNetV3's 2.3, 3.67 and 4.5)."""
    exact = width * ratio
    return int(exact) if float(exact).is_integer() else make_divisible(exact, divisor)


def _squeeze_excite(spec: Spec, row, activation, block_in: int, mid: int, before: list, after: list) -> list:
    ratio = 0.0 if spec.se.placement == "none" else (spec.se.ratio if row.se is None else row.se)
    if not ratio:
        return []
    gated = (before[-1] if spec.se.placement == "after_depthwise" or not after else after[-1]).out_channels
    if spec.se.type == "eca":
        return [ir.ECA("se", gated, ir.eca_kernel(gated), row.se_gate or spec.se.gate)]
    # a ResNet's SE after the projection squeezes the map it gates, the block's output (timm SEModule: make_divisible(out / 16, 8,
    # round_limit=0)); RegNet-Y's, after the spatial conv, the block's input (se.relative_to)
    on_output = spec.se.placement == "after_project" or not after
    reference = gated if BLOCKS[row.block].se_on_output and on_output else block_in if spec.se.relative_to == "block_input" else mid
    squeeze = make_divisible(reference * ratio, spec.scaling.divisor) if spec.se.rounding == "divisor" else squeeze_channels(reference, ratio)
    return [ir.SqueezeExcite("se", gated, squeeze, spec.se.activation or activation, row.se_gate or spec.se.gate)]


class _Convs:
    """Makes the conv units of one block. Names are timm's roles, and the state_dict keys of the emitted block."""

    def __init__(self, spec: Spec, row, shape: _RowShape, path: str, activation):
        self.spec, self.row, self.shape, self.path, self.activation = spec, row, shape, path, activation
        self.ones = (1,) * len(shape.stride)

    def _unit(self, conv, norm, act, c_in, c_out, kernel, stride, groups=1, kernels=(), bias=False) -> ir.ConvUnit:
        return ir.ConvUnit(conv, norm, act, c_in, c_out, kernel, stride, groups, self.activation if act else None, bias=bias, kernels=kernels)

    def unit(self, conv, norm, act, c_in, c_out, kernel, stride, groups=1, bias=False) -> ir.ConvUnit:
        """A unit as a recipe writes it out (ConvNeXt's convs with their biases)."""
        return self._unit(conv, norm, act, c_in, c_out, kernel, stride, groups, bias=bias)

    def _split(self, groups: int) -> tuple:
        return (self.ones,) * groups if groups > 1 else ()

    def expand(self, c_in: int, mid: int) -> ir.ConvUnit:
        return self._unit("conv_pw", "bn1", "act1", c_in, mid, self.ones, self.ones, kernels=self._split(self.row.expand_groups))

    def project(self, norm: str, mid: int, out: int, act: str | None = None) -> ir.ConvUnit:
        # a linear bottleneck: no activation (except dsa's)
        return self._unit("conv_pwl", norm, act, mid, out, self.ones, self.ones, kernels=self._split(self.row.project_groups))

    def depthwise(self, conv, norm, act, channels: int, kernel, stride, mixed=()) -> ir.ConvUnit:
        stride = stride or self.ones
        if mixed:
            return self._unit(conv, norm, act, channels, channels, max(mixed), stride, channels, kernels=mixed)
        return self._unit(conv, norm, act, channels, channels, kernel, stride, self._groups(channels, channels))

    def spatial(self, conv, norm, act, c_in: int, c_out: int, stride) -> ir.ConvUnit:
        return self._unit(conv, norm, act, c_in, c_out, self.shape.kernel, stride or self.ones, self._groups(c_in, 1, c_out))

    def pointwise(self, conv, norm, act, c_in: int, c_out: int, stride=None) -> ir.ConvUnit:
        return self._unit(conv, norm, act, c_in, c_out, self.ones, stride or self.ones)

    def shortcut(self, c_in: int, c_out: int, stride) -> tuple:
        """A projection skip, numbered as in nn.Sequential: a 1x1 conv with the stride, then norm (``downsample.0``, ``.1``;
        timm downsample_conv); or with ``shortcut: avg`` (ResNet-D) an average pool with the stride, then the 1x1 conv and
        norm (``.0``, ``.1``, ``.2``; timm downsample_avg: ceil_mode, padding not counted; at stride 1 the pool is the identity);
        or with ``shortcut: zero_pad`` no parameters: an average pool of kernel 1 with the stride, which subsamples, then zero
        channels up to the output's (``.0``, ``.1``; MONAI ``_downsample_basic_block``, its pool left out at stride 1)."""
        if self.row.shortcut == "zero_pad":
            if c_out < c_in:
                raise LoweringError(f"got zero_pad, but {self.path} narrows {c_in} channels to {c_out}: zero_pad only adds channels "
                                    "(use conv)", **_where(self.spec, self.shape.path + ("shortcut",)))
            subsample = (ir.Pool("0", "avg", self.ones, stride, tuple(0 for _ in stride), channels=c_in),) if any(s > 1 for s in stride) else ()
            return subsample + (ir.ChannelPad(str(len(subsample)), c_in, c_out),)
        if self.row.shortcut != "avg":  # conv_bias: MONAI's ResNet (shortcut_type B, bias_downsample) gives the conv a bias
            return (ir.ConvUnit("0", "1", None, c_in, c_out, self.ones, stride, 1, None, bias=self.row.shortcut == "conv_bias"),)
        zeros = tuple(0 for _ in stride)
        window = tuple(s if s > 1 else 1 for s in stride)
        pool = ir.Pool("0", "avg", window, stride, zeros, ceil_mode=True, count_include_pad=False, channels=c_in)
        return (pool, self._unit("1", "2", None, c_in, c_out, self.ones, self.ones))

    def _groups(self, channels: int, default: int, out: int | None = None) -> int:
        size = self.row.group_size
        if size is None:
            return default
        groups = channels // size
        if channels % size or (out or channels) % groups:
            raise LoweringError(f"got {size}, but {channels} input channels in groups of {size} do not divide the {out or channels} "
                                f"output channels of {self.path}'s spatial conv evenly", **_where(self.spec, self.shape.path + ("group_size",)))
        return groups


def _feature_levels(stem: ir.Stem, stages: list[ir.Stage]) -> tuple[ir.FeatureLevel, ...]:
    """The last stage of each reduction level: where timm's ``features_only`` taps an EfficientNet or a ResNet."""
    levels: list[ir.FeatureLevel] = []
    reduction = stem.stride
    if stages and (stem.reduction != reduction or any(s > 1 for s in stages[0].blocks[0].stride)) and any(s > 1 for s in reduction):
        # The stem's pool or the first stage reduces again: the stem's map (before its pool) is a level of its own (timm
        # taps an EfficientNet's bn1, MobileNetV3-Small, a ResNet's act1)
        levels.append(ir.FeatureLevel(-1, "stem", stem.out_channels, reduction))
    reduction = stem.reduction
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


def unet_decoder(spec: Spec, axes: _Axes, features: tuple[ir.FeatureLevel, ...], num_classes: int, spec_classes: bool,
                 stages: list[ir.Stage]) -> ir.Decoder:
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
    blocks = sum(len(stage.blocks) for stage in stages) + d.repeats * count
    if blocks > MAX_BLOCKS:  # before any decoder block exists: the limit is the network's, encoder and decoder
        raise LoweringError(f"got {d.repeats:,} blocks at each of the decoder's {count} levels: {blocks:,} blocks with the encoder's; "
                            f"archc stops at {MAX_BLOCKS:,}", **_where(spec, ("decoder", "repeats")))
    if d.deep_supervision > count - 1:
        raise LoweringError(f"got {d.deep_supervision}, but only the {count - 1} levels before the last can have a deep-supervision head",
                            **_where(spec, ("decoder", "deep_supervision")))
    kernel = axes.get(d.kernel, ("decoder", "kernel"))
    # The spec's block machinery builds the decoder's blocks, as a stage row would (SE as the network's).
    row = Stage.model_construct(block=d.block, expand=d.expand if BLOCKS[d.block].expands else 1, channels=1, kernel=kernel,
                                activation=d.activation or spec.activation)
    shape = _RowShape(axes, row, 0, None)

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
            # No stochastic depth: the spec's rate is a schedule over the encoder's blocks.
            block = _block(spec, row, shape, f"{path}.blocks.{j}", i, j, 0.0, width if j == 0 else out, out, ones)
            blocks.append(dataclasses.replace(block, index=-1))
        aux = one_conv(f"{path}.aux", i, out, num_classes, ones, None) if count - 1 - d.deep_supervision <= i < count - 1 else None
        levels.append(ir.DecoderLevel(i, path, skip, up, lateral, tuple(blocks), aux, reduction))
        c_in, deeper = out, reduction
    # MONAI's SegmentationHead: a 3x3 conv with a bias, no norm or activation.
    head = one_conv("decoder.head", count, c_in, num_classes, (3,) * axes.dims, None)
    return ir.Decoder(d.fuse, tuple(levels), head, num_classes, d.type)


def _check_groups(spec: Spec, groups: int, stem, stages, head, decoder_blocks=()) -> None:
    widths = {**{unit.out_channels: "stem" for unit in stem.units if unit.norm}, **({head.out_channels: "head"} if head else {})}
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
            raise ArgumentError(f"resolution must be integers from 1 to {MAX_SIZE:,}, got {shown(value)}")
        if len(values) not in (1, self.dims):
            raise LoweringError(f"resolution has {len(values)} values for a {self.dims}D network; give 1 or {self.dims}")
        return values * self.dims if len(values) == 1 else values


def spec_lines(spec: Spec, plan: ir.Plan) -> dict[str, str]:
    """Where each part of ``plan`` lowered from ``spec`` was written: module path -> ``file.yaml:line`` (or the override
    that set it), for the stem, every block (its stage row), the head, the classifier and the decoder's parts."""

    def where(path: tuple) -> str:
        file, line = spec.source.locate(path)  # no line: the override that set it
        return f"{os.path.basename(file)}:{line}" if line else str(file)

    lines = {"stem": where(("stem",))}
    mult, _, _ = _multipliers(spec, plan.scaling.phi, plan.scaling.preset)
    repeats = _repeats(spec, mult)
    for rows, stage in zip(_stage_rows(spec), plan.stages):
        paths = iter(block.path for block in stage.blocks)
        for i in rows:
            lines.update((path, where(("stages", i))) for _, path in zip(range(repeats[i]), paths))
    if plan.head is not None:
        lines.update(head=where(("head",)), classifier=where(("head", "num_classes")))
    if plan.decoder is not None:
        for level in plan.decoder.levels:
            lines[level.path] = where(("decoder",))
        lines["decoder.head"] = where(("decoder",))
    return lines
