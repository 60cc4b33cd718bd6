// Stateful reconnect end to end: the official client with withStatefulReconnect() over
// WebSockets, through a TCP proxy in this script that cuts every connection at chosen
// moments (both sockets destroyed: the server and the client see the TCP connection end
// without a WebSocket close).
//
//   node tests/e2e/js/resume.mjs SCENARIOS BASE_URL[,BASE_URL...] PROTOCOL [PID,...]
//
// With several base URLs (the nodes of a cluster) the proxy sends each TCP connection to
// the next node in turn, so a resume usually lands on another node than the one holding
// the connection; PIDs (one per node) are for the holderKilled scenario, which SIGKILLs
// the node holding the WebSocket and expects the client to fall back to a fresh
// connection; relayKilled SIGKILLs the node relaying a resume, and expects the client
// to resume again on the holder.
// Prints ONE JSON line: {"ok": true, "results": {"<scenario>": {...}}} (the Python test
// asserts on it), or {"ok": false, "error": ...} and exits 1. E2E_WAIT_MS bounds waits.

import net from "node:net";
import signalR from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";

const { HubConnectionBuilder, HttpTransportType, LogLevel, Subject } = signalR;
const WAIT_MS = Number(process.env.E2E_WAIT_MS ?? 10000);

class Proxy {
    constructor(targets) {
        this.targets = targets;
        this.dead = new Set();
        this.next = 0;
        this.sockets = new Set();
        this.cuts = 0;
        this.routed = targets.map(() => 0);
        this.webSocketNodes = [];
        this.server = net.createServer((client) => {
            const index = this.pick();
            const target = this.targets[index];
            this.routed[index] += 1;
            const upstream = net.connect(target.port, target.hostname);
            for (const socket of [client, upstream]) {
                this.sockets.add(socket);
                socket.on("close", () => this.sockets.delete(socket));
                socket.on("error", () => {});
            }
            client.once("data", (chunk) => {
                if (/^upgrade:\s*websocket/im.test(chunk.toString("latin1"))) this.webSocketNodes.push(index);
            });
            client.pipe(upstream);
            upstream.pipe(client);
        });
    }

    pick() {
        for (let tries = 0; tries < this.targets.length; tries++) {
            const index = this.next++ % this.targets.length;
            if (!this.dead.has(index)) return index;
        }
        return 0;
    }

    listen() {
        return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => resolve(this.server.address().port)));
    }

    cut() {
        this.cuts += 1;
        for (const socket of this.sockets) {
            socket.destroy();
        }
        this.sockets.clear();
    }

    close() {
        this.cut();
        this.server.close();
    }
}

function deadline(promise, label) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${label}`)), WAIT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

class Stderr {
    log(level, message) {
        if (level >= LogLevel.Warning || process.env.SIGNALR_LOG) {
            process.stderr.write(`[${new Date().toISOString()}] ${LogLevel[level]}: ${message}\n`);
        }
    }
}

async function connect(url, protocol, events) {
    const builder = new HubConnectionBuilder()
        .withUrl(url, { transport: HttpTransportType.WebSockets })
        .withStatefulReconnect()
        .withAutomaticReconnect([0, 0, 0])
        .configureLogging(new Stderr());
    if (protocol === "messagepack") {
        builder.withHubProtocol(new msgpack.MessagePackHubProtocol());
    }
    const connection = builder.build();
    connection.onreconnecting(() => events.reconnecting++);
    connection.onreconnected(() => events.reconnected++);
    connection.onclose(() => events.closed++);
    await connection.start();
    return connection;
}

const SCENARIOS = {
    // A server stream of 300 items, cut after the 50th.
    async serverStream(hub) {
        const items = [];
        const done = new Promise((resolve, reject) => {
            hub.connection.stream("Counter", 300, 1).subscribe({
                next: (item) => {
                    items.push(item);
                    if (items.length === 50) hub.proxy.cut();
                },
                complete: resolve,
                error: reject,
            });
        });
        await deadline(done, "the stream to complete");
        return { items };
    },

    // An upload of 1..200, cut in the middle of it.
    async uploadStream(hub) {
        const subject = new Subject();
        const result = hub.connection.invoke("UploadSum", subject);
        for (let i = 1; i <= 200; i++) {
            subject.next(i);
            if (i === 100) {
                hub.proxy.cut();
            }
            if (i % 20 === 0) await new Promise((r) => setTimeout(r, 5));
        }
        subject.complete();
        return { sum: await deadline(result, "the upload's result") };
    },

    // 100 invocations in flight when the connection is cut.
    async pendingInvocations(hub) {
        const calls = [];
        for (let i = 0; i < 100; i++) {
            calls.push(hub.connection.invoke("Echo", i));
        }
        hub.proxy.cut();
        return { results: await deadline(Promise.all(calls), "the invocations") };
    },

    // 300 broadcasts from another (direct) connection; the resumable one is cut twice.
    async broadcastBurst(hub) {
        const tag = `burst-${Math.random()}`;
        const received = [];
        const all = new Promise((resolve) => {
            hub.connection.on("Receive", (message) => {
                if (message && message.tag === tag) {
                    received.push(message.n);
                    if (received.length === 100 || received.length === 200) hub.proxy.cut();
                    if (message.n === 299) resolve();
                }
            });
        });
        const sender = await connect(hub.directUrl, hub.protocol, { reconnecting: 0, reconnected: 0, closed: 0 });
        sender.on("Receive", () => {});
        try {
            for (let n = 0; n < 300; n++) {
                await sender.send("Broadcast", { tag, n });
            }
            await deadline(all, "every broadcast");
        } finally {
            await sender.stop();
        }
        return { received };
    },

    // The node holding the WebSocket is SIGKILLed: the resume lands on the other node,
    // which answers 404 (nobody holds the connection), so the client falls back to a
    // fresh connection there (onreconnecting, then onreconnected with a new id).
    async holderKilled(hub) {
        const before = await deadline(hub.connection.invoke("WhoAmI"), "WhoAmI before");
        const holder = hub.proxy.webSocketNodes.at(-1);
        const reconnected = new Promise((resolve) => hub.connection.onreconnected(resolve));
        hub.proxy.dead.add(holder);
        process.kill(hub.pids[holder], "SIGKILL");
        await deadline(reconnected, "a fresh connection");
        const after = await deadline(hub.connection.invoke("WhoAmI"), "WhoAmI after");
        return {
            fresh: before.connectionId !== after.connectionId,
            holder,
            nodeAfter: hub.proxy.webSocketNodes.at(-1),
        };
    },

    // A server stream whose resume is relayed by the other node, which is then
    // SIGKILLed: the client resumes again, on the holder itself, nothing lost.
    async relayKilled(hub) {
        const items = [];
        let relay;
        const done = new Promise((resolve, reject) => {
            hub.connection.stream("Counter", 150, 5).subscribe({
                next: (item) => {
                    items.push(item);
                    if (items.length === 30) hub.proxy.cut();
                    if (items.length === 60) {
                        relay = hub.proxy.webSocketNodes.at(-1);
                        hub.proxy.dead.add(relay);
                        process.kill(hub.pids[relay], "SIGKILL");
                    }
                },
                complete: resolve,
                error: reject,
            });
        });
        await deadline(done, "the stream to complete");
        return { items, relay, holder: hub.proxy.webSocketNodes[0] };
    },

    // Two cuts in a row during one stream (the second right after the first resume).
    async twiceInARow(hub) {
        const items = [];
        const done = new Promise((resolve, reject) => {
            hub.connection.stream("Counter", 200, 2).subscribe({
                next: (item) => {
                    items.push(item);
                    if (items.length === 40 || items.length === 42) hub.proxy.cut();
                },
                complete: resolve,
                error: reject,
            });
        });
        await deadline(done, "the stream to complete");
        const echo = await deadline(hub.connection.invoke("Echo", "after"), "an echo after");
        return { items, echo };
    },
};

async function main() {
    const [names, baseUrls, protocol, pids] = process.argv.slice(2);
    const bases = baseUrls.split(",");
    const targets = bases.map((base) => new URL(base));
    const results = {};
    for (const name of names.split(",")) {
        const proxy = new Proxy(targets);
        const port = await proxy.listen();
        const events = { reconnecting: 0, reconnected: 0, closed: 0 };
        const url = `http://127.0.0.1:${port}/hubs/echo`;
        const connection = await connect(url, protocol, events);
        try {
            const hub = {
                connection,
                proxy,
                protocol,
                directUrl: `${bases[0]}/hubs/echo`,
                pids: (pids ?? "").split(",").map(Number),
            };
            const observed = await SCENARIOS[name](hub);
            const after = await deadline(connection.invoke("Add", 20, 22), "a call after the scenario");
            results[name] = {
                ...observed,
                after,
                cuts: proxy.cuts,
                ...events,
                state: connection.state,
                routed: proxy.routed,
                webSocketNodes: proxy.webSocketNodes,
            };
        } finally {
            await connection.stop();
            proxy.close();
        }
    }
    process.stdout.write(JSON.stringify({ ok: true, results }) + "\n");
}

main().then(
    () => process.exit(0),
    (error) => {
        process.stdout.write(JSON.stringify({ ok: false, error: String(error?.stack ?? error) }) + "\n");
        process.exit(1);
    },
);
