"""The KServe model: ``FraudModel(kserve.Model)``, one instance named ``fraud``.

KServe calls ``preprocess`` (here: strict validation of V1 ``instances`` or V2 tensors), then
``predict`` (preprocessing.json + the torch.export program of the live version), then encodes the
answer. The live version is one immutable :class:`~fraud_kserve.artifacts.LoadedModel` behind one
attribute: ``predict`` reads it once, so a request is scored start to finish by one version even
when a deploy or rollback swaps it meanwhile. :meth:`switch` loads and smoke-tests the new version
completely (in a thread) before the swap, so there is never a moment without a servable model:
``ready`` stays true throughout and no request fails.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import kserve
import numpy as np
import orjson
import torch
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from fraud_kserve import metrics, settings
from fraud_kserve.artifacts import LoadedModel, ModelError, load_model, read_version_files, digest_of
from fraud_kserve.drift import DriftMonitor
from fraud_kserve.middleware import CURRENT
from fraud_kserve.preprocessing import transform
from fraud_kserve.schema import Batch, InvalidRequest, spec, validate_instances, validate_v2_inputs

log = logging.getLogger("fraud_kserve.model")


def _forward(live: LoadedModel, x: np.ndarray) -> list[float]:
    with torch.inference_mode():
        out = live.module(torch.from_numpy(x))
    return out.numpy().astype(np.float64).reshape(-1).tolist()


class FraudModel(kserve.Model):
    def __init__(self, name: str, initial: LoadedModel, monitor: DriftMonitor, event: Any) -> None:
        super().__init__(name, return_response_headers=True)
        self.live: LoadedModel = initial
        self.monitor = monitor
        self.event = event
        self.order = spec().order
        self._cache: dict[tuple[str, str], LoadedModel] = {(initial.version, initial.digest): initial}
        self._switch_lock = asyncio.Lock()
        metrics.set_model(initial.version, initial.digest)
        self.ready = True

    def load(self) -> bool:  # the model is loaded (and smoke-tested) before the server starts
        self.ready = self.live is not None
        return self.ready

    # --- KServe handlers ----------------------------------------------------------------------
    async def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> tuple[Batch, bool]:
        if isinstance(payload, InferRequest):  # Open Inference Protocol (V2)
            tensors = [(i.name, i.datatype, list(i.shape), i.data) for i in payload.inputs]
            return validate_v2_inputs(tensors), True
        if isinstance(payload, (bytes, bytearray)):  # a content type KServe does not decode
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise InvalidRequest(f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise InvalidRequest('body must be a JSON object: {"instances": [{feature: value, ...}, ...]}')
        extra = [k for k in payload if k != "instances"]
        if "instances" not in payload or extra:
            raise InvalidRequest('body must be {"instances": [...]}' + (f"; unexpected key(s) {extra[:5]}" if extra
                                                                         else "; \"instances\" is missing"))
        return validate_instances(payload["instances"]), False

    def validate(self, payload: Any) -> Any:  # preprocess has already validated everything
        return payload

    async def predict(self, payload: tuple[Batch, bool], headers: dict[str, str] | None = None,
                      response_headers: dict[str, str] | None = None) -> Any:
        batch, v2 = payload
        live = self.live  # one read: this request is served by this version, even during a swap
        x = transform(live.recipe, batch.columns)
        if batch.n <= settings.INLINE_ROWS:
            probs = _forward(live, x)
        else:
            probs = await asyncio.to_thread(_forward, live, x)
        if len(probs) != batch.n or not all(math.isfinite(p) for p in probs):
            raise RuntimeError(f"model {live.version} returned {len(probs)} values for {batch.n} rows or non-finite")
        record = CURRENT.get()
        if record is not None:
            record.update(model_version=live.version, model_sha256=live.digest[:12], n=batch.n,
                          rows=batch.rows(self.order), predictions=[round(p, 8) for p in probs])
        if response_headers is not None:
            response_headers["x-model-version"] = live.version
        self.monitor.add(batch)
        metrics.ROWS.labels(version=live.version).inc(batch.n)
        for p in probs:
            metrics.PREDICTION.labels(version=live.version).observe(p)
        if v2:
            return InferResponse(response_id=record["request_id"] if record else "", model_name=self.name,
                                 model_version=live.version,
                                 infer_outputs=[InferOutput(name="probability", shape=[batch.n], datatype="FP64",
                                                            data=probs)],
                                 parameters={"model_version": live.version})
        return {"predictions": probs, "model_version": live.version}

    # --- version switch -----------------------------------------------------------------------
    async def switch(self, version: str, expected_digest: str | None, request_id: str) -> dict[str, Any]:
        """Serve ``version``: verify its files, load + smoke-test it (or reuse the copy loaded
        earlier from identical files), then swap. Raises ModelError; the live model is unchanged then."""
        async with self._switch_lock:
            current = self.live
            files = await asyncio.to_thread(read_version_files, version)
            digest = digest_of(files)
            if expected_digest and digest != expected_digest:
                raise ModelError(f"model {version} on disk has digest {digest[:12]}, the registry expects "
                                 f"{expected_digest[:12]}: refusing to serve files that changed")
            if current.version == version and current.digest == digest:
                return {**current.describe(), "changed": False}
            started = time.perf_counter()
            model = self._cache.get((version, digest))
            cached = model is not None
            if model is None:
                model = await asyncio.to_thread(load_model, version, digest)
                self._cache[(version, digest)] = model
            self.live = model  # the switch: one reference assignment, atomic for every reader
            metrics.set_model(model.version, model.digest)
            metrics.RELOADS.labels(result="ok").inc()
            took = round((time.perf_counter() - started) * 1000, 1)
            self.event({"event": "model_switch", "request_id": request_id, "version": model.version,
                        "sha256": model.digest, "previous": current.version, "switch_ms": took,
                        "reused_loaded_copy": cached})
            log.warning("now serving %s (was %s), switched in %.0f ms", model.version, current.version, took)
            return {**model.describe(), "changed": True, "previous": current.version}
