"""The public verbs. Torch is imported only by the verbs that build modules, so validating stays light."""

from __future__ import annotations

import difflib
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import ir
from .errors import ArchcError, ArgumentError, CheckpointError, EmitError, LoweringError, SpecError, concat_problems, shown
from .files import check_destination, write_atomic
from .formatting import printable
from .lowering import block_count
from .lowering import lower as _lower
from .request import BuildRequest, as_request
from .spec import Overrides, Spec, load_spec, parse_spec
from .yaml_source import read_yaml

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "build", "builtin_specs", "export", "load", "lower", "plan", "read", "render", "restore", "save", "shipped_aliases", "shipped_spec", "validate",
    "BuildRequest", "BuildSource", "CHECKPOINT_SUFFIX", "DEPRECATED", "LOAD_OPTIONS", "MAX_PARAMS", "MAX_SEED", "VALIDATE_BLOCKS",
]

_PACKAGE_SPECS = Path(__file__).parent / "specs"  # inside an installed wheel
_SOURCE_SPECS = Path(__file__).parent.parent / "specs"  # a source checkout (editable install)
CHECKPOINT_SUFFIX = ".safetensors"
VALIDATE_BLOCKS = 50_000  # blocks `validate` lowers across a spec and all its presets (EfficientNet B0-B7: 259)
MAX_PARAMS = 500_000_000  # 2 GB of float32 weights (EfficientNet-B7 has 66M): past this a build is refused unless asked for


@dataclass(frozen=True)
class BuildSource:
    """What a module was compiled from; attached to built modules as ``model.archc_source`` so they can be saved."""

    spec_text: str
    spec_file: str
    request: BuildRequest  # what it was lowered at (overrides included), as a saved model stores it

    @property
    def args(self) -> dict:
        """The request as a saved model's build arguments (:meth:`BuildRequest.to_dict`)."""
        return self.request.to_dict()


def builtin_specs() -> dict[str, Path]:
    """Shipped specs by name (``efficientnet_b0`` -> its YAML file)."""
    for folder in (_PACKAGE_SPECS, _SOURCE_SPECS):
        if folder.is_dir():
            return {p.stem: p for p in sorted(folder.glob("*.yaml"))}
    return {}


@functools.lru_cache(maxsize=1)
def shipped_aliases() -> dict[str, tuple[Path, str | None]]:
    """Every other name of a shipped network (timm's, say): name -> (its spec file, the preset it names)."""
    found = {}
    for path in builtin_specs().values():
        for alias, preset in load_spec(path).aliases.items():
            found.setdefault(alias, (path, preset))
    return found


def shipped_spec(name: str, overrides: Overrides | None = None) -> Spec:
    """A shipped spec, or another name of one (the spec at that name's preset), whatever the working folder holds."""
    builtins = builtin_specs()
    if name in builtins:
        return load_spec(builtins[name], overrides)
    return load_spec(shipped_aliases()[name][0], _merged(overrides, under=_alias_overrides(name)))


def _alias_overrides(name: str) -> dict:
    """What another name of a shipped spec sets over the file: the name, the preset it names, and the conventions
    the name brings (a timm tf_ name: TF's padding and eps)."""
    from .weights import name_conventions

    preset = shipped_aliases()[name][1]
    return {"name": name, **({"scaling.preset": preset} if preset else {}), **name_conventions(name)}


def _shipped_name(source) -> str | None:
    """The shipped name ``source`` is read as by :func:`read` (None for a Spec, or a file found under that name)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    name = os.fspath(source)
    shipped = name in builtin_specs() or name in shipped_aliases()
    return name if shipped and not Path(name).is_file() else None


def read(spec: Spec | str | os.PathLike, overrides: Overrides | None = None) -> Spec:
    """A Spec from a Spec, a YAML file path, the name of a shipped spec, or a saved ``.safetensors`` model (the spec
    it was built from), with ``overrides`` applied (``{"stages[3].se": "none"}`` or ``["stages[3].se=none"]``),
    validated like the file."""
    if isinstance(spec, Spec):  # what it was read with (an alias's name, preset and conventions), then ``overrides``
        return parse_spec(spec.source.text, spec.source.file, _combined(spec.source.applied, overrides)) if overrides else spec
    path, name = Path(spec), os.fspath(spec)
    if _is_checkpoint(spec):
        return _saved_spec(name, overrides)
    builtins = builtin_specs()
    shipped = name in builtins or name in shipped_aliases()  # only a bare name (no folder, no .yaml) can be one
    if path.is_file():  # a file wins: it is what the user has in front of them
        result = load_spec(path, overrides)
        if shipped:
            result.source.notes.append(f"{name} is a file here and the name of a shipped spec; using the file (./{name})")
        return result
    if shipped and path.is_dir():  # a folder of that name (say, a training run's output) hides nothing
        result = shipped_spec(name, overrides)
        result.source.notes.append(f"{name} is a folder here; using the shipped spec ({result.source.file})")
        return result
    if path.exists():  # a folder, a device, a FIFO: load_spec says why it cannot be read
        return load_spec(path, overrides)
    if shipped:
        return shipped_spec(name, overrides)
    architecture = _timm_architecture(name)
    if architecture in builtins or architecture in shipped_aliases():
        raise SpecError(f"a timm model name with its hub prefix or pretrained tag; archc builds the architecture by its name, "
                        f"{architecture!r} (pretrained weights are yours to pass: weights=..., weights_from='timm')", file=str(spec))
    # The family has dozens of names: offer the close ones, and say where the rest are listed.
    close = difflib.get_close_matches(name, [*builtins, *shipped_aliases()], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise SpecError(f"no such file or shipped spec{hint} (archc list shows every shipped name)", file=str(spec))


def _timm_architecture(name: str) -> str:
    """timm's architecture name in one of its model names: ``resnet50`` of ``resnet50.a1_in1k`` (a pretrained tag) and of
    ``hf-hub:timm/resnet50.a1_in1k`` or ``timm/resnet50`` (a hub prefix)."""
    name = name.removeprefix("hf-hub:").removeprefix("hf_hub:").removeprefix("timm/")
    return name.partition(".")[0]


def validate(spec: Spec | str | os.PathLike, overrides: Overrides | None = None) -> Spec:
    """Check a spec completely without importing torch: the model itself, then lowering at its own
    settings and at every preset it defines. Returns the Spec; raises an :class:`ArchcError`."""
    spec = read(spec, overrides)
    total = block_count(spec)
    _lower(spec)
    for preset in spec.scaling.presets:
        total += block_count(spec, preset=preset)  # refuses a preset over MAX_BLOCKS before building it
        if total > VALIDATE_BLOCKS:
            file, line = spec.source.locate(("scaling", "presets", preset))
            raise LoweringError(
                f"validating every preset would lower more than {VALIDATE_BLOCKS:,} blocks in all; archc stops there",
                file=file, line=line, path=f"scaling.presets.{preset}",
            )
        _lower(spec, preset=preset)
    return spec


def plan(base: Spec | str | os.PathLike, *, spacing=None, shape=None, images=None, task: str = "classify", name: str | None = None,
         in_channels: int | None = None, num_classes: int | None = None, overrides: Overrides | None = None,
         memory: int | str | None = None, batch: int = 1, precision: str = "fp32", checkpointing: bool = False,
         macs: int | str | None = None, params: int | str | None = None):
    """Plan a network for data of this voxel ``spacing`` (mm per axis) and ``shape`` (voxels per axis) from ``base``:
    per-axis strides and kernels by nnU-Net's rule on the base's own downsampling steps (archc/planning.py).
    ``images`` instead (a glob pattern, a folder or a list of NIfTI files): their headers give nnU-Net's target
    spacing and the median shape at it (archc/fingerprint.py; needs ``archc[plan]``). With a budget, ``shape`` is the
    median shape and the input patch is chosen from it as nnU-Net v2 chooses it (``.patch``; archc/planning.py:
    choose_patch), then ``memory`` (bytes, or "11GiB"): the largest phi whose training step at ``batch`` fits (``precision`` fp32 or mixed, ``checkpointing``), width
    and depth only, as the data fix the input size (archc/budget.py); ``macs`` / ``params`` ("50G", "10M") limit
    the MACs per sample and the parameters likewise, alone or with ``memory``.
    Returns a :class:`~archc.planning.Planned`: ``.spec`` (validated and lowered once), ``.decisions`` with their
    reasons (``.reasons`` by field path), ``.text`` (the spec as YAML, every decision commented)."""
    from .errors import PlanningError
    from .planning import Decision, Planned, plan_spec, spec_text

    written = read(base, overrides)
    found = None
    if images is not None:
        if spacing is not None or shape is not None:
            raise PlanningError("give images, or spacing and shape, not both")
        from .fingerprint import fingerprint

        found = fingerprint(images)
        spacing, shape = found.target_spacing, found.shape
    elif spacing is None or shape is None:
        raise PlanningError("give the voxel spacing and the shape (or images to read them from)")
    budget = _budget(memory, macs, params, batch)
    choice = None
    if any(v is not None for v in budget.values()):
        choice = _choose_patch(written, spacing, shape, budget, batch, precision, checkpointing,
                               dict(task=task, name=name, in_channels=in_channels, num_classes=num_classes))
        shape = choice.patch
    raw, decisions, topology, total, notes = plan_spec(written, spacing, shape, task=task, name=name, in_channels=in_channels, num_classes=num_classes)
    if choice is not None:
        at = next(i for i, d in enumerate(decisions) if d.path == "resolution")
        decisions[at] = Decision("resolution", decisions[at].value, f"{choice.reason}; {decisions[at].reason}")
    if found is not None:
        notes.insert(0, f"from the headers of {len(found.images)} images: median spacing {_axes_text(found.median_spacing)} mm, median shape "
                        f"{_axes_text(found.median_shape)}; target spacing {_axes_text(found.target_spacing)} mm ({found.target_reason}); "
                        f"median shape at the target spacing {_axes_text(found.shape)}")
    text = spec_text(raw, decisions, topology, written.name, task, notes)
    spec = parse_spec(text, file=f"<plan of {written.name}>")
    _lower(spec)
    if choice is not None:
        spec, text = _fit_budget(raw, decisions, spec, budget, batch, precision, checkpointing, lambda: spec_text(raw, decisions, topology, written.name, task, notes))
    return Planned(spec, text, tuple(decisions), topology, total, tuple(notes), choice)


def _budget(memory, macs, params, batch: int) -> dict:
    from .budget import parse_bytes, parse_count

    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise ArgumentError(f"batch: got {batch!r}, expected a positive whole number")
    return {"memory": parse_bytes(memory) if isinstance(memory, str) else memory, "macs": parse_count(macs, "macs") if isinstance(macs, str) else macs,
            "params": parse_count(params, "params") if isinstance(params, str) else params}


def _fixed_size(spec: Spec, checkpointing: bool) -> Spec:
    """The spec with gamma 1 (the data fix the input size: phi scales width and depth) and checkpointing as asked."""
    return spec.model_copy(update={"scaling": spec.scaling.model_copy(update={"gamma": 1.0}), "checkpointing": checkpointing})


def _choose_patch(written: Spec, spacing, median_shape, budget: dict, batch: int, precision: str, checkpointing: bool, options: dict):
    """The input patch as nnU-Net v2 chooses it (archc/planning.py: choose_patch), each candidate planned afresh (its
    strides depend on its size) and fitting when the base network (phi 0) trains within the memory and MACs budget;
    a parameter budget does not depend on the patch and is met by phi alone."""
    from .analysis import analyze
    from .budget import gib, training_cost
    from .planning import choose_patch, plan_spec, spec_text

    spacing = tuple(spacing)

    @functools.lru_cache(maxsize=None)
    def planned(patch):
        raw, decisions, topology, total, notes = plan_spec(written, spacing, patch, **options)
        return parse_spec(spec_text(raw, decisions, topology, written.name, options["task"], notes), file=f"<plan of {written.name}>"), total

    def pad(patch):
        spec, total = planned(tuple(patch))
        return tuple(spec.resolution), total

    def fits(patch):
        if budget["memory"] is None and budget["macs"] is None:
            return True
        report = analyze(_lower(_fixed_size(planned(tuple(patch))[0], checkpointing), phi=0.0))
        return ((budget["memory"] is None or training_cost(report, precision).total(batch) <= budget["memory"])
                and (budget["macs"] is None or report.macs <= budget["macs"]))

    mode = f"{'mixed precision' if precision == 'mixed' else 'float32'}{', checkpointing' if checkpointing else ''}"
    limits = [text for text, given in ((f"trains within {gib(budget['memory'] or 0)} at batch {batch} ({mode})", budget["memory"]),
                                       (f"has at most {budget['macs'] or 0:,} MACs per sample", budget["macs"])) if given]
    limit = f"at phi 0 {' and '.join(limits)}" if limits else "stands (a parameter budget does not depend on the patch)"
    return choose_patch(spacing, median_shape, pad, fits, limit)


def _fit_budget(raw: dict, decisions: list, spec: Spec, budget: dict, batch: int, precision: str, checkpointing: bool, write):
    """The largest phi within the budget (training memory, MACs, parameters), width and depth only: the data fix the input size."""
    from .budget import WORKSPACE, gib, largest_phi
    from .planning import Decision

    memory, macs, params = budget["memory"], budget["macs"], budget["params"]
    fixed = _fixed_size(spec, checkpointing)
    fit = largest_phi(lambda phi: _lower(fixed, phi=phi), memory, batch, precision, macs=macs, params=params)
    raw["scaling"]["gamma"] = 1
    raw["scaling"]["phi"] = fit.phi
    if checkpointing:
        raw["checkpointing"] = True
    mode = f"{'mixed precision' if precision == 'mixed' else 'float32'}{', checkpointing' if checkpointing else ''}"
    limits = [text for text, given in ((f"whose training step fits {gib(memory or 0)} at batch {batch} ({mode})", memory),
                                       (f"with at most {macs or 0:,} MACs per sample", macs), (f"with at most {params or 0:,} parameters", params)) if given]
    decisions.append(Decision("scaling.gamma", 1, "the data fix the input size: phi scales width and depth only"))
    decisions.append(Decision("scaling.phi", fit.phi, (
        f"the largest phi (in quarter steps) {' and '.join(limits)}: {fit.report.params:,} parameters, {fit.report.macs:,} MACs, "
        f"about {gib(fit.needed)} to train at batch {batch} ({fit.report.params:,} x 16 B + {gib(WORKSPACE)} + {batch} x {gib(fit.cost.per_sample)} of activations)"
        + (f"; phi {fit.next_phi:g} {fit.next_over}" if fit.next_phi is not None else " (the largest phi tried)")
        + (f"; at phi {fit.phi:g} the largest batch is {fit.cost.largest_batch(memory)}" if memory else ""))))
    text = write()
    planned = parse_spec(text, file=f"<plan of {spec.name}>")
    _lower(planned)
    return planned, text


def _axes_text(values) -> str:
    return "x".join(f"{v:.4g}" for v in values)


def lower(source: Spec | str | os.PathLike, request: BuildRequest | Overrides | None = None, **fields) -> ir.Plan:
    """Spec (or path, or shipped name, or saved ``.safetensors`` model) -> Plan, at ``request`` (a
    :class:`~archc.request.BuildRequest`) or its fields as keywords (phi, preset, dims, in_channels, num_classes,
    resolution, overrides, features_only, checkpointing). As in earlier releases, the second argument may also be
    the overrides themselves (``archc.lower("efficientnet_b0", {"norm.type": "group"})``)."""
    request = _request(request, fields)
    if _is_checkpoint(source):
        from . import checkpoint

        given = sorted(request.to_dict())
        if given:
            raise ArgumentError(f"a saved model is described as it was built; {', '.join(given)} cannot be changed", file=str(source))
        return _saved_plan(checkpoint.load(str(source), tensors=False), str(source))
    return _lower(read(source, request.spec_overrides()), **request.lowering_args())


def _request(request, fields: dict) -> BuildRequest:
    """A BuildRequest from what a verb was given: a request, or the older positional overrides, and fields as keywords."""
    if request is not None and not isinstance(request, BuildRequest):
        if not isinstance(request, (dict, list, tuple)):
            raise ArgumentError(f"request must be an archc.BuildRequest (or overrides: a mapping or a list of PATH=VALUE), got {shown(request)}")
        if "overrides" in fields:
            raise ArgumentError("overrides given twice: as the second argument and as overrides=")
        request, fields = None, {**fields, "overrides": request}
    return as_request(request, **fields)


def build(source: ir.Plan | Spec | str | os.PathLike, request: BuildRequest | None = None, *, seed: int | None = None, **options) -> "nn.Module":
    """A module, as ``archc build SPEC`` builds it: from a Plan (``seed`` only; the Plan decides the module entirely,
    so ``analyze(plan)`` describes exactly what this returns), or from anything :func:`load` takes (a spec file, a
    shipped name, a Spec, a saved model) with its request and options. Weights are bit-identical for the same ``seed``."""
    if not isinstance(source, ir.Plan):
        return load(source, request, seed=seed, **options)
    if request is not None or options:
        given = ", ".join(["request"] * (request is not None) + sorted(options))
        raise ArgumentError(f"a Plan is built as it is; {given} cannot apply to it (lower the spec with them, or pass the spec)")
    _check_seed(seed)
    from .emit.network import build as emit

    return emit(source, seed=seed)


LOAD_OPTIONS = ("seed", "weights", "weights_from", "inflate", "max_params")  # load's own keywords, besides the request's fields
# load's and restore's former finishing keywords -> what replaces each (they keep working, with a warning, until 0.3).
DEPRECATED = {
    "fuse": "model.fuse_norms()",
    "sync_bn": "torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)",
    "channels_last": "model.set_channels_last()",
}


def load(
    source: Spec | str | os.PathLike,
    request: BuildRequest | None = None,
    *,
    seed: int | None = None,
    weights=None,
    weights_from: str = "archc",
    inflate: str = "center",
    max_params: int | None = MAX_PARAMS,
    **fields,
) -> "nn.Module":
    """Compile a spec (path, shipped name or Spec) into a module, or restore a saved ``.safetensors`` model.

    What to build is ``request`` (a :class:`~archc.request.BuildRequest`), or its fields as keywords: ``phi`` or
    ``preset``, ``dims``, ``in_channels``, ``num_classes``, ``resolution``; ``overrides`` change spec values without
    editing the file (``{"norm.type": "group"}``); with ``features_only`` the module returns one feature map per
    reduction level (``model.feature_info``); ``checkpointing`` recomputes each block's activations in backward.
    ``seed`` makes the initial weights bit-identical across runs.

    ``weights`` (a state_dict or a file) are imported from ``weights_from`` (archc, monai, efficientnet_pytorch,
    torchvision, timm, timm_tf); 2D weights go into a 3D model by ``inflate`` (``"center"``, the default, as
    ``archc convert`` and ``archc inflate``; or ``"mean"``); the stem's input channels and a classifier of another
    size are adapted. ``model.archc_notes`` says what was. A timm name of a TF port (``tf_efficientnet_b0``)
    builds with TF's padding and eps, as timm's module of that name, whichever source its weights come from.
    A model over ``max_params`` parameters is refused before anything is allocated (None: no limit).

    Inference (eval mode, no autograd) already folds batch norms into their convs on each call and runs
    channels-last on the CPU, and training recomputes each norm's output in backward instead of keeping it
    (``model.set_fast_paths(False)`` runs the modules one by one instead; docs/performance.md). The model's own
    methods finish it further: ``model.fuse_norms()`` folds the batch norms once and for all (eval mode, for
    deployment); ``model.set_channels_last()`` keeps NHWC / NDHWC order in training too;
    ``torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)`` prepares multi-GPU training. (The keywords ``fuse``,
    ``channels_last`` and ``sync_bn`` still do the same, with a DeprecationWarning, until archc 0.3.)

    >>> model = archc.load("specs/efficientnet_b0.yaml", phi=2, dims=3, in_channels=1, num_classes=2)
    """
    finishing = _deprecated(fields, "load")
    request = as_request(request, **fields)
    _check_seed(seed)
    _check_max_params(max_params)
    from .weights import check_request

    check_request(weights_from, inflate)
    if _is_checkpoint(source):
        changed = sorted(request.to_dict()) + [name for name, value, default in (
            ("seed", seed, None), ("weights", weights, None), ("weights_from", weights_from, "archc"), ("inflate", inflate, "center")) if value != default]
        if changed:
            raise ArgumentError(f"a saved model is restored as it was built; {', '.join(changed)} cannot be changed", file=str(source))
        return _finish(_restore(os.fspath(source), max_params), **finishing)
    overrides = request.spec_overrides()
    weights_path = weights if isinstance(weights, (str, os.PathLike)) else None
    trained = None  # the Plan the weights were trained in, when they are an archc checkpoint
    written, conventions = None, {}  # the spec as the user gave it; what the weights' source was trained with
    if weights is not None:
        written = read(source, overrides)
        weights, conventions, trained = _weights_and_conventions(weights, weights_from, {row.block for row in written.stages})
        conventions = _with_name_conventions(conventions, _shipped_name(source), weights_from, overrides)
        overrides = _merged(overrides, under=conventions)
    spec = read(source, overrides)
    plan = _lower(spec, **request.lowering_args())
    if trained is not None:
        from .weights import convention_differences

        differences = convention_differences(trained, plan)
        if differences:
            raise CheckpointError(
                "the weights were trained with other conventions than this spec builds: " + concat_problems(differences, 4)
                + " (set the spec's values to the weights', e.g. with overrides)", file=str(weights_path))
    _check_size(plan, max_params)
    if finishing.get("channels_last"):
        _check_channels_last(plan)
    model = build(plan, seed=seed)
    model.archc_notes = ()
    if weights is not None:
        from .weights import import_weights, read_state_dict

        try:
            imported = import_weights(read_state_dict(weights), model, weights_from, inflate)
        except CheckpointError as exc:  # name the file the tensors came from
            exc.file = exc.file or (os.fspath(weights_path) if weights_path is not None else None)
            raise
        model.load_state_dict(imported.state_dict)
        model.archc_notes = _convention_notes(written, spec, conventions, weights_from) + imported.notes
    # A saved model is rebuilt from its spec's text and this request; the conventions of the weights' source and
    # what a shipped alias adds over its file (its name, preset, padding) are part of what was built.
    saved = _merged(overrides, under=_alias_overrides(_shipped_name(source))) if _shipped_name(source) in shipped_aliases() else overrides
    if request.checkpointing is not None:  # stored as the request's field, not twice
        saved = _without(saved, "checkpointing")
    model.archc_source = BuildSource(spec.source.text, spec.source.file, request.replace(overrides=_plain(saved) if saved else None))
    return _finish(model, **finishing)


def restore(path: str | os.PathLike, *, max_params: int | None = MAX_PARAMS, **finishing) -> "nn.Module":
    """A model saved by :func:`save`, exactly as it was built (``load`` does this for a ``.safetensors`` path).
    (``fuse``, ``sync_bn`` and ``channels_last`` still finish it, with a DeprecationWarning, until archc 0.3.)"""
    finishing = _deprecated(finishing, "restore")
    _check_max_params(max_params)
    return _finish(_restore(os.fspath(path), max_params), **finishing)


def _deprecated(options: dict, verb: str) -> dict:
    """Take the former finishing keywords out of ``options`` with a DeprecationWarning naming what replaces each;
    the ones that are on, to apply. Anything else left in ``options`` is for the caller to check."""
    import warnings

    taken = {}
    for name, replacement in DEPRECATED.items():
        if name not in options:
            continue
        value = options.pop(name)
        if not isinstance(value, bool):
            raise ArgumentError(f"{name} must be True or False, got {shown(value)}")
        warnings.warn(f"archc.{verb}(..., {name}=...) is deprecated and goes in archc 0.3: call {replacement} on the model instead",
                      DeprecationWarning, stacklevel=3)
        if value:
            taken[name] = True
    if verb == "restore" and options:
        raise ArgumentError(f"{', '.join(options)}: not an argument of archc.restore (it takes max_params)")
    return taken


def _is_checkpoint(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).endswith(CHECKPOINT_SUFFIX)


def render(
    source: ir.Plan | Spec | str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    detail: str = "stage",
    direction: str = "TB",
    format: str | None = None,
    spacing: tuple[float, ...] | None = None,
    request: BuildRequest | None = None,
    **fields,
) -> "graphviz.Digraph | str":  # noqa: F821
    """Diagram of a Plan or spec (``request`` or its fields as for :func:`lower`) as a ``graphviz.Digraph``; with ``output``, also
    written there in the format its extension names (.svg, .png, .pdf, or .dot which needs no ``dot`` binary).

    ``format="html"`` (or an ``output`` ending in ``.html``): the interactive page instead, one self-contained file
    returned as text (``detail`` and ``direction`` do not apply: the page opens each level on demand); from a spec,
    each part shows the spec line it came from; ``spacing`` (mm per axis) adds each stage's voxel size, extent and
    receptive field in mm, as ``archc info --spacing`` reports them."""
    from . import diagram as draw

    html = format == "html" or (format is None and output is not None and os.fspath(output).lower().endswith(".html"))
    if format not in (None, "html"):
        raise ArgumentError(f"unknown format {format!r}; expected html, or none (a graphviz diagram, its file format from the output's extension)")
    if spacing is not None and not html:
        raise ArgumentError("spacing: millimetres are shown on the interactive page; write it as FILE.html (or use archc info --spacing)")
    if output is not None:
        if html:
            check_destination(os.fspath(output))
        else:
            draw.output_format(os.fspath(output))  # refuse a bad extension before any work
    request = _request(request, fields)
    if isinstance(source, ir.Plan) and request != BuildRequest():
        raise ArgumentError(f"a Plan is drawn as it is; {', '.join(sorted(request.to_dict()))} cannot apply to it")
    if not html:
        plan = source if isinstance(source, ir.Plan) else lower(source, request)
        graph = draw.to_dot(plan, detail=detail, direction=direction)
        if output is not None:
            draw.write(graph, output)
        return graph
    from .html_view import to_html
    from .lowering import spec_lines

    if isinstance(source, ir.Plan):
        plan, lines = source, {}
    elif _is_checkpoint(source):  # described as it was built; its spec's lines are not the file the user has
        plan, lines = lower(source, request), {}
    else:
        spec = read(source, request.spec_overrides())
        plan = _lower(spec, **request.lowering_args())
        lines = spec_lines(spec, plan)
    page = to_html(plan, lines, spacing=spacing)
    if output is not None:
        write_atomic(os.fspath(output), page)
    return page


def export(model: "nn.Module", path: str | os.PathLike, batch: int = 1, opset: int | None = None, progress=None) -> None:
    """Write a deployable file of ``model``: ``.pt`` TorchScript, ``.pt2`` torch.export, ``.onnx`` ONNX (``opset``:
    the ONNX opset, default the exporter's). Batch and spatial axes are dynamic where the format allows it.
    ``progress(message)`` is told each step as it starts."""
    from .deploy import export as write

    write(model, path, batch, opset, progress)


def save(model: "nn.Module", path: str | os.PathLike) -> None:
    """Write a module made by :func:`load` to a ``.safetensors`` file that :func:`load` restores exactly."""
    from . import checkpoint

    path = os.fspath(path)
    if not path.endswith(CHECKPOINT_SUFFIX):
        raise ArgumentError(f"a saved model is a {CHECKPOINT_SUFFIX} file", file=path)
    source = getattr(model, "archc_source", None)
    if getattr(model, "fused", False):
        raise EmitError("a fused model is for inference only; save the model before fusing (model.fuse_norms())", file=path)
    if getattr(model, "pruned", False):
        raise EmitError("a model cut down by prune_intermediate_layers is no longer what its spec builds; save the model "
                        "before pruning, or its state_dict", file=path)
    if not isinstance(source, BuildSource):
        raise EmitError("this module was not compiled by archc.load, so its spec is unknown and it cannot be saved", file=path)
    # A file that load() would refuse is not written: the module must still be what its spec builds.
    from .emit.network import instantiate

    state = model.state_dict()
    problems = _misfits(instantiate(model.plan).state_dict(), state)
    if problems:
        raise EmitError(
            "the module no longer matches its spec (" + concat_problems(problems, 3) + "): change the spec or the build arguments "
            "(num_classes=, overrides=) instead of the module, then save", file=path)
    # The classes are the Plan's (reset_classifier changes them), so the file rebuilds the module as it is now.
    request = source.request.replace(num_classes=model.plan.head.num_classes) if model.plan.head is not None else source.request
    checkpoint.save(path, state, source.spec_text, source.spec_file, request.to_dict())


def _restore(path: str, max_params: int | None = MAX_PARAMS) -> "nn.Module":
    from . import checkpoint
    from .emit.network import instantiate

    saved = checkpoint.load(path)
    request, plan = _saved_request(saved, path), _saved_plan(saved, path)
    _check_size(plan, max_params)
    model = instantiate(plan)
    problems = _misfits(model.state_dict(), saved.tensors)
    if problems:
        raise CheckpointError("weights do not fit the embedded spec: " + concat_problems(problems), file=path)
    model.load_state_dict(saved.tensors, strict=True, assign=True)
    model.archc_source = BuildSource(saved.spec_text, saved.spec_file, request)
    return model


def _saved_spec(path: str, overrides: Overrides | None) -> Spec:
    """The spec a saved model was built from, with the overrides it was built with and then the caller's."""
    from . import checkpoint

    saved = checkpoint.load(path, tensors=False)
    built_with = _saved_request(saved, path).spec_overrides()
    return parse_spec(saved.spec_text, file=f"{path} (spec saved from {printable(saved.spec_file)})",
                      overrides=_combined(built_with, overrides) or None)


def _saved_request(saved, path: str) -> BuildRequest:
    """The request a checkpoint stores (an earlier archc's file stores the same names, fewer of them)."""
    try:
        return BuildRequest.from_dict(saved.build_args)
    except ArgumentError as exc:
        raise CheckpointError(f"its build arguments are not archc's ({exc.message}): {json.dumps(saved.build_args)[:120]}", file=path) from None


def _saved_plan(saved, path: str) -> ir.Plan:
    """The Plan a checkpoint's embedded spec and request give."""
    embedded = f"{path} (spec saved from {printable(saved.spec_file)})"
    request = _saved_request(saved, path)
    try:
        return _lower(parse_spec(saved.spec_text, file=embedded, overrides=request.spec_overrides()), **request.lowering_args())
    except ArchcError as exc:
        raise CheckpointError(f"its embedded spec no longer compiles: {exc}", file=path) from None


def _misfits(expected: dict, found: dict) -> list[str]:
    """How the tensors ``found`` differ from those a module ``expected`` (names, shapes, dtypes)."""
    from .checkpoint import dtype_name

    problems = [f"missing tensor {key} {list(value.shape)}" for key, value in expected.items() if key not in found]
    problems += [f"unexpected tensor {printable(key)} {list(value.shape)}" for key, value in found.items() if key not in expected]
    for key, want in expected.items():
        have = found.get(key)
        if have is not None and have.shape != want.shape:
            problems.append(f"tensor {key} has shape {list(have.shape)}, the model needs {list(want.shape)}")
        elif have is not None and have.dtype != want.dtype:
            problems.append(f"tensor {key} has dtype {dtype_name(have.dtype)}, the model needs {dtype_name(want.dtype)}")
    return problems


def _plain(overrides: Overrides) -> dict | list:
    """Overrides as JSON can store them (a checkpoint's metadata)."""
    return dict(overrides) if isinstance(overrides, dict) else [str(item) for item in overrides]


def _check_size(plan: ir.Plan, max_params: int | None) -> None:
    """Refuse, from the Plan's estimate, a build whose weights alone would not fit a machine."""
    if max_params is None:
        return
    from .analysis import analyze
    from .formatting import size

    params = analyze(plan).params
    if params > max_params:
        raise LoweringError(
            f"this model would have {params:,} parameters ({size(4 * params)} of float32 weights), over the limit of "
            f"{max_params:,}; if that is what you want, pass --max-params {params} (archc.load(..., max_params={params}))"
        )


MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes 0 .. 2**64 - 1


def _check_seed(seed: int | None) -> None:
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
        raise ArgumentError(f"seed must be an integer from 0 to {MAX_SEED}, got {shown(seed)}")


def _check_max_params(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ArgumentError(f"max_params must be a positive integer (or None: no limit), got {shown(limit)}")


def _check_channels_last(plan: ir.Plan) -> None:
    if plan.dims == 1:
        raise ArgumentError("channels_last is a memory order of 2D and 3D tensors; a 1D model has none")


def _finish(model: "nn.Module", *, sync_bn: bool = False, fuse: bool = False, channels_last: bool = False) -> "nn.Module":
    """The former finishing keywords (deprecated), applied as their replacements are: what a model compiled from a
    spec and one restored from a file both go through last."""
    if channels_last:
        _check_channels_last(model.plan)
    if sync_bn:
        from torch.nn import SyncBatchNorm

        model = SyncBatchNorm.convert_sync_batchnorm(model)
    if fuse:
        model = model.fuse_norms()
    if channels_last:
        model.set_channels_last()
    return model


def _restore_if_archc(path: str) -> "nn.Module | None":
    """The saved model, or None when the file is a plain safetensors file (not written by archc)."""
    from .checkpoint import NotArchcCheckpoint

    try:
        return _restore(path)
    except NotArchcCheckpoint:
        return None


def _weights_and_conventions(weights, weights_from: str, block_types: set[str]):
    """The weights to import, the spec overrides their source was trained with (padding, norm eps), and for an
    archc checkpoint the Plan it was built from."""
    from .weights import conventions

    if weights_from == "archc" and _is_checkpoint(weights):
        saved = _restore_if_archc(os.fspath(weights))
        if saved is not None:
            # Keep the padding and eps the weights were built with (say, when inflating them into 3D), use the
            # checkpoint's verified tensors, and compare the rest of its conventions once the target is lowered.
            return saved.state_dict(), {"padding": saved.plan.padding, "norm.eps": saved.plan.norm.eps}, saved.plan
    return weights, conventions(weights_from, block_types), None


def _with_name_conventions(conventions: dict, name: str | None, source: str, overrides: Overrides | None) -> dict:
    """The conventions the weights are built with when the target's name carries its own (a timm tf_ name: TF's
    padding and eps, as timm builds that name). timm's weights of such a name are the TF port (timm and timm_tf
    share one key layout), so the name decides; another source trained otherwise is refused, naming the fix."""
    from .kinds.sources import SOURCES, named_source
    from .weights import name_conventions

    named = name_conventions(name) if name else {}
    if not named:
        return conventions
    if SOURCES[source].keys == named_source(name).keys:  # the name's own source's key layout (timm's): the name decides
        return {**conventions, **named}
    given = {str(item).partition("=")[0].strip() for item in overrides} if overrides else set()  # the user's own choices stand
    clashes = {path: value for path, value in conventions.items() if path in named and value != named[path] and path not in given}
    if clashes:
        theirs = " and ".join(f"{path} {value}" for path, value in clashes.items())
        ours = " and ".join(f"{path} {named[path]}" for path in clashes)
        raise CheckpointError(
            f"{name} is timm's port of TF's weights, built with {ours}; {source} weights were trained with {theirs}: "
            f"load {name.removeprefix('tf_')} for them (or set {', '.join(clashes)} with overrides)")
    # Where the user chose a value, the source's stays what the weights were trained with (for the notes).
    return {**named, **{path: value for path, value in conventions.items() if path not in named or path in given}}


def _convention_notes(written: Spec, built: Spec, conventions: dict, source: str) -> tuple[str, ...]:
    """One note per convention of the weights' source that the spec as written does not follow: applied (the spec's
    own value replaced), or kept because the user's overrides set it (then the outputs are not the source's)."""
    notes = []
    for path, wanted in conventions.items():
        was, now = _value(written, path), _value(built, path)
        if was == wanted:
            continue
        if now == wanted:
            notes.append(f"{path}: {wanted} instead of the spec's {was}, as {source}'s weights were trained")
        else:
            notes.append(f"{path}: kept {now} from the overrides, though {source}'s weights were trained with {wanted}: outputs will differ from the source's")
    return tuple(notes)


def _value(spec: Spec, path: str):
    value = spec
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _merged(overrides: Overrides | None, under: dict | None = None, over: dict | None = None) -> Overrides:
    """``under``, then the user's ``overrides``, then ``over`` (later wins), in the user's form (mapping or
    PATH=VALUE list)."""
    under, over = under or {}, over or {}
    if isinstance(overrides, (list, tuple)):
        return _assignments(under) + list(overrides) + _assignments(over)
    return {**under, **(overrides or {}), **over}


def _combined(first: Overrides | None, then: Overrides | None) -> Overrides | None:
    """``first``, then ``then`` (later wins): a mapping when both are (or are empty), else PATH=VALUE texts."""
    if not first or not then:
        return then or first
    if isinstance(first, dict) and isinstance(then, dict):
        return {**first, **then}
    return _assignments(first) + _assignments(then)


def _without(overrides: Overrides, path: str) -> Overrides | None:
    """``overrides`` less those that set ``path``."""
    if isinstance(overrides, dict):
        return {key: value for key, value in overrides.items() if str(key).strip() != path} or None
    return [item for item in overrides if str(item).partition("=")[0].strip() != path] or None


def _assignments(overrides: Overrides) -> list[str]:
    """Overrides as ``PATH=VALUE`` texts, the CLI's form, whichever form they came in."""
    if not isinstance(overrides, dict):
        return list(overrides)
    return [f"{key}={_yaml_scalar(value)}" for key, value in overrides.items()]


def _yaml_scalar(value) -> str:
    """A Python value as the YAML a ``--set`` reads back the same: True -> true, None -> null (not the text "None"),
    and a string YAML would read as something else (a preset named "0.75", the text "true") quoted."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, dict)):  # JSON is YAML: a list of kernels, a mapping, read back as written
        return json.dumps(value)
    if not isinstance(value, str):
        return str(value)
    try:
        same = read_yaml(value, "<override>")[0] == value
    except ArchcError:
        same = False
    return value if same else json.dumps(value)
