"""One schema holds every default: the study's experiments and a run's run.yaml share `$defs/settings`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from samrepro import schema
from samrepro.engine import config as run_config
from samrepro.study.config import experiment_spec, load_study, validate_schema
from samrepro.study.plan import build_run_config

ROOT = Path(__file__).resolve().parents[1]
STUDY = {
    "study": "s",
    "experiments": {
        "e": {"dataset": {"name": "digits"}, "model": {"name": "small_cnn"}, "setups": ["SGD", "SAM"]}
    },
}
RUN = {
    "setup": "SAM",
    "rho": 0.05,
    "dataset": {"name": "digits"},
    "model": {"name": "small_cnn"},
    "schedule": {"epochs": 3},
}


def settings() -> dict:
    return schema.load_schema()["$defs"]["settings"]["properties"]


def test_a_hand_written_run_gets_the_study_defaults():
    exp = validate_schema(STUDY)["experiments"]["e"]
    run = run_config.validate(RUN)
    for key in settings():
        expected = {**exp[key], "epochs": 3} if key == "schedule" else exp[key]
        assert run[key] == expected or key == "channels_last", key


def test_a_planned_run_is_its_experiment_settings():
    cfg = validate_schema(STUDY)
    spec = experiment_spec(cfg, "e")
    run = run_config.validate(build_run_config(spec, "SAM", 0, "tune", rho=0.1))
    assert all(run[k] == spec[k] for k in settings() if k not in ("schedule", "channels_last"))
    assert run["rho"] == 0.1 and run["schedule"]["epochs"] == spec["epochs"]


def test_overrides_hold_only_what_was_written():
    study = yaml.safe_load(yaml.safe_dump(STUDY))
    study["experiments"]["e"]["optim"] = {"lr": 0.2}
    study["experiments"]["e"]["setup_overrides"] = {"SAM": {"optim": {"momentum": 0.5}}}
    exp = validate_schema(study)["experiments"]["e"]
    assert exp["setup_overrides"]["SAM"] == {"optim": {"momentum": 0.5}}
    run = build_run_config(experiment_spec(validate_schema(study), "e"), "SAM", 0, "tune", rho=0.1)
    assert run["optim"]["lr"] == 0.2 and run["optim"]["momentum"] == 0.5


def test_a_new_run_key_is_one_schema_entry(tmp_path, monkeypatch):
    raw = yaml.safe_load(schema.schema_path().read_text())
    raw["$defs"]["settings"]["properties"]["grad_clip"] = {"type": "number", "minimum": 0, "default": 0}
    path = tmp_path / "config.schema.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("SAMREPRO_SCHEMA", str(path))
    spec = experiment_spec(validate_schema(STUDY), "e")
    assert spec["grad_clip"] == 0
    run = run_config.validate(build_run_config(spec, "SGD", 0, "final"))
    assert run["grad_clip"] == 0.0 and run_config.validate(RUN)["grad_clip"] == 0.0


def test_run_errors_and_warnings_name_the_key(capsys):
    with pytest.raises(ValueError, match="invalid run config at key 'schedule': 'epochs' is a required"):
        run_config.validate({**RUN, "schedule": {}})
    with pytest.raises(ValueError, match="key 'optim.momentum': 1.5 is greater than the maximum of 1"):
        run_config.validate({**RUN, "optim": {"momentum": 1.5}})
    with pytest.raises(ValueError, match="schedule.warmup_epochs=3.0 is invalid: must be < schedule.epochs"):
        run_config.validate({**RUN, "schedule": {"epochs": 3, "warmup_epochs": 3}})
    run = run_config.validate({**RUN, "bookkeeping": 1, "optim": {"lr": 1}, "channels_last": True})
    assert "run config key 'bookkeeping' is not used" in capsys.readouterr().err
    assert (
        run["optim"]["lr"] == 1.0 and isinstance(run["optim"]["lr"], float) and run["channels_last"] == "true"
    )
    assert run_config.validate(run) == run  # run.resolved.yaml validates to itself (evaluate re-reads it)


def test_a_study_keeps_its_epochs_outside_the_schedule():
    study = yaml.safe_load(yaml.safe_dump(STUDY))
    study["experiments"]["e"]["schedule"] = {"epochs": 5}
    with pytest.raises(ValueError, match="experiments.e.schedule.*experiments.<name>.epochs"):
        validate_schema(study)
    study["experiments"]["e"]["schedule"] = {"epochz": 5}
    with pytest.raises(ValueError, match=r"experiments.e.schedule': Additional properties .*'epochz'"):
        validate_schema(study)


def _default_tables(tree: ast.AST, keys: set[str]):
    """Dict literals that map >= 3 schema keys to constants: a second table of defaults."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and all(isinstance(v, ast.Constant) for v in node.values):
            named = {k.value for k in node.keys if isinstance(k, ast.Constant)} & keys
            if len(named) >= 3:
                yield node.lineno, sorted(named)


def _defaulted_keys(node) -> set[str]:
    out = set()
    if isinstance(node, dict):
        for key, sub in (node.get("properties") or {}).items():
            if isinstance(sub, dict) and "default" in sub and not isinstance(sub["default"], dict):
                out.add(key)
        for sub in node.values():
            out |= _defaulted_keys(sub)
    elif isinstance(node, list):
        for sub in node:
            out |= _defaulted_keys(sub)
    return out


def test_no_second_table_of_defaults():
    keys = _defaulted_keys(schema.load_schema())
    assert {"lr", "workers", "probe_batch_size", "samples"} <= keys
    found = [
        f"{p.relative_to(ROOT)}:{line} {names}"
        for p in sorted((ROOT / "pipeline_src").rglob("*.py"))
        for line, names in _default_tables(ast.parse(p.read_text()), keys)
    ]
    assert not found, "defaults outside the schema: " + "; ".join(found)
    old = ast.parse('DEFAULTS = {"optim": {"lr": 0.1, "momentum": 0.9, "nesterov": False}}')
    assert list(_default_tables(old, keys)) == [(1, ["lr", "momentum", "nesterov"])]


def test_the_shipped_studies_plan_with_every_key_given():
    cfg = load_study([ROOT / "config" / "config.yaml"])
    run = build_run_config(experiment_spec(cfg, "digits"), "SGD", 0, "final")
    assert set(settings()) <= set(run)


def test_the_package_finds_the_one_schema_file():
    # a link in the checkout (a copy in an installed wheel): the Snakefile and the package read one file
    assert schema.schema_path().resolve() == (ROOT / "workflow" / "schemas" / "config.schema.yaml").resolve()
