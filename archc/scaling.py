"""Pure arithmetic of EfficientNet compound scaling.

Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks" (ICML 2019), eq. 3:
depth ``d = alpha**phi``, width ``w = beta**phi``, resolution ``r = gamma**phi``. The rounding rules below
are those of the reference TensorFlow code (``efficientnet_model.round_filters`` / ``round_repeats``),
which timm, torchvision and MONAI all reproduce; they decide the published parameter counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import ArgumentError, ScalingError


@dataclass(frozen=True)
class Multipliers:
    """What a scaling request resolves to. ``resolution`` is a multiplier unless ``absolute_resolution`` is set."""

    width: float = 1.0
    depth: float = 1.0
    resolution: float | tuple[float, ...] = 1.0  # one per spatial axis when gamma is (a volume's slices may stay fixed)
    absolute_resolution: tuple[int, ...] | None = None  # presets give a resolution (one, or one per axis), not a multiplier
    dropout: float | None = None  # presets also set the classifier dropout


MAX_BLOCKS = 10_000  # blocks of a network, encoder and decoder: EfficientNet-B7 has 55; no network anyone trains has ten thousand
MAX_MULTIPLIER = 1000.0  # B7's widest is 2.0 and deepest 3.1; past a thousand, channels and sizes stop being numbers a machine holds


def compound(phi: float, alpha: float, beta: float, gamma: float | tuple[float, ...]) -> Multipliers:
    """Multipliers for a compound coefficient ``phi`` (the paper's eq. 3). ``phi`` may be fractional or negative;
    a multiplier over :data:`MAX_MULTIPLIER` is refused (it would overflow the channel and size arithmetic).
    ``gamma`` may be one per spatial axis; an axis whose gamma is 1 keeps its size."""
    if not math.isfinite(phi):
        raise ArgumentError(f"phi must be a finite number, got {phi!r}")
    gammas = gamma if isinstance(gamma, tuple) else (gamma,)
    values = {}
    for name, symbol, base in (("width", "beta", beta), ("depth", "alpha", alpha), *(("resolution", "gamma", g) for g in gammas)):
        try:
            value = base**phi
        except OverflowError:
            value = math.inf
        if not value <= MAX_MULTIPLIER:
            raise ScalingError(
                f"phi={phi!r} gives a {name} multiplier {symbol}**phi = {base:g}**{phi!r} over {MAX_MULTIPLIER:g}; is phi a typo?"
            )
        values[name] = (*values.get(name, ()), value) if name == "resolution" else value
    resolution = values["resolution"]
    return Multipliers(values["width"], values["depth"], resolution if isinstance(gamma, tuple) else resolution[0])


def make_divisible(value: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below ``divisor`` nor below
    ``round_limit * value`` (TF ``round_filters``; timm ``make_divisible``; torchvision ``_make_divisible``)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:  # rounding down must not lose more than 10% (by default)
        rounded += divisor
    return rounded


def scale_channels(channels: int, width: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """Channels of a layer after width scaling (TF ``round_filters``)."""
    return make_divisible(channels * width, divisor, round_limit)


def scale_repeats(repeats: int, depth: float, rounding: str = "ceil") -> int:
    """Blocks in a stage after depth scaling: ``ceil(repeats * depth)`` as in TF ``round_repeats``;
    ``round`` is offered for specs that prefer it. Never fewer than one block."""
    scaled = repeats * depth
    return max(1, math.ceil(scaled) if rounding == "ceil" else int(round(scaled)))


def scale_resolution(resolution: int, multiplier: float, rounding: str = "round", stride: int = 1) -> int:
    """Input size along one axis after resolution scaling; B0 at 224 gives 258, 296, 341, 392 for phi 1..4.
    ``stride`` rounding goes to the nearest multiple of ``stride`` (the axis's total stride, so every strided conv
    divides it; never below one stride). A multiplier of 1 keeps the size as written (a fixed axis)."""
    if multiplier == 1:
        return resolution
    scaled = resolution * multiplier
    if rounding == "stride":
        return max(1, round(scaled / stride)) * stride
    value = {"round": round, "ceil": math.ceil, "floor": math.floor}[rounding](scaled)
    return max(1, int(value))


def squeeze_channels(channels: int, ratio: float) -> int:
    """Width of the SE bottleneck: ``max(1, int(channels * ratio))`` (TF, MONAI ``num_squeezed_channels``,
    torchvision ``max(1, input_channels // 4)``). 0 when the ratio is 0 (no SE)."""
    if ratio <= 0:
        return 0
    return max(1, int(channels * ratio))


def unknown_preset(name: str, presets) -> str:
    """The one wording of an unknown preset, for the spec's own ``scaling.preset`` and for a request."""
    available = ", ".join(presets) or "none: this spec defines no presets"
    return f"unknown preset {name!r} (available: {available})"
