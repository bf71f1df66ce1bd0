"""archc: a declarative architecture-spec compiler for PyTorch.

    YAML --parse--> Spec --lower--> Plan --emit--> nn.Module | diagram | summary | checkpoint

Importing archc does not import torch; only the verbs that build modules do.
"""

from .analysis import analyze as analyze
from .api import build as build
from .api import builtin_specs as builtin_specs
from .api import export as export
from .api import load as load
from .api import lower as lower
from .api import plan as plan
from .api import read as read
from .api import render as render
from .api import restore as restore
from .api import save as save
from .api import validate as validate
from .errors import ArchcError as ArchcError
from .errors import ArgumentError as ArgumentError
from .errors import CheckpointError as CheckpointError
from .errors import EmitError as EmitError
from .errors import LoweringError as LoweringError
from .errors import PlanningError as PlanningError
from .errors import ScalingError as ScalingError
from .errors import SpecError as SpecError
from .ir import Plan as Plan
from .request import BuildRequest as BuildRequest
from .spec import Spec as Spec

__version__ = "0.1.0"

__all__ = [
    "analyze", "build", "builtin_specs", "export", "load", "lower", "plan", "read", "render", "restore", "save", "validate",
    "ArchcError", "ArgumentError", "CheckpointError", "EmitError", "LoweringError", "PlanningError", "ScalingError", "SpecError",
    "BuildRequest", "Plan", "Spec",
]
