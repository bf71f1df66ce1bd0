"""Deployable files from an emitted model: TorchScript, torch.export programs and ONNX, by file extension.

Each is traced with one example input at the Plan's resolution (batch 1 by default). With ``padding: same``
a trace fixes the padding to that input's size; symmetric padding (the default) traces size-independently.
"""

from __future__ import annotations

import io
import os

import torch

from .errors import EmitError
from .files import write_atomic

FORMATS = {".pt": "torchscript", ".torchscript": "torchscript", ".pt2": "export", ".onnx": "onnx"}


def export_format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise EmitError(f"unknown export format {extension or '(no extension)'}; use .pt (TorchScript), .pt2 (torch.export) or .onnx", file=path)
    return FORMATS[extension]


def example_input(model: torch.nn.Module, batch: int = 1) -> torch.Tensor:
    plan = model.plan
    return torch.randn(batch, plan.in_channels, *plan.resolution, generator=torch.Generator().manual_seed(0))


def export(model: torch.nn.Module, path: str | os.PathLike, batch: int = 1) -> None:
    """Write ``model`` (in eval mode) to ``path``; the format follows the extension."""
    path = os.fspath(path)
    fmt = export_format(path)
    model.eval()
    example = example_input(model, batch)
    buffer = io.BytesIO()
    with torch.no_grad():
        if fmt == "torchscript":
            torch.jit.save(torch.jit.trace(model, example), buffer)
        elif fmt == "export":
            # The batch stays dynamic; torch specialises sizes 0 and 1, so trace with at least two.
            example = example_input(model, max(batch, 2))
            program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
            torch.export.save(program, buffer)
        else:
            _onnx(model, example, buffer, path)
    write_atomic(path, buffer.getvalue())


def _onnx(model, example, buffer, path) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise EmitError("ONNX export needs the onnx package: pip install onnx", file=path) from None
    torch.onnx.export(model, (example,), buffer, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
