"""The Semantic Attention Network (SAN) person-image generator: tensors in, tensors out.

Main entry points: :class:`san_model.config.SANConfig` (settings and the paper's presets;
torch-free, so settings can be read without loading torch), :func:`san_model.generator.
build_generator` / :func:`san_model.generator.generate` (inference on stored uint8 arrays),
:func:`san_model.train.train_san` (training on in-memory arrays) and
:func:`san_model.checkpoint.load_generator` (a trained generator from a run folder or
checkpoint). Import them from their modules: this package imports nothing on its own.
"""
