"""A dataset fingerprint from image headers: each image's voxel spacing and size, their medians, and nnU-Net v2's
target spacing (``ExperimentPlanner.determine_fullres_target_spacing``).

Only headers are read (NIfTI through nibabel, the field's reader, which maps the data lazily and never loads it
here), so a folder of a thousand scans takes seconds. Axes are given as nnU-Net gives them: NIfTI stores
x, y, z; nnU-Net (its SimpleITK and nibabel readers alike) reverses them to z, y, x, which is archc's depth,
height, width. A fourth axis (time, or channels) is not spatial and is left out. Other formats (DICOM series,
NRRD, MetaImage) need SimpleITK or pydicom, large readers a header fingerprint does not justify; convert them to
NIfTI first (``dcm2niix``, SimpleITK's ``WriteImage``).
"""

from __future__ import annotations

import glob
import math
import os
import statistics
from dataclasses import dataclass

from .errors import PlanningError, concat_problems, described
from .extras import require

SUFFIXES = (".nii", ".nii.gz")
ANISOTROPY_THRESHOLD = 3  # nnunetv2/configuration.py ANISO_THRESHOLD
MAX_IMAGES = 100_000


@dataclass(frozen=True)
class Image:
    path: str
    shape: tuple[int, ...]  # voxels, depth (z) first
    spacing: tuple[float, ...]  # mm, the same order


@dataclass(frozen=True)
class Fingerprint:
    images: tuple[Image, ...]
    problems: tuple[str, ...]  # "file: what is wrong", one per file that could not be read
    median_spacing: tuple[float, ...]
    median_shape: tuple[float, ...]
    target_spacing: tuple[float, ...]  # nnU-Net's: the median, except on a strongly anisotropic axis
    target_reason: str
    shape: tuple[int, ...]  # the median shape once every image is resampled to the target spacing (nnU-Net's new_median_shape)

    def to_dict(self) -> dict:
        return {"images": len(self.images), "problems": list(self.problems), "median_spacing": list(self.median_spacing),
                "median_shape": list(self.median_shape), "target_spacing": list(self.target_spacing), "target_reason": self.target_reason,
                "shape": list(self.shape)}


def image_files(pattern: str) -> list[str]:
    """The NIfTI files a glob pattern (``scans/*.nii.gz``, ``**`` for subfolders) or a folder names, sorted."""
    if os.path.isdir(pattern):
        found = [os.path.join(pattern, name) for name in os.listdir(pattern) if name.endswith(SUFFIXES)]
    else:
        found = [path for path in glob.glob(pattern, recursive=True) if os.path.isfile(path)]
    if not found:
        raise PlanningError(f"no image files match {pattern!r} (a glob pattern like 'scans/*.nii.gz', or a folder of .nii / .nii.gz files)")
    if len(found) > MAX_IMAGES:
        raise PlanningError(f"{pattern!r} matches {len(found):,} files; a fingerprint reads at most {MAX_IMAGES:,}")
    return sorted(found)


def read_header(path: str) -> Image:
    """One image's spatial shape and spacing from its header alone; a PlanningError naming the file otherwise."""
    require("nibabel", "reading image headers", path, PlanningError)
    import nibabel

    try:
        header = nibabel.load(path).header
        shape, zooms = header.get_data_shape(), header.get_zooms()
    except Exception as exc:  # nibabel raises many kinds on a foreign or broken file; each is this file's problem
        raise PlanningError(f"not a readable NIfTI image ({described(exc)})", file=path) from None
    spatial = min(3, len(shape))
    size, spacing = tuple(int(n) for n in shape[:spatial])[::-1], tuple(float(z) for z in zooms[:spatial])[::-1]
    if not size or any(n < 1 for n in size):
        raise PlanningError(f"its header gives the shape {list(shape)}; expected 1 to 3 spatial axes of at least one voxel", file=path)
    if any(not math.isfinite(s) or s <= 0 for s in spacing):
        raise PlanningError(f"its header gives the voxel spacing {list(spacing)} mm; expected positive numbers", file=path)
    return Image(path, size, spacing)


def fingerprint(pattern_or_paths, *, strict: bool = True) -> Fingerprint:
    """Read every header; ``strict``: a file that cannot be read is an error naming it (after reading all the
    others, so every bad file is named at once); otherwise it is listed in ``problems`` and left out."""
    paths = image_files(pattern_or_paths) if isinstance(pattern_or_paths, (str, os.PathLike)) else [os.fspath(p) for p in pattern_or_paths]
    images, problems = [], []
    for path in paths:
        try:
            images.append(read_header(path))
        except PlanningError as exc:
            problems.append(str(exc))
    if problems and (strict or not images):
        raise PlanningError(f"{len(problems)} of {len(paths)} files could not be read: {concat_problems(problems)}")
    dims = {len(image.shape) for image in images}
    if len(dims) > 1:
        by = {d: next(i.path for i in images if len(i.shape) == d) for d in sorted(dims)}
        raise PlanningError("the images differ in spatial axes: " + "; ".join(f"{d} in {path}" for d, path in by.items()))
    spacings = [image.spacing for image in images]
    shapes = [image.shape for image in images]
    median_spacing = _median(spacings)
    median_shape = _median(shapes)
    target, reason = target_spacing(spacings, shapes)
    # nnU-Net's compute_new_shape for each image at the target spacing, then the median
    resampled = [tuple(round(s / t * n) for s, t, n in zip(spacing, target, shape)) for spacing, shape in zip(spacings, shapes)]
    shape = tuple(max(1, math.floor(v + 0.5)) for v in _median(resampled))
    return Fingerprint(tuple(images), tuple(problems), median_spacing, median_shape, target, reason, shape)


def target_spacing(spacings, shapes, threshold: float = ANISOTROPY_THRESHOLD) -> tuple[tuple[float, ...], str]:
    """nnU-Net v2's target spacing: the median spacing per axis; but where one axis is both over ``threshold`` times
    coarser than the others and has under 1/``threshold`` of their voxels (ACDC: 10 x 1.5 x 1.5 mm), that axis takes
    the 10th percentile of its spacings (not finer than the other axes), so the thin-slice cases are not thrown away."""
    target = list(_percentile(spacings, 50))
    size = _percentile(shapes, 50)
    if len(target) < 2:
        return tuple(target), "the median spacing"
    worst = max(range(len(target)), key=lambda a: target[a])  # numpy argmax: the first of equal ones
    others = [a for a in range(len(target)) if a != worst]
    other_spacing, other_size = max(target[a] for a in others), min(size[a] for a in others)
    if not (target[worst] > threshold * other_spacing and size[worst] * threshold < other_size):
        return tuple(target), "the median spacing"
    low = _percentile([(s[worst],) for s in spacings], 10)[0]
    if low < other_spacing:
        low = max(other_spacing, low) + 1e-5
    median = target[worst]
    target[worst] = low
    return tuple(target), (f"the median spacing, but axis {worst} ({median:.3g} mm, over {threshold}x the others and with under 1/{threshold} "
                           f"of their voxels) takes the 10th percentile of its spacings, {low:.3g} mm (nnU-Net's rule for strongly anisotropic data)")


def _median(rows) -> tuple[float, ...]:
    return tuple(float(statistics.median(column)) for column in zip(*rows))


def _percentile(rows, q: float) -> tuple[float, ...]:
    """numpy.percentile's default (linear interpolation between the closest ranks), per column."""
    out = []
    for column in zip(*rows):
        values = sorted(column)
        position = (len(values) - 1) * q / 100
        low = math.floor(position)
        high = min(low + 1, len(values) - 1)
        out.append(float(values[low] + (values[high] - values[low]) * (position - low)))
    return tuple(out)
