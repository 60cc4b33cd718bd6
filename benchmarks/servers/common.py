"""What every benchmark server shares: its command line and the ready line."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import resource
import sys


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--path", default="/hubs/bench")
    parser.add_argument(
        "--transport", choices=["hypercorn", "native", "trio-websocket"], default="hypercorn"
    )
    parser.add_argument("--alg", choices=["HS256", "RS256"], default="HS256")
    parser.add_argument("--key", help="HS256 secret, or a file holding the RS256 public key")
    parser.add_argument("--issuer", default="triohub-bench")
    parser.add_argument("--audience", default="triohub-bench")
    parser.add_argument("--redis", metavar="URL", help="triohub only: a node of a cluster")
    parser.add_argument(
        "--reuse-port", action="store_true", help="triohub native only: SO_REUSEPORT"
    )
    parser.add_argument(
        "--telemetry",
        choices=["metrics", "sampled", "sdk-sampled", "all"],
        help="triohub only: record metrics with the OpenTelemetry SDK, and spans: of 1 %% of "
        "the invocations (head-sampled by triohub: 'sampled'; by the SDK: 'sdk-sampled') "
        "or of every one ('all'); see servers/telemetry.py",
    )
    parser.add_argument(
        "--stateful-reconnect",
        action="store_true",
        help="triohub only: allow stateful reconnect (bench_resume.py)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # 5,000 connections and their listener need more descriptors than some defaults.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # `bench.py --gc-threshold N` (an experiment, the same for every server):
    # the first generation's threshold; CPython's default is 700.
    threshold = os.environ.get("BENCH_GC_THRESHOLD")
    if threshold:
        gc.set_threshold(int(threshold), *gc.get_threshold()[1:])
    return args


def jwt_key(args: argparse.Namespace) -> str | bytes | None:
    """The verification key: the secret itself (HS256), a PEM read from a file (RS256)."""
    if args.key is None:
        return None
    if args.alg == "HS256":
        return str(args.key)
    with open(args.key, "rb") as file:
        return file.read()


def token_valid(args: argparse.Namespace, key: str | bytes, token: str) -> bool:
    """A floor's check of the opening request's ``access_token`` (pyjwt, as triohub)."""
    import jwt

    try:
        jwt.decode(
            token,
            key,
            algorithms=[args.alg],
            audience=args.audience,
            issuer=args.issuer,
            options={"require": ["exp"]},
        )
    except jwt.PyJWTError:
        return False
    return True


def ready(port: int) -> None:
    print(f"READY {port}", flush=True)
    sys.stdout.flush()
