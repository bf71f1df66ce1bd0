"""Writing outputs atomically: a failure part-way leaves no partial file and keeps any old one intact."""

from __future__ import annotations

import os
import stat
import tempfile

from .errors import ArchcError, EmitError


def read_bytes(path: str | os.PathLike, error: type[ArchcError], kind: str) -> bytes:
    """The file's bytes, or ``error`` saying plainly why not (``kind`` names what the file should have been)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise error("no such file", file=name) from None
    except IsADirectoryError:
        raise error(f"is a directory, not a {kind}", file=name) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=name) from None


def check_destination(path: str | os.PathLike) -> str:
    """The folder ``path`` would be written in; refuses a path that is a folder or whose folder is missing."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise EmitError("is a directory; give a file name", file=path)
    if not os.path.isdir(directory):
        raise EmitError(f"cannot write: directory {directory} does not exist", file=path)
    return directory


def write_atomic(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it over ``path``."""
    path = os.fspath(path)
    directory = check_destination(path)
    payload = data.encode() if isinstance(data, str) else data
    _sweep_abandoned(directory)
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f"{_TEMP_PREFIX}{os.getpid()}-", suffix=_TEMP_SUFFIX)
    except OSError as exc:
        raise EmitError(f"cannot write: {exc.strerror}", file=path) from None
    try:
        # mkstemp makes 0600: keep the mode of the file we replace, else give the mode open() would.
        os.chmod(tmp, _existing_mode(path) if os.path.exists(path) else 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError):
            raise EmitError(f"cannot write: {exc.strerror}", file=path) from None
        raise


_TEMP_PREFIX, _TEMP_SUFFIX = ".archc-", ".tmp"  # temporaries are named .archc-<pid>-<random>.tmp


def _existing_mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _sweep_abandoned(directory: str) -> None:
    """Remove temporaries of ours whose writer is gone (killed with SIGKILL, or the machine stopped): a
    writer that is still running keeps its own."""
    try:
        names = [n for n in os.listdir(directory) if n.startswith(_TEMP_PREFIX) and n.endswith(_TEMP_SUFFIX)]
    except OSError:
        return
    for name in names:
        pid = name[len(_TEMP_PREFIX):].partition("-")[0]
        if pid.isdigit() and not _running(int(pid)):
            try:
                os.unlink(os.path.join(directory, name))
            except OSError:
                pass


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process: not ours to judge
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
