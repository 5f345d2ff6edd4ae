"""Data lineage and real timing of a run in MLflow (issue 11), written only by `track` (the single writer).

- Dataset input: each tuning and final run logs the dataset it trained on as an MLflow dataset input
  (`MlflowClient.log_inputs`, the client form of `mlflow.log_input`): its name, a digest of the prepare
  manifest's checksums, the source path (the data root); the split (train, or train-minus-validation when
  tuning), val_fraction and split_seed are tags of the input (MLflow stores a dataset once per experiment,
  name and digest, so per-run facts cannot live in the dataset itself):

      content = sha256(JSON of the manifest's dataset, counts, data_sha256 and sorted (path, size, sha256)
                of its files))[:16]                       (in the dataset's profile)
      digest  = sha256(content, root)[:16]

  Two copies of "cifar100" in two folders are two datasets with their own source; the profile's content
  hash says whether they hold the same files.

  A run folder outside the results layout (no manifest at results/<study>/data/<dataset>.json) gets the
  digest of its run.yaml dataset block instead, and the input says so (profile "manifest": null).
- Real times: a run's start and end are the training's, not the moment `track` logged it. metrics.json's
  `start_time`/`end_time` (Unix seconds) when the run recorded them; else end = metrics.json's modification
  time (train writes it once, at the end) and start = end − wall_time_s (wall time summed over resumes, so
  a resumed run's start is its effective start).
- The study's experiment is tagged as model training (mlflow.experimentKind = custom_model_development, the
  UI's ExperimentKind). The UI bundled with MLflow 3.17.2 takes the kind from its GenAI / Model training
  switch whenever that switch is shown (always, in that build; default GenAI, remembered per browser), and
  from the tag otherwise; a link with `?workflowType=machine_learning` sets the switch, so `track` prints
  one (`training_view_url`) that opens the study's training runs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from samrepro.errors import read_json
from samrepro.track.runs import RunRecord

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by the MLflow 3 UI (mlflow/server/js, ExperimentKind)
TRAINING_KIND = "custom_model_development"
TRAINING_VIEW = "machine_learning"  # the UI's workflowType of its "Model training" view
CONTEXT_TAG = "mlflow.data.context"
DIGEST_CHARS = 16


def mark_training_experiment(client: Any, experiment_id: str) -> None:
    """Tag the experiment so the UI opens it as model training (idempotent: setting a tag overwrites it)."""
    client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, TRAINING_KIND)


def training_view_url(experiment_id: str, base: str = "http://127.0.0.1:5000") -> str:
    """The study's runs in the MLflow UI's model-training view (`mlflow ui` serves on port 5000 by default)."""
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType={TRAINING_VIEW}"


def manifest_path(run: RunRecord) -> Path:
    """results/<study>/data/<dataset>.json for a run at results/<study>/{runs,tune}/<exp>/<setup>/<run>/."""
    return run.path.resolve().parents[3] / "data" / f"{_dataset(run)['name']}.json"


def _dataset(run: RunRecord) -> Mapping[str, Any]:
    ds = run.config.get("dataset")
    if not isinstance(ds, Mapping) or "name" not in ds:
        raise ValueError(
            f"{run.path / 'run.yaml'}: no dataset.name; the run folder is incomplete (rerun its job)"
        )
    return ds


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The prepare manifest, None when absent; a file that is not a JSON object is refused naming it."""
    if not path.is_file():
        return None
    data = read_json(path, "rerun `samrepro prepare`")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a prepare manifest is a JSON object; rerun `samrepro prepare`")
    return data


def content_hash(manifest: Mapping[str, Any]) -> str:
    """The module docstring's content hash: the files, not where they are."""
    files = sorted((str(f.get("path")), f.get("size"), f.get("sha256")) for f in manifest.get("files") or [])
    body = {
        "dataset": manifest.get("dataset"),
        "counts": manifest.get("counts"),
        "data_sha256": manifest.get("data_sha256"),
        "files": files,
    }
    return _sha(body)


def dataset_digest(manifest: Mapping[str, Any]) -> str:
    """The module docstring's digest: the content and the root, so each copy keeps its own source."""
    return _sha({"content": content_hash(manifest), "root": manifest.get("root")})


def _sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:DIGEST_CHARS]


def split_of(run: RunRecord) -> str:
    return "train-minus-validation" if run.phase == "tune" else "train"


def dataset_input(run: RunRecord) -> Any:
    """The MLflow DatasetInput of a run: name, digest, source path, split and val_fraction."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = _dataset(run)
    manifest = read_manifest(manifest_path(run))
    digest = dataset_digest(manifest) if manifest else _sha(dict(ds))
    root = (
        str(manifest["root"])
        if manifest and manifest.get("root")
        else str(Path(ds.get("root") or ".").resolve())
    )
    profile = {
        "content": content_hash(manifest) if manifest else None,
        "counts": (manifest or {}).get("counts"),
        "manifest": str(manifest_path(run)) if manifest else None,
    }
    dataset = Dataset(
        name=str(ds["name"]),
        digest=digest,
        source_type="local",
        source=json.dumps({"uri": root}),
        profile=json.dumps(profile, sort_keys=True),
    )
    tags = [
        InputTag(CONTEXT_TAG, split_of(run)),
        InputTag("samrepro.val_fraction", str(ds.get("val_fraction"))),
        InputTag("samrepro.split_seed", str(ds.get("split_seed"))),
    ]
    return DatasetInput(dataset=dataset, tags=tags)


def log_dataset(client: Any, run_id: str, run: RunRecord) -> None:
    client.log_inputs(run_id, datasets=[dataset_input(run)])


def run_times_ms(run: RunRecord) -> tuple[int, int]:
    """(start, end) of the training in Unix milliseconds (the module docstring's rule)."""
    m = run.metrics
    if _seconds(m.get("start_time")) is not None and _seconds(m.get("end_time")) is not None:
        return int(_seconds(m["start_time"]) * 1000), int(_seconds(m["end_time"]) * 1000)
    end = (run.path / "metrics.json").stat().st_mtime
    wall = _seconds(m.get("wall_time_s")) or 0.0
    return int((end - wall) * 1000), int(end * 1000)


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def span_ms(times: Sequence[tuple[int, int]]) -> tuple[int | None, int | None]:
    """A parent run spans its children: earliest start, latest end."""
    if not times:
        return None, None
    return min(t[0] for t in times), max(t[1] for t in times)
