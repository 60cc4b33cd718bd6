"""triohub under benchmark: ``BenchHub`` on hypercorn (trio worker), on triohub's
own server (``serve_native``) or on trio-websocket.

Hypercorn and the native server answer negotiate; the trio-websocket server has
no HTTP, so clients skip negotiation. All authenticate with JWT bearer tokens
(``access_token``) when given ``--key``.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import trio

# For benchmarks.servers.common; triohub itself is the installed package (the bench venv's).
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from benchmarks.servers.common import jwt_key, parse_args, ready
from benchmarks.servers.telemetry import providers as telemetry
from triohub import (
    AuthenticatedUserRequirement,
    AuthorizationContext,
    AuthorizationPolicy,
    Hub,
    HubOptions,
    HubServer,
    JwtBearerAuthenticator,
    JwtBearerOptions,
    PolicyRegistry,
    Requirement,
    SignalRApp,
    authorize,
    serve_hypercorn,
    serve_native,
    serve_trio_websocket,
)
from triohub.transports.cluster import derive_key


class BenchScope(Requirement):
    """Decided by a handler registered for it (no self-handling)."""


def bench_scope_handler(context: AuthorizationContext) -> None:
    # A plain function: the documented fast path, evaluated in place. (An
    # async def handler is awaited under the authorization timeout, whose
    # cancel scope costs more than the whole evaluation; see benchmarks/README.md.)
    for requirement in context.pending(BenchScope):
        if "bench" in (context.principal.claims.get("scope") or ()):
            context.succeed(requirement)


def policies() -> PolicyRegistry:
    registry = PolicyRegistry()
    registry.add_policy(
        "bench", AuthorizationPolicy([AuthenticatedUserRequirement(), BenchScope()])
    )
    registry.add_handler(BenchScope, bench_scope_handler)
    return registry


class BenchHub(Hub):
    async def echo(self, value: Any) -> Any:
        return value

    @authorize("bench")
    async def echo_guarded(self, value: Any) -> Any:
        return value

    async def broadcast(self, value: Any) -> None:
        await self.clients.all.send("Receive", value)

    async def send_to_user(self, user: str, value: Any) -> None:
        await self.clients.user(user).send("Receive", value)


def build_server(args: Any) -> HubServer:
    authenticator = None
    key = jwt_key(args)
    if key is not None:
        authenticator = JwtBearerAuthenticator(
            JwtBearerOptions(
                algorithms=(args.alg,),
                key=key,
                issuer=args.issuer,
                audience=args.audience,
                leeway=0,
            )
        )
    backplane = None
    if args.redis:
        from triohub.backplane.redis import RedisBackplane

        backplane = RedisBackplane(args.redis)
    providers = telemetry(args.telemetry) if args.telemetry else {}
    server = HubServer(
        authenticator=authenticator,
        policies=policies(),
        backplane=backplane,
        # Nodes of one cluster honour each other's connection tokens.
        connection_token_key=derive_key(args.key or "bench") if backplane else None,
        **providers,
    )
    options = HubOptions(
        close_on_authentication_expiration=True,
        allow_stateful_reconnect=args.stateful_reconnect,
    )
    server.map_hub(args.path, BenchHub, options=options)
    return server


REVOCATIONS = 1000
"""Revocations in force while measuring: the request checks look them up (none
matches the load generator's tokens), as a server that revokes would."""


async def revoke_unrelated(server: HubServer) -> None:
    for n in range(REVOCATIONS - 1):
        await server.revoke(token_id=f"bench-revoked-{n}")
    await server.revoke(user="bench-revoked-user")


async def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    server = build_server(args)
    async with trio.open_nursery() as nursery:
        if args.transport == "hypercorn":
            _, port = await nursery.start(serve_hypercorn, SignalRApp(server), args.host, args.port)
        elif args.transport == "native":
            await nursery.start(server.run)
            if server.backplane is not None:
                await server.backplane.wait_connected()
            _, port = await nursery.start(
                partial(serve_native, reuse_port=args.reuse_port), server, args.host, args.port
            )
        else:
            await nursery.start(server.run)
            _, port = await nursery.start(serve_trio_websocket, server, args.host, args.port)
        await revoke_unrelated(server)
        ready(port)


if __name__ == "__main__":
    trio.run(main)
