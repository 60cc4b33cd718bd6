// Authentication scenarios driven by the official @microsoft/signalr client (Node).
//
//   node tests/e2e/js/auth.mjs SCENARIOS BASE_URL
//
//   SCENARIOS  comma-separated names (see SCENARIOS below)
//   BASE_URL   the demo, http://127.0.0.1:PORT (tokens come from BASE_URL/api/token,
//              the hub is BASE_URL/hubs/chat)
//
// AUTH_HUB_URL (default BASE_URL/hubs/chat) serves the hub from another server, and
// AUTH_TRANSPORTS (comma-separated, default all three) limits the transports that the
// per-transport scenarios (transports, refused, oneUserThreeTransports) use.
//
// Same contract as client.mjs: the script only observes and prints ONE JSON line,
//   {"ok": true, "results": {"<scenario>": {...}}}
// or {"ok": false, "error": ...} with exit code 1. Waits are bounded by E2E_WAIT_MS
// (default 10000). Client logs go to stderr (SIGNALR_LOG, default warning).

import signalR from "@microsoft/signalr";

const { HubConnectionBuilder, HttpTransportType, JsonHubProtocol, LogLevel, MessageType } = signalR;

const WAIT_MS = Number(process.env.E2E_WAIT_MS ?? 10000);
const LOG_LEVEL = {
    trace: LogLevel.Trace,
    debug: LogLevel.Debug,
    information: LogLevel.Information,
    warning: LogLevel.Warning,
    error: LogLevel.Error,
}[process.env.SIGNALR_LOG ?? "warning"];

const [scenarioList, baseUrl] = process.argv.slice(2);
const HUB = process.env.AUTH_HUB_URL ?? `${baseUrl}/hubs/chat`;
const TRANSPORTS = (process.env.AUTH_TRANSPORTS ?? "WebSockets,ServerSentEvents,LongPolling").split(",");

// -- plumbing ---------------------------------------------------------------------------

function withTimeout(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${WAIT_MS} ms: ${what}`)), WAIT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** A promise with its resolve function, to wait for a callback without polling. */
function deferred() {
    let resolve;
    const promise = new Promise((r) => {
        resolve = r;
    });
    return { promise, resolve };
}

async function fetchToken(username, lifetime) {
    const body = { username, password: `${username}-password` };
    if (lifetime !== undefined) {
        body.lifetime = lifetime;
    }
    const response = await fetch(`${baseUrl}/api/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
    });
    if (response.status !== 200) {
        throw new Error(`/api/token answered ${response.status}: ${await response.text()}`);
    }
    return (await response.json()).access_token;
}

function expOf(token) {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(Buffer.from(payload, "base64").toString("utf8")).exp;
}

/** The JSON protocol, also timestamping every Close message the client parses. */
class ClockedProtocol extends JsonHubProtocol {
    constructor() {
        super();
        this.closes = [];
    }

    parseMessages(input, logger) {
        const messages = super.parseMessages(input, logger);
        for (const message of messages) {
            if (message.type === MessageType.Close) {
                this.closes.push({ at: Date.now(), message });
            }
        }
        return messages;
    }
}

function build({ transport, factory, reconnect, protocol }) {
    const options = { transport: HttpTransportType[transport] };
    if (factory) {
        options.accessTokenFactory = factory;
    }
    let builder = new HubConnectionBuilder()
        .withUrl(HUB, options)
        .withHubProtocol(protocol ?? new JsonHubProtocol())
        .configureLogging(LOG_LEVEL);
    if (reconnect) {
        builder = builder.withAutomaticReconnect(reconnect);
    }
    return builder.build();
}

function describe(error) {
    return error === undefined || error === null ? null : String(error);
}

// -- scenarios --------------------------------------------------------------------------

/** accessTokenFactory fetching /api/token, over each transport. */
async function transports() {
    const results = {};
    for (const transport of TRANSPORTS) {
        let calls = 0;
        const connection = build({
            transport,
            factory: async () => {
                calls += 1;
                return fetchToken("alice");
            },
        });
        const closed = deferred();
        connection.onclose((error) => closed.resolve(describe(error)));
        await withTimeout(connection.start(), `${transport} start`);
        const whoami = await withTimeout(connection.invoke("WhoAmI"), `${transport} WhoAmI`);
        await connection.stop();
        results[transport] = { whoami, factoryCalls: calls, closeError: await closed.promise };
    }
    return results;
}

/** No token, and a factory that returns a bad one: start() must reject with the 401. */
async function refused() {
    const results = {};
    for (const transport of TRANSPORTS) {
        for (const [label, factory] of [
            ["none", undefined],
            ["garbage", async () => "garbage"],
        ]) {
            const connection = build({ transport, factory });
            try {
                await withTimeout(connection.start(), `${transport} start without a token`);
                results[`${transport}/${label}`] = { started: true };
                await connection.stop();
            } catch (error) {
                results[`${transport}/${label}`] = { started: false, error: String(error) };
            }
        }
    }
    return results;
}

/** bob on three transports at once; alice's SendToUser reaches every one of them. */
async function oneUserThreeTransports() {
    const bob = {};
    const arrived = {};
    const received = {};
    for (const transport of TRANSPORTS) {
        const connection = build({ transport, factory: () => fetchToken("bob") });
        received[transport] = [];
        arrived[transport] = deferred();
        connection.on("ReceiveDirectMessage", (from, message) => {
            received[transport].push({ from, message });
            arrived[transport].resolve();
        });
        bob[transport] = connection;
    }
    const alice = build({ transport: "WebSockets", factory: () => fetchToken("alice") });
    const aliceReceived = [];
    alice.on("ReceiveDirectMessage", (from, message) => aliceReceived.push({ from, message }));

    await withTimeout(
        Promise.all([alice.start(), ...Object.values(bob).map((c) => c.start())]),
        "start alice and bob's three connections",
    );
    const whoami = {};
    for (const transport of TRANSPORTS) {
        whoami[transport] = await withTimeout(bob[transport].invoke("WhoAmI"), `bob WhoAmI ${transport}`);
    }
    const message = `for bob, ${Date.now()}`;
    await withTimeout(alice.invoke("SendToUser", "bob@contoso.example", message), "SendToUser");
    await withTimeout(
        Promise.all(TRANSPORTS.map((t) => arrived[t].promise)),
        "the direct message on bob's three connections",
    );
    // A round trip on alice's connection: anything misdelivered to her has arrived by now.
    const aliceWhoami = await withTimeout(alice.invoke("WhoAmI"), "alice WhoAmI");
    await Promise.all([alice.stop(), ...Object.values(bob).map((c) => c.stop())]);
    return { whoami, message, received, aliceReceived, aliceWhoami };
}

/** Tokens of 2 s (over AUTH_EXPIRY_TRANSPORT, default WebSockets) with automatic reconnect: the server closes each
 * connection at exp, the client reconnects with a fresh (long) token. */
async function expiry() {
    const count = Number(process.env.AUTH_EXPIRY_CONNECTIONS ?? 5);
    const transport = process.env.AUTH_EXPIRY_TRANSPORT ?? "WebSockets";
    const connections = [];
    for (let i = 0; i < count; i += 1) {
        const state = {
            short: true,
            tokens: [],
            reconnecting: null,
            reconnectingAt: null,
            reconnectedId: null,
            closedWith: undefined,
        };
        const protocol = new ClockedProtocol();
        const connection = build({
            transport,
            protocol,
            reconnect: [0, 0, 100, 500],
            factory: async () => {
                const lifetime = state.short ? 2 : 3600;
                const token = await fetchToken("alice", lifetime);
                state.tokens.push({ lifetime, exp: expOf(token), at: Date.now() });
                return token;
            },
        });
        const reconnected = deferred();
        connection.onreconnecting((error) => {
            state.short = false; // every later token is a long one
            state.reconnecting = describe(error);
            state.reconnectingAt = Date.now();
        });
        connection.onreconnected((connectionId) => {
            state.reconnectedId = connectionId;
            reconnected.resolve();
        });
        connection.onclose((error) => {
            state.closedWith = describe(error);
        });
        connections.push({ connection, protocol, state, reconnected });
    }
    await withTimeout(Promise.all(connections.map((c) => c.connection.start())), "start");
    const firstIds = connections.map((c) => c.connection.connectionId);
    await withTimeout(Promise.all(connections.map((c) => c.reconnected.promise)), "reconnect after expiry");
    const after = [];
    for (const c of connections) {
        after.push(await withTimeout(c.connection.invoke("WhoAmI"), "WhoAmI after reconnect"));
    }
    await Promise.all(connections.map((c) => c.connection.stop()));
    return connections.map((c, i) => {
        const short = c.state.tokens.filter((t) => t.lifetime === 2);
        const long = c.state.tokens.filter((t) => t.lifetime === 3600);
        // The principal of the connection is the WebSocket upgrade's: the last short token.
        const exp = short.length ? short[short.length - 1].exp : null;
        const close = c.protocol.closes[0] ?? null;
        return {
            firstConnectionId: firstIds[i],
            reconnectedId: c.state.reconnectedId,
            shortTokens: short.length,
            longTokens: long.length,
            exp,
            close: close && close.message,
            closeAt: close && close.at,
            delayMs: close && exp !== null ? close.at - exp * 1000 : null,
            reconnecting: c.state.reconnecting,
            reconnectingAt: c.state.reconnectingAt,
            whoamiAfter: after[i],
            closesSeen: c.protocol.closes.length,
        };
    });
}

const SCENARIOS = { transports, refused, oneUserThreeTransports, expiry };

// -- main -------------------------------------------------------------------------------

const results = {};
try {
    for (const name of scenarioList.split(",")) {
        const scenario = SCENARIOS[name];
        if (!scenario) {
            throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(", ")}`);
        }
        results[name] = await scenario();
    }
    process.stdout.write(JSON.stringify({ ok: true, results }) + "\n");
    process.exit(0);
} catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error && error.stack ? error.stack : error), results }) + "\n");
    process.exit(1);
}
