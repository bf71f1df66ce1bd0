"""Layer kinds: the records of ``archc.ir.LAYERS`` (a conv unit, an SE, a layer scale). What is pure data is on the
ir record itself (``name``, ``folds``); what a consumer does with a layer (build its modules, count it, draw it,
compare it) is one entry per layer class in that consumer's table, made by :func:`table`, which checks at import
that the table covers ``ir.LAYERS`` exactly. The tables: emit/blocks.py ``_MODULES``, analysis.py ``_COSTS``,
diagram.py ``_LABELS``, weights.py ``_COMPUTES``."""

from __future__ import annotations

from typing import Callable, TypeVar

from .. import ir

T = TypeVar("T", bound=Callable)


def table(consumer: str, entries: dict[type, T]) -> dict[type, T]:
    """``entries`` (layer class -> what ``consumer`` does with such a layer), checked against ``ir.LAYERS``: a missing
    or unknown layer kind fails here, at the consumer's import, naming the class."""
    missing = [kind.__name__ for kind in ir.LAYERS if kind not in entries]
    unknown = [kind.__name__ for kind in entries if kind not in ir.LAYERS]
    if missing or unknown:
        raise TypeError(f"{consumer}: " + "; ".join(
            ([f"no entry for the layer kind {', '.join(missing)}"] if missing else []) + ([f"{', '.join(unknown)} is not in ir.LAYERS"] if unknown else [])))
    return entries
