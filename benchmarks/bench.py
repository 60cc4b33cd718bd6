"""``make bench``: triohub against its asyncio peer and the floor, on loopback.

Servers (each its own process, started fresh for every scenario, pinned to CPU 0):

* ``hypercorn``: triohub's ASGI app under hypercorn's trio worker (negotiate,
  WebSockets, JWT bearer authentication);
* ``native``: triohub on its own HTTP/1.1 + WebSocket server (``serve_native``:
  negotiate, WebSockets, JWT bearer authentication);
* ``trio-ws``: triohub on the trio-websocket server (no HTTP, so no negotiate;
  JWT bearer authentication of the upgrade request);
* ``aiosignalr``: the asyncio peer, on its own aiohttp server;
* ``floor``: a raw trio-websocket server that echoes and fans out with no hub:
  the least a Trio server on the same WebSocket library can do;
* ``floor-hc``: the same raw rules as an ASGI app under hypercorn's own trio
  worker: the least the stack under ``hypercorn`` can do.

One load generator (``loadgen.mjs``: Node.js and ``ws``, the SignalR JSON
protocol written by hand, pinned to CPU 1) drives all of them. In every scenario
the servers are set up side by side and measured in rounds, one repetition per
server per round in a rotating order, the idle ones stopped (SIGSTOP), so that
the machine's slow spells fall on all of them alike; warm-up is excluded and
each figure is the median of the repetitions. Server CPU per message comes from
``/proc/<pid>/task/*/schedstat`` over the same windows, and so does the load
generator's own CPU share (of its one core), which says whether it could have
been the bottleneck.

Results: a table on stdout, ``benchmarks/results/bench.json`` and
``benchmarks/results/bench.png`` (overwritten by every run). The exit status is
non-zero if any scenario a server supports produced no number.

Usage: ``python benchmarks/bench.py [--quick] [--scenarios a,b] [--servers x,y]
[--reps N] [--no-pin] [--profile]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "results"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.report import Metric, build_metrics, check_goals, print_table, write_chart  # noqa: E402

PATH = "/hubs/bench"
ISSUER = AUDIENCE = "triohub-bench"


# -- servers -------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    name: str
    script: str
    args: tuple[str, ...] = ()
    kind: str = "signalr"
    """``signalr`` (hub protocol) or ``raw`` (the floor: bare WebSocket messages)."""
    negotiate: bool = False
    """Serves ``/negotiate`` (connect-rate scenarios negotiate first where it can)."""
    jwt: bool = False
    """Validates JWTs from ``access_token``."""
    users_from: str | None = None
    """Where the user of a connection comes from: ``token`` (``sub``) or ``query``."""


def triohub_spec(name: str, *args: str, negotiate: bool = True) -> ServerSpec:
    """``triohub_server.py`` with ``args``: JWTs checked, the user from ``sub``."""
    return ServerSpec(
        name, "triohub_server.py", args, negotiate=negotiate, jwt=True, users_from="token"
    )


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        triohub_spec("hypercorn", "--transport", "hypercorn"),
        triohub_spec("native", "--transport", "native"),
        triohub_spec("trio-ws", "--transport", "trio-websocket", negotiate=False),
        # The native server again, with an OpenTelemetry SDK recording its metrics
        # (native-metrics), its metrics and 1 % of the invocations' spans
        # (native-sampled: triohub's head sampling; native-sdksampled: the SDK's
        # ParentBased(TraceIdRatioBased(0.01)) alone), and its metrics and every
        # span (native-otel): what turning observability on costs (echo only;
        # see TELEMETRY_SCENARIOS and servers/telemetry.py).
        triohub_spec("native-metrics", "--transport", "native", "--telemetry", "metrics"),
        triohub_spec("native-sampled", "--transport", "native", "--telemetry", "sampled"),
        triohub_spec("native-sdksampled", "--transport", "native", "--telemetry", "sdk-sampled"),
        triohub_spec("native-otel", "--transport", "native", "--telemetry", "all"),
        ServerSpec("aiosignalr", "aiosignalr_server.py", negotiate=True, users_from="query"),
        ServerSpec("floor", "floor_server.py", kind="raw", jwt=True, users_from="query"),
        ServerSpec(
            "floor-hc", "hypercorn_floor_server.py", kind="raw", jwt=True, users_from="query"
        ),
    )
}

NOT_SUPPORTED = {
    ("aiosignalr", "authz"): "aiosignalr has no authorization",
    ("aiosignalr", "connect-hs256"): "aiosignalr has no JWT authentication",
    ("aiosignalr", "connect-rs256"): "aiosignalr has no JWT authentication",
    ("aiosignalr", "expiry"): "aiosignalr has no credential expiry",
    ("floor", "authz"): "no hub, no policies",
    ("floor", "expiry"): "no hub, no expiry",
    ("floor-hc", "authz"): "no hub, no policies",
    ("floor-hc", "expiry"): "no hub, no expiry",
}
TELEMETRY_SCENARIOS = ("echo-50",)
"""Where ``native-metrics``, ``native-sampled``, ``native-sdksampled`` and
``native-otel`` run: next to
``native`` in the same rounds, the cost of metrics, and of metrics and traces, on
(``report.check_goals``). With ``native`` in the run, ``bench_telemetry.py`` then
times the hooks' own cost in process (nothing configured cannot be a server)."""
TELEMETRY_SERVERS = ("native-metrics", "native-sampled", "native-sdksampled", "native-otel")
NOT_SUPPORTED.update(
    {
        (server, name): "telemetry's cost is measured on echo-50"
        for server in TELEMETRY_SERVERS
        for name in (
            "echo-1",
            "fanout-all",
            "fanout-user",
            "authz",
            "connect-hs256",
            "connect-rs256",
            "connect-anon",
            "expiry",
            "memory",
        )
        if name not in TELEMETRY_SCENARIOS
    }
)


@dataclass
class Running:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    profiler: subprocess.Popen[bytes] | None = None


class Keys:
    """The run's signing keys and a token factory (pyjwt, as the servers use)."""

    def __init__(self, directory: Path) -> None:
        import jwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self._jwt = jwt
        self.secret = secrets.token_urlsafe(48)
        self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = directory / "rs256.pub.pem"
        self.public_pem.write_bytes(
            self._private.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

    def server_args(self, alg: str) -> tuple[str, ...]:
        key = self.secret if alg == "HS256" else str(self.public_pem)
        # One argument: a secret may begin with "-", which argparse would
        # take for an option (token_urlsafe does, about one run in 32).
        return (f"--alg={alg}", f"--key={key}")

    def token(self, sub: str, alg: str = "HS256", exp: float | None = None) -> str:
        now = int(time.time())
        claims = {
            "sub": sub,
            "name": sub,
            "scope": ["bench"],
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "nbf": now - 5,
            "exp": exp if exp is not None else now + 3600,
        }
        key = self.secret if alg == "HS256" else self._private
        return str(self._jwt.encode(claims, key, algorithm=alg))


# -- the run ---------------------------------------------------------------------------


@dataclass
class Params:
    """Sizes and durations of one run (full or quick)."""

    reps: int
    echo_warmup_ms: int
    echo_rep_ms: int
    authz_slices: int
    """Slices per method and repetition in the authorization scenario."""
    fanout_receivers: int
    fanout_warmup: int
    fanout_sends: int
    user_receivers: int
    user_warmup: int
    user_sends: int
    connect_count: int
    connect_warmup: int
    expiry_connections: int
    expiry_first_s: float
    expiry_spread_s: float
    memory_connections: int
    memory_settle_ms: int
    timeout_s: float

    @classmethod
    def full(cls) -> Params:
        return cls(
            reps=5,
            echo_warmup_ms=2000,
            # Ten servers take turns in echo-50: a round must stay well under
            # the 30 s after which a server closes a silent client (see
            # SILENCE_LIMIT_MS).
            echo_rep_ms=2000,
            authz_slices=20,
            fanout_receivers=1000,
            fanout_warmup=10,
            fanout_sends=30,
            user_receivers=1000,
            user_warmup=1000,
            user_sends=10000,
            connect_count=300,
            connect_warmup=100,
            expiry_connections=200,
            expiry_first_s=6.0,
            expiry_spread_s=10.0,
            memory_connections=5000,
            memory_settle_ms=3000,
            timeout_s=420.0,
        )

    @classmethod
    def quick(cls) -> Params:
        return cls(
            reps=2,
            echo_warmup_ms=200,
            echo_rep_ms=500,
            authz_slices=4,
            fanout_receivers=100,
            fanout_warmup=5,
            fanout_sends=30,
            user_receivers=100,
            user_warmup=100,
            user_sends=500,
            connect_count=40,
            connect_warmup=10,
            expiry_connections=20,
            expiry_first_s=3.0,
            expiry_spread_s=1.0,
            memory_connections=300,
            memory_settle_ms=300,
            timeout_s=90.0,
        )


@dataclass
class Scenario:
    name: str
    title: str
    servers: tuple[str, ...]
    configure: Callable[[Bench, list[Running]], dict[str, Any]]
    server_args: Callable[[Bench, ServerSpec], tuple[str, ...]] = lambda bench, spec: ()
    one_at_a_time: bool = False
    """Run each server alone (the figure is timing-sensitive: no neighbours at all)."""


@dataclass
class Bench:
    params: Params
    keys: Keys
    pin: bool
    profile: bool
    python: str
    progress: Progress
    tmp: Path
    results: dict[str, Any] = field(default_factory=dict)

    # -- processes -------------------------------------------------------------

    def _cpu(self, which: int) -> list[str]:
        return ["taskset", "-c", str(which)] if self.pin else []

    def start(self, spec: ServerSpec, scenario: str, extra: tuple[str, ...]) -> Running:
        log = RESULTS / "logs" / f"{scenario}-{spec.name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            *self._cpu(0),
            self.python,
            str(BENCH / "servers" / spec.script),
            "--path",
            PATH,
            *spec.args,
            *extra,
        ]
        with log.open("wb") as err:
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=err, cwd=ROOT, start_new_session=True
            )
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("READY "):
            process.kill()
            raise RuntimeError(f"{spec.name} did not start (see {log})")
        running = Running(spec, process, int(line.split()[1]), log)
        if self.profile:
            out = RESULTS / "profiles" / f"{scenario}-{spec.name}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            running.profiler = subprocess.Popen(
                [
                    str(Path(self.python).parent / "py-spy"),
                    "record",
                    "--pid",
                    str(process.pid),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(out),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        return running

    @staticmethod
    def stop(running: Running) -> None:
        if running.profiler is not None:
            running.profiler.send_signal(signal.SIGINT)
            try:
                running.profiler.wait(timeout=20)
            except subprocess.TimeoutExpired:
                running.profiler.kill()
        process = running.process
        for sig in (signal.SIGCONT, signal.SIGTERM):
            try:
                process.send_signal(sig)
            except ProcessLookupError:
                return
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    @contextmanager
    def servers(self, scenario: Scenario, names: list[str]) -> Iterator[list[Running]]:
        started: list[Running] = []
        try:
            for name in names:
                spec = SERVERS[name]
                self.progress.status(scenario.name, name, "starting")
                started.append(self.start(spec, scenario.name, scenario.server_args(self, spec)))
            yield started
        finally:
            for running in started:
                self.stop(running)

    def loadgen(self, scenario: Scenario, config: dict[str, Any]) -> dict[str, Any]:
        """Run the load generator; show its progress; return its result."""
        config_file = self.tmp / f"{scenario.name}.json"
        config_file.write_text(json.dumps(config))
        command = [*self._cpu(1), "node", str(BENCH / "loadgen.mjs"), str(config_file)]
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT
        )
        assert process.stdout is not None
        assert process.stderr is not None
        deadline = time.monotonic() + self.params.timeout_s
        noise: list[str] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                process.kill()
                process.wait()
                return {"failed": f"timed out after {self.params.timeout_s:.0f} s"}
            ready, _, _ = select.select([process.stderr], [], [], min(left, 1.0))
            if not ready:
                self.progress.tick()
                continue
            line = process.stderr.readline()
            if not line:
                break
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                noise.append(line.decode(errors="replace"))
                continue
            self.progress.status(scenario.name, event.pop("target", ""), _phase(event))
        out = process.stdout.read().decode()
        process.wait()
        try:
            result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            result = {"failed": f"no result (exit {process.returncode}): {''.join(noise)[-2000:]}"}
        return result

    def target(self, running: Running, **extra: Any) -> dict[str, Any]:
        return {
            "name": running.spec.name,
            "kind": running.spec.kind,
            "pid": running.process.pid,
            "path": PATH,
            "http": f"http://127.0.0.1:{running.port}",
            "ws": f"ws://127.0.0.1:{running.port}",
            "negotiate": running.spec.negotiate,
            **extra,
        }

    # -- scenarios -------------------------------------------------------------

    def run(self, scenario: Scenario, only: set[str] | None) -> None:
        names = [n for n in scenario.servers if only is None or n in only]
        if not names:
            return
        self.progress.begin(scenario)
        started = time.monotonic()
        groups = [[name] for name in names] if scenario.one_at_a_time else [names]
        result: dict[str, Any] = {"targets": {}}
        for group in groups:
            try:
                with self.servers(scenario, group) as running:
                    config = scenario.configure(self, running)
                    config["pause_idle"] = not self.profile
                    part = self.loadgen(scenario, config)
            except Exception as error:
                part = {"failed": f"{type(error).__name__}: {error}"}
            if "failed" in part:
                result = part
                break
            result["targets"].update(part.pop("targets"))
            result.update(part)
        if scenario.name in TELEMETRY_SCENARIOS and "native" in names and "failed" not in result:
            result["telemetry_hooks_us"] = self.telemetry_hooks(scenario)
        result["wall_s"] = time.monotonic() - started
        result["servers"] = names
        self.results[scenario.name] = result
        if "failed" in result:
            self.progress.note(f"{scenario.name} failed: {result['failed'].splitlines()[0]}")

    def telemetry_hooks(self, scenario: Scenario) -> dict[str, float] | str:
        """``bench_telemetry.py`` on the servers' CPU: microseconds of CPU per
        invocation of the telemetry hooks, by SDK set-up (or why there are none)."""
        self.progress.status(scenario.name, "in-process", "telemetry hooks")
        quick = ("--quick",) if self.params.reps < 3 else ()
        done = subprocess.run(
            [*self._cpu(0), self.python, str(BENCH / "bench_telemetry.py"), "--json", *quick],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        try:
            figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            return f"bench_telemetry.py failed: {done.stderr.strip()[-500:]}"
        return figures


def _phase(event: dict[str, Any]) -> str:
    phase = str(event.get("phase", ""))
    if "rep" in event:
        phase = f"rep {event['rep']}/{event['reps']}"
    if "count" in event:
        phase += f" ({event['count']} connections)"
    return phase


SILENCE_LIMIT_MS = 25_000
"""The longest a server may stay stopped while the others take their turns.

A stopped server reads nothing; once resumed, its client timeout (30 s, the
reference's default, as in aiosignalr) may fire before it reads the pings the
load generator sent meanwhile, and it closes the connections as silent. An echo
whose connection closed is never answered, so the round would wait until the
scenario's timeout (this happened with ten servers and 3 s turns)."""

SETTLE_MS = 300
"""What ``loadgen.mjs`` waits after resuming a server (``settle_ms``)."""


def echo_config(connections: int) -> Callable[[Bench, list[Running]], dict[str, Any]]:
    def configure(bench: Bench, running: list[Running]) -> dict[str, Any]:
        p = bench.params
        stopped_ms = (len(running) - 1) * (max(p.echo_rep_ms, p.echo_warmup_ms) + SETTLE_MS)
        if stopped_ms > SILENCE_LIMIT_MS:
            raise ValueError(
                f"{len(running)} servers taking {p.echo_rep_ms} ms turns leave each stopped "
                f"for ~{stopped_ms / 1000:.0f} s, past the {SILENCE_LIMIT_MS / 1000:.0f} s a "
                "silent client is allowed: run fewer servers (--servers) or shorter turns"
            )
        return {
            "scenario": "echo",
            "targets": [bench.target(r) for r in running],
            "connections": connections,
            "reps": p.reps,
            "warmup_ms": p.echo_warmup_ms,
            "rep_ms": p.echo_rep_ms,
        }

    return configure


def fanout_all(bench: Bench, running: list[Running]) -> dict[str, Any]:
    p = bench.params
    return {
        "scenario": "fanout",
        "targets": [bench.target(r) for r in running],
        "receivers": p.fanout_receivers,
        "warmup_sends": p.fanout_warmup,
        "sends": p.fanout_sends,
        "max_lead": 4 * p.fanout_receivers,
        "drain_timeout_ms": 60_000,
        "reps": p.reps,
    }


def fanout_user(bench: Bench, running: list[Running]) -> dict[str, Any]:
    p = bench.params
    targets = []
    for r in running:
        extra: dict[str, Any] = {}
        if r.spec.users_from == "token":
            # Receiver i is user u{i // 2}: 2 connections per user.
            extra["tokens"] = [bench.keys.token(f"u{i // 2}") for i in range(p.user_receivers)]
            extra["sender_token"] = bench.keys.token("sender")
        targets.append(bench.target(r, **extra))
    return {
        "scenario": "fanout",
        "targets": targets,
        "receivers": p.user_receivers,
        "per_user": 2,
        "warmup_sends": p.user_warmup,
        "sends": p.user_sends,
        "max_lead": 400,
        "drain_timeout_ms": 60_000,
        "reps": p.reps,
    }


def authz(bench: Bench, running: list[Running]) -> dict[str, Any]:
    p = bench.params
    tokens = [bench.keys.token(f"u{i}") for i in range(50)]
    return {
        "scenario": "echo",
        "targets": [
            bench.target(r, tokens=tokens, methods=["Echo", "EchoGuarded"]) for r in running
        ],
        "connections": 50,
        "reps": p.reps,
        "warmup_ms": p.echo_warmup_ms,
        "rep_ms": p.echo_rep_ms,
        "slices": p.authz_slices,
    }


def connect_config(alg: str | None) -> Callable[[Bench, list[Running]], dict[str, Any]]:
    def configure(bench: Bench, running: list[Running]) -> dict[str, Any]:
        p = bench.params
        targets = []
        for r in running:
            extra: dict[str, Any] = {}
            if alg is not None:
                extra["tokens"] = [bench.keys.token(f"u{i}", alg) for i in range(100)]
            targets.append(bench.target(r, **extra))
        return {
            "scenario": "connect",
            "targets": targets,
            "connections": p.connect_count,
            "warmup_connections": p.connect_warmup,
            "concurrency": 16,
            "reps": p.reps,
        }

    return configure


def expiry(bench: Bench, running: list[Running]) -> dict[str, Any]:
    p = bench.params
    now = int(time.time())
    count = p.expiry_connections
    first = now + int(p.expiry_first_s)
    spread = max(1, int(p.expiry_spread_s))
    # Whole seconds, as issuers write them, spread evenly over the window.
    exps = [first + (i * spread) // count for i in range(count)]
    tokens = [bench.keys.token(f"u{i}", exp=exp) for i, exp in enumerate(exps)]
    return {
        "scenario": "expiry",
        "targets": [bench.target(r, tokens=tokens, exps=exps) for r in running],
    }


def memory(bench: Bench, running: list[Running]) -> dict[str, Any]:
    p = bench.params
    targets = []
    for r in running:
        extra: dict[str, Any] = {}
        if r.spec.jwt:
            extra["tokens"] = [bench.keys.token(f"u{i}") for i in range(500)]
        targets.append(bench.target(r, **extra))
    return {
        "scenario": "memory",
        "targets": targets,
        "connections": p.memory_connections,
        "warmup_connections": 100,
        "settle_ms": p.memory_settle_ms,
    }


def jwt_args(
    alg: str | None, *, hub_only: bool = False
) -> Callable[[Bench, ServerSpec], tuple[str, ...]]:
    def args(bench: Bench, spec: ServerSpec) -> tuple[str, ...]:
        if alg is None or not spec.jwt or (hub_only and spec.kind == "raw"):
            return ()
        return bench.keys.server_args(alg)

    return args


ALL = (
    "hypercorn",
    "native",
    *TELEMETRY_SERVERS,
    "trio-ws",
    "aiosignalr",
    "floor",
    "floor-hc",
)


def scenarios() -> list[Scenario]:
    def supported(name: str) -> tuple[str, ...]:
        return tuple(s for s in ALL if (s, name) not in NOT_SUPPORTED)

    return [
        Scenario("echo-1", "echo, 1 connection", supported("echo-1"), echo_config(1)),
        Scenario("echo-50", "echo, 50 connections", supported("echo-50"), echo_config(50)),
        Scenario("fanout-all", "broadcast to 1,000", supported("fanout-all"), fanout_all),
        Scenario(
            "fanout-user",
            "clients.user, 500 users x 2",
            supported("fanout-user"),
            fanout_user,
            jwt_args("HS256", hub_only=True),
        ),
        Scenario("authz", "authorization cost", supported("authz"), authz, jwt_args("HS256")),
        Scenario(
            "connect-hs256",
            "connect, JWT HS256",
            supported("connect-hs256"),
            connect_config("HS256"),
            jwt_args("HS256"),
        ),
        Scenario(
            "connect-rs256",
            "connect, JWT RS256",
            supported("connect-rs256"),
            connect_config("RS256"),
            jwt_args("RS256"),
        ),
        Scenario(
            "connect-anon", "connect, anonymous", supported("connect-anon"), connect_config(None)
        ),
        Scenario(
            "expiry",
            "expiry precision",
            supported("expiry"),
            expiry,
            jwt_args("HS256"),
            one_at_a_time=True,
        ),
        Scenario(
            "memory",
            "idle connection memory",
            supported("memory"),
            memory,
            jwt_args("HS256", hub_only=True),
        ),
    ]


# -- progress ----------------------------------------------------------------------------


class Progress:
    """One status line on a terminal (rewritten in place), plain lines otherwise."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.index = 0
        self.started = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.scenario = ""

    def begin(self, scenario: Scenario) -> None:
        self.index += 1
        self.scenario = scenario.name

    def status(self, scenario: str, server: str, phase: str) -> None:
        text = f"[{self.index}/{self.total}] {scenario:<13} {server:<10} {phase}"
        if text == self.last:
            return
        self.last = text
        self._show(text)

    def tick(self) -> None:
        if self.tty and self.last:
            self._show(self.last)

    def _show(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"{int(elapsed) // 60:02d}:{int(elapsed) % 60:02d} {text}"
        if self.tty:
            width = shutil.get_terminal_size((100, 20)).columns - 1
            sys.stderr.write("\r\033[K" + line[:width])
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def note(self, text: str) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


# -- main ------------------------------------------------------------------------------


def environment(pin: bool) -> dict[str, Any]:
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "node": node,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "pinning": "servers on CPU 0, load generator on CPU 1" if pin else "none",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (< 2 minutes)")
    parser.add_argument("--scenarios", help="comma-separated scenario names (default: all)")
    parser.add_argument("--servers", help="comma-separated server names (default: all)")
    parser.add_argument("--reps", type=int, help="timed repetitions per figure")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument(
        "--gc-threshold",
        type=int,
        help="an experiment: every Python server's gen-0 GC threshold (CPython: 700)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="record py-spy profiles of every server (results/profiles/*.txt, collapsed stacks)",
    )
    args = parser.parse_args(argv)
    params = Params.quick() if args.quick else Params.full()
    if args.reps:
        params.reps = args.reps
    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2
    chosen = scenarios()
    if args.scenarios:
        wanted = set(args.scenarios.split(","))
        unknown = wanted - {s.name for s in chosen}
        if unknown:
            parser.error(f"unknown scenarios {sorted(unknown)}; known: {[s.name for s in chosen]}")
        chosen = [s for s in chosen if s.name in wanted]
    only = set(args.servers.split(",")) if args.servers else None
    if only is not None and only - set(SERVERS):
        parser.error(f"unknown servers {sorted(only - set(SERVERS))}; known: {list(SERVERS)}")

    if args.gc_threshold:
        os.environ["BENCH_GC_THRESHOLD"] = str(args.gc_threshold)  # inherited by the servers
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="triohub-bench-") as tmp:
        bench = Bench(
            params=params,
            keys=Keys(Path(tmp)),
            pin=pin,
            profile=args.profile,
            python=sys.executable,
            progress=Progress(len(chosen)),
            tmp=Path(tmp),
        )
        for scenario in chosen:
            bench.run(scenario, only)
        bench.progress.done()

    servers = [s for s in ALL if only is None or s in only]
    metrics: list[Metric] = build_metrics(bench.results, servers, NOT_SUPPORTED)
    goals = check_goals(metrics)
    elapsed = time.monotonic() - started
    meta = {
        **environment(pin),
        "quick": args.quick,
        "gc_threshold": args.gc_threshold,
        "reps": params.reps,
        "params": params.__dict__,
        "elapsed_s": elapsed,
    }
    print_table(metrics, goals, meta, servers)
    for name, result in bench.results.items():
        for server, target in result.get("targets", {}).items():
            if target.get("longest_pause_s", 0) * 1000 > SILENCE_LIMIT_MS:
                print(
                    f"warning: {name}/{server} was stopped for {target['longest_pause_s']:.0f} s "
                    "between turns; servers close connections silent for 30 s"
                )
    report = {
        "meta": meta,
        "metrics": [m.as_json() for m in metrics],
        "goals": goals,
        "raw": bench.results,
    }
    (RESULTS / "bench.json").write_text(json.dumps(report, indent=2))
    chart = write_chart(metrics, servers, RESULTS / "bench.png", meta)
    print(f"\nwrote {RESULTS / 'bench.json'}" + (f" and {chart}" if chart else ""))

    missing = [
        f"{m.scenario}/{m.label}/{server}"
        for m in metrics
        if m.required
        for server in servers
        if server not in m.unsupported and m.values.get(server) is None
    ]
    failed = [name for name, result in bench.results.items() if "failed" in result]
    if failed or missing:
        print(f"\nFAILED: no number for {', '.join(missing) or ', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
