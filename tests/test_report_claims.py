"""The report decides the papers' claims: verdict rules on synthetic seeds, the declared claims file, NaN seeds
shown and counted, and a paper-study report (config/paper.yaml) rendered from synthetic per-seed results."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_synthetic import classification_eval, face_eval, write_run

from samrepro.cli import main
from samrepro.report import stats
from samrepro.report.claims import evaluate_claims, study_claims
from samrepro.report.published import check_claims, check_study_claims, load_claims
from samrepro.study.config import load_study, task_of

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper_results.yaml"
CLAIMS = ROOT / "config" / "claims.yaml"
EXPS = {"e": {"setups": ["SGD", "SAM", "AACE"], "task": "classification"}}


def frame(values: dict[str, list[float]], experiment: str = "e", metric: str = "test_top1") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"experiment": experiment, "setup": s, "seed": i, "rho": None, "metric": metric, "value": v}
            for s, vs in values.items()
            for i, v in enumerate(vs)
        ]
    )


def claim(setup: str = "SAM", baseline: str = "SGD", **kw) -> dict:
    return {
        "experiment": "e",
        "setup": setup,
        "baseline": baseline,
        "metric": "test_top1",
        "direction": "greater",
        "source": "test",
        **kw,
    }


def one(claims: list[dict], values: dict[str, list[float]], paper: dict | None = None) -> dict:
    return evaluate_claims(claims, frame(values), EXPS, paper or {}).to_dict("records")[0]


def test_large_effect_is_reproduced_and_the_reverse_contradicted():
    rng = np.random.default_rng(0)
    low, high = list(80 + 0.2 * rng.standard_normal(5)), list(85 + 0.2 * rng.standard_normal(5))
    up = one([claim()], {"SAM": high, "SGD": low})
    assert up["verdict"] == "reproduced" and up["p_holm"] < 1e-6 and up["ci_low"] > 4
    down = one([claim()], {"SAM": low, "SGD": high})
    assert down["verdict"] == "contradicted" and down["ci_high"] < 0
    assert down["p_one_sided"] > 0.99  # the one-sided p looks the claimed way


def test_noise_is_inconclusive_with_the_seeds_it_would_take():
    sam, sgd = [84.0, 84.6, 83.8], [83.9, 84.3, 83.7]
    row = one([claim()], {"SAM": sam, "SGD": sgd})
    assert row["verdict"] == "inconclusive"
    n = stats.seeds_needed(np.mean(sam) - np.mean(sgd), np.std(sam, ddof=1), np.std(sgd, ddof=1))
    assert row["seeds_needed"] == n and n > 3 and row["seeds_basis"] == "observed Δ"
    assert row["verdict_text"] == f"inconclusive — needs ≈ {n} seeds per arm"
    # with a published Δ, the seeds are planned for it (here +0.3 with the observed stds)
    paper = {"p": {"SAM": 84.3, "SGD": 84.0}}
    pub = one([claim(paper={"path": "p"})], {"SAM": sam, "SGD": sgd}, paper)
    assert pub["published_delta"] == pytest.approx(0.3) and pub["seeds_basis"] == "published Δ"
    assert pub["seeds_needed"] == stats.seeds_needed(0.3, np.std(sam, ddof=1), np.std(sgd, ddof=1))
    assert pub["mde"] == pytest.approx(
        stats.min_detectable_effect(np.std(sam, ddof=1), np.std(sgd, ddof=1), 3, 3)
    )
    assert pub["hedges_g"] == pytest.approx(stats.hedges_g(sam, sgd))
    # a published Δ that the seeds run would have shown: ours is smaller (SAM paper: +2.0 on CIFAR-100)
    big = one([claim(paper={"path": "p"})], {"SAM": sam, "SGD": sgd}, {"p": {"SAM": 86.0, "SGD": 84.0}})
    assert big["verdict"] == "inconclusive" and big["seeds_needed"] <= 3
    assert big["verdict_text"].endswith("and 3 ran: ours is smaller than published")


def test_one_seed_plans_with_the_published_std_and_holm_spans_the_study():
    paper = {"p": {"SAM": [84.3, 0.2], "SGD": [84.0, 0.1], "AACE": [84.5, 0.3]}}
    row = one([claim(paper={"path": "p"})], {"SAM": [84.2], "SGD": [83.9, 84.1, 84.0]}, paper)
    assert row["n_setup"] == 1 and math.isnan(row["p_holm"]) and row["verdict"] == "inconclusive"
    assert row["seeds_needed"] == stats.seeds_needed(0.3, 0.2, 0.1)  # SAM's published std, SGD's observed one
    values = {"SGD": [80.0, 80.4, 80.2], "SAM": [81.0, 81.3, 80.9], "AACE": [81.2, 81.0, 81.6]}
    rows = evaluate_claims([claim(), claim("AACE", "SAM")], frame(values), EXPS, {}).to_dict("records")
    assert [r["p_holm"] for r in rows] == pytest.approx(stats.holm([r["p_one_sided"] for r in rows]))


def test_one_seed_without_a_published_std_says_so():
    row = one([claim()], {"SAM": [84.2], "SGD": [83.9]})
    assert row["seeds_needed"] is None or math.isnan(row["seeds_needed"])
    assert row["verdict_text"] == "inconclusive — no std to plan with (< 2 seeds and no published std)"
    tiny = one([claim()], {"SAM": [84.0, 84.6, 83.8], "SGD": [84.0 - 1e-5, 84.6, 83.8]})
    assert tiny["verdict_text"] == f"inconclusive — more than {stats.MAX_SEEDS} seeds per arm"


def test_claim_on_a_setup_the_study_does_not_run():
    row = one([claim("SCE-SAM", "SAM")], {"SAM": [1.0, 2.0]})
    assert row["verdict"] == "not run" and "SCE-SAM" in row["verdict_text"]


def test_generic_claims_without_declared_ones():
    exps = {
        "e": {"setups": ["SGD", "SAM", "AACE", "SAACE"], "task": "classification"},
        "f": {"setups": ["ArcFace", "FlatFace-SAM-ArcFace"], "task": "face", "primary_metric": "lfw"},
        "g": {"setups": ["SGD", "SAM"], "task": "classification"},
    }
    got = study_claims([{**claim(), "experiment": "g"}], exps)
    assert [(c["experiment"], c["setup"], c["baseline"], c["metric"], c["generic"]) for c in got] == [
        ("e", "SAM", "SGD", "test_top1", True),
        ("e", "AACE", "SAM", "test_top1", True),
        ("f", "FlatFace-SAM-ArcFace", "ArcFace", "lfw", True),
        ("g", "SAM", "SGD", "test_top1", False),
    ]
    # SAACE's baseline SCE-SAM is not run: no generic claim for it; no published Δ on a generic claim
    assert all("paper" not in c for c in got if c["generic"])


def _paper_study() -> dict:
    config = load_study([ROOT / "config" / "paper.yaml"])
    return {
        name: {
            "dataset": e["dataset"]["name"],
            "model": e["model"]["name"],
            "task": task_of(e),
            "setups": e["setups"],
            "paper": e["paper"],
            "description": e["description"],
        }
        for name, e in config["experiments"].items()
    }


def test_declared_claims_cover_the_papers():
    exps = _paper_study()
    declared = load_claims(CLAIMS)
    check_claims(declared, exps, yaml.safe_load(PAPER.read_text()), CLAIMS)
    for c in declared:
        assert {c["setup"], c["baseline"]} <= set(exps[c["experiment"]]["setups"]), c
    have = {(c["experiment"], c["setup"], c["baseline"], c["metric"]) for c in declared}
    sam_rows = {n for n, e in exps.items() if any(r["path"].startswith("sam_foret_2021") for r in e["paper"])}
    assert len(sam_rows) == 6
    assert all((n, "SAM", "SGD", "test_top1") in have for n in sam_rows)
    assert ("cifar100_wrn28_10", "AACE", "SAM", "test_top1") in have
    cls = [n for n, e in exps.items() if "SAACE" in e["setups"]]
    assert all(
        {(n, "SCE-SAM", "SAM", "test_top1"), (n, "SAACE", "SCE-SAM", "test_top1")} <= have for n in cls
    )
    for n in ("casia_webface_iresnet50", "ms1mv2_iresnet100"):
        for s in (
            "FlatFace-SAM-ArcFace",
            "FlatFace-SAM-AdaFace",
            "FlatFace-AACE-ArcFace",
            "FlatFace-AACE-AdaFace",
        ):
            for m in ("verification_mean", "lfw", "cfp_fp", "agedb_30", "cplfw", "calfw"):
                assert (n, s, s.rsplit("-", 1)[1], m) in have


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(colour="red"), "Additional properties are not allowed"),
        (lambda c: c.update(setup="ArcFace"), "setup 'ArcFace' is not a classification setup"),
        (lambda c: c.update(metric="lfw"), "metric 'lfw' is not a classification metric"),
        (lambda c: c["paper"].update(path="aace.cifar10"), "'cifar10' is not in paper_results"),
        (lambda c: c.update(baseline="SGD"), "paper_results has no number for SGD"),
    ],
)
def test_a_bad_claim_is_one_line_naming_the_file(tmp_path, edit, message):
    c = {
        "experiment": "cifar100_wrn28_10",
        "setup": "AACE",
        "baseline": "SAM",
        "metric": "test_top1",
        "paper": {"path": "aace.cifar100_wrn28_10"},
        "source": "ICIP",
    }
    edit(c)
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump({"claims": [c]}))
    with pytest.raises(ValueError, match=message) as err:
        check_study_claims({"cifar100_wrn28_10": {"task": "classification"}}, path, PAPER)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def _write_seeds(root: Path, exps: dict, rng: np.random.Generator) -> list[str]:
    """Per-seed eval.json of every experiment x setup x seed: the setup's published number (SGD/margin heads at
    it, the others a little above) plus seed noise."""
    paths = []
    for name, exp in exps.items():
        for k, setup in enumerate(exp["setups"]):
            for seed in range(3):
                base = 80.0 + 0.4 * k + 0.3 * rng.standard_normal()
                ev = (
                    classification_eval(base)
                    if exp["task"] == "classification"
                    else face_eval(95.0 + 0.1 * k + 0.2 * rng.standard_normal(), 94.0 + 0.1 * k)
                )
                if exp["task"] == "face":
                    ev["benchmarks"].update(
                        {
                            b: {"acc_mean": 93.0 + 0.1 * k + 0.1 * rng.standard_normal(), "acc_std": 0.3}
                            for b in ("agedb_30", "cplfw", "calfw")
                        }
                    )
                folder = write_run(
                    root / f"runs/{name}/{setup}/seed{seed}",
                    experiment=name,
                    setup=setup,
                    seed=seed,
                    rho=None if k == 0 else 0.05,
                    evaluation=ev,
                    study="paper",
                )
                paths.append(str(folder / "eval.json"))
    return paths


@pytest.mark.slow  # 135 runs, 9 experiments, ~40 figures: ~7 s
def test_paper_study_report_shows_every_declared_claim_with_a_verdict(tmp_path):
    exps = _paper_study()
    runs = _write_seeds(tmp_path / "results", exps, np.random.default_rng(1))
    manifest = tmp_path / "results" / "data" / "cifar10.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text('{"name": "cifar10"}')
    out = tmp_path / "reports" / "paper"
    spec = {"study": "paper", "description": "synthetic", "experiments": exps, "config_hash": "abc123"}
    assert (
        main(
            [
                "report",
                "--spec",
                json.dumps(spec),
                "--paper",
                str(PAPER),
                "--claims",
                str(CLAIMS),
                "--runs",
                *runs,
                "--manifests",
                str(manifest),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    declared = load_claims(CLAIMS)
    table = pd.read_csv(out / "claims.csv")
    assert len(table) == len(declared) == 68  # every experiment of the paper study has declared claims
    html, md = (out / "index.html").read_text(), (out / "report.md").read_text()
    for row in table.to_dict("records"):
        assert row["verdict"] in ("reproduced", "contradicted", "inconclusive")
        assert row["id"] in html and row["id"] in md
    headline = table[table.id == "cifar100_wrn28_10: AACE > SAM (test_top1)"].iloc[0]
    assert headline["published_delta"] == pytest.approx(84.33 - 83.52)
    assert html.index("Scoreboard") < html.index('<h2 id="cifar10_wrn28_10">')
    assert "abc123" in html and "cifar10 <code>" in html  # config hash and manifest digest in the header
    for name in exps:
        assert (out / "figures" / f"forest_{name}.png").stat().st_size > 1000


def test_a_nan_seed_is_shown_and_counted(tmp_path):
    runs = []
    for setup, values in (
        ("SGD", [80.0, 80.5, 81.0]),
        ("SAM", [82.0, math.nan, 83.0]),
        ("AACE", [math.nan] * 3),
    ):
        for seed, v in enumerate(values):
            runs.append(
                str(
                    write_run(
                        tmp_path / f"r/{setup}/{seed}",
                        experiment="e",
                        setup=setup,
                        seed=seed,
                        rho=None if setup == "SGD" else 0.05,
                        evaluation=classification_eval(v),
                    )
                    / "eval.json"
                )
            )
    spec = {"study": "s", "experiments": {"e": {**EXPS["e"], "paper": []}}}
    out = tmp_path / "rep"
    assert main(["report", "--spec", json.dumps(spec), "--runs", *runs, "--out", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    sam = summary[(summary.setup == "SAM") & (summary.metric == "test_top1")].iloc[0]
    assert (sam["n"], sam["n_nonfinite"], sam["n_runs"]) == (2, 1, 3) and sam["mean"] == pytest.approx(82.5)
    md = (out / "report.md").read_text()
    assert "82.50 ± 0.71 (n=2; 1 NaN)" in md
    assert "NaN (n=0; 3 NaN)" in md and "+nan" not in md.lower() and "± nan" not in md.lower()
    assert "AACE" in md and "SAM (n/a)" in md  # the all-NaN AACE row: its difference to SAM is not a number
    claims = pd.read_csv(out / "claims.csv")
    aace = claims[claims.setup == "AACE"].iloc[0]
    assert aace["n_setup"] == 0 and aace["nonfinite_setup"] == 3 and aace["verdict"] == "inconclusive"
    assert "| 0 vs 2 (NaN/missing: 3 setup, 1 baseline) |" in md
    assert "inconclusive — no finite seed of AACE (NaN or missing)" in md
