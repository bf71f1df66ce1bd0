"""Saved models: safetensors files whose metadata carries the spec text and the build request.

safetensors is a flat header (JSON: each tensor's dtype, shape and byte range, plus string metadata) followed
by raw tensor bytes, so reading one never runs code (a pickle can). We write and read the format ourselves
(it is a page of code and needs no numpy), in one canonical form: keys sorted, no spaces, tensors in name
order. That gives the same bytes for the same model, and lets the SHA-256 stored in the metadata cover every
byte that decides what is loaded: the whole header but the digest itself (names, dtypes, shapes, offsets,
spec, build arguments) and all the data. A reader accepts only the canonical form, so a changed byte
anywhere is refused. The files stay ordinary safetensors files that any safetensors reader opens.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import math
import struct
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import CheckpointError, shown
from .files import read_bytes, write_atomic
from .formatting import printable

__all__ = ["FORMAT", "Checkpoint", "NotArchcCheckpoint", "dtype_name", "load", "save", "serialize"]

if TYPE_CHECKING:
    import torch

FORMAT = "archc-checkpoint/2"
_METADATA_KEYS = ("build", "format", "spec", "spec_file")  # with "sha256", and nothing else


@dataclass(frozen=True)
class Checkpoint:
    spec_text: str  # the YAML the model was compiled from
    spec_file: str  # where that YAML came from, for messages
    build_args: dict  # the build request's fields that were set (archc.request.BuildRequest.to_dict; an earlier archc wrote fewer)
    tensors: dict  # state_dict


def dtype_name(dtype: torch.dtype) -> str:
    """safetensors' name of a torch dtype (``torch.float32`` -> ``F32``)."""
    return _dtype_codes().get(dtype, str(dtype).removeprefix("torch."))


def save(path: str, state_dict: dict, spec_text: str, spec_file: str, build_args: dict) -> None:
    """Write ``state_dict`` and how to rebuild its module to ``path``, atomically."""
    metadata = {"format": FORMAT, "spec": spec_text, "spec_file": spec_file, "build": json.dumps(build_args, sort_keys=True)}
    write_atomic(path, serialize(state_dict, metadata))


def serialize(state_dict: dict, metadata: dict[str, str]) -> bytes:
    """The canonical safetensors bytes of ``state_dict`` with ``metadata`` and its digest."""
    if sys.byteorder != "little":  # safetensors stores little-endian; a big-endian host would need byte swaps
        raise CheckpointError("saving needs a little-endian machine")
    codes = _dtype_codes()
    table, chunks, offset = {}, [], 0
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        if tensor.dtype not in codes:
            raise CheckpointError(f"tensor {name} has dtype {tensor.dtype}, which a checkpoint cannot hold")
        raw = ctypes.string_at(tensor.data_ptr(), tensor.numel() * tensor.element_size()) if tensor.numel() else b""
        table[name] = {"dtype": codes[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    data = b"".join(chunks)
    header = {**table, "__metadata__": dict(metadata)}
    header["__metadata__"]["sha256"] = _digest(header, data)
    text = _canonical(header)
    text += b" " * (-len(text) % 8)  # safetensors pads the header so the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + data


def load(path: str, tensors: bool = True) -> Checkpoint:
    """Read and verify a file written by :func:`save`; with ``tensors=False`` only what describes the model
    (verified all the same), without importing torch."""
    blob = read_bytes(path, CheckpointError, "checkpoint")
    header, data = _split(blob, path)
    metadata = header.get("__metadata__")
    found = metadata.get("format") if isinstance(metadata, dict) else None
    if isinstance(found, str) and found.startswith("archc-checkpoint/") and found != FORMAT:
        raise CheckpointError(f"written in the format {shown(found)}, this archc reads {FORMAT!r}: build it again from its spec", file=path)
    if found != FORMAT:
        raise NotArchcCheckpoint(f"not an archc checkpoint (its metadata has no format {FORMAT!r})", file=path)
    if sorted(metadata) != sorted(_METADATA_KEYS + ("sha256",)) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"archc metadata must hold exactly the strings {', '.join(_METADATA_KEYS)} and sha256", file=path)
    if _digest(header, data) != metadata["sha256"]:
        raise CheckpointError("checksum mismatch: the file was changed or corrupted after it was written", file=path)
    build_args = _json(metadata["build"], "its build arguments", path)
    if not isinstance(build_args, dict):
        raise CheckpointError(f"its build arguments are not a mapping: {shown(metadata['build'])}", file=path)
    return Checkpoint(metadata["spec"], metadata["spec_file"], build_args, _tensors(header, data, path) if tensors else {})


class NotArchcCheckpoint(CheckpointError):
    """A readable safetensors file that archc did not write (a peer's weights, say)."""


def _split(blob: bytes, path: str) -> tuple[dict, bytes]:
    """(header, data section) of a canonical safetensors file: an 8-byte little-endian length, JSON, then raw bytes."""
    if len(blob) < 8:
        raise CheckpointError(f"truncated: {len(blob)} bytes is not a safetensors file", file=path)
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise CheckpointError("truncated or not a safetensors file (header runs past the end)", file=path)
    text = blob[8 : 8 + size]
    try:
        header = _json(text.decode("utf-8"), "its header", path)
    except UnicodeDecodeError:
        raise CheckpointError("not a safetensors file (its header is not UTF-8 JSON)", file=path) from None
    if not isinstance(header, dict):
        raise CheckpointError("not a safetensors file (its header is not a JSON object)", file=path)
    if isinstance(header.get("__metadata__"), dict) and header["__metadata__"].get("format") == FORMAT:
        # Only the canonical form is ours: any other spelling of the same header is a changed file.
        if _canonical(header) != text.rstrip(b" "):
            raise CheckpointError("checksum mismatch: the header was changed after the file was written", file=path)
    return header, blob[8 + size :]


def _tensors(header: dict, data: bytes, path: str) -> dict:
    """The tensors the header's table describes, each checked against the data before it is allocated."""
    import torch

    dtypes = {code: dtype for dtype, code in _dtype_codes().items()}
    tensors, end = {}, 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        where = f"tensor {printable(name)}"
        if not (isinstance(entry, dict) and sorted(entry) == ["data_offsets", "dtype", "shape"]):
            raise CheckpointError(f"{where}: an entry needs exactly dtype, shape and data_offsets", file=path)
        dtype, shape, offsets = dtypes.get(entry["dtype"]), entry["shape"], entry["data_offsets"]
        if dtype is None:
            raise CheckpointError(f"{where}: unknown dtype {shown(entry['dtype'])}", file=path)
        if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
            raise CheckpointError(f"{where}: shape {shown(shape)} is not a list of sizes", file=path)
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)):
            raise CheckpointError(f"{where}: data_offsets {shown(offsets)} are not two byte positions", file=path)
        start, stop = offsets
        size = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
        if start != end or stop - start != size or stop > len(data):
            raise CheckpointError(f"{where}: bytes {start}..{stop} do not hold a {entry['dtype']} tensor of shape {shape}", file=path)
        end = stop
        buffer = bytearray(data[start:stop])  # writable and owned, so the tensor is too
        tensors[name] = torch.frombuffer(buffer, dtype=dtype).reshape(shape) if size else torch.empty(shape, dtype=dtype)
    if end != len(data):
        raise CheckpointError(f"{len(data) - end} bytes after the last tensor", file=path)
    return tensors


def _digest(header: dict, data: bytes) -> str:
    """SHA-256 of the canonical header without its digest, then the data."""
    metadata = {key: value for key, value in header["__metadata__"].items() if key != "sha256"}
    digest = hashlib.sha256(_canonical({**header, "__metadata__": metadata}))
    digest.update(data)
    return digest.hexdigest()


def _canonical(header: dict) -> bytes:
    return json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _json(text: str, what: str, path: str):
    """Parsed JSON that refuses duplicate keys and absurd nesting with a CheckpointError."""

    def unique(pairs):
        keys = [key for key, _ in pairs]
        if len(set(keys)) != len(keys):
            raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
        return dict(pairs)

    try:
        return json.loads(text, object_pairs_hook=unique, parse_constant=_refuse_number, parse_float=_finite)
    except RecursionError:
        raise CheckpointError(f"corrupted: {what} are nested too deeply", file=path) from None
    except ValueError as exc:
        raise CheckpointError(f"corrupted: {what} are not valid JSON ({exc})", file=path) from None


def _refuse_number(text: str):
    raise ValueError(f"{shown(text)} is not a finite number")


def _finite(text: str) -> float:
    value = float(text)
    return value if math.isfinite(value) else _refuse_number(text)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _dtype_codes() -> dict:
    import torch

    return {
        torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
        torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
        torch.bool: "BOOL", torch.complex64: "C64",
    }
