# Step 1 (DESIGN "The DAG"): verify (or download) each dataset once, write its manifest. Missing data fails
# here, in a job, with the dataset, the expected path and how to get it (never at DAG-construction time).


rule prepare:
    output:
        f"{RES}/data/{{dataset}}.json",
    log:
        f"{RES}/logs/prepare/{{dataset}}.log",
    params:
        root=dataset_root,
        download=download_flag,
    threads: res("prepare", "cpus_per_task")
    resources:
        cpus_per_task=res("prepare", "cpus_per_task"),
        runtime=res("prepare", "runtime"),
        mem_mb=res("prepare", "mem_mb"),
        slurm_partition=res("prepare", "slurm_partition"),
        slurm_account=res("prepare", "slurm_account"),
        slurm_extra=res("prepare", "slurm_extra"),
    conda:
        ENV
    shell:
        "python -m samrepro prepare --dataset {wildcards.dataset} --root {params.root:q} {params.download} "
        "--out {output:q} > {log:q} 2>&1"
