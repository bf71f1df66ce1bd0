"""The per-stage table that ``archc build`` prints, from an analysis Report. Plain ASCII, so any terminal shows it."""

from __future__ import annotations

from . import ir
from .analysis import Report


def describe_scaling(plan: ir.Plan) -> str:
    s = plan.scaling
    if s.preset is not None:
        how = f"preset {s.preset}"
    elif s.phi is not None:
        how = f"phi {s.phi:g}"
    else:
        return "unscaled"
    return f"{how} (width {s.width:.3f}, depth {s.depth:.3f})"


def format_summary(report: Report) -> str:
    plan = report.plan
    lines = [
        f"{plan.name}: {plan.dims}D, {describe_scaling(plan)}, input {_shape(report.input_shape)}",
        "",
    ]
    header = ("stage", "block", "n", "channels", "kernel", "stride", "SE", "output", "params", "MACs")
    table = [header]
    for row in report.rows:
        table.append(
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
    table.append(("total", "", str(len(plan.blocks)), "", "", "", "", "", f"{report.params:,}", human(report.macs)))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    right = {2, 8, 9}  # numbers align right
    for r, cells in enumerate(table):
        if r == len(table) - 1:
            lines.append("  ".join("-" * w for w in widths))
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip())
    lines.append("")
    lines.append(f"parameters {report.params:,}   MACs {human(report.macs)} per sample (convolutions and linear layers)")
    return "\n".join(lines)


def human(n: int) -> str:
    """Three significant digits: 1234567 -> '1.23M', 10035712 -> '10.0M', 386000000 -> '386M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            value = n / size
            decimals = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{decimals}f}{unit}"
    return str(n)


def _axes(values: tuple[int, ...]) -> str:
    if not values:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
