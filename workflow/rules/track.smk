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
    conda:
        ENV
    threads: res("track", "cpus_per_task")
    resources:
        **resources_of("track", gpus=False),
    params:
        study=STUDY,
        results=run_dir,
        uri=tracking_uri_arg(),
    shell:
        "python -m samrepro track --study {params.study} --results {params.results:q} {params.uri} "
        "--runs {input.evals:q} --tune {input.tune:q} --out {output:q} > {log:q} 2>&1"
