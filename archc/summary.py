"""The per-stage table that ``archc build`` prints, from an analysis Report. Plain ASCII, so any terminal shows it."""

from __future__ import annotations

from .analysis import Report
from .formatting import axes as _axes
from .formatting import describe_scaling, human, size
from .formatting import shape as _shape


def format_summary(report: Report) -> str:
    plan = report.plan
    lines = [
        f"{plan.name}: {plan.dims}D, {describe_scaling(plan)}, input {_shape(report.input_shape)}",
        "",
    ]
    header = ("stage", "block", "n", "channels", "kernel", "stride", "SE", "output", "params", "MACs")
    cells = [header]
    for row in report.rows:
        cells.append(
            (
                row.name,
                row.block,
                str(row.repeats),
                f"{row.in_channels}->{row.out_channels}",
                _axes(row.kernel),
                _axes(row.stride),
                str(row.se_channels) if row.se_channels else "-",
                _shape(row.shape),
                f"{row.params:,}",
                human(row.macs),
            )
        )
    cells.append(("total", "", str(len(plan.blocks)), "", "", "", "", "", f"{report.params:,}", human(report.macs)))
    lines += table(cells, right={2, 8, 9})  # numbers align right
    lines.append("")
    lines.append(f"parameters {report.params:,}   MACs {human(report.macs)} per sample (convolutions and linear layers)")
    return "\n".join(lines)


def format_info(report: Report) -> str:
    """``archc info``: per stage its output shape, receptive field, parameters, MACs and training activation memory."""
    plan = report.plan
    lines = [f"{plan.name}: {plan.dims}D, {describe_scaling(plan)}, input {_shape(report.input_shape)}, padding {plan.padding}", ""]
    header = ("stage", "block", "n", "output", "receptive field", "params", "MACs", "act fp32", "act bf16")
    cells = [header]
    for row in report.rows:
        cells.append((row.name, row.block, str(row.repeats), _shape(row.shape), _shape(row.receptive_field),
                      f"{row.params:,}", human(row.macs), size(4 * row.activations), size(2 * row.activations)))
    cells.append(("total", "", str(len(plan.blocks)), "", "", f"{report.params:,}", human(report.macs),
                  size(report.activation_bytes(4)), size(report.activation_bytes(2))))
    lines += table(cells, right={2, 5, 6, 7, 8})
    lines += ["", "activation memory: what one training sample keeps for backward (fp32 / bf16); multiply by the batch size"]
    lines += ["feature levels: " + ", ".join(f"stage {f.stage} ({f.channels} ch, /{_axes(f.reduction)})" for f in plan.features)]
    return "\n".join(lines)


def millimetres(report: Report, spacing: tuple[float, ...]) -> list[dict]:
    """Per row with a feature map: its voxel size (input spacing x the stride so far), its extent and its receptive
    field, in mm (``archc info --spacing``)."""
    plan = report.plan
    if len(spacing) != plan.dims:
        from .errors import PlanningError

        raise PlanningError(f"spacing has {len(spacing)} values for a {plan.dims}D network; give one per axis (depth, height, width)")
    rows, stride = [], (1,) * plan.dims
    for row in report.rows:
        if len(row.shape) != plan.dims + 1:  # the classifier's scores have no extent
            continue
        stride = tuple(s * r for s, r in zip(stride, row.stride))
        voxel = tuple(mm * s for mm, s in zip(spacing, stride))
        rows.append({"name": row.name, "voxel": voxel, "extent": tuple(n * v for n, v in zip(row.shape[1:], voxel)),
                     "receptive_field": tuple(rf * mm for rf, mm in zip(row.receptive_field, spacing))})
    return rows


def format_millimetres(rows: list[dict], spacing: tuple[float, ...]) -> str:
    """The rows of :func:`millimetres` as a table."""
    cells = [("stage", "voxel (mm)", "extent (mm)", "receptive field (mm)")]
    for row in rows:
        cells.append((row["name"], mm_text(row["voxel"]), mm_text(row["extent"]), mm_text(row["receptive_field"])))
    return "\n".join([f"in millimetres, at {mm_text(spacing)} mm voxels:", *table(cells, right=set())])


def mm_text(values) -> str:
    """Millimetres per axis as the reports write them (the HTML view shows the same text)."""
    return "x".join(f"{v:.0f}" if v >= 100 else f"{v:.3g}" for v in values)


def format_blocks(report: Report) -> str:
    """``archc info --detail block``: one row per part (stem, each block, head, classifier)."""
    cells = [("module", "output", "receptive field", "params", "MACs", "act fp32")]
    cells += [(p.path, _shape(p.shape), _shape(p.receptive_field), f"{p.params:,}", human(p.macs), size(4 * p.activations)) for p in report.parts]
    cells.append(("total", "", "", f"{report.params:,}", human(report.macs), size(report.activation_bytes(4))))
    return "\n".join(_heading(report) + table(cells, right={3, 4, 5}))


def format_layers(report: Report) -> str:
    """``archc info --detail layer``: one row per module that computes, as torchinfo lists them, from the Plan."""
    cells = [("module", "type", "in->out", "kernel", "stride", "groups", "output", "params", "MACs")]
    for layer in report.layers:
        cells.append((layer.path, f"{layer.type} {layer.detail}", f"{layer.in_channels}->{layer.out_channels}", _axes(layer.kernel),
                      _axes(layer.stride), str(layer.groups), _shape(layer.shape), f"{layer.params:,}", human(layer.macs)))
    cells.append(("total", "", "", "", "", "", "", f"{report.params:,}", human(report.macs)))
    return "\n".join(_heading(report) + table(cells, right={5, 7, 8}))


def _heading(report: Report) -> list[str]:
    plan = report.plan
    return [f"{plan.name}: {plan.dims}D, {describe_scaling(plan)}, input {_shape(report.input_shape)}, padding {plan.padding}", ""]


def table(rows: list[tuple[str, ...]], right: set[int], total: bool = True) -> list[str]:
    """Aligned columns; with ``total`` a rule before the last row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r, cells in enumerate(rows):
        if total and r == len(rows) - 1:
            out.append("  ".join("-" * w for w in widths))
        out.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    return out
