"""The training loop of one run (one setup × one seed × one ρ → one output folder), resumable bitwise.

Per step: `samrepro.optim.step.train_step` (the setup's one- or two-pass step, DESIGN "The algorithms") on a
batch of the epoch's permutation, learning rate set by `schedule.LRSchedule`. Per epoch: evaluation (val
split when tuning, test set / benchmarks otherwise), the mechanism probes on a fixed batch, one history row,
one progress line, and an atomic checkpoint. train_acc: classification = running top-1 of the first-pass
logits over the epoch (augmented batches, as usual); face = nearest class weight by cosine on the
un-augmented training images at the end of the epoch (margin logits would understate it). At the end: model.pt and metrics.json.

No host synchronisation per step (`engine.window`): each step's loss and top-1 hits stay on the device; every
`sync_every` steps and at the epoch's end one read folds them into the epoch sums (in step order, so the
figures equal a per-step read's), checks them for NaN/inf (TrainingDivergedError naming the first bad step
and the checked range; the last good checkpoint stays) and, under DDP, agrees on the stop flag. A single
process sees a SIGTERM at the next step. Batches come from the device-resident set (`data_on_device`,
`loader.DeviceData`) or the worker path (`loader.iterate_train`); on the CPU both give the same batches.

Resume. The checkpoint stores the position of the next step (epoch, step), the model, the optimizer (SAM's
state_dict), the schedule, every RNG state (torch/CUDA/numpy/python per rank, and the data-loader generator
as it was at the start of the epoch), the history rows and the running epoch sums. A resumed run rebuilds
the same epoch permutation, skips the batches already done, restores the RNG states and continues: with
`workers: 0` (or the device-resident path) it replays the uninterrupted run bitwise whether it stopped at an epoch boundary (SIGKILL: the
last per-epoch checkpoint) or in the middle of one (SIGTERM: a checkpoint at the current step).

Layout: `train()` is the algorithm (prepare → restore → per epoch: `run_epoch`, `end_of_epoch` → `finish`);
`Run` holds what stays fixed during training, `RunState` what changes (its `to_checkpoint()` /
`from_checkpoint()` are the run's part of checkpoint.pt).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samrepro.engine import checkpoint as ckpt
from samrepro.engine import distributed as D
from samrepro.engine.config import config_hash, resume_hash
from samrepro.engine.evaluation import (
    autocast,
    classification_accuracy,
    face_train_accuracy,
    mean_verification,
    probe,
    to_device,
    verification_accuracy,
)
from samrepro.engine.loader import (
    DeviceData,
    device_resident_ok,
    epoch_batches,
    get_batch,
    iterate_train,
    steps_per_epoch,
)
from samrepro.engine.records import (
    Progress,
    eval_split,
    provenance,
    resource_usage,
    run_identity,
    write_history,
)
from samrepro.engine.schedule import LRSchedule
from samrepro.engine.window import StepWindow

CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
METRICS = "metrics.json"
HISTORY = "history.csv"
RESOLVED_CONFIG = "run.resolved.yaml"
CHECKPOINT_FORMAT = 1
PROBE_SEED = 20240  # the probe batch is the same images for every setup and seed of a dataset


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/inf; the message names setup, epoch and step (the last good checkpoint stays)."""


class PreemptedError(RuntimeError):
    """SIGTERM arrived: the current state is checkpointed; re-running the same command resumes."""


@dataclass
class StopFlag:
    """Set by the SIGTERM handler; the loop polls it after every step."""

    requested: bool = False
    signum: int | None = None


@dataclass
class Runtime:
    """Resolved execution settings of this process."""

    device: torch.device
    amp: bool
    channels_last: bool
    dist: D.DistInfo = field(default_factory=D.DistInfo)


def resolve_runtime(cfg: dict[str, Any]) -> Runtime:
    """device auto → CUDA when available. `amp`: bf16 autocast on any device (auto = bf16 on a CUDA device
    that supports it, fp32 on the CPU, deterministic); `channels_last`: true anywhere (auto = on CUDA); on CUDA
    also cudnn.benchmark (DESIGN "Execution"). `threads` caps torch's intra-op threads (give 1 when several
    jobs share a small machine: OpenMP threads spinning against each other are slow)."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    want = cfg["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("run config: device='cuda' but no CUDA device is visible; use device: auto or cpu")
    kind = "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"
    info = D.init_distributed(kind)
    device = torch.device(kind, info.local_rank) if kind == "cuda" else torch.device("cpu")
    on_cuda = kind == "cuda"
    if on_cuda:
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
    amp = cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and on_cuda and torch.cuda.is_bf16_supported())
    channels_last = cfg["channels_last"] == "true" or (cfg["channels_last"] == "auto" and on_cuda)
    return Runtime(device=device, amp=amp, channels_last=channels_last, dist=info)


def build_network(cfg: dict[str, Any], setup: Any, bundle: Any) -> nn.Module:
    """Network.build from the config; in_channels follows the dataset unless model.kwargs sets it."""
    from samrepro.models import Network

    model_kw = dict(cfg["model"]["kwargs"])
    model_kw.setdefault("in_channels", int(bundle.input_shape[0]))
    return Network.build(
        setup,
        cfg["model"]["name"],
        bundle.num_classes,
        embedding_dim=cfg["embedding_dim"],
        model_kw=model_kw,
        head_kw=dict(cfg["head"]["kwargs"]),
    )


def param_groups(net: nn.Module, setup: Any, weight_decay: float) -> list[dict[str, Any]]:
    """Face setups: no weight decay on BatchNorm parameters (AdaFace/insightface recipe, DESIGN "Face-track
    details"); classification: decay on every parameter, as the authors' SAM code does."""
    from torch.nn.modules.batchnorm import _BatchNorm

    if setup.task != "face":
        return [{"params": [p for p in net.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    bn_ids = {id(p) for m in net.modules() if isinstance(m, _BatchNorm) for p in m.parameters(recurse=False)}
    decay = [p for p in net.parameters() if p.requires_grad and id(p) not in bn_ids]
    no_decay = [p for p in net.parameters() if p.requires_grad and id(p) in bn_ids]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def load_data(cfg: dict[str, Any]) -> Any:
    from samrepro import data

    ds = cfg["dataset"]
    return data.build(
        ds["name"],
        ds["root"],
        use_validation=cfg["phase"] == "tune",
        val_fraction=ds["val_fraction"],
        split_seed=ds["split_seed"],
        download=ds["download"],
        options=dict(ds["options"]),
    )


def probe_batch(bundle: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of un-augmented training images (same images for every setup and seed)."""
    n = len(bundle.train_eval)
    gen = torch.Generator().manual_seed(PROBE_SEED)
    idx = torch.randperm(n, generator=gen)[: min(size, n)].sort().values.tolist()
    return get_batch(bundle.train_eval, idx)


def evaluate_epoch(net: nn.Module, bundle: Any, cfg: dict[str, Any], rt: Runtime) -> float:
    """eval_acc in percent: top-1 on the eval split (classification) or mean verification accuracy (face)."""
    if bundle.task == "face":
        scores = verification_accuracy(
            net, bundle.verification, cfg["eval_batch_size"], rt.device, rt.amp, rt.channels_last
        )
        return mean_verification(scores)
    return classification_accuracy(
        net, bundle.eval, cfg["eval_batch_size"], rt.device, rt.amp, rt.channels_last
    )["top1"]


def _label(cfg: dict[str, Any]) -> str:
    rho = "" if cfg["rho"] is None else f" rho {cfg['rho']:g}"
    return f"[{cfg['experiment']}/{cfg['setup']} seed {cfg['seed']}{rho}]"


def _zero_sums() -> dict[str, float]:
    return {"loss": 0.0, "correct": 0.0, "count": 0.0}


def _zero_timing() -> dict[str, float]:
    """Timing counters; started_at is the Unix time the run first started (kept across resumes)."""
    return {
        "train_s": 0.0,
        "images": 0.0,
        "epoch_s": 0.0,
        "resumes": 0.0,
        "wall_s": 0.0,
        "started_at": time.time(),
    }


@dataclass
class RunState:
    """Everything of a run that changes while it trains (besides weights, optimizer and RNGs): the position of
    the next step, the epoch's running sums, the timing counters, the history rows, and the data-loader
    generator as the current epoch began (a mid-epoch resume redraws the same permutation from it).
    A checkpoint holds exactly `to_checkpoint()` (plain numbers, lists, dicts and one tensor)."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    sums: dict[str, float] = field(default_factory=_zero_sums)
    timing: dict[str, float] = field(default_factory=_zero_timing)
    epoch_gen_state: torch.Tensor | None = None

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "history": list(self.history),
            "sums": dict(self.sums),
            "timing": dict(self.timing),
            "loader_generator": self.epoch_gen_state,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> RunState:
        return cls(
            epoch=int(state["epoch"]),
            step=int(state["step"]),
            history=list(state["history"]),
            sums=dict(state["sums"]),
            timing=dict(state["timing"]),
            epoch_gen_state=state["loader_generator"],
        )

    def start_epoch(self) -> None:
        """A fresh epoch (step 0): zero the running sums and the epoch's time."""
        self.sums = _zero_sums()
        self.timing["epoch_s"] = 0.0

    def add_time(self, seconds: float, images: int) -> None:
        self.timing["train_s"] += seconds
        self.timing["epoch_s"] += seconds
        self.timing["images"] += images


@dataclass
class Run:
    """What stays fixed while a run trains: config, runtime, data, network, optimizer, schedule, generator."""

    cfg: dict[str, Any]
    out: Path
    stop: StopFlag
    setup: Any
    rt: Runtime
    bundle: Any
    net: nn.Module
    optimizer: Any
    schedule: LRSchedule
    generator: torch.Generator
    probe: tuple[torch.Tensor, torch.Tensor]
    steps: int
    epochs: int
    t_start: float
    device_data: DeviceData | None = None
    train_net: nn.Module | None = None
    wall_base: float = 0.0

    @property
    def info(self) -> D.DistInfo:
        return self.rt.dist

    @property
    def ck_path(self) -> Path:
        return self.out / CHECKPOINT

    def wall_s(self) -> float:
        return self.wall_base + time.perf_counter() - self.t_start


def train(cfg: dict[str, Any], out_dir: str | Path, stop: StopFlag | None = None) -> dict[str, Any]:
    """Train (or resume) the run described by the validated `cfg` into `out_dir`; returns metrics.json."""
    run = prepare(cfg, Path(out_dir), stop or StopFlag())
    state = restore(run)  # from checkpoint.pt when there is one
    run.train_net = D.wrap_ddp(run.net, run.info, run.rt.device)  # after the restore: DDP broadcasts rank 0
    progress = Progress(_label(cfg), run.epochs)
    while state.epoch < run.epochs:
        run_epoch(run, state, progress)  # SIGTERM: checkpoint at the current step, PreemptedError
        end_of_epoch(run, state, progress)  # evaluation, probes, history row, checkpoint
    return finish(run, state)


# ---------------------------------------------------------------- setting up
def prepare(cfg: dict[str, Any], out: Path, stop: StopFlag) -> Run:
    """Check the config against the setup and the processes, build data, network, optimizer and schedule."""
    from samrepro.optim import get_setup

    setup = get_setup(cfg["setup"])
    t_start = time.perf_counter()
    rt = resolve_runtime(cfg)
    _check_run(cfg, setup, rt.dist.world)
    if rt.dist.is_main:
        _prepare_output(cfg, out)
    bundle = load_data(cfg)
    if bundle.task != setup.task:
        raise ValueError(
            f"run config: setup={setup.name!r} is a {setup.task} setup but dataset "
            f"{cfg['dataset']['name']!r} is a {bundle.task} dataset; pick a matching pair"
        )
    net, optimizer = build_model(cfg, setup, bundle, rt)
    steps = steps_per_epoch(len(bundle.train), cfg["batch_size"], min_last=2 * rt.dist.world)
    seed = int(cfg["seed"])
    generator = torch.Generator().manual_seed(seed)
    if rt.dist.rank > 0:  # augmentation/dropout streams differ per rank; the epoch order (generator) does not
        ckpt.seed_everything(seed + 7919 * rt.dist.rank)
    probe_x, probe_y = probe_batch(bundle, cfg["probe_batch_size"])
    return Run(
        cfg=cfg,
        out=out,
        stop=stop,
        setup=setup,
        rt=rt,
        bundle=bundle,
        net=net,
        optimizer=optimizer,
        schedule=LRSchedule(optimizer, cfg["schedule"], steps),
        generator=generator,
        probe=(to_device(probe_x, rt.device, rt.channels_last), probe_y.to(rt.device)),
        steps=steps,
        epochs=int(cfg["schedule"]["epochs"]),
        t_start=t_start,
        device_data=device_data(cfg, bundle, rt),
    )


def _check_run(cfg: dict[str, Any], setup: Any, world: int) -> None:
    if setup.two_pass and cfg["rho"] is None:
        raise ValueError(
            f"run config: rho=None is invalid for setup {setup.name!r}: it perturbs the weights; "
            "set rho (e.g. 0.05)"
        )
    if cfg["batch_size"] % world:
        raise ValueError(
            f"run config: batch_size={cfg['batch_size']} must be divisible by the number of "
            f"processes ({world}); it is the global batch"
        )


def build_model(cfg: dict[str, Any], setup: Any, bundle: Any, rt: Runtime) -> tuple[nn.Module, Any]:
    """The network on the device (initialised from the run's seed, identically on every rank) and its
    optimizer (SGD, or SAM around SGD for the two-pass setups)."""
    from samrepro.optim import build_optimizer

    ckpt.seed_everything(int(cfg["seed"]))
    net = build_network(cfg, setup, bundle).to(rt.device)
    if rt.channels_last:
        net = net.to(memory_format=torch.channels_last)
    oc = cfg["optim"]
    optimizer = build_optimizer(
        setup,
        param_groups(net, setup, oc["weight_decay"]),
        lr=oc["lr"],
        momentum=oc["momentum"],
        weight_decay=oc["weight_decay"],
        nesterov=oc["nesterov"],
        rho=cfg["rho"],
        asam=oc.get("asam"),
    )
    return net, optimizer


def device_data(cfg: dict[str, Any], bundle: Any, rt: Runtime) -> DeviceData | None:
    """`data_on_device`: true → the training set on the device (it must be in memory); auto → so on CUDA
    when it is in memory and small enough (`loader.device_resident_ok`); false → the worker path."""
    want = cfg["data_on_device"]
    if want == "false" or (
        want == "auto" and not (rt.device.type == "cuda" and device_resident_ok(bundle.train))
    ):
        return None
    data = DeviceData(bundle.train, rt.device)
    if rt.dist.is_main:
        mib = data.images.numel() * data.images.element_size() / 2**20
        print(
            f"{_label(cfg)} data: {len(data)} training images ({mib:.0f} MiB) resident on {rt.device}, "
            "augmented there (workers unused)",
            flush=True,
        )
    return data


def _prepare_output(cfg: dict[str, Any], out: Path) -> None:
    """The output folder, without temp files a SIGKILL left behind, and the resolved config in it."""
    import yaml

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(".*.tmp"):  # a temp file of an atomic write that a SIGKILL interrupted
        stale.unlink(missing_ok=True)
    ckpt.atomic_write_text(out / RESOLVED_CONFIG, yaml.safe_dump(cfg, sort_keys=True))


def restore(run: Run) -> RunState:
    """The state of checkpoint.pt (weights, optimizer, schedule, RNGs loaded in place), or a fresh one."""
    if not run.ck_path.exists():
        return RunState(epoch_gen_state=run.generator.get_state())
    saved = ckpt.torch_load(run.ck_path)
    if saved.get("resume_hash") != resume_hash(run.cfg):
        raise ValueError(
            f"{run.ck_path} was written by a run with a different configuration; delete it (or use "
            "another --out folder) to start this run afresh"
        )
    run.net.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.schedule.load_state_dict(saved["scheduler"])
    state = RunState.from_checkpoint(saved)
    state.timing["resumes"] = state.timing.get("resumes", 0.0) + 1
    _restore_rng(run, saved["rng"], state.epoch)
    run.wall_base = float(state.timing.get("wall_s", 0.0))
    if run.info.is_main:
        print(
            f"{_label(run.cfg)} resuming at epoch {state.epoch + 1}, step {state.step} "
            f"(resume #{int(state.timing['resumes'])})",
            flush=True,
        )
    return state


def _restore_rng(run: Run, rngs: list[Any], epoch: int) -> None:
    info = run.info
    if len(rngs) == info.world:
        ckpt.restore_rng(rngs[info.rank])
    else:  # a different number of processes: the run continues correctly, but not bitwise
        ckpt.seed_everything(int(run.cfg["seed"]) + 104729 * (epoch + 1) + 7919 * info.rank)


# ---------------------------------------------------------------- one epoch
def run_epoch(run: Run, state: RunState, progress: Progress) -> None:
    """The epoch's remaining steps (from state.step). Nothing is read back from the device between host syncs
    (every `sync_every` steps and at the end): they fold the window's losses and hits into state.sums, check
    them for NaN/inf and, under DDP, agree on the stop flag. A stop request saves a checkpoint and raises."""
    from samrepro.optim.step import train_step

    if state.step == 0:
        state.start_epoch()
    run.generator.set_state(state.epoch_gen_state)  # mid-epoch: the same permutation as before the stop
    window = StepWindow(run.cfg["sync_every"], run.rt.device, first_step=state.step)
    run.net.train()
    t_epoch, images = time.perf_counter(), 0
    for x, y in _epoch_batches(run, state):
        _step(run, state, train_step, x, y, window)
        images += int(y.shape[0])
        state.step += 1
        local_stop = run.stop.requested and not run.info.enabled  # one process: a stop is seen at once
        if window.full() or state.step == run.steps or local_stop:
            stop = _sync(run, state, window, progress)
            if stop and state.step < run.steps:
                state.add_time(time.perf_counter() - t_epoch, images * run.info.world)
                _preempt(run, state, f"at epoch {state.epoch + 1}, step {state.step}/{run.steps}")
    state.add_time(time.perf_counter() - t_epoch, images * run.info.world)


def _epoch_batches(run: Run, state: RunState) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's batches from state.step on, augmented, on the training device (channels_last if set)."""
    cfg, info, rt = run.cfg, run.info, run.rt
    if run.device_data is not None:
        idx = run.device_data.epoch_indices(
            cfg["batch_size"], run.generator, info.rank, info.world, min_last=2 * info.world
        )
        batches: Iterator[tuple[torch.Tensor, torch.Tensor]] = run.device_data.batches(idx[state.step :])
    else:
        order = epoch_batches(
            len(run.bundle.train),
            cfg["batch_size"],
            run.generator,
            info.rank,
            info.world,
            min_last=2 * info.world,
        )
        batches = iterate_train(
            run.bundle.train,
            order[state.step :],
            cfg["workers"],
            run.generator,
            pin_memory=rt.device.type == "cuda",
        )
    for x, y in batches:
        yield to_device(x, rt.device, rt.channels_last), y.to(rt.device, non_blocking=True)


def _step(
    run: Run, state: RunState, train_step: Any, x: torch.Tensor, y: torch.Tensor, window: StepWindow
) -> None:
    """One training step at the scheduled learning rate; its loss and hits go to the window (no host read)."""
    run.schedule.set(state.epoch, state.step)
    if run.info.enabled and run.setup.two_pass and not run.cfg["ddp_sync_perturbation"]:
        run.train_net.skip_next_sync()
    with autocast(run.rt.device, run.rt.amp):
        result = train_step(
            run.train_net,
            run.optimizer,
            run.setup,
            x,
            y,
            label_smoothing=float(run.cfg["optim"]["label_smoothing"]),
        )
    window.record(result.loss, result.logits, y)


def _sync(run: Run, state: RunState, window: StepWindow, progress: Progress) -> bool:
    """The one host read of a window: fold it into state.sums (NaN/inf → TrainingDivergedError naming the
    first bad step), update the progress bar; returns the stop decision. Under DDP the stop flag and the count
    of non-finite losses are summed over ranks in the same read, so every rank stops, or diverges, together."""
    checked_from = window.first_step
    rows, agreed = window.drain(_agreement(run, window))
    for i, (loss, correct, n) in enumerate(rows):
        if not math.isfinite(loss):
            raise _diverged(
                run,
                state,
                f"is {loss} at epoch {state.epoch + 1}, step {checked_from + i + 1}/{run.steps}",
                checked_from,
            )
        state.sums["loss"] += loss * n
        state.sums["correct"] += correct
        state.sums["count"] += n
    if agreed and agreed[1] > 0:
        raise _diverged(
            run, state, f"became NaN/inf on another process at epoch {state.epoch + 1}", checked_from
        )
    if rows:
        progress.bar(state.epoch, state.step, run.steps, rows[-1][0])
    return agreed[0] > 0 if agreed else run.stop.requested


def _agreement(run: Run, window: StepWindow) -> torch.Tensor | None:
    """DDP: [stop requests, non-finite losses] summed over ranks, on the device (read with the window)."""
    if not run.info.enabled:
        return None
    stop = torch.full((1,), float(run.stop.requested), dtype=torch.float64, device=run.rt.device)
    flags = torch.cat([stop, window.nonfinite().reshape(1)])
    return D.all_reduce_tensor_(flags, run.info)


def _stop_requested(run: Run) -> bool:
    """The SIGTERM flag, agreed by all ranks (every rank must take the same decision or the others hang)."""
    want = run.stop.requested
    if run.info.enabled:
        want = D.all_reduce_sum([float(want)], run.info, run.rt.device)[0] > 0
    return want


def _preempt(run: Run, state: RunState, where: str, save: bool = True) -> None:
    if save:
        state.timing["wall_s"] = run.wall_s()
        save_checkpoint(run, state)
    raise PreemptedError(
        f"{_label(run.cfg)} stopped by signal {run.stop.signum} {where}; checkpoint saved to "
        f"{run.ck_path}; run again to resume"
    )


def _diverged(run: Run, state: RunState, what: str, checked_from: int) -> TrainingDivergedError:
    """`what`: the bad value and where; the host check covered the steps checked_from+1..state.step."""
    kept = (
        f"the last good checkpoint ({run.ck_path}) is kept"
        if run.ck_path.exists()
        else "no epoch had completed, so no checkpoint was written"
    )
    return TrainingDivergedError(
        f"setup {run.setup.name!r} (seed {run.cfg['seed']}, rho {run.cfg['rho']}): the training loss {what} "
        f"(found by the host check of steps {checked_from + 1}-{state.step}; sync_every={run.cfg['sync_every']}); "
        f"training stopped and {kept}. Lower optim.lr or rho, or add warmup (schedule.warmup_epochs)."
    )


def save_checkpoint(run: Run, state: RunState) -> None:
    """checkpoint.pt: the run state, weights, optimizer, schedule, every rank's RNGs, the config's hashes."""
    rng = D.gather_objects(ckpt.capture_rng(), run.info)
    if run.info.is_main:
        ckpt.atomic_torch_save(
            run.ck_path,
            {
                "format": CHECKPOINT_FORMAT,
                **state.to_checkpoint(),
                "model": run.net.state_dict(),
                "optimizer": run.optimizer.state_dict(),
                "scheduler": run.schedule.state_dict(),
                "rng": rng,
                "resume_hash": resume_hash(run.cfg),
                "config_hash": config_hash(run.cfg),
                "world_size": run.info.world,
            },
        )
    D.barrier(run.info)


# ---------------------------------------------------------------- end of epoch, end of run
def end_of_epoch(run: Run, state: RunState, progress: Progress) -> None:
    """History row (train figures over ranks, evaluation and probes on rank 0), checkpoint, progress line."""
    row = _epoch_row(run, state)
    state.history.append(row)
    state.epoch, state.step = state.epoch + 1, 0
    state.sums = _zero_sums()
    state.epoch_gen_state = run.generator.get_state()  # as the next epoch will begin
    state.timing["wall_s"] = run.wall_s()
    save_checkpoint(run, state)
    if run.info.is_main:
        write_history(run.out / HISTORY, state.history)
        progress.epoch_line(row)
    if _stop_requested(run) and state.epoch < run.epochs:
        _preempt(run, state, f"after epoch {state.epoch}", save=False)  # the checkpoint above is the one


def _epoch_row(run: Run, state: RunState) -> dict[str, Any]:
    cfg, rt, bundle = run.cfg, run.rt, run.bundle
    sums = state.sums
    loss_sum, correct, count = D.all_reduce_sum(
        [sums["loss"], sums["correct"], sums["count"]], run.info, rt.device
    )
    row: dict[str, Any] = {
        "epoch": state.epoch + 1,
        "lr": run.schedule.last_lr,
        "train_loss": loss_sum / count,
        "train_acc": 100.0 * correct / count,
    }
    if run.info.is_main:
        if bundle.task == "face":  # margin logits understate it (the margin penalizes the true class)
            row["train_acc"] = face_train_accuracy(
                run.net, bundle.train_eval, cfg["eval_batch_size"], rt.device, rt.amp, rt.channels_last
            )
        row["eval_acc"] = evaluate_epoch(run.net, bundle, cfg, rt)
        row.update(probe(run.net, *run.probe))
    row["epoch_time_s"] = state.timing["epoch_s"]
    return row


def finish(run: Run, state: RunState) -> dict[str, Any]:
    """model.pt and metrics.json on rank 0 (empty dict elsewhere), then leave the process group."""
    metrics: dict[str, Any] = {}
    if run.info.is_main:
        state.timing["wall_s"] = run.wall_s()
        metrics = finalize(run.cfg, run.out, run.net, run.bundle, state.history, state.timing, run.rt)
    D.barrier(run.info)
    D.shutdown(run.info)
    return metrics


def finalize(
    cfg: dict[str, Any],
    out: Path,
    net: nn.Module,
    bundle: Any,
    history: list[dict[str, Any]],
    timing: dict[str, float],
    rt: Runtime,
) -> dict[str, Any]:
    """model.pt (weights + what evaluate needs to rebuild the net) and metrics.json."""
    last = history[-1]
    ckpt.atomic_torch_save(
        out / MODEL,
        {
            "model": net.state_dict(),
            "config": cfg,
            "task": bundle.task,
            "num_classes": bundle.num_classes,
            "input_shape": tuple(bundle.input_shape),
        },
    )
    prov = provenance()
    metrics = {
        **run_identity(cfg),
        "epochs": int(cfg["schedule"]["epochs"]),
        "task": bundle.task,
        "dataset": cfg["dataset"]["name"],
        "model": cfg["model"]["name"],
        "eval_split": eval_split(cfg),
        "train_loss": last["train_loss"],
        "train_acc": last["train_acc"],
        "eval_acc": last["eval_acc"],
        "selection_score": last["eval_acc"],
        "probe_ce_loss": last.get("probe_ce_loss"),
        "probe_aace_loss": last.get("probe_aace_loss"),
        "probe_ce_grad_norm": last.get("probe_ce_grad_norm"),
        "probe_aace_grad_norm": last.get("probe_aace_grad_norm"),
        "wall_time_s": timing["wall_s"],
        "train_time_s": timing["train_s"],
        "images_per_s": timing["images"] / timing["train_s"] if timing["train_s"] > 0 else None,
        "resumes": int(timing.get("resumes", 0)),
        "device": rt.device.type,
        "device_name": _device_name(rt.device),
        "amp": "bf16" if rt.amp else "off",
        "world_size": rt.dist.world,
        "channels_last": rt.channels_last,
        "sync_every": int(cfg["sync_every"]),
        "data_on_device": cfg["data_on_device"],
        **resource_usage(rt.device),
        "start_time": timing.get("started_at"),
        "end_time": time.time(),  # Unix s: the MLflow run's span
        "versions": prov["versions"],
        "slurm_job_id": prov["slurm_job_id"],
        "host": prov["host"],
        "slurm_array_job_id": prov["slurm_array_job_id"],
        "slurm_array_task_id": prov["slurm_array_task_id"],
        "config_hash": config_hash(cfg),
    }
    ckpt.atomic_write_json(out / METRICS, metrics)
    return metrics


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()
