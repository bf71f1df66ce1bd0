"""A training-memory budget: how much a batch costs, the largest batch that fits, the largest phi that fits.

The estimate, per training step with an Adam-style optimiser:

- parameters: 16 bytes each (float32 weights, their gradients, and two optimiser states), mixed precision included
  (its master weights stay float32);
- activations: what autograd keeps for backward, per sample, times the batch (``archc.analyze``; within 5% of the
  tensors autograd saves, tests/test_language.py and tests/test_budget.py), at 4 bytes (float32) or 2 (mixed precision);
  with activation checkpointing: every block's input, plus the largest block's activations while it is recomputed;
- times :data:`PEAK_FACTOR`, the measured peak of a step over those kept tensors;
- plus :data:`WORKSPACE`, once: what a step holds whatever the network's size (the loss, the optimiser's
  temporaries, the convolutions' scratch space).

It leaves out the framework's own overhead (the CUDA context, about 0.3-0.5 GiB, and allocator slack), so a budget
should be what the device has free, less that.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .analysis import Report, analyze
from .errors import PlanningError

PRECISIONS = {"fp32": 4, "mixed": 2}
BYTES_PER_PARAM = 16  # weight, gradient, two Adam moments, all float32
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2, "g": 1000**3, "gb": 1000**3,
          "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
PHIS = tuple(x / 4 for x in range(-16, 41))  # -4 to 10 in quarter steps: the phis a budget chooses among


def parse_bytes(text: str) -> int:
    """``11GiB``, ``80 GB``, ``512MiB``, ``1e9`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS or float(match.group(1)) <= 0:
        raise PlanningError(f"memory: got {text!r}, expected a size like 11GiB, 80GB or 512MiB")
    return int(float(match.group(1)) * _UNITS[unit])


# The peak of a training step over what autograd keeps (gradients of activations in flight, recomputation), and what
# a step holds besides. Fitted on CPU by benchmarks/memory.py to twelve planned networks of 115-890 MiB (docs/planning.md
# has the table): without checkpointing the peak less weights, gradients and moments was 1.13-1.26x the kept tensors
# plus about 24 MiB; with per-block checkpointing 1.6-3.1x the block inputs plus the largest block, of which 2.5 errs
# by -5% to +44%.
PEAK_FACTOR = {False: 1.2, True: 2.5}
WORKSPACE = 24 * 2**20


@dataclass(frozen=True)
class MemoryCost:
    """Training memory of one network: its parameters (with gradients and optimiser state) and what a sample keeps."""

    parameters: int  # bytes
    kept: int  # bytes of activations autograd keeps per sample
    factor: float  # the step's peak over ``kept``

    @property
    def per_sample(self) -> int:
        return int(self.kept * self.factor)

    def total(self, batch: int) -> int:
        return self.parameters + WORKSPACE + batch * self.per_sample

    def largest_batch(self, memory: int) -> int:
        return max(0, (memory - self.parameters - WORKSPACE) // self.per_sample) if self.per_sample else 0


def training_cost(report: Report, precision: str = "fp32", checkpointing: bool | None = None) -> MemoryCost:
    """The training memory of ``report``'s network; ``checkpointing`` None: as its Plan says."""
    if precision not in PRECISIONS:
        raise PlanningError(f"precision: got {precision!r}, expected {' or '.join(PRECISIONS)}")
    width = PRECISIONS[precision]
    checkpointing = report.plan.checkpointing if checkpointing is None else checkpointing
    if checkpointing:
        blocks = [p for p in report.parts if p.path.startswith("stages.")]
        kept = sum(math.prod(p.shape) for p in blocks) + max((p.activations for p in blocks), default=0)
        kept += sum(p.activations for p in report.parts if not p.path.startswith("stages."))
    else:
        kept = report.activations
    return MemoryCost(report.params * BYTES_PER_PARAM, kept * width, PEAK_FACTOR[bool(checkpointing)])


@dataclass(frozen=True)
class Fit:
    phi: float
    report: Report
    cost: MemoryCost
    needed: int  # bytes at the batch asked for
    next_phi: float | None  # the next phi tried, which did not fit
    next_needed: int | None
    next_over: str = ""  # what that phi broke: "needs 12.21 GiB", "has 61,234,567 MACs"


def largest_phi(lower, memory: int | None, batch: int = 1, precision: str = "fp32", checkpointing: bool | None = None, *,
                macs: int | None = None, params: int | None = None) -> Fit:
    """The largest phi of :data:`PHIS` whose training step at ``batch`` fits ``memory`` (bytes), and whose MACs per
    sample and parameters stay within ``macs`` and ``params`` (each None: no limit); ``lower(phi)`` gives its Plan.
    All three grow with phi, so the search stops at the first phi over a limit."""
    best, over = None, (None, None, "")
    for phi in PHIS:
        report = analyze(lower(phi))
        cost = training_cost(report, precision, checkpointing)
        needed = cost.total(batch)
        broken = [what for what, value, limit in (("memory", needed, memory), ("MACs", report.macs, macs), ("parameters", report.params, params))
                  if limit is not None and value > limit]
        if broken:
            over = (phi, needed, _over(broken[0], report, needed))
            break
        best = (phi, report, cost, needed)
    if best is None:
        raise PlanningError(f"nothing fits at batch {batch}: even phi {PHIS[0]:g} {over[2]} (a smaller budget of width and depth "
                            f"cannot go lower; a smaller batch, mixed precision or checkpointing lowers the memory)")
    return Fit(*best, *over)


def _over(what: str, report: Report, needed: int) -> str:
    if what == "memory":
        return f"needs {gib(needed)}"
    return f"has {report.macs:,} MACs" if what == "MACs" else f"has {report.params:,} parameters"


def parse_count(text: str, what: str) -> int:
    """``50G``, ``10M``, ``2.5e9`` -> a count (decimal suffixes K, M, G, T)."""
    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?(?:e[0-9]+)?)\s*([kKmMgGtT]?)\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise PlanningError(f"{what}: got {text!r}, expected a count like 50G or 10M")
    return int(float(match.group(1)) * 1000 ** " KMGT".index(match.group(2).upper() or " "))


def gib(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"
