"""Kinds as records: each member of one of archc's closed sets is one frozen record in one place, and every
consumer looks it up there instead of testing names. A registry is checked when it is built, at import, so a
broken or missing entry fails then, naming its kind, not when some spec first uses it. These modules import
only :mod:`archc.ir`, :mod:`archc.errors` and each other (no torch, no spec).

- :mod:`archc.kinds.blocks`: a block kind (``block: mbconv``): spec field rules, lowering recipe, title, colour,
  peers' key names. A new block kind is one ``BlockKind`` entry there (and regenerated docs/spec.md and
  docs/spec.schema.json).
- :mod:`archc.kinds.norms`: a norm (``norm.type``): label, parameter count, the torch class per dims and its
  arguments. A new norm is one ``NormKind`` entry there.
- :mod:`archc.kinds.layers`: a layer kind (a record of ``archc.ir.LAYERS``: conv unit, SE, layer scale). Its
  pure data lives on the ir record (``name``, ``folds``); each consumer keeps one table keyed by layer class,
  checked at import by :func:`archc.kinds.layers.table` against ``ir.LAYERS``. A new layer kind is its ir record
  (added to ``ir.LAYERS``) plus one entry in each table, which the import check names when missing:
  ``archc/emit/blocks.py`` ``_MODULES`` (its modules), ``archc/analysis.py`` ``_COSTS`` (its figures),
  ``archc/diagram.py`` ``_LABELS`` (its node), ``archc/weights.py`` ``_COMPUTES`` (what must agree between weights
  and a spec).
- :mod:`archc.kinds.decoders`: a decoder kind (``decoder.type``): its lowering, module, analysis, drawing and page,
  named and imported when first used. A new decoder kind is one ``DecoderKind`` record there (and its module).
- :mod:`archc.kinds.sources`: a weights source (``--from``): key layout, conventions, peer layout. A new source is
  one ``WeightsSource`` record there (and a key-layout function in :mod:`archc.weights` if none fits).
"""
