# lagnh-pipeline: the LAGNH hashing experiment as cached stages. Table of contents only:
# the logic is in rules/common.smk and the pipeline/ package.
from snakemake.utils import min_version

min_version("9.0")


# config.yaml is the default configuration, not a base: a --configfile replaces it (Snakemake
# would otherwise merge the two, so .test/config.yaml's four methods became config.yaml's eight
# and a section deleted from a copy came back). Several --configfile files still merge in
# order, and --config key=value still overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "captions/workflow.rst"


include: "rules/common.smk"
include: "rules/common_tune.smk"
include: "rules/common_index.smk"
include: "rules/data.smk"
include: "rules/features.smk"
include: "rules/auxiliary.smk"
include: "rules/tune.smk"
include: "rules/train.smk"
include: "rules/encode.smk"
include: "rules/evaluate.smk"
include: "rules/plots.smk"
include: "rules/index.smk"


rule all:
    default_target: True
    input:
        final_targets(),
