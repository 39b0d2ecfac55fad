"""Prometheus metrics, from prometheus-client: requests by route, method and status, latency per route, photos
enrolled and searches by outcome, and — read at scrape time from the registry and the index manifest — identities,
templates, vectors and whether the index agrees with the registry.

With ``serve --workers N`` each worker writes its counters to ``PROMETHEUS_MULTIPROC_DIR`` (``serve`` sets it) and a
scrape, whichever worker answers it, sums them all."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from idsvc.results import EnrollResult, Item, Result
from idsvc.service import Service

REQUESTS = Counter("idsvc_http_requests", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram("idsvc_http_request_duration_seconds", "Time to answer an HTTP request", ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
ENROLLED = Counter("idsvc_enrolled_photos", "Photos given to enroll, by outcome", ["outcome"])
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BATCHED = Histogram("idsvc_api_batch_photos", "Photos per gathered pass through the models (api/gather.py)",
                    buckets=(1, 2, 4, 8, 16, 32, 64))
SEARCHES = Counter("idsvc_searches", "Photos searched, by outcome (match, unknown, error)", ["outcome"])


def enrolled(result: EnrollResult) -> None:
    for outcome, photos in (("accepted", result.accepted), ("rejected", result.rejected),
                            ("skipped", result.skipped)):
        ENROLLED.labels(outcome).inc(len(photos))


def batched(photos: int) -> None:
    BATCHED.observe(photos)


def searched(result: Result) -> None:
    """One photo searched: a match, unknown, or an error (a batch item that failed)."""
    failed = isinstance(result, Item) and result.failed is not None
    SEARCHES.labels("error" if failed else "match" if getattr(result, "identity", None) else "unknown").inc()


class HomeCollector(Collector):
    """Gauges read when scraped, so every worker reports the same truth: counts from the registry, vectors and
    agreement from the index manifest (no model, no faiss)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Iterator[GaugeMetricFamily]:
        st = self.service.status(server_paths=False)
        yield GaugeMetricFamily("idsvc_identities", "Enrolled identities", value=st.identities)
        yield GaugeMetricFamily("idsvc_templates", "Stored templates (all model versions)", value=st.templates)
        yield GaugeMetricFamily("idsvc_index_vectors", "Vectors in the saved index", value=st.index.vectors)
        yield GaugeMetricFamily("idsvc_index_in_agreement", "1 when the index agrees with the registry",
                                value=1 if st.index.in_agreement else 0)


def exposition(service: Service) -> tuple[bytes, str]:
    """The scrape body and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        for collector in (REQUESTS, LATENCY, ENROLLED, SEARCHES, BATCHED):
            registry.register(collector)
    registry.register(HomeCollector(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST


class RequestMetrics:
    """ASGI middleware: counts and times every request by its route template (``/v1/identities/{name}``, never the
    name itself; ``unmatched`` for unknown paths), whatever the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "other"
            REQUESTS.labels(route, method, str(status)).inc()
            LATENCY.labels(route, method).observe(time.perf_counter() - t0)

