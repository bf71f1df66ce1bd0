"""ResNet's bottleneck block kind: numerically timm's Bottleneck (and torchvision's, v1.5: stride on the 3x3) with the
same state_dict keys, for identity, strided projection, ResNet-D's average-pool shortcut, ResNeXt's grouped 3x3 and
SE-ResNet's squeeze-and-excitation, in eval and train mode; analysis counts it as torch does."""


import pytest
import torch
import torchvision.models.resnet as tv
from timm.layers import get_attn
from timm.models.resnet import Bottleneck, downsample_avg, downsample_conv
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.errors import SpecError

SPEC = """
name: bottleneck_{dims}d
dims: {dims}
in_channels: 3
num_classes: 10
resolution: 16
activation: relu
se: {{ratio: {se}, rounding: divisor, placement: after_project}}
scaling: {{divisor: 8}}
stem: {{channels: 16, kernel: 3, stride: 1}}
head: {{type: pool, dropout: 0.0}}
stages:
  columns: [block, kernel, stride, channels, mid, group_size, repeats, shortcut]
  rows:
    - [bottleneck, 3, 1, 64, {mid0}, {gs0}, 1, {shortcut}]
    - [bottleneck, 3, 2, 128, {mid1}, {gs1}, 2, {shortcut}]
"""

# name -> spec values, and the timm Bottleneck arguments of (stage 0 block 0, stage 1 block 0, stage 1 block 1)
CASES = {
    "resnet": (dict(mid0=16, mid1=32, gs0="null", gs1="null", shortcut="conv", se=0), dict()),
    "resnet_d": (dict(mid0=16, mid1=32, gs0="null", gs1="null", shortcut="avg", se=0), dict()),
    "resnext": (dict(mid0=32, mid1=64, gs0=4, gs1=8, shortcut="conv", se=0), dict(cardinality=8, base_width=128)),
    "seresnet": (dict(mid0=16, mid1=32, gs0="null", gs1="null", shortcut="conv", se=0.0625), dict(attn_layer=get_attn("se"))),
}
BLOCKS = [("stages.0.0", 16, 16, 64, 1), ("stages.1.0", 64, 32, 128, 2), ("stages.1.1", 128, 32, 128, 1)]


def _plan(tmp_path, dims: int, case: str):
    path = tmp_path / f"{case}{dims}.yaml"
    path.write_text(SPEC.format(dims=dims, **CASES[case][0]))
    return archc.lower(str(path))


def _timm(case: str, c_in: int, planes: int, c_out: int, stride: int):
    down = None
    if c_in != c_out or stride != 1:
        down = (downsample_avg if case == "resnet_d" else downsample_conv)(c_in, c_out, 1, stride)
    kwargs = dict(CASES[case][1])
    if "base_width" in kwargs:  # timm's width: floor(planes * base_width / 64) * cardinality, here mid = 2 * planes
        kwargs["base_width"] = 2 * 64 // kwargs["cardinality"]  # width = planes * 16 / 64 * 8 = 2 * planes
    return Bottleneck(c_in, planes, stride, downsample=down, **kwargs)


def _rename_se(state: dict) -> dict:
    return {k.replace("se.conv_reduce", "se.fc1").replace("se.conv_expand", "se.fc2"): v for k, v in state.items()}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("where, c_in, planes, c_out, stride", BLOCKS)
def test_a_bottleneck_is_timms(tmp_path, case, where, c_in, planes, c_out, stride):
    torch.manual_seed(0)
    model = archc.build(_plan(tmp_path, 2, case), seed=0).set_fast_paths(False)
    ours = model.get_submodule(where)
    with torch.no_grad():
        for tensor in ours.state_dict().values():
            if tensor.is_floating_point() and tensor.ndim == 1:
                tensor.uniform_(0.5, 1.5)
    peers = [_timm(case, c_in, planes, c_out, stride)]
    if case in ("resnet", "resnext"):  # torchvision's Bottleneck: width = planes * base_width / 64 * groups
        down = torch.nn.Sequential(tv.conv1x1(c_in, c_out, stride), torch.nn.BatchNorm2d(c_out)) if c_in != c_out or stride != 1 else None
        groups = 8 if case == "resnext" else 1
        peers.append(tv.Bottleneck(c_in, planes, stride, downsample=down, groups=groups, base_width=64 * (2 if case == "resnext" else 1) // groups))
    x = torch.randn(2, c_in, 15, 17)  # odd sizes: the strided conv and the ceil-mode pool must agree
    state = _rename_se(ours.state_dict())
    for peer in peers:
        assert set(peer.state_dict()) == set(state)
        for mode in ("eval", "train"):
            peer.load_state_dict(state)
            getattr(peer, mode)(), getattr(ours, mode)()
            with torch.no_grad():
                torch.testing.assert_close(ours(x.clone()), peer(x.clone()), atol=1e-6, rtol=1e-6)
            ours.load_state_dict({k: v for k, v in zip(ours.state_dict(), state.values())})


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("case", list(CASES))
def test_analysis_counts_a_bottleneck_network_as_torch_does(tmp_path, dims, case):
    plan = _plan(tmp_path, dims, case)
    report = archc.analyze(plan)
    model = archc.build(plan).eval()
    assert report.params == sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.randn(1, 3, *(15,) * dims))
    assert out.shape == (1, 10)
    if case != "seresnet":  # FlopCounterMode also counts the SE's mean as no FLOPs and its 1x1 convs as convs: same rule
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.randn(1, 3, *plan.resolution))
        assert 2 * report.macs == counter.get_total_flops()


def test_a_bottleneck_needs_its_mid_width(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(SPEC.format(dims=2, **CASES["resnet"][0]).replace("[bottleneck, 3, 1, 64, 16,", "[bottleneck, 3, 1, 64, null,"))
    with pytest.raises(SpecError, match="a bottleneck block needs mid"):
        archc.lower(str(path))
