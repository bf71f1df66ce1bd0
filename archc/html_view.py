"""An interactive view of a Plan: one self-contained HTML file that opens at stage level and expands a stage into
its blocks and a block into its layers.

The figures are ``analyze(plan).to_dict()``, what ``archc info --json`` prints, embedded whole as JSON; this module
adds only the structure the page draws (which parts make a stage row, which layers a part, which blocks repeat)
and, when the spec is known, the line each part was written on. The script and style (``html_view.js``,
``html_view.css`` beside this file) are inlined: the page loads nothing, so it works offline and from ``file://``.

Names reach the page only inside the JSON, which the script reads with ``JSON.parse`` and writes with
``textContent``: a name is never markup. The JSON is escaped so that no ``</script>`` or ``<!--`` inside it can
end its element.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

from . import ir
from .analysis import Report, analyze, block_title, kernel_size
from .formatting import axes
from .kinds.blocks import BLOCKS
from .kinds.decoders import decoder_kind
from .summary import millimetres, mm_text

_DOCUMENT = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:">
<title>archc</title>
<style>
{style}
</style>
</head>
<body>
<header>
<h1 id="title"></h1>
<p id="totals"></p>
<form id="find" role="search" autocomplete="off">
<label for="search">Find a layer</label>
<input id="search" type="search" list="paths" placeholder="stages.3.1.conv_dw  (press /)" spellcheck="false">
<datalist id="paths"></datalist>
<output id="search-status" for="search"></output>
</form>
</header>
<main>
<section id="network" aria-label="network">
<p class="hint">Click or press Enter to open a stage, a block or a repeated run (x N); arrow keys move; / finds a layer.</p>
<div id="tree" role="tree" aria-label="stages, blocks and layers"></div>
<svg id="skips" aria-hidden="true"></svg>
</section>
<aside id="panel" aria-live="polite">
<h2 id="panel-title">Select an item</h2>
<dl id="panel-fields"></dl>
</aside>
</main>
<script type="application/json" id="archc-data">{data}</script>
<script>
{script}
</script>
</body>
</html>
"""


def to_html(plan: ir.Plan, lines: dict[str, str] | None = None, report: Report | None = None, spacing: tuple[float, ...] | None = None) -> str:
    """The page of ``plan``; ``lines``: module path -> where the spec wrote it (``lower.spec_lines``); ``spacing``
    (mm per axis): each stage also shows its voxel size, extent and receptive field in mm, as ``archc info --spacing``."""
    report = report or analyze(plan)
    data = {"info": report.to_dict(), "view": view(plan, report, lines or {})}
    if spacing is not None:
        data["millimetres"] = millimetre_rows(report, tuple(spacing))
    return _DOCUMENT.format(style=_kind_colours() + _asset("html_view.css"), script=_asset("html_view.js"), data=script_json(data))


def _kind_colours() -> str:
    """A block's box in its kind's colour, as the diagrams draw it; first, so that the stylesheet's roles (``.run``) win."""
    return "".join(f".{kind.name} > .box {{ background: {kind.colour}; }}\n" for kind in BLOCKS.values())


def millimetre_rows(report: Report, spacing: tuple[float, ...]) -> dict:
    """``archc info --spacing``'s rows (summary.millimetres), written as that table writes them, by row name."""
    return {"spacing": mm_text(spacing), "rows": {row["name"]: {key: mm_text(row[key]) for key in ("voxel", "extent", "receptive_field")}
                                                  for row in millimetres(report, spacing)}}


def script_json(value) -> str:
    """JSON that can sit inside a ``<script>`` element: ``<``, ``>`` and ``&`` as ``\\u`` escapes (so neither
    ``</script>`` nor ``<!--`` can appear), and the line separators JavaScript once refused in strings."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def view(plan: ir.Plan, report: Report, lines: dict[str, str]) -> dict:
    """The structure the page draws, by module path; every figure stays in the report."""
    parts = [p.path for p in report.parts]
    layers: dict[str, list[str]] = {path: [] for path in parts}
    owners = sorted(parts, key=len, reverse=True)  # the longest prefix owns a layer (decoder.levels.0.up.conv: the up)
    for layer in report.layers:
        owner = next(p for p in owners if layer.path == p or layer.path.startswith(p + "."))
        layers[owner].append(layer.path)
    labels = {"stem": f"Stem conv k{kernel_size(plan.stem.kernel)} s{axes(plan.stem.reduction)}", "classifier": "Classifier (linear)"}
    kinds = {"stem": "stem", "head": "head", "classifier": "head"}
    residual = set()
    for block in plan.blocks:
        labels[block.path] = _block_label(block)
        kinds[block.path] = block.type
        if block.residual:
            residual.add(block.path)
    if plan.head is not None and plan.head.conv is not None:
        labels["head"] = f"Head conv 1x1 to {plan.head.conv.out_channels}" + (" (after pooling)" if plan.head.type == "efficient" else "")
    decoder = decoder_kind(plan.decoder.type).part("page")(plan) if plan.decoder is not None else DecoderPage({}, {}, {})
    labels.update(decoder.labels)
    kinds.update(decoder.kinds)
    rows = []
    for row in report.rows:
        mine = [p for p in parts if _in_row(row.name, p, decoder)]
        label, note = _row_label(row.name, row.block, decoder)
        skip = decoder.rows[row.name].skip if row.name in decoder.rows else None
        rows.append({"name": row.name, "label": label, "note": note, "kind": kinds.get(mine[0], "decoder"),
                     "parts": mine, "runs": _runs(plan, mine), "skip": skip})
    return {
        "rows": rows,
        "parts": {p: {"label": labels.get(p, p), "kind": kinds.get(p, "layer"), "residual": p in residual, "layers": layers[p],
                      "line": lines.get(p) or next((lines[q] for q in lines if p.startswith(q + ".")), None)} for p in parts},
    }


def _in_row(row: str, part: str, decoder: DecoderPage) -> bool:
    if row.isdigit():
        return part.startswith(f"stages.{row}.")
    if row in decoder.rows:
        holds = decoder.rows[row].parts
        return part.startswith(holds) if holds.endswith(".") else part == holds
    return part == row


def _row_label(name: str, title: str, decoder: DecoderPage) -> tuple[str, str | None]:
    """A row's title and what the page writes after its repeats (where a decoder level's skip comes from)."""
    if name.isdigit():
        return f"Stage {name}: {title}", None
    if name in decoder.rows:
        row = decoder.rows[name]
        return row.title.format(title), row.note
    return {"stem": "Stem", "head": "Head", "classifier": "Classifier"}.get(name, name), None


@dataclass(frozen=True)
class DecoderRow:
    """One of the analysis's rows of a decoder, as the page shows it."""

    title: str  # "{}" stands for the row's block title (the analysis's)
    note: str | None  # written after its repeats
    skip: str | None  # the row whose map it joins ("stem", a stage's number): the page draws an arc from it
    parts: str  # the module path of its one part, or (ending ".") the prefix of every part it holds


@dataclass(frozen=True)
class DecoderPage:
    """What the page draws of a decoder (its kind's ``page`` gives it, ``archc.kinds.decoders``): each part's label
    and kind (its colour, html_view.css), and each of its rows by the analysis's row name."""

    labels: dict[str, str]
    kinds: dict[str, str]
    rows: dict[str, DecoderRow]


def unet_page(plan: ir.Plan) -> DecoderPage:
    """A U-Net's parts: each level's upsampling and blocks, one row per level (a dashed arc from the stage its skip
    comes from), then the segmentation head."""
    labels, kinds, rows = {"decoder.head": "Segmentation head conv 1x1"}, {"decoder.head": "decoder"}, {}
    for level in plan.decoder.levels:
        up = level.up
        labels[f"{level.path}.up"] = f"Up x{axes(up.scale)} {up.mode}, {up.in_channels} to {up.out_channels} ch"
        kinds[f"{level.path}.up"] = "decoder"
        for block in (level.lateral, *level.blocks, level.aux):
            if block is not None:
                labels[block.path], kinds[block.path] = _block_label(block), "decoder"
        skip = None if level.skip is None else ("stem" if level.skip.stage < 0 else str(level.skip.stage))
        joins = "no skip: back to the input's size" if level.skip is None else "joins the stem" if level.skip.stage < 0 else f"joins stage {level.skip.stage}"
        rows[f"decoder.{level.index}"] = DecoderRow(f"Decoder level {level.index}: {{}}", joins, skip, f"{level.path}.")
    rows["decoder.head"] = DecoderRow("Segmentation head", None, None, "decoder.head")
    return DecoderPage(labels, kinds, rows)


def _block_label(block: ir.Block) -> str:
    kernel = "" if block.mixed_kernels else f" k{kernel_size(block.kernel)}"  # a mixed block's title names its kernels
    stride = f" s{axes(block.stride)}" if any(s > 1 for s in block.stride) else ""
    se = f", SE {block.se_channels}" if block.se_channels else ""
    return f"{block_title(block)}{kernel}{stride}, {block.in_channels} to {block.out_channels} ch{se}"


def _runs(plan: ir.Plan, paths: list[str]) -> list[list[int]]:
    """[first, count] of each run of two or more consecutive blocks that differ only in their index (the repeats of a
    stage row after its first block): the page draws a run as one item, ``x N``, until it is opened."""
    blocks = {b.path: b for b in plan.blocks}
    keys = [_signature(blocks[p]) if p in blocks else None for p in paths]
    runs, start = [], 0
    for i in range(1, len(paths) + 1):
        if i == len(paths) or keys[i] is None or keys[i] != keys[start]:
            if keys[start] is not None and i - start > 1:
                runs.append([start, i - start])
            start = i
    return runs


def _signature(block: ir.Block) -> tuple:
    return (block.type, block.in_channels, block.out_channels, block.kernel, block.stride, block.expand_ratio, block.residual,
            tuple((type(layer).__name__, *(getattr(layer, f, None) for f in ("conv", "kernel", "stride", "groups", "squeeze"))) for layer in block.layers))


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
