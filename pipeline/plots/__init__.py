"""Figures: retrieval curves (:mod:`~pipeline.plots.precision`), retrieval galleries
(:mod:`~pipeline.plots.neighbours`), training histories (:mod:`~pipeline.plots.history`) and
the paper's parameter figures 3-4 (:mod:`~pipeline.plots.parameters`)."""
