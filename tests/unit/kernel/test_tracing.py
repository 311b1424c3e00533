"""Spans cost nothing when nobody receives them, and requests keep their trace ids either way."""

from __future__ import annotations

from opentelemetry import propagate, trace

from aiaas.kernel.config import load_settings
from aiaas.kernel.tracing import make_provider

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class TestWithoutAnExporter:
    def test_spans_are_dropped_before_they_are_built_but_keep_their_ids(self) -> None:
        provider = make_provider(load_settings({}), "streamer")
        span = provider.get_tracer("t").start_span("GET", attributes={"url.path": "/v1/models"})
        assert not span.is_recording()
        assert type(span) is trace.NonRecordingSpan  # no SDK span, no attributes kept
        ctx = span.get_span_context()
        assert ctx.is_valid and ctx.trace_id and ctx.span_id  # the logs and events still get ids

    def test_an_incoming_traceparent_is_continued(self) -> None:
        provider = make_provider(load_settings({}), "streamer")
        parent = propagate.extract({"traceparent": INCOMING})
        span = provider.get_tracer("t").start_span("GET", context=parent)
        assert format(span.get_span_context().trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
        carrier: dict[str, str] = {}
        with trace.use_span(span):
            propagate.inject(carrier)
        assert carrier["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


class TestWithAnExporter:
    def test_spans_are_recorded_for_export(self) -> None:
        settings = load_settings({"AIAAS_OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
        provider = make_provider(settings, "streamer")
        try:
            span = provider.get_tracer("t").start_span("GET")
            assert span.is_recording()  # (not ended: nothing is sent to the unreachable collector)
        finally:
            provider.shutdown()
