// End-to-end scenarios driven by the official @microsoft/signalr client.
//
//   node tests/e2e/js/client.mjs SCENARIOS URL TRANSPORT PROTOCOL [--skip-negotiation]
//
//   SCENARIOS  one scenario name or several, comma separated (see SCENARIOS below)
//   URL        the hub URL, http(s)://host:port/hubs/echo (the Node client refuses ws://;
//              its WebSocket transport rewrites http -> ws itself)
//   TRANSPORT  WebSockets | ServerSentEvents | LongPolling (HttpTransportType names)
//   PROTOCOL   json | messagepack
//
// The script only observes: it runs each scenario and prints ONE JSON line on stdout,
//   {"ok": true, "results": {"<scenario>": {...observations...}}, ...}
// and the Python tests assert on those observations. A failure (a rejected promise, a
// wait that timed out) prints {"ok": false, "error": ...} and exits 1. Client logs go to
// stderr (SIGNALR_LOG=trace|debug|information|warning|error, default information; trace
// also logs every frame's content). E2E_WAIT_MS bounds every wait (default 5000).
//
// Every connection uses a RecordingProtocol: the real JSON / MessagePack protocol, wrapped
// to keep every message the client parsed off the wire, so scenarios can also check what
// the server did NOT send (no reply to send(), nothing for a non-member of a group, ...).

import signalR from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";

const { HubConnectionBuilder, HttpTransportType, LogLevel, MessageType, Subject } = signalR;
const { MessagePackHubProtocol } = msgpack;

const WAIT_MS = Number(process.env.E2E_WAIT_MS ?? 5000);

// -- plumbing ---------------------------------------------------------------------------

const LOG_LEVELS = {
    trace: LogLevel.Trace,
    debug: LogLevel.Debug,
    information: LogLevel.Information,
    warning: LogLevel.Warning,
    error: LogLevel.Error,
};

class StderrLogger {
    constructor(name, minimum) {
        this.name = name;
        this.minimum = minimum;
    }

    log(level, message) {
        if (level >= this.minimum) {
            process.stderr.write(`[${new Date().toISOString()}] ${LogLevel[level]} ${this.name}: ${message}\n`);
        }
    }
}

/** Values that arrive over time, and waits for a condition on them (no polling, no sleeps). */
class Inbox {
    constructor(label) {
        this.label = label;
        this.items = [];
        this._waiters = [];
    }

    push(item) {
        this.items.push(item);
        for (const waiter of [...this._waiters]) {
            if (waiter.predicate(this.items)) {
                waiter.done();
            }
        }
    }

    /** Resolves once predicate(items) holds; rejects after WAIT_MS with what did arrive. */
    until(predicate, what) {
        if (predicate(this.items)) {
            return Promise.resolve(this.items);
        }
        return new Promise((resolve, reject) => {
            const waiter = {
                predicate,
                done: () => {
                    clearTimeout(timer);
                    this._waiters.splice(this._waiters.indexOf(waiter), 1);
                    resolve(this.items);
                },
            };
            const timer = setTimeout(() => {
                this._waiters.splice(this._waiters.indexOf(waiter), 1);
                reject(new Error(`${this.label}: timed out after ${WAIT_MS} ms waiting for ${what}; ` +
                    `got ${JSON.stringify(this.items)}`));
            }, WAIT_MS);
            this._waiters.push(waiter);
        });
    }

    /** Resolves once at least n items arrived. */
    count(n) {
        return this.until((items) => items.length >= n, `${n} item(s)`);
    }
}

/** The real hub protocol, recording every message parsed from the server. */
class RecordingProtocol {
    constructor(inner, label) {
        this.inner = inner;
        this.name = inner.name;
        this.version = inner.version;
        this.transferFormat = inner.transferFormat;
        this.wire = new Inbox(`${label} wire`);
        // Every message the client hands to its transport, in order.
        this.written = new Inbox(`${label} written`);
        // Raw data as handed to the protocol after the handshake: text as is, binary as hex.
        this.frames = [];
    }

    parseMessages(input, logger) {
        this.frames.push(typeof input === "string" ? input : Buffer.from(input).toString("hex"));
        const messages = this.inner.parseMessages(input, logger);
        for (const message of messages) {
            this.wire.push(message);
        }
        return messages;
    }

    writeMessage(message) {
        this.written.push(message);
        return this.inner.writeMessage(message);
    }
}

/** A JSON-safe copy of a parsed message: undefined fields dropped, Uint8Array as hex. */
function plain(value) {
    return JSON.parse(JSON.stringify(value, (key, v) => {
        if (v instanceof Uint8Array) {
            return { $bytes: Buffer.from(v).toString("hex") };
        }
        return v;
    }));
}

/** What the server sent, minus pings (which arrive on their own schedule). */
function nonPing(wire) {
    return wire.items.filter((m) => m.type !== MessageType.Ping).map(plain);
}

const NO_ANSWER = Symbol("no answer");

/**
 * Runs fn(); returns {value} or {error: message} so a scenario can record both. A call
 * still pending after WAIT_MS is recorded as {error: "no answer within ... ms"}.
 */
async function outcome(fn) {
    let timer;
    const late = new Promise((resolve) => {
        timer = setTimeout(() => resolve(NO_ANSWER), WAIT_MS);
    });
    try {
        const value = await Promise.race([fn(), late]);
        if (value === NO_ANSWER) {
            return { error: `no answer within ${WAIT_MS} ms` };
        }
        return { value: value === undefined ? "<undefined>" : value };
    } catch (error) {
        return { error: error instanceof Error ? error.message : String(error) };
    } finally {
        clearTimeout(timer);
    }
}

function nonce() {
    return Math.random().toString(36).slice(2, 10);
}

// -- connections ------------------------------------------------------------------------

const config = {};
const opened = [];

/** A started connection; .received collects every "Receive" invocation's argument. */
async function connect(label, handlers = {}) {
    const inner = config.protocol === "messagepack" ? new MessagePackHubProtocol() : new signalR.JsonHubProtocol();
    const protocol = new RecordingProtocol(inner, label);
    const connection = new HubConnectionBuilder()
        .withUrl(config.url, {
            // "All" lets the client walk the server's list (fallback).
            transport: config.transport === "All" ? undefined : HttpTransportType[config.transport],
            skipNegotiation: config.skipNegotiation,
            logMessageContent: config.logLevel === LogLevel.Trace,
        })
        .withHubProtocol(protocol)
        .configureLogging(new StderrLogger(label, config.logLevel))
        .build();
    const received = new Inbox(`${label} Receive`);
    connection.on("Receive", (message) => received.push(message));
    for (const [name, handler] of Object.entries(handlers)) {
        connection.on(name, handler);
    }
    const closed = new Inbox(`${label} onclose`);
    connection.onclose((error) => closed.push(error === undefined ? null : String(error)));
    await connection.start();
    const entry = { label, connection, protocol, received, closed };
    opened.push(entry);
    return entry;
}

/** Stops every connection of a scenario; returns each one's onclose error (null = clean). */
async function stopAll(entries) {
    const closes = {};
    for (const entry of entries) {
        await entry.connection.stop();
        const [error] = await entry.closed.count(1);
        closes[entry.label] = error;
        opened.splice(opened.indexOf(entry), 1);
    }
    return closes;
}

// -- scenarios --------------------------------------------------------------------------

const NESTED = {
    text: "héllo wörld ☃ 😀",
    int: 42,
    negative: -7,
    big: 2 ** 40,
    float: 2.5,
    yes: true,
    no: false,
    nothing: null,
    list: [1, "two", 3.25, null, [], {}],
    nested: { deeper: { deepest: ["x", { y: [1, 2, 3] }] } },
    empty: "",
};

const SCENARIOS = {
    async invoke() {
        const a = await connect("A");
        const result = {
            // First, so that its Completion has invocationId "0" (raw bytes checked).
            void: await outcome(() => a.connection.invoke("Void")),
            echo: await outcome(() => a.connection.invoke("Echo", NESTED)),
            echoString: await outcome(() => a.connection.invoke("Echo", "just a string")),
            echoNull: await outcome(() => a.connection.invoke("Echo", null)),
            echoCaseInsensitiveTarget: await outcome(() => a.connection.invoke("eCHO", 1)),
            addInts: await outcome(() => a.connection.invoke("Add", 2, 3)),
            addNegative: await outcome(() => a.connection.invoke("Add", -10, 4)),
            addBig: await outcome(() => a.connection.invoke("Add", 2 ** 40, 1)),
            addFloats: await outcome(() => a.connection.invoke("Add", 1.5, 2.25)),
            addMixed: await outcome(() => a.connection.invoke("Add", 1, 0.5)),
        };
        result.expectedEcho = NESTED;
        result.wire = nonPing(a.protocol.wire);
        result.frames = a.protocol.frames;
        result.closes = await stopAll([a]);
        return result;
    },

    async send() {
        const a = await connect("A");
        const message = `send-${nonce()}`;
        const sendReturned = await outcome(() => a.connection.send("Broadcast", message));
        await a.received.count(1);
        // An invoke after the send: its Completion proves the server has processed the
        // send (one connection's messages are handled in order), so the wire log below
        // would already hold any reply the server wrongly sent to the send().
        const after = await outcome(() => a.connection.invoke("Add", 1, 1));
        return {
            message,
            sendReturned,
            received: a.received.items,
            after,
            wire: nonPing(a.protocol.wire),
            closes: await stopAll([a]),
        };
    },

    async stream() {
        const a = await connect("A");
        // 1. a whole stream.
        const items = new Inbox("Counter(5,0) items");
        const completed = new Inbox("Counter(5,0) complete");
        a.connection.stream("Counter", 5, 0).subscribe({
            next: (item) => items.push(item),
            error: (error) => completed.push({ error: String(error) }),
            complete: () => completed.push({ complete: true }),
        });
        const [whole] = await completed.count(1);
        const firstId = a.protocol.wire.items.find((m) => m.type === MessageType.StreamItem).invocationId;

        // 2. a long stream cancelled by the client after three items.
        const longItems = new Inbox("Counter(1000,10) items");
        const longEnd = new Inbox("Counter(1000,10) end");
        const subscription = a.connection.stream("Counter", 1000, 10).subscribe({
            next: (item) => longItems.push(item),
            error: (error) => longEnd.push({ error: String(error) }),
            complete: () => longEnd.push({ complete: true }),
        });
        await longItems.count(3);
        subscription.dispose(); // sends CancelInvocation
        const cancelledAfter = [...longItems.items];
        const longId = a.protocol.wire.items.find(
            (m) => m.type === MessageType.StreamItem && m.invocationId !== firstId).invocationId;
        // The server still ends a cancelled stream with a Completion (no error, no result).
        await a.protocol.wire.until(
            (wire) => wire.some((m) => m.type === MessageType.Completion && m.invocationId === longId),
            `the Completion of the cancelled stream ${longId}`,
        );
        const cancelCompletion = plain(a.protocol.wire.items.find(
            (m) => m.type === MessageType.Completion && m.invocationId === longId));
        // 3. the connection survives the cancellation.
        const afterCancel = await outcome(() => a.connection.invoke("Add", 20, 22));
        const itemsAfterCancel = a.protocol.wire.items.filter(
            (m) => m.type === MessageType.StreamItem && m.invocationId === longId).length;
        return {
            items: items.items,
            completion: whole,
            cancelledAfter,
            cancelCompletion,
            longEndCallbacks: longEnd.items,
            itemsOnWireForCancelled: itemsAfterCancel,
            wholeWire: nonPing(a.protocol.wire).filter((msg) => msg.invocationId === firstId),
            afterCancel,
            closes: await stopAll([a]),
        };
    },

    async upload() {
        const a = await connect("A");
        const subject = new Subject();
        const pending = outcome(() => a.connection.invoke("UploadSum", subject));
        for (const value of [1, 2, 3.5, 10]) {
            subject.next(value);
        }
        subject.complete();
        const mixed = await pending;

        // More items than the server's upload buffer (10): exercises back-pressure.
        const many = new Subject();
        const pendingMany = outcome(() => a.connection.invoke("UploadSum", many));
        for (let i = 0; i < 100; i++) {
            many.next(i);
        }
        many.complete();
        const hundred = await pendingMany;

        const empty = new Subject();
        const pendingEmpty = outcome(() => a.connection.invoke("UploadSum", empty));
        empty.complete();
        const none = await pendingEmpty;

        const after = await outcome(() => a.connection.invoke("Add", 1, 2));
        return { mixed, hundred, none, after, closes: await stopAll([a]) };
    },

    async uploadWhileInvoking() {
        // The client sends the upload's Invocation at once but queues its items behind it
        // on a promise chain, so an invoke() made right after goes on the wire BEFORE the
        // items: Invocation(UploadSum, streamIds) Invocation(Add) StreamItem... Completion.
        // ASP.NET Core runs methods with stream parameters outside the one-invocation-
        // at-a-time limit (DefaultHubDispatcher: !isStreamCall), so Add answers at once and
        // the upload then completes. A runs this with invoke(), B with send() as in the
        // SignalR docs' upload example; both at once, so a hang costs one WAIT_MS.
        const [a, b] = [await connect("A"), await connect("B")];
        const viaInvoke = async () => {
            const subject = new Subject();
            const upload = outcome(() => a.connection.invoke("UploadSum", subject));
            const add = outcome(() => a.connection.invoke("Add", 1, 2));
            subject.next(1);
            subject.next(2);
            subject.complete();
            return { add: await add, upload: await upload };
        };
        const viaSend = async () => {
            const subject = new Subject();
            const sendReturned = await outcome(() => b.connection.send("UploadSum", subject));
            const add = outcome(() => b.connection.invoke("Add", 3, 4));
            subject.next(5);
            subject.complete();
            // Over HTTP transports each record is its own POST: wait until the client
            // has written the stream's Completion, or stopping would race its send.
            await b.protocol.written.until(
                (items) => items.some((m) => m.type === MessageType.Completion),
                "the upload's Completion to be written",
            );
            // The transport sends in order, so once a later call is answered the
            // Completion's POST has finished too.
            const flushed = await outcome(() => b.connection.invoke("Echo", "flushed"));
            return { sendReturned, add: await add, flushed };
        };
        const [invoked, sent] = await Promise.all([viaInvoke(), viaSend()]);
        return { invoked, sent, closes: await stopAll([a, b]) };
    },

    async broadcast() {
        const a = await connect("A");
        const b = await connect("B");
        const message = `all-${nonce()}`;
        const invoked = await outcome(() => a.connection.invoke("Broadcast", message));
        await a.received.count(1);
        await b.received.count(1);
        return {
            message,
            invoked,
            a: a.received.items,
            b: b.received.items,
            wireB: nonPing(b.protocol.wire),
            closes: await stopAll([a, b]),
        };
    },

    async groups() {
        const a = await connect("A");
        const b = await connect("B");
        const c = await connect("C");
        const group = `g-${nonce()}`;
        const m = (n) => `${group}-m${n}`;
        const steps = {};
        steps.joinA = await outcome(() => a.connection.invoke("JoinGroup", group));
        steps.joinB = await outcome(() => b.connection.invoke("JoinGroup", group));
        steps.joinAgainB = await outcome(() => b.connection.invoke("JoinGroup", group)); // idempotent
        steps.sendToGroup1 = await outcome(() => a.connection.invoke("SendToGroup", group, m(1)));
        await a.received.count(1);
        await b.received.count(1);
        // C must not have received m1: it receives the broadcast m2 as its FIRST message.
        steps.broadcast2 = await outcome(() => a.connection.invoke("Broadcast", m(2)));
        await Promise.all([a.received.count(2), b.received.count(2), c.received.count(1)]);
        steps.leaveB = await outcome(() => b.connection.invoke("LeaveGroup", group));
        steps.sendToGroup3 = await outcome(() => a.connection.invoke("SendToGroup", group, m(3)));
        await a.received.count(3);
        // B must not have received m3: its next message is the broadcast m4.
        steps.broadcast4 = await outcome(() => a.connection.invoke("Broadcast", m(4)));
        await Promise.all([a.received.count(4), b.received.count(3), c.received.count(2)]);
        return {
            group,
            expected: { a: [m(1), m(2), m(3), m(4)], b: [m(1), m(2), m(4)], c: [m(2), m(4)] },
            a: a.received.items,
            b: b.received.items,
            c: c.received.items,
            steps,
            closes: await stopAll([a, b, c]),
        };
    },

    async clientResults() {
        const a = await connect("A", {
            getAnswer: (x) => x * 2,
            asyncAnswer: async (x) => ({ got: x, list: [x, x] }),
            failing: () => {
                throw new Error("client handler failed");
            },
            returnsNothing: () => undefined,
        });
        const result = {
            answer: await outcome(() => a.connection.invoke("AskCaller", "getAnswer", 21)),
            // The JS client lower-cases handler names: any casing from the server matches.
            upperCase: await outcome(() => a.connection.invoke("AskCaller", "GETANSWER", 5)),
            asyncAnswer: await outcome(() => a.connection.invoke("AskCaller", "asyncAnswer", "q")),
            noHandler: await outcome(() => a.connection.invoke("AskCaller", "noSuchHandler", 1)),
            failing: await outcome(() => a.connection.invoke("AskCaller", "failing", 1)),
            returnsNothing: await outcome(() => a.connection.invoke("AskCaller", "returnsNothing", 1)),
            after: await outcome(() => a.connection.invoke("Add", 2, 2)),
        };
        result.serverInvocations = nonPing(a.protocol.wire).filter((msg) => msg.type === MessageType.Invocation);
        result.closes = await stopAll([a]);
        return result;
    },

    async errors() {
        const a = await connect("A");
        const result = {
            throw: await outcome(() => a.connection.invoke("Throw", "boom")),
            unknown: await outcome(() => a.connection.invoke("Nope")),
            tooFewArguments: await outcome(() => a.connection.invoke("Add", 1)),
            tooManyArguments: await outcome(() => a.connection.invoke("Add", 1, 2, 3)),
            streamingViaInvoke: await outcome(() => a.connection.invoke("Counter", 1, 0)),
            invokeViaStream: await new Promise((resolve) => {
                a.connection.stream("Add", 1, 2).subscribe({
                    next: (item) => resolve({ item }),
                    error: (error) => resolve({ error: error instanceof Error ? error.message : String(error) }),
                    complete: () => resolve({ value: "<completed>" }),
                });
            }),
            // A send() of a failing method gets no reply at all (not even the error).
            sendThrow: await outcome(() => a.connection.send("Throw", "silent")),
            after: await outcome(() => a.connection.invoke("Add", 40, 2)),
        };
        result.wire = nonPing(a.protocol.wire);
        result.closes = await stopAll([a]);
        return result;
    },

    async concurrent() {
        const a = await connect("A");
        // Started together, these queue up in the client, which joins queued records into
        // one WebSocket frame / POST body: the server must split frames into records.
        const adds = Array.from({ length: 50 }, (_, i) => outcome(() => a.connection.invoke("Add", i, 1000)));
        const echoes = Array.from({ length: 10 }, (_, i) => outcome(() => a.connection.invoke("Echo", { i })));
        const streams = Array.from({ length: 5 }, (_, s) => new Promise((resolve) => {
            const items = [];
            a.connection.stream("Counter", 10 + s, 0).subscribe({
                next: (item) => items.push(item),
                error: (error) => resolve({ error: String(error), items }),
                complete: () => resolve({ items }),
            });
        }));
        return {
            adds: await Promise.all(adds),
            echoes: await Promise.all(echoes),
            streams: await Promise.all(streams),
            closes: await stopAll([a]),
        };
    },

    async limits() {
        const a = await connect("A");
        // Just under the default 32 KB incoming-record limit: fine.
        const under = "x".repeat(30000);
        const fits = await outcome(() => a.connection.invoke("Echo", under));
        // Over it: the server closes the connection with an error Close record.
        const over = await outcome(() => a.connection.invoke("Echo", "y".repeat(40000)));
        const [closeError] = await a.closed.count(1);
        opened.splice(opened.indexOf(a), 1);
        return {
            fitsLength: typeof fits.value === "string" ? fits.value.length : fits,
            fitsSame: fits.value === under,
            over,
            closeError,
            close: plain(a.protocol.wire.items.find((m) => m.type === MessageType.Close) ?? null),
        };
    },

    async whoami() {
        const a = await connect("A");
        return {
            whoami: await outcome(() => a.connection.invoke("WhoAmI")),
            connectionId: a.connection.connectionId,
            closes: await stopAll([a]),
        };
    },

    /** Which transport the client ended up on (for fallback checks). */
    async transportUsed() {
        const a = await connect("A");
        // The client keeps its transport on the internal HttpConnection; its class
        // name is the only place the choice is visible.
        const name = a.connection.connection?.transport?.constructor?.name ?? null;
        const echo = await outcome(() => a.connection.invoke("Echo", "still works"));
        return { transport: name, echo, closes: await stopAll([a]) };
    },
};

// -- main -------------------------------------------------------------------------------

function parseArgs(argv) {
    const positional = argv.filter((arg) => !arg.startsWith("--"));
    const flags = new Set(argv.filter((arg) => arg.startsWith("--")));
    if (positional.length !== 4) {
        throw new Error("usage: client.mjs SCENARIOS URL TRANSPORT PROTOCOL [--skip-negotiation]");
    }
    const [scenarios, url, transport, protocol] = positional;
    for (const flag of flags) {
        if (flag !== "--skip-negotiation") {
            throw new Error(`unknown option ${flag}`);
        }
    }
    if (transport !== "All" && (!(transport in HttpTransportType) || typeof HttpTransportType[transport] !== "number")) {
        throw new Error(`unknown transport ${transport}`);
    }
    if (protocol !== "json" && protocol !== "messagepack") {
        throw new Error(`unknown protocol ${protocol}`);
    }
    const names = scenarios.split(",");
    for (const name of names) {
        if (!(name in SCENARIOS)) {
            throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(", ")}`);
        }
    }
    return {
        names,
        url,
        transport,
        protocol,
        skipNegotiation: flags.has("--skip-negotiation"),
        logLevel: LOG_LEVELS[(process.env.SIGNALR_LOG ?? "information").toLowerCase()] ?? LogLevel.Information,
    };
}

async function main() {
    const started = Date.now();
    let current = null;
    try {
        Object.assign(config, parseArgs(process.argv.slice(2)));
        const results = {};
        for (const name of config.names) {
            current = name;
            results[name] = await SCENARIOS[name]();
        }
        process.stdout.write(JSON.stringify({
            ok: true,
            version: signalR.VERSION,
            transport: config.transport,
            protocol: config.protocol,
            elapsedMs: Date.now() - started,
            results,
        }) + "\n");
        process.exitCode = 0;
    } catch (error) {
        process.stderr.write(`scenario ${current} failed: ${error?.stack ?? error}\n`);
        process.stdout.write(JSON.stringify({ ok: false, scenario: current, error: String(error?.message ?? error) }) + "\n");
        process.exitCode = 1;
    } finally {
        for (const entry of [...opened]) {
            await entry.connection.stop().catch(() => {});
        }
    }
}

await main();
