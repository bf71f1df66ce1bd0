import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
B0 = ROOT / "specs" / "efficientnet_b0.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def needs_dot() -> pytest.MarkDecorator:
    """Skip a test of image diagrams where Graphviz's `dot` is not installed, unless ARCHC_REQUIRE_DOT=1
    (set by .ci/run, which installs it): there a missing `dot` fails the test instead of hiding it."""
    missing = shutil.which("dot") is None and os.environ.get("ARCHC_REQUIRE_DOT") != "1"
    return pytest.mark.skipif(missing, reason="Graphviz's `dot` is not installed (apt-get install graphviz)")


def run_archc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``: a file that must never be loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def write_evil_pickle(path, marker, wrap=lambda payload: payload) -> None:
    """A pickle crafted to run code when loaded (``wrap`` places the payload, e.g. inside a state_dict)."""
    import pickle

    Path(path).write_bytes(pickle.dumps(wrap(_Exploit(marker))))


def module_params(plan) -> int:
    """Parameters of the emitted module, counted on the meta device (no memory, no init)."""
    from archc.emit.torch import instantiate

    return sum(p.numel() for p in instantiate(plan).parameters())


@pytest.fixture(scope="session")
def b0_spec():
    import archc

    return archc.read(B0)
