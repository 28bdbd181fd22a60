"""Figures: retrieval curves (:mod:`~pipeline.plots.precision`), retrieval galleries
(:mod:`~pipeline.plots.neighbours`) and training histories (:mod:`~pipeline.plots.history`)."""
