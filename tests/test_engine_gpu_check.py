"""bench/gpu_check.py (`make gpu-check`) on the CPU with a small model, so the GPU acceptance script never rots:
every figure is produced through the engine's loop, the host-read count meets the target, and the tiny study
it would run is a valid study config."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_on_cpu_gives_every_figure(tmp_path, capsys) -> None:
    gc = _gpu_check()
    out = tmp_path / "gc.json"
    argv = [
        "--device",
        "cpu",
        "--model",
        "small_cnn",
        "--model-kwargs",
        '{"width": 4}',
        "--batch-size",
        "8",
        "--steps",
        "2",
        "--sync-steps",
        "100",
        "--no-study",
        "--json",
        str(out),
    ]
    assert gc.main(argv) == 0
    res = json.loads(out.read_text())
    assert res["environment"]["torch"] and res["environment"]["device"] == "cpu"
    for name in ("SGD", "SAM", "AACE"):
        for precision, amp in (("fp32", "off"), ("bf16", "bf16")):
            run = res["runs"][f"{name}/{precision}"]
            assert run["images_per_s"] > 0 and run["amp"] == amp and run["channels_last"] is (amp == "bf16")
    for key in (
        "sam_over_sgd_fp32",
        "sam_over_sgd_bf16",
        "aace_over_sgd_fp32",
        "aace_over_sgd_bf16",
        "sam_bf16_speedup",
        "sam_bf16_sync_every_default_over_1",
        "loader_images_per_s",
    ):
        assert res[key] > 0, key
    assert res["runs"]["SAM/bf16/sync_every=1"]["host_reads_per_100_steps"] == 100.0  # one read per step
    assert res["host_syncs_per_100_steps"] == 2.0 and res["targets"]["host_syncs"]  # steps 50 and 100
    assert "SAM/SGD" in capsys.readouterr().out


def test_gpu_check_tiny_study_is_a_valid_study() -> None:
    from samrepro.study.config import check_study, validate_schema

    study = validate_schema(_gpu_check().tiny_study("cuda"))
    check_study(study)
    assert {e["device"] for e in study["experiments"].values()} == {"cuda"}
