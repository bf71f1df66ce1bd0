"""Deployable files from an emitted model: TorchScript, torch.export programs and ONNX, by file extension.

Each is traced with one example input at the Plan's resolution (batch 1 by default). The batch axis is dynamic in
every format. The spatial axes (a classifier ends in global average pooling and a U-Net's decoder fits each map to
its skip's size, so any size works):

- TorchScript (``.pt``): the trace records the size arithmetic, so it runs at any size, with ``padding: same`` too.
- torch.export (``.pt2``): dynamic (``torch.export.Dim``, from the total stride + 1 up) with symmetric padding. TF
  ``same`` padding specialises: its per-axis padding depends on each size's remainder modulo the stride, and
  torch.export guards on it, so those programs keep the example's spatial size and refuse others. So do U-Nets': a
  decoder level's crop to its skip's size is a guard torch.export cannot prove for every size (export ONNX or
  TorchScript for sliding-window inference at any size). Each decoder kind's record (``archc.kinds.decoders``) says
  whether torch.export keeps its spatial axes (``export_dynamic``) and why not (``export_note``).
- ONNX (``.onnx``): dynamic, for the classifier's input, for every feature map of a ``features_only`` model and for a
  U-Net's output (which has the input's size),
  with either padding (``emit.ops`` writes the "same" padding's ceiling division without negative numbers, which
  the exporter would lower as a truncating division).
"""

from __future__ import annotations

import io
import math
import os
from typing import Callable

import torch

from .errors import ArchcError, ArgumentError, EmitError, described
from .extras import require
from .files import write_atomic
from .formatting import shape as format_shape
from .formatting import size as format_size
from .kinds.decoders import decoder_kind

FORMATS = {".pt": "torchscript", ".torchscript": "torchscript", ".pt2": "export", ".onnx": "onnx"}


def export_format(path: str) -> str:
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ArgumentError(f"unknown export format {extension or '(no extension)'}; use .pt (TorchScript), .pt2 (torch.export) or .onnx", file=path)
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


def opset_range() -> tuple[int, int]:
    """The ONNX opsets the installed torch's (TorchScript-based) exporter writes, inclusive."""
    from torch.onnx import _constants

    return _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


def check_opset(opset: int | None, path: str) -> None:
    """``opset`` is None (the exporter's default) or an opset the exporter writes, for an ``.onnx`` path."""
    if opset is None:
        return
    if export_format(path) != "onnx":
        raise ArgumentError("an opset applies only to ONNX export (.onnx)", file=path)
    low, high = opset_range()
    if type(opset) is not int or not low <= opset <= high:
        raise ArgumentError(f"opset {opset!r} is not supported by this torch's ONNX exporter ({low} to {high})", file=path)


_FORMAT_NAMES = {"torchscript": "TorchScript (torch.jit.trace)", "export": "torch.export", "onnx": "ONNX (torch.onnx.export)"}


def export(model: torch.nn.Module, path: str | os.PathLike, batch: int = 1, opset: int | None = None,
           progress: Callable[[str], None] | None = None) -> None:
    """Write ``model`` (traced in eval mode) to ``path``; the format follows the extension (see the module's
    docstring for which axes stay dynamic). ``opset`` is the ONNX opset (default: the exporter's). Each module's
    training flag is restored afterwards. ``progress`` is told each step as it starts (tracing takes most of the
    time: half a minute for a large 3D network)."""
    say = progress or (lambda message: None)
    path = os.fspath(path)
    fmt = export_format(path)
    check_opset(opset, path)
    # torch.export traces with at least two: it specialises sizes 0 and 1, and the batch must stay dynamic.
    shape = _example_shape(model, max(batch, 2) if fmt == "export" else batch)
    size = format_shape(shape)
    values = math.prod(shape)
    if values > MAX_EXAMPLE_VALUES:
        raise EmitError(f"example input {size} has {values:.3g} values, over the limit of {MAX_EXAMPLE_VALUES:,} values "
                        "(MAX_EXAMPLE_VALUES); the batch axis stays dynamic, so export with batch 1 or a smaller resolution",
                        file=path)
    training = {module: module.training for module in model.modules()}
    model.eval()
    buffer = io.BytesIO()
    say(f"tracing at input {size} for {_FORMAT_NAMES[fmt]}")
    try:
        example = example_input(model, shape[0])
        with torch.no_grad():
            if fmt == "torchscript":
                torch.jit.save(torch.jit.trace(model, example), buffer)
            elif fmt == "export":
                program = torch.export.export(model, (example,), dynamic_shapes={"x": _export_dims(model.plan)})
                torch.export.save(program, buffer)
            else:
                _onnx(model, example, buffer, path, opset)
    except ArchcError:  # archc's own (a ValueError too) already say what is wrong
        raise
    except (RuntimeError, ValueError) as exc:  # torch's and the exporters' errors (theirs subclass RuntimeError)
        raise EmitError(f"cannot export at input {size}: {described(exc)}", file=path) from exc
    finally:
        for module, flag in training.items():
            module.training = flag
    say(f"writing {path} ({format_size(buffer.getbuffer().nbytes)})")
    write_atomic(path, buffer.getvalue())


AXES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _spatial_dynamic(plan, fmt: str) -> bool:
    decoder = plan.decoder is None or decoder_kind(plan.decoder.type).export_dynamic  # a U-Net's crops specialise torch.export
    return fmt == "onnx" or plan.padding != "same" and decoder  # see the module's docstring


def _export_dims(plan) -> dict:
    """torch.export's dynamic axes: the batch, and each spatial axis from total stride + 1 (torch.export
    specialises a last feature map of size 1) if the example is in that range."""
    dims = {0: torch.export.Dim("batch")}
    total = plan.features[-1].reduction if plan.features else (1,) * plan.dims
    if _spatial_dynamic(plan, "export") and all(n > r for n, r in zip(plan.resolution, total)):
        dims.update({2 + i: torch.export.Dim(name, min=r + 1) for i, (name, r) in enumerate(zip(AXES[plan.dims], total))})
    return dims


def _onnx(model, example, buffer, path, opset) -> None:
    require("onnx", "ONNX export", path)  # torch's exporter imports it
    plan = model.plan
    spatial = AXES[plan.dims] if _spatial_dynamic(plan, "onnx") else ()
    axes = {0: "batch", **{2 + i: name for i, name in enumerate(spatial)}}
    if plan.output == "features":  # one output per reduction level, each with its own sizes
        outputs = [f"features_{level}" for level in range(len(plan.features))]
        dynamic = {name: {0: "batch", **{2 + i: f"{axis}_{level}" for i, axis in enumerate(spatial)}} for level, name in enumerate(outputs)}
    else:  # class scores, or a U-Net's map at the input's size (sliding-window inference feeds it any size)
        outputs, dynamic = ["output"], {"output": {0: "batch"} if plan.output == "classifier" else axes}
    torch.onnx.export(model, (example,), buffer, input_names=["input"], output_names=outputs,
                      dynamic_axes={"input": axes, **dynamic}, opset_version=opset, dynamo=False)
