"""Fraud model behind KServe's ModelServer: torch.export program + preprocessing.json, drift alerts, rollback."""
