"""A dataset fingerprint from NIfTI headers (archc/fingerprint.py): real scans nibabel ships, files written here,
nnU-Net's target-spacing rule, and unreadable files named while the rest are read."""

import ast
import os
import types

import numpy as np
import pytest

import archc
from archc.cli import main

nibabel = pytest.importorskip("nibabel", reason="archc[plan] reads NIfTI headers with nibabel")
from archc.fingerprint import fingerprint, read_header, target_spacing  # noqa: E402

SHIPPED = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data")


def nnunet_target_spacing():
    """nnU-Net v2's ExperimentPlanner.determine_fullres_target_spacing, compiled from its own source (its module imports
    nnU-Net's full dependency set; the method needs numpy alone)."""
    from test_planning import nnunet_topology

    nnunet_topology()  # skips (or fails in CI) without nnunetv2
    import nnunetv2

    path = os.path.join(os.path.dirname(nnunetv2.__file__), "experiment_planning", "experiment_planners", "default_experiment_planner.py")
    tree = ast.parse(open(path).read())
    method = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "determine_fullres_target_spacing")
    method.returns = None
    namespace = {"np": np}
    exec(compile(ast.Module([method], []), path, "exec"), namespace)

    def run(spacings, shapes):
        planner = types.SimpleNamespace(overwrite_target_spacing=None, anisotropy_threshold=3,
                                        dataset_fingerprint={"spacings": spacings, "shapes_after_crop": shapes})
        return tuple(float(v) for v in namespace["determine_fullres_target_spacing"](planner))

    return run


def write_scan(path, shape_xyz, spacing_xyz, data=None):
    """A small NIfTI file as a scanner export would be: x, y, z on disk, the spacing in the affine."""
    image = nibabel.Nifti1Image(np.zeros(shape_xyz, dtype=np.uint8) if data is None else data, np.diag([*spacing_xyz, 1.0]))
    nibabel.save(image, str(path))


def test_real_scans_shipped_with_nibabel():
    """anatomical.nii: 33x41x25 voxels of 2 mm on disk (x, y, z); functional.nii: 17x21x3 of 4 x 4 x 8 mm over 20 time
    points (the fourth axis is time, not space). archc's order is nnU-Net's, z first."""
    anatomical = read_header(os.path.join(SHIPPED, "anatomical.nii"))
    assert (anatomical.shape, anatomical.spacing) == ((25, 41, 33), (2.0, 2.0, 2.0))
    functional = read_header(os.path.join(SHIPPED, "functional.nii"))
    assert (functional.shape, functional.spacing) == ((3, 21, 17), (8.0, 4.0, 4.0))
    found = fingerprint([os.path.join(SHIPPED, name) for name in ("anatomical.nii", "example4d.nii.gz", "functional.nii")])
    assert found.median_shape == (24.0, 41.0, 33.0)
    assert found.median_spacing == pytest.approx((2.2, 2.0, 2.0))
    assert found.target_reason == "the median spacing"
    # each resampled to 2.2 x 2 x 2 mm (nnU-Net's compute_new_shape), then the median: by hand 23, 42, 34
    assert found.shape == (23, 42, 34)


def test_a_non_image_in_the_shipped_folder_is_named_and_the_rest_are_read():
    """nibabel's test data holds a CIFTI-2 connectivity file (row_major.dconn.nii): not a volume."""
    with pytest.raises(archc.PlanningError) as error:
        fingerprint(os.path.join(SHIPPED, "*.nii*"))
    assert str(error.value).startswith("1 of 8 files could not be read: ")
    assert "row_major.dconn.nii: not a readable NIfTI image" in str(error.value)
    found = fingerprint(os.path.join(SHIPPED, "*.nii*"), strict=False)
    assert len(found.images) == 7 and len(found.problems) == 1


def test_written_thin_slice_ct_and_corrupt_files(tmp_path):
    for i, slices in enumerate((30, 32, 34, 40)):
        write_scan(tmp_path / f"case{i}.nii.gz", (512, 512, slices), (0.7, 0.7, 5.0))
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not gzip at all")
    (tmp_path / "notes.nii").write_text("reader's notes, not an image\n")
    with pytest.raises(archc.PlanningError) as error:
        fingerprint(str(tmp_path))
    message = str(error.value)
    assert message.startswith("2 of 6 files could not be read: ")
    assert f"{tmp_path / 'broken.nii.gz'}: not a readable NIfTI image" in message and f"{tmp_path / 'notes.nii'}: not a readable NIfTI image" in message
    for bad in ("broken.nii.gz", "notes.nii"):
        os.remove(tmp_path / bad)
    found = fingerprint(str(tmp_path / "*.nii.gz"))
    assert found.median_spacing == pytest.approx((5.0, 0.7, 0.7)) and found.median_shape == (33.0, 512.0, 512.0)
    # 5 mm is over 3x 0.7 mm, but 33 slices are not under a third of 512: the median stands
    assert found.target_spacing == pytest.approx((5.0, 0.7, 0.7)) and found.shape == (33, 512, 512)


@pytest.mark.parametrize("spacings, shapes", [
    ([(10, 1.5, 1.5), (10, 1.5, 1.5), (5, 1.4, 1.4), (6, 1.6, 1.6), (10, 1.25, 1.25)], [(10, 220, 220), (9, 256, 256), (18, 200, 200), (15, 230, 230), (10, 240, 240)]),
    ([(5, 0.7, 0.7)] * 3 + [(1.5, 0.7, 0.7)], [(40, 512, 512)] * 4),
    ([(5, 0.7, 0.7)] * 3 + [(0.5, 0.7, 0.7)], [(30, 512, 512)] * 4),
    ([(1, 1, 1), (1.2, 1.2, 1.2)], [(128, 128, 128), (100, 100, 100)]),
    ([(0.8, 0.8, 4.0), (0.8, 0.8, 4.0), (0.8, 0.8, 2.0)], [(400, 400, 20), (420, 410, 30), (380, 390, 60)]),
    ([(3.0, 0.5), (3.0, 0.6)], [(40, 512), (30, 500)]),
])
def test_target_spacing_equals_nnunet(spacings, shapes):
    """ACDC-like (10 x 1.5 x 1.5 mm, about 10 slices): the coarse axis takes its 10th percentile; a thin outlier under the
    in-plane spacing is lifted to it (+1e-5); isotropic and mildly anisotropic data keep the median."""
    ours, _ = target_spacing(spacings, shapes)
    assert ours == pytest.approx(nnunet_target_spacing()(spacings, shapes), abs=1e-12)


def test_acdc_like_target_spacing_by_hand():
    spacings = [(10, 1.5, 1.5), (10, 1.5, 1.5), (5, 1.4, 1.4), (6, 1.6, 1.6), (10, 1.25, 1.25)]
    target, reason = target_spacing(spacings, [(10, 220, 220), (9, 256, 256), (18, 200, 200), (15, 230, 230), (10, 240, 240)])
    assert target == pytest.approx((5.4, 1.5, 1.5))  # numpy's percentile of [5, 6, 10, 10, 10] at 10: 5 + 0.4 * 1
    assert reason.startswith("the median spacing, but axis 0 (10 mm, over 3x the others and with under 1/3 of their voxels)")


def test_cli_plans_from_a_folder_of_scans(tmp_path, capsys):
    for i, slices in enumerate((30, 32, 34)):
        write_scan(tmp_path / f"ct{i}.nii.gz", (256, 256, slices), (0.7, 0.7, 5.0))
    out = tmp_path / "planned.yaml"
    assert main(["plan", "efficientnet3d_b0", "--images", str(tmp_path / "*.nii.gz"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "note: from the headers of 3 images: median spacing 5x0.7x0.7 mm, median shape 32x256x256" in printed
    spec = archc.read(str(out))
    assert spec.resolution == (32, 256, 256) and spec.stem.stride == (1, 2, 2)
    assert main(["plan", "efficientnet3d_b0", "--images", str(tmp_path / "none*.nii"), "-o", str(out)]) == 1
    assert "no image files match" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "efficientnet3d_b0", "--images", str(tmp_path), "--spacing", "1,1,1"])
    assert exit_.value.code == 2
