# Step 5: the single MLflow writer (parallel jobs never touch the tracking store). Idempotent: runs are found
# again by their samrepro.key tag, so re-running it never duplicates a run.


rule track:
    input:
        evals=evals_all(),
        tune=tune_metrics_all(),
        best=best_all(),
    output:
        f"{RES}/mlflow_runs.json",
    log:
        f"{RES}/logs/track.log",
    params:
        study=STUDY,
        results=run_dir,
        uri=tracking_uri_arg(),
    threads: res("track", "cpus_per_task")
    resources:
        cpus_per_task=res("track", "cpus_per_task"),
        runtime=res("track", "runtime"),
        mem_mb=res("track", "mem_mb"),
        slurm_partition=res("track", "slurm_partition"),
        slurm_account=res("track", "slurm_account"),
        slurm_extra=res("track", "slurm_extra"),
    conda:
        ENV
    shell:
        "python -m samrepro track --study {params.study} --results {params.results:q} {params.uri} "
        "--runs {input.evals:q} --tune {input.tune:q} --out {output:q} > {log:q} 2>&1"
