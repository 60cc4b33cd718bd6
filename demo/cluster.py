"""The demo on many processes: ``python -m demo --redis redis://127.0.0.1:6379/0``.

Every node given the same Redis URL (and the same ``DEMO_JWT_SECRET``, so a
token signed by one is valid on all) shares the hubs and every piece of the
demo's state, so any node can answer any request:

* the ban list (a Redis set): a ban refuses the user's new connections everywhere;
* the chat history (a Redis list per user, the last ``HISTORY_PER_USER``);
* ended sessions (``triohub.backplane.sessions.RedisRevocationStore``): a
  cookie signed out on one node is refused by all;
* failed sign-ins (``triohub.backplane.throttle.RedisSignInThrottle``): the
  limits count the attempts made on every node;
* sign-out's closing of the session's live connections (``SignOuts``: the
  session id is published and each node closes its own).

Imported only when ``--redis`` is given: without it nothing loads Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from triohub import HubServer, Principal
from triohub.backplane import BackplaneUnavailable
from triohub.backplane.redis import RedisBackplane

from .chat import HISTORY_PER_USER

if TYPE_CHECKING:
    import coredis

__all__ = ["BAN_KEY", "RedisBanList", "RedisHistory", "SignOuts", "redis_backplane"]

log = logging.getLogger("demo")

BAN_KEY = "triohub-demo:banned"
HISTORY_PREFIX = "triohub-demo:history:"
SIGN_OUTS = "triohub-demo:signed-out"
"""The channel on which a node announces a session it ended."""


def redis_backplane(url: str) -> RedisBackplane:
    return RedisBackplane(url)


class RedisBanList:
    """The demo's bans in a Redis set, read through the backplane's client.

    While Redis is unreachable a check raises, and the authorization policy
    that asks fails closed (nobody new gets in until Redis is back).
    """

    def __init__(self, backplane: RedisBackplane, key: str = BAN_KEY) -> None:
        self.backplane = backplane
        self.key = key

    async def contains(self, user_name: str) -> bool:
        key = self.key
        found = await self.backplane.command("a ban check", lambda c: c.sismember(key, user_name))
        return bool(found)

    async def add(self, user_name: str) -> None:
        key = self.key
        await self.backplane.command("a ban", lambda c: c.sadd(key, [user_name]))


class RedisHistory:
    """What each user said, a Redis list per user (the last ``HISTORY_PER_USER``)."""

    def __init__(self, backplane: RedisBackplane, prefix: str = HISTORY_PREFIX) -> None:
        self.backplane = backplane
        self.prefix = prefix

    async def add(self, user_name: str, message: str) -> None:
        key = self.prefix + user_name

        async def append(client: coredis.Redis[bytes]) -> None:
            async with client.pipeline(transaction=True) as pipe:
                pipe.rpush(key, [message])
                pipe.ltrim(key, -HISTORY_PER_USER, -1)

        await self.backplane.command("keeping a message", append)

    async def of(self, user_name: str) -> list[str]:
        key = self.prefix + user_name
        found = await self.backplane.command("reading a history", lambda c: c.lrange(key, 0, -1))
        return [item.decode(errors="replace") for item in found if isinstance(item, bytes)]


class SignOuts:
    """Sign-out closes the session's live connections on every node: the node
    that ended it publishes the session id, and each node closes its own.

    Args:
        backplane: the process's link to Redis.
        server: this node's hub server.
        session_of: a principal's session id (``CookieAuthenticator.session_of``).
    """

    def __init__(
        self,
        backplane: RedisBackplane,
        server: HubServer,
        session_of: Callable[[Principal], str | None],
    ) -> None:
        self.backplane = backplane
        self.server = server
        self.session_of = session_of
        backplane.subscribe(SIGN_OUTS, self._on_sign_out)

    async def announce(self, session_id: str) -> None:
        """Tell the other nodes (this one closes its own connections itself)."""
        try:
            await self.backplane.publish(SIGN_OUTS, session_id.encode())
        except BackplaneUnavailable as error:
            # The session is revoked in Redis: the other nodes refuse its
            # requests; connections they hold live until their next request.
            log.warning("sign-out not announced to the other nodes: %s", error)

    def _on_sign_out(self, data: bytes) -> None:
        session_id = data.decode(errors="replace")
        if self.server.running:
            self.server.spawn(
                self.server.abort_connections, lambda p: self.session_of(p) == session_id
            )


# -- make demo-cluster: one redis-server and demo nodes, for a person to try ---------------


def main(argv: list[str] | None = None) -> int:
    """``python -m demo.cluster``: start a redis-server (unless ``--redis`` names
    one) and a demo node per port; Ctrl+C stops them all."""
    import argparse
    import os
    import secrets
    import shutil
    import signal
    import subprocess
    import sys

    parser = argparse.ArgumentParser(prog="python -m demo.cluster", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", default="8000,8001", help="one demo node per port")
    parser.add_argument("--redis", metavar="URL", help="an existing Redis (default: start one)")
    parser.add_argument("--redis-port", type=int, default=6390)
    args = parser.parse_args(argv)
    ports = [int(p) for p in args.ports.split(",") if p]

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    children: list[subprocess.Popen[bytes]] = []
    redis: subprocess.Popen[bytes] | None = None
    url = args.redis
    try:
        if url is None:
            server = shutil.which("redis-server")
            if server is None:
                print("redis-server is not installed (make redis installs it)", file=sys.stderr)
                return 1
            options = ["--port", str(args.redis_port), "--bind", "127.0.0.1"]
            options += ["--save", "", "--appendonly", "no", "--loglevel", "warning"]
            redis = subprocess.Popen([server, *options])
            url = f"redis://127.0.0.1:{args.redis_port}/0"
        # One secret for every node: a token signed by one is valid on all.
        env = {**os.environ}
        env.setdefault("DEMO_JWT_SECRET", secrets.token_urlsafe(48))
        for port in ports:
            command = [sys.executable, "-m", "demo", "--host", args.host, "--port", str(port)]
            children.append(subprocess.Popen([*command, "--redis", url], env=env))
        shown = ", ".join(f"http://{args.host}:{port}" for port in ports)
        print(f"demo cluster on {url}: nodes {shown} (Ctrl+C stops them)", flush=True)
        for child in children:
            child.wait()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
        if redis is not None:
            redis.terminate()
            redis.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
