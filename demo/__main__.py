"""``python -m demo --host 127.0.0.1 --port 8000`` (port 0 picks a free one)."""

from __future__ import annotations

import argparse
import logging

import trio

from engine.transports.hypercorn import serve_hypercorn

from .app import build_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def run() -> None:
        app = build_app()
        async with trio.open_nursery() as nursery:
            host, port = await nursery.start(serve_hypercorn, app, args.host, args.port)
            shown = f"[{host}]" if ":" in host else host
            print(f"triohub demo listening on http://{shown}:{port}", flush=True)

    try:
        trio.run(run)
    except* KeyboardInterrupt:
        pass  # Ctrl+C is how the demo stops: exit 0, no traceback


if __name__ == "__main__":
    main()
