import json

import pytest
import torch
from conftest import output_shapes
from reference_figures import GMACS, TIMM_PARAMS
from torch.utils.flop_counter import FlopCounterMode

import archc


@pytest.mark.parametrize("preset", GMACS)
def test_published_macs(b0_spec, preset):
    macs = archc.analyze(archc.lower(b0_spec, preset=preset)).macs
    assert round(macs / 1e9, 2) == GMACS[preset]


@pytest.mark.parametrize(
    "kwargs",
    [dict(dims=1, resolution=128), dict(dims=2, resolution=96), dict(dims=3, resolution=32), dict(phi=1, dims=2, resolution=(64, 48)),
     dict(preset="b2", dims=3, resolution=(16, 32, 24), in_channels=1, num_classes=2)],
)
def test_summary_equals_measurement(b0_spec, kwargs):
    """Parameters and MACs of the report equal what torch measures on the emitted module, and every
    stage's output shape equals the shape that comes out of it."""
    model = archc.load(b0_spec, seed=0, **kwargs).eval()
    report = archc.analyze(model.plan)
    assert report.params == sum(p.numel() for p in model.parameters())

    x = torch.randn(1, *report.input_shape)
    paths = ["stem", *(f"stages.{i}" for i in range(len(model.stages))), "head"]
    shapes = {path.removeprefix("stages."): shape for path, shape in output_shapes(model, paths, x).items()}
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(x)

    measured_macs = counter.get_total_flops() / 2  # flop_counter counts a multiply-add as 2 FLOPs
    assert report.macs == pytest.approx(measured_macs, rel=0.01)
    assert {row.name: row.shape for row in report.rows if row.name != "classifier"} == shapes
    assert report.rows[-1].shape == tuple(out.shape[1:])


def test_stage_rows(b0_spec):
    report = archc.analyze(archc.lower(b0_spec))
    assert [r.name for r in report.rows] == ["stem", "0", "1", "2", "3", "4", "5", "6", "head", "classifier"]  # numbered as stages[i]
    assert [r.repeats for r in report.rows[1:8]] == [1, 2, 2, 3, 3, 4, 1]
    assert [r.shape for r in report.rows[:8]] == [
        (32, 112, 112), (16, 112, 112), (24, 56, 56), (40, 28, 28), (80, 14, 14), (112, 14, 14), (192, 7, 7), (320, 7, 7),
    ]  # the paper's Table 1 resolutions
    assert sum(r.params for r in report.rows) == report.params == TIMM_PARAMS["efficientnet_b0"]


@pytest.mark.parametrize("name", sorted(archc.builtin_specs()))
def test_layer_report_matches_the_module_one_to_one(name):
    """`archc info --detail layer --json`: one entry per conv, linear and norm module of the built network, with
    its parameters, and each computing module's output shape as a forward pass measures it."""
    from conftest import run_archc
    from torch import nn

    from archc.emit.ops import NORMS

    result = run_archc("info", name, "--detail", "layer", "--json", "--resolution", "64", "--quiet")
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)["layers"]
    model = archc.load(name, resolution=64, seed=0).eval()
    modules = dict(model.named_modules())
    kinds = {"conv": nn.modules.conv._ConvNd, "linear": nn.Linear, "norm": NORMS}
    assert {path for path, m in modules.items() if isinstance(m, tuple(kinds.values()))} == {
        e["path"] for e in layers if e["type"] in kinds}
    for entry in layers:
        module = modules[entry["path"]]
        if entry["type"] in kinds:
            assert isinstance(module, kinds[entry["type"]]), entry["path"]
        assert entry["params"] == sum(p.numel() for p in module.parameters(recurse=False)), entry["path"]
    assert sum(e["params"] for e in layers) == sum(p.numel() for p in model.parameters())
    shapes = output_shapes(model, [e["path"] for e in layers], torch.randn(1, model.plan.in_channels, *model.plan.resolution))
    assert {e["path"]: tuple(e["output_shape"]) for e in layers} == shapes
