# Step 6: the claims' verdicts (scoreboard, forest plots, claims.csv), mean +- std tables beside the paper's
# numbers, plots -> reports/<study>/; with tracking on, the verdicts also go onto the MLflow parent runs.


rule report:
    input:
        evals=evals_all(),
        tune=tune_metrics_all(),
        best=best_all(),
        paper=paper_results(),
        claims=claims_file(),
        manifests=manifests_all(),
        reference=reference_all(),
        tracked=tracked_runs(),
    output:
        html=f"{REP}/index.html",
        md=f"{REP}/report.md",
        csv=f"{REP}/summary.csv",
        claims=f"{REP}/claims.csv",
    log:
        f"{RES}/logs/report.log",
    conda:
        ENV
    threads: res("report", "cpus_per_task")
    resources:
        **resources_of("report", gpus=False),
    params:
        spec=report_spec(),
        out=run_dir,
        mlflow=lambda wildcards, input: f"--mlflow-runs {input.tracked}" if input.tracked else "",
    shell:
        "python -m samrepro report --spec {params.spec:q} --paper {input.paper:q} --claims {input.claims:q} "
        "--runs {input.evals:q} --tune {input.tune:q} --best {input.best:q} --manifests {input.manifests:q} "
        "--reference {input.reference:q} {params.mlflow} --out {params.out:q} > {log:q} 2>&1"
