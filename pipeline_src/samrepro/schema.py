"""The one schema (workflow/schemas/config.schema.yaml): where it is, and its name enums from the catalog.

The schema file holds every key, type and default; the names of setups, datasets and backbones live only
in `samrepro.catalog` and are filled in here as the `enum` of `$defs/setup_name`, `$defs/dataset_name` and
`$defs/model_name`. Torch-free.
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


def repo_root() -> Path:
    """The checkout holding `workflow/` (the package is installed editable from `pipeline_src/`)."""
    return Path(__file__).resolve().parents[2]


def schema_path() -> Path:
    """The one schema file, also used by the Snakefile; $SAMREPRO_SCHEMA overrides (non-editable installs)."""
    env = os.environ.get("SAMREPRO_SCHEMA")
    path = Path(env) if env else repo_root() / "workflow" / "schemas" / "config.schema.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"config schema not found at {path}: run from a samrepro checkout or set SAMREPRO_SCHEMA"
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
