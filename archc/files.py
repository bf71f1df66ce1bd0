"""Writing outputs atomically: a failure part-way leaves no partial file and keeps any old one intact."""

from __future__ import annotations

import os
import stat
import tempfile

from .errors import ArchcError, EmitError

MAX_READ = 2 * 1024**3 + 64 * 1024**2  # the largest file archc reads: 500M float32 parameters (api.MAX_PARAMS) and a header


def read_bytes(path: str | os.PathLike, error: type[ArchcError], kind: str, limit: int = MAX_READ) -> bytes:
    """The file's bytes, or ``error`` saying plainly why not (``kind`` names what the file should have been).

    At most ``limit`` bytes are read; a larger file is refused after reading ``limit + 1``. Only regular files
    are read: a device (``/dev/zero``), a FIFO or a pipe would be read without end, or block on open (so the
    file is opened non-blocking and checked before any read)."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error("no such file", file=name) from None
    except IsADirectoryError:
        raise error(f"is a directory, not a {kind}", file=name) from None
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=name) from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise error(f"is a directory, not a {kind}", file=name)
        _refuse_unless_regular(mode, error, kind, name)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read: {exc.strerror}", file=name) from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"larger than {limit:,} bytes, the most a {kind} may be", file=name)
    return data


def check_regular_file(path: str | os.PathLike, error: type[ArchcError], kind: str, limit: int = MAX_READ) -> None:
    """Refuse, before a library opens it, a path that is missing, not a regular file, or over ``limit`` bytes."""
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except OSError:
        raise error("no such file", file=name) from None
    if stat.S_ISDIR(info.st_mode):
        raise error("no such file", file=name)
    _refuse_unless_regular(info.st_mode, error, kind, name)
    if info.st_size > limit:
        raise error(f"larger than {limit:,} bytes, the most a {kind} may be", file=name)


def _refuse_unless_regular(mode: int, error: type[ArchcError], kind: str, name: str) -> None:
    if not stat.S_ISREG(mode):
        raise error(f"is not a regular file ({_file_type(mode)}); a {kind} is a file on disk", file=name)


def _file_type(mode: int) -> str:
    for test, name in ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO or pipe"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


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
