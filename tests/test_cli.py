import json
import os

import pytest
import torch
from conftest import TINY3D, run_archc, run_python
from reference_figures import GMACS, PHI_PARAMS, PRESETS, TORCHVISION_PARAMS

import archc
from archc.cli import main


def test_build_phi2_dims3_in_a_fresh_process():
    """The README's example: a 3D EfficientNet scaled by phi = 2, with its per-stage summary."""
    result = run_archc("build", "specs/efficientnet_b0.yaml", "--phi", "2", "--dims", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "efficientnet_b0: 3D, phi 2 (width 1.210, depth 1.440), input 3x296x296x296"
    assert lines[2].split() == ["stage", "block", "n", "channels", "kernel", "stride", "SE", "output", "params", "MACs"]
    assert lines[3].split()[:8] == ["stem", "conv", "1", "3->40", "3", "2", "-", "40x148x148x148"]
    plan = archc.lower("specs/efficientnet_b0.yaml", phi=2, dims=3)
    params = archc.analyze(plan).params
    assert f"built Network with {params:,} parameters" in result.stdout
    assert lines[-2].split()[:2] == ["parameters", f"{params:,}"]


def test_build_summary_rows_and_totals(capsys):
    assert main(["build", "efficientnet_b0", "--preset", "b0", "--resolution", "224"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out[3:13]]
    assert [r[0] for r in rows] == ["stem", "0", "1", "2", "3", "4", "5", "6", "head", "classifier"]  # as stages[0]..[6]
    # By hand: depthwise 32*9 + BN 64, SE (32*8+8) + (8*32+32), project 32*16 + BN 32 = 1,448 parameters;
    # MACs 32*9*112^2 + 2*32*8 + 32*16*112^2 = 10,035,712.
    assert rows[1] == ["0", "MBConv1", "1", "32->16", "3", "1", "8", "16x112x112", "1,448", "10.0M"]
    assert out[14].split()[:3] == ["total", "16", f"{PRESETS['b0'][0]:,}"]


def test_build_saves_a_model_that_reloads(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    assert main(["build", "efficientnet_b0", "--phi", "-1", "--dims", "1", "--in-channels", "2", "--num-classes", "3", "--resolution", "64", "--seed", "5", "-o", str(path)]) == 0
    assert f"saved to {path}" in capsys.readouterr().out
    model = archc.load(str(path)).eval()
    same = archc.load("efficientnet_b0", phi=-1, dims=1, in_channels=2, num_classes=3, resolution=64, seed=5).eval()
    x = torch.randn(2, 2, 64)
    with torch.no_grad():
        assert torch.equal(model(x), same(x))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "efficientnet_b0", "--phi", "1", "--preset", "b1"], "argument --preset: not allowed with argument --phi"),
        (["build", "efficientnet_b0", "--dims", "4"], "argument --dims: invalid choice: 4"),
        (["build", "efficientnet_b0", "--phi", "nan"], "argument --phi: expected a finite number, got 'nan'"),
        (["build", "efficientnet_b0", "--resolution", "32,x"], "argument --resolution: expected an integer, got 'x'"),
        (["build", "efficientnet_b0", "--in-channels", "0"], "argument --in-channels: expected a positive integer, got '0'"),
        (["build", "efficientnet_b0", "-o", "model.pt"], "-o: a saved model is a .safetensors file, got 'model.pt'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_usage_errors_exit_2(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "missing.yaml"], "archc: error: missing.yaml: no such file or shipped spec (archc list shows every shipped name)"),
        (["build", "mixnet_mm"], "archc: error: mixnet_mm: no such file or shipped spec; did you mean mixnet_m"),
        (["build", "efficientnet_b0", "--preset", "b9"], "unknown preset 'b9' (available: b0, b1, b2, b3, b4, b5, b6, b7, b8, l2)"),
        (["validate", "specs"], "archc: error: specs: is a directory, not a spec file"),
        (["build", "efficientnet_b0", "--dims", "2", "--resolution", "8,8,8"], "resolution has 3 values for a 2D network"),
    ],
)
def test_archc_errors_exit_1(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unwritable_output_leaves_nothing(tmp_path, capsys):
    target = tmp_path / "no" / "such" / "dir" / "m.safetensors"
    assert main(["build", "efficientnet_b0", "--resolution", "32", "-o", str(target)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_validate_output():
    result = run_archc("validate", "specs/efficientnet_b0.yaml")
    assert result.returncode == 0
    assert result.stdout == "specs/efficientnet_b0.yaml: ok (efficientnet_b0, 2D, 7 stages, 16 blocks unscaled, presets b0, b1, b2, b3, b4, b5, b6, b7, b8, l2)\n"


def test_console_script_is_installed():
    import shutil
    import subprocess

    exe = shutil.which("archc")
    assert exe, "the archc console script is not on PATH; was the package installed?"
    result = subprocess.run([exe, "validate", "efficientnet_b0"], capture_output=True, text=True)
    assert result.returncode == 0 and "ok" in result.stdout


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["convert", "efficientnet_b0", "--weights", "absent.pth", "--from", "monai", "-o", "{tmp}/m.safetensors"], 1, "absent.pth: no such file"),
        (["convert", "efficientnet_b0", "--weights", "specs", "--from", "monai", "-o", "{tmp}/m.safetensors"], 1, "specs: no such file"),
        (["convert", "efficientnet_b0", "--from", "monai", "-o", "{tmp}/m.safetensors"], 2, "the following arguments are required: --weights"),
        (["export", str(TINY3D), "-o", "{tmp}"], 2, "-o: unknown export format (no extension)"),
        (["export", str(TINY3D), "-o", "{tmp}/missing/m.pt"], 1, "does not exist"),
        (["info", "specs"], 1, "specs: is a directory, not a spec file"),
        (["info", "efficientnet_b0", "--phi", "100"], 1, "phi=100.0 gives a width multiplier beta**phi = 1.1**100.0 over 1000; is phi a typo?"),
        (["info", "efficientnet_b0", "--phi", "36"], 1, "blocks; archc stops at 10,000 (is phi or a preset's depth a typo?)"),
        (["build", "efficientnet_b0", "--set", "stages[6].channels=320000", "--resolution", "32"], 1, "over the limit of 500,000,000; if that is what you want, pass --max-params"),
        (["build", "efficientnet_b0", "--max-params", "1000", "--resolution", "32"], 1, "over the limit of 1,000"),
        (["scale", "efficientnet_b0", "--phi-range", "3:1"], 2, "expected START <= STOP"),
        (["render", "efficientnet_b0", "--detail", "pixel"], 2, "invalid choice: 'pixel'"),
        (["validate"], 2, "the following arguments are required: spec"),
    ],
)
def test_cli_robustness(tmp_path, capsys, argv, code, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        assert main(argv) == code
    except SystemExit as exit:
        assert exit.code == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing half-written


@pytest.mark.parametrize("command", [["validate", "efficientnet_b0"], ["info", "efficientnet_b0"], ["render", "efficientnet_b0"]])
def test_output_streams_that_fail(command):
    """A closed or full stdout is an error (exit 1, one line), and a terminal that cannot encode "×" gets "?"."""
    import subprocess
    import sys

    line = " ".join([sys.executable, "-m", "archc", *command])
    for redirect, message in [(">&-", "standard output is closed"), ("> /dev/full", "No space left on device")]:
        result = subprocess.run(["sh", "-c", f"{line} {redirect}"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and result.stderr == f"archc: error: cannot write the output: {message}\n"
    for encoding in ("ascii", "latin-1"):
        result = subprocess.run(["sh", "-c", line], capture_output=True, timeout=120, env={**os.environ, "PYTHONIOENCODING": encoding})
        assert result.returncode == 0 and result.stderr == b""


@pytest.mark.parametrize("command", [
    ["build", "efficientnet_b0"],
    ["render", "efficientnet_b0"],
    ["scale", "efficientnet_b0"],
    ["export", str(TINY3D)],
    ["convert", "efficientnet_b0", "--weights", "w.pth", "--from", "monai"],
    ["inflate", "efficientnet_b0", "--weights", "w.pth"],
])
def test_an_empty_output_name_is_a_usage_error(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "-o", ""])
    assert info.value.code == 2
    assert "argument -o/--output: expected a file name, got ''" in capsys.readouterr().err


# --------------------------------------------------------------------------- hostile input: bounded work, one-line errors


@pytest.mark.parametrize(
    "argv, message",
    [
        (["build", "efficientnet_b0", "--seed", str(2**64)], f"argument --seed: expected an integer from 0 to {2**64 - 1}, got '{2**64}'"),
        (["build", "efficientnet_b0", "--seed", "-1"], f"argument --seed: expected an integer from 0 to {2**64 - 1}, got '-1'"),
        (["build", "efficientnet_b0", "--resolution", "1e200"], "argument --resolution: expected an integer, got '1e200'"),
        (["build", "efficientnet_b0", "--seed", "1" * 5000], "argument --seed: expected an integer from 0 to"),
    ],
)
def test_hostile_flags_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err) < 2000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["info", "efficientnet_b0", "--resolution", "1" + "0" * 200], "archc: error: resolution must be integers from 1 to 1,000,000, got 10000000000"),
        (["info", "efficientnet_b0", "--phi", "7440", "--set", "scaling.alpha=1", "--set", "scaling.gamma=1"],
         "archc: error: phi=7440.0 gives a width multiplier beta**phi = 1.1**7440.0 over 1000; is phi a typo?"),
        (["info", "efficientnet_b0", "--set", "stem.channels=" + "1" * 5000], "an integer of 5000 digits; numbers in a spec have at most 100"),
        (["validate", "efficientnet_b0", "--set", "scaling.gamma=.inf"], "scaling.gamma: got inf, expected a finite number"),
        (["validate", "efficientnet_b0", "--set", "a.b.c.d=1"], "archc: error: --set a.b.c.d=1: a: unknown key 'a'"),
    ],
)
def test_hostile_values_are_one_line_errors(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("archc: error: ") and message in err and err.count("\n") == 1


def test_seed_range_is_checked_by_load():
    with pytest.raises(archc.errors.ArgumentError, match=r"seed must be an integer from 0 to 18446744073709551615, got 18446744073709551616"):
        archc.load("efficientnet_b0", resolution=32, seed=2**64)
    assert archc.load(str(TINY3D), seed=2**64 - 1) is not None  # the largest seed torch takes


@pytest.mark.parametrize("kind", ["device", "fifo", "big_zip", "symlink_safetensors"])
def test_weight_readers_are_bounded(tmp_path, kind, monkeypatch):
    import os
    import zipfile

    import torch

    from archc import weights

    if kind == "device":
        path, message = "/dev/zero", "is not a regular file (a character device)"
    elif kind == "fifo":
        path, message = tmp_path / "w.pth", "is not a regular file (a FIFO or pipe)"
        os.mkfifo(path)
    elif kind == "symlink_safetensors":
        path, message = tmp_path / "w.safetensors", "is not a regular file (a character device)"
        path.symlink_to("/dev/zero")
    else:
        # A torch zip whose storage declares more bytes than any checkpoint archc reads (the limit is lowered here).
        monkeypatch.setattr(weights, "MAX_WEIGHTS_BYTES", 1_000_000)
        path, message = tmp_path / "w.pth", "bytes unpacked, over the limit of 1,000,000 for a weights file"
        torch.save({"w": torch.zeros(1_000_000)}, tmp_path / "plain.pth")
        with zipfile.ZipFile(tmp_path / "plain.pth") as plain, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as deflated:
            for member in plain.infolist():
                deflated.writestr(member.filename, plain.read(member))
        assert path.stat().st_size < 100_000  # 4 MB of zeros deflate to a few KB
    with pytest.raises(archc.errors.CheckpointError) as info:
        weights.read_state_dict(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


# --------------------------------------------------------------------------- scripting: --version, list, --json


def test_version():
    result = run_archc("--version")
    assert result.returncode == 0 and result.stdout == f"archc {archc.__version__}\n"
    from importlib.metadata import version

    assert version("archc") == archc.__version__  # the package metadata reads the same single source


def test_list_names_every_shipped_spec_and_preset_with_its_size():
    result = run_archc("list")
    assert result.returncode == 0, result.stderr
    rows = {tuple(line.split()[:2]): line.split() for line in result.stdout.splitlines()[1:]}
    assert {name for name, _ in rows} == set(archc.builtin_specs())
    # Published parameter counts (torchvision, timm and MONAI agree): EfficientNet B0, B7; MobileNetV2 1.0; V2-S.
    assert rows[("efficientnet_b0", "b0")][3] == f"{PRESETS['b0'][0]:,}" and rows[("efficientnet_b0", "b7")][3] == f"{PRESETS['b7'][0]:,}"
    assert rows[("mobilenet_v2", "1.0")][3] == f"{TORCHVISION_PARAMS['mobilenet_v2']:,}"
    assert rows[("efficientnetv2_s", "-")][3] == f"{TORCHVISION_PARAMS['efficientnet_v2_s']:,}"
    listed = json.loads(run_archc("list", "--json").stdout)
    assert {(e["name"], e["preset"] or "-"): e["params"] for e in listed} == {key: int(row[3].replace(",", "")) for key, row in rows.items()}


def test_info_json_is_the_table_as_data():
    result = run_archc("info", "efficientnet_b0", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["params"] == PRESETS["b0"][0] and round(data["macs"] / 1e9, 2) == GMACS["b0"]  # the published B0 figures
    assert [row["name"] for row in data["stages"]] == ["stem", "0", "1", "2", "3", "4", "5", "6", "head", "classifier"]
    assert [row["output_shape"] for row in data["stages"][1:8]] == [
        [16, 112, 112], [24, 56, 56], [40, 28, 28], [80, 14, 14], [112, 14, 14], [192, 7, 7], [320, 7, 7]]  # the paper's Table 1
    assert sum(block["params"] for block in data["blocks"]) == data["params"]
    assert data["features"][0] == {"stage": 0, "module": "stages.0.0", "channels": 16, "reduction": [2, 2]}


def test_build_and_scale_json(tmp_path):
    path = tmp_path / "m.safetensors"
    built = run_archc("build", "efficientnet_b0", "--preset", "b1", "--resolution", "64", "--json", "-o", path)
    assert built.returncode == 0, built.stderr
    data = json.loads(built.stdout)
    assert data["params"] == data["built_params"] == PRESETS["b1"][0] and data["saved_to"] == str(path) and path.exists()
    scaled = run_archc("scale", "efficientnet_b0", "--phi-range", "0:2", "--json", "--quiet")
    assert scaled.returncode == 0 and scaled.stderr == ""
    data = json.loads(scaled.stdout)
    # B0 scaled by phi 1 and 2 (2D, 3 in, 1000 classes).
    assert [p["params"] for p in data["points"]] == [PRESETS["b0"][0], PHI_PARAMS[1], PHI_PARAMS[2]]
    assert [p["resolution"] for p in data["points"]] == [[224, 224], [258, 258], [296, 296]]
    assert data["presets"]["b7"]["params"] == PRESETS["b7"][0]


def test_validate_json_lists_every_mistake():
    good = run_archc("validate", "efficientnet_b0", "--json")
    assert good.returncode == 0 and json.loads(good.stdout)["presets"] == [*(f"b{i}" for i in range(9)), "l2"]
    bad = run_archc("validate", "efficientnet_b0", "--set", "stem.channels=0", "--set", "stages[0].stride=3", "--json")
    assert bad.returncode == 1
    assert json.loads(bad.stdout)["errors"] == [
        {"file": "--set stem.channels=0", "line": None, "column": None, "path": "stem.channels", "message": "got 0, expected greater than 0"},
        {"file": "--set stages[0].stride=3", "line": None, "column": None, "path": "stages[0].stride", "message": "got 3, expected 1 or 2"},
    ]


def test_info_and_render_accept_a_saved_model(tmp_path):
    path = tmp_path / "m.safetensors"
    assert run_archc("build", "efficientnet_b0", "--phi", "-1", "--resolution", "64", "-o", path).returncode == 0
    info = run_archc("info", path, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout) == json.loads(run_archc("info", "efficientnet_b0", "--phi", "-1", "--resolution", "64", "--json").stdout)
    render = run_archc("render", path)
    assert render.returncode == 0 and render.stdout.startswith("digraph efficientnet_b0 {")
    changed = run_archc("info", path, "--phi", "1")
    assert changed.returncode == 1 and "a saved model is described as it was built; phi cannot be changed" in changed.stderr


def test_info_of_a_saved_model_does_not_import_torch(tmp_path):
    path = tmp_path / "m.safetensors"
    archc.save(archc.load("efficientnet_b0", resolution=32), path)
    code = f"import sys, archc; archc.analyze(archc.lower({str(path)!r})); print('torch' in sys.modules)"

    assert run_python(code).stdout == "False\n"


def test_every_command_that_takes_a_spec_takes_a_saved_model(tmp_path):
    path = tmp_path / "m.safetensors"
    assert run_archc("build", "efficientnet_b0", "--set", "stem.channels=24", "--resolution", "64", "-o", path).returncode == 0
    validated = run_archc("validate", path)
    assert validated.returncode == 0 and "ok (efficientnet_b0, 2D, 7 stages" in validated.stdout
    scaled = json.loads(run_archc("scale", path, "--phi-range", "0:0", "--json", "-q").stdout)
    stem24 = archc.analyze(archc.lower("efficientnet_b0", {"stem.channels": 24})).params  # the saved override holds
    assert scaled["points"][0]["params"] == stem24


@pytest.mark.parametrize("argv, extra", [
    (["scale", "efficientnet_b0", "-o", "curve.png"], "drawing the curve needs matplotlib: pip install 'archc[plots]'"),
    (["export", str(TINY3D), "-o", "m.onnx"], "ONNX export needs onnx: pip install 'archc[export]'"),
])
def test_a_missing_extra_is_named_before_any_work(argv, extra, tmp_path, monkeypatch, capsys):
    """A plain `pip install archc` lacks the extras: the command says which to install, and prints nothing else."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("matplotlib", "onnx") else real(name, *a))
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.endswith(f"{extra}\n") and list(tmp_path.glob("*.*")) == []


# Text from files reaches the terminal escaped: an ESC sequence in a checkpoint's metadata or a tensor name is shown as text.

ESC = "\x1b[2J\x1b]0;pwned\x07"


def _run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out + err


def test_an_escape_sequence_in_a_checkpoints_spec_file_is_shown_escaped(tmp_path, capsys):
    from archc import checkpoint

    model = archc.load(TINY3D, seed=0)
    broken = TINY3D.read_text().replace("channels: 8, kernel: 3", "channels: 0, kernel: 3")
    path = tmp_path / "crafted.safetensors"
    checkpoint.save(str(path), model.state_dict(), broken, f"evil{ESC}.yaml", {})
    for argv in (["info", path], ["validate", path], ["export", path, "-o", tmp_path / "m.pt"], ["render", path]):
        code, text = _run(argv, capsys)
        assert code == 1 and "\x1b" not in text and "\x07" not in text, (argv, text)
        assert "(spec saved from evil\\x1b[2J\\x1b]0;pwned\\x07.yaml)" in text, (argv, text)


def test_an_escape_sequence_in_a_tensor_name_is_shown_escaped(tmp_path, capsys):
    from safetensors.torch import save_file

    from archc import checkpoint

    model = archc.load(TINY3D, seed=0)
    state = {**model.state_dict(), f"stem.conv{ESC}": torch.zeros(1)}
    source = model.archc_source
    crafted = tmp_path / "crafted.safetensors"  # an archc checkpoint with one tensor too many
    checkpoint.save(str(crafted), state, source.spec_text, source.spec_file, source.args)
    peer = tmp_path / "peer.safetensors"  # a state_dict to import, with the same stray tensor
    save_file({k: v.contiguous() for k, v in state.items()}, str(peer))
    for argv in (["info", crafted, "--detail", "block"], ["export", crafted, "-o", tmp_path / "m.pt"],
                 ["convert", TINY3D, "--weights", peer, "-o", tmp_path / "c.safetensors"]):
        code, text = _run(argv, capsys)
        assert "\x1b" not in text and "\x07" not in text, (argv, text)
        if argv[0] != "info":  # info reads the embedded spec, not the tensors
            assert code == 1 and "stem.conv\\x1b[2J\\x1b]0;pwned\\x07" in text, (argv, text)


def test_export_shows_its_steps_on_stderr_unless_quiet(tmp_path, capsys):
    import re

    out = tmp_path / "m.pt"
    assert main(["export", str(TINY3D), "-o", str(out)]) == 0
    captured = capsys.readouterr()
    steps = [re.sub(r"^ *\d+\.\d s  ", "", line) for line in captured.err.splitlines() if re.match(r"^ *\d+\.\d s  ", line)]
    size = steps[2].rpartition("(")[2]
    assert steps == [f"building {TINY3D}", "tracing at input 1x1x32x32x32 for TorchScript (torch.jit.trace)", f"writing {out} ({size}", "done"]
    assert size.endswith(" KiB)") and captured.out == f"wrote {out}\n"
    assert main(["export", str(TINY3D), "-o", str(out), "--quiet"]) == 0
    assert not re.search(r"^ *\d+\.\d s  ", capsys.readouterr().err, re.M)


def test_the_readmes_3d_examples_draw_no_warnings(capsys):
    """The README's CT commands build networks whose kernels fit the volumes they see (checked with `info`, which
    gives `build`'s warnings from the same Plan without building)."""
    import shlex

    from conftest import ROOT

    commands = [shlex.split(line.partition("#")[0]) for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("archc build") and "--resolution" in line]
    assert len(commands) == 2
    for argv in commands:
        assert main(["info", *argv[2:]]) == 0
        assert "warning" not in capsys.readouterr().err, argv
