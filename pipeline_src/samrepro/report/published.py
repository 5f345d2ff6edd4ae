"""What the papers publish and claim: numbers in paper_results.yaml, claims in config/claims.yaml.

Torch- and pandas-free: the workflow checks the claims against the study while it builds the DAG, before any
job runs. The claims file is validated by workflow/schemas/claims.schema.yaml (defaults filled in).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from samrepro.errors import read_yaml

CLAIM_METRICS = {
    "classification": ("test_top1", "test_top5"),
    "face": ("verification_mean", "lfw", "cfp_fp", "cfp_ff", "agedb_30", "cplfw", "calfw", "vgg2_fp"),
}


def paper_value(
    paper: Mapping[str, Any], ref: Mapping[str, Any], setup: str
) -> tuple[float, float | None] | None:
    """(mean, std or None) the paper publishes for `setup` under `ref` (schema $defs/paper_ref), in accuracy %."""
    node: Any = paper
    for part in ref["path"].split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(
                f"paper reference path '{ref['path']}': '{part}' is not in paper_results; point the study's "
                "paper path at an entry of paper_results.yaml or add the entry there"
            )
        node = node[part]
    if not isinstance(node, Mapping) or setup not in node:
        return None
    value = node[setup]
    if ref.get("field"):
        if not isinstance(value, Mapping) or ref["field"] not in value:
            return None
        value = value[ref["field"]]
    if isinstance(value, (list, tuple)) and ref.get("index") is not None:
        mean, std = float(value[ref["index"]]), None
    elif isinstance(value, (list, tuple)):
        mean, std = float(value[0]), (float(value[1]) if len(value) > 1 else None)
    else:
        mean, std = float(value), None
    if ref.get("kind", "accuracy") == "error":
        mean = 100.0 - mean
    return mean, std


def schema_path() -> Path:
    """claims.schema.yaml beside the study schema: in the package (a link to workflow/schemas/ in a checkout, a
    copy in a wheel), or beside $SAMREPRO_SCHEMA."""
    from samrepro.schema import schema_path as study_schema

    return study_schema().parent / "claims.schema.yaml"


def load_claims(path: str | Path) -> list[dict[str, Any]]:
    """The claims of `path`, schema-validated with defaults; ValueError naming the file, claim and key."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(
            f"claims file {path}: cannot read it as YAML ({type(err).__name__}); fix or "
            "restore it (config/claims.yaml in the repository)"
        ) from None
    return _validated(data, path)["claims"]


def _validated(data: Any, path: Path) -> dict[str, Any]:
    import jsonschema
    from jsonschema import Draft202012Validator, validators

    base = Draft202012Validator
    props = base.VALIDATORS["properties"]

    def defaults(validator, properties, instance, schema):  # noqa: ANN001 - jsonschema's signature
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(key, sub["default"])
        yield from props(validator, properties, instance, schema)

    schema = yaml.safe_load(schema_path().read_text())
    error = jsonschema.exceptions.best_match(
        validators.extend(base, {"properties": defaults})(schema).iter_errors(data)
    )
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
        hint = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
        raise ValueError(
            f"claims file {path} at key '{where}': {error.message}" + (f" (expected: {hint})" if hint else "")
        )
    return data


def claim_id(claim: Mapping[str, Any]) -> str:
    sign = ">" if claim["direction"] == "greater" else "<"
    return (
        claim.get("id")
        or f"{claim['experiment']}: {claim['setup']} {sign} {claim['baseline']} ({claim['metric']})"
    )


def check_claims(
    claims: Sequence[Mapping[str, Any]],
    experiments: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, Any],
    path: str | Path,
) -> None:
    """The claims on the study's experiments name known setups of the experiment's task, one of its metrics,
    and published numbers that exist for both setups. Run before any job (a typo fails in seconds)."""
    from samrepro.catalog import SETUPS, setups_of_task

    for i, c in enumerate(claims):
        exp = experiments.get(c["experiment"])
        if exp is None:
            continue  # a claim on an experiment this study does not have
        where = f"claims file {path} at key 'claims.{i}' ({claim_id(c)})"
        task = exp["task"]
        for key in ("setup", "baseline"):
            if c[key] not in SETUPS or SETUPS[c[key]].task != task:
                raise ValueError(
                    f"{where}: {key} '{c[key]}' is not a {task} setup; use one of "
                    f"{sorted(setups_of_task(task))}"
                )
        if c["metric"] not in CLAIM_METRICS[task]:
            raise ValueError(
                f"{where}: metric '{c['metric']}' is not a {task} metric; use one of "
                f"{list(CLAIM_METRICS[task])}"
            )
        if c.get("paper"):
            for key in ("setup", "baseline"):
                try:
                    found = paper_value(paper, c["paper"], c[key])
                except ValueError as err:
                    raise ValueError(f"{where}: {err}; fix claims.{i}.paper.path") from None
                if found is None:
                    raise ValueError(
                        f"{where}: paper_results has no number for {c[key]} under "
                        f"'{c['paper']['path']}' {c['paper'].get('field', '')}; fix claims.{i}.paper"
                    )


def check_study_claims(
    experiments: Mapping[str, Mapping[str, Any]],
    claims_path: str | os.PathLike[str],
    paper_path: str | os.PathLike[str],
) -> None:
    """load_claims + check_claims for a study (experiment -> {task}), as the workflow does before any job."""
    if not os.path.isfile(claims_path):
        raise ValueError(f"invalid study config at key 'claims': {claims_path} does not exist")
    paper = (read_yaml(paper_path) if os.path.isfile(paper_path) else {}) or {}
    check_claims(load_claims(claims_path), experiments, paper, claims_path)
