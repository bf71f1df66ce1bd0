"""archc networks as MONAI FlexibleUNet backbones (archc.monai), tested with MONAI's real FlexibleUNet."""

import textwrap

import pytest
from conftest import TINY3D, run_python

pytest.importorskip("monai")

import torch  # noqa: E402
from monai.networks.nets import FlexibleUNet  # noqa: E402
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE  # noqa: E402

import archc  # noqa: E402
import archc.api  # noqa: E402
import archc.monai  # noqa: E402
from archc.errors import ArchcError, ArgumentError  # noqa: E402


def unet(backbone: str, dims: int, in_channels: int = 1, out_channels: int = 2, **kwargs) -> FlexibleUNet:
    torch.manual_seed(0)
    return FlexibleUNet(in_channels=in_channels, out_channels=out_channels, backbone=backbone, spatial_dims=dims,
                        **kwargs).eval()


def segment(model, shape) -> tuple:
    with torch.no_grad():
        return tuple(model(torch.randn(*shape)).shape)


def test_import_archc_leaves_monai_unimported():
    done = run_python("import sys, archc; archc.lower('efficientnet_b0'); print('monai' in sys.modules)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_without_monai_the_error_names_the_extra():
    hide = textwrap.dedent("""
        import sys
        class Hide:
            def __init__(self, finder):
                self.finder = finder
            def find_spec(self, name, path=None, target=None):
                return None if name.split(".")[0] == "monai" else self.finder.find_spec(name, path, target)
        sys.meta_path[:] = [Hide(f) if hasattr(f, "find_spec") else f for f in sys.meta_path]
        try:
            import archc.monai
        except Exception as e:
            print(type(e).__name__, e)
    """)
    done = run_python(hide)
    assert done.returncode == 0, done.stderr
    assert "pip install 'archc[monai]'" in done.stdout
    assert done.stdout.split()[0] in ("EmitError", "ImportError", "ModuleNotFoundError")


def test_every_shipped_spec_and_alias_is_a_backbone_with_its_feature_channels():
    names = list(archc.builtin_specs()) + list(archc.api.shipped_aliases())
    assert "efficientnet_b1" in names and "mobilenetv2_100" in names
    for name in names:
        entry = FLEXUNET_BACKBONE.register_dict[f"archc_{name}"]
        assert entry["type"] is archc.monai.ArchcEncoder
        plan = archc.lower(name, features_only=True)
        # ConvNeXt's patchify stem reduces by 4 and its first stage not again: four levels, as timm's features_only, and
        # MONAI's ResNet layout has a stride-1 stem whose map is at full resolution, not a level (archc.monai)
        channels = tuple(f.channels for f in plan.features)
        if name.startswith("convnext"):  # no level at 2: an empty map stands in, so the decoder still halves 5 times
            assert len(plan.features) == 4 and [f.reduction[0] for f in plan.features] == [4, 8, 16, 32], name
            channels = (0, *channels)
        assert entry["feature_number"] == len(channels) == (4 if name.startswith("monai_resnet") else 5), name
        assert tuple(entry["feature_channel"]) == channels, name
    # the channels pair with MONAI's own encoder of the same network
    assert FLEXUNET_BACKBONE.register_dict["archc_efficientnet_b4"]["feature_channel"] == \
        FLEXUNET_BACKBONE.register_dict["efficientnet-b4"]["feature_channel"]


@pytest.mark.parametrize("shape", [(2, 1, 64, 64), (1, 1, 64, 96)])
def test_flexible_unet_2d(shape):
    model = unet("archc_efficientnet_b0", dims=2)
    assert segment(model, shape) == (shape[0], 2) + shape[2:]


@pytest.mark.parametrize("shape", [(1, 1, 32, 32, 32), (1, 1, 32, 64, 32)])
def test_flexible_unet_3d(shape):
    model = unet("archc_efficientnet_b0", dims=3)
    assert segment(model, shape) == (1, 2) + shape[2:]


@pytest.mark.parametrize("size", [(65, 64), (48, 48), (33, 47)])
def test_sizes_not_a_multiple_of_32_give_what_monai_encoders_give(size):
    ours = segment(unet("archc_efficientnet_b0", dims=2), (1, 1) + size)
    theirs = segment(unet("efficientnet-b0", dims=2), (1, 1) + size)
    assert ours == theirs


@pytest.mark.parametrize("name, dims, in_channels", [("efficientnet_b0", 2, 1), ("efficientnet_b0", 3, 1),
                                                     ("mobilenetv2_140", 2, 3), ("efficientnetv2_s", 3, 4)])
def test_encoder_parameters_equal_the_analysis(name, dims, in_channels):
    model = unet(f"archc_{name}", dims=dims, in_channels=in_channels)
    params = sum(p.numel() for p in model.encoder.parameters())
    assert params == archc.analyze(archc.lower(name, features_only=True, dims=dims, in_channels=in_channels)).params


def test_the_encoder_returns_archc_features_in_order():
    model = unet("archc_mobilenet_v2", dims=2)
    assert [f["reduction_per_axis"] for f in model.encoder.feature_info] == [(2, 2), (4, 4), (8, 8), (16, 16), (32, 32)]
    with torch.no_grad():
        maps = model.encoder(torch.randn(1, 1, 64, 64))
    assert [tuple(m.shape) for m in maps] == [(1, c, 64 // r, 64 // r) for c, r in zip((16, 24, 32, 96, 320), (2, 4, 8, 16, 32))]


def write_tiny(tmp_path, name="tiny_seg", extra=""):
    path = tmp_path / f"{name}.yaml"
    path.write_text(TINY3D.read_text().replace("name: tiny3d", f"name: {name}") + extra)
    return path


def test_register_a_user_spec(tmp_path):
    path = write_tiny(tmp_path)
    name = archc.monai.register(path)
    assert name == "archc_tiny_seg"
    entry = FLEXUNET_BACKBONE.register_dict[name]
    assert entry["feature_number"] == 3 and tuple(entry["feature_channel"]) == (8, 16, 24)
    assert segment(unet(name, dims=3), (1, 1, 32, 32, 32)) == (1, 2, 32, 32, 32)
    assert segment(unet(name, dims=2, in_channels=3), (1, 3, 40, 24)) == (1, 2, 40, 24)
    # a chosen name, a Spec object, and registering the same name again (a notebook cell run twice)
    assert archc.monai.register(archc.read(path), name="my_encoder") == "my_encoder"
    assert archc.monai.register(path, name="my_encoder") == "my_encoder"
    assert segment(unet("my_encoder", dims=3), (1, 1, 16, 16, 16)) == (1, 2, 16, 16, 16)


def test_register_with_load_arguments(tmp_path):
    name = archc.monai.register("efficientnet_b0", name="archc_test_b0_narrow", overrides={"stem.channels": 16})
    model = unet(name, dims=2)
    assert model.encoder.network.stem.conv.out_channels == 16
    with pytest.raises(ArgumentError, match="^dims: FlexibleUNet sets these"):
        archc.monai.register("efficientnet_b0", name="archc_test_b0_3d", dims=3)
    with pytest.raises(ArgumentError, match="^in_channels: FlexibleUNet sets these"):
        archc.monai.register("efficientnet_b0", name="archc_test_b0_3d", request=archc.BuildRequest(in_channels=1))


def test_register_takes_a_build_request():
    """The registry fills and passes on the same request as archc.load: the spec is read with its overrides, and the
    encoder FlexibleUNet builds is the features-only network at that request and FlexibleUNet's dims and channels."""
    request = archc.BuildRequest(preset="b1", overrides={"stem.channels": 16})
    name = archc.monai.register("efficientnet_b0", name="archc_test_b1_request", request=request, seed=0)
    entry = archc.monai.ArchcEncoder.backbones[name]
    assert entry.request == archc.BuildRequest(preset="b1") and entry.load_args == {"seed": 0} and entry.spec.stem.channels == 16
    built = unet(name, dims=2).encoder.network
    assert built.plan == archc.lower("efficientnet_b0", request, features_only=True, dims=2, in_channels=built.plan.in_channels)


@pytest.mark.parametrize("taken", ["efficientnet-b0", "resnet18", "archc_efficientnet_b0", "archc_mobilenetv2_100"])
def test_register_refuses_a_name_taken_by_something_else(tmp_path, taken):
    before = FLEXUNET_BACKBONE.register_dict[taken]
    with pytest.raises(ArchcError, match="already"):
        archc.monai.register(write_tiny(tmp_path), name=taken)
    assert FLEXUNET_BACKBONE.register_dict[taken] is before


def test_register_refuses_a_bad_spec(tmp_path):
    with pytest.raises(ArchcError, match="no such file"):
        archc.monai.register(tmp_path / "missing.yaml")
    with pytest.raises(ArchcError):
        archc.monai.register(write_tiny(tmp_path), name="")


def test_pretrained_is_refused_with_the_way_to_import_weights():
    with pytest.raises(ArgumentError, match=r"weights_from"):
        unet("archc_efficientnet_b0", dims=2, pretrained=True)


def test_levels_that_do_not_halve_in_every_axis_are_refused():
    # efficientnet3d_b0 keeps every slice at first: its levels reduce (1, 2, 2), (1, 4, 4), ...
    with pytest.raises(ArchcError, match=r"\(1, 2, 2\)"):
        unet("archc_efficientnet3d_b0", dims=3)


def test_a_spec_with_six_levels_is_refused(tmp_path):
    path = write_tiny(tmp_path, "deep", "    - [mbconv, 4, 3, 2, 32, 1]\n    - [mbconv, 4, 3, 2, 40, 1]\n"
                      "    - [mbconv, 4, 3, 2, 48, 1]\n")
    with pytest.raises(ArchcError, match="at most 5"):
        archc.monai.register(path)


def test_a_level_at_full_resolution_is_left_out(tmp_path):
    path = write_tiny(tmp_path, "flat")
    path.write_text(path.read_text().replace("stem: {channels: 8, kernel: 3, stride: 2}", "stem: {channels: 8, kernel: 3, stride: 1}"))
    assert [f.reduction for f in archc.lower(path, features_only=True).features][0] == (1, 1, 1)
    name = archc.monai.register(path)
    assert FLEXUNET_BACKBONE.register_dict[name]["feature_number"] == 2
    assert segment(unet(name, dims=3), (1, 1, 16, 16, 16)) == (1, 2, 16, 16, 16)


def test_register_with_weights_gives_the_encoder_those_weights():
    source = archc.load("mobilenet_v2", features_only=True, dims=2, in_channels=1, seed=3)
    weights = {k: v.clone() for k, v in source.state_dict().items()}
    name = archc.monai.register("mobilenet_v2", name="archc_test_weighted", weights=weights, weights_from="archc")
    built = unet(name, dims=2).encoder.network.state_dict()
    assert built.keys() == weights.keys()
    assert all(torch.equal(built[k], v) for k, v in weights.items())


@pytest.mark.parametrize("args, error, message", [
    ({"seed": -1}, "ArgumentError", "seed must be an integer from 0 to 18446744073709551615, got -1"),
    ({"seed": True}, "ArgumentError", "seed must be an integer from 0 to 18446744073709551615, got True"),
    ({"max_params": 0}, "ArgumentError", "max_params must be a positive integer (or None: no limit), got 0"),
    ({"max_params": "5M"}, "ArgumentError", "max_params must be a positive integer (or None: no limit), got '5M'"),
    ({"max_params": 1}, "LoweringError", "archc_test_guarded: its encoder has 3,594,812 parameters even in 2D with one input channel, "
                                         "over max_params=1; raise max_params (or None: no limit)"),
    ({"weights_from": "bogus"}, "ArgumentError", "unknown weights source 'bogus'; expected one of "),
    ({"inflate": "sideways"}, "ArgumentError", "unknown inflation 'sideways'; 2D kernels go into 3D by 'center' or 'mean'"),
    ({"weights": 3}, "ArgumentError", "weights must be a state_dict or a file's path, got 3"),
    ({"weights": "missing.safetensors"}, "CheckpointError", "missing.safetensors: no such file (weights)"),
    ({"fuse": "yes"}, "ArgumentError", "fuse must be True or False, got 'yes'"),
    ({"checkpointing": 1}, "ArgumentError", "checkpointing must be True, False or None (the spec's), got 1"),
])
def test_register_refuses_bad_load_arguments_when_registering(args, error, message):
    """What archc.load would refuse only when FlexibleUNet builds the encoder, or ignore (weights_from without weights,
    inflate in 2D), is refused by register() itself, as a ValueError (MONAI's own argument errors are ValueErrors)."""
    with pytest.raises(ValueError) as raised:
        archc.monai.register("efficientnet_b0", name="archc_test_guarded", **args)
    assert type(raised.value).__name__ == error and message in str(raised.value) and isinstance(raised.value, ArchcError)
    assert "archc_test_guarded" not in FLEXUNET_BACKBONE.register_dict


def test_max_params_guards_the_encoder_flexible_unet_builds():
    """A limit the 2D encoder meets is kept, and archc.load applies it to what FlexibleUNet builds (3D is larger)."""
    name = archc.monai.register("efficientnet_b0", name="archc_test_limited", max_params=4_000_000, seed=0, weights_from="timm", inflate="center")
    assert sum(p.numel() for p in unet(name, dims=2).encoder.parameters()) == 3_594_812
    with pytest.raises(ArchcError, match="over the limit of 4,000,000"):
        unet(name, dims=3)


# The ResNet and ConvNeXt encoders in FlexibleUNet, end to end.

def _forward_backward(model, shape):
    model.train()
    x = torch.randn(*shape)
    y = model(x)
    y.square().mean().backward()
    grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    return tuple(y.shape)


# 2D and 3D, sizes a multiple of 32 (the deepest map's reduction) but not the same in every axis.
SHAPES = {2: (2, 1, 64, 96), 3: (2, 1, 32, 64, 32)}
RESIDUAL_ENCODERS = [("resnet18", 2), ("monai_resnet18", 2), ("convnext_atto", 2),
                     *(pytest.param(name, dims, marks=pytest.mark.slow)
                       for name, dims in [("resnet18", 3), ("resnet50", 2), ("resnet50", 3), ("monai_resnet18", 3), ("convnext_atto", 3)])]


@pytest.mark.parametrize("name, dims", RESIDUAL_ENCODERS)
def test_residual_encoders_train_in_flexible_unet_with_the_input_size_out(name, dims):
    """FlexibleUNet's output has the input's size and out_channels maps, and the encoder's weights get gradients."""
    shape = SHAPES[dims]
    assert _forward_backward(unet(f"archc_{name}", dims=dims), shape) == (shape[0], 2, *shape[2:])


@pytest.mark.parametrize("name", ["resnet18", pytest.param("resnet34", marks=pytest.mark.slow), pytest.param("resnet50", marks=pytest.mark.slow)])
def test_resnet_encoders_give_the_skips_of_monais_own_resnet_backbone(name):
    """MONAI's FlexibleUNet(backbone="resnet18") and archc's resnet18 (timm's layout: the same stride-2 stem, max pool
    and stages) hand the decoder maps of the same channels at the same sizes, so the decoders are the same modules."""
    mine, theirs = FLEXUNET_BACKBONE.register_dict[f"archc_{name}"], FLEXUNET_BACKBONE.register_dict[name]
    assert (mine["feature_number"], tuple(mine["feature_channel"])) == (theirs["feature_number"], tuple(theirs["feature_channel"]))
    ours, peer = unet(f"archc_{name}", dims=3), unet(name, dims=3)
    x = torch.randn(1, 1, 32, 64, 32)
    with torch.no_grad():
        assert [m.shape for m in ours.encoder(x)] == [m.shape for m in peer.encoder(x)]
        assert ours(x).shape == peer(x).shape == (1, 2, 32, 64, 32)
    shapes = lambda model: {k: v.shape for k, v in model.state_dict().items() if not k.startswith("encoder.")}
    assert shapes(ours) == shapes(peer)


# MONAI's FlexibleUNet ResNet encoder (ResNetEncoder) is its ResNet with a stride-2 stem (conv1_t_stride=2) and the
# shortcut conv without a bias where the depth takes shortcut type B (resnet10, resnet50 and deeper): monai_resnetN with
# those two changed. (resnet18 and resnet34 take type A, a parameter-free zero-padded shortcut archc does not have.)
MONAI_ENCODER_LAYOUT = {"stem.layers[0].stride": 2, **{f"stages[{i}].shortcut": "conv" for i in range(4)}}


@pytest.mark.slow
@pytest.mark.parametrize("depth", [10, 50])
def test_monai_resnet_encoder_with_monais_weights_gives_monais_flexible_unet(depth):
    """archc's monai_resnet in the layout of MONAI's ResNetEncoder, given a calibrated MONAI FlexibleUNet's encoder
    weights (and its decoder's), returns MONAI's feature maps (an odd size) and MONAI's segmentation."""
    from conftest import calibrate_norms

    peer = calibrate_norms(unet(f"resnet{depth}", dims=3), (1, 32, 64, 32))
    name = archc.monai.register(f"monai_resnet{depth}", name=f"archc_test_monai_resnet{depth}_encoder", overrides=MONAI_ENCODER_LAYOUT,
                                weights=peer.encoder.state_dict(), weights_from="timm")
    entry = FLEXUNET_BACKBONE.register_dict[name]
    assert tuple(entry["feature_channel"]) == tuple(FLEXUNET_BACKBONE.register_dict[f"resnet{depth}"]["feature_channel"])
    ours = unet(name, dims=3)
    assert sum(p.numel() for p in ours.encoder.parameters()) == sum(p.numel() for p in peer.encoder.parameters())
    ours.load_state_dict({k: v for k, v in peer.state_dict().items() if not k.startswith("encoder.")}, strict=False)
    ours.encoder.network.set_fast_paths(False)  # the ops MONAI runs, in its order
    odd = torch.randn(2, 1, 17, 23, 19, generator=torch.Generator().manual_seed(1))
    x = torch.randn(2, 1, 32, 64, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for mine, theirs in zip(ours.encoder.network(odd), peer.encoder(odd), strict=True):
            assert theirs.std() > 1e-2
            torch.testing.assert_close(mine, theirs, atol=1e-4, rtol=1e-4)
        theirs = peer(x)
        assert theirs.std() > 1e-2
        torch.testing.assert_close(ours(x), theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dims", [2, 3])
def test_convnext_has_an_empty_map_where_it_has_no_level(dims):
    """ConvNeXt's first map is reduced 4 times: the encoder returns an empty map (no channels) at 2 before its four
    levels, so the decoder upsamples five times, to the input's size, as it does for MONAI's own encoders."""
    model = unet("archc_convnext_atto", dims=dims)
    assert [f["num_chs"] for f in model.encoder.feature_info] == [0, 40, 80, 160, 320]
    assert [f["reduction"] for f in model.encoder.feature_info] == [2, 4, 8, 16, 32]
    assert model.encoder.feature_info[0]["module"] is None and model.encoder.feature_info[1]["module"] == "stages.0"
    x = torch.randn(SHAPES[dims])
    with torch.no_grad():
        maps = model.encoder(x)
        assert [tuple(m.shape[1:]) for m in maps] == [(c, *(s // r for s in x.shape[2:]))
                                                     for c, r in zip((0, 40, 80, 160, 320), (2, 4, 8, 16, 32))]
        assert model(x).shape == segment(unet("efficientnet-b0", dims=dims), x.shape) == (x.shape[0], 2, *x.shape[2:])


def test_a_network_without_a_level_at_2_takes_an_empty_map_in_a_registered_spec(tmp_path):
    """The same for a spec of one's own: a stride-4 patchify stem (a level at 4 first, then 8 and 16)."""
    path = write_tiny(tmp_path, "patchify")
    path.write_text(path.read_text().replace("stem: {channels: 8, kernel: 3, stride: 2}", "stem: {layers: [{channels: 8, kernel: 4, stride: 4}]}"))
    assert [f.reduction[0] for f in archc.lower(path, features_only=True).features] == [4, 8, 16]
    name = archc.monai.register(path)
    assert tuple(FLEXUNET_BACKBONE.register_dict[name]["feature_channel"]) == (0, 8, 16, 24)
    assert segment(unet(name, dims=3), (1, 1, 32, 32, 16)) == (1, 2, 32, 32, 16)
