# Reproduction of "Noradrenergic-inspired gain modulation attenuates the stability gap in joint
# training" (arXiv:2507.14056). See README.md; the code the rules run is the stabgap package (src/).
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the paper's full reproduction. A --configfile given on the command line REPLACES it
# (e.g. configs/demo.yaml) instead of being merged into it, so presets never mix.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/streams.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/cost.smk"
include: "workflow/rules/reproduction.smk"
include: "workflow/rules/checks.smk"


rule all:
    default_target: True
    input:
        all_tables(),
        all_figures(),
        f"{RESULTS}/cost.md",
        f"{RESULTS}/reproduction/comparison.csv",
