# Step 4: test accuracy (top-1/top-5) or face verification, generalization gap, sharpness of the final model.


rule evaluate:
    input:
        metrics=f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/metrics.json",
        model=f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/model.pt",
    output:
        f"{RES}/runs/{{experiment}}/{{setup}}/seed{{seed}}/eval.json",
    log:
        f"{RES}/logs/evaluate/{{experiment}}/{{setup}}/seed{{seed}}.log",
    conda:
        ENV
    threads: res("evaluate", "cpus_per_task")
    resources:
        **resources_of("evaluate"),
    params:
        dir=run_dir,
    shell:
        "OMP_NUM_THREADS={threads} python -m samrepro evaluate --run {params.dir} --out {output:q} > {log:q} 2>&1"
