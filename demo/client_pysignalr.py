"""Chat on the demo's ``/hubs/chat`` from Python with ``pysignalr`` and a bearer token.

    python -m demo.client_pysignalr http://127.0.0.1:8000 alice alice-password "Hello"

Gets a token from ``POST /api/token``, connects, says who it is (``WhoAmI``), sends the
message to everyone (and, with ``--to USER``, a username or a user id, as a direct
message), prints what the
hub sends until its own message has come back (and the direct message, when sent to
itself), then listens ``--listen`` more seconds.
Printed lines (stdout):

    connected as alice <alice@contoso.example> roles=Administrators connection=...
    ReceiveMessage alice: Hello
    ReceiveDirectMessage alice@contoso.example: Hello
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Awaitable
from typing import Any, TypeVar

from pysignalr.client import SignalRClient
from pysignalr.messages import CompletionMessage

T = TypeVar("T")
TIMEOUT = 10.0
HUB_EXCEPTION = re.compile(
    r"^An unexpected error occurred invoking '[^']*' on the server\. HubException: "
)


def fetch_token(base_url: str, username: str, password: str) -> str:
    """``POST /api/token``; exits with the server's description on a refusal."""
    request = urllib.request.Request(
        base_url.rstrip("/") + "/api/token",
        data=json.dumps({"username": username, "password": password}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            token: str = json.load(response)["access_token"]
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        sys.exit(f"error: POST /api/token answered {error.code}: {detail}")
    except urllib.error.URLError as error:
        sys.exit(cannot_connect(base_url, error.reason))
    except OSError as error:  # a connection reset or timeout after connecting
        sys.exit(cannot_connect(base_url, error))
    return token


def cannot_connect(base_url: str, reason: object) -> str:
    """One line for a server that cannot be reached (the same as the Node client's)."""
    if isinstance(reason, ConnectionRefusedError):
        return f"error: cannot connect to {base_url}: connection refused (is the demo running?)"
    text = reason.strerror if isinstance(reason, OSError) and reason.strerror else reason
    return f"error: cannot connect to {base_url}: {text}"


class Chat:
    """A connected pysignalr client; waits race the client's run task, so a refused or
    dropped connection fails at once instead of timing out."""

    def __init__(self, hub_url: str, token: str) -> None:
        # pysignalr applies access_token_factory only after negotiating, so the token goes
        # in the headers, which it sends with negotiate and the WebSocket upgrade alike.
        self.client = SignalRClient(
            hub_url, headers={"Authorization": f"Bearer {token}"}, retry_count=1
        )
        self.opened = asyncio.Event()
        self.received: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

        async def on_open() -> None:
            self.opened.set()

        async def on_message(arguments: list[Any]) -> None:
            await self._show("ReceiveMessage", *arguments)

        async def on_direct_message(arguments: list[Any]) -> None:
            await self._show("ReceiveDirectMessage", *arguments)

        async def on_error(message: CompletionMessage) -> None:
            pass  # failed invocations are reported by ``invoke``

        self.client.on_open(on_open)
        self.client.on("ReceiveMessage", on_message)
        self.client.on("ReceiveDirectMessage", on_direct_message)
        self.client.on_error(on_error)

    async def _show(self, target: str, sender: str, message: str) -> None:
        print(f"{target} {sender}: {message}", flush=True)
        await self.received.put((target, sender, message))

    async def __aenter__(self) -> Chat:
        self.task = asyncio.create_task(self.client.run())
        await self.wait(self.opened.wait(), "the connection to open")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def invoke(self, method: str, *arguments: Any) -> Any:
        """Invoke a hub method; returns its result or raises with the server's error."""
        done: asyncio.Future[CompletionMessage] = asyncio.get_running_loop().create_future()

        async def on_completion(message: CompletionMessage) -> None:
            done.set_result(message)

        await self.client.send(method, list(arguments), on_invocation=on_completion)
        completion = await self.wait(done, f"the result of {method}")
        if completion.error:
            # A HubException is the hub refusing on purpose: its own words, not the
            # reference's "unexpected error" wrapper.
            raise RuntimeError(HUB_EXCEPTION.sub("", completion.error))
        return completion.result

    async def wait(self, awaitable: Awaitable[T], what: str) -> T:
        assert self.task is not None
        waiter = asyncio.ensure_future(awaitable)
        finished, _ = await asyncio.wait(
            {waiter, self.task}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if waiter in finished:
            return waiter.result()
        waiter.cancel()
        if self.task in finished:
            error = self.task.exception() if not self.task.cancelled() else None
            raise RuntimeError(f"the connection ended while waiting for {what}: {error!r}")
        raise TimeoutError(f"no {what} within {TIMEOUT} s")


async def chat(hub_url: str, token: str, message: str, to: str | None, listen: float) -> None:
    async with Chat(hub_url, token) as session:
        me = await session.invoke("WhoAmI")
        roles = ",".join(me["roles"]) or "(none)"
        print(
            f"connected as {me['name']} <{me['userId']}> roles={roles} "
            f"connection={me['connectionId']}",
            flush=True,
        )
        # What must come back before we stop: the broadcast, and a direct message to self.
        awaited = {("ReceiveMessage", me["name"], message)}
        await session.invoke("SendMessage", message)
        # SendToUser answers with the user id it sent to (an unknown user is refused).
        if to is not None and await session.invoke("SendToUser", to, message) == me["userId"]:
            awaited.add(("ReceiveDirectMessage", me["userId"], message))
        while awaited:
            awaited.discard(await session.wait(session.received.get(), "our message back"))
        if listen > 0:
            await asyncio.sleep(listen)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m demo.client_pysignalr", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("base_url", help="the demo, e.g. http://127.0.0.1:8000")
    parser.add_argument("username", help="a demo user: alice, bob, asdf42 or mallory")
    parser.add_argument("password", help="the user's password (alice-password, ...)")
    parser.add_argument("message", help="what to send to everyone")
    parser.add_argument(
        "--to", metavar="USER", help="also send it as a direct message (username or user id)"
    )
    parser.add_argument(
        "--listen", type=float, default=0.0, metavar="SECONDS", help="keep printing this long"
    )
    args = parser.parse_args(argv)
    token = fetch_token(args.base_url, args.username, args.password)
    hub_url = args.base_url.rstrip("/") + "/hubs/chat"
    try:
        asyncio.run(chat(hub_url, token, args.message, args.to, args.listen))
    except (RuntimeError, TimeoutError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
