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
    params:
        spec=spec_json,
        dir=run_dir,
        best=best_arg,
        launcher=launcher("train"),
    threads: res("train", "cpus_per_task")
    resources:
        cpus_per_task=res("train", "cpus_per_task"),
        runtime=res("train", "runtime"),
        mem_mb=res("train", "mem_mb"),
        gpu=res("train", "gpu"),
        gpu_model=res("train", "gpu_model"),
        slurm_partition=res("train", "slurm_partition"),
        slurm_account=res("train", "slurm_account"),
        slurm_extra=res("train", "slurm_extra"),
    conda:
        ENV
    shell:
        "(python -m samrepro plan --spec {params.spec:q} --setup {wildcards.setup} --seed {wildcards.seed} "
        "--phase final {params.best} --out {params.dir}/run.yaml"
        " && OMP_NUM_THREADS={threads} {params.launcher} -m samrepro train --config {params.dir}/run.yaml "
        "--out {params.dir}) > {log:q} 2>&1"
