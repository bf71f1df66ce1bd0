"""RegNet's stage-table generator: a quantised linear rule from five numbers to plain stage rows.

Radosavovic et al., "Designing Network Design Spaces" (CVPR 2020, arXiv 2003.13678), section 3.3: block ``j``
of ``depth`` gets the continuous width ``u_j = w0 + wa * j``; it is snapped to ``w0 * wm**s_j`` with
``s_j = round(log(u_j / w0) / log(wm))`` and quantised to a multiple of ``quant`` (8); consecutive blocks of the
same width form a stage. The bottleneck width ``width * bottle_ratio`` is then made a multiple of the group
width, and the stage width follows from it. This restates timm's ``generate_regnet`` and
``adjust_widths_groups_comp`` (``timm/models/regnet.py``, which follow pycls's ``generate_regnet`` and
``adjust_block_compatibility``); ``tests/test_regnet.py`` compares the two over every RegNet-X/Y config timm ships.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import SpecError
from .scaling import make_divisible


@dataclass(frozen=True)
class RegNetStages:
    """One entry per stage, in order: what an ordinary stage table's rows need."""

    widths: tuple[int, ...]  # output channels of each stage
    depths: tuple[int, ...]  # blocks in each stage
    group_widths: tuple[int, ...]  # channels per group of each stage's 3x3 grouped conv


def generate(w0: int, wa: float, wm: float, depth: int, group_width: int, quant: int = 8,
             bottle_ratio: float = 1.0, rounding: str = "pycls") -> RegNetStages:
    """Stage widths, depths and group widths of the RegNet with initial width ``w0``, slope ``wa``, width
    multiplier ``wm`` and ``depth`` blocks. ``rounding`` makes each bottleneck width a multiple of its group width
    as pycls does (``"pycls"``: the nearest multiple) or as torchvision does (``"torchvision"``: never more than 10%
    below; timm's ``*_tv`` models, whose ``group_min_ratio`` is set)."""
    if not (wa >= 0 and w0 > 0 and wm > 1 and w0 % quant == 0 and depth >= 1 and group_width >= 1):
        raise SpecError(
            f"regnet: got w0={w0!r}, wa={wa!r}, wm={wm!r}, depth={depth!r}, group_width={group_width!r}; "
            f"expected wa >= 0, wm > 1, depth >= 1, group_width >= 1 and w0 a positive multiple of {quant}"
        )
    block_widths = []
    for j in range(depth):
        exponent = round(math.log((w0 + wa * j) / w0) / math.log(wm))  # round half to even, as torch.round
        block_widths.append(int(round(w0 * wm**exponent / quant) * quant))
    # Widths never decrease along the blocks (wa >= 0), so runs of equal widths are the stages.
    widths = sorted(set(block_widths))
    depths = [block_widths.count(w) for w in widths]
    bottlenecks = [int(w * bottle_ratio) for w in widths]
    groups = [min(group_width, b) for b in bottlenecks]  # a stage narrower than one group is a single group
    if rounding == "torchvision":
        bottlenecks = [make_divisible(b, g, round_limit=0.9) for b, g in zip(bottlenecks, groups)]
    elif rounding == "pycls":
        bottlenecks = [int(round(b / g) * g) for b, g in zip(bottlenecks, groups)]
    else:
        raise SpecError(f"regnet: rounding: got {rounding!r}, expected 'pycls' or 'torchvision'")
    widths = [int(b / bottle_ratio) for b in bottlenecks]
    return RegNetStages(tuple(widths), tuple(depths), tuple(groups))
