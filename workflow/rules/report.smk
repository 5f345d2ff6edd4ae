# Step 6: mean +- std tables beside the paper's numbers, Welch t-tests, plots -> reports/<study>/.


rule report:
    input:
        evals=evals_all(),
        tune=tune_metrics_all(),
        best=best_all(),
        paper=paper_results(),
    output:
        html=f"{REP}/index.html",
        md=f"{REP}/report.md",
        csv=f"{REP}/summary.csv",
    log:
        f"{RES}/logs/report.log",
    params:
        spec=report_spec(),
        out=run_dir,
    threads: res("report", "cpus_per_task")
    resources:
        cpus_per_task=res("report", "cpus_per_task"),
        runtime=res("report", "runtime"),
        mem_mb=res("report", "mem_mb"),
        slurm_partition=res("report", "slurm_partition"),
        slurm_account=res("report", "slurm_account"),
        slurm_extra=res("report", "slurm_extra"),
    conda:
        ENV
    shell:
        "python -m samrepro report --spec {params.spec:q} --paper {input.paper:q} --runs {input.evals:q} "
        "--tune {input.tune:q} --best {input.best:q} --out {params.out:q} > {log:q} 2>&1"

