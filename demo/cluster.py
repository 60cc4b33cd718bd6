"""The demo on many processes: ``python -m demo --redis redis://127.0.0.1:6379/0``.

Every node given the same Redis URL (and the same ``DEMO_JWT_SECRET``, so a
token signed by one is valid on all) shares the hubs: a chat message, a direct
message or ``BanUser`` on one node reaches the users on every node. The ban
list is a Redis set, so a ban refuses the user's new connections everywhere.

Imported only when ``--redis`` is given: without it nothing loads Redis.
"""

from __future__ import annotations

from triohub.backplane.redis import RedisBackplane

__all__ = ["BAN_KEY", "RedisBanList", "redis_backplane"]

BAN_KEY = "triohub-demo:banned"


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
        client = self.backplane.client
        if client is None:
            raise ConnectionError("the ban list's Redis is unreachable")
        return bool(await client.sismember(self.key, user_name))

    async def add(self, user_name: str) -> None:
        client = self.backplane.client
        if client is None:
            raise ConnectionError("the ban list's Redis is unreachable")
        await client.sadd(self.key, [user_name])


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
