"""The MBConv family by timm's names, one row per name: archc's network of that name has the parameters of timm's
real module (and timm's published count), timm's blocks per stage, stem and head widths and input size, the
feature levels of timm's ``features_only`` model, and it builds and runs in 1D and 3D. What is particular to
one family (how its blocks are built, its weights' import) is in that family's test file."""

import pytest
import timm
import torch
from reference_figures import PRESETS, TIMM_PARAMS, TORCHVISION_RESOLUTION

import archc

NAMES = list(TIMM_PARAMS)

# Where archc's input size is not timm's pretrained_cfg["input_size"]: B2-B5 run at the size they were released at
# (timm's weights for them were trained at other sizes), tf_efficientnetv2_s at torchvision's.
RESOLUTION = {f"efficientnet_{preset}": size for preset, (_, size) in PRESETS.items()} | {"tf_efficientnetv2_s": TORCHVISION_RESOLUTION["efficientnet_v2_s"]}

# The large presets of B0's and V2-S's specs (30M to 480M parameters): a real 1D or 3D module would spend seconds
# to tens of seconds drawing random weights, and the smaller presets of the same specs run for real. Theirs runs on
# the meta device, which executes every module's forward and checks every shape without computing values.
ON_META = {"efficientnet_b5", "efficientnet_b6", "efficientnet_b7", "efficientnet_b8", "efficientnet_l2",
           "tf_efficientnetv2_m", "tf_efficientnetv2_l", "tf_efficientnetv2_xl"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _head_width(conv) -> int | None:
    return conv.out_channels if isinstance(conv, torch.nn.Conv2d) else None  # timm: Identity where there is none


@pytest.mark.parametrize("name", NAMES)
def test_parameters_blocks_and_feature_levels_are_timms(name):
    plan = archc.lower(name)
    with torch.device("meta"):
        peer = timm.create_model(name, pretrained=False)
        peer_features = timm.create_model(name, pretrained=False, features_only=True)
        features = archc.load(name, features_only=True)
    assert plan.name == name
    assert archc.analyze(plan).params == sum(p.numel() for p in peer.parameters()) == TIMM_PARAMS[name]  # the emitted module's: in 1D and 3D below
    assert [len(stage.blocks) for stage in plan.stages] == [len(stage) for stage in peer.blocks]
    assert plan.stem.out_channels == peer.conv_stem.out_channels
    assert (plan.head.conv.out_channels if plan.head.conv else None) == _head_width(getattr(peer, "conv_head", None))
    assert plan.resolution == (RESOLUTION.get(name, peer.pretrained_cfg["input_size"][1]),) * 2
    assert features.feature_info.channels() == peer_features.feature_info.channels()
    assert features.feature_info.reduction() == peer_features.feature_info.reduction()


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_runs_in_1d_and_3d(name):
    """A k x k kernel becomes k along one axis or k x k x k, while 1x1 convs, norms and the classifier stay: the 1D
    network has fewer parameters than timm's 2D one, the 3D network more."""
    params = {}
    for dims, size in ((1, 64), (3, 24)):
        device = "meta" if name in ON_META else "cpu"
        with torch.device(device):
            model = archc.load(name, dims=dims, resolution=size, seed=0, max_params=None).eval()
            with torch.no_grad():
                out = model(torch.randn(1, 3, *(size,) * dims))
        assert model.plan.dims == dims and all(len(u.kernel) == dims for b in model.plan.blocks for u in b.convs)
        assert out.shape == (1, 1000) and out.device.type == device
        assert device == "meta" or torch.isfinite(out).all()
        params[dims] = sum(p.numel() for p in model.parameters())
        assert archc.analyze(model.plan).params == params[dims]
    assert params[1] < TIMM_PARAMS[name] < params[3]
