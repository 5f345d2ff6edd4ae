# Step 1 (DESIGN "The DAG"): verify (or download) each dataset once, write its manifest. Missing data fails
# here, in a job, with the dataset, the expected path and how to get it (never at DAG-construction time).


rule prepare:
    output:
        f"{RES}/data/{{dataset}}.json",
    log:
        f"{RES}/logs/prepare/{{dataset}}.log",
    conda:
        ENV
    threads: res("prepare", "cpus_per_task")
    resources:
        **resources_of("prepare", gpus=False),
    params:
        root=dataset_root,
        download=download_flag,
    shell:
        "python -m samrepro prepare --dataset {wildcards.dataset} --root {params.root:q} {params.download} "
        "--out {output:q} > {log:q} 2>&1"
