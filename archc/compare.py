"""Two compiled networks side by side, stage by stage: what changed (block, repeats, channels, kernel, stride, SE,
output shape) and the change in parameters, MACs and training activation memory. This is how a user sees what
phi, a preset or an override did. Reads two analysis Reports (the figures ``archc info`` prints) and nothing else.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from .analysis import Report, StageRow
from .formatting import axes, describe_scaling, human, shape, size
from .summary import table

# What a row is, field by field, as the tables write it; a change in any of these is named.
_FIELDS = (
    ("block", lambda r: r.block),
    ("repeats", lambda r: str(r.repeats)),
    ("channels", lambda r: f"{r.in_channels}->{r.out_channels}"),
    ("kernel", lambda r: axes(r.kernel)),
    ("stride", lambda r: axes(r.stride)),
    ("SE", lambda r: str(r.se_channels) if r.se_channels else "none"),
    ("output", lambda r: shape(r.shape)),
)


@dataclass(frozen=True)
class RowChange:
    """One stage row (``stem``, ``3``, ``head``, ``decoder.1``, ...) in either network; None where a network lacks it."""

    name: str
    a: StageRow | None
    b: StageRow | None

    @property
    def changes(self) -> tuple[str, ...]:
        if self.a is None or self.b is None:
            return ("only in " + ("B" if self.a is None else "A"),)
        return tuple(f"{name} {get(self.a)} -> {get(self.b)}" for name, get in _FIELDS if get(self.a) != get(self.b))

    def delta(self, key: str) -> int:
        """B's figure minus A's (``params``, ``macs`` or ``activations``); a missing row counts as 0."""
        return (getattr(self.b, key) if self.b else 0) - (getattr(self.a, key) if self.a else 0)


@dataclass(frozen=True)
class Comparison:
    a: Report
    b: Report
    rows: tuple[RowChange, ...]

    def delta(self, key: str) -> int:
        return getattr(self.b, key) - getattr(self.a, key)

    def to_dict(self) -> dict:
        return {
            "a": _title(self.a), "b": _title(self.b),
            "rows": [{"name": r.name, "changes": list(r.changes), "params": r.delta("params"), "macs": r.delta("macs"),
                      "activations": r.delta("activations")} for r in self.rows],
            "params": self.delta("params"), "macs": self.delta("macs"), "activations": self.delta("activations"),
        }


def compare(a: Report, b: Report) -> Comparison:
    """Rows matched by name, in A's order, with B's extra rows (a deeper network's stages) where B has them."""
    rows_a, rows_b = {r.name: r for r in a.rows}, {r.name: r for r in b.rows}
    names = list(rows_a)
    for i, name in enumerate(rows_b):
        if name not in rows_a:
            after = list(rows_b)[i - 1] if i else None
            names.insert(names.index(after) + 1 if after in names else len(names), name)
    return Comparison(a, b, tuple(RowChange(n, rows_a.get(n), rows_b.get(n)) for n in names))


def format_comparison(c: Comparison) -> str:
    """``archc info A --compare B``: one line per stage row, its changes and the change in each figure."""
    cells = [("stage", "A", "B", "changed", "params", "MACs", "act fp32")]
    for r in c.rows:
        cells.append((r.name, _cell(r.a), _cell(r.b), "; ".join(r.changes), _signed(r.delta("params")), _signed_human(r.delta("macs")),
                      _signed_size(4 * r.delta("activations"))))
    cells.append(("total", f"{c.a.params:,}", f"{c.b.params:,}", "", _signed(c.delta("params")), _signed_human(c.delta("macs")),
                  _signed_size(4 * c.delta("activations"))))
    lines = [f"A: {_title(c.a)}", f"B: {_title(c.b)}", ""]
    lines += table(cells, right={4, 5, 6})
    lines += ["", "the last three columns are B minus A: parameters, MACs and the training activation memory of one sample (fp32)"]
    return "\n".join(lines)


def to_html(c: Comparison) -> str:
    """The comparison as one static HTML page: a table, every cell escaped text, no script, nothing loaded."""
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in ("stage", "A", "B", "changed", "params", "MACs", "activation memory (fp32)"))
    body = []
    for r in c.rows:
        changed = r.changes
        cells = [r.name, _cell(r.a), _cell(r.b), "; ".join(changed), _signed(r.delta("params")), _signed_human(r.delta("macs")),
                 _signed_size(4 * r.delta("activations"))]
        body.append(f'<tr class="{"changed" if changed else "same"}">' + "".join(f"<td>{e(x)}</td>" for x in cells) + "</tr>")
    total = ["total", f"{c.a.params:,} params", f"{c.b.params:,} params", "", _signed(c.delta("params")), _signed_human(c.delta("macs")),
             _signed_size(4 * c.delta("activations"))]
    body.append('<tr class="total">' + "".join(f"<td>{e(x)}</td>" for x in total) + "</tr>")
    return _PAGE.format(title=e(f"{c.a.plan.name} vs {c.b.plan.name}"), a=e(_title(c.a)), b=e(_title(c.b)), head=head, body="\n".join(body))


def _title(report: Report) -> str:
    plan = report.plan
    return f"{plan.name}: {plan.dims}D, {describe_scaling(plan)}, input {shape(report.input_shape)}"


def _cell(row: StageRow | None) -> str:
    if row is None:
        return "-"
    return f"{row.block} x{row.repeats}, {row.in_channels}->{row.out_channels}, out {shape(row.shape)}"


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def _signed_human(n: int) -> str:
    return ("+" if n > 0 else "-") + human(abs(n)) if n else "0"


def _signed_size(n: int) -> str:
    return ("+" if n > 0 else "-") + size(abs(n)) if n else "0"


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>
body {{ font-family: system-ui, "Segoe UI", Helvetica, Arial, sans-serif; margin: 1rem; color: #1d1d1d; }}
p {{ margin: 0.2rem 0; }}
table {{ border-collapse: collapse; margin-top: 0.8rem; font-size: 0.9rem; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; vertical-align: top; }}
td:nth-child(n+5) {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tr.changed td:nth-child(4) {{ background: #fdf2c4; }}
tr.total td {{ font-weight: 600; border-top: 2px solid #888; }}
</style>
</head>
<body>
<h1>What changed</h1>
<p><strong>A</strong>: {a}</p>
<p><strong>B</strong>: {b}</p>
<table>
<thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody>
</table>
<p>The last three columns are B minus A: parameters, MACs, and the training activation memory of one sample.</p>
</body>
</html>
"""
