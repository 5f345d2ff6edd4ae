"""Log a study's job outputs into MLflow (DESIGN 'The DAG', step 5) — the single writer of the store.

Layout: one MLflow experiment per study (artifacts under results/<study>/mlartifacts, not ./mlruns); a parent
run per experiment x setup; a child run per final seed and per tuning run (tag samrepro.phase). Every run
carries the tag samrepro.key (its identity) and samrepro.content_hash (hash of its files). Re-running:
a setup whose content is unchanged and completely logged is skipped; a changed one (re-trained, new config)
or an incomplete one has its old runs deleted and logged afresh, so the store never holds two runs with one
key. Complete = one FINISHED parent with the content hash and one FINISHED child per run under it: a run is
set FINISHED only after its params, metrics and artifacts are logged, so a `track` killed at any instant
(even SIGKILL) leaves RUNNING or missing runs, which the next `track` redoes.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from samrepro.track.lineage import log_dataset, mark_training_experiment, run_times_ms, span_ms
from samrepro.track.runs import (
    RunRecord,
    flatten_eval,
    flatten_params,
    numeric_items,
    read_run,
    run_folder,
)

KEY_TAG = "samrepro.key"
HASH_TAG = "samrepro.content_hash"
PHASE_TAG = "samrepro.phase"
ARTIFACTS = ("run.yaml", "metrics.json", "history.csv", "eval.json")
# log_batch limits of the MLflow REST API
MAX_METRICS, MAX_PARAMS, MAX_TAGS = 1000, 100, 100
PARAM_MAX_LEN = 6000


def default_tracking_uri(results_dir: str | os.PathLike[str]) -> str:
    """sqlite under results/<study>/ (absolute, so it does not depend on the current directory)."""
    return f"sqlite:///{(Path(results_dir) / 'mlflow.db').resolve()}"


def resolve_tracking_uri(explicit: str | None, results_dir: str | os.PathLike[str]) -> str:
    """Precedence: the config's tracking.uri (passed explicitly) > $MLFLOW_TRACKING_URI > local sqlite."""
    return explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(results_dir)


def check_sqlite_store(uri: str) -> None:
    """An existing sqlite store must be a sound SQLite file (MLflow's own error is 80 lines without the path)."""
    if not uri.startswith("sqlite:///"):
        return
    path = Path(uri[len("sqlite:///") :]).resolve()
    if not path.is_file():
        return
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as con:
            verdict = str(con.execute("PRAGMA quick_check").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise ValueError(
            f"{path}: the MLflow store is corrupt ({verdict[:160]}); move it aside "
            f"(mv {path} {path}.corrupt) and rerun track: it logs every run again from the run folders"
        )


def git_commit(cwd: str | os.PathLike[str] | None = None) -> tuple[str, bool]:
    """(commit, dirty) of the checkout the workflow runs from; ('unknown', False) outside git."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=cwd,
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            ).stdout.strip()
        )
        return commit, dirty
    except (OSError, subprocess.SubprocessError):
        return "unknown", False


def _provenance_tags(run: RunRecord, commit: str, dirty: bool) -> dict[str, str]:
    m = run.metrics
    tags = {
        KEY_TAG: run.key,
        PHASE_TAG: run.phase,
        HASH_TAG: run.content_hash(),
        "samrepro.experiment": run.experiment,
        "samrepro.setup": run.setup,
        "samrepro.seed": str(run.seed),
        "mlflow.source.git.commit": commit,
        "git_commit": commit,
        "git_dirty": str(dirty).lower(),
        "config_hash": str(m.get("config_hash", "")),
        "host": str(m.get("host") or ""),
        "slurm_job_id": str(m.get("slurm_job_id") or ""),
        "device": str(m.get("device") or ""),
        "run_dir": str(run.path.resolve()),
    }
    for name, version in (m.get("versions") or {}).items():
        tags[f"version.{name}"] = str(version)
    return tags


def _run_metrics(run: RunRecord) -> list[tuple[str, float, int]]:
    """(key, value, step): history per epoch under its column names, metrics.json as final.*, eval.json as
    eval.* (step = last epoch)."""
    out: list[tuple[str, float, int]] = []
    last = 0
    for row in run.history:
        step = int(row.get("epoch", len(out)))
        last = max(last, step)
        out.extend((k, v, step) for k, v in row.items() if k != "epoch")
    out.extend((f"final.{k}", v, last) for k, v in numeric_items(run.metrics).items() if k not in ("seed",))
    out.extend((f"eval.{k}", v, last) for k, v in flatten_eval(run.evaluation).items())
    return out


class StudyTracker:
    """Idempotent writer of one study's MLflow experiment."""

    def __init__(self, study: str, tracking_uri: str, artifact_root: str | os.PathLike[str]):
        from mlflow.tracking import MlflowClient

        self.study = study
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_id = self._experiment(Path(artifact_root))
        mark_training_experiment(self.client, self.experiment_id)
        self.commit, self.dirty = git_commit()
        self.stats = {"created": 0, "skipped": 0, "replaced": 0}

    def _experiment(self, artifact_root: Path) -> str:
        exp = self.client.get_experiment_by_name(self.study)
        if exp is None:
            artifact_root.mkdir(parents=True, exist_ok=True)
            return self.client.create_experiment(
                self.study,
                artifact_location=artifact_root.resolve().as_uri(),
                tags={"samrepro.study": self.study},
            )
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    def active_runs(self) -> list[Any]:
        from mlflow.entities import ViewType

        runs: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [self.experiment_id], run_view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token
            )
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def _log(
        self,
        run_id: str,
        params: dict[str, str],
        metrics: Sequence[tuple[str, float, int]],
        tags: dict[str, str],
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        plist = [Param(k, v[:PARAM_MAX_LEN]) for k, v in sorted(params.items())]
        mlist = [Metric(k, v, now, s) for k, v, s in metrics]
        tlist = [RunTag(k, v) for k, v in sorted(tags.items())]
        for i in range(0, len(plist), MAX_PARAMS):
            self.client.log_batch(run_id, params=plist[i : i + MAX_PARAMS])
        for i in range(0, len(tlist), MAX_TAGS):
            self.client.log_batch(run_id, tags=tlist[i : i + MAX_TAGS])
        for i in range(0, len(mlist), MAX_METRICS):
            self.client.log_batch(run_id, metrics=mlist[i : i + MAX_METRICS])

    def _create(
        self, name: str, tags: dict[str, str], parent_id: str | None = None, start_time: int | None = None
    ) -> str:
        if parent_id:
            tags = {**tags, "mlflow.parentRunId": parent_id}
        tags = {**tags, "mlflow.user": _user()}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags, start_time=start_time)
        return run.info.run_id

    def log_setup(
        self, experiment: str, setup: str, runs: Sequence[RunRecord], existing: dict[str, list[Any]]
    ) -> dict[str, str]:
        """Log one experiment x setup (parent + children); returns key -> run id."""
        parent_key = f"{experiment}/{setup}"
        finals = [r for r in runs if r.phase != "tune"]
        content = "|".join(sorted(f"{r.key}={r.content_hash()}" for r in runs))
        parent_hash = _short_hash(content)
        old_parent = existing.get(parent_key, [])
        if _complete(old_parent, parent_hash, [existing.get(r.key, []) for r in runs]):
            self.stats["skipped"] += 1 + len(runs)
            return {
                parent_key: old_parent[0].info.run_id,
                **{r.key: existing[r.key][0].info.run_id for r in runs},
            }
        replaced = self._drop_stale(parent_key, old_parent, existing)
        ids: dict[str, str] = {}
        parent_tags = {
            KEY_TAG: parent_key,
            HASH_TAG: parent_hash,
            PHASE_TAG: "parent",
            "samrepro.experiment": experiment,
            "samrepro.setup": setup,
            "mlflow.source.git.commit": self.commit,
            "git_commit": self.commit,
            "git_dirty": str(self.dirty).lower(),
        }
        times = {r.key: run_times_ms(r) for r in runs}  # the training's real start and end (lineage.py)
        parent_start, parent_end = span_ms(list(times.values()))
        parent_id = self._create(parent_key, parent_tags, start_time=parent_start)
        ids[parent_key] = parent_id
        self._log(parent_id, _parent_params(experiment, setup, runs), _parent_metrics(finals), {})
        for r in sorted(runs, key=lambda r: (r.phase != "tune", r.rho or 0.0, r.seed)):
            ids[r.key] = self._log_child(r, parent_id, times[r.key])
        self.client.set_terminated(parent_id, "FINISHED", end_time=parent_end)
        self.stats["replaced" if replaced else "created"] += 1 + len(runs)
        return ids

    def _drop_stale(self, parent_key: str, old_parent: list[Any], existing: dict[str, list[Any]]) -> bool:
        """Delete whatever exists under this setup's keys (also runs no longer in the study, whose parent an
        interrupted replace may already have deleted) and the children of old parents; True if any."""
        stale = [
            run
            for key, runs_ in existing.items()
            if key == parent_key or key.startswith(f"{parent_key}/")
            for run in runs_
        ]
        old_parent_ids = {p.info.run_id for p in old_parent}
        stale.extend(
            run
            for runs_ in existing.values()
            for run in runs_
            if run.data.tags.get("mlflow.parentRunId") in old_parent_ids
        )
        for run in {r.info.run_id: r for r in stale}.values():
            self.client.delete_run(run.info.run_id)
        return bool(stale)

    def _log_child(self, r: RunRecord, parent_id: str, times: tuple[int, int]) -> str:
        """One job's run under the parent: params, metrics, artifacts, dataset input; FINISHED only at the end."""
        run_id = self._create(
            r.key.split("/", 1)[1],
            _provenance_tags(r, self.commit, self.dirty),
            parent_id,
            start_time=times[0],
        )
        self._log(run_id, flatten_params(r.config), _run_metrics(r), {})
        for name in ARTIFACTS:
            if (r.path / name).is_file():
                self.client.log_artifact(run_id, str(r.path / name))
        log_dataset(self.client, run_id, r)
        self.client.set_terminated(run_id, "FINISHED", end_time=times[1])
        return run_id

    def log_study(self, runs: Iterable[RunRecord]) -> dict[str, str]:
        groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
        for r in runs:
            groups[(r.experiment, r.setup)].append(r)
        existing: dict[str, list[Any]] = defaultdict(list)
        for run in self.active_runs():
            key = run.data.tags.get(KEY_TAG)
            if key:
                existing[key].append(run)
        ids: dict[str, str] = {}
        for (experiment, setup), group in sorted(groups.items()):
            ids.update(self.log_setup(experiment, setup, group, existing))
        return ids


def _complete(parent: Sequence[Any], parent_hash: str, children: Sequence[Sequence[Any]]) -> bool:
    """One FINISHED parent holding `parent_hash`, and exactly one FINISHED child under it per run."""
    if (
        len(parent) != 1
        or parent[0].data.tags.get(HASH_TAG) != parent_hash
        or parent[0].info.status != "FINISHED"
    ):
        return False
    pid = parent[0].info.run_id
    return all(
        len(c) == 1 and c[0].info.status == "FINISHED" and c[0].data.tags.get("mlflow.parentRunId") == pid
        for c in children
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - no passwd entry in some containers
        return "unknown"


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _parent_params(experiment: str, setup: str, runs: Sequence[RunRecord]) -> dict[str, str]:
    """Params every final run shares (seed excluded), plus the selected rho and the seeds."""
    finals = [r for r in runs if r.phase != "tune"] or list(runs)
    flat = [flatten_params(r.config) for r in finals]
    common = {k: v for k, v in flat[0].items() if all(f.get(k) == v for f in flat[1:])} if flat else {}
    common.pop("seed", None)
    common.update(
        {
            "experiment": experiment,
            "setup": setup,
            "seeds": json.dumps(sorted(r.seed for r in finals)),
            "selected_rho": str(finals[0].rho) if finals else "None",
        }
    )
    return common


def _parent_metrics(finals: Sequence[RunRecord]) -> list[tuple[str, float, int]]:
    """mean and std over seeds of every final and eval metric (std with ddof=1, as the report)."""
    import statistics

    values: dict[str, list[float]] = defaultdict(list)
    for r in finals:
        for k, v in numeric_items(r.metrics).items():
            if k != "seed":
                values[f"final.{k}"].append(v)
        for k, v in flatten_eval(r.evaluation).items():
            values[f"eval.{k}"].append(v)
    out: list[tuple[str, float, int]] = []
    for k, vs in sorted(values.items()):
        out.append((f"{k}.mean", statistics.fmean(vs), 0))
        out.append((f"{k}.std", statistics.stdev(vs) if len(vs) > 1 else 0.0, 0))
    return out


def track_study(
    study: str,
    results_dir: str | os.PathLike[str],
    run_paths: Iterable[str | os.PathLike[str]],
    tune_paths: Iterable[str | os.PathLike[str]] = (),
    tracking_uri: str | None = None,
    host: str | None = None,
) -> dict[str, Any]:
    """Log the given final runs (their eval.json, metrics.json or folder) and tuning runs; return a summary."""
    uri = resolve_tracking_uri(tracking_uri, results_dir)
    runs = [read_run(run_folder(p), require_eval=True) for p in run_paths if str(p)]
    runs += [read_run(run_folder(p)) for p in tune_paths if str(p)]
    by_key: dict[str, RunRecord] = {}
    for r in runs:
        other = by_key.setdefault(r.key, r)
        if other.path.resolve() != r.path.resolve():
            raise ValueError(
                f"runs {other.path} and {r.path} both claim to be {r.key} (their metrics.json); "
                "one of them is stale: delete it"
            )
    runs = list(by_key.values())
    check_sqlite_store(uri)
    tracker = StudyTracker(study, uri, Path(results_dir) / "mlartifacts")
    ids = tracker.log_study(runs)
    return {
        "study": study,
        "tracking_uri": uri,
        "experiment_id": tracker.experiment_id,
        "host": host or socket.gethostname(),
        "runs": ids,
        **tracker.stats,
    }


# --- the report's claim verdicts on the parent runs ---------------------------------------------------------
CLAIM_METRICS = (
    "delta",
    "ci_low",
    "ci_high",
    "p_one_sided",
    "p_holm",
    "hedges_g",
    "mde",
    "published_delta",
    "seeds_needed",
)


def claim_verdict_data(claim: dict[str, Any]) -> tuple[dict[str, str], list[tuple[str, float, int]]]:
    """(tags, metrics) of one claim under claim.<baseline>.<metric>: the verdict as tags, its finite statistics
    as metrics."""
    import math

    key = f"claim.{claim['baseline']}.{claim['metric']}"
    tags = {
        f"{key}.verdict": str(claim["verdict"]),
        f"{key}.verdict_text": str(claim["verdict_text"])[:5000],
        f"{key}.source": str(claim["source"])[:5000],
    }
    metrics = [
        (f"{key}.{name}", float(claim[name]), 0)
        for name in CLAIM_METRICS
        if isinstance(claim.get(name), (int, float)) and math.isfinite(claim[name])
    ]
    return tags, metrics


def log_claim_verdicts(mlflow_runs: str | os.PathLike[str], claims: Iterable[dict[str, Any]]) -> int:
    """Put each claim's verdict on the parent run of its setup, found in the track job's summary (mlflow_runs.json:
    tracking_uri and key -> run id). Re-logging overwrites the tags; returns the number of parent runs touched."""
    from mlflow.entities import Metric, RunTag
    from mlflow.tracking import MlflowClient

    try:
        summary = json.loads(Path(mlflow_runs).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{mlflow_runs}: unreadable track summary ({type(err).__name__}); delete it and rerun "
            "`samrepro track`"
        ) from None
    if (
        not isinstance(summary, dict)
        or "tracking_uri" not in summary
        or not isinstance(summary.get("runs"), dict)
    ):
        raise ValueError(
            f"{mlflow_runs}: not a track summary (needs tracking_uri and runs); delete it and rerun "
            "`samrepro track`"
        )
    client = MlflowClient(tracking_uri=summary["tracking_uri"])
    touched = set()
    now = int(time.time() * 1000)
    for claim in claims:
        run_id = summary["runs"].get(f"{claim['experiment']}/{claim['setup']}")
        if run_id is None or claim["verdict"] == "not run":
            continue
        tags, metrics = claim_verdict_data(claim)
        client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, s) for k, v, s in metrics],
            tags=[RunTag(k, v) for k, v in sorted(tags.items())],
        )
        touched.add(run_id)
    return len(touched)
