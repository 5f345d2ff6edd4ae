"""A rule submitted as SLURM arrays must request the same resources in every experiment (the plugin gives every
task of an array its first job's resources)."""

from samrepro.study.config import array_resource_conflict


def study(train_a: dict, train_b: dict) -> dict:
    base = {"cpus_per_task": 8, "mem_mb": 32000, "runtime": 60, "gpu": 1}
    return {
        "resources": {k: dict(base) for k in ("tune", "train", "evaluate")},
        "experiments": {
            "a": {"setups": ["SGD", "SAM"], "resources": {"train": train_a}},
            "b": {"setups": ["SGD", "SAM"], "resources": {"train": train_b}},
        },
    }


def test_unequal_resources_refused_only_for_array_rules():
    cfg = study({"gpu": 1}, {"gpu": 4})
    problem = array_resource_conflict(cfg, {"tune", "train", "evaluate"})
    assert problem is not None and "resources.train" in problem and "gpu 1 vs 4" in problem
    assert "--slurm-array-jobs none" in problem
    assert array_resource_conflict(cfg, {"all"}) is not None
    assert array_resource_conflict(cfg, {"tune", "evaluate"}) is None  # train goes job by job
    assert array_resource_conflict(cfg, set()) is None  # not the SLURM executor, or arrays off


def test_equal_resources_go_as_arrays():
    assert array_resource_conflict(study({"gpu": 2}, {"gpu": 2}), {"train"}) is None


def test_experiments_without_tuning_jobs_do_not_count_for_the_tune_array():
    cfg = study({"gpu": 1}, {"gpu": 1})
    cfg["resources"]["tune"]["gpu"] = 1
    cfg["experiments"]["a"]["setups"] = ["SAM"]  # tuned: has tune jobs
    cfg["experiments"]["b"]["setups"] = ["SGD"]  # rho-free: no tune job
    cfg["experiments"]["b"]["resources"]["tune"] = {"gpu": 4}  # never requested by any job
    assert array_resource_conflict(cfg, {"tune"}) is None
    cfg["experiments"]["b"]["setups"] = ["SGD", "SAM"]
    assert "resources.tune" in array_resource_conflict(cfg, {"tune"})


def test_a_study_without_any_tuning_job_passes():
    cfg = study({"gpu": 1}, {"gpu": 1})
    for exp in cfg["experiments"].values():
        exp["setups"] = ["SGD"]
    assert array_resource_conflict(cfg, {"tune", "train", "evaluate"}) is None
