"""Deployable files from an emitted model: TorchScript, torch.export programs and ONNX, by file extension.

Each is traced with one example input at the Plan's resolution (batch 1 by default). With ``padding: same``
a trace fixes the padding to that input's size; symmetric padding (the default) traces size-independently.
"""

from __future__ import annotations

import io
import math
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


# The example input is traced through the whole network, whose activations are several times its size; the
# batch axis stays dynamic in every format, so nothing needs a large example. 2**25 values is 128 MiB of float32
# (a 320^3 volume, or a batch of 220 RGB images at 224^2).
MAX_EXAMPLE_VALUES = 2**25


def _example_shape(model: torch.nn.Module, batch: int) -> tuple[int, ...]:
    plan = model.plan
    return (batch, plan.in_channels, *plan.resolution)


def example_input(model: torch.nn.Module, batch: int = 1) -> torch.Tensor:
    return torch.randn(*_example_shape(model, batch), generator=torch.Generator().manual_seed(0))


def export(model: torch.nn.Module, path: str | os.PathLike, batch: int = 1) -> None:
    """Write ``model`` (traced in eval mode) to ``path``; the format follows the extension. Each module's training
    flag is restored afterwards."""
    path = os.fspath(path)
    fmt = export_format(path)
    # torch.export traces with at least two: it specialises sizes 0 and 1, and the batch must stay dynamic.
    shape = _example_shape(model, max(batch, 2) if fmt == "export" else batch)
    size = "x".join(map(str, shape))
    values = math.prod(shape)
    if values > MAX_EXAMPLE_VALUES:
        raise EmitError(f"example input {size} has {values:.3g} values, over the limit of {MAX_EXAMPLE_VALUES:,} values "
                        "(MAX_EXAMPLE_VALUES); the batch axis stays dynamic, so export with batch 1 or a smaller resolution",
                        file=path)
    training = {module: module.training for module in model.modules()}
    model.eval()
    buffer = io.BytesIO()
    try:
        example = example_input(model, shape[0])
        with torch.no_grad():
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, example), buffer)
            elif fmt == "export":
                program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
                torch.export.save(program, buffer)
            else:
                _onnx(model, example, buffer, path)
    except (RuntimeError, ValueError) as exc:  # torch's and the exporters' errors (theirs subclass RuntimeError)
        cause = str(exc).strip().splitlines()
        raise EmitError(f"cannot export at input {size}: {type(exc).__name__}{': ' + cause[0] if cause else ''}", file=path) from exc
    finally:
        for module, flag in training.items():
            module.training = flag
    write_atomic(path, buffer.getvalue())


def _onnx(model, example, buffer, path) -> None:
    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
    except ImportError:
        raise EmitError("ONNX export needs the onnx package: pip install 'archc[export]'", file=path) from None
    torch.onnx.export(model, (example,), buffer, input_names=["input"], output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, dynamo=False)
