"""ConvNeXt's block kinds (archc.kinds.blocks ``convnext`` and ``downsample``): numerically timm's real
``ConvNeXtBlock`` and its stage's downsample, V1 (layer scale) and V2 (GRN), with timm's 1x1 convs (conv_mlp) and
with its nn.Linear MLP (tiny and larger: 2D weights under the same keys); they build and run in 1D and 3D, and
analysis counts them as torch does."""

from functools import partial

import pytest
import torch
from timm.layers import LayerNorm, LayerNorm2d, NormMlpClassifierHead
from timm.models.convnext import ConvNeXtBlock, ConvNeXtStage
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.errors import SpecError

SPEC = """
name: convnext_{dims}d
dims: {dims}
in_channels: 3
num_classes: 10
resolution: 16
activation: gelu
norm: {{type: layer, eps: 1.0e-6}}
se: {{ratio: 0}}
stem: {{channels: 16, kernel: 3, stride: 1}}
head: {{type: {head}, dropout: 0.0}}
stages:
  columns: [block, channels, repeats, stride, kernel, expand, layer_scale, grn, continues]
  rows:
    - [convnext, 16, 2, 1, 7, 4, {scale}, {grn}, false]
    - [downsample, 32, 1, 2, null, 1, null, false, false]
    - [convnext, 32, 1, 1, 7, 4, {scale}, {grn}, true]
"""

# archc's roles in a convnext block -> timm's keys (ConvNeXtBlock: the MLP under ``mlp``, the layer scale a raw ``gamma``)
TIMM_KEYS = {"fc1": "mlp.fc1", "fc2": "mlp.fc2", "grn": "mlp.grn", "layer_scale.gamma": "gamma"}


def _plan(tmp_path, dims: int, v2: bool, head: str = "pool"):
    path = tmp_path / f"convnext{dims}.yaml"
    path.write_text(SPEC.format(dims=dims, head=head, scale="null" if v2 else "1.0e-6", grn="true" if v2 else "false"))
    return archc.lower(str(path))


def _timm_key(key: str) -> str:
    role, _, rest = key.rpartition(".") if key.startswith("layer_scale") else key.partition(".")
    whole = TIMM_KEYS.get(key)
    return whole if whole else f"{TIMM_KEYS.get(role, role)}.{rest}"


def _randomised(module: torch.nn.Module) -> dict:
    """The module's state with every tensor random (norms, GRN and the layer scale are not the identity they start as)."""
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.copy_(torch.randn_like(tensor) * 0.1 + (1.0 if tensor.ndim == 1 else 0.0))
    return module.state_dict()


@pytest.mark.parametrize("conv_mlp", [True, False], ids=["conv_mlp", "linear_mlp"])
@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_a_convnext_block_is_timms(tmp_path, v2, conv_mlp):
    torch.manual_seed(0)
    model = archc.build(_plan(tmp_path, 2, v2), seed=0).eval()
    ours = model.get_submodule("stages.0.1")
    state = _randomised(ours)
    peer = ConvNeXtBlock(16, conv_mlp=conv_mlp, use_grn=v2, ls_init_value=None if v2 else 1e-6).eval()
    wanted = peer.state_dict()
    mapped = {_timm_key(k): v.reshape(wanted[_timm_key(k)].shape) for k, v in state.items()}  # Linear: (4C, C) for (4C, C, 1, 1)
    assert set(mapped) == set(wanted)
    peer.load_state_dict(mapped)
    x = torch.randn(2, 16, 11, 13)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("conv_mlp", [True, False], ids=["conv_mlp", "linear_mlp"])
def test_a_downsample_block_is_timms(tmp_path, conv_mlp):
    torch.manual_seed(0)
    model = archc.build(_plan(tmp_path, 2, False), seed=0).eval()
    ours = model.get_submodule("stages.1.0")
    state = _randomised(ours)
    stage = ConvNeXtStage(16, 32, stride=2, depth=1, conv_mlp=conv_mlp, norm_layer=partial(LayerNorm2d, eps=1e-6),
                          norm_layer_cl=partial(LayerNorm, eps=1e-6)).eval()
    peer = stage.downsample  # Sequential(LayerNorm2d, Conv2d k2 s2 bias)
    peer.load_state_dict({key.replace("norm.", "0.").replace("conv.", "1."): value for key, value in state.items()})
    x = torch.randn(2, 16, 12, 14)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), peer(x), atol=1e-6, rtol=1e-6)
    assert ours(x).shape == (2, 32, 6, 7)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("v2", [False, True], ids=["v1", "v2"])
def test_analysis_counts_a_convnext_network_as_torch_does(tmp_path, dims, v2):
    plan = _plan(tmp_path, dims, v2)
    report = archc.analyze(plan)
    model = archc.build(plan).eval()
    assert report.params == sum(p.numel() for p in model.parameters())
    assert [b.type for b in plan.blocks] == ["convnext", "convnext", "downsample", "convnext"]
    assert [b.residual for b in plan.blocks] == [True, True, False, True]
    x = torch.randn(1, 3, *plan.resolution)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(x)
    assert out.shape == (1, 10)
    assert 2 * report.macs == counter.get_total_flops()
    assert report.part("stages.1.0").shape == (32, *(8,) * dims)


def test_a_downsample_row_refuses_a_kernel_and_convnext_a_stride(tmp_path):
    for old, new, message in [("[downsample, 32, 1, 2, null,", "[downsample, 32, 1, 2, 3,", "a downsample block's conv has kernel = stride"),
                              ("[convnext, 32, 1, 1, 7,", "[convnext, 32, 1, 2, 7,", "a convnext block keeps its size: stride must be 1")]:
        path = tmp_path / "bad.yaml"
        path.write_text(SPEC.format(dims=2, head="pool", scale="null", grn="true").replace(old, new))
        with pytest.raises(SpecError, match=message):
            archc.lower(str(path))


def test_a_norm_head_is_timms(tmp_path):
    """Global average pool, the network's LayerNorm on the pooled vector, the classifier (timm NormMlpClassifierHead,
    head_norm_first false: keys head.norm and head.fc)."""
    torch.manual_seed(0)
    model = archc.build(_plan(tmp_path, 2, True, head="norm"), seed=0).eval()
    peer = NormMlpClassifierHead(32, 10, norm_layer=partial(LayerNorm2d, eps=1e-6)).eval()
    ours = {**_randomised(model.head), **{f"classifier.{k}": v for k, v in _randomised(model.classifier).items()}}
    peer.load_state_dict({k.replace("classifier.", "fc."): v for k, v in ours.items()})
    x = torch.randn(2, 32, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(x), peer(x), atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(model.forward_head(x, pre_logits=True), peer(x, pre_logits=True), atol=1e-6, rtol=1e-6)
    report = archc.analyze(model.plan)
    assert report.params == sum(p.numel() for p in model.parameters())


def test_depth_scaling_keeps_one_downsample_per_stage(tmp_path):
    """The convnext rows scale; the downsample row opening the stage stays one block (it reduces once)."""
    plan = _plan(tmp_path, 2, False)
    deeper = archc.lower(str(tmp_path / "convnext2.yaml"), phi=3)  # alpha 1.2: depth 1.728
    assert [b.type for b in plan.blocks] == ["convnext", "convnext", "downsample", "convnext"]
    assert [b.type for b in deeper.blocks] == ["convnext"] * 4 + ["downsample"] + ["convnext"] * 2
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.format(dims=2, head="pool", scale="null", grn="true").replace("[downsample, 32, 1,", "[downsample, 32, 2,"))
    with pytest.raises(SpecError, match="a downsample block reduces once: repeats must be 1"):
        archc.lower(str(path))


def test_a_norm_head_refuses_a_conv_option(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.format(dims=2, head="norm, channels: 64", scale="null", grn="true"))
    with pytest.raises(SpecError, match="channels does not apply to a norm head"):
        archc.lower(str(path))
