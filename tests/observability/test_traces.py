"""Invocation spans, read from the OpenTelemetry SDK's in-memory exporter.

The end-to-end test drives the official ``@microsoft/signalr`` client over every
transport (``js/traced.mjs``): its 10.x release has no API for invocation headers,
so the script plugs in the client's own ``JsonHubProtocol`` extended to add
``headers`` to the Invocation messages it writes (``withHubProtocol``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import (
    SpanKind,
    StatusCode,
    format_trace_id,
    get_current_span,
    use_span,
)

from triohub import AuthorizationPolicy, Hub, HubServer, PolicyRegistry, authorize
from triohub.protocol import Completion, Invocation
from triohub.testing import open_test_client
from triohub.transports.asgi import SignalRApp
from triohub.transports.hypercorn import serve_hypercorn
from triohub.transports.native import serve_native

from .test_metrics import ACTIVE, DURATION, Reader, attrs_of

PATH = "/hubs/traced"
SCRIPT = Path(__file__).parent / "js" / "traced.mjs"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


class Traced(Hub):
    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    async def echo(self, text: str) -> str:
        return text

    async def ready(self) -> None:
        pass

    async def active(self) -> dict[str, int]:
        """The server's active-connection counts by transport, as metrics report them."""
        return {
            dict(attributes)["signalr.transport"]: value
            for attributes, value in self.reader.points(ACTIVE).items()
        }

    @authorize("Admins")
    async def secret(self) -> str:
        return "never"

    async def fail(self) -> None:
        raise KeyError("missing")


class Spans:
    def __init__(self, sampler: Sampler | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.exporter.get_finished_spans() if span.name == name]


@pytest.fixture
def spans() -> Iterator[Spans]:
    made = Spans()
    yield made
    made.provider.shutdown()


@pytest.fixture
def reader() -> Iterator[Reader]:
    made = Reader()
    yield made
    made.provider.shutdown()


async def start(nursery: trio.Nursery, reader: Reader, spans: Spans) -> HubServer:
    policies = PolicyRegistry()
    policies.add_policy("Admins", AuthorizationPolicy.build(roles="admin"))
    server = HubServer(
        policies=policies, meter_provider=reader.provider, tracer_provider=spans.provider
    )
    server.map_hub(PATH, Traced, factory=lambda: Traced(reader))
    await nursery.start(server.run)
    return server


def check_invocation_span(span: ReadableSpan, method: str) -> None:
    assert span.kind is SpanKind.SERVER
    attributes = dict(span.attributes or {})
    attributes.pop("error.type", None)  # checked by the callers that expect a failure
    assert attributes == {"rpc.system": "signalr", "rpc.service": "Traced", "rpc.method": method}
    assert span.parent is not None
    assert (span.context.trace_id, span.parent.span_id) == (int(TRACE_ID, 16), int(PARENT_ID, 16))
    assert span.parent.is_remote


async def test_spans_take_their_parent_from_the_invocation_headers(
    nursery: trio.Nursery, reader: Reader, spans: Spans
) -> None:
    server = await start(nursery, reader, spans)
    async with open_test_client(server, PATH) as client:
        await client.send_message(
            Invocation("Echo", ("hi",), "1", headers={"traceparent": TRACEPARENT})
        )
        assert await client.next_message() == Completion.with_result("1", "hi")
        await client.send_message(Invocation("Fail", (), "2", headers={"traceparent": TRACEPARENT}))
        assert isinstance(await client.next_message(), Completion)
        await client.send_message(Invocation("Echo", ("plain",), "3"))
        assert await client.next_message() == Completion.with_result("3", "plain")
    (traced, plain) = spans.named("Traced/Echo")
    check_invocation_span(traced, "Echo")
    assert traced.status.status_code is StatusCode.UNSET
    assert plain.parent is None  # no traceparent: a new trace
    (failed,) = spans.named("Traced/Fail")
    check_invocation_span(failed, "Fail")
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "KeyError"
    assert failed.status.status_code is StatusCode.ERROR


async def test_without_a_provider_nothing_is_recorded(nursery: trio.Nursery) -> None:
    # No test sets OpenTelemetry's global providers: they are the API's no-ops.
    policies = PolicyRegistry()
    policies.add_policy("Admins", AuthorizationPolicy.build(roles="admin"))
    server = HubServer(policies=policies)
    server.map_hub(PATH, Traced, factory=lambda: Traced(Reader()))
    await nursery.start(server.run)
    # The no-op tracer's span is dropped: the dispatcher does nothing more.
    method = server.hubs[PATH].method_telemetry["echo"].span
    assert server.telemetry.tracer.start(method, {"traceparent": TRACEPARENT}) is None
    async with open_test_client(server, PATH) as client:
        await client.send_message(
            Invocation("Echo", ("hi",), "1", headers={"traceparent": TRACEPARENT})
        )
        assert await client.next_message() == Completion.with_result("1", "hi")


class DropInvocations(Sampler):
    """Drops invocation spans (``Probe/...``) and samples every other root: a
    child that lost its invocation parent would show up as a trace of its own."""

    def should_sample(
        self, parent_context: Any, trace_id: int, name: str, *_: Any, **__: Any
    ) -> SamplingResult:
        return SamplingResult(
            Decision.DROP if name.startswith("Probe/") else Decision.RECORD_AND_SAMPLE
        )

    def get_description(self) -> str:
        return "DropInvocations"


class Probe(Hub):
    """Reports the span current in the method, and makes a child span of it."""

    def __init__(self, spans: Spans) -> None:
        self.spans = spans

    async def current(self) -> dict[str, Any]:
        span = get_current_span()
        with self.spans.provider.get_tracer("app").start_as_current_span("work"):
            pass
        context = span.get_span_context()
        return {
            "trace_id": format_trace_id(context.trace_id),
            "valid": context.is_valid,
            "recording": span.is_recording(),
        }

    @authorize("Admins")
    async def guarded(self) -> str:
        return "never"


async def probe(
    nursery: trio.Nursery, spans: Spans, reader: Reader | None = None, sample_ratio: float = 1.0
) -> HubServer:
    policies = PolicyRegistry()
    policies.add_policy("Admins", AuthorizationPolicy.build(roles="admin"))
    server = HubServer(
        policies=policies,
        tracer_provider=spans.provider,
        meter_provider=None if reader is None else reader.provider,
        trace_sample_ratio=sample_ratio,
    )
    server.map_hub("/hubs/probe", Probe, factory=lambda: Probe(spans))
    await nursery.start(server.run)
    return server


async def call_current(server: HubServer, headers: dict[str, str]) -> dict[str, Any]:
    async with open_test_client(server, "/hubs/probe") as client:
        await client.send_message(Invocation("Current", (), "1", headers=headers))
        reply = await client.next_message()
    assert isinstance(reply, Completion)
    assert reply.error is None, reply.error
    result: dict[str, Any] = reply.result
    return result


async def test_an_unsampled_invocation_still_carries_its_parent_trace(
    nursery: trio.Nursery,
) -> None:
    # The client's trace is not sampled (flags 00): nothing is recorded, yet the
    # method runs inside that trace, so what it calls propagates it.
    spans = Spans(ParentBased(ALWAYS_ON))
    server = await probe(nursery, spans)
    seen = await call_current(server, {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert seen == {"trace_id": TRACE_ID, "valid": True, "recording": False}
    assert spans.exporter.get_finished_spans() == ()
    spans.provider.shutdown()


async def test_a_dropped_invocation_span_is_still_the_parent_of_the_methods_spans(
    nursery: trio.Nursery,
) -> None:
    # The sampler drops the invocation's span; the method's own span is its child
    # (and so dropped by ParentBased), not the root of a trace of its own.
    spans = Spans(ParentBased(DropInvocations()))
    server = await probe(nursery, spans)
    seen = await call_current(server, {})
    assert seen["valid"]
    assert not seen["recording"]
    assert spans.exporter.get_finished_spans() == ()
    spans.provider.shutdown()


async def test_an_invocation_span_has_no_parent_but_its_traceparent(
    nursery: trio.Nursery, spans: Spans
) -> None:
    # As ASP.NET's: a span current where the connection runs is not its parent.
    server = await probe(nursery, spans)
    ambient = spans.provider.get_tracer("app").start_span("ambient")
    with use_span(ambient, end_on_exit=True):
        seen = await call_current(server, {})
        traced = await call_current(server, {"traceparent": TRACEPARENT})
    assert seen["recording"]
    assert seen["trace_id"] != format_trace_id(ambient.get_span_context().trace_id)
    assert traced["trace_id"] == TRACE_ID
    first, second = spans.named("Probe/Current")
    assert first.parent is None
    assert second.parent is not None
    assert second.parent.span_id == int(PARENT_ID, 16)
    # The method's own spans nest under the invocation's.
    work = spans.named("work")
    assert [w.parent.span_id if w.parent else None for w in work] == [
        first.context.span_id,
        second.context.span_id,
    ]


async def test_invocations_the_sampler_drops_are_traced_counted_and_not_recorded(
    nursery: trio.Nursery,
) -> None:
    # ParentBased(TraceIdRatioBased(0)): no invocation recorded (nor its policy
    # check), each still in a trace of its own, and the metrics count every one.
    spans = Spans(ParentBased(TraceIdRatioBased(0.0)))
    reader = Reader()
    server = await probe(nursery, spans, reader)
    first = await call_current(server, {})
    second = await call_current(server, {})
    async with open_test_client(server, "/hubs/probe") as client:
        await client.send_message(Invocation("Guarded", (), "1", headers={}))
        denied = await client.next_message()
    assert isinstance(denied, Completion)
    assert denied.error == "Failed to invoke 'Guarded' because user is unauthorized"
    assert first["valid"]
    assert second["valid"]
    assert first["trace_id"] != second["trace_id"]
    assert spans.exporter.get_finished_spans() == ()
    assert (
        reader.value(
            "triohub.invocations",
            triohub__hub="Probe",
            triohub__method="Current",
            triohub__outcome="ok",
        )
        == 2
    )
    assert (
        reader.value(
            "triohub.invocations",
            triohub__hub="Probe",
            triohub__method="Guarded",
            triohub__outcome="denied",
        )
        == 1
    )
    spans.provider.shutdown()
    reader.provider.shutdown()


def hypercorn(server: HubServer) -> Any:
    return partial(serve_hypercorn, SignalRApp(server))


def native(server: HubServer) -> Any:
    return partial(serve_native, server)


@pytest.mark.e2e
@pytest.mark.parametrize("serve", [hypercorn, native])
async def test_the_official_js_client_over_every_transport(
    nursery: trio.Nursery, reader: Reader, spans: Spans, serve: Any
) -> None:
    node = shutil.which("node")
    assert node is not None, "node (Node.js) is not on PATH; `make test` installs it"
    server = await start(nursery, reader, spans)
    host, port = await nursery.start(serve(server), "127.0.0.1", 0)
    done = await trio.run_process(
        [node, str(SCRIPT), f"http://{host}:{port}{PATH}", TRACEPARENT],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    seen: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    # While the three were open, one per transport, in ASP.NET's spelling.
    assert seen["active"] == {"web_sockets": 1, "server_sent_events": 1, "long_polling": 1}
    assert seen["echo"] == "hi"
    assert "Failed to invoke 'Secret' because user is unauthorized" in seen["denied"]
    await server.wait_idle()

    (echo,) = spans.named("Traced/Echo")
    check_invocation_span(echo, "Echo")
    (secret,) = spans.named("Traced/Secret")
    check_invocation_span(secret, "Secret")
    assert secret.attributes is not None
    assert secret.attributes["error.type"] == "Unauthorized"
    assert secret.status.status_code is StatusCode.ERROR
    (check,) = spans.named("authorize Admins")
    assert check.parent is not None
    assert check.parent.span_id == secret.context.span_id
    assert check.attributes is not None
    assert check.attributes["triohub.outcome"] == "denied"
    (active,) = spans.named("Traced/Active")
    assert active.parent is None  # sent before the headers were set

    # Afterwards: every transport back to zero, one closed connection each.
    assert set(reader.points(ACTIVE).values()) == {0}
    for transport in ("web_sockets", "server_sent_events", "long_polling"):
        point = reader.points(DURATION)[
            attrs_of(signalr__transport=transport, signalr__connection__status="normal_closure")
        ]
        assert point.count == 1
    assert (
        reader.value(
            "triohub.invocations",
            triohub__hub="Traced",
            triohub__method="Secret",
            triohub__outcome="denied",
        )
        == 1
    )
