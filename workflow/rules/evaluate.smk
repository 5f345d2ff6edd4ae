# Step 4: test accuracy (top-1/top-5) or face verification, generalization gap, sharpness of the final model.


rule evaluate:
    input:
        metrics=f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/metrics.json",
        model=f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/model.pt",
    output:
        f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/eval.json",
    log:
        f"{RES}/logs/evaluate/{{experiment}}/{{setup}}/seed{{seed}}.log",
    params:
        dir=run_dir,
    threads: res("evaluate", "cpus_per_task")
    resources:
        cpus_per_task=res("evaluate", "cpus_per_task"),
        runtime=res("evaluate", "runtime"),
        mem_mb=res("evaluate", "mem_mb"),
        gpu=res("evaluate", "gpu"),
        gpu_model=res("evaluate", "gpu_model"),
        slurm_partition=res("evaluate", "slurm_partition"),
        slurm_account=res("evaluate", "slurm_account"),
        slurm_extra=res("evaluate", "slurm_extra"),
    conda:
        ENV
    shell:
        "OMP_NUM_THREADS={threads} python -m samrepro evaluate --run {params.dir} --out {output:q} > {log:q} 2>&1"
