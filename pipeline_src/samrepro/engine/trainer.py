"""The training loop of one run (one setup × one seed × one ρ → one output folder), resumable bitwise.

Per step: `samrepro.optim.step.train_step` (the setup's one- or two-pass step, DESIGN "The algorithms") on a
batch of the epoch's permutation, learning rate set by `schedule.LRSchedule`. Per epoch: evaluation (val
split when tuning, test set / benchmarks otherwise), the mechanism probes on a fixed batch, one history row,
one progress line, and an atomic checkpoint. train_acc: classification = running top-1 of the first-pass
logits over the epoch (augmented batches, as usual); face = nearest class weight by cosine on the
un-augmented training images at the end of the epoch (margin logits would understate it). At the end: model.pt and metrics.json.

Resume. The checkpoint stores the position of the next step (epoch, step), the model, the optimizer (SAM's
state_dict), the schedule, every RNG state (torch/CUDA/numpy/python per rank, and the data-loader generator
as it was at the start of the epoch), the history rows and the running epoch sums. A resumed run rebuilds
the same epoch permutation, skips the batches already done, restores the RNG states and continues: with
`workers: 0` it replays the uninterrupted run bitwise whether it stopped at an epoch boundary (SIGKILL: the
last per-epoch checkpoint) or in the middle of one (SIGTERM: a checkpoint at the current step).
"""

from __future__ import annotations

import math
import time
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
from samrepro.engine.loader import epoch_batches, get_batch, iterate_train, steps_per_epoch
from samrepro.engine.records import Progress, provenance, write_history
from samrepro.engine.schedule import LRSchedule

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
    """device auto → CUDA when available; on CUDA: bf16 autocast, channels_last, cudnn.benchmark (DESIGN
    "Execution"); on CPU: fp32 and no channels_last (deterministic). `threads` caps torch's intra-op threads
    (give 1 when several jobs share a small machine: OpenMP threads spinning against each other are slow)."""
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    want = cfg["device"]
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("run config: device='cuda' but no CUDA device is visible; use device: auto or cpu")
    kind = "cuda" if want == "cuda" or (want == "auto" and torch.cuda.is_available()) else "cpu"
    info = D.init_distributed(kind)
    device = torch.device(kind, info.local_rank) if kind == "cuda" else torch.device("cpu")
    if kind == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = True
        amp = cfg["amp"] == "bf16" or (cfg["amp"] == "auto" and torch.cuda.is_bf16_supported())
        channels_last = cfg["channels_last"] in ("auto", "true")
    else:
        if cfg["amp"] == "bf16":
            raise ValueError("run config: amp='bf16' needs a CUDA device; use amp: auto or off on CPU")
        amp = False
        channels_last = cfg["channels_last"] == "true"
    return Runtime(device=device, amp=amp, channels_last=channels_last, dist=info)


def build_network(cfg: dict[str, Any], setup: Any, bundle: Any) -> nn.Module:
    """Network.build from the config; in_channels follows the dataset unless model.kwargs sets it."""
    from samrepro.models import Network

    model_kw = dict(cfg["model"]["kwargs"])
    model_kw.setdefault("in_channels", int(bundle.input_shape[0]))
    return Network.build(setup, cfg["model"]["name"], bundle.num_classes, embedding_dim=cfg["embedding_dim"],
                         model_kw=model_kw, head_kw=dict(cfg["head"]["kwargs"]))


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
    return data.build(ds["name"], ds["root"], use_validation=cfg["phase"] == "tune",
                      val_fraction=ds["val_fraction"], split_seed=ds["split_seed"], download=ds["download"],
                      options=dict(ds["options"]))


def probe_batch(bundle: Any, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed batch of un-augmented training images (same images for every setup and seed)."""
    n = len(bundle.train_eval)
    gen = torch.Generator().manual_seed(PROBE_SEED)
    idx = torch.randperm(n, generator=gen)[: min(size, n)].sort().values.tolist()
    return get_batch(bundle.train_eval, idx)


def evaluate_epoch(net: nn.Module, bundle: Any, cfg: dict[str, Any], rt: Runtime) -> float:
    """eval_acc in percent: top-1 on the eval split (classification) or mean verification accuracy (face)."""
    if bundle.task == "face":
        scores = verification_accuracy(net, bundle.verification, cfg["eval_batch_size"], rt.device, rt.amp,
                                       rt.channels_last)
        return mean_verification(scores)
    return classification_accuracy(net, bundle.eval, cfg["eval_batch_size"], rt.device, rt.amp,
                                   rt.channels_last)["top1"]


def _label(cfg: dict[str, Any]) -> str:
    rho = "" if cfg["rho"] is None else f" rho {cfg['rho']:g}"
    return f"[{cfg['experiment']}/{cfg['setup']} seed {cfg['seed']}{rho}]"


def _state(epoch: int, step: int, net: nn.Module, optimizer: Any, schedule: LRSchedule, rng: list[Any],
           epoch_gen_state: torch.Tensor, history: list[dict[str, Any]], sums: dict[str, float],
           timing: dict[str, float], cfg: dict[str, Any], world: int) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "epoch": epoch, "step": step, "model": net.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(), "rng": rng,
            "loader_generator": epoch_gen_state, "history": history, "sums": dict(sums),
            "timing": dict(timing), "resume_hash": resume_hash(cfg), "config_hash": config_hash(cfg),
            "world_size": world}


def train(cfg: dict[str, Any], out_dir: str | Path, stop: StopFlag | None = None) -> dict[str, Any]:
    """Train (or resume) the run described by the validated `cfg` into `out_dir`; returns metrics.json."""
    from samrepro.optim import build_optimizer, get_setup
    from samrepro.optim.step import train_step

    t_start = time.perf_counter()
    stop = stop or StopFlag()
    out = Path(out_dir)
    setup = get_setup(cfg["setup"])
    if setup.two_pass and cfg["rho"] is None:
        raise ValueError(f"run config: rho=None is invalid for setup {setup.name!r}: it perturbs the weights; "
                         "set rho (e.g. 0.05)")
    rt = resolve_runtime(cfg)
    info = rt.dist
    if cfg["batch_size"] % info.world:
        raise ValueError(f"run config: batch_size={cfg['batch_size']} must be divisible by the number of "
                         f"processes ({info.world}); it is the global batch")
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(".*.tmp"):  # a temp file of an atomic write that a SIGKILL interrupted
            stale.unlink(missing_ok=True)
        import yaml

        ckpt.atomic_write_text(out / RESOLVED_CONFIG, yaml.safe_dump(cfg, sort_keys=True))

    bundle = load_data(cfg)
    if bundle.task != setup.task:
        raise ValueError(f"run config: setup={setup.name!r} is a {setup.task} setup but dataset "
                         f"{cfg['dataset']['name']!r} is a {bundle.task} dataset; pick a matching pair")
    seed = int(cfg["seed"])
    ckpt.seed_everything(seed)  # model initialisation is the same on every rank (DDP also broadcasts it)
    net = build_network(cfg, setup, bundle).to(rt.device)
    if rt.channels_last:
        net = net.to(memory_format=torch.channels_last)
    oc = cfg["optim"]
    optimizer = build_optimizer(setup, param_groups(net, setup, oc["weight_decay"]), lr=oc["lr"],
                                momentum=oc["momentum"], weight_decay=oc["weight_decay"],
                                nesterov=oc["nesterov"], rho=cfg["rho"])
    n_train = len(bundle.train)
    epochs = int(cfg["schedule"]["epochs"])
    steps = steps_per_epoch(n_train, cfg["batch_size"], min_last=2 * info.world)
    schedule = LRSchedule(optimizer, cfg["schedule"], steps)
    generator = torch.Generator().manual_seed(seed)
    if info.rank > 0:  # augmentation/dropout streams differ per rank; the epoch order (generator) does not
        ckpt.seed_everything(seed + 7919 * info.rank)
    probe_x, probe_y = probe_batch(bundle, cfg["probe_batch_size"])
    probe_x, probe_y = to_device(probe_x, rt.device, rt.channels_last), probe_y.to(rt.device)

    epoch, start_step, history, resumes = 0, 0, [], 0
    sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    timing = {"train_s": 0.0, "images": 0.0, "epoch_s": 0.0, "resumes": 0.0, "wall_s": 0.0}
    epoch_gen_state = generator.get_state()
    ck_path = out / CHECKPOINT
    if ck_path.exists():
        state = ckpt.torch_load(ck_path)
        if state.get("resume_hash") != resume_hash(cfg):
            raise ValueError(f"{ck_path} was written by a run with a different configuration; delete it (or use "
                             "another --out folder) to start this run afresh")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        epoch, start_step = int(state["epoch"]), int(state["step"])
        history, sums, timing = list(state["history"]), dict(state["sums"]), dict(state["timing"])
        timing["resumes"] = timing.get("resumes", 0.0) + 1
        epoch_gen_state = state["loader_generator"]
        generator.set_state(epoch_gen_state)
        rngs = state["rng"]
        if len(rngs) == info.world:
            ckpt.restore_rng(rngs[info.rank])
        else:  # a different number of processes: the run continues correctly, but not bitwise
            ckpt.seed_everything(seed + 104729 * (epoch + 1) + 7919 * info.rank)
        resumes = int(timing["resumes"])
        if info.is_main:
            print(f"{_label(cfg)} resuming at epoch {epoch + 1}, step {start_step} (resume #{resumes})",
                  flush=True)
    wall_base = float(timing.get("wall_s", 0.0))

    train_net = D.wrap_ddp(net, info, rt.device)
    module = net
    progress = Progress(_label(cfg), epochs)
    label_smoothing = float(oc["label_smoothing"])
    skip_sync = info.enabled and setup.two_pass and not cfg["ddp_sync_perturbation"]

    def save(ep: int, st: int) -> None:
        rng = D.gather_objects(ckpt.capture_rng(), info)
        if info.is_main:
            # mid-epoch: the generator as the epoch began (the resume redraws the same permutation);
            # at a boundary: as the next epoch will begin
            gen_state = epoch_gen_state if st > 0 else generator.get_state()
            ckpt.atomic_torch_save(ck_path, _state(ep, st, module, optimizer, schedule, rng, gen_state,
                                                   history, sums, timing, cfg, info.world))
        D.barrier(info)

    while epoch < epochs:
        if start_step == 0:
            epoch_gen_state = generator.get_state()
            sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
            timing["epoch_s"] = 0.0
        else:
            generator.set_state(epoch_gen_state)
        batches = epoch_batches(n_train, cfg["batch_size"], generator, info.rank, info.world,
                                min_last=2 * info.world)
        net.train()
        t_epoch = time.perf_counter()
        step = start_step
        seg_images = 0
        lr = schedule.last_lr
        for x, y in iterate_train(bundle.train, batches[start_step:], cfg["workers"], generator,
                                  pin_memory=rt.device.type == "cuda"):
            lr = schedule.set(epoch, step)
            x, y = to_device(x, rt.device, rt.channels_last), y.to(rt.device, non_blocking=True)
            if skip_sync:
                train_net.skip_next_sync()
            with autocast(rt.device, rt.amp):
                result = train_step(train_net, optimizer, setup, x, y, label_smoothing=label_smoothing)
            if not math.isfinite(result.loss):
                kept = (f"the last good checkpoint ({ck_path}) is kept" if ck_path.exists()
                        else "no epoch had completed, so no checkpoint was written")
                raise TrainingDivergedError(
                    f"setup {setup.name!r} (seed {seed}, rho {cfg['rho']}): the training loss is {result.loss} at "
                    f"epoch {epoch + 1}, step {step + 1}/{steps}; training stopped and {kept}. "
                    "Lower optim.lr or rho, or add warmup (schedule.warmup_epochs).")
            n = int(y.shape[0])
            seg_images += n
            sums["loss"] += result.loss * n
            sums["correct"] += float((result.logits.argmax(dim=1) == y).sum())
            sums["count"] += n
            step += 1
            progress.bar(epoch, step, steps, result.loss)
            want_stop = stop.requested
            if info.enabled:
                want_stop = D.all_reduce_sum([float(want_stop)], info, rt.device)[0] > 0
            if want_stop and step < steps:
                dt = time.perf_counter() - t_epoch
                timing["train_s"] += dt
                timing["epoch_s"] += dt
                timing["images"] += seg_images * info.world
                timing["wall_s"] = wall_base + time.perf_counter() - t_start
                save(epoch, step)
                raise PreemptedError(f"{_label(cfg)} stopped by signal {stop.signum} at epoch {epoch + 1}, step "
                                     f"{step}/{steps}; checkpoint saved to {ck_path}; run again to resume")
        dt = time.perf_counter() - t_epoch
        timing["train_s"] += dt
        timing["epoch_s"] += dt
        loss_sum, correct, count = D.all_reduce_sum([sums["loss"], sums["correct"], sums["count"]], info,
                                                    rt.device)
        timing["images"] += seg_images * info.world
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / count,
                               "train_acc": 100.0 * correct / count}
        if info.is_main:
            if bundle.task == "face":  # margin logits understate it (the margin penalizes the true class)
                row["train_acc"] = face_train_accuracy(module, bundle.train_eval, cfg["eval_batch_size"],
                                                       rt.device, rt.amp, rt.channels_last)
            row["eval_acc"] = evaluate_epoch(module, bundle, cfg, rt)
            row.update(probe(module, probe_x, probe_y))
        row["epoch_time_s"] = timing["epoch_s"]
        history.append(row)
        epoch += 1
        start_step = 0
        sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
        timing["wall_s"] = wall_base + time.perf_counter() - t_start
        save(epoch, 0)
        if info.is_main:
            write_history(out / HISTORY, history)
            progress.epoch_line(row)
        want_stop = stop.requested
        if info.enabled:  # every rank must take the same decision, or the others wait forever
            want_stop = D.all_reduce_sum([float(want_stop)], info, rt.device)[0] > 0
        if want_stop and epoch < epochs:
            raise PreemptedError(f"{_label(cfg)} stopped by signal {stop.signum} after epoch {epoch}; "
                                 f"checkpoint saved to {ck_path}; run again to resume")

    metrics: dict[str, Any] = {}
    if info.is_main:
        timing["wall_s"] = wall_base + time.perf_counter() - t_start
        metrics = finalize(cfg, out, module, bundle, history, timing, rt)
    D.barrier(info)
    D.shutdown(info)
    return metrics


def finalize(cfg: dict[str, Any], out: Path, net: nn.Module, bundle: Any, history: list[dict[str, Any]],
             timing: dict[str, float], rt: Runtime) -> dict[str, Any]:
    """model.pt (weights + what evaluate needs to rebuild the net) and metrics.json."""
    last = history[-1]
    ckpt.atomic_torch_save(out / MODEL, {"model": net.state_dict(), "config": cfg, "task": bundle.task,
                                         "num_classes": bundle.num_classes,
                                         "input_shape": tuple(bundle.input_shape)})
    prov = provenance()
    metrics = {
        "study": cfg["study"], "experiment": cfg["experiment"], "setup": cfg["setup"], "seed": cfg["seed"],
        "rho": cfg["rho"], "phase": cfg["phase"], "epochs": int(cfg["schedule"]["epochs"]),
        "task": bundle.task, "dataset": cfg["dataset"]["name"], "model": cfg["model"]["name"],
        "eval_split": "val" if cfg["phase"] == "tune" else "test",
        "train_loss": last["train_loss"], "train_acc": last["train_acc"], "eval_acc": last["eval_acc"],
        "selection_score": last["eval_acc"],
        "probe_ce_loss": last.get("probe_ce_loss"), "probe_aace_loss": last.get("probe_aace_loss"),
        "probe_ce_grad_norm": last.get("probe_ce_grad_norm"),
        "probe_aace_grad_norm": last.get("probe_aace_grad_norm"),
        "wall_time_s": timing["wall_s"],
        "train_time_s": timing["train_s"],
        "images_per_s": timing["images"] / timing["train_s"] if timing["train_s"] > 0 else None,
        "resumes": int(timing.get("resumes", 0)),
        "device": rt.device.type, "device_name": _device_name(rt.device), "amp": "bf16" if rt.amp else "off",
        "world_size": rt.dist.world,
        "versions": prov["versions"], "slurm_job_id": prov["slurm_job_id"], "host": prov["host"],
        "config_hash": config_hash(cfg),
    }
    ckpt.atomic_write_json(out / METRICS, metrics)
    return metrics


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()
