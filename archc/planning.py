"""Planning a network from the data: voxel spacing and size in, per-axis strides and kernels out.

The rule is nnU-Net v2's (``nnunetv2/experiment_planning/experiment_planners/network_topology.py``,
``get_pool_and_conv_props``), restated here step by step so that every decision carries its reason:

- an axis is pooled (stride 2) only while its current spacing is under 2x the finest spacing among the axes
  still large enough to pool, and while it has at least ``2 * min_feature_map`` voxels (a lone axis left to
  pool needs ``3 * min_feature_map``);
- a kernel is 1 along an axis whose spacing is 2x the finest or more, and becomes 3 (for good) once pooling the
  other axes has brought it within 2x; the deepest level always gets 3 on every axis.

:func:`pool_and_conv` is that rule alone (tested against nnU-Net's own function). :func:`plan_spec` maps its
steps onto a base spec's own downsampling steps (its stem and strided rows, in order), and writes the result as
an ordinary spec with a comment on every decision. Pure: sees the spec and scaling, imports no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import yaml

from .errors import PlanningError
from .spec import Spec

MIN_FEATURE_MAP = 4  # nnU-Net's UNet_featuremap_min_edge_length: the smallest edge of the bottleneck's feature map
TASKS = ("classify", "segment")


@dataclass(frozen=True)
class Step:
    """One pooling step of the rule: its stride and, for each axis it keeps, why."""

    stride: tuple[int, ...]
    kernel: tuple[int, ...]  # the kernel of the level this step leads to
    spacing: tuple[float, ...]  # after the step, in mm
    size: tuple[int, ...]  # after the step, in voxels
    kept: dict[int, str]  # axis -> why it is not pooled at this step


@dataclass(frozen=True)
class Topology:
    """What the rule decides for one spacing and patch size (nnU-Net's five return values, with reasons)."""

    spacing: tuple[float, ...]
    patch: tuple[int, ...]  # as given
    steps: tuple[Step, ...]
    kernels: tuple[tuple[int, ...], ...]  # one per level: level 0 (full size), then after each step; the last is all 3s
    stop: str  # why there is no further step

    @property
    def pools_per_axis(self) -> tuple[int, ...]:
        return tuple(sum(s.stride[a] == 2 for s in self.steps) for a in range(len(self.spacing)))

    @property
    def strides(self) -> tuple[tuple[int, ...], ...]:
        """nnU-Net's ``pool_op_kernel_sizes``: a leading all-ones entry for the full-size level, then one per step."""
        return ((1,) * len(self.spacing),) + tuple(s.stride for s in self.steps)

    @property
    def divisible_by(self) -> tuple[int, ...]:
        return tuple(2**n for n in self.pools_per_axis)

    @property
    def padded_patch(self) -> tuple[int, ...]:
        """The patch rounded up to a multiple of ``divisible_by`` (nnU-Net's ``pad_shape``)."""
        return tuple(_round_up(n, d) for n, d in zip(self.patch, self.divisible_by))


def pool_and_conv(spacing, patch, min_feature_map: int = MIN_FEATURE_MAP, max_pools: int | None = None) -> Topology:
    """nnU-Net v2's ``get_pool_and_conv_props(spacing, patch, min_feature_map, max_pools)``, with reasons."""
    spacing = _positive_numbers(spacing, "spacing", float)
    patch = _positive_numbers(patch, "shape", int)
    if len(spacing) != len(patch):
        raise PlanningError(f"spacing has {len(spacing)} axes but the shape {_x(patch)} has {len(patch)}; give one value per axis for both")
    dims = len(spacing)
    current, size = list(spacing), list(patch)
    pools, kernel = [0] * dims, [1] * dims
    steps, kernels = [], []
    while True:
        kept = {a: f"{size[a]} voxels left, under 2 x {min_feature_map}" for a in range(dims) if size[a] < 2 * min_feature_map}
        candidates = [a for a in range(dims) if a not in kept]
        if not candidates:
            stop = f"every axis is under 2 x {min_feature_map} voxels ({_x(size)})"
            break
        finest = min(current[a] for a in candidates)
        for a in candidates:
            if current[a] / finest >= 2:
                kept[a] = f"its spacing {_mm(current[a])} is {current[a] / finest:.2g}x the finest ({_mm(finest)}); pooled only within 2x"
            elif max_pools is not None and pools[a] >= max_pools:
                kept[a] = f"already pooled {pools[a]} times, the most allowed"
        valid = [a for a in candidates if a not in kept]
        if len(valid) == 1 and size[valid[0]] < 3 * min_feature_map:
            stop = f"only axis {valid[0]} could still be pooled and it has {size[valid[0]]} voxels, under 3 x {min_feature_map}"
            break
        if not valid:
            stop = "no axis may be pooled: " + "; ".join(f"axis {a}: {why}" for a, why in sorted(kept.items()))
            break
        # once an axis is within 2x of the finest spacing overall, its kernel is 3 and stays 3
        kernel = [3 if k == 3 or current[d] / min(current) < 2 else 1 for d, k in enumerate(kernel)]
        kernels.append(tuple(kernel))
        stride = tuple(2 if a in valid else 1 for a in range(dims))
        for a in valid:
            pools[a] += 1
            current[a] *= 2
            size[a] = -(-size[a] // 2)
        steps.append(Step(stride, (), tuple(current), tuple(size), {a: why for a, why in kept.items()}))
    kernels.append((3,) * dims)  # nnU-Net: the bottleneck is always 3x3(x3)
    # each step leads to the next level: attach that level's kernel
    steps = [Step(s.stride, kernels[i + 1], s.spacing, s.size, s.kept) for i, s in enumerate(steps)]
    return Topology(spacing, patch, tuple(steps), tuple(kernels), stop)


# nnU-Net's starting patch holds as many voxels as 256^3 (3D) or 2048^2 (2D) before it is clipped to the median shape
START_VOXELS = {3: 256**3, 2: 2048**2}


def initial_patch(spacing, median_shape) -> tuple[int, ...]:
    """nnU-Net v2's starting patch (``ExperimentPlanner.get_plans_for_configuration``): proportional to 1/spacing
    (the same extent in mm on every axis), scaled to :data:`START_VOXELS`, rounded, then clipped to the median shape.
    nnU-Net plans no 1D network; a 1D patch starts at the median shape."""
    inverse = [1 / s for s in spacing]
    voxels = START_VOXELS.get(len(spacing))
    if voxels is None:
        return tuple(int(m) for m in median_shape)
    scale = (voxels / math.prod(inverse)) ** (1 / len(spacing))
    return tuple(min(round(i * scale), int(m)) for i, m in zip(inverse, median_shape))


@dataclass(frozen=True)
class PatchChoice:
    """The input patch chosen for a budget, and the way there."""

    median: tuple[int, ...]
    start: tuple[int, ...]  # :func:`initial_patch`, before padding
    tried: tuple[tuple[tuple[int, ...], int], ...]  # each patch that did not fit and the axis then reduced
    patch: tuple[int, ...]  # the first that fits (padded to the total stride)

    limit: str = "fits the budget"  # what fitting means, in words

    @property
    def reason(self) -> str:
        head = (f"patch chosen as nnU-Net v2 does: 1/spacing-proportional, {_x(self.start)} after clipping to the median shape "
                f"{_x(self.median)}, padded to the total stride")
        if not self.tried:
            return f"{head}: {_x(self.patch)} {self.limit}"
        steps = [f"{_x(p)} less axis {a}" for p, a in self.tried]
        shown = steps if len(steps) <= 4 else steps[:2] + [f"{len(steps) - 3} more"] + steps[-1:]
        return (f"{head}; while the patch did not fit, the axis largest relative to the median shape lost one stride step "
                f"({', '.join(shown)}): {_x(self.patch)} is the first that {self.limit}")

    def to_dict(self) -> dict:
        return {"median_shape": list(self.median), "start": list(self.start), "tried": [{"patch": list(p), "reduced_axis": a} for p, a in self.tried],
                "patch": list(self.patch), "fits": self.limit}


def choose_patch(spacing, median_shape, pad, fits, limit: str = "fits the budget") -> PatchChoice:
    """The largest patch that ``fits``, found as nnU-Net v2's ``get_plans_for_configuration`` finds it: start at
    :func:`initial_patch`; while it does not fit, reduce the axis whose size is largest relative to the median shape
    (the last such axis on a tie, as ``np.argsort(...)[-1]``) by that axis's divisor, where the divisor is recomputed
    for the reduced size first (so a size like 224 between 256 and 192 is not skipped), then pad again.

    ``pad(patch)`` -> (the patch padded to its network's divisor, that divisor per axis): nnU-Net's
    ``get_pool_and_conv_props`` gives both; a plan gives its resolution and total stride. ``fits(patch)`` -> bool."""
    median = tuple(int(m) for m in median_shape)
    start = initial_patch(spacing, median)
    patch, divisor = pad(start)
    tried = []
    while not fits(patch):
        ratios = [p / m for p, m in zip(patch, median)]
        axis = max(range(len(patch)), key=lambda a: (ratios[a], a))
        smaller = list(patch)
        smaller[axis] -= divisor[axis]
        if smaller[axis] < 1:
            raise PlanningError(f"nothing fits the budget: even a {_x(patch)} patch is too large, and axis {axis} cannot be reduced below "
                                f"{patch[axis]} (its divisor); a smaller batch, mixed precision, checkpointing or a smaller base lowers the memory")
        tried.append((tuple(patch), axis))
        reduced = list(patch)
        reduced[axis] -= pad(tuple(smaller))[1][axis]
        patch, divisor = pad(tuple(reduced))
    return PatchChoice(median, start, tuple(tried), tuple(patch), limit)


@dataclass(frozen=True)
class Decision:
    """One value the planner chose and why, in the data's units."""

    path: str  # where it sits in the spec: stem.stride, stages[2].kernel, resolution
    value: object
    reason: str

    def to_dict(self) -> dict:
        return {"path": self.path, "value": self.value, "reason": self.reason}


@dataclass(frozen=True)
class Planned:
    """A planned spec: its YAML text (every decision commented), the Spec it parses to, and the decisions."""

    spec: Spec
    text: str
    decisions: tuple[Decision, ...]
    topology: Topology
    total_stride: tuple[int, ...]
    notes: tuple[str, ...] = field(default=())
    patch: PatchChoice | None = None  # how a budget chose the input patch

    @property
    def reasons(self) -> dict[str, str]:
        return {d.path: d.reason for d in self.decisions}

    def to_dict(self) -> dict:
        t = self.topology
        return {
            "name": self.spec.name,
            "spacing": list(t.spacing),
            "shape": list(t.patch),
            "resolution": list(self.spec.resolution),
            "total_stride": list(self.total_stride),
            "nnunet": {"pools_per_axis": list(t.pools_per_axis), "strides": [list(s) for s in t.strides], "kernels": [list(k) for k in t.kernels],
                       "stop": t.stop},
            "decisions": [d.to_dict() for d in self.decisions],
            "notes": list(self.notes),
            "patch": self.patch.to_dict() if self.patch else None,
            "spec": self.text,
        }


def plan_spec(base: Spec, spacing, shape, *, task: str = "classify", name: str | None = None, in_channels: int | None = None,
              num_classes: int | None = None, min_feature_map: int = MIN_FEATURE_MAP) -> tuple[dict, list[Decision], Topology, tuple[int, ...], list[str]]:
    """The planned spec as a plain mapping (what YAML would hold), its decisions, the rule's topology, the total
    stride per axis and notes. :func:`archc.plan` writes and parses it."""
    if task not in TASKS:
        raise PlanningError(f"task: got {task!r}, expected one of {', '.join(TASKS)}")
    patchify = [i for i, layer in enumerate(base.stem.layers or ()) if any(s > 2 for s in layer.stride)]
    if patchify:  # the rule pools by 2 per step; a patchify conv (ConvNeXt's stride 4) takes several steps at once
        i = patchify[0]
        raise PlanningError(f"stem.layers[{i}]: {base.name}'s stem strides by {_x(base.stem.layers[i].stride)} at once (a patchify conv); "
                            "nnU-Net's rule pools by 2 per step: plan from a base whose downsampling steps stride by 2")
    topology = pool_and_conv(spacing, shape, min_feature_map)
    dims = len(topology.spacing)
    raw = base.model_dump(mode="json", exclude_unset=True)
    if raw.pop("regnet", None) is not None:  # RegNet's generated rows are the stages the plan decides on: written out
        raw["stages"] = [row.model_dump(mode="json", exclude_unset=True) for row in base.stages]
    raw.pop("aliases", None)  # the base's other names are its own, not the planned network's
    decisions: list[Decision] = []
    notes: list[str] = []
    steps = _downsampling_steps(base)
    rule = list(topology.steps)
    n_base, n_rule = len(steps), len(rule)
    if n_rule > n_base:
        notes.append(f"the data allow {n_rule} downsampling steps; {base.name} has {n_base}, so it takes the rule's first {n_base} "
                     f"(the coarse axis waits first) and keeps its depth")
    elif n_rule < n_base:
        notes.append(f"{base.name} downsamples {n_base} times but the data allow {n_rule} ({topology.stop}); "
                     f"its last {n_base - n_rule} downsampling step(s) keep every axis (stride 1)")

    raw["name"] = name or f"{base.name}_planned"
    raw["dims"] = dims
    if in_channels is not None:
        raw["in_channels"] = in_channels
    if num_classes is not None:
        raw["num_classes"] = num_classes

    level, total = 0, [1] * dims
    components = _stem_components(raw.setdefault("stem", {}), base.stem) + [(f"stages[{i}]", row, base.stages[i]) for i, row in enumerate(raw["stages"])]
    for path, entry, written in components:
        base_stride = written.stride
        if any(s > 1 for s in base_stride):
            number = level
            level += 1
            if number < n_rule:
                step = rule[number]
                entry["stride"] = _per_axis(step.stride)
                decisions.append(Decision(f"{path}.stride", list(step.stride), _step_reason(number, n_base, step, topology)))
            else:
                entry["stride"] = 1
                decisions.append(Decision(f"{path}.stride", [1] * dims, f"downsampling step {number + 1} of {n_base}: stride 1 on every axis: "
                                          f"after {n_rule} step(s) {topology.stop}"))
            total = [t * s for t, s in zip(total, _axes(entry["stride"], dims))]
            if path == "stem.pool" and written.padding is not None:
                _pool_keeps_unpooled_axes(entry, written, dims, decisions)
        rule_kernel = topology.kernels[min(level, n_rule)]
        extent = tuple(-(-n // t) for n, t in zip(topology.patch, total))  # the feature map at this level
        for key in ("kernel", "start_kernel"):  # a uib's extra depthwise conv follows the same rule
            written_kernel = getattr(written, key, None) if path != "stem.pool" else None  # a pool's window stays
            if written_kernel is None:
                continue
            size = max(written_kernel)
            planned = _capped(tuple(size if k == 3 else 1 for k in rule_kernel), extent)
            reason = _kernel_reason(level, n_rule, size, rule_kernel, topology)
            if planned != tuple(size if k == 3 else 1 for k in rule_kernel):  # a kernel wider than its map sees mostly padding
                reason += f"; capped to the {_x(extent)} feature map"
            entry[key] = _kernel_text(planned)
            decisions.append(Decision(f"{path}.{key}", list(planned), reason))
        mixed = getattr(written, "mixed_kernels", None)
        if mixed:  # MixNet's kernels are one size on every axis: only capped to the map
            capped = [min(k, _capped((k,), (min(extent),))[0]) for k in mixed]
            if capped != list(mixed):
                entry["mixed_kernels"] = capped
                decisions.append(Decision(f"{path}.mixed_kernels", capped, f"level {level}: mixed kernels (one size on every axis) capped to the "
                                                                            f"smallest axis of the {_x(extent)} feature map"))
            notes.append(f"{path}: mixed kernels keep one size on every axis (the rule's per-axis kernels do not apply)")

    resolution = tuple(_round_up(n, t) for n, t in zip(topology.patch, total))
    raw["resolution"] = list(resolution)
    padded = [a for a in range(dims) if resolution[a] != topology.patch[a]]
    decisions.insert(0, Decision("resolution", list(resolution),
                                 f"the {_x(topology.patch)} shape" + (f" padded up on axis {', '.join(map(str, padded))} to a multiple" if padded else " is a multiple")
                                 + f" of the total stride {_x(total)} (nnU-Net pads a patch the same way); "
                                 f"the last feature map is {_x(tuple(r // t for r, t in zip(resolution, total)))} at "
                                 f"{_x(tuple(round(s * t, 3) for s, t in zip(topology.spacing, total)))} mm"))
    decisions.insert(0, Decision("dims", dims, f"{dims} spacing values ({_x(topology.spacing)} mm)"))

    scaling = raw.setdefault("scaling", {})
    scaling["resolution_rounding"] = "stride"
    decisions.append(Decision("scaling.resolution_rounding", "stride", f"sizes scaled with --phi stay multiples of the total stride {_x(total)}"))
    dropped = [key for key in ("presets", "preset", "phi") if key in scaling]
    for key in dropped:
        scaling.pop(key)
    if dropped:
        notes.append("the base's presets and phi are dropped: their resolutions are the base's, not this data's; scale the plan with --phi")

    if task == "segment" and raw.get("decoder") is None:
        raw["decoder"] = {"type": "unet"}
        decisions.append(Decision("decoder", {"type": "unet"}, "task segment: a U-Net decoder over the planned encoder's levels (docs/segmentation.md)"))
    elif task == "classify" and raw.get("decoder") is not None:
        raw.pop("decoder")
        notes.append("task classify: the base's decoder is dropped (use --task segment to keep it)")
    return raw, decisions, topology, tuple(total), notes


def spec_text(raw: dict, decisions: list[Decision], topology: Topology, base_name: str, task: str, notes: list[str]) -> str:
    """The planned spec as YAML: one line per top-level key and per stage row, each decision a comment beside it."""
    by_path: dict[str, list[str]] = {}
    for d in decisions:
        by_path.setdefault(d.path.split(".")[0], []).append(f"{d.path.split('.')[-1]}: {d.reason}" if "." in d.path else d.reason)
    lines = [
        "# yaml-language-server: $schema=../docs/spec.schema.json",
        f"# Planned by `archc plan` from {base_name} for {_x(topology.spacing)} mm voxels and a {_x(topology.patch)} shape (task {task}).",
        "# Strides and kernels per axis follow nnU-Net v2's rule (get_pool_and_conv_props): an axis is pooled only while its",
        "# spacing is within 2x of the finest and it has voxels to spare; a kernel is 1 along an axis more than 2x coarser.",
        *(f"# Note: {note}" for note in notes),
    ]
    for key, value in raw.items():
        if key == "stages":
            lines.append("stages:")
            for i, row in enumerate(value):
                lines.append(f"  - {_flow(row)}" + _comment(by_path.get(f"stages[{i}]")))
            continue
        lines.append(f"{key}: {_flow(value)}" + _comment(by_path.get(key)))
    return "\n".join(lines) + "\n"


def _comment(reasons: list[str] | None) -> str:
    return "   # " + "; ".join(reasons) if reasons else ""


def _flow(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=math.inf, sort_keys=False).strip().removesuffix("\n...").strip()


def _pool_keeps_unpooled_axes(entry: dict, pool, dims: int, decisions: list) -> None:
    """A pool written with its own padding (MONAI SENet's: 0, with ceil_mode) halves an axis it pools, but on an axis
    the plan leaves at stride 1 an unpadded window would shrink the map: there it is padded by kernel // 2, as a pool
    with the default padding is, so the axis keeps its size."""
    stride, kernel, padding = _axes(entry["stride"], dims), pool.kernel * dims if len(pool.kernel) == 1 else pool.kernel, \
        pool.padding * dims if len(pool.padding) == 1 else pool.padding
    planned = tuple(k // 2 if s == 1 else p for s, k, p in zip(stride, kernel, padding))
    if planned != tuple(padding):
        entry["padding"] = _per_axis(planned)
        kept = [a for a in range(dims) if stride[a] == 1]
        decisions.append(Decision("stem.pool.padding", list(planned), f"kernel // 2 on axis {', '.join(map(str, kept))}, which the pool "
                                                                      "does not reduce: the map keeps its size there"))


def _stem_components(entry: dict, stem) -> list[tuple]:
    """(path, raw entry, written part) of the stem: itself, or each of its ``layers`` and its ``pool`` (ResNet's), each a
    downsampling step of its own where it strides."""
    if stem.layers is None:
        parts = [("stem", entry, stem)]
    else:
        layers = entry["layers"] = [dict(layer) for layer in entry["layers"]]
        parts = [(f"stem.layers[{i}]", layers[i], layer) for i, layer in enumerate(stem.layers)]
    if stem.pool is not None:
        entry["pool"] = dict(entry["pool"])
        parts.append(("stem.pool", entry["pool"], stem.pool))
    return parts


def _downsampling_steps(base: Spec) -> list[str]:
    """The base's own downsampling steps, in order: its stem's strided parts and every row that strides on some axis."""
    steps = [path for path, _, written in _stem_components(base.stem.model_dump(exclude_unset=True), base.stem) if any(s > 1 for s in written.stride)]
    return steps + [f"stages[{i}]" for i, row in enumerate(base.stages) if any(s > 1 for s in row.stride)]


def _step_reason(number: int, n_base: int, step: Step, topology: Topology) -> str:
    pooled = [a for a in range(len(step.stride)) if step.stride[a] == 2]
    kept = "; ".join(f"axis {a} kept: {why}" for a, why in sorted(step.kept.items()))
    return (f"downsampling step {number + 1} of {n_base}: stride {_x(step.stride)} pools axis {', '.join(map(str, pooled))}"
            + (f" ({kept})" if kept else " (every axis within 2x of the finest spacing)")
            + f"; then {_x(step.spacing)} mm, {_x(step.size)} voxels")


def _kernel_reason(level: int, n_rule: int, size: int, rule_kernel: tuple[int, ...], topology: Topology) -> str:
    spacing = topology.spacing if level == 0 else topology.steps[min(level, n_rule) - 1].spacing
    if level >= n_rule:
        return f"level {level}: the deepest level has size {size} on every axis (nnU-Net: 3 at the bottleneck)"
    flat = [a for a, k in enumerate(rule_kernel) if k == 1]
    if not flat:
        return f"level {level} ({_x(spacing)} mm): every axis within 2x of the finest spacing, size {size} on each"
    return (f"level {level} ({_x(spacing)} mm): 1 along axis {', '.join(map(str, flat))}, over 2x the finest spacing "
            f"{_mm(min(spacing))} until pooling catches up; {size} on the others")


def _capped(kernel: tuple[int, ...], extent: tuple[int, ...]) -> tuple[int, ...]:
    """Each kernel size at most the largest odd size that fits the map along its axis."""
    return tuple(min(k, n if n % 2 else n - 1) for k, n in zip(kernel, extent))


def _kernel_text(kernel: tuple[int, ...]):
    return kernel[0] if len(set(kernel)) == 1 else "x".join(map(str, kernel))


def _per_axis(values: tuple[int, ...]):
    return values[0] if len(set(values)) == 1 else list(values)


def _axes(value, dims: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, list) else (value,) * dims


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _positive_numbers(values, what: str, kind) -> tuple:
    values = tuple(values)
    if not 1 <= len(values) <= 3:
        raise PlanningError(f"{what}: got {len(values)} values, expected 1 to 3 (one per spatial axis)")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0 or (kind is int and v != int(v)):
            raise PlanningError(f"{what}: got {v!r}, expected a positive {'whole number' if kind is int else 'number'} per axis")
    if kind is int and max(values) > 1_000_000:
        raise PlanningError(f"{what}: got {max(values)}, at most 1,000,000 voxels per axis")
    return tuple(kind(v) for v in values)


def _mm(value: float) -> str:
    return f"{value:.3g} mm"


def _x(values) -> str:
    return "x".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)
