"""The EfficientNet method, both steps: scaling curves for fixed coefficients, and the grid search that finds
the coefficients (Tan & Le 2019, section 3.3: fix phi = 1, search alpha, beta, gamma under a FLOPs budget).

Every figure comes from the Plan (no module is built to measure a candidate), so rounding, which moves the
cost away from the formula, is what the search sees. Evaluations are independent training runs: they go
through any ``concurrent.futures.Executor`` (a local process pool, or Dask, Ray and SLURM through
:mod:`archc.engines`); the coordinator alone appends each result to a results file as it arrives, so an
interrupted search resumes where it stopped, and a candidate whose worker is lost is submitted again.

Like the CLI, this module sits above the public verbs (``read``, ``lower``, ``analyze``, ``load``) and composes
them; nothing below it imports it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, CancelledError, Executor, wait
from dataclasses import asdict, dataclass
from typing import Callable

from .analysis import analyze
from .api import read
from .errors import ArchcError, ArgumentError, described, shown
from .extras import require
from .lowering import lower
from .spec import Spec


def constraint(dims: int) -> str:
    """The FLOPs constraint per dimensionality: resolution multiplies the cost once per spatial axis it scales
    (``dims`` is that count: a per-axis gamma that holds an axis at 1 leaves it out, :func:`scaled_axes`)."""
    return f"alpha * beta**2 * gamma**{dims} ≈ budget"


def scaled_axes(spec: Spec, dims: int) -> int:
    """How many axes the searched gamma scales: every axis, or, when the spec's gamma is per axis, the axes not held at 1."""
    gamma = spec.scaling.gamma
    return sum(g != 1 for g in gamma) if isinstance(gamma, tuple) else dims


def gamma_for(spec: Spec, gamma: float):
    """The searched gamma as the spec takes it: one number, or, when the spec's gamma is per axis, ``gamma`` on every
    axis the spec scales and 1 on every axis it holds fixed (a volume's slice count stays the slice count)."""
    written = spec.scaling.gamma
    return tuple(1.0 if g == 1 else gamma for g in written) if isinstance(written, tuple) else gamma


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


MAX_STEPS = 400  # values per coefficient: 1 to 20.95 at step 0.05
MAX_POINTS = 50_000  # grid points under the budget; each is lowered and analysed (about 5 ms for B0: 4 minutes)


def _check_grid_size(budget: float, step: float, tolerance: float, dims: int) -> None:
    """Refuse, before any work, a grid too large to walk. Every coefficient is >= 1, so the formula bounds them:
    alpha <= high, beta <= high**(1/2), gamma <= high**(1/dims). Rounding can move the measured cost a little
    under the formula, so the walk itself still stops at MAX_STEPS values per coefficient."""
    high = budget * (1 + tolerance)
    asked = f"step {step:g} with budget {budget:g} and tolerance {tolerance:g}"
    per_axis = (high - 1) / step + 1  # alpha's values from 1 up to the budget
    if not per_axis <= MAX_STEPS:
        raise ArgumentError(f"{asked} needs {per_axis:.3g} values per coefficient; the grid takes at most {MAX_STEPS} "
                           "values per coefficient: use a coarser step or a smaller budget or tolerance")
    points = 0
    for i in range(int(per_axis)):
        alpha = 1 + i * step
        for j in range(MAX_STEPS):
            beta = 1 + j * step
            room = high / (alpha * beta**2)
            if room < 1:
                break
            points += int((room ** (1 / dims) - 1) / step) + 1 if dims else 1
        if points > MAX_POINTS:
            raise ArgumentError(f"{asked} puts more than {MAX_POINTS:,} grid points under the budget; the search measures "
                               f"at most {MAX_POINTS:,} grid points: use a coarser step or a smaller budget or tolerance")


def candidates(spec: Spec | str, budget: float = 2.0, step: float = 0.05, tolerance: float = 0.05,
               dims: int | None = None, **args) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """Coefficients >= 1 on a ``step`` grid whose measured MAC ratio at phi = 1 is within ``tolerance`` (relative)
    of ``budget``; and those skipped, with the reason (an axis collapses at that resolution)."""
    if step <= 0 or budget <= 1 or tolerance < 0:
        raise ArgumentError(f"need step > 0, budget > 1 and tolerance >= 0 (got step={step}, budget={budget}, tolerance={tolerance})")
    spec = read(spec, args.pop("overrides", None))
    dims = dims or spec.dims
    scaled = scaled_axes(spec, dims)
    _check_grid_size(budget, step, tolerance, scaled)
    base = analyze(lower(spec, phi=0, dims=dims, **args)).macs
    low, high = budget * (1 - tolerance), budget * (1 + tolerance)

    @functools.cache  # the loops' guards measure the points the inner loop starts from
    def measure(alpha: float, beta: float, gamma: float):
        report = analyze(lower(_with_scaling(spec, alpha, beta, gamma), phi=1, dims=dims, **args))
        return report, report.macs / base

    def steps(fixed: bool = False):
        return (1.0,) if fixed else (round(1 + i * step, 10) for i in range(MAX_STEPS))

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
            for gamma in steps(fixed=scaled == 0):  # a per-axis gamma holding every axis at 1: width and depth alone
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
    return (plan.resolution, plan.stem.out_channels, plan.head,
            tuple(b.layers for b in plan.blocks))


def _with_scaling(spec: Spec, alpha: float, beta: float, gamma: float) -> Spec:
    # model_copy keeps the source (file and lines), so errors about a candidate still point into the file.
    return spec.model_copy(update={"scaling": spec.scaling.model_copy(update={"alpha": alpha, "beta": beta, "gamma": gamma_for(spec, gamma)})})


@dataclass(frozen=True)
class Evaluator:
    """``MODULE:FUNCTION`` found in ``folder`` (``--evaluate train:evaluate`` imports ./train.py, as ``python -m train``
    would), imported safely: archc's own dependencies first, from the installed packages, then the user's module alone
    with ``folder`` on ``sys.path`` for that one import (the path is restored after it), so a ``torch.py`` or
    ``numpy.py`` lying in the folder is never run in their place. Picklable by its two texts: a worker process that
    did not inherit the module (spawn, forkserver) imports it the same way."""

    target: str
    folder: str

    @property
    def __name__(self) -> str:  # errors name the function, as they do for a plain one
        return self.target.partition(":")[2] or self.target

    def load(self) -> Callable:
        import importlib
        import sys

        # archc's own dependencies first (torch brings numpy): a torch.py or numpy.py in the folder then finds them
        # in sys.modules. Whatever archc imports later, the folder is off the path again.
        import torch  # noqa: F401

        module_name, _, function = self.target.partition(":")
        saved = list(sys.path)
        sys.path.insert(0, self.folder)
        try:
            module = importlib.import_module(module_name)
        finally:
            sys.path[:] = saved
        return getattr(module, function)

    def __call__(self, model, resolution):
        return self.load()(model, resolution)  # imported once: later calls find the module in sys.modules


def evaluate_candidate(spec_text: str, spec_file: str, candidate: Candidate, args: dict, evaluate: Callable, applied: dict | None = None):
    """Build the candidate's model at phi = 1 and score it (runs wherever the executor runs it). The spec travels as
    its text and the overrides ``applied`` over it, so the worker builds the spec the search measured."""
    from .api import load
    from .spec import parse_spec

    spec = parse_spec(spec_text, spec_file, applied)
    gamma = gamma_for(spec, candidate.gamma)
    overrides = {"scaling.alpha": candidate.alpha, "scaling.beta": candidate.beta, "scaling.gamma": list(gamma) if isinstance(gamma, tuple) else gamma}
    model = load(spec, phi=1, overrides=overrides, seed=0, **args)
    return evaluate(model, model.plan.resolution)  # checked where the results are gathered, which knows the candidate


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back: the score, or the evaluator's failure as text (its type and first line, and where it
    was raised) with the exception itself when it survives pickling. The evaluator's own failures travel as a value, so
    a future that raises means the worker or the engine failed (a worker died, a job was preempted or timed out)."""

    score: object = None
    error: str | None = None
    raised_at: str = ""
    exception: BaseException | None = None


def run_candidate(spec_text: str, spec_file: str, candidate: Candidate, args: dict, evaluate: Callable, applied: dict | None = None) -> Outcome:
    """:func:`evaluate_candidate`, with the evaluator's exception caught where it was raised (on the worker)."""
    try:
        return Outcome(score=evaluate_candidate(spec_text, spec_file, candidate, args, evaluate, applied))
    except Exception as exc:  # noqa: BLE001  (the user's code: any failure is reported with its candidate)
        import pickle
        import traceback

        frames = traceback.extract_tb(exc.__traceback__)[-3:][::-1]  # the innermost first: where it went wrong
        raised_at = ", from ".join(f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in frames)
        try:
            pickle.loads(pickle.dumps(exc))
            travels = exc
        except Exception:  # noqa: BLE001  (an exception that cannot be pickled: its text still travels)
            travels = None
        return Outcome(error=described(exc), raised_at=raised_at, exception=travels)


@dataclass(frozen=True)
class Result:
    alpha: float
    beta: float
    gamma: float
    macs_ratio: float
    score: float

    def scaling_block(self, spec: Spec | None = None) -> str:
        """The winning coefficients as a spec's ``scaling:`` block, ready to paste (gamma per axis as ``spec`` has it)."""
        gamma = gamma_for(spec, self.gamma) if spec is not None else self.gamma
        shown = f"[{', '.join(f'{g:g}' for g in gamma)}]" if isinstance(gamma, tuple) else f"{gamma:g}"
        return f"scaling:\n  alpha: {self.alpha:g}\n  beta: {self.beta:g}\n  gamma: {shown}\n"


@dataclass(frozen=True)
class Failure:
    """A candidate that could not be evaluated: its worker failed on every attempt (not the evaluator's own error)."""

    alpha: float
    beta: float
    gamma: float
    macs_ratio: float
    reason: str


TIE_TOLERANCE = 1e-9  # scores this close (relative, math.isclose) are equal: a float sum's rounding, not a better network


class Ranking(list):
    """The results, best first (a list of :class:`Result`), and what they let one conclude.

    ``top`` holds every result whose score equals the best within :data:`TIE_TOLERANCE` (relative), or lies within
    ``noise`` (absolute: the evaluator's own spread, e.g. 0.01 for an accuracy measured on a few hundred images) of it.
    When those come from more than one distinct network, the scores cannot choose between them: ``tie`` is true and
    ``winner`` is None. When they all build the same network at phi = 1 (rounding makes several triples one network,
    and they share its score), that network wins and ``winner`` is its smallest triple (alpha, then beta, then gamma)."""

    def __init__(self, results: list[Result], networks: dict[str, tuple], failed: list[Failure] = (), noise: float = 0.0):
        super().__init__(results)
        self.failed: tuple[Failure, ...] = tuple(failed)  # candidates whose workers failed on every attempt
        self.noise = noise
        best = results[0].score if results else None
        self.top: tuple[Result, ...] = tuple(r for r in results if math.isclose(r.score, best, rel_tol=TIE_TOLERANCE, abs_tol=noise))
        self.tie: bool = len({networks[_key(r)] for r in self.top}) > 1

    @property
    def winner(self) -> Result | None:
        return None if self.tie or not self else self[0]

    def tie_message(self) -> str:
        """The tie in one line: how many networks, the shared score, and each tied triple."""
        named = ", ".join(_named(r) for r in self.top)
        if self.noise and not all(math.isclose(r.score, self.top[0].score, rel_tol=TIE_TOLERANCE) for r in self.top):
            share = f"score within {self.noise:g} of the best, {self.top[0].score:.6g} (the stated noise)"
        else:
            share = f"tie at score {self.top[0].score:.6g} (equal within a relative {TIE_TOLERANCE:g})"
        everyone = "; that is every candidate: the scores say nothing about the coefficients" if len(self.top) == len(self) else ""
        return (f"no winner: {len(self.top)} candidates {share} and build different networks: {named}; the evaluator "
                f"cannot tell them apart (score on more data or train longer, or choose one){everyone}")


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
    retries: int = 2,
    noise: float = 0.0,
    **args,
) -> Ranking:
    """Step 1 of the EfficientNet method: score every candidate (``evaluate(model, resolution) -> float``, higher
    is better) and return them ranked (a :class:`Ranking`: its ``winner``, or None when distinct networks tie). ``results`` (a JSON-lines file) makes the search resumable: finished
    candidates are read back and not evaluated again. ``executor`` spreads the evaluations; ``evaluate`` must then
    be picklable (a module-level function).

    The coordinator (this call) alone writes ``results``. With an executor, a candidate whose future fails (its worker
    died, its job was preempted or timed out, the engine lost it) is submitted again, up to ``retries`` more times,
    then recorded as failed with the reason (``ranked.failed``, and a ``"failed"`` line in ``results`` that a later
    run tries again) while the search goes on. An evaluator that raises stops the search: the error names the
    candidate, the exception and where it was raised on the worker. ``noise``: scores within it of the best are a
    tie (see :class:`Ranking`), not a winner."""
    if retries < 0:
        raise ArgumentError(f"retries must be 0 or more (got {retries})")
    if not (noise >= 0 and math.isfinite(noise)):
        raise ArgumentError(f"noise must be a finite score difference >= 0 (got {noise})")
    spec = read(spec, args.pop("overrides", None))
    found, skipped = candidates(spec, budget, step, tolerance, dims, **args)
    say = progress or (lambda message: None)
    for candidate, reason in skipped:
        say(f"skipped alpha={candidate.alpha:g} beta={candidate.beta:g} gamma={candidate.gamma:g}: {reason}")
    done, repair = _read_results(results)
    todo = [c for c in found if c.key not in done]
    held = "" if scaled_axes(spec, dims or spec.dims) == (dims or spec.dims) else f" (gamma on axes {_axes_text(spec)}, the others held at 1)"
    say(f"{len(found)} candidates under {constraint(scaled_axes(spec, dims or spec.dims))}{held} = {budget:g} (±{tolerance:.0%}); {len(found) - len(todo)} already done")
    lower_args = dict(args, dims=dims) if dims else dict(args)
    started, best = time.monotonic(), max(done.values(), key=lambda r: r.score, default=None)
    # One evaluation per distinct network; the triples that build the same one share its score.
    by_network: dict[tuple, list[Candidate]] = {}
    for candidate in todo:
        by_network.setdefault(candidate.network, []).append(candidate)
    if repair is not None:
        repair(say)
    # A network already scored (a run stopped between the lines of its triples) gives its score without running again.
    scored = {c.network: done[c.key].score for c in found if c.key in done}
    for network in [n for n in by_network if n in scored]:
        for candidate in by_network.pop(network):
            done[candidate.key] = Result(candidate.alpha, candidate.beta, candidate.gamma, candidate.macs_ratio, scored[network])
            _append_line_to(results, {"key": candidate.key, "result": asdict(done[candidate.key])})
    say(f"{len(by_network)} distinct networks to evaluate")
    task, applied = (spec.source.text, spec.source.file), dict(spec.source.applied)
    failed: list[Failure] = []
    futures: dict = {}
    if executor is None:  # one at a time, each recorded before the next starts

        def finished():
            for group in by_network.values():
                yield group, run_candidate(*task, group[0], lower_args, evaluate, applied), None
    else:
        attempts: dict[str, int] = {}

        def submit(group):
            attempts[group[0].key] = attempts.get(group[0].key, 0) + 1
            try:
                futures[executor.submit(run_candidate, *task, group[0], lower_args, evaluate, applied)] = group
            except Exception as exc:  # noqa: BLE001  (a broken pool, a cluster gone: nothing more can run)
                raise ArchcError(f"the executor refused {_named(group[0])}: {described(exc)}; {_kept(results, done)}") from exc

        def finished():
            for group in by_network.values():
                submit(group)
            while futures:
                ready, _ = wait(list(futures), return_when=FIRST_COMPLETED)
                for future in ready:
                    group = futures.pop(future)
                    lost = CancelledError("cancelled by the engine") if future.cancelled() else future.exception()
                    if lost is None:
                        yield group, future.result(), None
                    elif attempts[group[0].key] <= retries:  # the worker, not the evaluator, failed: try elsewhere
                        say(f"{_named(group[0])}: attempt {attempts[group[0].key]} lost ({described(lost)}); trying again")
                        submit(group)
                    else:
                        yield group, None, lost

    try:
        for n, (group, outcome, lost) in enumerate(finished(), start=1):
            named = _named(group[0])
            if lost is not None:
                reason = f"{described(lost)} (on each of {retries + 1} attempts)"
                for candidate in group:
                    failure = Failure(candidate.alpha, candidate.beta, candidate.gamma, candidate.macs_ratio, reason)
                    failed.append(failure)
                    _append_line_to(results, {"key": candidate.key, "failed": asdict(failure)})
                say(f"{named} failed: {reason}; recorded as failed (a later run tries it again)")
                continue
            if outcome.error is not None:
                where = f"; raised at {outcome.raised_at}" if outcome.raised_at else ""
                raise ArchcError(f"evaluating {named} failed: {outcome.error}{where}; {_kept(results, done)}") from outcome.exception
            score = _finite(outcome.score, f"{named}: {getattr(evaluate, '__name__', 'evaluate')} returned", f"; {_kept(results, done)}")
            for candidate in group:
                result = Result(candidate.alpha, candidate.beta, candidate.gamma, candidate.macs_ratio, score)
                done[candidate.key] = result
                _append_line_to(results, {"key": candidate.key, "result": asdict(result)})
                if best is None or result.score > best.score:
                    best = result
            elapsed = time.monotonic() - started
            shown_best = f"best so far {_named(best)} ({best.score:.4g})" if best else "none finished"
            say(f"{n}/{len(by_network)} networks done; {shown_best}; about {elapsed / n * (len(by_network) - n):.0f} s left")
    except BaseException:
        for future in futures:  # stop the queued evaluations; the running ones finish on shutdown
            future.cancel()
        raise
    ranked = [done[c.key] for c in found if c.key in done]
    return Ranking(sorted(ranked, key=lambda r: (-r.score, r.alpha, r.beta, r.gamma)), {c.key: c.network for c in found}, failed, noise)


def _key(r) -> str:
    return Candidate(r.alpha, r.beta, r.gamma, r.macs_ratio).key


def _named(c) -> str:
    return f"alpha={c.alpha:g} beta={c.beta:g} gamma={c.gamma:g}"


def _kept(results, done: dict) -> str:
    if results is None:
        return "nothing was kept (give a results file to resume an interrupted search)"
    return f"{len(done)} result{'' if len(done) == 1 else 's'} so far kept in {os.fspath(results)}: run again to resume"


def _finite(value, where: str, then: str = "", **location) -> float:
    """A score (or a figure read back) as a float: NaN would rank first, text would not compare, so both stop here."""
    if value is not None and not isinstance(value, (str, bytes, bool)):
        try:
            number = float(value)
        except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of more than one value
            pass
        else:
            if math.isfinite(number):
                return number
    raise ArchcError(f"{where} score {shown(value, 40)}; expected a finite number (higher is better){then}", **location)


_FIGURES = ("alpha", "beta", "gamma", "macs_ratio")


def _read_results(path) -> tuple[dict[str, Result], Callable | None]:
    """The finished candidates, keyed like ``Candidate.key``; and, when the last line has no newline (a run killed
    while writing it), what repairs the file before anything is appended: the cut-off line is dropped (its
    candidate runs again), a whole one gets its newline."""
    if path is None:
        return {}, None
    name = os.fspath(path)
    if os.path.isdir(name):
        raise ArchcError("is a directory, not a search results file", file=name)
    directory = os.path.dirname(os.path.abspath(name))
    if not os.path.isdir(directory):
        raise ArchcError(f"cannot write the results: directory {directory} does not exist", file=name)
    if not os.path.exists(name):
        return {}, None
    from .files import read_bytes

    data = read_bytes(name, ArchcError, "search results file")
    lines = data.split(b"\n")  # the last piece is what follows the last newline: empty unless cut off
    done, offset, repair = {}, 0, None
    for number, raw in enumerate(lines, start=1):
        last = number == len(lines)
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
            record = json.loads(text)
            if isinstance(record, dict) and isinstance(record.get("failed"), dict) and isinstance(record.get("key"), str):
                if last:  # a failure is no result: its candidate runs again
                    def repair(say):
                        _append_line(name, "")
                continue
            figures = record["result"]
            if not isinstance(record["key"], str) or not all(isinstance(figures[f], (int, float)) and math.isfinite(figures[f]) for f in _FIGURES):
                raise ValueError
            result = Result(**figures)
        except (ValueError, KeyError, TypeError, RecursionError) as exc:  # RecursionError: json on a line nested very deep
            if last:
                def repair(say, start=start, number=number):
                    _truncate(name, start)
                    say(f"{name}:{number}: the last line is cut off (a run stopped while writing it); dropped it, its candidate is done again")
                break
            if isinstance(exc, UnicodeDecodeError):
                raise ArchcError("not UTF-8 text; is this a search results file?", file=name, line=number) from None
            raise ArchcError(f"not a search results line: {raw.strip()[:60].decode('utf-8', 'replace')!r}", file=name, line=number) from None
        _finite(result.score, f"{_named(result)}:", file=name, line=number)
        done[record["key"]] = Result(result.alpha, result.beta, result.gamma, result.macs_ratio, float(result.score))
        if last:
            def repair(say):
                _append_line(name, "")
    return done, repair


def _truncate(name: str, size: int) -> None:
    try:
        os.truncate(name, size)
    except OSError as exc:
        raise ArchcError(f"cannot drop its cut-off last line: {exc.strerror}", file=name) from None


def _append_line(name: str, text: str) -> None:
    try:
        with open(name, "a") as f:  # one line per finished candidate: an interruption loses at most the one running
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        raise ArchcError(f"cannot write the results: {exc.strerror}", file=name) from None


def _append_line_to(path, record: dict) -> None:
    """One record a line, written by the coordinator alone (workers only return values), so lines never interleave."""
    if path is not None:
        _append_line(os.fspath(path), json.dumps(record))


CURVE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}


def curve_format(path: str) -> str:
    """The file format of a drawn curve, from its extension."""
    extension = os.path.splitext(path)[1].lower()
    if extension not in CURVE_FORMATS:
        raise ArgumentError(f"unknown curve format {extension or '(no extension)'}; use .png, .svg or .pdf", file=path)
    return CURVE_FORMATS[extension]


def plot_curve(points: list[CurvePoint], presets: dict[str, tuple[int, int]], path: str, title: str) -> None:
    """MACs and parameters against phi, with the presets marked, as PNG, SVG or PDF by the extension (needs matplotlib)."""
    fmt = curve_format(path)
    require("matplotlib", "drawing the curve", path)
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

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
    fig.savefig(buffer, format=fmt, dpi=100)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def _axes_text(spec: Spec) -> str:
    return ", ".join(str(a) for a, g in enumerate(spec.scaling.gamma) if g != 1)
