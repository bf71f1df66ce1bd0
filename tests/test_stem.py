"""The stem as conv units and a pool (archc.ir.Stem): ResNet-D's deep stem with its max-pool equals timm's resnet50d
stem, ConvNeXt's patchify stem (k4 s4 with a bias, a norm, no activation) equals timm's convnext stem, by copied
weights; the stem's map before its pool is a feature level at timm's reduction; bad stems are refused by name."""

import pytest
import timm
import torch

import archc
from archc.errors import SpecError

SPEC = """
name: stem_{dims}d
dims: {dims}
in_channels: 3
num_classes: 10
resolution: {resolution}
activation: relu
se: {{ratio: 0}}
stem:
{stem}
head: {{type: pool, dropout: 0.0}}
stages:
  columns: [block, kernel, stride, channels, repeats]
  rows:
    - [basic, 3, 1, 64, 1]
    - [basic, 3, 2, 32, 1]
"""

DEEP = """  layers: [{channels: 32, kernel: 3, stride: 2}, {channels: 32, kernel: 3}, {channels: 64, kernel: 3}]
  pool: {type: max, kernel: 3, stride: 2}"""


def _plan(tmp_path, stem: str, dims: int = 2, resolution: int = 32, **extra):
    path = tmp_path / "stem.yaml"
    path.write_text(SPEC.format(dims=dims, stem=stem, resolution=resolution) + "".join(f"{k}: {v}\n" for k, v in extra.items()))
    return archc.lower(str(path))


def _calibrated(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point() and tensor.ndim == 1:
                tensor.uniform_(0.5, 1.5)


def test_a_deep_stem_with_a_max_pool_is_resnet50ds(tmp_path):
    torch.manual_seed(0)
    model = archc.build(_plan(tmp_path, DEEP), seed=0).set_fast_paths(False).eval()
    _calibrated(model.stem)
    peer = timm.create_model("resnet50d", pretrained=False).eval()
    # timm's deep stem: conv1 = Sequential(conv 0, bn 1, act 2, conv 3, bn 4, act 5, conv 6), then bn1, act1, maxpool
    ours = model.stem.state_dict()
    names = {"conv1": "conv1.0", "bn1": "conv1.1", "conv2": "conv1.3", "bn2": "conv1.4", "conv3": "conv1.6", "bn3": "bn1"}
    peer_state = peer.state_dict()
    for key, tensor in ours.items():
        module, leaf = key.split(".", 1)
        peer_state[f"{names[module]}.{leaf}"] = tensor
    peer.load_state_dict(peer_state)
    x = torch.randn(2, 3, 65, 67)  # odd sizes: the strided convs and the pool round the same way
    with torch.no_grad():
        expected = peer.maxpool(peer.act1(peer.bn1(peer.conv1(x))))
        torch.testing.assert_close(model.stem(x), expected, atol=1e-6, rtol=1e-6)
    assert sorted({k.split(".")[0] for k in ours}) == ["bn1", "bn2", "bn3", "conv1", "conv2", "conv3"]


def test_a_patchify_stem_is_convnexts(tmp_path):
    torch.manual_seed(0)
    stem = "  layers: [{channels: 40, kernel: 4, stride: 4, bias: true, activation: false}]"
    plan = _plan(tmp_path, stem, norm="{type: layer, eps: 1.0e-6}")
    model = archc.build(plan, seed=0).set_fast_paths(False).eval()
    _calibrated(model.stem)
    peer = timm.create_model("convnext_atto", pretrained=False).eval().stem
    assert sorted(model.stem.state_dict()) == ["bn.bias", "bn.weight", "conv.bias", "conv.weight"]  # one layer keeps the one-conv names
    peer.load_state_dict({k.replace("conv.", "0.").replace("bn.", "1."): v for k, v in model.stem.state_dict().items()})
    x = torch.randn(2, 3, 64, 68)
    with torch.no_grad():
        torch.testing.assert_close(model.stem(x), peer(x), atol=1e-6, rtol=1e-6)
    assert archc.analyze(plan).part("stem").shape == (40, 8, 8)  # 32 / 4, padding 0


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_a_pooled_stem_taps_before_its_pool_and_counts_as_torch(tmp_path, dims):
    plan = _plan(tmp_path, DEEP, dims=dims, resolution=33)
    assert [(f.stage, f.channels, f.reduction) for f in plan.features] == [(-1, 64, (2,) * dims), (0, 64, (4,) * dims), (1, 32, (8,) * dims)]
    model = archc.build(plan, seed=0).eval()
    report = archc.analyze(plan)
    assert report.params == sum(p.numel() for p in model.parameters())
    x = torch.randn(1, 3, *plan.resolution)
    with torch.no_grad():
        assert tuple(model.stem(x).shape[1:]) == report.part("stem").shape  # 33 -> 17 -> 9 (pool, padding 1)
    encoder = archc.build(archc.lower(str(tmp_path / "stem.yaml"), features_only=True), seed=0).eval()
    with torch.no_grad():
        maps = encoder(x)
    assert [tuple(m.shape[2:]) for m in maps] == [(17,) * dims, (9,) * dims, (5,) * dims]


def test_a_deep_stem_folds_its_norms_and_scripts(tmp_path):
    model = archc.build(_plan(tmp_path, DEEP), seed=0).eval()
    _calibrated(model.stem)
    x = torch.randn(1, 3, 35, 37)
    with torch.no_grad():
        expected = model(x)
        scripted = torch.jit.script(model)
        torch.testing.assert_close(scripted(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.fuse_norms()(x), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("stem, message", [
    ("  layers: [{channels: 8, kernel: 4, stride: 2}]", "kernel 4 with stride 2: an even kernel is allowed only where it equals the stride"),
    ("  channels: 8\n  layers: [{channels: 8}]", "give layers or channels, not both"),
    ("  pool: {type: median}", "stem.pool.type"),
])
def test_bad_stems_are_refused_by_name(tmp_path, stem, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        _plan(tmp_path, stem)


def test_null_layers_is_the_one_conv_stem_and_an_empty_list_is_refused():
    """layers: null is documented as "one conv of channels, kernel and stride" (it once failed inside pydantic with a TypeError)."""
    assert archc.read("convnext_atto", {"stem.layers": None}).stem.layers is None
    with pytest.raises(SpecError, match=r"stem.layers: got \[\], expected at least 1 value$"):
        archc.read("convnext_atto", {"stem.layers": []})
