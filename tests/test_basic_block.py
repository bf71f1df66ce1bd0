"""ResNet's basic block, added as one block kind record (archc.kinds.blocks): numerically timm's and torchvision's
BasicBlock with the same state_dict keys, identity and strided projection skips, in eval and train mode; analysis
counts its parameters and MACs as torch does."""

import pytest
import torch
import torchvision.models.resnet as tv
from timm.models.resnet import BasicBlock, downsample_conv
from torch.utils.flop_counter import FlopCounterMode

import archc

SPEC = """
name: basic_{dims}d
dims: {dims}
in_channels: 3
num_classes: 10
resolution: 16
activation: relu
se: {{ratio: 0}}
stem: {{channels: 16, kernel: 3, stride: 1}}
head: {{channels: 64, dropout: 0.0}}
stages:
  columns: [block, kernel, stride, channels, repeats]
  rows:
    - [basic, 3, 1, 16, 1]
    - [basic, 3, 2, 32, 2]
"""


def _plan(tmp_path, dims: int):
    path = tmp_path / f"basic{dims}.yaml"
    path.write_text(SPEC.format(dims=dims))
    return archc.lower(str(path))


def _peers(c_in: int, c_out: int, stride: int):
    projection = c_in != c_out or stride != 1
    timm_block = BasicBlock(c_in, c_out, stride, downsample=downsample_conv(c_in, c_out, 1, stride) if projection else None)
    tv_down = torch.nn.Sequential(tv.conv1x1(c_in, c_out, stride), torch.nn.BatchNorm2d(c_out)) if projection else None
    return timm_block, tv.BasicBlock(c_in, c_out, stride, downsample=tv_down)


@pytest.mark.parametrize("where, c_in, c_out, stride", [("stages.0.0", 16, 16, 1), ("stages.1.0", 16, 32, 2), ("stages.1.1", 32, 32, 1)])
def test_a_basic_block_is_timms_and_torchvisions(tmp_path, where, c_in, c_out, stride):
    torch.manual_seed(0)
    model = archc.build(_plan(tmp_path, 2), seed=0).set_fast_paths(False)  # module by module: the peers' ops in their order
    ours = model.get_submodule(where)
    with torch.no_grad():  # norms with statistics and affine parameters of their own, not the identity they start as
        for tensor in ours.state_dict().values():
            if tensor.is_floating_point() and tensor.ndim == 1:
                tensor.uniform_(0.5, 1.5)
    x = torch.randn(2, c_in, 16, 16)
    for peer in _peers(c_in, c_out, stride):
        state = ours.state_dict()
        assert set(peer.state_dict()) == set(state)  # the same key names: conv1, bn1, conv2, bn2, downsample.0, downsample.1
        for mode in ("eval", "train"):
            peer.load_state_dict(state)
            getattr(peer, mode)(), getattr(ours, mode)()
            with torch.no_grad():
                torch.testing.assert_close(ours(x.clone()), peer(x.clone()), atol=1e-6, rtol=1e-6)
            ours.load_state_dict(state)  # training mode moved both running statistics; start the next peer from the same


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_analysis_counts_a_basic_network_as_torch_does(tmp_path, dims):
    plan = _plan(tmp_path, dims)
    report = archc.analyze(plan)
    model = archc.build(plan).eval()
    assert report.params == sum(p.numel() for p in model.parameters())
    blocks = plan.blocks
    assert [bool(b.shortcut) for b in blocks] == [False, True, False] and all(b.residual for b in blocks)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, *plan.resolution))
    assert 2 * report.macs == counter.get_total_flops()  # FLOPs count a multiply and an add


def test_a_basic_networks_projection_folds_and_scripts(tmp_path):
    """BN folding reads the skip's units as a block's (downsample.1 folds into downsample.0); TorchScript compiles the
    skip and the activation after the add."""
    from archc.emit.network import fuse_norms

    plan, x = _plan(tmp_path, 2), torch.randn(2, 3, 16, 16)
    model = archc.build(plan, seed=0).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if "running_var" in name:
                tensor.uniform_(0.5, 1.5)
        expected = model.set_fast_paths(False)(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected, atol=1e-6, rtol=1e-6)
        fused = fuse_norms(model)
        assert isinstance(fused.get_submodule("stages.1.0.downsample.1"), torch.nn.Identity)
        torch.testing.assert_close(fused(x), expected, atol=1e-5, rtol=1e-5)
