"""Fraud-model serving: model registry with one-command rollback, drift monitor, request log.

Nothing in this package imports BentoML (``fraud.http`` is a plain ASGI middleware); ``service.py``
at the repository root is the BentoML service that wires it together.
"""
