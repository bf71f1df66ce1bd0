import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
B0 = ROOT / "specs" / "efficientnet_b0.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def run_archc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def module_params(plan) -> int:
    """Parameters of the emitted module, counted on the meta device (no memory, no init)."""
    from archc.emit.torch import instantiate

    return sum(p.numel() for p in instantiate(plan).parameters())


@pytest.fixture(scope="session")
def b0_spec():
    import archc

    return archc.read(B0)
