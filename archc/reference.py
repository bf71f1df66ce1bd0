"""The spec's JSON Schema (for editors) and its Markdown reference (docs/spec.md), both from the pydantic models."""

from __future__ import annotations

import json

from pydantic import BaseModel

from .scaling import MAX_MULTIPLIER
from .spec import MAX_PRESETS, MAX_SIZE, SE, Decoder, Head, Norm, Preset, Scaling, Spec, Stage, Stem, StemLayer, StemPool
from .yaml_source import MAX_BYTES, MAX_DEPTH, MAX_DIGITS, MAX_NODES

_MODELS = (Spec, Stem, StemLayer, StemPool, Head, Norm, SE, Stage, Scaling, Preset, Decoder)


def json_schema() -> dict:
    """JSON Schema of a spec file, including the compact stage-table form pydantic does not see."""
    schema = Spec.model_json_schema()
    stages = schema["properties"]["stages"]
    table = {
        "type": "object",
        "description": "the paper's Table 1 form: column names, then one list of values per stage",
        "properties": {
            "columns": {"type": "array", "items": {"enum": list(Stage.model_fields)}, "uniqueItems": True},
            "rows": {"type": "array", "items": {"type": "array"}, "minItems": 1},
        },
        "required": ["columns", "rows"],
        "additionalProperties": False,
    }
    table["allOf"] = _typed_rows(schema["$defs"]["Stage"]["properties"])
    rows = {key: value for key, value in stages.items() if key != "description"}
    schema["properties"]["stages"] = {"description": stages.get("description", ""), "anyOf": [rows, table]}
    # a spec gives its stage table or RegNet's generator of one, which reading the spec turns into the table
    schema["required"] = [key for key in schema["required"] if key != "stages"]
    schema["oneOf"] = [{"required": ["stages"]}, {"required": ["regnet"]}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _typed_rows(fields: dict) -> list[dict]:
    """Conditions that type each cell of ``rows`` by the column it stands in: "if column i is stride, the i-th
    value of every row is a stride", and "with n columns, every row has n values". JSON Schema cannot look up
    another array by position, so the pairs are written out (fields x positions: a few hundred small rules)."""

    def at(i: int, schema: dict) -> dict:
        return {"prefixItems": [{}] * i + [schema]}

    rules = [
        {"if": {"properties": {"columns": at(i, {"const": name})}, "required": ["columns"]},
         "then": {"properties": {"rows": {"items": at(i, field)}}}}
        for i in range(len(fields)) for name, field in fields.items()
    ]
    rules += [
        {"if": {"properties": {"columns": {"minItems": n, "maxItems": n}}, "required": ["columns"]},
         "then": {"properties": {"rows": {"items": {"minItems": n, "maxItems": n}}}}}
        for n in range(1, len(fields) + 1)
    ]
    return rules


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def markdown() -> str:
    """The field reference: one table per section of a spec."""
    schema = json_schema()
    definitions = schema.get("$defs", {})
    out = [
        "# Spec reference",
        "",
        "Every field of an archc spec, generated from the models in `archc/spec.py`",
        "(regenerate: `archc schema --markdown > docs/spec.md`; the JSON Schema for editors: `archc schema > docs/spec.schema.json`).",
        "Unknown keys are errors. A kernel, stride or resolution is one number for every spatial axis, or a list with one",
        "number per axis (`kernel: [1, 3, 3]`).",
        "",
        "Per-axis lists follow the tensor's spatial axes, as PyTorch lays them out (N, C, then space): (length) in 1D,",
        "(height, width) in 2D, (depth, height, width) in 3D. A CT volume of 64 slices of 224×224 is `resolution: [64, 224, 224]`,",
        "and `stride: [1, 2, 2]` keeps the slices while halving each slice (MONAI's transforms often speak of H, W, D: here the",
        "depth comes first).",
        "",
        "Everything is numbered from 0, as the spec's own lists are: `stages[3]` in an error or a `--set`, the module",
        "`stages.3.1` (stage 3, block 1) in a state_dict, row `3` of `archc build` and `archc info`, \"stage 3\" in warnings and",
        "diagrams, and `feature_info`.",
        "",
        "Values are read as YAML 1.2 (its core schema), not PyYAML's YAML 1.1: `040` is forty (not octal 32), `0o17` octal and",
        "`0x1F` hex; `1e-5` is a number (YAML 1.1 needed `1.0e-5`); `3:44` is text (not 224, base 60) and fails where a number",
        "is expected; the booleans are only `true` and `false` (`yes`, `no`, `on`, `off` are text). Integers have at most",
        f"{MAX_DIGITS} digits, numbers must be finite (`.inf`, `.nan` and `1e400` are refused), channels and sizes are at most",
        f"{MAX_SIZE:,}, multipliers at most {MAX_MULTIPLIER:g}, and a spec defines at most {MAX_PRESETS} presets. A spec file is",
        f"at most {MAX_BYTES:,} bytes, nested at most {MAX_DEPTH} levels, and expands (aliases and merge keys included) to at",
        f"most {MAX_NODES:,} values.",
        "",
        "null (`null` or `~` in YAML, `--set PATH=null`, `None` in `overrides=` of the Python API: all the same) is accepted",
        "only by a field whose type lists it, and means what that field's description says after \"null\": usually the same",
        "as leaving the key out, except a row's `se` (null: no SE, like `none` and `0`; left out: the network's `se.ratio`)",
        "and a uib row's `kernel` (null: no middle depthwise conv; left out: 3). Any other field refuses null.",
        "",
    ]
    for model in _MODELS:
        section = "spec (top level)" if model is Spec else _section(model)
        out += [f"## {section}", "", (model.__doc__ or "").strip(), "", "| field | type | default | meaning |", "|---|---|---|---|"]
        properties = (schema if model is Spec else definitions[model.__name__])["properties"]
        for name, field in model.model_fields.items():
            default = "required" if field.is_required() else _yaml(field.default)
            described = properties[name]
            out.append(f"| `{name}` | {_type(described, definitions)} | {default} | {field.description or ''} |")
        out.append("")
    return "\n".join(out)


def _section(model: type[BaseModel]) -> str:
    names = {Stem: "stem", StemLayer: "stem.layers[] (one conv)", StemPool: "stem.pool", Head: "head", Norm: "norm", SE: "se",
             Stage: "stages[] (one row)", Scaling: "scaling", Preset: "scaling.presets.NAME",
             Decoder: "decoder"}
    return names[model]


def _type(schema: dict, definitions: dict) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[1].lower()}` section"
    if "anyOf" in schema:
        return " or ".join(_type(option, definitions) for option in schema["anyOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), definitions)}" if "items" in schema else "list"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"mapping of name to {_type(extra, definitions)}" if isinstance(extra, dict) else "mapping"
    bounds = [f"{op} {schema[key]}" for key, op in (("exclusiveMinimum", ">"), ("minimum", "≥"), ("exclusiveMaximum", "<"), ("maximum", "≤")) if key in schema]
    return {"integer": "integer", "number": "number", "string": "text", "boolean": "true/false", "null": "null"}.get(kind, "any") + (
        f" ({', '.join(bounds)})" if bounds else ""
    )


def _yaml(value: object) -> str:
    if isinstance(value, BaseModel):
        return "see section"
    if isinstance(value, tuple):
        value = value[0] if len(value) == 1 else list(value)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if value == {}:
        return "{}"
    return f"`{value}`"
