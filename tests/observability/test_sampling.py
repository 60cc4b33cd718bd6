"""Head sampling: ``HubServer(trace_sample_ratio=...)`` decides which invocations
get a span before the OpenTelemetry SDK is asked (``observability/tracing.py``).

The SDK's sampler is left at its default, ``ParentBased(ALWAYS_ON)``, as the
README recommends with head sampling: every span triohub opens is recorded, so
the in-memory exporter shows exactly which invocations were traced.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trio
from opentelemetry.trace import format_trace_id

from triohub import HubServer
from triohub.protocol import Completion, Invocation
from triohub.testing import open_test_client

from .test_metrics import Reader
from .test_traces import PARENT_ID, TRACE_ID, TRACEPARENT, Spans, call_current, probe

UNSAMPLED_PARENT = f"00-{TRACE_ID}-{PARENT_ID}-00"


@pytest.fixture
def sdk() -> Iterator[tuple[Spans, Reader]]:
    """The SDK's in-memory span exporter and metric reader."""
    spans, reader = Spans(), Reader()
    yield spans, reader
    spans.provider.shutdown()
    reader.provider.shutdown()


async def test_an_invocation_left_out_has_no_span_and_is_still_counted(
    nursery: trio.Nursery, sdk: tuple[Spans, Reader]
) -> None:
    spans, reader = sdk
    server = await probe(nursery, spans, reader, 0.0)
    seen = await call_current(server, {})
    # Nothing current in the method: its own span is a root the SDK decides.
    assert seen["valid"] is False
    assert spans.named("Probe/Current") == []
    (work,) = spans.named("work")
    assert work.parent is None
    # A traceparent that is not valid counts as none.
    await call_current(server, {"traceparent": "00-not-a-trace-01"})
    assert spans.named("Probe/Current") == []
    async with open_test_client(server, "/hubs/probe") as client:
        await client.send_message(Invocation("Guarded", (), "1"))
        denied = await client.next_message()
    assert isinstance(denied, Completion)
    assert denied.error == "Failed to invoke 'Guarded' because user is unauthorized"
    assert spans.named("Probe/Guarded") == []
    assert spans.named("authorize Admins") == []  # no invocation span, no child
    counts = {
        (method, outcome): reader.value(
            "triohub.invocations",
            triohub__hub="Probe",
            triohub__method=method,
            triohub__outcome=outcome,
        )
        for method, outcome in (("Current", "ok"), ("Guarded", "denied"))
    }
    assert counts == {("Current", "ok"): 2, ("Guarded", "denied"): 1}


async def test_a_traceparent_wins_over_head_sampling(
    nursery: trio.Nursery, sdk: tuple[Spans, Reader]
) -> None:
    spans, _ = sdk
    # Ratio 0: only invocations carrying a trace are traced, and its sampled
    # flag decides whether the span records (the SDK's ParentBased sampler).
    server = await probe(nursery, spans, sample_ratio=0.0)
    sampled = await call_current(server, {"traceparent": TRACEPARENT})
    assert sampled == {"trace_id": TRACE_ID, "valid": True, "recording": True}
    (span,) = spans.named("Probe/Current")
    assert span.parent is not None
    assert (span.parent.span_id, span.parent.is_remote) == (int(PARENT_ID, 16), True)
    (work,) = spans.named("work")
    assert work.parent is not None
    assert work.parent.span_id == span.context.span_id
    # Flags 00: not recorded, yet the method runs in the client's trace (as before).
    unsampled = await call_current(server, {"traceparent": UNSAMPLED_PARENT})
    assert unsampled == {"trace_id": TRACE_ID, "valid": True, "recording": False}
    assert len(spans.named("Probe/Current")) == 1
    assert len(spans.named("work")) == 1  # the method's span dropped with its parent
    # The policy check of a traced invocation is its child, as without sampling.
    async with open_test_client(server, "/hubs/probe") as client:
        await client.send_message(
            Invocation("Guarded", (), "1", headers={"traceparent": TRACEPARENT})
        )
        assert isinstance(await client.next_message(), Completion)
    (guarded,) = spans.named("Probe/Guarded")
    (check,) = spans.named("authorize Admins")
    assert check.parent is not None
    assert check.parent.span_id == guarded.context.span_id


async def test_the_ratio_is_the_share_of_invocations_traced(
    nursery: trio.Nursery, sdk: tuple[Spans, Reader]
) -> None:
    spans, _ = sdk
    server = await probe(nursery, spans, sample_ratio=0.5)
    calls = 200
    async with open_test_client(server, "/hubs/probe") as client:
        for number in range(calls):
            await client.send_message(Invocation("Current", (), str(number)))
            assert isinstance(await client.next_message(), Completion)
    traced = spans.named("Probe/Current")
    # Binomial(200, 0.5): outside 50..150 with a probability under 1e-12.
    assert 50 <= len(traced) <= 150
    assert all(span.parent is None for span in traced)
    assert len({format_trace_id(span.context.trace_id) for span in traced}) == len(traced)


@pytest.mark.parametrize("ratio", [-0.1, 1.5])
def test_a_ratio_outside_zero_to_one_is_refused(ratio: float) -> None:
    with pytest.raises(ValueError, match="trace_sample_ratio"):
        HubServer(trace_sample_ratio=ratio)
