import math

import pytest

import archc
from archc.errors import ScalingError
from archc.scaling import compound, make_divisible, scale_channels, scale_repeats, scale_resolution, squeeze_channels


@pytest.mark.parametrize(
    "width, stem, head",
    # Stem and head widths of the released B0-B7 (timm / torchvision / MONAI model definitions).
    [(1.0, 32, 1280), (1.1, 32, 1408), (1.2, 40, 1536), (1.4, 48, 1792), (1.6, 48, 2048), (1.8, 56, 2304), (2.0, 64, 2560)],
)
def test_channel_rounding_matches_released_widths(width, stem, head):
    assert scale_channels(32, width) == stem
    assert scale_channels(1280, width) == head


def test_make_divisible_never_loses_more_than_ten_percent():
    assert make_divisible(12) == 16  # 12 -> 8 would lose a third, so it rounds up
    assert make_divisible(35.2) == 32
    assert make_divisible(3) == 8  # never below the divisor
    assert make_divisible(20, divisor=8, round_limit=0.0) == 24  # int(20 + 4) // 8 * 8
    for value in range(1, 2000):
        assert make_divisible(value) >= 0.9 * value
        assert make_divisible(value) % 8 == 0


def test_repeats_b7():
    # reference-numbers.md: b7 (depth 3.1) blocks per stage [4,7,7,10,10,13,4]
    assert [scale_repeats(r, 3.1) for r in (1, 2, 2, 3, 3, 4, 1)] == [4, 7, 7, 10, 10, 13, 4]
    assert scale_repeats(3, 1.5, "round") == 4 and scale_repeats(3, 1.5) == 5
    assert scale_repeats(1, 0.1) == 1


@pytest.mark.parametrize("phi, width, depth, resolution", [(1, 1.100, 1.200, 258), (2, 1.210, 1.440, 296), (3, 1.331, 1.728, 341), (4, 1.4641, 2.0736, 392)])
def test_compound_scaling_table(phi, width, depth, resolution):
    # reference-numbers.md, "Compound scaling": B0 scaled by phi.
    m = compound(phi, alpha=1.2, beta=1.1, gamma=1.15)
    assert m.width == pytest.approx(width, abs=5e-4)
    assert m.depth == pytest.approx(depth, abs=5e-4)
    assert scale_resolution(224, m.resolution) == resolution


def test_compound_flops_constraint():
    """Paper eq. 3 promises alpha * beta^2 * gamma^2 = 1.92x MACs per unit phi; rounding (ceil of repeats, channels
    to multiples of 8) makes B0 at phi 1 cost more. Phi 1 has B2's weights (reference-numbers.md) at 258 instead
    of 260 pixels, so its ratio is the published B2 / B0 GMACs, 0.99 / 0.39, scaled by (258 / 260)^2."""
    spec = archc.read("efficientnet_b0")
    assert spec.scaling.alpha * spec.scaling.beta**2 * spec.scaling.gamma**2 == pytest.approx(1.92, abs=0.005)
    base = archc.analyze(archc.lower(spec, phi=0)).macs
    ratio = archc.analyze(archc.lower(spec, phi=1)).macs / base
    assert ratio == pytest.approx(0.99 / 0.39 * (258 / 260) ** 2, rel=0.04)  # the published GMACs have two digits


def test_negative_and_fractional_phi():
    down = compound(-1, 1.2, 1.1, 1.15)
    assert down.width == pytest.approx(1 / 1.1) and down.depth == pytest.approx(1 / 1.2)
    assert compound(0.5, 1.2, 1.1, 1.15).depth == pytest.approx(math.sqrt(1.2))


@pytest.mark.parametrize("phi", [float("nan"), float("inf")])
def test_non_finite_phi_is_an_error(phi):
    with pytest.raises(ScalingError, match="finite"):
        compound(phi, 1.2, 1.1, 1.15)


def test_squeeze_channels():
    assert squeeze_channels(32, 0.25) == 8
    assert squeeze_channels(2, 0.25) == 1  # never zero while SE is on
    assert squeeze_channels(40, 0.0) == 0
