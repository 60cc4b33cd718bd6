"""Load balancers on loopback for cluster tests. ``RoundRobin``: HTTP without affinity
(or with an anti-affinity for some paths: they never reach the holder).

Every HTTP request (not every TCP connection: clients keep connections alive)
goes to the next node, on a fresh upstream connection with ``Connection:
close``; a WebSocket upgrade or any response that streams is piped both ways
until either side closes. ``routed`` records which node got which request, so
a test can prove the requests of one connection really were spread.
"""

from __future__ import annotations

import itertools
import socket
import threading
from contextlib import suppress
from urllib.parse import parse_qs, urlsplit

__all__ = ["FirstAlive", "RoundRobin", "pipe"]

BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Balancer:
    """Accepts on a free loopback port; ``_serve`` decides where each client goes."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class FirstAlive(_Balancer):
    """Each TCP connection goes to the first node that accepts it (a node that
    died refuses, so its clients land on the next)."""

    def _serve(self, client: socket.socket) -> None:
        for port in self.ports:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()
            pipe(client, upstream)
            return
        client.close()


class RoundRobin(_Balancer):
    """Each HTTP request goes to the next node; with ``elsewhere``, a request
    whose path ends with one of those suffixes goes to a node that does not
    hold its connection (the one after the node of the id's first GET)."""

    def __init__(self, ports: list[int], *, elsewhere: tuple[str, ...] = ()) -> None:
        self._next = itertools.count()
        self._lock = threading.Lock()
        self._elsewhere = elsewhere
        self.routed: list[tuple[int, str, str, str]] = []
        """``(node index, method, path, id)`` of every request, in order."""
        self.diverted: list[tuple[int, int, str]] = []
        """``(holder, node, id)`` of every request sent away from its holder."""
        super().__init__(ports)

    def nodes_of(self, token_or_id: str) -> set[int]:
        with self._lock:
            return {node for node, _, _, ident in self.routed if ident == token_or_id}

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = [line.split(":", 1) for line in lines[1:] if ":" in line]
                names = {name.strip().lower(): value.strip() for name, value in headers}
                length = int(names.get("content-length", "0"))
                while len(buffer) < length:
                    data = client.recv(65536)
                    if not data:
                        return
                    buffer += data
                body, buffer = buffer[:length], buffer[length:]
                upgrade = "upgrade" in names.get("connection", "").lower()
                kept = [f"{n}:{v}" for n, v in headers if n.strip().lower() != "connection"]
                kept.append("Connection: " + ("Upgrade" if upgrade else "close"))
                request = "\r\n".join([lines[0], *kept]).encode("latin-1") + b"\r\n\r\n" + body
                upstream = self._connect(method, target)
                if upstream is None:
                    return
                upstream.sendall(request)
                if upgrade:
                    threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
                    if buffer:
                        upstream.sendall(buffer)
                # The answer, until the node closes (Connection: close).
                streaming = upgrade
                answered = False
                while data := upstream.recv(65536):
                    answered = True
                    streaming = streaming or b"text/event-stream" in data
                    client.sendall(data)
                upstream.close()
                if streaming:
                    return  # an event stream ends with its TCP connection
                if not answered:
                    # The node died before answering: say so, as a proxy does.
                    client.sendall(BAD_GATEWAY)
                    return
        except OSError:
            pass
        finally:
            with suppress(OSError):
                client.close()

    def _holder(self, path: str, ident: str) -> int | None:
        if not ident or not path.endswith(self._elsewhere):
            return None
        with self._lock:
            for node, method, hub, seen in self.routed:
                if seen == ident and method == "GET" and path.startswith(hub):
                    return node
        return None

    def _connect(self, method: str, target: str) -> socket.socket | None:
        split = urlsplit(target)
        ident = (parse_qs(split.query).get("id") or [""])[0]
        holder = self._holder(split.path, ident)
        # One draw of the shared counter per request: each node is tried once,
        # whatever other threads draw meanwhile (drawing per attempt, two
        # concurrent requests could both draw the dead node twice and give up).
        first = next(self._next) if holder is None else holder + 1
        for offset in range(len(self.ports)):
            node = (first + offset) % len(self.ports)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.ports[node]), timeout=5)
            except OSError:
                continue  # a dead node: the next one
            upstream.settimeout(None)
            with self._lock:
                self.routed.append((node, method, split.path, ident))
                if holder is not None:
                    self.diverted.append((holder, node, ident))
            return upstream
        return None


def pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
