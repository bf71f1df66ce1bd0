"""``archc``: a thin layer over the public verbs. Exit 0 on success, 1 on an archc error, 2 on a usage error."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
import time

from . import __version__, api
from .diagram import DETAILS, DIRECTIONS
from .errors import ArchcError, ArgumentError
from .extras import require
from .formatting import printable_lines
from .request import FIELDS, BuildRequest


def main(argv: list[str] | None = None) -> int:
    _prepare_streams()
    parser = _parser()
    args = parser.parse_args(argv)  # exits 2 with a usage message on bad flags
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        status = args.run(args)
        sys.stdout.flush()  # inside the try: a full disk or a closed stdout is an error, not a lost output
        return status
    except ArchcError as exc:
        print(f"archc: error: {printable_lines(exc)}", file=sys.stderr)  # messages quote files: names, metadata
        return 1
    except _Terminated:  # SIGTERM: the files being written were removed on the way out (files.write_atomic)
        return 143
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `archc build ... | head`: the reader left; say nothing more
        _silence_stdout()
        return 141
    except OSError as exc:  # archc's own readers and writers report their files; this is what is left
        where = f"{exc.filename}: " if exc.filename else "cannot write the output: "
        if not exc.filename:
            _silence_stdout()
        print(f"archc: error: {printable_lines(f'{where}{exc.strerror or exc}')}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is so that ``finally`` blocks and temporaries are cleaned up."""


def _interrupt(signum, frame):
    raise _Terminated()


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class _ClosedStream:
    """Stands in for a standard stream whose descriptor was closed (``>&-``): writing to it is an error."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        raise OSError(errno.EBADF, "standard output is closed")

    def flush(self) -> None:
        pass


def _prepare_streams() -> None:
    """Python sets a closed stdout to None, and print() then drops the output without a word; a terminal
    that cannot encode "×" raises UnicodeEncodeError. Make the first an error and the second a "?"."""
    if sys.stdout is None:
        sys.stdout = _ClosedStream()
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        sys.stdout = _ClosedStream()


def _validate(args: argparse.Namespace) -> int:
    try:
        spec = api.validate(args.spec, args.set)
    except ArchcError as exc:
        if args.json:  # every mistake of the pass as data, for editors and CI; the message still goes to stderr
            _print_json({"file": args.spec, "ok": False, "errors": [_error_dict(e) for e in (exc, *exc.also)]})
        raise
    for note in spec.source.notes:
        print(f"note: {printable_lines(note)}", file=sys.stderr)
    blocks = sum(row.repeats for row in spec.stages)
    if args.json:
        _print_json({"file": args.spec, "ok": True, "name": spec.name, "dims": spec.dims, "stages": len(spec.stages),
                     "blocks_unscaled": blocks, "presets": list(spec.scaling.presets), "notes": list(spec.source.notes)})
        return 0
    presets = f", presets {', '.join(spec.scaling.presets)}" if spec.scaling.presets else ""
    print(f"{args.spec}: ok ({spec.name}, {spec.dims}D, {len(spec.stages)} stages, {blocks} blocks unscaled{presets})")
    return 0


def _list(args: argparse.Namespace) -> int:
    """The shipped specs and their presets, one line each, with what each builds (from the Plan: no torch)."""
    from .analysis import analyze
    from .formatting import human, shape
    from .summary import table

    entries = []
    for name in api.builtin_specs():
        spec = api.read(name)
        for preset in (None, *spec.scaling.presets):
            report = analyze(api.lower(spec, preset=preset))
            aliases = [alias for alias, of in spec.aliases.items() if of == preset]
            entries.append({"name": name, "preset": preset, "aliases": aliases, "dims": spec.dims, "params": report.params,
                            "macs": report.macs, "input_shape": list(report.input_shape)})
    if args.json:
        _print_json(entries)
        return 0
    rows = [("spec", "preset", "dims", "params", "MACs", "input", "also known as")]
    rows += [(e["name"], e["preset"] or "-", f"{e['dims']}D", f"{e['params']:,}", human(e["macs"]), shape(e["input_shape"]),
              ", ".join(e["aliases"])) for e in entries]
    print("\n".join(table(rows, right={3, 4}, total=False)))
    return 0


def _build(args: argparse.Namespace) -> int:
    from .analysis import analyze
    from .summary import format_summary

    if args.output:
        _check_output(args.output, _checkpoint_file)
    model = api.load(args.spec, _request(args), seed=args.seed, max_params=args.max_params)
    report = analyze(model.plan)
    measured = sum(p.numel() for p in model.parameters())
    if args.output:
        api.save(model, args.output)
    if args.json:
        _print_json({**report.to_dict(), "built_params": measured, "saved_to": args.output})
    else:
        print(format_summary(report))
        print(f"built {type(model).__name__} with {measured:,} parameters")
        if args.output:
            print(f"saved to {args.output}")
    _warn(report.warnings, args)
    return 0


def _render(args: argparse.Namespace) -> int:
    from .diagram import output_format

    if args.compare:
        return _compare(args, page=bool(args.output))
    page = bool(args.output) and args.output.lower().endswith(".html")  # the interactive view (archc/html_view.py)
    if args.spacing and not page:
        raise _usage("--spacing: millimetres are shown on the interactive page: -o FILE.html (or archc info --spacing)")
    if args.output and not page:
        _check_output(args.output, output_format)
    if page:
        api.render(args.spec, args.output, format="html", spacing=args.spacing, request=_request(args))
        print(f"wrote {args.output}")
        return 0
    graph = api.render(args.spec, args.output, detail=args.detail, direction=args.direction, request=_request(args))
    if args.output:
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(graph.source)
    return 0


def _info(args: argparse.Namespace) -> int:
    from .analysis import analyze
    from .summary import format_blocks, format_info, format_layers, format_millimetres, millimetres

    if args.compare:
        return _compare(args, page=False)
    report = analyze(api.lower(args.spec, _request(args)))
    formats = {"stage": format_info, "block": format_blocks, "layer": format_layers}
    batches = _largest_batches(report, args.memory) if args.memory else None
    mm = millimetres(report, args.spacing) if args.spacing else None
    if args.json:
        extra = {"largest_batch": batches} if batches else {}
        if mm:
            extra["millimetres"] = [{key: list(v) if isinstance(v, tuple) else v for key, v in row.items()} for row in mm]
        _print_json({**report.to_dict(), **extra})
    else:
        print(formats[args.detail](report))
        if batches:
            print(f"largest training batch in {args.memory}: " + ", ".join(f"{n} ({mode})" for mode, n in batches.items()))
        if mm:
            print()
            print(format_millimetres(mm, args.spacing))
    _warn(report.warnings, args)
    return 0


def _compare(args: argparse.Namespace, page: bool) -> int:
    """``--compare "B [flags]"``: A (the command's spec and flags) against B, stage by stage; B without flags of its own
    is lowered with A's, so two specs compare at the same scaling and size."""
    import shlex

    from .analysis import analyze
    from .compare import compare, format_comparison, to_html
    from .files import write_atomic

    if page and not args.output.lower().endswith(".html"):
        raise _usage("-o: a comparison is written as FILE.html (or printed as text without -o)")
    other = argparse.ArgumentParser(prog="--compare", add_help=False, exit_on_error=False)
    other.add_argument("spec")
    _add_lowering_flags(other)
    try:
        b, extra = other.parse_known_args(shlex.split(args.compare))
        if extra:
            raise ValueError(f"unknown {' '.join(extra)}")
    except (argparse.ArgumentError, ValueError) as exc:
        raise _usage(f"--compare: {exc}; give a spec and, optionally, its own flags: --compare 'efficientnet_b0 --preset b3'") from None
    own = _request(b)
    a_report = analyze(api.lower(args.spec, _request(args)))
    b_report = analyze(api.lower(b.spec, own if own != BuildRequest() else _request(args)))
    comparison = compare(a_report, b_report)
    if page:
        write_atomic(args.output, to_html(comparison))
        print(f"wrote {args.output}")
    elif getattr(args, "json", False):
        _print_json(comparison.to_dict())
    else:
        print(format_comparison(comparison))
    return 0


def _largest_batches(report, memory: str) -> dict:
    """The largest training batch that fits ``memory``, per precision and with or without checkpointing (archc/budget.py)."""
    from .budget import parse_bytes, training_cost

    size = parse_bytes(memory)
    return {f"{precision}{', checkpointing' if ckpt else ''}": training_cost(report, precision, ckpt).largest_batch(size)
            for precision in ("fp32", "mixed") for ckpt in (False, True)}


def _schema(args: argparse.Namespace) -> int:
    from .reference import json_schema_text, markdown

    sys.stdout.write(markdown() if args.markdown else json_schema_text())
    return 0


def _convert(args: argparse.Namespace) -> int:
    from .analysis import analyze

    _check_output(args.output, _checkpoint_file)
    model = api.load(args.spec, _request(args), seed=args.seed, weights=args.weights, weights_from=args.source, inflate=args.inflate)
    for note in model.archc_notes:
        print(printable_lines(note))  # notes name the weights' tensors
    report = analyze(model.plan)
    print(f"{model.plan.name}: {model.plan.dims}D, {report.params:,} parameters, weights from {args.source} ({args.weights})")
    api.save(model, args.output)
    print(f"saved to {args.output}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .deploy import check_opset, export_format

    _check_output(args.output, export_format)
    if export_format(args.output) == "onnx":
        require("onnx", "ONNX export", args.output)  # before any work
    try:
        check_opset(args.opset, args.output)
    except ArchcError as exc:
        raise _usage(f"--opset: {exc.message}") from None
    started = time.monotonic()

    def say(message: str) -> None:  # an export takes up to a minute: each step on stderr as it starts
        if not args.quiet:
            print(f"{time.monotonic() - started:5.1f} s  {printable_lines(message)}", file=sys.stderr, flush=True)

    if args.spec.endswith(api.CHECKPOINT_SUFFIX):
        given = [name for name in _request(args).to_dict() if name != "overrides"] + [name for name in ("set", "seed") if getattr(args, name) is not None]
        flags = sorted(f"--{name.replace('_', '-')}" for name in given)
        if flags:
            raise _usage(f"{', '.join(flags)} cannot apply to a saved model ({args.spec}): it is exported as it was built")
        say(f"restoring {args.spec}" + (" and folding its batch norms" if args.fuse else ""))
        model = api.load(args.spec)
    else:
        say(f"building {args.spec}" + (" and folding its batch norms" if args.fuse else ""))
        model = api.load(args.spec, _request(args), seed=args.seed)
    if args.fuse:
        model = model.fuse_norms()
    api.export(model, args.output, batch=args.batch, opset=args.opset, progress=say)
    say("done")
    print(f"wrote {args.output}")
    return 0


def _scale(args: argparse.Namespace) -> int:
    from .analysis import analyze
    from .formatting import human, shape
    from .search import constraint, curve, curve_format, plot_curve

    if args.output:
        _check_output(args.output, curve_format)
        require("matplotlib", "drawing the curve", args.output)  # before any work
    spec = api.read(args.spec, args.set)
    dims = args.dims or spec.dims
    s = spec.scaling
    points = curve(spec, args.phi_range, dims=dims)
    presets = {}
    for name in s.presets:
        report = analyze(api.lower(spec, preset=name, dims=dims))
        presets[name] = (report.params, report.macs)
    gammas = s.gamma if isinstance(s.gamma, tuple) else (s.gamma,) * dims  # per axis: a fixed axis (gamma 1) adds no cost
    formula = s.alpha * s.beta**2 * math.prod(gammas)
    if args.json:
        _print_json({"name": spec.name, "dims": dims, "alpha": s.alpha, "beta": s.beta, "gamma": list(s.gamma) if isinstance(s.gamma, tuple) else s.gamma, "formula": formula,
                     "points": [{"phi": p.phi, "width": p.width, "depth": p.depth, "resolution": list(p.resolution), "params": p.params,
                                 "macs": p.macs, "macs_ratio": p.macs_ratio, "warnings": list(p.warnings)} for p in points],
                     "presets": {name: {"params": n, "macs": m} for name, (n, m) in presets.items()}})
    else:
        print(f"{spec.name}, {dims}D: constraint {constraint(dims)}; alpha {s.alpha:g}, beta {s.beta:g}, gamma {'x'.join(f'{g:g}' for g in _axes_of(s.gamma))} "
              f"gives {formula:.3f} by the formula")
        print()
        print(f"{'phi':>5}  {'width':>6}  {'depth':>6}  {'resolution':>14}  {'params':>12}  {'MACs':>7}  {'MACs/phi0':>9}")
        for p in points:
            print(f"{p.phi:>5g}  {p.width:>6.3f}  {p.depth:>6.3f}  {shape(p.resolution):>14}  {p.params:>12,}  "
                  f"{human(p.macs):>7}  {p.macs_ratio:>9.2f}")
        if presets:
            print()
            print("presets: " + ", ".join(f"{name} {n:,} params {human(m)} MACs" for name, (n, m) in presets.items()))
    _warn([f"phi {p.phi:g}: {warning}" for p in points for warning in p.warnings], args)
    if args.output:
        plot_curve(points, presets, args.output, f"{spec.name} ({dims}D): compound scaling")
        if not args.json:
            print(f"wrote {args.output}")
    return 0


def _search(args: argparse.Namespace) -> int:
    from contextlib import nullcontext
    from dataclasses import asdict

    from . import engines
    from .search import TIE_TOLERANCE, Evaluator, grid

    evaluate = Evaluator(args.evaluate, os.getcwd())  # `--evaluate train:evaluate` finds ./train.py, as `python -m` would
    try:
        evaluate.load()  # now: a wrong name is a usage error before any work
    except (ImportError, AttributeError, ValueError) as exc:
        raise _usage(f"--evaluate: cannot import {args.evaluate!r} ({exc}); give package.module:function") from None
    chosen = [flag for flag in ("dask", "ray", "slurm") if getattr(args, flag) is not None] + (["workers"] if args.workers > 1 else [])
    if len(chosen) > 1:
        raise _usage(f"--{chosen[0]} and --{chosen[1]}: choose one engine")
    engine = (engines.dask(args.dask) if args.dask is not None else engines.ray(args.ray) if args.ray is not None
              else engines.slurm(args.slurm, folder=args.slurm_logs) if args.slurm is not None
              else engines.processes(args.workers) if args.workers > 1 else nullcontext())
    progress = lambda m: print(m, file=sys.stderr, flush=True)
    with engine as executor:
        ranked = grid(args.spec, evaluate, budget=args.budget, step=args.step, tolerance=args.tolerance, dims=args.dims,
                      executor=executor, results=args.results, progress=progress, retries=args.retries, noise=args.noise)
    for failure in ranked.failed:
        print(f"warning: alpha={failure.alpha:g} beta={failure.beta:g} gamma={failure.gamma:g} failed: {failure.reason}", file=sys.stderr)
    none = "no candidate satisfies the constraint at this step; try a finer --step or a wider --tolerance"
    if args.json:
        winner = ranked.winner
        _print_json({"ranked": [asdict(r) for r in ranked], "failed": [asdict(f) for f in ranked.failed], "winner": asdict(winner) if winner else None,
                     "tie": [asdict(r) for r in ranked.top] if ranked.tie else [], "tie_tolerance": TIE_TOLERANCE, "noise": args.noise,
                     "message": none if not ranked else ranked.tie_message() if ranked.tie else None})
        return 0 if ranked else 1
    if not ranked:
        print(none)
        return 1
    print(f"{'rank':>4}  {'alpha':>6}  {'beta':>6}  {'gamma':>6}  {'MACs x':>7}  score")
    for rank, r in enumerate(ranked[:10], start=1):
        print(f"{rank:>4}  {r.alpha:>6g}  {r.beta:>6g}  {r.gamma:>6g}  {r.macs_ratio:>7.3f}  {r.score:.6g}")
    print()
    if ranked.tie:  # a winner picked by the order of the grid would be pasted as if the scores had chosen it
        print(f"# {ranked.tie_message()}")
        return 0
    print("# paste into the spec:")
    print(ranked.winner.scaling_block(api.read(args.spec)), end="")  # gamma per axis when the spec's is
    return 0


def _plan(args: argparse.Namespace) -> int:
    from .files import write_atomic

    if args.images and (args.spacing or args.shape):
        raise _usage("--images reads the spacing and shape from the headers: give it, or --spacing and --shape, not both")
    if not args.images and not (args.spacing and args.shape):
        raise _usage("give --spacing and --shape, or --images")
    planned = api.plan(args.spec, spacing=args.spacing, shape=args.shape, images=args.images, task=args.task, name=args.name,
                       memory=args.memory, batch=args.batch, precision=args.precision, checkpointing=args.checkpointing, macs=args.macs, params=args.params,
                       in_channels=args.in_channels, num_classes=args.num_classes, overrides=args.set)
    if args.output:
        write_atomic(args.output, planned.text)
    if args.json:
        _print_json(planned.to_dict())
    elif args.output:
        for d in planned.decisions:  # reasons and notes quote the base's name and the scans' files
            print(printable_lines(f"{d.path}: {d.reason}"))
        for note in planned.notes:
            print(f"note: {printable_lines(note)}")
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(planned.text)
    return 0


def _axes_of(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _per_axis_numbers(kind):
    def parse(text: str):
        try:
            values = tuple(kind(part) for part in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected numbers separated by commas (like 5,0.7,0.7), got {text!r}") from None
        if not 1 <= len(values) <= 3 or not all(math.isfinite(v) and v > 0 for v in values):
            raise argparse.ArgumentTypeError(f"expected 1 to 3 positive numbers, one per axis (depth, height, width), got {text!r}")
        return values

    return parse


def _print_json(value) -> None:
    print(json.dumps(value, indent=1))


def _error_dict(error: ArchcError) -> dict:
    return {"file": error.file, "line": error.line, "column": error.column, "path": error.path, "message": error.message}


def _warn(warnings, args: argparse.Namespace) -> None:
    """Warnings go to stderr, each once, so stdout pipes cleanly; ``--quiet`` drops them."""
    if not args.quiet:
        for warning in dict.fromkeys(warnings):
            print(f"warning: {printable_lines(warning)}", file=sys.stderr)


def _phi_range(text: str) -> list[float]:
    parts = text.split(":")
    try:
        start, stop, step = (float(parts[0]), float(parts[1]), float(parts[2]) if len(parts) == 3 else 1.0)
    except (ValueError, IndexError):
        raise argparse.ArgumentTypeError(f"expected START:STOP or START:STOP:STEP, got {text!r}") from None
    if step <= 0 or stop < start or (stop - start) / step > 100:
        raise argparse.ArgumentTypeError(f"expected START <= STOP and at most 100 steps, got {text!r}")
    return [round(start + i * step, 6) for i in range(int((stop - start) / step + 1e-9) + 1)]


def _checkpoint_file(path: str) -> None:
    if not path.endswith(api.CHECKPOINT_SUFFIX):
        raise ArgumentError(f"a saved model is a {api.CHECKPOINT_SUFFIX} file, got {path!r}")


def _check_output(path: str, check) -> None:
    """A bad ``-o`` is a usage error (exit 2), found before any work is done."""
    try:
        check(path)
    except ArchcError as exc:
        raise _usage(f"-o: {exc.message}") from None


def _request(args: argparse.Namespace) -> BuildRequest:
    """The build request the lowering flags give (``--set`` are its overrides); flags a command lacks keep the spec's."""
    fields = {name: getattr(args, name, None) for name in FIELDS if name != "overrides"}
    return BuildRequest(**{name: value for name, value in fields.items() if value is not None}, overrides=args.set)




def _usage(message: str) -> SystemExit:
    print(f"archc: error: {message}", file=sys.stderr)
    return SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archc", description="Compile architecture specs (YAML) into PyTorch models.")
    parser.add_argument("--version", action="version", version=f"archc {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser("validate", help="check a spec (does not import torch)")
    validate.add_argument("spec", help="spec file or shipped spec name")
    _add_set_flag(validate)
    _add_json_flag(validate)
    validate.set_defaults(run=_validate)

    listing = commands.add_parser("list", help="the shipped specs and their presets, with parameters and MACs (no torch)")
    _add_json_flag(listing)
    listing.set_defaults(run=_list)

    info = commands.add_parser("info", help="static analysis from the Plan: shapes, receptive field, params, MACs, memory (no torch)")
    info.add_argument("spec", help="spec file, shipped spec name, or a saved .safetensors model")
    _add_lowering_flags(info)
    info.add_argument("--spacing", type=_per_axis_numbers(float), metavar="D,H,W", help="voxel spacing in mm: also report voxel size, extent and receptive field in mm")
    info.add_argument("--memory", metavar="SIZE", help="also print the largest training batch that fits this much memory (11GiB)")
    info.add_argument("--detail", choices=DETAILS, default="stage",
                      help="one row per stage (default), per block, or per layer (every conv, norm, activation, SE, linear)")
    info.add_argument("--compare", metavar="'B [FLAGS]'", help=COMPARE_HELP)
    _add_quiet_flag(info)
    _add_json_flag(info)
    info.set_defaults(run=_info)

    schema = commands.add_parser("schema", help="print the JSON Schema of a spec (for editors), or with --markdown its reference")
    schema.add_argument("--markdown", action="store_true", help="the field reference as Markdown (docs/spec.md)")
    schema.set_defaults(run=_schema)

    build = commands.add_parser("build", help="compile a spec, print its per-stage summary, optionally save it")
    build.add_argument("spec", help="spec file or shipped spec name")
    _add_lowering_flags(build)
    build.add_argument("--seed", type=_seed, help="initialise weights reproducibly")
    build.add_argument("-o", "--output", type=_output_file, metavar="FILE", help="save the model to FILE.safetensors")
    build.add_argument("--max-params", type=_positive_int, default=api.MAX_PARAMS, metavar="N",
                       help=f"refuse to build more parameters than this (default {api.MAX_PARAMS:,})")
    _add_quiet_flag(build)
    _add_json_flag(build)
    build.set_defaults(run=_build)

    from .kinds.sources import NAMES as SOURCES
    from .weights import INFLATE_MODES

    convert = commands.add_parser("convert", help="import a peer's weights into the archc model of a spec and save it")
    convert.add_argument("spec", help="spec file or shipped spec name")
    convert.add_argument("--weights", required=True, metavar="FILE", help="state_dict file (.safetensors, or .pth read with weights_only)")
    convert.add_argument("--from", dest="source", choices=SOURCES, default="archc", help="whose key layout the weights use (default archc)")
    convert.add_argument("--inflate", choices=INFLATE_MODES, default="center",
                         help="how 2D kernels go into a 3D model: center, the 2D kernel in the middle slice (default); mean, repeated / k")
    _add_lowering_flags(convert)
    convert.add_argument("--seed", type=_seed, help="initialise anything re-initialised (a new classifier) reproducibly")
    convert.add_argument("-o", "--output", type=_output_file, required=True, metavar="FILE", help="FILE.safetensors")
    convert.set_defaults(run=_convert)

    inflate = commands.add_parser("inflate", help="turn 2D weights into the 3D model of the same spec and save it")
    inflate.add_argument("spec", help="spec file or shipped spec name")
    inflate.add_argument("--weights", required=True, metavar="FILE", help="2D weights (.safetensors, or .pth read with weights_only)")
    inflate.add_argument("--from", dest="source", choices=SOURCES, default="archc", help="whose key layout the weights use (default archc)")
    inflate.add_argument("--inflate", choices=INFLATE_MODES, default="center",
                         help="center: the 2D kernel in the middle slice (default); mean: repeated / k")
    _add_lowering_flags(inflate)
    inflate.add_argument("--seed", type=_seed, help="initialise anything re-initialised (a new classifier) reproducibly")
    inflate.add_argument("-o", "--output", type=_output_file, required=True, metavar="FILE", help="FILE.safetensors")
    inflate.set_defaults(run=_convert, dims=3)  # a 3D model unless --dims says otherwise

    export = commands.add_parser("export", help="write TorchScript (.pt), torch.export (.pt2) or ONNX (.onnx)")
    export.add_argument("spec", help="spec file, shipped spec name, or a saved .safetensors model")
    _add_lowering_flags(export)
    export.add_argument("--fuse", action="store_true", help="fold batch norms into the convs first")
    export.add_argument("--batch", type=_positive_int, default=1, help="batch size of the example input (default 1)")
    export.add_argument("--seed", type=_seed, help="initialise weights reproducibly (when compiling a spec)")
    export.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    export.add_argument("-o", "--output", type=_output_file, required=True, metavar="FILE", help="FILE.pt, FILE.pt2 or FILE.onnx")
    export.add_argument("-q", "--quiet", action="store_true", help="do not print the steps (they go to stderr)")
    export.set_defaults(run=_export)

    scale = commands.add_parser("scale", help="scaling curve: width, depth, resolution, params and MACs per phi (no torch)")
    scale.add_argument("spec", help="spec file or shipped spec name")
    scale.add_argument("--dims", type=int, choices=(1, 2, 3), help="spatial dimensions (the FLOPs constraint follows them)")
    scale.add_argument("--phi-range", type=_phi_range, default=_phi_range("0:7"), metavar="A:B[:STEP]", help="phis to tabulate (default 0:7)")
    _add_set_flag(scale)
    scale.add_argument("-o", "--output", type=_output_file, metavar="FILE", help="draw the curve to FILE.png, .svg or .pdf (needs matplotlib)")
    _add_quiet_flag(scale)
    _add_json_flag(scale)
    scale.set_defaults(run=_scale)

    search = commands.add_parser("search", help="grid-search alpha, beta, gamma at phi = 1 under a MACs budget")
    search.add_argument("spec", help="spec file or shipped spec name")
    search.add_argument("--evaluate", required=True, metavar="MODULE:FUNCTION", help="your evaluate(model, resolution) -> score")
    search.add_argument("--budget", type=_finite_float, default=2.0, help="MACs ratio at phi = 1 (default 2)")
    search.add_argument("--step", type=_finite_float, default=0.05, help="grid step of each coefficient (default 0.05)")
    search.add_argument("--tolerance", type=_finite_float, default=0.05, help="relative distance to the budget allowed (default 0.05)")
    search.add_argument("--dims", type=int, choices=(1, 2, 3), help="spatial dimensions")
    search.add_argument("--workers", type=_positive_int, default=1, help="evaluate in a local process pool of N workers")
    search.add_argument("--results", metavar="FILE.jsonl", help="append each result here and resume from it")
    search.add_argument("--dask", metavar="ADDRESS|N", help="run on a Dask scheduler (tcp://host:8786) or a local Dask cluster of N processes (archc[dask])")
    search.add_argument("--ray", metavar="auto|ADDRESS|N", help="run as Ray tasks: the running cluster, an address, or a local Ray with N CPUs (archc[ray])")
    search.add_argument("--slurm", metavar="KEY=VALUE,...|local", help="one SLURM job per candidate through submitit, e.g. partition=gpu,gpus=1,time=60 "
                        "(minutes); `local` runs the jobs as local processes (archc[slurm])")
    search.add_argument("--slurm-logs", default="archc-slurm", metavar="DIR", help="where submitit keeps the jobs' files (default archc-slurm)")
    search.add_argument("--noise", type=_finite_float, default=0.0, metavar="SCORE",
                        help="scores within this of the best are a tie, not a winner (the evaluator's spread; default 0)")
    search.add_argument("--retries", type=_non_negative_int, default=2, help="submit a candidate again this many times when its worker or job fails (default 2)")
    _add_json_flag(search)
    search.set_defaults(run=_search)

    plan = commands.add_parser("plan", help="plan per-axis strides, kernels and input size from voxel spacing (nnU-Net's rule); writes a spec")
    plan.add_argument("spec", help="the base spec file or shipped spec name (its stem and strided rows are the downsampling steps)")
    plan.add_argument("--spacing", type=_per_axis_numbers(float), metavar="D,H,W", help="voxel spacing in mm, one per axis")
    plan.add_argument("--shape", type=_per_axis_numbers(int), metavar="D,H,W", help="the (median) image size in voxels, one per axis")
    plan.add_argument("--images", metavar="PATTERN", help="read spacing and shape from NIfTI headers instead: 'scans/*.nii.gz' or a folder (needs archc[plan])")
    plan.add_argument("--task", choices=("classify", "segment"), default="classify", help="classify (default) or segment (adds a U-Net decoder)")
    plan.add_argument("--name", help="the planned network's name (default: the base's name + _planned)")
    plan.add_argument("--memory", metavar="SIZE", help="training memory budget (11GiB, 80GB): choose the largest phi that fits (width and depth)")
    plan.add_argument("--macs", metavar="N", help="MACs per sample budget (50G): the largest phi within it")
    plan.add_argument("--params", metavar="N", help="parameter budget (10M): the largest phi within it")
    plan.add_argument("--batch", type=_positive_int, default=1, help="training batch size for --memory (default 1)")
    plan.add_argument("--precision", choices=("fp32", "mixed"), default="fp32", help="for --memory: float32 (default) or mixed-precision activations")
    plan.add_argument("--checkpointing", action="store_true", help="for --memory: activation checkpointing per block (and set it in the spec)")
    plan.add_argument("--in-channels", type=_positive_int, metavar="N", help="input channels")
    plan.add_argument("--num-classes", type=_count, metavar="N", help="classes (0: features out)")
    _add_set_flag(plan)
    plan.add_argument("-o", "--output", type=_output_file, metavar="FILE", help="write the planned spec here (YAML); without it, print it")
    _add_json_flag(plan)
    plan.set_defaults(run=_plan)

    render = commands.add_parser("render", help="draw a graphviz diagram of the compiled network, or an interactive HTML page")
    render.add_argument("spec", help="spec file, shipped spec name, or a saved .safetensors model")
    _add_lowering_flags(render)
    render.add_argument("--detail", choices=DETAILS, default="stage", help="one node per stage (default), block or layer")
    render.add_argument("--direction", choices=DIRECTIONS, default="TB", help="top-to-bottom (default) or left-to-right")
    render.add_argument("-o", "--output", type=_output_file, metavar="FILE", help="FILE.svg, .png, .pdf or .dot (.dot needs no Graphviz), or FILE.html: an interactive page, "
                        "one self-contained file; DOT text to stdout without it")
    render.add_argument("--spacing", type=_per_axis_numbers(float), metavar="D,H,W", help="voxel spacing in mm: the page shows each stage's extent "
                        "and receptive field in mm (with -o FILE.html)")
    render.add_argument("--compare", metavar="'B [FLAGS]'", help=COMPARE_HELP + "; with -o FILE.html, as a page")
    render.set_defaults(run=_render)
    return parser


COMPARE_HELP = ("show what changes from this network to B, stage by stage, with the change in parameters, MACs and memory; B is a spec "
                "with its own flags in one argument ('efficientnet_b0 --preset b3'), or with this command's flags when it gives none")


def _add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def _add_quiet_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="do not print warnings (they go to stderr)")


def _add_lowering_flags(parser: argparse.ArgumentParser) -> None:
    scaling = parser.add_mutually_exclusive_group()
    scaling.add_argument("--phi", type=_finite_float, metavar="F", help="compound coefficient (may be fractional or negative)")
    scaling.add_argument("--preset", metavar="NAME", help="a preset from the spec's scaling.presets (e.g. b3)")
    parser.add_argument("--dims", type=int, choices=(1, 2, 3), help="spatial dimensions (1D, 2D or 3D)")
    parser.add_argument("--in-channels", type=_positive_int, metavar="N", help="input channels")
    parser.add_argument("--num-classes", type=_count, metavar="N", help="classes (0: no classifier)")
    parser.add_argument("--resolution", type=_resolution, metavar="R", help="input size: one number, or one per axis (32,256,256)")
    parser.add_argument("--features-only", action="store_true", help="no head: the network returns the map of each reduction level")
    _add_set_flag(parser)


def _add_set_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", metavar="PATH=VALUE", help="override a spec value, e.g. stages[3].se=none or norm.type=group (repeatable)")


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _output_file(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
    return text


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    value = _count(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or a positive integer, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text) if len(text) <= 30 else None  # int() refuses past 4300 digits with a ValueError
    except ValueError:
        value = None
    if value is None or not 0 <= value <= api.MAX_SEED:
        shown = text if len(text) <= 30 else text[:27] + "..."
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {api.MAX_SEED}, got {shown!r}")
    return value


def _resolution(text: str) -> int | tuple[int, ...]:
    values = tuple(_positive_int(part) for part in text.split(","))
    return values[0] if len(values) == 1 else values
