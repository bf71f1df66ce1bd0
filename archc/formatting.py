"""How numbers and shapes are written for people, the same in tables, warnings, errors and diagrams."""

from __future__ import annotations

from . import ir


def printable(text: str) -> str:
    """Text read from a file (a tensor name, a checkpoint's metadata) as a terminal may show it: every control or
    format character (ESC, NUL, CR, a newline, C1 codes, bidi overrides) written as Python writes it in a repr
    (``\\x1b``, ``\\n``, ``\\u202e``), everything else as it is. An escape sequence in a file then reads as text
    instead of acting on the terminal, and a name cannot forge a line of its own."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def printable_lines(text: str) -> str:
    """:func:`printable` for each line of a message that has several (an error and the further mistakes found with it)."""
    return "\n".join(printable(line) for line in str(text).split("\n"))


def shape(values: tuple[int, ...], times: str = "x") -> str:
    """(3, 224, 224) -> '3x224x224' (diagrams pass '×')."""
    return times.join(map(str, values))


def axes(values: tuple[int, ...], times: str = "x") -> str:
    """A per-axis value: one number when every axis agrees ('3'), else each ('1x3x3'); '-' for none."""
    if not values:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else times.join(map(str, values))


def human(n: int) -> str:
    """Three significant digits: 1234567 -> '1.23M', 10035712 -> '10.0M', 386000000 -> '386M'."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            value = n / scale
            decimals = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{decimals}f}{unit}"
    return str(n)


def size(n_bytes: int) -> str:
    """Bytes in binary units: 1536 -> '1.5 KiB'."""
    value = float(n_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def describe_scaling(plan: ir.Plan) -> str:
    """'preset b3 (width 1.200, depth 1.400)', 'phi 2 (...)' or 'unscaled'."""
    s = plan.scaling
    if s.preset is not None:
        how = f"preset {s.preset}"
    elif s.phi is not None:
        how = f"phi {s.phi:g}"
    else:
        return "unscaled"
    return f"{how} (width {s.width:.3f}, depth {s.depth:.3f})"
