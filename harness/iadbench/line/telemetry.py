"""The service's Prometheus metrics (``GET /metrics``), one registry per app: tests
and several apps in one process do not share counters, and nothing lands in
prometheus_client's global registry.

Scores are observed as a ratio to the scoring model's threshold (1 = the threshold):
raw scores have no common scale across detectors, and a hot reload may move the
threshold, while ratio buckets keep their meaning across versions.
"""

from __future__ import annotations

import math
import time

ENDPOINTS = ("/", "/predict", "/feedback", "/reload", "/health", "/model", "/metrics")
SCORE_RATIO_BUCKETS = (0.25, 0.5, 0.75, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, math.inf)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, math.inf)


class ServiceMetrics:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("iadbench_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r)
        self.latency = Histogram("iadbench_request_seconds", "Request latency, body read to response sent",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.verdicts = Counter("iadbench_verdicts", "Verdicts of /predict", ["verdict"], registry=r)
        self.score_ratio = Histogram("iadbench_score_ratio", "Image score / the scoring model's threshold (1 = threshold)",
                                     buckets=SCORE_RATIO_BUCKETS, registry=r)
        self.version = Gauge("iadbench_model_version", "Version of the model folder being served", registry=r)
        self.reloads = Counter("iadbench_model_reloads", "Hot reloads by result", ["result"], registry=r)
        self.feedback = Counter("iadbench_feedback", "Feedback entries stored, by label", ["label"], registry=r)
        self.drift_p = Gauge("iadbench_drift_p_value", "Drift test p-value over the score window (NaN: none yet)", registry=r)
        self.drift_share = Gauge("iadbench_drift_share_above", "Share of the window's scores above the calibration cutoff", registry=r)
        self.drift_flagged = Gauge("iadbench_drift_flagged", "1 while the drift signal is flagged", registry=r)

    def result(self, score: float, threshold: float, verdict: str | None) -> None:
        self.verdicts.labels(verdict or "none").inc()
        if math.isfinite(threshold) and threshold > 0 and math.isfinite(score):
            self.score_ratio.observe(score / threshold)

    def drift(self, state: dict) -> None:
        nan = float("nan")
        self.drift_p.set(state.get("p_value") if state.get("p_value") is not None else nan)
        self.drift_share.set(state.get("observed") if state.get("observed") is not None else nan)
        self.drift_flagged.set(1.0 if state.get("flagged") else 0.0)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware, outermost: every request counted with its final status, the
    413s of the body limit included. Unknown paths are one label (``other``), so a
    scan of random URLs cannot grow the label set."""

    def __init__(self, app, metrics: ServiceMetrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        start = time.perf_counter()
        status = [500]

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self.metrics.requests.labels(endpoint, str(status[0])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
