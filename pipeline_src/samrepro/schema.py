"""The one schema (workflow/schemas/config.schema.yaml): where it is, its name enums, and the one validator.

The schema file holds every key, type and default, of the study config and of a run's run.yaml
(`$defs/run`, sharing `$defs/settings` with the study's experiments); the names of setups, datasets and
backbones live only in `samrepro.catalog` and are filled in here as the `enum` of `$defs/setup_name`,
`$defs/dataset_name` and `$defs/model_name`. `validate` fills defaults and raises one line naming the key.
Torch-free.
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import yaml

from samrepro import catalog


def name_enums() -> dict[str, list[str]]:
    """$defs entry -> the catalog names it enumerates."""
    return {
        "setup_name": list(catalog.SETUPS),
        "dataset_name": list(catalog.DATASETS),
        "model_name": list(catalog.MODELS),
    }


def schema_path() -> Path:
    """The one schema file, workflow/schemas/config.schema.yaml (the Snakefile reads it there). The package
    holds it as `samrepro/config.schema.yaml`: a link in a checkout, a copy in an installed wheel, so
    `samrepro train` finds it anywhere; $SAMREPRO_SCHEMA overrides both."""
    env = os.environ.get("SAMREPRO_SCHEMA")
    path = Path(env) if env else Path(__file__).with_name("config.schema.yaml")
    if not path.is_file():
        raise FileNotFoundError(
            f"config schema not found at {path}: reinstall samrepro (pip install -e .) or set SAMREPRO_SCHEMA"
        )
    return path


@functools.cache
def _load(path: Path, mtime_ns: int) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def load_schema() -> dict[str, Any]:
    """The schema with the catalog's name enums filled in (a fresh copy: callers may not share it)."""
    path = schema_path()
    schema = copy.deepcopy(_load(path, path.stat().st_mtime_ns))
    for name, names in name_enums().items():
        schema["$defs"][name]["enum"] = names
    return schema


def validate(
    instance: dict[str, Any], definition: str | None = None, what: str = "study config"
) -> dict[str, Any]:
    """A copy of `instance` validated against the schema (or its `$defs/<definition>`) with defaults filled.

    Raises ValueError naming the offending key, the schema's message and the fix (the key's description).
    """
    import jsonschema

    root = load_schema()
    target = {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{definition}"}
    instance = copy.deepcopy(instance)
    errors = list(_validator_class()(target if definition else root).iter_errors(instance))
    # A failing part of an allOf leaves its keys "unevaluated": report the cause, not that echo of it.
    error = jsonschema.exceptions.best_match(
        [e for e in errors if e.validator != "unevaluatedProperties"] or errors
    )
    if error is not None:
        raise ValueError(f"invalid {what} at key '{_error_key(error)}': {_message(error, root)}")
    return instance


@functools.cache
def _validator_class() -> Any:
    """Draft 2020-12 that also fills each key's `default` (as `snakemake.utils.validate` does)."""
    from jsonschema import Draft202012Validator, validators

    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001 - jsonschema's signature
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(Draft202012Validator, {"properties": set_defaults})


def _error_key(error: Any) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
    return path or "<top level>"


def _message(error: Any, root: dict[str, Any]) -> str:
    """The schema's message, and what is expected: the valid keys for a typo'd key, else the description."""
    sub = error.schema if isinstance(error.schema, dict) else {}
    message = error.message.replace("Unevaluated properties", "Additional properties")  # same meaning
    if error.validator in ("additionalProperties", "unevaluatedProperties") and property_names(sub, root):
        hint = "one of " + ", ".join(sorted(property_names(sub, root)))
    else:
        hint = sub.get("description", "") if error.absolute_path else ""  # not the whole schema's blurb
    return message + (f" (expected: {hint})" if hint else "")


def resolve(node: Any, root: dict[str, Any]) -> Any:
    """Follow local `$ref`s ("#/$defs/a/properties/b") to the node they name."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = root
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def property_names(node: Any, root: dict[str, Any]) -> set[str]:
    """The keys an object schema declares, its own and those of the schemas it includes (allOf, $ref)."""
    node = resolve(node, root)
    if not isinstance(node, dict):
        return set()
    names = set(node.get("properties", {}))
    for sub in node.get("allOf", []):
        names |= property_names(sub, root)
    return names


def normalize_numbers(instance: Any, node: Any, root: dict[str, Any]) -> None:
    """In place: ints become floats where the schema says `number`, integral floats ints where it says
    `integer` (so `lr: 1` and `lr: 1.0` are one config with one hash)."""
    node = resolve(node, root)
    if not isinstance(node, dict) or not isinstance(instance, dict):
        return
    for sub in node.get("allOf", []):
        normalize_numbers(instance, sub, root)
    for key, sub in node.get("properties", {}).items():
        if key in instance:
            instance[key] = _as_schema_number(instance[key], resolve(sub, root))
            normalize_numbers(instance[key], sub, root)


def _as_schema_number(value: Any, node: Any) -> Any:
    types = node.get("type", []) if isinstance(node, dict) else []
    types = [types] if isinstance(types, str) else types
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if "number" in types and "integer" not in types:
        return float(value)
    if "integer" in types and isinstance(value, float) and value.is_integer():
        return int(value)
    return value
