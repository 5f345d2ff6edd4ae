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
    conda:
        ENV
    threads: res("tune", "cpus_per_task")
    resources:
        **resources_of("tune"),
    params:
        spec=spec_json,
        dir=run_dir,
        launcher=launcher("tune"),
    shell:
        plan_and_train("--phase tune --rho {wildcards.rho}")


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
