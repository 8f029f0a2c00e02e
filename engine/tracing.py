"""OpenTelemetry tracing, when the ``otel`` extra is installed (``pip install engine[otel]``).

Without it nothing is imported and every function here is a no-op. With it:

- ``add`` runs in a PRODUCER span and stores the W3C trace context in the job's options
  as BullMQ does (``opts.telemetry.metadata``, a JSON carrier), unless the job says
  ``telemetry.omitContext``;
- the worker's CONSUMER span around the handler continues that trace, on whichever
  instance runs the job, and records the handler's exception;
- a schedule fire and a worker's claim each get a span of their own.

The engine only uses the OpenTelemetry API: the application installs and configures the
SDK (exporter, sampler), and without a configured SDK spans cost next to nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import (
        NoOpTracerProvider,
        ProxyTracerProvider,
        SpanKind,
        Status,
        StatusCode,
    )
except ImportError:  # the extra is not installed
    trace = None  # type: ignore[assignment]

ENABLED = trace is not None
_SYSTEM = "engine"


def _tracer() -> Any:
    return trace.get_tracer("engine")


_GLOBAL_TRACER = _tracer


def active() -> bool:
    """Whether spans would go anywhere: the extra is installed AND the application set a
    tracer provider (the OpenTelemetry API alone, often installed by another package, only
    has no-op spans, which would still cost every job tens of microseconds)."""
    if not ENABLED:
        return False
    if _tracer is not _GLOBAL_TRACER:  # a tracer given explicitly (tests)
        return True
    return not isinstance(trace.get_tracer_provider(), ProxyTracerProvider | NoOpTracerProvider)


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """An INTERNAL span around engine work (a fire, a claim); ``None`` without the extra."""
    if not ENABLED:
        yield None
        return
    with _tracer().start_as_current_span(name, attributes=dict(attributes or {})) as s:
        yield s


def mark(name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """A zero-length span marking a moment (a claim's reply reaching the worker)."""
    if ENABLED:
        _tracer().start_span(name, attributes=dict(attributes or {})).end()


@contextlib.contextmanager
def producing(queue: str) -> Iterator[str | None]:
    """A PRODUCER span for an add; yields the trace context to store with the job (a JSON
    carrier of ``traceparent``/``tracestate``) or ``None`` without the extra."""
    if not ENABLED:
        yield None
        return
    attributes = {"messaging.system": _SYSTEM, "messaging.destination.name": queue}
    with _tracer().start_as_current_span(
        f"send {queue}", kind=SpanKind.PRODUCER, attributes=attributes
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield orjson.dumps(carrier).decode() if carrier else None


@contextlib.contextmanager
def consuming(
    queue: str, job_id: str, job_name: str, attempt: int, metadata: str | None
) -> Iterator[Any]:
    """The CONSUMER span around one attempt's handler, a child of the context stored at
    add (``metadata``) when there is one. The handler's exception is recorded and
    re-raised."""
    if not ENABLED:
        yield None
        return
    parent = None
    if metadata:
        try:
            carrier = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            carrier = None
        if isinstance(carrier, dict):
            parent = propagate.extract({str(k): str(v) for k, v in carrier.items()})
    attributes = {
        "messaging.system": _SYSTEM,
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
        "engine.job.name": job_name,
        "engine.job.attempt": attempt,
    }
    with _tracer().start_as_current_span(
        f"process {queue}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as s:
        try:
            yield s
        except BaseException as exc:
            s.record_exception(exc)
            s.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def mark_failed(span: Any, reason: str) -> None:
    """Mark a consumer span as failed (the handler's error became the attempt's outcome)."""
    span.set_status(Status(StatusCode.ERROR, reason[:200]))
    span.set_attribute("engine.job.failed_reason", reason[:1000])


__all__ = ["ENABLED", "active", "consuming", "mark", "mark_failed", "producing", "span"]
