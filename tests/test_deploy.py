"""Training-memory and deployment features: checkpointing, batch-norm folding, compile, exports."""

import pytest
import torch
from conftest import TINY3D as TINY
from conftest import calibrate_norms, run_archc, saved_for_backward

import archc
from archc.cli import main
from archc.errors import EmitError


def test_checkpointing_gives_the_same_gradients_with_less_kept():
    x = torch.randn(2, 1, 32, 32, 32)
    results = []
    for checkpointing in (False, True):
        model = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, resolution=32, seed=0,
                           checkpointing=checkpointing, overrides={"stochastic_depth": 0.5}).train()
        torch.manual_seed(0)  # drop-path masks: recomputation must replay the same ones
        kept, out = saved_for_backward(model, x)
        loss = out.square().mean()
        loss.backward()
        results.append((kept, loss.item(), {k: p.grad for k, p in model.named_parameters()}, model.state_dict()))
        assert model.plan.checkpointing is checkpointing
    (plain_kept, plain_loss, plain, plain_state), (ck_kept, ck_loss, ck, ck_state) = results
    assert ck_loss == plain_loss
    assert all(torch.equal(plain[k], ck[k]) for k in plain)
    # The recomputation in backward must not count as a second step for the norms' running statistics.
    assert all(torch.equal(plain_state[k], ck_state[k]) for k in plain_state)
    assert ck_kept < plain_kept / 4


def test_checkpointing_from_the_spec_and_the_state_dict_is_unchanged():
    spec = archc.spec.parse_spec("name: c\ncheckpointing: true\nstages: [{channels: 16, repeats: 2}]\n")
    model = archc.load(spec, resolution=32, seed=0)
    assert type(model.stages[0]).__name__ == "CheckpointedStage"
    assert list(model.state_dict()) == list(archc.load(spec, resolution=32, seed=0, checkpointing=False).state_dict())


@pytest.mark.parametrize("dims, size", [(2, 64), (3, 32)])
def test_fused_outputs_equal_unfused(dims, size):
    plain = archc.load("efficientnet_b0", dims=dims, resolution=size, seed=0).eval()
    calibrate_norms(plain, (3, *(size,) * dims))  # give the norms statistics worth folding
    state = plain.state_dict()
    fused = archc.load("efficientnet_b0", dims=dims, resolution=size, seed=0)
    fused.load_state_dict(state)
    from archc.emit.network import fuse_norms

    fuse_norms(fused)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fused.modules())
    x = torch.randn(2, 3, *(size,) * dims)
    with torch.no_grad():
        expected = plain(x)
        assert (fused(x) - expected).abs().max() <= 1e-4 * expected.abs().max()  # float32 rounding of the folded weights


def test_fused_models_are_not_saved(tmp_path):
    with pytest.raises(EmitError, match="a fused model is for inference only"):
        archc.save(archc.load("efficientnet_b0", resolution=32).fuse_norms(), tmp_path / "f.safetensors")


@pytest.mark.slow
@pytest.mark.parametrize("dims", [2, 3])
def test_compiles_without_graph_breaks(dims):
    model = archc.load(TINY, dims=dims, resolution=16, seed=0, overrides={"padding": "same"}).eval()
    x = torch.randn(2, 1, *(16,) * dims)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: any graph break raises
    with torch.no_grad():
        assert torch.allclose(compiled(x), model(x), atol=1e-6)


# Other sizes than the trace's, odd and not cubic: sliding-window inference feeds whatever the window is.
OTHER_SIZES = {2: [(2, 1, 48, 40), (1, 1, 33, 17)], 3: [(2, 1, 32, 48, 40), (1, 1, 33, 35, 17)]}


def _runs_at_other_sizes(run, model, dims, atol=1e-5):
    for shape in OTHER_SIZES[dims]:
        x = torch.randn(*shape)
        with torch.no_grad():
            torch.testing.assert_close(run(x), model(x), atol=atol, rtol=atol)


@pytest.mark.parametrize("extension", [".pt", ".pt2"])
@pytest.mark.parametrize("dims", [2, 3])
def test_exports_reproduce_outputs(tmp_path, extension, dims):
    model = archc.load(TINY, dims=dims, resolution=32, seed=0).eval()
    path = tmp_path / f"model{extension}"
    archc.export(model, path)
    x = torch.randn(2, 1, *(32,) * dims)
    loaded = torch.jit.load(path) if extension == ".pt" else torch.export.load(path).module()
    with torch.no_grad():
        assert (loaded(x) - model(x)).abs().max() < 1e-5
    _runs_at_other_sizes(loaded, model, dims)  # both are size-agnostic with symmetric padding


def test_same_padding_exports_at_other_sizes_or_refuse_them(tmp_path):
    import onnxruntime

    model = archc.load(TINY, resolution=32, seed=0, overrides={"padding": "same"}).eval()
    # TorchScript records the padding arithmetic, and ONNX computes it from each input: right at every size.
    archc.export(model, tmp_path / "m.pt")
    _runs_at_other_sizes(torch.jit.load(tmp_path / "m.pt"), model, 3)
    archc.export(model, tmp_path / "m.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "m.onnx"))
    for shape in [(3, 1, 32, 32, 32), (1, 1, 33, 35, 17), (2, 1, 32, 48, 40)]:
        x = torch.randn(shape)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), model(x), atol=1e-4, rtol=1e-4)
    # torch.export keeps the spatial axes of the trace: another size is refused, never computed wrongly.
    archc.export(model, tmp_path / "m.pt2")
    program = torch.export.load(tmp_path / "m.pt2").module()
    x = torch.randn(3, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(Exception, match="(?i)shape|size|dim|guard"):
        program(torch.randn(1, 1, 33, 35, 17))


@pytest.mark.parametrize("dims", [2, 3])
def test_onnx_export_runs_in_onnxruntime(tmp_path, dims):
    import onnxruntime

    model = archc.load(TINY, dims=dims, resolution=32, seed=0).eval()
    result = run_archc("export", TINY, "--dims", str(dims), "--resolution", "32", "--seed", "0",
                       "-o", tmp_path / "model.onnx")
    assert result.returncode == 0, result.stderr
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    x = torch.randn(3, 1, *(32,) * dims)  # another batch size than the trace's: the batch axis is dynamic
    (out,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        assert abs(torch.from_numpy(out) - model(x)).max() < 1e-4
    # The spatial axes are dynamic too: the network ends in global average pooling.
    _runs_at_other_sizes(lambda x: torch.from_numpy(session.run(None, {"input": x.numpy()})[0]), model, dims, atol=1e-4)


def test_onnx_feature_maps_have_dynamic_spatial_axes(tmp_path):
    import onnxruntime

    model = archc.load(TINY, dims=2, resolution=32, seed=0, features_only=True).eval()
    archc.export(model, tmp_path / "f.onnx")
    session = onnxruntime.InferenceSession(str(tmp_path / "f.onnx"))
    assert len(session.get_outputs()) == len(model.feature_info)
    _runs_at_other_sizes(lambda x: [torch.from_numpy(a) for a in session.run(None, {"input": x.numpy()})], model, 2, atol=1e-4)


@pytest.mark.slow
def test_onnx_opset(tmp_path):
    import onnx

    result = run_archc("export", TINY, "--dims", "2", "--resolution", "16", "--opset", "17", "-o", tmp_path / "m.onnx")
    assert result.returncode == 0, result.stderr
    assert [o.version for o in onnx.load(tmp_path / "m.onnx").opset_import if o.domain in ("", "ai.onnx")] == [17]
    for flags, message in ((["--opset", "99", "-o", tmp_path / "n.onnx"], "--opset: opset 99 is not supported by this torch's ONNX exporter (7 to"),
                           (["--opset", "17", "-o", tmp_path / "n.pt"], "--opset: an opset applies only to ONNX export (.onnx)")):
        result = run_archc("export", TINY, *flags)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("archc: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    model = archc.load(TINY, resolution=16, seed=0)
    for bad in (True, 17.0, "17", 6):
        with pytest.raises(archc.ArgumentError, match="opset"):
            archc.export(model, tmp_path / "x.onnx", opset=bad)
    assert not (tmp_path / "x.onnx").exists()


def test_export_errors(tmp_path):
    model = archc.load(TINY, seed=0)
    with pytest.raises(archc.ArgumentError, match=r"unknown export format \.h5"):
        archc.export(model, tmp_path / "m.h5")
    result = run_archc("export", TINY, "-o", tmp_path / "m.zip")
    assert result.returncode == 2 and "unknown export format .zip" in result.stderr


@pytest.mark.parametrize("dims, size", [(2, 64), (3, 32)])
def test_channels_last_computes_the_same(dims, size):
    plain = archc.load("efficientnet_b0", dims=dims, resolution=size, seed=0).eval()
    fast = archc.load("efficientnet_b0", dims=dims, resolution=size, seed=0).fuse_norms().set_channels_last()
    assert fast.stem.conv.weight.is_contiguous(memory_format=fast.memory_format)
    x = torch.randn(2, 3, *(size,) * dims)  # an ordinary contiguous input: the model converts it
    with torch.no_grad():
        assert (plain(x) - fast(x)).abs().max() < 1e-4
    with pytest.raises(archc.ArgumentError, match="a 1D model has none"):
        archc.load("efficientnet_b0", dims=1, resolution=32).set_channels_last()




def test_export_restores_each_modules_training_flag(tmp_path):
    model = archc.load(TINY, resolution=16, seed=0).train()
    model.stem.eval()  # a frozen part stays frozen, the rest keeps training
    archc.export(model, tmp_path / "m.pt")
    assert model.training and not model.stem.training
    assert all(m.training for m in model.stages.modules())


def test_export_refuses_an_example_input_too_large_before_allocating(tmp_path):
    from archc.deploy import MAX_EXAMPLE_VALUES

    model = archc.load(TINY, seed=0)
    with pytest.raises(EmitError, match=rf"example input 1000000000x1x32x32x32 .* over the limit of {MAX_EXAMPLE_VALUES:,} values"):
        archc.export(model, tmp_path / "m.pt", batch=10**9)
    result = run_archc("export", TINY, "--resolution", "100000", "-o", tmp_path / "m.onnx")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"example input 1x1x100000x100000x100000 has 1e+15 values, over the limit of {MAX_EXAMPLE_VALUES:,}" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_network_that_cannot_run_at_the_size_is_an_export_error(tmp_path):
    model = archc.load(TINY, resolution=4, seed=0, overrides={"norm.type": "instance"})
    with pytest.raises(EmitError, match=r"cannot export at input 1x1x4x4x4: ValueError: Expected more than 1 spatial element"):
        archc.export(model, tmp_path / "m.pt")
    result = run_archc("export", TINY, "--resolution", "4", "--set", "norm.type=instance", "-o", tmp_path / "m.onnx")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    steps, error = result.stderr.splitlines()[:-1], result.stderr.splitlines()[-1]  # the steps it got through, then one line
    assert [step.split("  ")[-1].split(" ")[0] for step in steps] == ["building", "tracing"]
    assert error.startswith("archc: error: ") and "Expected more than 1 spatial element" in error
    assert not list(tmp_path.iterdir())


def test_export_of_a_saved_model_refuses_flags_that_cannot_apply(tmp_path, capsys):
    saved = tmp_path / "ck.safetensors"
    archc.save(archc.load(TINY, seed=0), saved)
    with pytest.raises(SystemExit) as info:
        main(["export", str(saved), "--phi", "3", "--set", "stem.channels=16", "--resolution", "64", "--seed", "5",
              "-o", str(tmp_path / "m.pt")])
    assert info.value.code == 2
    assert "--phi, --resolution, --seed, --set cannot apply to a saved model" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.safetensors"]


def test_an_archc_error_while_exporting_is_reported_as_it_was(tmp_path, monkeypatch):
    """archc's errors are ValueErrors; the export's wrapping of torch's ValueErrors ("cannot export at input ...")
    leaves them as they were raised, so the message names what archc found, once."""
    from archc.errors import LoweringError

    model = archc.load(TINY, seed=0)

    def refuse(x):
        raise LoweringError("the input has 2 channels, the model takes 1")

    monkeypatch.setattr(model, "forward", refuse)
    with pytest.raises(LoweringError) as raised:
        archc.export(model, tmp_path / "model.pt")
    assert str(raised.value) == "the input has 2 channels, the model takes 1"
    assert not (tmp_path / "model.pt").exists()
