"""samrepro.catalog is the only list of setup, dataset and backbone names; everything else reads it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from samrepro import catalog
from samrepro.schema import load_schema, name_enums, schema_path
from samrepro.study.config import check_study, validate_schema

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "pipeline_src" / "samrepro"
KINDS = {"setup": set(catalog.SETUPS), "dataset": set(catalog.DATASETS), "model": set(catalog.MODELS)}


def test_every_catalog_name_has_its_implementation():
    from samrepro.data.registry import DATASETS, _load_builtin
    from samrepro.models import MODELS
    from samrepro.optim.setups import SETUPS

    _load_builtin()
    assert SETUPS is catalog.SETUPS
    assert set(DATASETS) == set(catalog.DATASETS)
    assert set(MODELS) == set(catalog.MODELS)
    assert all(s.baseline is None or s.baseline in catalog.SETUPS for s in catalog.SETUPS.values())


def test_the_schema_enums_come_from_the_catalog():
    schema = load_schema()
    for name, names in name_enums().items():
        assert schema["$defs"][name]["enum"] == names
    raw = yaml.safe_load(schema_path().read_text())
    assert not [p for p, names in _enums(raw) if len(names & set().union(*KINDS.values())) >= 2]


def _enums(node, path="schema"):
    if isinstance(node, dict):
        if isinstance(node.get("enum"), list):
            yield path, {str(v) for v in node["enum"]}
        for key, sub in node.items():
            yield from _enums(sub, f"{path}.{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from _enums(sub, f"{path}[{i}]")


def _name_lists(tree: ast.AST):
    """Literal collections of strings (list/tuple/set, or dict of string -> string): a table of names.
    `__all__` lists class names (ArcFace, AdaFace), not setups."""
    exports = {
        id(n.value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
    }
    for node in ast.walk(tree):
        if id(node) in exports:
            continue
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            items = node.elts
        elif isinstance(node, ast.Dict) and all(_is_str(v) for v in node.values):
            items = node.keys
        else:
            continue
        if items and all(_is_str(e) for e in items):
            yield node.lineno, {e.value for e in items}


def _is_str(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def test_no_second_list_of_names():
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "catalog.py":
            continue
        for line, strings in _name_lists(ast.parse(path.read_text())):
            found += [
                f"{path.relative_to(ROOT)}:{line} lists {kind}s"
                for kind, names in KINDS.items()
                if len(strings & names) >= 2
            ]
    for path in [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            quoted = set(re.findall(r"""["']([A-Za-z0-9_-]+)["']""", line))
            found += [
                f"{path.relative_to(ROOT)}:{i} lists {kind}s"
                for kind, names in KINDS.items()
                if len(quoted & names) >= 2
            ]
    assert not found, "name lists outside samrepro/catalog.py: " + "; ".join(found)


def test_the_scanner_sees_a_name_list():
    tree = ast.parse('FACE = frozenset({"face_rec", "ms1mv2"})\nTASK = {"SGD": "classification", "SAM": "c"}')
    assert sorted(sorted(s) for _, s in _name_lists(tree)) == [["SAM", "SGD"], ["face_rec", "ms1mv2"]]


def test_study_reads_tasks_from_the_catalog(monkeypatch):
    study = {
        "study": "s",
        "experiments": {
            "e": {"dataset": {"name": "ms1mv2"}, "model": {"name": "iresnet50"}, "setups": ["SAM"]}
        },
    }
    with pytest.raises(ValueError, match="'SAM' is a classification setup but dataset 'ms1mv2' is a face"):
        check_study(validate_schema(study))
    study["experiments"]["e"]["dataset"]["name"] = "new_faces"
    with pytest.raises(ValueError, match="dataset.name': 'new_faces' is not one of"):
        validate_schema(study)
    monkeypatch.setitem(catalog.DATASETS, "new_faces", "face")  # a new face dataset: one catalog entry
    with pytest.raises(ValueError, match="'SAM' is a classification setup but dataset 'new_faces' is a face"):
        check_study(validate_schema(study))
    study["experiments"]["e"]["setups"] = ["ArcFace", "FlatFace-SAM-ArcFace"]
    check_study(validate_schema(study))


def test_registries_refuse_names_missing_from_the_catalog():
    from samrepro.data.registry import DatasetSpec, register

    def nothing(*args, **kwargs):
        raise AssertionError

    with pytest.raises(ValueError, match="'cifar11' is not in samrepro/catalog.py"):
        register(DatasetSpec("cifar11", nothing, nothing, "nowhere"))
    with pytest.raises(TypeError, match="the task is no argument"):
        DatasetSpec("cifar10", "classification", nothing, nothing, "nowhere")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="setup='SAMM' is unknown.*catalog.py"):
        catalog.get_setup("SAMM")
