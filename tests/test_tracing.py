"""Tracing (the ``otel`` extra): the trace context travels from add to the worker through
Redis, the handler runs in a CONSUMER span of that trace, failures mark it; without the
extra nothing of OpenTelemetry is imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from engine import LeaseConfig, QueueManager, UnrecoverableError, tracing
from engine.scheduler import define_schedule, upsert_schedule
from tests.helpers import wait_for
from tests.redis_servers import RedisServer


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> TracerProvider:
    """An SDK provider for this test only: the engine's tracer comes from it. (The global
    provider can be set once per process, and would trace every later test's jobs.)"""
    provider = TracerProvider()
    monkeypatch.setattr(tracing, "_tracer", lambda: provider.get_tracer("engine"))
    return provider


@pytest.fixture
def spans(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    provider.shutdown()


async def test_the_handler_span_continues_the_trace_of_the_add(
    manager: QueueManager, provider: TracerProvider, spans: InMemorySpanExporter
) -> None:
    assert tracing.ENABLED
    queue = manager.create_queue("traced")
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("http request") as request:
        job = await queue.add({"n": 1})
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.opts.telemetry is not None
    assert "traceparent" in (stored.opts.telemetry.metadata or "")

    async def handler(job):  # type: ignore[no-untyped-def]
        return format(trace.get_current_span().get_span_context().trace_id, "032x")

    await manager.process("traced", handler)
    seen_trace = await job.wait(timeout_s=30)
    trace_id = request.get_span_context().trace_id
    assert seen_trace == format(trace_id, "032x")  # the handler ran inside the producer's trace
    by_name = {s.name: s for s in spans.get_finished_spans()}
    send, process = by_name["send traced"], by_name["process traced"]
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == job.id
    assert "claim traced" in by_name


async def test_a_failed_attempt_marks_its_span_as_an_error(
    manager: QueueManager, spans: InMemorySpanExporter
) -> None:
    queue = manager.create_queue("traced")

    async def handler(job):  # type: ignore[no-untyped-def]
        raise UnrecoverableError("no such customer")

    job = await queue.add({}, {"telemetry": {"omitContext": True}})
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.opts.telemetry is not None
    assert stored.opts.telemetry.metadata is None  # omitContext: not part of the caller's trace
    await manager.process("traced", handler)
    with pytest.raises(Exception, match="no such customer"):
        await job.wait(timeout_s=30)
    process = next(s for s in spans.get_finished_spans() if s.name == "process traced")
    assert process.status.status_code is StatusCode.ERROR
    assert process.parent is None


def test_without_the_extra_nothing_of_opentelemetry_is_imported(
    redis_server: RedisServer,
) -> None:
    program = textwrap.dedent(f"""
        import asyncio, sys

        class NoOtel:  # as if the extra were not installed
            def find_spec(self, name, path=None, target=None):
                if name == "opentelemetry" or name.startswith("opentelemetry."):
                    raise ImportError(name)
                return None

        sys.meta_path.insert(0, NoOtel())
        from engine import QueueManager, tracing

        async def main():
            manager = QueueManager("{redis_server.url}", prefix="notrace")
            queue = manager.create_queue("plain")
            await manager.process("plain", lambda job: job.data + 1)
            print(await queue.add_and_wait(41, timeout_s=30), tracing.ENABLED)
            await manager.close_all()

        asyncio.run(main())
        assert not [m for m in sys.modules if m.startswith("opentelemetry")]
    """)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["42", "False"]


async def test_a_schedule_fire_has_its_span(
    manager: QueueManager, spans: InMemorySpanExporter
) -> None:
    await upsert_schedule(manager.store, define_schedule("beat", "fired", every_ms=200))
    manager.create_queue("fired")
    manager.start_scheduler("fired", LeaseConfig(ttl_ms=2000, renew_interval_ms=500))

    async def fired() -> bool:
        return any(s.name == "fire beat" for s in spans.get_finished_spans())

    await wait_for(fired, timeout_s=20)
    fire = next(s for s in spans.get_finished_spans() if s.name == "fire beat")
    assert fire.attributes is not None and fire.attributes["engine.queue"] == "fired"


async def test_without_a_tracer_provider_nothing_is_traced(manager: QueueManager) -> None:
    """The API alone (installed by some other package) gives only no-op spans: the engine
    then skips tracing entirely, so jobs carry no context and cost no spans."""
    assert tracing.ENABLED and not tracing.active()
    queue = manager.create_queue("untraced")
    job = await queue.add({"n": 1})
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.opts.telemetry is None
