import contextlib
import io
import math

import pytest
from reference_figures import GMACS

import archc
from archc.cli import main
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
    of 260 pixels, so its ratio is the published B2 / B0 GMACs scaled by (258 / 260)^2."""
    spec = archc.read("efficientnet_b0")
    assert spec.scaling.alpha * spec.scaling.beta**2 * spec.scaling.gamma**2 == pytest.approx(1.92, abs=0.005)
    base = archc.analyze(archc.lower(spec, phi=0)).macs
    ratio = archc.analyze(archc.lower(spec, phi=1)).macs / base
    assert ratio == pytest.approx(GMACS["b2"] / GMACS["b0"] * (258 / 260) ** 2, rel=0.04)  # the published GMACs have two digits


def test_negative_and_fractional_phi():
    down = compound(-1, 1.2, 1.1, 1.15)
    assert down.width == pytest.approx(1 / 1.1) and down.depth == pytest.approx(1 / 1.2)
    assert compound(0.5, 1.2, 1.1, 1.15).depth == pytest.approx(math.sqrt(1.2))


@pytest.mark.parametrize("phi", [float("nan"), float("inf")])
def test_non_finite_phi_is_an_error(phi):
    with pytest.raises(archc.ArgumentError, match="finite"):
        compound(phi, 1.2, 1.1, 1.15)


def test_squeeze_channels():
    assert squeeze_channels(32, 0.25) == 8
    assert squeeze_channels(2, 0.25) == 1  # never zero while SE is on
    assert squeeze_channels(40, 0.0) == 0


THIN_SLAB = """
name: thin
dims: 3
in_channels: 1
num_classes: 2
resolution: [32, 256, 256]
stem: {channels: 32, kernel: 1x3x3, stride: [1, 2, 2]}
stages:
  columns: [block, expand, kernel, stride, channels, repeats]
  rows:
    - [mbconv, 1, 3, 1,         16, 1]
    - [mbconv, 6, 3, [1, 2, 2], 24, 2]
    - [mbconv, 6, 3, 2,         40, 2]
    - [mbconv, 6, 3, 2,         80, 3]
scaling: {gamma: [1, 1.15, 1.15], resolution_rounding: stride, presets: {big: {width: 1.2, depth: 1.4, resolution: [32, 320, 320]}}}
"""


def test_a_fixed_axis_stays_fixed_and_the_others_round_to_the_total_stride():
    """gamma [1, 1.15, 1.15]: the 32 slices stay 32 at every phi; in-plane 256 * 1.15**phi rounds to the nearest
    multiple of the in-plane total stride 16 (by hand: 294.4 -> 288, 338.6 -> 336, 389.3 -> 384, 447.7 -> 448)."""
    spec = archc.spec.parse_spec(THIN_SLAB)
    plans = [archc.lower(spec, phi=phi) for phi in range(5)]
    assert [p.resolution for p in plans] == [(32, 256, 256), (32, 288, 288), (32, 336, 336), (32, 384, 384), (32, 448, 448)]
    assert all(not archc.analyze(p).warnings for p in plans)
    assert plans[1].scaling.resolution == (1.0, 1.15, 1.15)
    assert archc.lower(spec, preset="big").resolution == (32, 320, 320)  # a preset's size per axis, as written


def test_per_axis_gamma_and_stride_rounding():
    assert compound(1, 1.2, 1.1, (1.0, 1.15)).resolution == (1.0, 1.15)
    assert compound(2, 1.2, 1.1, 1.15).resolution == pytest.approx(1.3225)  # one gamma: one multiplier, as before
    assert scale_resolution(224, 1.15, "stride", 32) == 256  # 257.6 -> 8 strides
    assert scale_resolution(20, 0.5, "stride", 32) == 32  # never below one stride
    assert scale_resolution(37, 1.0, "stride", 32) == 37  # a multiplier of 1 keeps the written size
    with pytest.raises(archc.SpecError, match=r"scaling\.gamma"):
        archc.spec.parse_spec(THIN_SLAB.replace("gamma: [1, 1.15, 1.15]", "gamma: [1, 1.15, 1.15, 1]"))


def test_scale_shows_per_axis_sizes(tmp_path):
    path = tmp_path / "thin.yaml"
    path.write_text(THIN_SLAB)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["scale", str(path), "--phi-range", "0:2"]) == 0
    lines = out.getvalue().splitlines()
    assert "gamma 1x1.15x1.15 gives 1.920 by the formula" in lines[0]  # 1.2 * 1.1**2 * 1 * 1.15**2: the fixed axis adds no cost
    assert [line.split()[3] for line in lines[3:6]] == ["32x256x256", "32x288x288", "32x336x336"]


def test_no_shipped_spec_draws_a_stride_warning_at_any_phi_or_preset():
    """Sizes archc computes (phi 0..7, every preset's published size) are never flagged; only sizes people give are."""
    flagged = []
    # timm's own default input of ResNet-T (c3_in1k: 176) is not a multiple of 32; the specs keep timm's size, and say so
    timms_size = {"resnet10t", "resnet14t"}
    for name in set(archc.builtin_specs()) - timms_size:
        spec = archc.read(name)
        for args in [{"phi": phi} for phi in range(8)] + [{"preset": p} for p in spec.scaling.presets]:
            warnings = archc.analyze(archc.lower(spec, **args)).warnings
            flagged += [f"{name} {args}: {w}" for w in warnings if "total stride" in w]
    assert flagged == []
