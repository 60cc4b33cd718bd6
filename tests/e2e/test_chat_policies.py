"""The ASP.NET Core SignalR authorization guide's examples, end to end with the
official JavaScript client against the demo's ``/hubs/chat``: ``BanUser`` needs
the ``Administrators`` and ``DomainRestricted`` policies, ``ViewUserHistory``
needs ``DomainRestricted`` (a requirement that is its own handler and denies
asdf42 ``BanUser``), and anonymous callers cannot negotiate."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from tests.demo_process import DemoServer

from .conftest import E2E_DIR, NODE_TIMEOUT, REPO_ROOT, NodeClient, _results

pytestmark = pytest.mark.e2e

SCRIPT = E2E_DIR / "js" / "chat_policies.mjs"
ALLOWED_BAN = {
    "error": "An unexpected error occurred invoking 'BanUser' on the server. HubException: Unknown user 'ghost'."
}
DENIED_BAN = {"error": "Failed to invoke 'BanUser' because user is unauthorized"}
ALLOWED_HISTORY = {"value": []}
DENIED_HISTORY = {"error": "Failed to invoke 'ViewUserHistory' because user is unauthorized"}

EXPECTED = {
    # user: (BanUser, ViewUserHistory)
    "alice": (ALLOWED_BAN, ALLOWED_HISTORY),  # Administrators, @contoso.example
    "bob": (DENIED_BAN, ALLOWED_HISTORY),  # no role
    "asdf42": (DENIED_BAN, ALLOWED_HISTORY),  # DomainRestricted refuses asdf42 BanUser
    "mallory": (DENIED_BAN, DENIED_HISTORY),  # @fabrikam.example
}


@pytest.fixture(scope="module")
def observed(demo_server: DemoServer, node_client: NodeClient) -> Any:
    command = [node_client.node, str(SCRIPT), demo_server.base_url]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, timeout=NODE_TIMEOUT, check=False
    )
    return _results(command, done.returncode, done.stdout, done.stderr)


@pytest.mark.parametrize("user", list(EXPECTED))
def test_guarded_methods_follow_the_policies(observed: Any, user: str) -> None:
    seen = observed["users"][user]
    ban, history = EXPECTED[user]
    assert seen["banUser"] == ban, seen
    assert seen["viewUserHistory"] == history, seen
    email = f"{user}@{'fabrikam' if user == 'mallory' else 'contoso'}.example"
    assert seen["whoami"]["value"]["userId"] == email
    assert seen["afterwards"] == {"value": email}, "a denial must not end the connection"


def test_an_anonymous_client_cannot_negotiate(observed: Any) -> None:
    error = observed["anonymous"]["error"]
    assert error.startswith("Failed to complete negotiation with the server"), error
    assert "Status code '401'" in error, error
