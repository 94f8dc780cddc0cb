"""Drift observers: read a candidate's drift verdict over HTTP, Prometheus or a webhook."""

from harness.observers.base import DriftObserver, DriftReading
from harness.observers.factory import make_observer
from harness.observers.http_signal import HttpDriftObserver
from harness.observers.prometheus_signal import PrometheusDriftObserver
from harness.observers.webhook import WebhookObserver, WebhookReceiver

__all__ = ["DriftObserver", "DriftReading", "HttpDriftObserver", "PrometheusDriftObserver", "WebhookObserver",
           "WebhookReceiver", "make_observer"]
