# Step 2: one training run per experiment x setup x rho x tuning seed on train-minus-validation, scored on
# the validation split; select_rho writes the setup's best.json (ties -> smaller rho). Only metrics.json is
# declared: the run's checkpoint.pt is not an output, so Snakemake never deletes it and a resubmitted job
# resumes from it.


rule tune:
    input:
        manifest=manifest,
    output:
        f"{RES}/tune/{{experiment}}/{{setup}}/rho{{rho}}_seed{{seed}}/metrics.json",
    log:
        f"{RES}/logs/tune/{{experiment}}/{{setup}}/rho{{rho}}_seed{{seed}}.log",
    params:
        spec=spec_json,
        dir=run_dir,
        launcher=launcher("tune"),
    threads: res("tune", "cpus_per_task")
    resources:
        cpus_per_task=res("tune", "cpus_per_task"),
        runtime=res("tune", "runtime"),
        mem_mb=res("tune", "mem_mb"),
        gpu=res("tune", "gpu"),
        gpu_model=res("tune", "gpu_model"),
        slurm_partition=res("tune", "slurm_partition"),
        slurm_account=res("tune", "slurm_account"),
        slurm_extra=res("tune", "slurm_extra"),
    conda:
        ENV
    shell:
        "(python -m samrepro plan --spec {params.spec:q} --setup {wildcards.setup} --seed {wildcards.seed} "
        "--phase tune --rho {wildcards.rho} --out {params.dir}/run.yaml"
        " && OMP_NUM_THREADS={threads} {params.launcher} -m samrepro train --config {params.dir}/run.yaml "
        "--out {params.dir}) > {log:q} 2>&1"


rule select_rho:
    input:
        setup_tune_metrics,
    output:
        f"{RES}/tune/{{experiment}}/{{setup}}/best.json",
    log:
        f"{RES}/logs/select_rho/{{experiment}}/{{setup}}.log",
    conda:
        ENV
    shell:
        "python -m samrepro select-rho --metrics {input:q} --out {output:q} > {log:q} 2>&1"
