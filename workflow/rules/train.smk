# Step 3: the final runs, one per experiment x setup x seed, with the rho chosen by tuning (best.json) or
# fixed in the config. Jobs checkpoint every epoch (checkpoint.pt, not a declared output): a job killed by
# SLURM's time limit and resubmitted by Snakemake (--retries) continues where it stopped.


rule train:
    input:
        manifest=manifest,
        best=best_json,
    output:
        metrics=f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/metrics.json",
        model=f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/model.pt",
    log:
        f"{RES}/logs/train/{{experiment}}/{{setup}}/seed{{seed}}.log",
    conda:
        ENV
    threads: res("train", "cpus_per_task")
    resources:
        **resources_of("train"),
    params:
        spec=spec_json,
        dir=run_dir,
        best=best_arg,
        launcher=launcher("train"),
    shell:
        plan_and_train("--phase final {params.best}")
