"""Authentication end to end with the official JavaScript client against triohub's own
server (``serve_native``): the WebSocket cases of test_auth_js.py (``js/auth.mjs``
scenarios and the same checks), with the demo's chat hub and its JWT bearer
authentication served natively (``native_demo``) and tokens from the demo's
``/api/token`` (hypercorn; ``serve_native`` serves hubs only).
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from .conftest import NativeDemo, NodeClient
from .test_auth_js import check_expiry, check_one_user, check_refused, check_transports, run_auth

pytestmark = pytest.mark.e2e

TRANSPORTS = ["WebSockets"]
EXPIRY_CONNECTIONS = 3


async def run_native(
    node_client: NodeClient, scenario: str, native_demo: NativeDemo, **env: str
) -> Any:
    """``run_auth`` with the chat hub on ``serve_native``, in a worker thread (the
    servers run on this one)."""
    return await trio.to_thread.run_sync(
        lambda: run_auth(
            node_client,
            scenario,
            native_demo.base_url,
            AUTH_HUB_URL=native_demo.url("/hubs/chat"),
            AUTH_TRANSPORTS=",".join(TRANSPORTS),
            **env,
        )
    )


async def test_access_token_factory(native_demo: NativeDemo, node_client: NodeClient) -> None:
    check_transports(await run_native(node_client, "transports", native_demo), TRANSPORTS)


async def test_start_without_a_valid_token_rejects_with_401(
    native_demo: NativeDemo, node_client: NodeClient
) -> None:
    check_refused(await run_native(node_client, "refused", native_demo), TRANSPORTS)


async def test_send_to_user(native_demo: NativeDemo, node_client: NodeClient) -> None:
    observed = await run_native(node_client, "oneUserThreeTransports", native_demo)
    check_one_user(observed, TRANSPORTS)


async def test_expiry_closes_at_exp_and_the_client_reconnects_with_a_fresh_token(
    native_demo: NativeDemo, node_client: NodeClient
) -> None:
    observed = await run_native(
        node_client,
        "expiry",
        native_demo,
        AUTH_EXPIRY_TRANSPORT="WebSockets",
        AUTH_EXPIRY_CONNECTIONS=str(EXPIRY_CONNECTIONS),
    )
    check_expiry(observed, EXPIRY_CONNECTIONS)
