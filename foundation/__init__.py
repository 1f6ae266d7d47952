"""The ground floor: what every package of augment-market may import.

It imports nothing of ours, so the tensor-only packages (``san_model``, ``reid``), the store,
the stages and the flows depend on it and never on the command line above them. It holds the
code version (part of every stage stamp and cache key), the lookup of pretrained weight files
(:mod:`foundation.weights`) and the rule that keeps a run folder's checkpoint
(:mod:`foundation.runs`).
"""

__version__ = "0.1.0"
