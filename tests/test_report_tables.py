"""samrepro report: the tables hold the numbers of the runs' files, the paper's numbers and the Welch test."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats
from workflow_synthetic import classification_eval, face_eval, write_run

from samrepro.cli import main
from samrepro.report.aggregate import paper_value, welch_p

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "config" / "paper_results.yaml"

SPEC = {
    "study": "synth",
    "description": "synthetic study",
    "experiments": {
        "cls": {
            "setups": ["SGD", "SAM", "AACE"],
            "task": "classification",
            "dataset": "cifar100",
            "model": "wrn28_10",
            "description": "c",
            "paper": [
                {
                    "path": "aace.cifar100_wrn28_10",
                    "metric": "test_top1",
                    "kind": "accuracy",
                    "label": "AACE-SAM ICIP24",
                },
                {
                    "path": "sam_foret_2021.cifar_wrn28_10_200ep.cutout.cifar100",
                    "metric": "test_top1",
                    "kind": "error",
                    "label": "SAM ICLR21",
                },
            ],
        },
        "face": {
            "setups": ["ArcFace", "FlatFace-SAM-ArcFace"],
            "task": "face",
            "dataset": "casia_webface",
            "model": "iresnet50",
            "description": "f",
            "paper": [
                {"path": "flatface.casia_webface", "field": "LFW", "metric": "lfw"},
                {"path": "flatface.casia_webface", "field": "Average", "metric": "verification_mean"},
            ],
        },
    },
}
TOP1 = {"SGD": [80.0, 80.5, 81.1], "SAM": [82.0, 83.0, 84.0], "AACE": [84.1, 84.4, 84.2]}


def make_runs(root: Path) -> tuple[list[str], list[str], list[str]]:
    runs, tune, best = [], [], []
    for setup, values in TOP1.items():
        rho = None if setup == "SGD" else 0.05
        for seed, v in enumerate(values):
            runs.append(
                str(
                    write_run(
                        root / f"runs/cls/{setup}/seed{seed}",
                        experiment="cls",
                        setup=setup,
                        seed=seed,
                        rho=rho,
                        evaluation=classification_eval(v, 99.0 + seed),
                    )
                    / "eval.json"
                )
            )
    for setup in ("SAM", "AACE"):
        for rho in (0.02, 0.05, 0.1):
            tune.append(
                str(
                    write_run(
                        root / f"tune/cls/{setup}/rho{rho:g}_seed0",
                        experiment="cls",
                        setup=setup,
                        seed=0,
                        phase="tune",
                        rho=rho,
                        score=70 + 10 * rho,
                    )
                    / "metrics.json"
                )
            )
        b = root / f"tune/cls/{setup}/best.json"
        b.write_text(
            json.dumps(
                {
                    "experiment": "cls",
                    "setup": setup,
                    "rho": 0.1,
                    "score": 71.0,
                    "grid": [{"rho": r, "mean_score": 70 + 10 * r} for r in (0.02, 0.05, 0.1)],
                }
            )
        )
        best.append(str(b))
    for setup, lfw in (("ArcFace", [99.0, 99.2]), ("FlatFace-SAM-ArcFace", [99.4, 99.6])):
        for seed, v in enumerate(lfw):
            runs.append(
                str(
                    write_run(
                        root / f"runs/face/{setup}/seed{seed}",
                        experiment="face",
                        setup=setup,
                        seed=seed,
                        rho=None if setup == "ArcFace" else 0.1,
                        evaluation=face_eval(v, 96.0),
                    )
                    / "eval.json"
                )
            )
    return runs, tune, best


def test_report_numbers_come_from_the_files(tmp_path):
    runs, tune, best = make_runs(tmp_path / "results")
    out = tmp_path / "reports" / "synth"
    assert (
        main(
            [
                "report",
                "--spec",
                json.dumps(SPEC),
                "--paper",
                str(PAPER),
                "--runs",
                *runs,
                "--tune",
                *tune,
                "--best",
                *best,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    csv = pd.read_csv(out / "summary.csv")
    row = csv[(csv.experiment == "cls") & (csv.setup == "SAM") & (csv.metric == "test_top1")].iloc[0]
    assert row["mean"] == pytest.approx(83.0) and row["std"] == pytest.approx(1.0) and row["n"] == 3
    assert row["paper"] == pytest.approx(83.52) and row["diff"] == pytest.approx(83.0 - 83.52)
    assert row["baseline"] == "SGD"
    p = stats.ttest_ind(TOP1["SAM"], TOP1["SGD"], equal_var=False).pvalue
    assert row["p_value"] == pytest.approx(p)
    sgd = csv[(csv.setup == "SGD") & (csv.metric == "test_top1")].iloc[0]
    assert sgd["paper"] == pytest.approx(100 - 16.9)  # SGD only in the SAM paper (error -> accuracy)
    gap = csv[(csv.setup == "AACE") & (csv.metric == "gap")].iloc[0]
    assert gap["mean"] == pytest.approx(statistics.fmean(99.0 + s - v for s, v in enumerate(TOP1["AACE"])))
    face = csv[(csv.setup == "FlatFace-SAM-ArcFace") & (csv.metric == "lfw")].iloc[0]
    assert face["mean"] == pytest.approx(99.5) and face["paper"] == pytest.approx(99.49)
    assert face["baseline"] == "ArcFace"

    md = (out / "report.md").read_text()
    sam_line = next(line for line in md.splitlines() if line.startswith("| SAM | 0.05 |"))
    assert "83.00 ± 1.00" in sam_line and "83.52" in sam_line and "-0.52" in sam_line
    one_sided = stats.ttest_ind(TOP1["SAM"], TOP1["SGD"], equal_var=False, alternative="greater").pvalue
    claim_line = next(line for line in md.splitlines() if "| SAM > SGD (test_top1) |" in line)
    assert f"| {one_sided:.2g} |" in claim_line  # the claims table: one-sided p in the claimed direction
    sgd_mean = statistics.fmean(TOP1["SGD"])
    assert f"SGD ({83.0 - sgd_mean:+.2f})" in sam_line  # the direction of the difference to the baseline
    assert "| SGD | — | 3 | 80.53 ± 0.55 (n=3)" in md
    for fig in ("gap_cls", "mechanism_cls", "rho_cls", "sharpness_cls", "gap_face"):
        assert (out / "figures" / f"{fig}.png").stat().st_size > 1000
        assert f"figures/{fig}.png" in md
    html = (out / "index.html").read_text()
    assert html.count("data:image/png;base64,") >= 7
    assert not re.search(r'src="(?!data:)', html)  # self-contained: no external resources
    assert "83.00 ± 1.00" in html


def test_paper_value_and_welch_edge_cases():
    import yaml

    paper = yaml.safe_load(PAPER.read_text())
    assert paper_value(paper, {"path": "aace.cifar100_wrn28_10", "metric": "m"}, "AACE") == (84.33, None)
    assert paper_value(paper, {"path": "aace.cifar100_wrn28_10", "metric": "m"}, "SGD") is None
    assert paper_value(paper, {"path": "flatface.ms1mv2", "field": "CFP-FP", "metric": "m"}, "AdaFace") == (
        98.34,
        0.19,
    )
    with pytest.raises(ValueError, match="'nope' is not in paper_results"):
        paper_value(paper, {"path": "aace.nope", "metric": "m"}, "SAM")
    assert welch_p([1.0], [2.0, 3.0]) != welch_p([1.0], [2.0, 3.0])  # NaN: one seed cannot be tested
    assert welch_p([1.0, 1.0], [2.0, 2.0]) != welch_p([1.0, 1.0], [2.0, 2.0])


def test_every_paper_reference_is_listed(tmp_path):
    runs, tune, best = make_runs(tmp_path / "results")
    out = tmp_path / "rep"
    assert (
        main(
            [
                "report",
                "--spec",
                json.dumps(SPEC),
                "--paper",
                str(PAPER),
                "--runs",
                *runs,
                "--tune",
                *tune,
                "--best",
                *best,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    md = (out / "report.md").read_text()
    # SAM has two published numbers: AACE-SAM's 83.52 and the SAM paper's 100 - 14.9 (cutout, CIFAR-100)
    # agreement: |Δ| within 2 √(1²/3) = 1.15 (no published std), resp. 2 √(1²/3 + 0.2²/3) = 1.18
    assert (
        "| SAM | test_top1 | 83.00 ± 1.00 (n=3) | 83.52 | -0.52 | yes (2 SE = 1.15) | AACE-SAM ICIP24 |" in md
    )
    assert (
        "| SAM | test_top1 | 83.00 ± 1.00 (n=3) | 85.10 ± 0.20 | -2.10 | no (2 SE = 1.18) | SAM ICLR21 |"
        in md
    )


def test_rho_at_the_end_of_its_grid_is_flagged():
    """The optimum may lie outside the grid when the best ρ is its smallest or largest value."""
    from samrepro.report.render import tuned_row

    grid = [{"rho": r, "mean_score": s} for r, s in ((0.02, 90.0), (0.05, 93.0), (0.1, 91.0))]
    assert tuned_row("SAM", {"rho": 0.05, "score": 93.0, "grid": grid})["rho"] == "0.05"
    low = tuned_row("SAM", {"rho": 0.02, "score": 95.0, "grid": grid})
    assert low["rho"] == "0.02 (grid edge)" and low["grid"].startswith("0.02: 90.00")
    assert tuned_row("SAM", {"rho": 0.1, "score": 95.0, "grid": grid})["rho"] == "0.1 (grid edge)"
    assert (
        tuned_row("SAM", {"rho": 0.1, "score": 95.0, "grid": grid[2:]})["rho"] == "0.1"
    )  # one value: no edge


def test_reference_rows(tmp_path, capsys):
    """A deterministic reference (raw pixels) is one row of its experiment's table, each cell with n=1."""
    runs, tune, best = make_runs(tmp_path / "results")
    ref = tmp_path / "pixels.json"
    ref.write_text(
        json.dumps(
            {
                "experiment": "face",
                "name": "raw pixels",
                "task": "face",
                "benchmarks": {"lfw": {"acc_mean": 71.25, "acc_std": 1.5}},
                "verification_mean": 70.5,
            }
        )
    )
    out = tmp_path / "rep"
    base = ["report", "--spec", json.dumps(SPEC), "--paper", str(PAPER), "--runs", *runs, "--out", str(out)]
    assert main([*base, "--reference", str(ref)]) == 0
    md = (out / "report.md").read_text()
    assert "| raw pixels (reference) | — | 1 | 70.50 (n=1) | 71.25 (n=1) |" in md
    assert "raw pixels (reference)" in (out / "index.html").read_text()
    ref.write_text('{"name": "raw pixels"}')
    assert main([*base, "--reference", str(ref)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(ref) in err and "'experiment'" in err and "\n" not in err
