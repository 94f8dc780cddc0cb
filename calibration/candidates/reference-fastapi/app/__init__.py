"""Fraud-model serving: FastAPI app, model registry with one-command rollback, Evidently drift monitor."""

__all__ = ["settings"]
