"""Outputs are written whole or not at all, keep the mode of what they replace, and leave no temporaries."""

import os
import signal
import stat

from conftest import TINY3D, run_python

from archc.files import write_atomic


def test_overwriting_keeps_the_mode(tmp_path):
    target = tmp_path / "private.safetensors"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600


def test_a_new_file_gets_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "new.dot", "digraph {}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.dot").st_mode) == 0o640


def test_abandoned_temporaries_are_swept(tmp_path):
    """A writer killed with SIGKILL leaves its temporary; the next write beside it removes it, but never the
    temporary of a writer that is still running."""
    dead = tmp_path / ".archc-999999999-abcd.tmp"  # above any pid the kernel hands out
    alive = tmp_path / f".archc-{os.getpid()}-efgh.tmp"
    foreign = tmp_path / ".other-1-x.tmp"
    for path in (dead, alive, foreign):
        path.write_bytes(b"x" * 10)
    write_atomic(tmp_path / "out.dot", "digraph {}")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name, "out.dot"])


SIGTERM_DURING_WRITE = """
import os, signal, sys
from archc import cli
real_fsync = os.fsync
def fsync_then_terminated(fd):
    real_fsync(fd)
    os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, in the middle of writing
os.fsync = fsync_then_terminated
sys.exit(cli.main(["build", sys.argv[1], "--seed", "0", "-o", sys.argv[2]]))
"""


def test_sigterm_while_saving_leaves_nothing(tmp_path):
    target = tmp_path / "m.safetensors"
    result = run_python(SIGTERM_DURING_WRITE, TINY3D, target)
    assert result.returncode == 128 + signal.SIGTERM, result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
