import os
import struct

import pytest
import torch

import archc
from archc import checkpoint
from archc.errors import CheckpointError, EmitError
from conftest import write_evil_pickle


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
    with pytest.raises(archc.LoweringError, match="num_classes cannot be changed"):
        archc.load(str(path), num_classes=3)


def test_save_needs_an_archc_model(tmp_path, b0_spec):
    with pytest.raises(EmitError, match="not compiled by archc.load"):
        archc.save(torch.nn.Linear(2, 2), tmp_path / "x.safetensors")
    with pytest.raises(EmitError, match="a saved model is a .safetensors file"):
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
    fast = archc.load(str(path), channels_last=True, fuse=True, sync_bn=True)
    assert fast.memory_format == torch.channels_last_3d and fast.fused
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in fast.modules())  # folded
    x = torch.randn(2, 1, 32, 32, 32)
    model.eval()
    with torch.no_grad():
        assert (fast(x) - model(x)).abs().max() < 1e-4
    synced = archc.load(str(path), sync_bn=True)
    assert {type(m).__name__ for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {"SyncBatchNorm"}
    with pytest.raises(archc.LoweringError, match="weights cannot be changed"):
        archc.load(str(path), weights=model.state_dict())
