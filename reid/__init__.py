"""Re-ID baselines (IDE, Siamese), metric learning (XQDA, KISSME) and Market-1501 evaluation.

Tensors in, tensors and numbers out; only :mod:`reid.checkpoint` touches files. Settings live
in :mod:`reid.config` (torch-free); networks in :mod:`reid.models`, training in
:mod:`reid.train`, ranking in :mod:`reid.evaluate`, XQDA / KISSME in
:mod:`reid.metric_learning`. Import from those modules: this package imports nothing on its own.
"""
