# Helpers shared by the rules (functions only: no rules here, no logic in the rules themselves).
import json
import os
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

# The library lives next to the Snakefile: importable even from a snakemake outside the venv.
sys.path.insert(0, os.path.join(workflow.basedir, "pipeline_src"))

from samrepro import schema  # noqa: E402
from samrepro.study import config as study  # noqa: E402
from samrepro.study.workflow import jobs_use_this_python  # noqa: E402
from samrepro.report.published import check_study_claims  # noqa: E402

jobs_use_this_python()

if workflow.overwrite_configfiles and "experiments" not in config:
    # A config file that declares no experiments is a mistake, not a request for the default study.
    raise WorkflowError(
        f"invalid study config at key 'experiments': {', '.join(map(str, workflow.overwrite_configfiles))} "
        "declares no experiments; add an 'experiments:' mapping (see config/config.yaml), or drop --configfile "
        "to run the embedded default study"
    )
if "experiments" not in config:
    # No --configfile given: the embedded default study. (Not a `configfile:` directive: Snakemake would
    # deep-merge it with a --configfile, mixing the default study's experiments into any other study.)
    _default = study.load_yaml(os.path.join(workflow.basedir, "config", "config.yaml"))
    _overrides = dict(config)
    config.clear()
    config.update(study.deep_merge(_default, _overrides))

try:
    # our validator first: one line naming the key, the value's problem and what the schema expects
    study.validate_schema(config)
    validate(config, "../schemas/config.schema.yaml")  # fills the schema's defaults into config
    study.check_study(config)
except ValueError as err:
    raise WorkflowError(
        str(err) if str(err).startswith("invalid study config") else f"invalid study config: {err}"
    )

STUDY = config["study"]
RES = f"{config['results_dir']}/{STUDY}"
REP = f"{config['reports_dir']}/{STUDY}"
EXPERIMENTS = config["experiments"]
ENV = "../envs/samrepro.yaml"


# Cheap bookkeeping jobs run where Snakemake runs (on a cluster: the login node, which also has the network
# that downloads and an MLflow server may need); training and evaluation go to the executor.
localrules:
    prepare,
    select_rho,
    track,
    report,
    all,


wildcard_constraints:
    experiment="[A-Za-z0-9_][A-Za-z0-9_.-]*",
    setup="[A-Za-z0-9-]+",
    seed="[0-9]+",
    rho="[0-9][0-9.e+-]*",
    dataset="[A-Za-z0-9_]+",


def datasets():
    """dataset name -> (root, download); one prepare job per dataset, shared by its experiments."""
    out = {}
    for name, exp in EXPERIMENTS.items():
        ds = exp["dataset"]
        key = (ds["root"], ds["download"])
        if out.setdefault(ds["name"], key) != key:
            raise WorkflowError(
                f"experiments.{name}.dataset: dataset '{ds['name']}' appears with different root/download "
                f"settings {out[ds['name']]} and {key}; use one root per dataset"
            )
    return out


DATASETS = datasets()


def manifest(wildcards):
    return f"{RES}/data/{EXPERIMENTS[wildcards.experiment]['dataset']['name']}.json"


def dataset_root(wildcards):
    return DATASETS[wildcards.dataset][0]


def download_flag(wildcards):
    return "--download" if DATASETS[wildcards.dataset][1] else ""


def tune_runs():
    """(experiment, setup, rho, seed) of every tuning run (DESIGN 'The DAG', step 2)."""
    return [
        (e, s, study.fmt_rho(r), seed)
        for e, exp in EXPERIMENTS.items()
        for s in exp["setups"]
        for r in study.rho_grid(exp, s)
        for seed in exp["tune"]["seeds"]
    ]


def final_runs():
    """(experiment, setup, seed) of every final run (step 3)."""
    return [(e, s, seed) for e, exp in EXPERIMENTS.items() for s in exp["setups"] for seed in exp["seeds"]]


def tuned_setups():
    return [(e, s) for e, exp in EXPERIMENTS.items() for s in exp["setups"] if study.is_tuned(exp, s)]


def tune_metrics_all():
    return [f"{RES}/tune/{e}/{s}/rho{r}_seed{seed}/metrics.json" for e, s, r, seed in tune_runs()]


def best_all():
    return [f"{RES}/tune/{e}/{s}/best.json" for e, s in tuned_setups()]


def evals_all():
    return [f"{RES}/runs/{e}/{s}/seed{seed}/eval.json" for e, s, seed in final_runs()]


def setup_tune_metrics(wildcards):
    exp = EXPERIMENTS[wildcards.experiment]
    return [
        f"{RES}/tune/{wildcards.experiment}/{wildcards.setup}/rho{study.fmt_rho(r)}_seed{seed}/metrics.json"
        for r in study.rho_grid(exp, wildcards.setup)
        for seed in exp["tune"]["seeds"]
    ]


def best_json(wildcards):
    """The setup's best.json when its rho is tuned; nothing for rho-free or fixed-rho setups."""
    if study.is_tuned(EXPERIMENTS[wildcards.experiment], wildcards.setup):
        return [f"{RES}/tune/{wildcards.experiment}/{wildcards.setup}/best.json"]
    return []


def best_arg(wildcards, input):
    return f"--best {input.best}" if input.best else ""


def run_dir(wildcards, output):
    return os.path.dirname(output[0])


def spec_json(wildcards):
    """The experiment's resolved config (passed to `samrepro plan`); a change reruns that experiment only."""
    return json.dumps(
        study.experiment_spec(config, wildcards.experiment), sort_keys=True, separators=(",", ":")
    )


def report_spec():
    """What the report needs of the study (paper references, tasks), as JSON."""
    exps = {
        name: {
            "dataset": exp["dataset"]["name"],
            "model": exp["model"]["name"],
            "task": study.task_of(exp),
            "setups": exp["setups"],
            "paper": exp["paper"],
            "description": exp["description"],
            "primary_metric": exp.get(
                "primary_metric"
            ),  # null: the task's default (the generic claims' metric)
        }
        for name, exp in EXPERIMENTS.items()
    }
    uri = config["tracking"]["uri"] or f"sqlite:///{RES}/mlflow.db"
    hint = f"Runs in MLflow: mlflow ui --backend-store-uri {uri}" if config["tracking"]["enabled"] else ""
    return json.dumps(
        {
            "study": STUDY,
            "description": config["description"],
            "experiments": exps,
            "tracking_hint": hint,
            "config_hash": study.config_hash(config),
            "estimate": config.get("estimate"),
        }
    )  # the device profile the compute section uses


def paper_results():
    return config["paper_results"] or os.path.join(workflow.basedir, "config", "paper_results.yaml")


def claims_file():
    return config["claims"] or os.path.join(workflow.basedir, "config", "claims.yaml")


def manifests_all():
    """The prepare jobs' dataset manifests (the report header shows their digests)."""
    return [f"{RES}/data/{name}.json" for name in DATASETS]


def reference_all():
    """The raw-pixel verification reference of every face experiment (reference.smk): a row of the report."""
    return [
        f"{RES}/reference/{e}/pixels.json" for e, exp in EXPERIMENTS.items() if study.task_of(exp) == "face"
    ]


def reference_plan_args(wildcards):
    """`samrepro plan` arguments for one run config of the experiment (its first setup and seed; a tuned
    setup is planned as a tuning run of its first rho): the reference reads only its data and pairs."""
    exp = EXPERIMENTS[wildcards.experiment]
    setup, seed = exp["setups"][0], exp["seeds"][0]
    phase = (
        f"--phase tune --rho {study.rho_grid(exp, setup)[0]}"
        if study.is_tuned(exp, setup)
        else "--phase final"
    )
    return f"--setup {setup} --seed {seed} {phase}"


def tracked_runs():
    """The track job's summary, when tracking is on: the report puts its claims' verdicts on the parent runs."""
    return [f"{RES}/mlflow_runs.json"] if config["tracking"]["enabled"] else []


try:
    study.check_paper_refs(config, paper_results())
    check_study_claims(
        {n: {"task": study.task_of(e)} for n, e in EXPERIMENTS.items()}, claims_file(), paper_results()
    )
except ValueError as err:
    raise WorkflowError(str(err))


def tracking_uri_arg():
    return f"--tracking-uri {config['tracking']['uri']}" if config["tracking"]["uri"] else ""


def res(kind, key):
    """Resource `key` of rule kind `kind` for a job (study-wide block, overridden per experiment)."""

    def get(wildcards):
        experiment = getattr(wildcards, "experiment", None)
        return study.job_resources(config, kind, experiment)[key]

    return get


# The resource keys of a job: the schema's `$defs/resources` block (study-wide, overridable per experiment).
RESOURCE_KEYS = list(schema.load_schema()["$defs"]["resources"]["properties"])


def resources_of(kind, gpus=True):
    """A rule's `resources:` (`**resources_of(kind)`): every key of the study's resources for this kind of
    job; local bookkeeping rules (gpus=False) leave out the GPU keys."""
    return {key: res(kind, key) for key in RESOURCE_KEYS if gpus or not key.startswith("gpu")}


def plan_and_train(phase_args):
    """The shell of a training job (tune and train rules): write the run's run.yaml with `samrepro plan`, then
    train it (under torchrun when the job has several GPUs); `phase_args` says which phase and which rho."""
    return (
        "(python -m samrepro plan --spec {params.spec:q} --setup {wildcards.setup} --seed {wildcards.seed} "
        f"{phase_args} --out {{params.dir}}/run.yaml"
        " && OMP_NUM_THREADS={threads} {params.launcher} -m samrepro train --config {params.dir}/run.yaml "
        "--out {params.dir}) > {log:q} 2>&1"
    )


def launcher(kind):
    """`python`, or torchrun with one process per GPU (DDP) when the job asks for more than one GPU."""

    def get(wildcards):
        gpus = study.job_resources(config, kind, wildcards.experiment)["gpu"]
        return f"torchrun --standalone --nproc_per_node={gpus}" if gpus > 1 else "python"

    return get


def final_targets():
    """The default targets: the report, and the MLflow store unless tracking is disabled."""
    targets = [f"{REP}/index.html", f"{REP}/report.md"]
    if config["tracking"]["enabled"]:
        targets.append(f"{RES}/mlflow_runs.json")
    return targets


def array_rules():
    """Rules the SLURM executor submits as job arrays (--slurm-array-jobs); empty for other executors. The
    executor's settings exist only once the workflow executes, hence the onstart check."""
    setting = getattr(getattr(workflow, "executor_settings", None), "array_jobs", None) or ""
    return {r.strip() for r in setting.replace(";", ",").split(",") if r.strip()}


onstart:
    problem = study.array_resource_conflict(config, array_rules())
    if problem:
        raise WorkflowError(problem)
