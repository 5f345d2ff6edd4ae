"""The compute bill of a study before it runs: FLOPs, device-hours and wall time of every job of the DAG.

F = forward FLOPs of one image through the real model at the real input size (counted once per model with
`torch.utils.flop_counter.FlopCounterMode` on the meta device, batch of one; a margin head is counted on the
CPU), F_b the backbone alone (face verification embeds without the head). P = passes per step (1 for SGD,
ArcFace, AdaFace; 2 for the SAM family, `optim.setups.Setup.two_pass`). One training run (tune or final,
E epochs, N training images):

    C_run  = E · [ 3·P·F·N                     training steps (backward ≈ 2 forwards)
                 + F·N_eval                    per-epoch evaluation (val/test split; face: 4 forwards per
                                               verification pair with the flip test, F_b each)
                 + F·N_acc                     face only: per-epoch train accuracy on the train_eval images
                 + 5·F·B_probe ]               mechanism probe: one forward, two gradients
    C_eval = F·N_test + F·N_acc + 6·F·S·I      evaluate job: test set, train accuracy, Hessian sharpness (S
                                               samples, I power iterations; a Hessian-vector product by
                                               double backprop ≈ two gradients)

A device profile (peak TFLOP/s per GPU, or per core for a CPU profile, and an assumed utilisation u) turns
FLOPs into time: device-hours = C / (peak·u) / 3600, and the wall time of a job on n devices (its `gpu`, or
`cpus_per_task` for a CPU job) = C / (peak·u·n). A job whose wall time exceeds its SLURM `runtime` is
flagged: it would be stopped at the limit (the resume makes that survivable, at the cost of a resubmission).
Dataset sizes come from the data registry: measured by building the dataset when its files are present,
else the declared sizes (`data.registry.DECLARED_SIZES`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from samrepro.study import config as study
from samrepro.study.plan import build_run_config

TRAIN_FACTOR = 3  # forward + backward ≈ 3 forwards
PROBE_FACTOR = 5  # one forward, two gradients (2 forwards each)
HVP_FACTOR = 6  # a Hessian-vector product ≈ two gradients
VERIFY_FORWARDS = 4  # two images per pair, each also mirrored (flip test)
TRAIN_EVAL_CAP = {"classification": 50_000, "face": 20_000}  # data.families.in_memory / .faces subsample caps
FACE_VAL_PAIRS = 3000  # data.families.faces default `val_pairs`
PHASES = ("tune", "final", "evaluate")


@dataclass(frozen=True)
class DeviceProfile:
    """Peak bf16 TFLOP/s of one GPU (of one core for per_core profiles) and the utilisation assumed."""

    name: str
    peak_tflops: float
    utilisation: float
    per_core: bool = False

    def flops_per_s(self, units: int) -> float:
        return self.peak_tflops * 1e12 * self.utilisation * max(units, 1)


# Built-in profiles (dense bf16 peaks from the vendors' data sheets; CPU: 32 fp32 FLOP/cycle at 3 GHz, one
# core). The GPU utilisations are assumptions; the CPU one is calibrated on the embedded study (README,
# "Compute"): its 93 training runs measured 0.294 x the estimate at u = 0.15 on an idle 2-core machine, so
# u = 0.15 / 0.294 ~ 0.5.
DEVICE_PROFILES: dict[str, DeviceProfile] = {
    "A100": DeviceProfile("A100", 312.0, 0.3),
    "H100": DeviceProfile("H100", 989.0, 0.3),
    "CPU": DeviceProfile("CPU", 0.096, 0.5, per_core=True),
}


@dataclass(frozen=True)
class DataSizes:
    """Images one run touches: an epoch's training set, one evaluation (forward passes), train accuracy."""

    train: int
    eval_forwards: int
    train_eval: int
    num_classes: int
    input_shape: tuple[int, int, int]
    task: str
    source: str  # "measured" (the data is present) or "declared"


@dataclass(frozen=True)
class ModelFlops:
    total: float  # backbone + head, one image
    backbone: float


@dataclass(frozen=True)
class JobCost:
    experiment: str
    phase: str
    setup: str
    flops: float
    profile: str
    units: int
    device_hours: float
    wall_h: float
    runtime_h: float

    @property
    def over(self) -> bool:
        """The estimate exceeds the requested SLURM runtime: the job would be stopped at its limit."""
        return self.wall_h > self.runtime_h


# --- model FLOPs ---------------------------------------------------------------------------------------


@functools.cache
def _backbone_flops(model_json: str, outputs: int, input_shape: tuple[int, int, int]) -> float:
    """Forward FLOPs of one image through a backbone, built on the meta device (cached per architecture)."""
    import torch

    from samrepro.models import build

    model = json.loads(model_json)
    with torch.device("meta"):
        net = build(model["name"], outputs, **model.get("kwargs", {})).eval()
    try:
        return count_forward_flops(net, torch.empty(1, *input_shape, device="meta"))
    except RuntimeError as err:
        raise ValueError(
            f"model {model} does not take the dataset's {input_shape} images (check "
            f"model.kwargs, e.g. in_channels): {str(err).splitlines()[0]}"
        ) from None


@functools.cache
def _head_flops(head: str, embedding_dim: int, num_classes: int, head_json: str) -> float:
    """Forward FLOPs of a margin head for one embedding: built on the meta device, run on uninitialised CPU
    memory (the heads switch autocast off, which the meta device does not support)."""
    import torch

    from samrepro import heads

    with torch.device("meta"):
        net = heads.build(head, embedding_dim, num_classes, **json.loads(head_json))
    net = net.to_empty(device="cpu").eval()
    return count_forward_flops(net, torch.zeros(1, embedding_dim), torch.zeros(1, dtype=torch.long))


def count_forward_flops(module: Any, *inputs: Any) -> float:
    """FLOPs of `module(*inputs)` as `torch.utils.flop_counter` counts them (a multiply-add = 2 FLOPs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return float(counter.get_total_flops())


def model_flops(run: Mapping[str, Any], sizes: DataSizes) -> ModelFlops:
    """F and F_b of a run's model (samrepro.models.Network: backbone, plus a margin head for face setups)."""
    from samrepro.optim.setups import get_setup

    model = json.dumps(run["model"], sort_keys=True)
    if sizes.task != "face":
        f = _backbone_flops(model, sizes.num_classes, sizes.input_shape)
        return ModelFlops(f, f)
    dim = int(run["embedding_dim"])
    backbone = _backbone_flops(model, dim, sizes.input_shape)
    head = _head_flops(
        get_setup(run["setup"]).head,
        dim,
        sizes.num_classes,
        json.dumps(run["head"].get("kwargs", {}), sort_keys=True),
    )
    return ModelFlops(backbone + head, backbone)


# --- dataset sizes --------------------------------------------------------------------------------------


@functools.cache
def _sizes(dataset_json: str, use_validation: bool) -> DataSizes:
    from samrepro.data.registry import DatasetMissingError

    ds = json.loads(dataset_json)
    try:
        return _measured_sizes(ds, use_validation)
    except (DatasetMissingError, FileNotFoundError):
        return _declared_sizes(ds, use_validation)


def dataset_sizes(dataset: Mapping[str, Any], phase: str) -> DataSizes:
    """Sizes for a run of `phase` (tune trains on train-minus-validation and scores the validation split)."""
    return _sizes(json.dumps(dict(dataset), sort_keys=True), phase == "tune")


def _measured_sizes(ds: Mapping[str, Any], use_validation: bool) -> DataSizes:
    from samrepro import data

    bundle = data.build(
        ds["name"],
        ds.get("root"),
        use_validation=use_validation,
        val_fraction=ds.get("val_fraction", 0.1),
        split_seed=ds.get("split_seed", 0),
        download=False,
        options=ds.get("options") or {},
    )
    if bundle.eval is not None:
        evals = len(bundle.eval)
    else:
        evals = VERIFY_FORWARDS * sum(_pairs(bundle.verification, name) for name in bundle.verification)
    return DataSizes(
        len(bundle.train),
        evals,
        len(bundle.train_eval),
        bundle.num_classes,
        tuple(bundle.input_shape),
        bundle.task,
        "measured",
    )


def _pairs(sets: Mapping[str, Any], name: str) -> int:
    """Pairs of a benchmark: the standard count for lazily loaded .bin benchmarks (no decoding), else counted."""
    from samrepro.data.registry import BENCHMARK_PAIRS, LazyVerificationSets

    if isinstance(sets, LazyVerificationSets) and name in BENCHMARK_PAIRS:
        return BENCHMARK_PAIRS[name]
    return sets[name].num_pairs


def _declared_sizes(ds: Mapping[str, Any], use_validation: bool) -> DataSizes:
    from samrepro.data.families.faces import BENCHMARKS
    from samrepro.data.registry import BENCHMARK_PAIRS, DECLARED_SIZES, get_spec

    spec, declared = get_spec(ds["name"]), DECLARED_SIZES.get(ds["name"])
    if declared is None:
        raise ValueError(
            f"dataset '{ds['name']}' at {ds.get('root')}: its files are absent and it has no declared size "
            f"(data.registry.DECLARED_SIZES); place the data there (see `samrepro prepare --dataset {ds['name']}`)"
        )
    options = ds.get("options") or {}
    size = int(options.get("image_size", declared.input_shape[1]))
    val = round(float(ds.get("val_fraction", 0.1)) * declared.train) if use_validation else 0
    train = declared.train - val
    if spec.task == "face":
        benches = options.get("benchmarks") or BENCHMARKS
        pairs = (
            int(options.get("val_pairs", FACE_VAL_PAIRS))
            if use_validation
            else sum(BENCHMARK_PAIRS.get(b, 6000) for b in benches)
        )
        evals = VERIFY_FORWARDS * pairs
    else:
        evals = val if use_validation else declared.test
    cap = int(options.get("train_eval_max", TRAIN_EVAL_CAP[spec.task]))
    return DataSizes(
        train,
        evals,
        min(train, cap),
        declared.classes,
        (declared.input_shape[0], size, size),
        spec.task,
        "declared",
    )


# --- FLOPs of the jobs ----------------------------------------------------------------------------------


def passes_per_step(setup: str) -> int:
    from samrepro.optim.setups import get_setup

    return 2 if get_setup(setup).two_pass else 1


def train_run_flops(run: Mapping[str, Any]) -> float:
    """C_run of the module docstring for one run config (run.yaml)."""
    sizes = dataset_sizes(run["dataset"], run["phase"])
    f = model_flops(run, sizes)
    eval_f = f.backbone if sizes.task == "face" else f.total
    per_epoch = (
        TRAIN_FACTOR * passes_per_step(run["setup"]) * f.total * sizes.train + eval_f * sizes.eval_forwards
    )
    if sizes.task == "face":
        per_epoch += f.total * sizes.train_eval
    per_epoch += PROBE_FACTOR * f.total * min(int(run["probe_batch_size"]), sizes.train_eval)
    return int(run["schedule"]["epochs"]) * per_epoch


def evaluate_flops(run: Mapping[str, Any]) -> float:
    """C_eval of the module docstring: the evaluate job of a final run."""
    sizes = dataset_sizes(run["dataset"], "final")
    f = model_flops(run, sizes)
    eval_f = f.backbone if sizes.task == "face" else f.total
    flops = eval_f * sizes.eval_forwards + f.total * sizes.train_eval
    sharp = run.get("sharpness") or {}
    if sharp.get("enabled"):
        samples = min(int(sharp["samples"]), sizes.train_eval)
        flops += HVP_FACTOR * f.total * samples * int(sharp["iterations"])
    return flops


# --- the jobs of a study --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    experiment: str
    phase: str  # tune | final | evaluate
    setup: str
    run: dict[str, Any]
    resources: dict[str, Any]


def study_jobs(config: Mapping[str, Any]) -> Iterator[Job]:
    """Every tune, train and evaluate job of the DAG (the same enumeration as workflow/rules/common.smk)."""
    for name, exp in config["experiments"].items():
        spec = study.experiment_spec(config, name)
        for setup in exp["setups"]:
            grid = study.rho_grid(exp, setup)
            for rho in grid:
                for seed in exp["tune"]["seeds"]:
                    run = build_run_config(spec, setup, seed, "tune", rho=rho)
                    yield Job(name, "tune", setup, run, study.job_resources(config, "tune", name))
            rho = grid[0] if grid else None  # the selected rho does not change the cost
            for seed in exp["seeds"]:
                run = build_run_config(spec, setup, seed, "final", rho=rho)
                yield Job(name, "final", setup, run, study.job_resources(config, "train", name))
                yield Job(name, "evaluate", setup, run, study.job_resources(config, "evaluate", name))


def profiles(config: Mapping[str, Any]) -> dict[str, DeviceProfile]:
    """The built-in profiles, each overridden (or a new one added) by the study's estimate.profiles."""
    out = dict(DEVICE_PROFILES)
    for name, over in (config.get("estimate") or {}).get("profiles", {}).items():
        base = out.get(name)
        if base is None and not {"peak_tflops", "utilisation"} <= set(over):
            raise ValueError(
                f"estimate.profiles.{name}: a new profile needs peak_tflops and utilisation "
                f"(built-in profiles: {', '.join(DEVICE_PROFILES)})"
            )
        fields = {**(asdict(base) if base else {"name": name, "per_core": False}), **over}
        out[name] = DeviceProfile(**fields)
    return out


def _profile(config: Mapping[str, Any], on_gpu: bool, gpu_profile: str | None = None) -> DeviceProfile:
    known = profiles(config)
    est = config.get("estimate") or {}
    name = (gpu_profile or est.get("gpu_profile", "A100")) if on_gpu else est.get("cpu_profile", "CPU")
    if name not in known:
        raise ValueError(
            f"device profile '{name}' is unknown; known: {', '.join(known)} "
            "(add it under estimate.profiles in the study config)"
        )
    return known[name]


def pick_profile(
    config: Mapping[str, Any], job: Job, gpu_profile: str | None = None
) -> tuple[DeviceProfile, int]:
    """(profile, devices): the GPU profile for jobs that request GPUs (or run on cuda), else the CPU one."""
    gpus = int(job.resources.get("gpu", 0))
    on_gpu = gpus > 0 or job.run.get("device") == "cuda"
    units = max(gpus, 1) if on_gpu else int(job.resources.get("cpus_per_task", 1))
    return _profile(config, on_gpu, gpu_profile), units


def device_of_run(
    config: Mapping[str, Any], run: Mapping[str, Any], metrics: Mapping[str, Any]
) -> tuple[DeviceProfile, int]:
    """(profile, devices) of a finished run from its metrics.json: its device, world size or CPU threads
    (`threads` when the run recorded it, else 1: the workflow runs each CPU job on cpus_per_task threads)."""
    on_gpu = str(metrics.get("device") or run.get("device") or "").startswith("cuda")
    units = int(metrics.get("world_size") or 1) if on_gpu else int(metrics.get("threads") or 1)
    return _profile(config, on_gpu), units


def job_cost(config: Mapping[str, Any], job: Job, gpu_profile: str | None = None) -> JobCost:
    profile, units = pick_profile(config, job, gpu_profile)
    flops = evaluate_flops(job.run) if job.phase == "evaluate" else train_run_flops(job.run)
    seconds_one = flops / profile.flops_per_s(1)
    return JobCost(
        job.experiment,
        job.phase,
        job.setup,
        flops,
        profile.name,
        units,
        seconds_one / 3600,
        seconds_one / units / 3600,
        float(job.resources.get("runtime", 0)) / 60,
    )


def estimate_study(config: Mapping[str, Any], gpu_profile: str | None = None) -> list[JobCost]:
    """The cost of every tune/train/evaluate job of a validated study config."""
    return [job_cost(config, job, gpu_profile) for job in study_jobs(config)]


# --- the table ------------------------------------------------------------------------------------------


@dataclass
class Row:
    experiment: str
    phase: str
    setup: str
    jobs: int = 0
    pflops: float = 0.0
    device_hours: float = 0.0
    max_job_h: float = 0.0
    runtime_h: float = 0.0
    over: int = 0
    profile: str = ""

    def add(self, cost: JobCost) -> None:
        self.jobs += 1
        self.pflops += cost.flops / 1e15
        self.device_hours += cost.device_hours
        self.max_job_h = max(self.max_job_h, cost.wall_h)
        self.runtime_h = max(self.runtime_h, cost.runtime_h)
        self.over += int(cost.over)
        self.profile = cost.profile if self.profile in ("", cost.profile) else "mixed"


def summarize(costs: Sequence[JobCost]) -> tuple[list[Row], dict[str, Row]]:
    """Rows per experiment × phase × setup (DAG order), and totals per phase plus 'all'."""
    rows: dict[tuple[str, str, str], Row] = {}
    totals = {p: Row("total", p, "") for p in (*PHASES, "all")}
    for c in sorted(costs, key=lambda c: PHASES.index(c.phase)):
        rows.setdefault((c.experiment, c.phase, c.setup), Row(c.experiment, c.phase, c.setup)).add(c)
        totals[c.phase].add(c)
        totals["all"].add(c)
    order = {e: i for i, e in enumerate(dict.fromkeys(c.experiment for c in costs))}
    ranked = sorted(rows.values(), key=lambda r: (order[r.experiment], PHASES.index(r.phase)))
    return ranked, totals


HEADER = ("experiment", "phase", "setup", "jobs", "PFLOP", "device-h", "h/job", "limit h", "over", "profile")


def _cells(r: Row) -> tuple[str, ...]:
    return (
        r.experiment,
        r.phase,
        r.setup,
        str(r.jobs),
        f"{r.pflops:.4g}",
        f"{r.device_hours:.4g}",
        f"{r.max_job_h:.3g}",
        f"{r.runtime_h:.3g}",
        f"{r.over}" + (" !" if r.over else ""),
        r.profile,
    )


def format_table(rows: Sequence[Row], totals: Mapping[str, Row], markdown: bool = False) -> str:
    """Fixed-width text (or a Markdown table); 'h/job' is the longest job's estimated wall time."""
    body = [_cells(r) for r in rows] + [_cells(totals[p]) for p in (*PHASES, "all") if totals[p].jobs]
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in body]) + "\n"
    widths = [max(len(h), *(len(c[i]) for c in body)) for i, h in enumerate(HEADER)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 or i == 9 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join(fmt.format(*line) for line in [HEADER, *body]) + "\n"
