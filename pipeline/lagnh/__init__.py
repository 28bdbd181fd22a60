r"""LAGNH — Lightweight Augmented Graph Network Hashing (Cui et al., ACM MM 2021).

https://doi.org/10.1145/3474085.3475605 — one module per idea of Section 3:

=================  =========================================================================
module             content
=================  =========================================================================
``attention``      cross-modal attention, Eq. (1)–(2)
``graph``          augmented semantic graph, Eq. (3)–(5), and :math:`D^{-1/2} S D^{-1/2}`
``gcn``            two-layer GCN generator, Eq. (6)–(7)
``losses``         Eq. (8)–(12) and the reconstruction variants of Table 5
``model``          the networks and :class:`LAGNHOptions` (variant / ablation switches)
``train``          alternating D / G training loop
``encode``         Eq. (13): ``"inductive"`` and ``"batch"`` encoding
``method``         ``fit`` / ``encode`` adapters of :mod:`pipeline.methods`
=================  =========================================================================
"""

from .model import ABLATIONS, DEFAULT_PARAMS, VARIANTS, LAGNHOptions, resolve_options

__all__ = ["ABLATIONS", "DEFAULT_PARAMS", "VARIANTS", "LAGNHOptions", "resolve_options"]
