"""Prometheus metrics of one app (its own registry: no global state), served at ``/metrics``.

* ``vestis_requests_total{route,method,status}`` and ``vestis_request_seconds{route,method}``:
  every request, including those the guard refuses; ``route`` is the route's template
  (``/v1/catalogs/{name}``), never the raw path.
* ``vestis_batch_size{batcher}`` (histogram of items per encoder call), ``vestis_batch_requests_total``,
  ``vestis_encoder_calls_total``, ``vestis_encoder_busy_seconds_total``, ``vestis_rejected_total``
  and ``vestis_queue_depth{batcher}`` (requests waiting): from the micro-batchers.
* ``vestis_catalog_items{catalog}``: items in each served catalog.
"""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from starlette.routing import Match

#: Items per encoder call: powers of two up to the largest ``--max-batch`` worth telling apart.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, state) -> None:
        self.routes: list = []  # the app's routes, to name the route of a request refused before routing
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("vestis_requests", "HTTP requests answered.", ["route", "method", "status"],
                                registry=self.registry)  # fmt: skip
        self.latency = Histogram("vestis_request_seconds", "Time to answer a request, seconds.", ["route", "method"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.registry.register(_StateCollector(state))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector:
    """Reads the batchers' counters and the catalogs' sizes when Prometheus scrapes."""

    def __init__(self, state) -> None:
        self.state = state

    def describe(self):
        return []

    def collect(self):
        s = self.state
        sizes = HistogramMetricFamily("vestis_batch_size", "Items per encoder call.", labels=["batcher"])
        requests = CounterMetricFamily("vestis_batch_requests", "Requests given to a batcher.", labels=["batcher"])
        calls = CounterMetricFamily("vestis_encoder_calls", "Encoder calls.", labels=["batcher"])
        busy = CounterMetricFamily("vestis_encoder_busy_seconds", "Time in encoder calls, seconds.", labels=["batcher"])
        rejected = CounterMetricFamily("vestis_rejected", "Requests refused with a full queue.", labels=["batcher"])
        queue = GaugeMetricFamily("vestis_queue_depth", "Requests waiting for an encoder call.", labels=["batcher"])
        for b in (s.texts, s.images):
            if b is None:
                continue
            stats = b.stats
            buckets, running = [], 0
            for bound in BATCH_BUCKETS:
                running = sum(n for size, n in stats.batch_sizes.items() if size <= bound)
                buckets.append((str(float(bound)), running))
            total = sum(stats.batch_sizes.values())
            buckets.append(("+Inf", total))
            summed = sum(size * n for size, n in stats.batch_sizes.items())
            sizes.add_metric([b.name], buckets, summed)
            requests.add_metric([b.name], stats.requests)
            calls.add_metric([b.name], stats.calls)
            busy.add_metric([b.name], stats.busy_seconds)
            rejected.add_metric([b.name], stats.rejected)
            queue.add_metric([b.name], b.queued)
        items = GaugeMetricFamily("vestis_catalog_items", "Items in a served catalog.", labels=["catalog"])
        for name, cat in list(s.catalogs.items()):
            items.add_metric([name], cat.store.count())
        yield from (sizes, requests, calls, busy, rejected, queue, items)


class MetricsMiddleware:
    """Counts and times every HTTP request by route template, method and status."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def recording_send(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = _route_of(scope, self.metrics.routes)
            method = scope.get("method", "")
            self.metrics.requests.labels(route, method, str(status)).inc()
            self.metrics.latency.labels(route, method).observe(time.perf_counter() - start)


def _route_of(scope, routes) -> str:
    """The template of the route that answered (or would have answered) the request."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    for candidate in routes:
        match, _ = candidate.matches({**scope, "type": "http"})
        if match != Match.NONE:
            return candidate.path
    return "unmatched"
