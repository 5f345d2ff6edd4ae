# samrepro: study YAML -> prepare -> tune rho -> train x seeds -> evaluate -> MLflow + report (DESIGN.md "The DAG").
# Run: snakemake --profile profiles/local [--configfile config/paper.yaml]   (default study: config/config.yaml)
from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/reference.smk"
include: "workflow/rules/track.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_targets(),
