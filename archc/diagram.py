"""Graphviz diagrams of a Plan, drawn the way the paper draws them: repeated blocks collapse to "xN".

Reads the Plan (and its Plan-only analysis) and never traces a module, so a 55-block network renders in
milliseconds and no weights are allocated. Three levels of detail:

- ``stage``: stem, one node per stage, head (with the classifier); edges carry tensor shapes.
- ``block``: one node per block inside a cluster per stage; a residual block's dashed skip goes from its
  input to a "+" node after it, and the next block reads that sum.
- ``layer``: inside each block its expand, depthwise, SE and project layers and the skip's add.

A U-Net (a Plan with a decoder) adds one node per decoder level going back up, a dashed skip edge from the stage
whose map each level joins and, at stage detail, each level beside that stage: the U of the papers' figures.
"""

from __future__ import annotations

import os

from . import ir
from .analysis import Report, analyze, block_title, kernel_size, stage_title
from .errors import ArgumentError, EmitError
from .files import check_destination, write_atomic
from .formatting import axes, describe_scaling, human, shape
from .kinds.blocks import BLOCKS
from .kinds.decoders import decoder_kind
from .kinds.layers import table
from .kinds.norms import NORMS

DETAILS = ("stage", "block", "layer")
DIRECTIONS = ("TB", "LR")
FORMATS = ("dot", "svg", "png", "pdf")

# One colour per role, the same in every diagram; a block's is its kind's (archc.kinds.blocks).
COLOURS = {"stem": "#d6e4f0", "head": "#f2d7d5", "layer": "#ffffff", "add": "#fdf2c4", "decoder": "#dcecc8"}


def to_dot(plan: ir.Plan, detail: str = "stage", direction: str = "TB") -> "graphviz.Digraph":  # noqa: F821
    """The diagram of ``plan`` as a ``graphviz.Digraph`` (a notebook displays it inline)."""
    import graphviz

    if detail not in DETAILS:
        raise ArgumentError(f"unknown detail {detail!r}; expected {', '.join(DETAILS)}")
    if direction not in DIRECTIONS:
        raise ArgumentError(f"unknown direction {direction!r}; expected {' or '.join(DIRECTIONS)}")
    report = analyze(plan)
    graph = graphviz.Digraph(dot_text(plan.name))
    graph.attr(rankdir=direction, label=dot_text(_title(report)), labelloc="t", fontname="Helvetica", fontsize="16", nodesep="0.3")
    graph.attr("node", shape="box", style="rounded,filled", fontname="Helvetica", fontsize="11", color="#555555")
    graph.attr("edge", fontname="Helvetica", fontsize="9", color="#555555")

    graph.node("stem", dot_text(_stem_label(plan, report)), fillcolor=COLOURS["stem"])
    previous = "stem"
    ends = {}  # stage index -> the node its output leaves from (a U-Net's skips start there)
    for stage in plan.stages:
        if detail == "stage":
            previous = _stage_node(graph, stage, report, previous)
        else:
            draw = _block_node if detail == "block" else _block_layers
            with graph.subgraph(name=f"cluster_{stage.index}") as cluster:
                cluster.attr(label=dot_text(_stage_title(stage)), style="rounded,dashed", color="#999999", fontsize="12")
                for block in stage.blocks:
                    previous = draw(cluster, graph, block, report, previous)
        ends[stage.index] = previous
    last = dot_text(_shape(report.shape_of(_last_path(plan))))
    if plan.decoder is not None:
        decoder_kind(plan.decoder.type).part("drawing")(graph, plan, report, previous, ends, beside=detail == "stage")
        return graph
    if plan.head is None:  # a features encoder: its output is the map of each reduction level
        levels = [f"stage {f.stage}: {f.channels} ch, /{_axes(f.reduction)}" for f in plan.features]
        graph.node("features", dot_text("\n".join(["features (one map per level)", *levels])), fillcolor=COLOURS["head"])
        graph.edge(previous, "features", label=last)
        return graph
    graph.node("head", dot_text(_head_label(plan, report)), fillcolor=COLOURS["head"])
    graph.edge(previous, "head", label=last)
    return graph


def dot_text(text: str) -> str:
    """The one way text reaches DOT. A backslash stays a backslash (a final one cannot escape the closing
    quote), text that looks like ``<...>`` is never taken as HTML-like markup (which could add nodes, links or
    images), and control characters are replaced, so the .dot file and the picture hold exactly the text."""
    import graphviz

    printable = "".join(c if c.isprintable() or c == "\n" else "\ufffd" for c in text)
    return graphviz.escape(printable)


def write(graph: "graphviz.Digraph", path: str | os.PathLike) -> None:  # noqa: F821
    """Write ``graph`` to ``path``; the format follows its extension (``.dot`` needs no ``dot`` binary)."""
    import graphviz

    path = os.fspath(path)
    fmt = output_format(path)
    check_destination(path)  # before asking for `dot`: a missing folder is the first thing to fix
    if fmt == "dot":
        write_atomic(path, graph.source)
        return
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise EmitError(
            f"drawing .{fmt} needs Graphviz's `dot` program, which is not installed "
            "(Debian/Ubuntu: apt-get install graphviz; macOS: brew install graphviz); "
            "a .dot file needs no binary",
            file=path,
        ) from None
    except graphviz.CalledProcessError as exc:
        raise EmitError(f"dot failed: {exc.stderr.decode(errors='replace').strip()}", file=path) from None
    write_atomic(path, data)


def output_format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    if extension not in FORMATS:
        raise ArgumentError(f"unknown output format {('.' + extension) if extension else '(no extension)'}; "
                        f"use {', '.join('.' + f for f in FORMATS)}, or .html for the interactive page", file=path)
    return extension


# --------------------------------------------------------------------------- nodes


def _stage_node(graph, stage: ir.Stage, report: Report, previous: str) -> str:
    name = f"stages.{stage.index}"
    blocks = stage.blocks
    params = report.row(str(stage.index)).params
    widths = sorted({b.se_channels for b in blocks})  # the first block's input differs from the rest's
    se = "none" if widths == [0] else "–".join(map(str, widths))
    lines = [
        f"{_stage_title(stage)}",
        f"stride {_axes(stage.stride)}   SE {se}   {blocks[0].in_channels}→{blocks[-1].out_channels}",
        f"out {_shape(report.shape_of(blocks[-1].path))}",
        f"{params:,} params",
    ]
    graph.node(name, dot_text("\n".join(lines)), fillcolor=BLOCKS[blocks[-1].type].colour)
    graph.edge(previous, name, label=dot_text(_shape(_input_shape(blocks[0], report))))
    return name


def _block_node(cluster, graph, block: ir.Block, report: Report, previous: str) -> str:
    cost = report.part(block.path)
    lines = [
        f"{block.path}  {block_title(block)}" + ("" if block.mixed_kernels else f" k{_axes(block.kernel)}")  # a mixed block's title names its kernels
        + (f" s{_axes(block.stride)}" if any(s > 1 for s in block.stride) else ""),
        f"{block.in_channels}→{block.out_channels}   SE {block.se_channels or 'none'}",
        f"out {_shape(cost.shape)}   {cost.params:,} params",
    ]
    if block.residual:
        lines.append(f"drop-path {block.drop_path:.3f}")
    cluster.node(block.path, dot_text("\n".join(lines)), fillcolor=BLOCKS[block.type].colour)
    graph.edge(previous, block.path, label=dot_text(_shape(_input_shape(block, report))))
    if not block.residual:
        return block.path
    # The skip goes around this block only: its input and its output meet in an add node in the same stage,
    # and the next block reads the sum (as the layer view draws it).
    add = _add_node(cluster, block)
    graph.edge(block.path, add, label=dot_text(_shape(cost.shape)))
    graph.edge(previous, add, style="dashed", color="#2a7ab0", label="skip", tooltip=dot_text(f"skip around {block.path}"))
    return add


def _block_layers(cluster, graph, block: ir.Block, report: Report, previous: str) -> str:
    """The block's convolutions and SE in order [-> add], inside a cluster of its own."""
    norm = NORMS[report.plan.norm.type].label
    in_shape = _input_shape(block, report)
    layers, shape = [], in_shape  # (role, label, output shape): the Plan's layers, the shapes the analysis found
    for layer in block.layers:
        label, shape = _LABELS[type(layer)](layer, block.path, report, norm, shape)
        layers.append((layer.name, label, shape))
    with cluster.subgraph(name=f"cluster_{block.path}") as inner:
        drop_path = f"   drop-path {block.drop_path:.3f}" if block.residual else ""
        inner.attr(label=dot_text(f"{block.path}{drop_path}"), style="rounded", color="#bbbbbb", fontsize="10")
        source, shape = previous, in_shape
        for role, label, layer_shape in layers:
            node = f"{block.path}.{role}"
            inner.node(node, dot_text(label), fillcolor=COLOURS["layer"])
            graph.edge(source, node, label=dot_text(_shape(shape)))
            source, shape = node, layer_shape
        if block.residual:
            add = _add_node(inner, block)
            graph.edge(source, add, label=dot_text(_shape(shape)))
            skip, skip_shape, attributes = previous, in_shape, {"style": "dashed", "color": "#2a7ab0"}
            for layer in block.shortcut:  # the skip's own layers (a projection), on the dashed path
                label, layer_shape = _LABELS[type(layer)](layer, f"{block.path}.{ir.SHORTCUT}", report, norm, skip_shape)
                node = f"{block.path}.{ir.SHORTCUT}.{layer.name}"
                inner.node(node, dot_text(label), fillcolor=COLOURS["layer"])
                graph.edge(skip, node, label="skip" if skip == previous else dot_text(_shape(skip_shape)), **attributes)
                skip, skip_shape = node, layer_shape
            graph.edge(skip, add, label="skip" if skip == previous else dot_text(_shape(skip_shape)), **attributes)
            source = add
        if block.activation_after:
            node = f"{block.path}.act_after"
            inner.node(node, dot_text(block.activation_after), fillcolor=COLOURS["layer"])
            graph.edge(source, node, label=dot_text(_shape(report.part(block.path).shape)))
            source = node
    return source


def unet_nodes(graph, plan: ir.Plan, report: Report, previous: str, ends: dict, beside: bool) -> None:
    """A U-Net's decoder: one node per level going back up, each beside the encoder stage whose map it joins
    (``beside``: the same rank, which draws the U), a dashed skip edge from that stage, then the head."""
    decoder = plan.decoder
    norm = NORMS[plan.norm.type].label
    shape_in = report.shape_of(_last_path(plan))
    for level in decoder.levels:
        name, up, first = level.path, level.up, level.blocks[0]
        params = report.row(f"decoder.{level.index}").params
        joined = "" if level.skip is None else f", {decoder.fuse} skip"
        unit = first.convs[0]
        lines = [
            f"decoder level {level.index}: up ×{_axes(up.scale)} {up.mode}{joined}",
            f"{block_title(first)} k{_axes(first.kernel)} ×{len(level.blocks)}   {first.in_channels}→{level.out_channels}"
            + (f", {norm}, {unit.activation}" if len(first.layers) == 1 else ""),  # a single conv unit: its norm and activation
            f"out {_shape(report.shape_of(level.blocks[-1].path))}",
            f"{params:,} params",
        ]
        graph.node(name, dot_text("\n".join(lines)), fillcolor=COLOURS["decoder"])
        graph.edge(previous, name, label=dot_text(_shape(shape_in)))
        if level.skip is not None:
            source = ends[level.skip.stage]
            graph.edge(source, name, style="dashed", color="#2a7ab0", label=dot_text(f"skip {_shape(report.shape_of(level.skip.path))}"),
                       constraint="false")
            if beside:
                with graph.subgraph() as row:
                    row.attr(rank="same")
                    row.node(source)
                    row.node(name)
        previous, shape_in = name, report.shape_of(level.blocks[-1].path)
    head = decoder.head
    params = report.row("decoder.head").params
    lines = [f"head: conv k{_axes(head.kernel)} {head.in_channels}→{head.out_channels} (segmentation)",
             f"out {_shape(report.shape_of(head.path))}   {params:,} params"]
    graph.node("head", dot_text("\n".join(lines)), fillcolor=COLOURS["head"])
    graph.edge(previous, "head", label=dot_text(_shape(shape_in)))


def _conv_label(conv: ir.ConvUnit, norm: str) -> str:
    tail = (f", {norm}" if conv.norm else "") + (f", {conv.activation}" if conv.act else "")
    if conv.kernels:  # MixNet: one conv per channel group
        kind = "mixed depthwise" if conv.groups > 1 else f"{len(conv.kernels)} grouped convs"
        return f"{kind} k{','.join(kernel_size(k) for k in conv.kernels)} s{_axes(conv.stride)} {conv.in_channels}→{conv.out_channels}{tail}"
    if conv.groups > 1 and conv.groups == conv.in_channels:
        return f"depthwise k{_axes(conv.kernel)} s{_axes(conv.stride)}{tail}"
    if all(k == 1 for k in conv.kernel) and all(st == 1 for st in conv.stride):
        return f"1×1 conv {conv.in_channels}→{conv.out_channels}{tail}"
    return f"conv k{_axes(conv.kernel)} s{_axes(conv.stride)} {conv.in_channels}→{conv.out_channels}{tail}"


def _conv_node(conv: ir.ConvUnit, prefix: str, report: Report, norm: str, shape) -> tuple[str, tuple[int, ...]]:
    first = report.layer(f"{prefix}.{conv.conv}" + (".0" if conv.kernels else ""))  # a mixed conv's first part
    return _conv_label(conv, norm), (conv.out_channels, *first.shape[1:])


# Each layer kind's node in the layer view: (layer, its block's path, report, norm label, input shape) -> (label,
# output shape). An SE and a layer scale keep their input's shape.
_LABELS = table("diagram", {
    ir.ConvUnit: _conv_node,
    ir.SqueezeExcite: lambda layer, prefix, report, norm, shape: (f"SE {layer.channels}→{layer.squeeze}→{layer.channels}, {layer.gate}", shape),
    ir.ECA: lambda layer, prefix, report, norm, shape: (f"ECA k{layer.kernel}, {layer.gate}", shape),
    ir.LayerScale: lambda layer, prefix, report, norm, shape: (f"layer scale ×{layer.init:g}", shape),
    ir.NormLayer: lambda layer, prefix, report, norm, shape: (f"{norm} {layer.channels}", shape),
    ir.GRN: lambda layer, prefix, report, norm, shape: (f"GRN {layer.channels}", shape),
    ir.Pool: lambda layer, prefix, report, norm, shape: (f"{layer.kind} pool k{_axes(layer.kernel)} s{_axes(layer.stride)}",
                                                         report.layer(f"{prefix}.{layer.name}").shape),
    ir.ChannelPad: lambda layer, prefix, report, norm, shape: (f"zero channels {layer.in_channels}→{layer.out_channels}",
                                                               report.layer(f"{prefix}.{layer.name}").shape),
})


def _add_node(cluster, block: ir.Block) -> str:
    """The "+" where a residual block's output and its skip meet, drawn inside the block's own cluster."""
    add = f"{block.path}.add"
    cluster.node(add, "+", shape="circle", width="0.3", fixedsize="true", fillcolor=COLOURS["add"], fontsize="12")
    return add


# --------------------------------------------------------------------------- labels


def _title(report: Report) -> str:
    plan = report.plan
    return (
        f"{plan.name}   {describe_scaling(plan)}   {plan.dims}D   "
        f"{report.params:,} parameters   {human(report.macs)} MACs at {_shape(report.input_shape)}"
    )


def _stem_label(plan: ir.Plan, report: Report) -> str:
    stem = plan.stem
    convs = [f"conv k{_axes(u.kernel)} s{_axes(u.stride)}" + (f", {NORMS[plan.norm.type].label}" if u.norm else "") + (f", {u.activation}" if u.act else "")
             for u in stem.units]
    pool = [f"{stem.pool.kind} pool k{_axes(stem.pool.kernel)} s{_axes(stem.pool.stride)}"] if stem.pool else []
    return "\n".join([
        "stem: " + " → ".join(convs + pool),
        f"in {_shape(report.input_shape)}",
        f"{stem.in_channels}→{stem.out_channels}   {report.parts[0].params:,} params",
    ])


def _head_label(plan: ir.Plan, report: Report) -> str:
    head = plan.head
    params = sum(p.params for p in report.parts if p.path in ("head", "classifier"))
    classifier = f"dropout {head.dropout:g} → linear {head.out_channels}→{head.num_classes}" if head.num_classes else "pooled features"
    if head.type == "norm":
        first, then = f"head: global average pool → {NORMS[plan.norm.type].label}", classifier
    elif head.conv is None:
        first, then = "head: global average pool", classifier
    elif head.type == "efficient":  # pooled first: the conv sees one position
        norm = f", {NORMS[plan.norm.type].label}" if head.conv.norm else " with bias"
        first, then = f"head: global average pool → 1×1 conv {head.conv.in_channels}→{head.conv.out_channels}{norm}, {head.conv.activation}", classifier
    else:
        conv = f"1×1 conv {head.conv.in_channels}→{head.conv.out_channels}"
        first, then = f"head: {conv}, {NORMS[plan.norm.type].label}, {head.conv.activation}", f"global average pool → {classifier}"
    return "\n".join([
        first,
        then,
        f"out {_shape(report.rows[-1].shape)}   {params:,} params",
    ])


def _stage_title(stage: ir.Stage) -> str:
    repeats = f" ×{len(stage.blocks)}" if len(stage.blocks) > 1 else ""
    kernels = "/".join(dict.fromkeys(_axes(block.kernel) for block in stage.blocks if not block.mixed_kernels))
    return f"stage {stage.index}: {stage_title(stage)}{' k' + kernels if kernels else ''}{repeats}"


def _input_shape(block: ir.Block, report: Report) -> tuple[int, ...]:
    """Shape entering ``block``: the output of whatever precedes it."""
    return report.part_before(block.path).shape


def _last_path(plan: ir.Plan) -> str:
    return plan.blocks[-1].path


def _axes(values: tuple[int, ...]) -> str:
    return axes(values, "×")


def _shape(values: tuple[int, ...]) -> str:
    return shape(values, "×")
