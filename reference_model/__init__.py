"""The reference fraud model: synthetic data, two model versions in two flavours, and their artifacts.

Submodules import lazily on purpose: ``import reference_model`` is cheap, and only
``reference_model.torch_model`` and the torch predictor import torch. See ``README.md``.
"""
