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
        # ConvNeXt's patchify stem reduces by 4 and its first stage not again, and MONAI's ResNet layout has a stride-1
        # stem whose map is at full resolution, not a level (archc.monai): four levels, as timm's features_only
        assert entry["feature_number"] == len(plan.features) == (4 if name.startswith(("convnext", "monai_resnet")) else 5), name
        assert tuple(entry["feature_channel"]) == tuple(f.channels for f in plan.features), name
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
