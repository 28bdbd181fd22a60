"""Stage modules: one per Snakemake rule, named after it (``python -m pipeline.stages.<rule>``).

Each stage only parses its arguments, reads its input artifacts, calls library code and writes
its output artifacts; the logic lives in the library packages (:mod:`pipeline.data`,
:mod:`pipeline.detectors`, :mod:`pipeline.methods`, :mod:`pipeline.retrieval`,
:mod:`pipeline.plots`, ...). Library modules never import a stage.
"""
