"""Prometheus metrics of the inference path, labelled by public model and deployment."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from aiaas.kernel.metrics import LATENCY_BUCKETS

REQUESTS = Counter("aiaas_inference_requests_total", "Inference requests by endpoint, model, deployment, status.",
                   ["endpoint", "model", "deployment", "status"])
TTFB = Histogram("aiaas_inference_ttfb_seconds", "Time to the upstream's first byte (first event for streams).",
                 ["model", "deployment"], buckets=LATENCY_BUCKETS)
LATENCY = Histogram("aiaas_inference_latency_seconds", "Total request time, from arrival to the last byte.",
                    ["endpoint", "model", "deployment"], buckets=LATENCY_BUCKETS)
TOKENS = Counter("aiaas_inference_tokens_total", "Tokens accounted, by model, deployment and kind.",
                 ["model", "deployment", "kind"])
UPSTREAM_ERRORS = Counter("aiaas_inference_upstream_errors_total", "Failed upstream attempts by kind.",
                          ["model", "deployment", "kind"])
DEPLOYMENT_HEALTHY = Gauge("aiaas_inference_deployment_healthy",
                           "1 while the deployment's circuit breaker is closed (as last seen by this process).",
                           ["model", "deployment"], multiprocess_mode="min")
BREAKER_TRANSITIONS = Counter("aiaas_inference_breaker_transitions_total", "Circuit breaker state changes.",
                              ["model", "deployment", "state"])
LOCAL_BUSY = Gauge("aiaas_inference_local_busy", "Requests running or waiting on the embedded model.",
                   multiprocess_mode="livesum")
