"""One base error, one subclass per pipeline stage, and one for bad arguments; each carries where it failed.

A stage's class is raised only for that stage's failures (a spec that does not validate, a Plan that cannot be
emitted, a file that cannot be read back); a value given to a function or a command that it does not accept
(a seed, a weights source, a count) is an :class:`ArgumentError`, whichever stage checks it.

The string form is the message a user sees, in the compiler style
``specs/b0.yaml:14: stages[3].stride: got 3, expected 1 or 2``.
"""

from __future__ import annotations

__all__ = [
    "ArchcError", "ArgumentError", "CheckpointError", "EmitError", "LoweringError", "PlanningError", "ScalingError", "SpecError",
    "concat_problems", "described", "format_path", "shown",
]


class ArchcError(ValueError):
    """Base of every error archc raises on purpose. The CLI prints it without a traceback.

    A ``ValueError``: every one says that a value given to archc (an argument, a spec, a file's contents) is not
    one it accepts, and code written for torch, timm or MONAI catches bad arguments as ``ValueError``."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, path: str | None = None,
                 column: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.column = column  # given where the column is what to look at (a YAML syntax error)
        self.path = path
        self.also: tuple[ArchcError, ...] = ()  # further mistakes found in the same pass

    @property
    def location(self) -> str:
        """``file:line`` or ``file:line:column`` (or whichever part is known), empty when nothing is."""
        if self.file and self.line:
            return f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")
        return self.file or (f"line {self.line}" if self.line else "")

    def __str__(self) -> str:
        parts = [p for p in (self.location, self.path) if p]
        return "\n".join([": ".join(parts + [self.message])] + [str(e) for e in self.also])


def format_path(path: tuple) -> str:
    """``("stages", 3, "stride")`` -> ``stages[3].stride``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error quotes what it got, never a page of it."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def described(exc: BaseException) -> str:
    """``TypeError: the first line of its message``: a foreign exception (torch's, a user's evaluator's) in one line."""
    lines = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {lines[0]}" if lines else "")


def concat_problems(problems: list[str], maximum: int = 12) -> str:
    """"a; b; c; and 9 more": the first ``maximum`` of a list of problems, so a message stays readable."""
    shown = "; ".join(problems[:maximum])
    return shown + (f"; and {len(problems) - maximum} more" if len(problems) > maximum else "")


class SpecError(ArchcError):
    """The YAML cannot be read, or what it says is not a valid spec."""


class ArgumentError(ArchcError, ValueError):
    """A value given to a function or a command is not one it accepts (its type or range), before any stage runs
    on it: a seed, a count, an option's name, a field of a build request."""


class LoweringError(ArchcError):
    """The spec is valid on its own but cannot be resolved into a Plan with these arguments."""


class ScalingError(LoweringError):
    """The scaling request is impossible for this spec: phi and preset together, an unknown preset, a bad multiplier.
    Scaling is part of lowering, so it is a :class:`LoweringError`."""


class PlanningError(ArchcError):
    """Planning from data is impossible: a bad spacing or shape, an image whose header cannot be read."""


class EmitError(ArchcError):
    """A Plan cannot be turned into an output (a module, a diagram, a file)."""


class CheckpointError(ArchcError):
    """A saved model cannot be read back: missing, truncated, corrupted, or not an archc file."""
