"""Saved models: safetensors files whose metadata carries the spec text and the build arguments.

safetensors is a flat header plus raw tensor bytes, so reading one never runs code (a pickle can).
safetensors has no checksum of its own; we store a SHA-256 of the tensor bytes and of our metadata, so
a changed byte anywhere in the data or in the embedded spec is refused instead of loading silently.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass

from .errors import CheckpointError
from .files import read_bytes, write_atomic

FORMAT = "archc-checkpoint/1"


@dataclass(frozen=True)
class Checkpoint:
    spec_text: str  # the YAML the model was compiled from
    spec_file: str  # where that YAML came from, for messages
    build_args: dict  # phi, preset, dims, in_channels, num_classes, resolution
    tensors: dict  # state_dict


def save(path: str, state_dict: dict, spec_text: str, spec_file: str, build_args: dict) -> None:
    """Write ``state_dict`` and how to rebuild its module to ``path``, atomically."""
    from safetensors.torch import save as to_bytes

    tensors = {key: value.detach().contiguous().cpu() for key, value in state_dict.items()}
    metadata = {"format": FORMAT, "spec": spec_text, "spec_file": spec_file, "build": json.dumps(build_args, sort_keys=True)}
    # The data section does not depend on the metadata, so a first pass gives the bytes to digest.
    data = _split(to_bytes(tensors, metadata=metadata), path)[1]
    metadata["sha256"] = _digest(data, metadata)
    write_atomic(path, to_bytes(tensors, metadata=metadata))


def load(path: str) -> Checkpoint:
    """Read and verify a file written by :func:`save`."""
    from safetensors import SafetensorError
    from safetensors.torch import load as from_bytes

    blob = read_bytes(path, CheckpointError, "checkpoint")
    header, data = _split(blob, path)
    metadata = header.get("__metadata__") or {}
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"not an archc checkpoint (its metadata has no format {FORMAT!r})", file=path)
    missing = [key for key in ("spec", "spec_file", "build", "sha256") if key not in metadata]
    if missing:
        raise CheckpointError(f"archc metadata lacks {', '.join(missing)}", file=path)
    if _digest(data, metadata) != metadata["sha256"]:
        raise CheckpointError("checksum mismatch: the file was changed or corrupted after it was written", file=path)
    try:
        tensors = from_bytes(blob)
        build_args = json.loads(metadata["build"])
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"corrupted: {exc}", file=path) from None
    return Checkpoint(metadata["spec"], metadata["spec_file"], build_args, tensors)


def _split(blob: bytes, path: str) -> tuple[dict, bytes]:
    """(header, data section) of a safetensors file: an 8-byte little-endian length, JSON, then raw bytes."""
    if len(blob) < 8:
        raise CheckpointError(f"truncated: {len(blob)} bytes is not a safetensors file", file=path)
    (size,) = struct.unpack("<Q", blob[:8])
    if size > len(blob) - 8:
        raise CheckpointError("truncated or not a safetensors file (header runs past the end)", file=path)
    try:
        header = json.loads(blob[8 : 8 + size])
    except (UnicodeDecodeError, ValueError):
        raise CheckpointError("not a safetensors file (its header is not JSON)", file=path) from None
    if not isinstance(header, dict):
        raise CheckpointError("not a safetensors file (its header is not a JSON object)", file=path)
    return header, blob[8 + size :]


def _digest(data: bytes, metadata: dict) -> str:
    digest = hashlib.sha256(data)
    for key in ("spec", "spec_file", "build"):
        digest.update(b"\0" + metadata.get(key, "").encode())
    return digest.hexdigest()
