"""The EfficientNet method, both steps: scaling curves for fixed coefficients, and the grid search that finds
the coefficients (Tan & Le 2019, section 3.3: fix phi = 1, search alpha, beta, gamma under a FLOPs budget).

Every figure comes from the Plan (no module is built to measure a candidate), so rounding, which moves the
cost away from the formula, is what the search sees. Evaluations are independent training runs: they go
through any ``concurrent.futures.Executor`` (a local process pool, Dask's ``Client.get_executor()``, Ray's),
and each result is appended to a results file as it arrives so an interrupted search resumes where it stopped.
"""

from __future__ import annotations

import functools
import json
import os
import time
from concurrent.futures import Executor, as_completed
from dataclasses import asdict, dataclass
from typing import Callable

from .analysis import analyze
from .api import read
from .errors import ArchcError, ScalingError
from .lower import lower
from .spec import Spec


def constraint(dims: int) -> str:
    """The FLOPs constraint per dimensionality: resolution multiplies the cost once per spatial axis."""
    return f"alpha * beta**2 * gamma**{dims} ≈ budget"


@dataclass(frozen=True)
class CurvePoint:
    phi: float
    width: float
    depth: float
    resolution: tuple[int, ...]
    params: int
    macs: int
    macs_ratio: float  # over phi = 0
    warnings: tuple[str, ...]


def curve(spec: Spec | str, phis, dims: int | None = None, **args) -> list[CurvePoint]:
    """Width, depth, resolution, parameters and MACs for each phi, from the Plan alone."""
    spec = read(spec)
    base = analyze(lower(spec, phi=0, dims=dims, **args)).macs
    points = []
    for phi in phis:
        report = analyze(lower(spec, phi=phi, dims=dims, **args))
        s = report.plan.scaling
        points.append(CurvePoint(phi, s.width, s.depth, report.plan.resolution, report.params, report.macs, report.macs / base, report.warnings))
    return points


@dataclass(frozen=True)
class Candidate:
    alpha: float
    beta: float
    gamma: float
    macs_ratio: float  # measured at phi = 1 over phi = 0
    network: tuple = ()  # what the Plan resolves to; rounding makes many coefficient triples the same network

    @property
    def key(self) -> str:
        return f"{self.alpha:.4f},{self.beta:.4f},{self.gamma:.4f}"


MAX_STEPS = 400  # per coefficient: 1 to 21 at step 0.05


def candidates(spec: Spec | str, budget: float = 2.0, step: float = 0.05, tolerance: float = 0.05,
               dims: int | None = None, **args) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """Coefficients >= 1 on a ``step`` grid whose measured MAC ratio at phi = 1 is within ``tolerance`` (relative)
    of ``budget``; and those skipped, with the reason (an axis collapses at that resolution)."""
    if step <= 0 or budget <= 1 or tolerance < 0:
        raise ScalingError(f"need step > 0, budget > 1 and tolerance >= 0 (got step={step}, budget={budget}, tolerance={tolerance})")
    spec = read(spec)
    dims = dims or spec.dims
    base = analyze(lower(spec, phi=0, dims=dims, **args)).macs
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)

    @functools.cache  # the loops' guards measure the points the inner loop starts from
    def measure(alpha: float, beta: float, gamma: float):
        report = analyze(lower(_with_scaling(spec, alpha, beta, gamma), phi=1, dims=dims, **args))
        return report, report.macs / base

    def steps():
        return (round(1 + i * step, 10) for i in range(MAX_STEPS))

    # Measured MACs never fall when a coefficient grows (every rounding rule is monotone), so each loop climbs
    # until the measured ratio passes the budget: exact bounds from the Plan, where the formula's would cut off
    # candidates that rounding brings under it.
    found, skipped = [], []
    for alpha in steps():
        if measure(alpha, 1.0, 1.0)[1] > high:
            break
        for beta in steps():
            if measure(alpha, beta, 1.0)[1] > high:
                break
            for gamma in steps():
                report, ratio = measure(alpha, beta, gamma)
                if ratio > high:
                    break
                if ratio < low:
                    continue
                candidate = Candidate(alpha, beta, gamma, ratio, _network(report.plan))
                if report.collapsed:
                    skipped.append((candidate, "; ".join(report.collapses)))
                else:
                    found.append(candidate)
    return found, skipped


def _network(plan) -> tuple:
    """Everything that decides the weights' shapes and the input size, without the multipliers themselves."""
    return (plan.resolution, plan.stem.out_channels, plan.head.conv.out_channels,
            tuple((b.in_channels, b.mid_channels, b.out_channels, b.se_channels) for b in plan.blocks))


def _with_scaling(spec: Spec, alpha: float, beta: float, gamma: float) -> Spec:
    scaled = spec.model_copy(update={"scaling": spec.scaling.model_copy(update={"alpha": alpha, "beta": beta, "gamma": gamma})})
    scaled._source = spec.source
    return scaled


def evaluate_candidate(spec_text: str, spec_file: str, candidate: Candidate, args: dict, evaluate: Callable) -> float:
    """Build the candidate's model at phi = 1 and score it (runs wherever the executor runs it)."""
    from .api import load
    from .spec import parse_spec

    overrides = {"scaling.alpha": candidate.alpha, "scaling.beta": candidate.beta, "scaling.gamma": candidate.gamma}
    model = load(parse_spec(spec_text, spec_file), phi=1, overrides=overrides, seed=0, **args)
    return float(evaluate(model, model.plan.resolution))


@dataclass(frozen=True)
class Result:
    alpha: float
    beta: float
    gamma: float
    macs_ratio: float
    score: float

    def scaling_block(self) -> str:
        """The winning coefficients as a spec's ``scaling:`` block, ready to paste."""
        return f"scaling:\n  alpha: {self.alpha:g}\n  beta: {self.beta:g}\n  gamma: {self.gamma:g}\n"


def grid(
    spec: Spec | str,
    evaluate: Callable,
    budget: float = 2.0,
    step: float = 0.05,
    tolerance: float = 0.05,
    dims: int | None = None,
    executor: Executor | None = None,
    results: str | os.PathLike | None = None,
    progress: Callable[[str], None] | None = None,
    **args,
) -> list[Result]:
    """Step 1 of the EfficientNet method: score every candidate (``evaluate(model, resolution) -> float``, higher
    is better) and return them ranked. ``results`` (a JSON-lines file) makes the search resumable: finished
    candidates are read back and not evaluated again. ``executor`` spreads the evaluations; ``evaluate`` must then
    be picklable (a module-level function)."""
    spec = read(spec)
    found, skipped = candidates(spec, budget, step, tolerance, dims, **args)
    say = progress or (lambda message: None)
    for candidate, reason in skipped:
        say(f"skipped alpha={candidate.alpha:g} beta={candidate.beta:g} gamma={candidate.gamma:g}: {reason}")
    done = _read_results(results)
    todo = [c for c in found if c.key not in done]
    say(f"{len(found)} candidates under {constraint(dims or spec.dims)} = {budget:g} (±{tolerance:.0%}); {len(found) - len(todo)} already done")
    lower_args = dict(args, dims=dims) if dims else dict(args)
    started, best = time.monotonic(), max(done.values(), key=lambda r: r.score, default=None)
    # One evaluation per distinct network; the triples that build the same one share its score.
    by_network: dict[tuple, list[Candidate]] = {}
    for candidate in todo:
        by_network.setdefault(candidate.network, []).append(candidate)
    say(f"{len(by_network)} distinct networks to evaluate")
    task = (spec.source.text, spec.source.file)
    if executor is None:  # one at a time, each recorded before the next starts
        finished = ((group, evaluate_candidate(*task, group[0], lower_args, evaluate)) for group in by_network.values())
    else:
        futures = {executor.submit(evaluate_candidate, *task, group[0], lower_args, evaluate): group for group in by_network.values()}
        finished = ((futures[f], f.result()) for f in as_completed(futures))
    for n, (group, score) in enumerate(finished, start=1):
        for candidate in group:
            result = Result(candidate.alpha, candidate.beta, candidate.gamma, candidate.macs_ratio, score)
            done[candidate.key] = result
            _append_result(results, candidate.key, result)
            if best is None or result.score > best.score:
                best = result
        elapsed = time.monotonic() - started
        say(f"{n}/{len(by_network)} networks done; best so far alpha={best.alpha:g} beta={best.beta:g} "
            f"gamma={best.gamma:g} ({best.score:.4g}); about {elapsed / n * (len(by_network) - n):.0f} s left")
    ranked = [done[c.key] for c in found]
    return sorted(ranked, key=lambda r: (-r.score, r.alpha, r.beta, r.gamma))


def _read_results(path) -> dict[str, Result]:
    if path is None or not os.path.exists(path):
        return {}
    done = {}
    with open(path) as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                done[record["key"]] = Result(**record["result"])
            except (ValueError, KeyError, TypeError):
                raise ArchcError(f"not a search results line: {line.strip()[:60]!r}", file=os.fspath(path), line=number) from None
    return done


def _append_result(path, key: str, result: Result) -> None:
    if path is None:
        return
    with open(path, "a") as f:  # one line per finished candidate: an interruption loses at most the one running
        f.write(json.dumps({"key": key, "result": asdict(result)}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def plot_curve(points: list[CurvePoint], presets: dict[str, tuple[int, int]], path: str, title: str) -> None:
    """MACs and parameters against phi, with the presets marked, as a PNG (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from .errors import EmitError

        raise EmitError("drawing the curve needs matplotlib: pip install matplotlib (or the bench extra)", file=path) from None
    import io

    from .files import write_atomic

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    phis = [p.phi for p in points]
    left.semilogy(phis, [p.macs / 1e9 for p in points], "o-", label="GMACs")
    left.semilogy(phis, [p.params / 1e6 for p in points], "s-", label="parameters (M)")
    left.set_xlabel("phi")
    left.legend()
    left.grid(True, which="both", alpha=0.3)
    right.loglog([p.macs / 1e9 for p in points], [p.params / 1e6 for p in points], "o-", label="compound scaling (phi)")
    for p in points:
        right.annotate(f"{p.phi:g}", (p.macs / 1e9, p.params / 1e6), fontsize=7, textcoords="offset points", xytext=(3, -8))
    if presets:
        right.loglog([m / 1e9 for _, m in presets.values()], [n / 1e6 for n, _ in presets.values()], "D", label="presets")
        for name, (n, m) in presets.items():
            right.annotate(name, (m / 1e9, n / 1e6), fontsize=7, textcoords="offset points", xytext=(3, 3))
    right.set_xlabel("GMACs")
    right.set_ylabel("parameters (M)")
    right.legend()
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
