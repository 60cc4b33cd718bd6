"""Running a ``HubServer`` as a process: graceful shutdown on SIGTERM and SIGINT.

Docker (``docker stop``), Kubernetes and systemd end a service with SIGTERM and,
after a grace period of their own, SIGKILL; a person presses Ctrl+C (SIGINT).
``run_until_signalled`` turns the first of either into the hub server's graceful
stop:

1. new hub connections are refused (``HubServer.stop()``: every server answers
   negotiate, upgrades and the first request of a new SSE or long-polling
   connection with 503, as the endpoint decides);
2. invocations and streams running at that moment get up to ``grace`` seconds
   to finish, and their callers their Completion; new invocations meanwhile
   are answered with an error Completion (the server is shutting down);
3. once nothing runs any more (or the grace is over), every open connection is
   sent the Close record that allows reconnecting,
   ``{"type":7,"allowReconnect":true}``, so the official clients with automatic
   reconnect come back (to another replica, or to this service once restarted);
   what still runs at the end of the grace is cancelled;
4. the closing itself (what was queued for the client, the Close record, the
   transport's close handshake, ``on_disconnected``) gets what is left of
   ``grace``; each of those steps is bounded by the hub's ``close_timeout`` too;
5. the listeners are cancelled last and the function returns: exit 0.

A second signal ends the process at once. Signals are received with
``trio.open_signal_receiver``, so SIGINT never becomes a ``KeyboardInterrupt``
raised in whatever task happened to run (a connection handler that logs it and
carries on, as hypercorn's do under load).
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from ..hub.server import HubServer

__all__ = ["ServeFunction", "run_until_signalled"]

log = logging.getLogger("triohub.lifecycle")

ServeFunction = Callable[..., Awaitable[object]]
"""A listener that follows Trio's start protocol: called with ``task_status=``
only, it reports what it bound (``partial(serve_native, server, host, port)``)."""

DEFAULT_SIGNALS = (signal.SIGINT, signal.SIGTERM)


async def run_until_signalled(
    server: HubServer,
    *serves: ServeFunction,
    grace: float = 5.0,
    signals: Collection[int] = DEFAULT_SIGNALS,
    task_status: trio.TaskStatus[list[Any]] = trio.TASK_STATUS_IGNORED,
) -> signal.Signals | None:
    """Run ``server`` and its listeners until SIGTERM or SIGINT, then stop gracefully.

    The demo does this (``demo/__main__.py``)::

        app = build_app()  # a SignalRApp; app.server is its HubServer
        trio.run(
            partial(
                run_until_signalled,
                app.server,
                partial(serve_hypercorn, app, "0.0.0.0", 8000),
                grace=5,
            )
        )  # returns after SIGTERM / SIGINT and a graceful stop: exit 0

    Any listener that follows Trio's start protocol works (``serve_hypercorn``,
    ``serve_native``, ``serve_trio_websocket``), and several may serve one hub
    server, e.g. the hubs and the site on triohub's own server, and the same on
    hypercorn on a second port::

        await run_until_signalled(
            app.server,
            partial(serve_native, app.server, host, 8001, fallback=app.fallback),
            partial(serve_hypercorn, app, host, 8000),
        )

    ``addresses = await nursery.start(run_until_signalled, ...)`` returns once
    every listener is bound, with their addresses in order (port 0 picks a free
    port). The hub server must not be running yet: this function runs it (an
    ASGI ``SignalRApp`` then leaves it alone in its lifespan), because the order
    of the shutdown matters: the hub connections are closed, with their Close
    records, while the listeners that carry them still run, and the listeners
    are cancelled last. ``server.stop()`` called by the application ends it the
    same way (and it returns ``None``).

    How long the graceful part lasts: ``grace`` seconds for the running
    invocations to finish and the connections to close, then what is left is
    cancelled, except the closing steps, which run
    shielded, each within the hub's ``close_timeout`` (5 s by default): a client
    that stopped reading can hold its connection up to three of those (the
    queued records and the Close record, the close handshake, ``on_disconnected``).
    Keep ``grace`` and ``close_timeout`` below the supervisor's patience
    (``docker stop``: 10 s; Kubernetes: ``terminationGracePeriodSeconds``, 30 s;
    systemd: ``TimeoutStopSec``, 90 s). A second signal does not wait: it gets
    the signal's default action, so the process ends at once, as it would
    without this helper (exit status ``128 + signal`` in a shell).

    With signals (the default) it must run in the main thread (where Python lets
    signal handlers be set); with ``signals=()`` anywhere.

    Args:
        server: the hubs; not running yet.
        serves: listeners for it, each a start-protocol callable that takes only
            ``task_status`` (bind the other arguments with ``functools.partial``).
        grace: seconds the running invocations get to finish, and the
            connections to close, after ``server.stop()`` before what is left
            of them is cancelled.
        signals: the signals that begin the shutdown; ``()`` for none (a server
            embedded in a larger program, or run outside the main thread, that
            ends by ``server.stop()`` or by cancellation).

    Returns:
        The signal that began the shutdown, or ``None`` if the application
        called ``server.stop()`` itself.

    Raises:
        RuntimeError: the hub server is already running, or signals were asked
            for outside the main thread (from ``trio.open_signal_receiver``).
        ListenError: a listener cannot bind its address (an ``OSError``).
    """
    if server.running:
        raise RuntimeError(
            "run_until_signalled runs the HubServer itself; do not start server.run before it"
        )
    first: signal.Signals | None = None
    receiver = trio.open_signal_receiver(*signals) if signals else _no_signals()
    with receiver as received:
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal first
                async for number in received:
                    caught = signal.Signals(number)
                    if first is None:
                        first = caught
                        log.info(
                            "%s: closing %d connection(s), %.3g s grace (send it again to "
                            "exit at once)",
                            caught.name,
                            server.live_connections,
                            grace,
                        )
                        server.stop()
                    else:
                        log.warning("%s again: exiting at once", caught.name)
                        # The signal's own default action, as if this helper were
                        # not here: the process ends now, whatever still runs.
                        signal.signal(number, signal.SIG_DFL)
                        os.kill(os.getpid(), number)

            # Watch from the start: a signal during start-up stops it as well.
            nursery.start_soon(watch)
            await nursery.start(partial(server.run, shutdown_grace=grace))
            addresses, listeners = await nursery.start(_serve_all, serves)
            task_status.started(addresses)
            await server.wait_stopped()
            listeners.cancel()
            nursery.cancel_scope.cancel()  # the watcher
    return first


@contextmanager
def _no_signals() -> Iterator[AsyncIterator[int]]:
    """What ``signals=()`` watches: a receiver that never receives."""
    send, receive = trio.open_memory_channel[int](0)
    with send, receive:
        yield receive


async def _serve_all(
    serves: Sequence[ServeFunction],
    task_status: trio.TaskStatus[tuple[list[Any], trio.CancelScope]] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with trio.open_nursery() as nursery:
        addresses = [await nursery.start(serve) for serve in serves]
        task_status.started((addresses, nursery.cancel_scope))
