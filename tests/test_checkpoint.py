import json
import os
import struct

import pytest
import torch
from conftest import FIXTURES, TINY3D, write_evil_pickle

import archc
from archc import checkpoint
from archc.errors import ArgumentError, CheckpointError, EmitError


@pytest.fixture(scope="module")
def saved(tmp_path_factory, b0_spec):
    model = archc.load(b0_spec, phi=-2, dims=3, in_channels=1, num_classes=2, resolution=32, seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    archc.save(model, path)
    return model, path


def test_round_trip_restores_exactly(saved):
    model, path = saved
    restored = archc.load(str(path))
    assert restored.plan == model.plan
    assert list(restored.state_dict()) == list(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(restored.state_dict().values(), model.state_dict().values()))
    x = torch.randn(2, 1, 32, 32, 32)
    model.eval(), restored.eval()
    with torch.no_grad():
        assert torch.equal(model(x), restored(x))
    # A restored model can be saved again.
    archc.save(restored, path.with_name("again.safetensors"))
    assert archc.load(str(path.with_name("again.safetensors"))).plan == model.plan


@pytest.mark.parametrize("name, overrides", [("efficientnet_b1", None), ("tf_efficientnet_b0", None), ("tf_efficientnet_b1", {"norm.momentum": 0.2}),
                                             ("tf_mobilenetv3_large_075", ["norm.momentum=0.2"])])
def test_a_model_loaded_by_another_name_reloads_as_it_was(name, overrides, tmp_path):
    """What a name adds over its spec file (its preset, a tf_ name's padding and eps) is saved with the file: B1 used to
    reload as B0 (refused), a tf_ B0 with the file's symmetric padding (silently other outputs)."""
    model = archc.load(name, seed=0, resolution=33, overrides=overrides).eval()
    archc.save(model, tmp_path / "m.safetensors")
    restored = archc.load(str(tmp_path / "m.safetensors")).eval()
    assert restored.plan == model.plan and restored.plan.name == name
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(restored(x), model(x))


def test_changed_byte_is_refused(saved, tmp_path):
    _, path = saved
    blob = bytearray(path.read_bytes())
    blob[-100] ^= 0x01  # one bit of one weight
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        archc.load(str(bad))


def test_changed_spec_in_metadata_is_refused(saved, tmp_path):
    _, path = saved
    blob = path.read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    assert b"stem: {channels: 32" in blob[8 : 8 + size]  # the spec travels as text in the header
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(blob.replace(b"stem: {channels: 32", b"stem: {channels: 40", 1))  # same length: still valid JSON
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        archc.load(str(bad))


def test_missing_tensor_is_named(saved, tmp_path):
    model, _ = saved
    state = dict(model.state_dict())
    del state["stages.1.0.conv_dw.weight"]
    bad = tmp_path / "missing.safetensors"
    src = model.archc_source
    checkpoint.save(str(bad), state, src.spec_text, src.spec_file, src.args)
    with pytest.raises(CheckpointError, match=r"missing tensor stages\.1\.0\.conv_dw\.weight \[.*\]"):
        archc.load(str(bad))


def test_truncated_and_foreign_files(saved, tmp_path):
    _, path = saved
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="truncated"):
        archc.load(str(truncated))
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not an archc checkpoint"):
        archc.load(str(foreign))
    with pytest.raises(CheckpointError, match="no such file"):
        archc.load(str(tmp_path / "absent.safetensors"))


def test_pickle_is_never_executed(tmp_path):
    evil, marker = tmp_path / "evil.safetensors", tmp_path / "pwned"
    write_evil_pickle(evil, marker)
    with pytest.raises(CheckpointError):
        archc.load(str(evil))
    assert not marker.exists()


def test_checkpoint_arguments_cannot_be_changed(saved):
    _, path = saved
    with pytest.raises(ArgumentError, match="num_classes cannot be changed"):
        archc.load(str(path), num_classes=3)
    with pytest.raises(ArgumentError, match="num_classes, seed cannot be changed"):
        archc.load(str(path), archc.BuildRequest(num_classes=3), seed=1)
    with pytest.raises(ArgumentError, match="a saved model is described as it was built; dims cannot be changed"):
        archc.lower(str(path), dims=2)


def test_a_checkpoint_of_archc_0_1_0_is_read(tmp_path):
    """tests/fixtures/tiny3d_v1.safetensors was written by archc 0.1.0 (before the build request was a record):
    load(TINY3D, num_classes=3, resolution=16, overrides=["norm.momentum=0.2"], seed=0), then save. It reads back as that
    request, builds that Plan, and saves again as the same request."""
    old = FIXTURES / "tiny3d_v1.safetensors"
    request = archc.BuildRequest(num_classes=3, resolution=16, overrides=("norm.momentum=0.2",))
    restored = archc.load(str(old))
    assert restored.archc_source.request == request
    assert restored.plan == archc.lower(TINY3D, request) and restored.plan.norm.momentum == 0.2 and restored.plan.head.num_classes == 3
    assert restored.plan == archc.lower(str(old))
    archc.save(restored, tmp_path / "again.safetensors")
    assert checkpoint.load(str(tmp_path / "again.safetensors"), tensors=False).build_args == {
        "num_classes": 3, "resolution": 16, "overrides": ["norm.momentum=0.2"]}  # the names and values 0.1.0 wrote


def test_the_request_is_what_a_checkpoint_stores(tmp_path):
    """Every field of the request survives a save, checkpointing included (stored as its own field, not as an override)."""
    request = archc.BuildRequest(phi=-1.5, dims=2, in_channels=2, num_classes=0, resolution=(40, 48), overrides={"stem.channels": 16},
                                 checkpointing=True)
    model = archc.load(TINY3D, request, seed=0)
    assert model.archc_source.request == request and model.plan.checkpointing
    archc.save(model, tmp_path / "m.safetensors")
    saved = checkpoint.load(str(tmp_path / "m.safetensors"), tensors=False)
    assert saved.build_args == {"phi": -1.5, "dims": 2, "in_channels": 2, "num_classes": 0, "resolution": [40, 48],
                                "overrides": {"stem.channels": 16}, "checkpointing": True}
    restored = archc.load(str(tmp_path / "m.safetensors"))
    assert restored.archc_source.request == request and restored.plan == model.plan


def test_save_needs_an_archc_model(tmp_path, b0_spec):
    with pytest.raises(EmitError, match="not compiled by archc.load"):
        archc.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    with pytest.raises(ArgumentError, match="a saved model is a .safetensors file"):
        archc.save(archc.load(b0_spec, resolution=32), tmp_path / "x.pt")


def test_failed_write_leaves_nothing(tmp_path, b0_spec, monkeypatch):
    model = archc.load(b0_spec, resolution=32, seed=0)
    target = tmp_path / "m.safetensors"
    target.write_bytes(b"old")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(EmitError, match="No space left on device"):
        archc.save(model, target)
    assert target.read_bytes() == b"old"  # not clobbered
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temporary left behind


def test_restored_models_take_the_same_finishing_options(saved):
    model, path = saved
    with pytest.warns(DeprecationWarning):
        fast = archc.load(str(path), channels_last=True, fuse=True, sync_bn=True)
    assert fast.memory_format == torch.channels_last_3d and fast.fused
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fast.modules())  # folded
    x = torch.randn(2, 1, 32, 32, 32)
    model.eval()
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < 1e-4
    with pytest.warns(DeprecationWarning):
        synced = archc.load(str(path), sync_bn=True)
    assert {type(m).__name__ for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {"SyncBatchNorm"}
    with pytest.raises(ArgumentError, match="weights cannot be changed"):
        archc.load(str(path), weights=model.state_dict())


def _header(path) -> tuple[dict, bytes]:
    blob = path.read_bytes()
    (size,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8 : 8 + size]), blob[8 + size :]


def _write(path, header: dict, data: bytes) -> None:
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data)


def test_any_library_reads_the_file(saved):
    """The file is plain safetensors: the reference reader gives the same tensors."""
    from safetensors.torch import load_file

    model, path = saved
    theirs = load_file(str(path))
    assert sorted(theirs) == sorted(model.state_dict())
    assert all(torch.equal(theirs[key], value) for key, value in model.state_dict().items())


def test_header_tampering_is_refused(saved, tmp_path):
    """Names, dtypes and offsets decide what is loaded, so the digest covers them (a swap used to load silently)."""
    _, path = saved
    header, data = _header(path)
    a, b = "stages.1.0.bn1.weight", "stages.1.0.bn1.bias"  # same shape: a swap fits the model
    swapped = dict(header, **{a: header[b], b: header[a]})
    retyped = dict(header, **{a: dict(header[a], dtype="I32")})
    complex64 = dict(header, **{a: dict(header[a], dtype="C64", shape=[header[a]["shape"][0] // 2])})
    for name, tampered in [("swapped", swapped), ("retyped", retyped), ("complex", complex64)]:
        bad = tmp_path / f"{name}.safetensors"
        _write(bad, tampered, data)
        with pytest.raises(CheckpointError, match="checksum mismatch"):
            archc.load(str(bad))
    # The same header, spelt differently (spaces, key order): refused too; only the canonical form is ours.
    respelt = tmp_path / "respelt.safetensors"
    _write(respelt, dict(reversed(header.items())), data)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        archc.load(str(respelt))


def test_wrong_dtype_with_a_valid_digest_is_refused(saved, tmp_path):
    """A digest is no signature: a crafted file can carry a fresh one, so each tensor's dtype is checked too."""
    model, _ = saved
    state = dict(model.state_dict())
    state["stem.conv.weight"] = state["stem.conv.weight"].to(torch.int32)
    bad = tmp_path / "i32.safetensors"
    src = model.archc_source
    checkpoint.save(str(bad), state, src.spec_text, src.spec_file, src.args)
    with pytest.raises(CheckpointError, match=r"tensor stem\.conv\.weight has dtype I32, the model needs F32"):
        archc.load(str(bad))


@pytest.mark.parametrize("metadata, message", [
    ("a string", "not an archc checkpoint"),
    (["a", "list"], "not an archc checkpoint"),
    (7, "not an archc checkpoint"),
    ({"format": "archc-checkpoint/1"}, "written in the format 'archc-checkpoint/1'"),
])
def test_foreign_metadata_is_refused(saved, tmp_path, metadata, message):
    _, path = saved
    header, data = _header(path)
    bad = tmp_path / "bad.safetensors"
    _write(bad, dict(header, __metadata__=metadata), data)
    with pytest.raises(CheckpointError, match=message):
        archc.load(str(bad))


@pytest.mark.parametrize("build, message", [
    ('"abc"', "build arguments are not a mapping"),
    ('{"phi": "x"}', "phi must be a number"),
    ('{"resolution": 1e400}', "not a finite number"),
    ('{"dims": 2, "mystery": 1}', "build arguments are not archc's"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_crafted_build_arguments_are_refused(saved, tmp_path, build, message):
    """Arguments with a valid digest still go through the checks a user's arguments get."""
    model, _ = saved
    src = model.archc_source
    bad = tmp_path / "bad.safetensors"
    metadata = {"format": checkpoint.FORMAT, "spec": src.spec_text, "spec_file": src.spec_file, "build": build}
    bad.write_bytes(checkpoint.serialize(model.state_dict(), metadata))
    with pytest.raises(CheckpointError, match=message):
        archc.load(str(bad))


@pytest.mark.slow
def test_same_model_same_bytes_across_processes(tmp_path):
    """Two processes building the same spec with the same seed write identical files."""
    from conftest import run_archc

    files = [tmp_path / "a.safetensors", tmp_path / "b.safetensors"]
    for file in files:
        result = run_archc("build", TINY3D, "--seed", "3", "-o", file)
        assert result.returncode == 0, result.stderr
    assert files[0].read_bytes() == files[1].read_bytes()


def test_a_changed_module_is_not_saved(saved, tmp_path):
    """save() refuses what load() would refuse, naming the difference, and writes nothing."""
    model, _ = saved
    import copy

    changed = copy.deepcopy(model)
    changed.classifier = torch.nn.Linear(changed.classifier.in_features, 5)
    target = tmp_path / "changed.safetensors"
    with pytest.raises(EmitError, match=r"no longer matches its spec \(tensor classifier\.weight has shape \[5, \d+\], the model needs \[2, \d+\]"):
        archc.save(changed, target)
    assert not target.exists()


def test_the_size_limit_applies_to_saved_models(saved):
    _, path = saved
    with pytest.raises(archc.LoweringError, match=r"this model would have [\d,]+ parameters .* over the limit of 1;"):
        archc.load(str(path), max_params=1)
