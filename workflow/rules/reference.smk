# The raw-pixel reference of each face experiment (DESIGN "The DAG", step 4): its benchmarks' pairs scored
# under the evaluate protocol with the image's own pixels as the embedding (`samrepro reference`), so the
# report can show what the trained embeddings add to no learning at all. Planned from one of the
# experiment's run configs: the data and the pairs are all it reads.


rule reference:
    input:
        manifest=manifest,
    output:
        f"{RES}/reference/{{experiment}}/pixels.json",
    log:
        f"{RES}/logs/reference/{{experiment}}.log",
    conda:
        ENV
    threads: res("evaluate", "cpus_per_task")
    resources:
        **resources_of("evaluate", gpus=False),
    params:
        spec=spec_json,
        plan=reference_plan_args,
        dir=run_dir,
    shell:
        "(python -m samrepro plan --spec {params.spec:q} {params.plan} --out {params.dir}/run.yaml"
        " && OMP_NUM_THREADS={threads} python -m samrepro reference --config {params.dir}/run.yaml"
        " --out {output:q}) > {log:q} 2>&1"
