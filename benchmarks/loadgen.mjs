// The load generator shared by every server under test: Node.js and `ws`,
// speaking the SignalR JSON hub protocol directly (no client library), so that
// the per-message cost on this side is a frame, a split and a JSON.parse.
//
// Usage: node benchmarks/loadgen.mjs CONFIG.json
// The config names a scenario (echo, authz, fanout, connect, expiry, memory),
// the server (url, path, pid, kind "signalr" or "raw"), and the sizes. Progress
// goes to stderr as JSON lines; the result is one JSON object on stdout.
//
// Server CPU is read from /proc/<pid>/task/*/schedstat (nanoseconds on CPU)
// at the edges of every repetition, and the generator's own CPU with
// process.cpuUsage(), so both are measured over exactly the timed window.

import fs from 'node:fs';
import http from 'node:http';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const RS = '\x1e';
const HANDSHAKE = '{"protocol":"json","version":1}' + RS;
const PING = '{"type":6}' + RS;
const PAYLOAD = 'x'.repeat(64);
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const progress = (fields) => process.stderr.write(JSON.stringify(fields) + '\n');
const nowMs = () => performance.timeOrigin + performance.now(); // Unix ms, sub-ms resolution

// -- measuring ------------------------------------------------------------------

function serverCpuNs(pids) {
  // One server, or several (a cluster's nodes: `target.pids`), summed.
  if (Array.isArray(pids)) return pids.reduce((sum, pid) => sum + serverCpuNs(pid), 0);
  const pid = pids;
  let total = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended between readdir and read
    }
  }
  return total;
}

function serverRssBytes(pid) {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)\s+kB/.exec(status)[1]) * 1024;
}

function genCpuUs() {
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

class Window {
  // One timed repetition: wall time, server CPU and generator CPU.
  constructor(pid) {
    this.pid = pid;
    this.wall0 = performance.now();
    this.server0 = serverCpuNs(pid);
    // A cluster's nodes: each one's share too (`server_cpu_parts_s`, in `pids` order).
    this.parts0 = Array.isArray(pid) ? pid.map(serverCpuNs) : null;
    this.gen0 = genCpuUs();
  }
  close(count, extra = {}) {
    const seconds = (performance.now() - this.wall0) / 1000;
    const parts = this.parts0 && this.pid.map((pid, i) => (serverCpuNs(pid) - this.parts0[i]) / 1e9);
    return {
      count,
      seconds,
      rate: count / seconds,
      server_cpu_s: (serverCpuNs(this.pid) - this.server0) / 1e9,
      ...(parts ? { server_cpu_parts_s: parts } : {}),
      gen_cpu_s: (genCpuUs() - this.gen0) / 1e6,
      ...extra,
    };
  }
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index];
}

// Every server runs on the same core; the ones not being measured are stopped
// (SIGSTOP) so that their timers cannot take CPU from the one that is. They are
// quiescent when paused: every request made to them has been answered.
function pause(target) {
  if (cfg.pause_idle) process.kill(target.pid, 'SIGSTOP');
}

function resume(target) {
  if (cfg.pause_idle) process.kill(target.pid, 'SIGCONT');
}

// A resumed server first catches up with the timers that came due while it was
// stopped (keep-alive pings, its own checks): that is not the work being timed.
async function resumeAndSettle(target) {
  resume(target);
  if (cfg.pause_idle) await sleep(cfg.settle_ms ?? 300);
}

// -- connections ------------------------------------------------------------------

const open = new Set();
let closedUnexpectedly = 0;
const onUnexpectedClose = new Set(); // waiters to wake so that they can fail

class Conn {
  // One WebSocket; for kind "signalr" it has done the hub handshake.
  constructor(ws, kind) {
    this.ws = ws;
    this.kind = kind;
    this.nextId = 0;
    this.pending = null; // the resolver of the one invocation in flight
    this.onInvocation = null; // server-to-client invocations (fan-out deliveries)
    this.onClose = null; // a Close record (type 7)
    this.expected = false; // we are closing it ourselves
  }

  handle(text) {
    if (this.kind === 'raw') {
      if (this.onInvocation !== null) this.onInvocation(text);
      else this.resolve(text);
      return;
    }
    let start = 0;
    for (;;) {
      const end = text.indexOf(RS, start);
      if (end < 0) break;
      const record = JSON.parse(text.slice(start, end));
      start = end + 1;
      switch (record.type) {
        case 1:
          if (this.onInvocation !== null) this.onInvocation(record);
          break;
        case 3:
          this.resolve(record);
          break;
        case 7:
          if (this.onClose !== null) this.onClose(record);
          break;
        default:
          break; // pings
      }
    }
  }

  resolve(value) {
    const pending = this.pending;
    if (pending !== null) {
      this.pending = null;
      pending(value);
    }
  }

  invoke(target, args) {
    // One invocation in flight per connection (the echo loops are closed loops).
    return new Promise((resolve) => {
      this.pending = resolve;
      const invocationId = this.kind === 'raw' ? '0' : String(++this.nextId);
      this.ws.send(JSON.stringify({ type: 1, invocationId, target, arguments: args }) + RS);
    });
  }

  sendNonBlocking(target, args) {
    this.ws.send(JSON.stringify({ type: 1, target, arguments: args }) + RS);
  }

  close() {
    this.expected = true;
    return new Promise((resolve) => {
      if (this.ws.readyState === WebSocket.CLOSED) return resolve();
      const timer = setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, 3000);
      this.ws.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.ws.close();
    });
  }
}

let staleSocketRetries = 0; // reported with the results

async function negotiate(target, token, retried = false) {
  const headers = { 'content-length': '0' };
  if (token) headers.authorization = `Bearer ${token}`;
  const url = `${target.http}${target.path}/negotiate?negotiateVersion=1`;
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', agent, headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => (body += chunk));
      response.on('end', () => {
        if (response.statusCode !== 200) return reject(new Error(`negotiate: HTTP ${response.statusCode}`));
        const answer = JSON.parse(body);
        resolve(answer.connectionToken || answer.connectionId);
      });
    });
    request.on('error', (error) => {
      // A kept-alive socket that the server closed as idle (a server is
      // stopped between its turns, so its idle timers fire as it resumes)
      // while this request was being written on it: the request never
      // reached the server; Node's documented answer is to send it again.
      if (!retried && request.reusedSocket && error.code === 'ECONNRESET') {
        staleSocketRetries += 1;
        resolve(negotiate(target, token, true));
      } else {
        reject(error);
      }
    });
    request.end();
  });
}

// Open one connection: [negotiate,] WebSocket, [hub handshake]. Resolves once usable.
async function connect(target, { token = null, user = null, negotiated = false } = {}) {
  const query = [];
  if (negotiated) query.push(`id=${encodeURIComponent(await negotiate(target, token))}`);
  if (token) query.push(`access_token=${encodeURIComponent(token)}`);
  if (user !== null) query.push(`user=${encodeURIComponent(user)}`);
  const url = `${target.ws}${target.path}${query.length ? '?' + query.join('&') : ''}`;
  const ws = new WebSocket(url, { perMessageDeflate: false, skipUTF8Validation: true });
  const conn = new Conn(ws, target.kind);
  await new Promise((resolve, reject) => {
    ws.once('error', reject);
    ws.once('unexpected-response', (_, response) => reject(new Error(`upgrade: HTTP ${response.statusCode}`)));
    ws.once('open', () => {
      if (target.kind === 'raw') {
        ws.on('message', (data) => conn.handle(data.toString()));
        return resolve();
      }
      ws.send(HANDSHAKE);
      ws.once('message', (data) => {
        const text = data.toString();
        const end = text.indexOf(RS);
        const reply = JSON.parse(text.slice(0, end));
        if (reply.error) return reject(new Error(`handshake: ${reply.error}`));
        ws.on('message', (more) => conn.handle(more.toString()));
        resolve();
        if (end + 1 < text.length) conn.handle(text.slice(end + 1));
      });
    });
  });
  ws.on('error', () => {});
  ws.on('close', () => {
    open.delete(conn);
    if (!conn.expected) {
      closedUnexpectedly += 1;
      for (const wake of onUnexpectedClose) wake();
    }
  });
  open.add(conn);
  return conn;
}

// Open `count` connections, `concurrency` at a time; `options(i)` gives each one's options.
async function connectMany(target, count, concurrency, options, targetOf = () => target) {
  const conns = new Array(count);
  let next = 0;
  async function worker() {
    while (next < count) {
      const i = next++;
      conns[i] = await connect(targetOf(i), options(i));
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return conns;
}

const tokenOf = (target, i) => (target.tokens ? target.tokens[i % target.tokens.length] : null);

// Real clients ping every 15 s; aiosignalr closes a connection silent for 30 s.
setInterval(() => {
  for (const conn of open) {
    if (conn.kind === 'signalr' && conn.ws.readyState === WebSocket.OPEN) conn.ws.send(PING);
  }
}, 10_000).unref();

// Set up every target, then run rounds: a warm-up round, then `cfg.reps` timed
// ones; in each round every target gets one turn, in an order rotated round by
// round, so that the machine's slow spells fall on all servers alike. A target
// stays stopped for the others' turns only: keep turns short (a few seconds),
// as servers close connections silent for 30 s (the longest pause is reported).
async function interleaved(makeRunner) {
  const runners = [];
  for (const target of cfg.targets) {
    progress({ target: target.name, phase: 'setup' });
    const runner = makeRunner(target);
    runner.target = target;
    runner.reps = [];
    runner.pausedAt = performance.now();
    runner.longestPause = 0;
    await runner.setup();
    pause(target);
    runners.push(runner);
  }
  const n = runners.length;
  for (let round = 0; round <= cfg.reps; round++) {
    for (let k = 0; k < n; k++) {
      // Each target moves one place later every round (the last one wraps to
      // first): it waits at most one round between its turns. (Moving one
      // place earlier made the first of a round the last of the next: two
      // rounds of waiting, past the 30 s after which servers drop silent
      // connections once five servers took part.)
      const runner = runners[(((k - round) % n) + n) % n];
      const phase = round === 0 ? { phase: 'warm-up' } : { phase: 'rep', rep: round, reps: cfg.reps };
      progress({ target: runner.target.name, ...phase });
      runner.longestPause = Math.max(runner.longestPause, performance.now() - runner.pausedAt);
      await resumeAndSettle(runner.target);
      if (round === 0) await runner.warmup();
      else runner.reps.push(await runner.rep());
      pause(runner.target);
      runner.pausedAt = performance.now();
    }
  }
  const results = {};
  for (const runner of runners) {
    resume(runner.target);
    results[runner.target.name] = {
      reps: runner.reps,
      errors: runner.errors ? runner.errors() : 0,
      longest_pause_s: cfg.pause_idle ? runner.longestPause / 1000 : 0,
    };
  }
  return { targets: results };
}

// -- scenarios ----------------------------------------------------------------------

// Closed loops: every connection invokes a method with a 64-character string and
// waits for its completion before the next. With several `methods` (the
// authorization cost: the open and the guarded method), each repetition times
// them one after the other on the same connections.
function echoRunner(target) {
  const methods = target.methods || ['Echo'];
  const state = { method: null, count: 0, errors: 0, latencies: [], idle: null, inFlight: 0, turn: 0 };
  let conns = [];

  async function loop(conn) {
    for (;;) {
      while (state.method === null) await new Promise((resolve) => state.waiting.push(resolve));
      const method = state.method;
      state.inFlight += 1;
      const started = performance.now();
      const reply = await conn.invoke(method, [PAYLOAD]);
      const elapsed = performance.now() - started;
      state.inFlight -= 1;
      if (state.inFlight === 0 && state.idle !== null) state.idle();
      if (method !== state.method) continue; // straddled a phase change: not counted
      if (target.kind !== 'raw' && (reply.error || reply.result !== PAYLOAD)) state.errors += 1;
      state.count += 1;
      state.latencies.push(elapsed);
    }
  }

  function start(method) {
    state.method = method;
    const waiting = state.waiting;
    state.waiting = [];
    for (const resume of waiting) resume();
  }

  async function stop() {
    state.method = null;
    if (state.inFlight > 0) await new Promise((resolve) => (state.idle = resolve));
    state.idle = null;
  }

  // One slice of `ms` on `method`: its count, latencies and window.
  async function slice(method, ms) {
    start(method);
    await sleep(20); // the previous phase's last calls are not counted
    state.count = 0;
    state.latencies = [];
    const window = new Window(target.pids || target.pid);
    await sleep(ms);
    const result = window.close(state.count);
    const latencies = state.latencies;
    await stop();
    return { result, latencies };
  }

  function summary(parts) {
    const latencies = parts.flatMap((p) => p.latencies).sort((a, b) => a - b);
    const sum = (key) => parts.reduce((total, p) => total + p.result[key], 0);
    const count = sum('count');
    const seconds = sum('seconds');
    return {
      count,
      seconds,
      rate: count / seconds,
      server_cpu_s: sum('server_cpu_s'),
      gen_cpu_s: sum('gen_cpu_s'),
      p50_ms: percentile(latencies, 0.5),
      p99_ms: percentile(latencies, 0.99),
      // Each slice's own figures, when there are several (the JSON's raw data).
      slices: parts.length > 1 ? parts.map((p) => [p.result.count, p.result.seconds, p.result.server_cpu_s]) : undefined,
    };
  }

  async function timed(method) {
    return summary([await slice(method, cfg.rep_ms)]);
  }

  // Several methods compared (the authorization cost): each repetition
  // alternates them in `slices` short slices, so that the machine's slow
  // spells (it is shared) fall on all of them alike instead of on whichever
  // ran during one; each method's figure sums its slices.
  async function interleaved(order) {
    const slices = Math.max(1, cfg.slices || 1);
    const parts = Object.fromEntries(order.map((m) => [m, []]));
    for (let i = 0; i < slices; i++) {
      const round = i % 2 ? [...order].reverse() : order;
      for (const method of round) parts[method].push(await slice(method, cfg.rep_ms / slices));
    }
    return Object.fromEntries(order.map((m) => [m, summary(parts[m])]));
  }

  return {
    async setup() {
      state.waiting = [];
      conns = await connectMany(target, cfg.connections, 50, (i) => ({ token: tokenOf(target, i) }));
      conns.forEach(loop);
    },
    async warmup() {
      for (const method of methods) {
        start(method);
        await sleep(cfg.warmup_ms);
        await stop();
      }
    },
    async rep() {
      // Alternate which method goes first, so that neither always follows the other.
      const order = state.turn++ % 2 ? [...methods].reverse() : methods;
      if (order.length > 1) return interleaved(order);
      return { [order[0]]: await timed(order[0]) };
    },
    errors: () => state.errors + closedUnexpectedly,
  };
}

// One sender, `receivers` connections counting deliveries. The sender makes
// non-blocking invocations (no invocation id) as fast as deliveries keep up: at
// most `max_lead` deliveries outstanding, so that no outbox overflows.
function fanoutRunner(target) {
  const perUser = cfg.per_user || 0;
  const fan = perUser || cfg.receivers;
  const users = perUser ? Math.ceil(cfg.receivers / perUser) : 0;
  let sender = null;
  let delivered = 0;
  let lead = 0;
  let wake = null;
  let userIndex = 0;
  // Targets on one cluster need users of their own (`user_prefix`, default `u`).
  const userPrefix = target.user_prefix || 'u';

  const onDelivery = () => {
    delivered += 1;
    if (wake !== null && lead - delivered <= cfg.max_lead / 2) {
      const resume = wake;
      wake = null;
      resume();
    }
  };

  function sendOne() {
    if (perUser) {
      const user = `${userPrefix}${userIndex}`;
      userIndex = (userIndex + 1) % users;
      if (target.kind === 'raw') sender.ws.send(`U${user}|${PAYLOAD}`);
      else sender.sendNonBlocking('SendToUser', [user, PAYLOAD]);
    } else if (target.kind === 'raw') {
      sender.ws.send(`B${PAYLOAD}`);
    } else {
      sender.sendNonBlocking('Broadcast', [PAYLOAD]);
    }
    lead += fan;
  }

  async function run(sends) {
    for (let i = 0; i < sends; i++) {
      if (lead - delivered > cfg.max_lead) {
        await new Promise((resolve) => {
          wake = resolve;
          onUnexpectedClose.add(resolve);
        });
        onUnexpectedClose.clear();
        if (closedUnexpectedly) throw new Error(`${target.name}: ${closedUnexpectedly} connections closed`);
      }
      sendOne();
    }
    const deadline = performance.now() + cfg.drain_timeout_ms;
    while (delivered < lead) {
      if (performance.now() > deadline || closedUnexpectedly) {
        throw new Error(`${target.name}: deliveries stalled at ${delivered} of ${lead} (${closedUnexpectedly} connections closed)`);
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }

  return {
    async setup() {
      // Users come from the tokens' `sub` where the server authenticates, else
      // from a `user` query parameter (aiosignalr, the floor).
      // A cluster: receivers may alternate between nodes (`receiver_nodes`), so
      // that a user's connections sit on several of them.
      const nodes = target.receiver_nodes || [{}];
      const receivers = await connectMany(
        target,
        cfg.receivers,
        50,
        (i) => ({
          token: tokenOf(target, i),
          user: perUser && !target.tokens ? `${userPrefix}${Math.floor(i / perUser)}` : null,
        }),
        (i) => ({ ...target, ...nodes[i % nodes.length] }),
      );
      for (const receiver of receivers) receiver.onInvocation = onDelivery;
      // A cluster: a connection is reachable from other nodes once its first
      // invocation is answered (its subscriptions are in place before that).
      if (cfg.receivers_invoke_first) {
        await Promise.all(receivers.map((receiver) => receiver.invoke('Echo', ['ready'])));
      }
      // A cluster: the sender may sit on another node than the receivers.
      const senderTarget = target.sender ? { ...target, ...target.sender } : target;
      sender = await connect(senderTarget, { token: target.sender_token || null });
    },
    async warmup() {
      await run(cfg.warmup_sends);
    },
    async rep() {
      const before = delivered;
      const window = new Window(target.pids || target.pid);
      await run(cfg.sends);
      return window.close(delivered - before);
    },
    errors: () => closedUnexpectedly,
  };
}

// Connections per second: [negotiate +] WebSocket [+ handshake], `concurrency`
// at a time, tokens taken in turn; they stay open until the repetition ends.
function connectRunner(target) {
  const options = (i) => ({ token: tokenOf(target, i), negotiated: Boolean(target.negotiate) });
  const cycle = async (count) => {
    const window = new Window(target.pid);
    const conns = await connectMany(target, count, cfg.concurrency, options);
    const result = window.close(conns.length);
    await Promise.all(conns.map((conn) => conn.close()));
    await sleep(200); // the server's teardown stays outside the next window
    return result;
  };
  return {
    async setup() {},
    async warmup() {
      await cycle(cfg.warmup_connections);
    },
    rep: () => cycle(cfg.connections),
    errors: () => closedUnexpectedly,
  };
}

// Tokens expire at spread times; each connection records when its Close record
// (or, failing that, the socket close) arrives, minus the token's `exp`.
async function expiry() {
  const target = cfg.targets[0];
  const deltas = [];
  let withoutRecord = 0;
  const conns = await connectMany(target, target.tokens.length, 20, (i) => ({ token: target.tokens[i] }));
  progress({ target: target.name, phase: 'waiting for expiries', count: conns.length });
  const done = conns.map(
    (conn, i) =>
      new Promise((resolve) => {
        const expMs = target.exps[i] * 1000;
        let seen = false;
        const record = (viaRecord) => {
          if (seen) return;
          seen = true;
          if (!viaRecord) withoutRecord += 1;
          deltas.push(nowMs() - expMs);
          resolve();
        };
        conn.expected = true;
        conn.onClose = () => record(true);
        conn.ws.once('close', () => record(false));
      }),
  );
  const last = Math.max(...target.exps) * 1000;
  await Promise.race([Promise.all(done), sleep(Math.max(0, last - nowMs()) + 5000)]);
  deltas.sort((a, b) => a - b);
  const missing = conns.length - deltas.length;
  return {
    targets: {
      [target.name]: {
        count: deltas.length,
        missing,
        without_close_record: withoutRecord,
        min_ms: deltas[0],
        p50_ms: percentile(deltas, 0.5),
        p99_ms: percentile(deltas, 0.99),
        max_ms: deltas[deltas.length - 1],
        errors: missing,
      },
    },
  };
}

// RSS growth per idle connection, one server at a time: warm up, measure, open
// `connections` more, let them settle, measure again, close them all.
async function memory() {
  const results = {};
  for (const target of cfg.targets) {
    resume(target);
    const options = (i) => ({ token: tokenOf(target, i) });
    progress({ target: target.name, phase: 'warm-up' });
    const warm = await connectMany(target, cfg.warmup_connections, 50, options);
    await sleep(1000);
    const before = serverRssBytes(target.pid);
    progress({ target: target.name, phase: 'connecting', count: cfg.connections });
    const conns = await connectMany(target, cfg.connections, 50, options);
    await sleep(cfg.settle_ms);
    const after = serverRssBytes(target.pid);
    const alive = conns.filter((conn) => conn.ws.readyState === WebSocket.OPEN).length;
    results[target.name] = {
      rss_before: before,
      rss_after: after,
      connections: cfg.connections,
      alive,
      bytes_per_connection: (after - before) / cfg.connections,
      errors: cfg.connections - alive,
    };
    await Promise.all([...warm, ...conns].map((conn) => conn.close()));
    pause(target);
  }
  for (const target of cfg.targets) resume(target);
  return { targets: results };
}

const scenarios = {
  echo: () => interleaved(echoRunner),
  fanout: () => interleaved(fanoutRunner),
  connect: () => interleaved(connectRunner),
  expiry,
  memory,
};

try {
  const started = genCpuUs();
  const result = await scenarios[cfg.scenario]();
  result.gen_total_cpu_s = (genCpuUs() - started) / 1e6;
  result.stale_socket_retries = staleSocketRetries;
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
} catch (error) {
  for (const target of cfg.targets) {
    try {
      resume(target);
    } catch {
      // already gone
    }
  }
  process.stdout.write(JSON.stringify({ failed: String(error && error.stack ? error.stack : error) }) + '\n');
  process.exit(1);
}
