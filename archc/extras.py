"""Optional dependencies: which extra of ``pip install 'archc[...]'`` provides each, so every "needs X" message
names it, and commands can check before doing any work."""

from __future__ import annotations

import importlib.util

from .errors import ArchcError, EmitError

EXTRAS = {"matplotlib": "plots", "onnx": "export", "onnxruntime": "export", "monai": "monai", "nibabel": "plan",
          "distributed": "dask", "ray": "ray", "submitit": "slurm"}


def require(package: str, purpose: str, file: str | None = None, error: type[ArchcError] = EmitError) -> None:
    """Raise ``error`` naming the extra when ``package`` is not installed (without importing it)."""
    if importlib.util.find_spec(package) is None:
        raise error(f"{purpose} needs {package}: pip install 'archc[{EXTRAS[package]}]'", file=file)
