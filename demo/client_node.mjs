// Chat on the demo's /hubs/chat from Node.js with the official @microsoft/signalr client.
//
//   node demo/client_node.mjs http://127.0.0.1:8000 alice alice-password "Hello" \
//        [--to USER] [--listen SECONDS] [--transport WebSockets|ServerSentEvents|LongPolling]
//
// Gets a bearer token from POST /api/token and hands it to the client through
// accessTokenFactory (sent as "Authorization: Bearer" on negotiate and HTTP requests, and as
// the access_token query parameter on the WebSocket and SSE requests, which cannot carry
// headers from a browser). Then it says who it is, sends the message to everyone (and,
// with --to, to USER, a username or a user id, as a direct message), prints what the hub
// sends until its own message has come back (and the direct message, when sent to itself),
// listens --listen more seconds and stops. Printed lines (stdout):
//
//   connected as alice <alice@contoso.example> roles=Administrators connection=... transport=WebSockets
//   ReceiveMessage alice: Hello
//   ReceiveDirectMessage alice@contoso.example: Hello

import { parseArgs } from "node:util";
import signalR from "@microsoft/signalr";

const TIMEOUT_MS = 10_000;

const USAGE = "usage: node demo/client_node.mjs BASE_URL USERNAME PASSWORD MESSAGE "
    + "[--to USER] [--listen SECONDS] [--transport NAME]";

const HELP = `${USAGE}

Chat on the demo's /hubs/chat with the official @microsoft/signalr client: get a bearer
token from BASE_URL/api/token, say who it is, send MESSAGE to everyone and print what the
hub sends until it has come back.

positional arguments:
  BASE_URL              the demo, e.g. http://127.0.0.1:8000
  USERNAME PASSWORD     a demo user (alice / alice-password, bob / bob-password, ...)
  MESSAGE               what to send

options:
  -h, --help            show this help message and exit
  --to USER             also send MESSAGE as a direct message (username or user id)
  --listen SECONDS      keep printing this long after the message came back (default: 0)
  --transport NAME      WebSockets, ServerSentEvents or LongPolling (default: the
                        client's choice)`;

function usage(message) {
    console.error(`${USAGE}\nerror: ${message}`);
    process.exit(2);
}

/** One line for a server that cannot be reached (the same as the Python client's). */
function cannotConnect(baseUrl, error) {
    const code = error.cause && error.cause.code;
    if (code === "ECONNREFUSED") {
        return `error: cannot connect to ${baseUrl}: connection refused (is the demo running?)`;
    }
    return `error: cannot connect to ${baseUrl}: ${(error.cause && error.cause.message) || error.message}`;
}

async function fetchToken(baseUrl, username, password) {
    let response;
    try {
        response = await fetch(`${baseUrl}/api/token`, {
            method: "POST",
            headers: { "Content-Type": "application/json" },
            body: JSON.stringify({ username, password }),
            signal: AbortSignal.timeout(TIMEOUT_MS),
        });
    } catch (error) {
        console.error(cannotConnect(baseUrl, error));
        process.exit(1);
    }
    if (!response.ok) {
        throw new Error(`POST /api/token answered ${response.status}: ${await response.text()}`);
    }
    return (await response.json()).access_token;
}

/** Rejects after TIMEOUT_MS unless ``promise`` settles first. */
function within(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no ${what} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The transport the client picked, as it reports it in its log. */
class TransportLogger {
    log(level, message) {
        const picked = /^Selecting transport '(\w+)'/.exec(message);
        if (picked) this.transport = picked[1];
        if (level >= signalR.LogLevel.Warning) console.error(`[signalr] ${message}`);
    }
}

async function main() {
    let parsed;
    try {
        parsed = parseArgs({
            allowPositionals: true,
            options: {
                help: { type: "boolean", short: "h" },
                to: { type: "string" },
                listen: { type: "string", default: "0" },
                transport: { type: "string" },
            },
        });
    } catch (error) {
        usage(error.message);
    }
    const { values, positionals } = parsed;
    if (values.help) {
        console.log(HELP);
        return;
    }
    if (positionals.length !== 4) usage("expected BASE_URL USERNAME PASSWORD MESSAGE");
    const [rawBaseUrl, username, password, message] = positionals;
    const baseUrl = rawBaseUrl.replace(/\/+$/, "");
    const transport = values.transport && signalR.HttpTransportType[values.transport];
    if (values.transport && transport === undefined) usage(`unknown transport '${values.transport}'`);

    const token = await fetchToken(baseUrl, username, password);
    const logger = new TransportLogger();
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(`${baseUrl}/hubs/chat`, { accessTokenFactory: () => token, transport })
        .configureLogging(logger)
        .build();

    let me;
    // What must come back before we stop: the broadcast, and a direct message to self.
    const awaited = new Set();
    let allBack;
    const backAgain = new Promise((resolve) => { allBack = resolve; });
    const arrived = (key) => {
        if (awaited.delete(key) && awaited.size === 0) allBack();
    };
    const closed = new Promise((_, reject) => {
        connection.onclose((error) => reject(new Error(`the connection closed: ${error ?? "no error"}`)));
    });
    closed.catch(() => {}); // observed only while waiting below

    connection.on("ReceiveMessage", (name, text) => {
        console.log(`ReceiveMessage ${name}: ${text}`);
        arrived(JSON.stringify(["ReceiveMessage", name, text]));
    });
    connection.on("ReceiveDirectMessage", (fromUserId, text) => {
        console.log(`ReceiveDirectMessage ${fromUserId}: ${text}`);
        arrived(JSON.stringify(["ReceiveDirectMessage", fromUserId, text]));
    });

    await within(connection.start(), "connection");
    try {
        me = await connection.invoke("WhoAmI");
        const roles = me.roles.join(",") || "(none)";
        console.log(`connected as ${me.name} <${me.userId}> roles=${roles} `
            + `connection=${me.connectionId} transport=${logger.transport ?? "unknown"}`);
        awaited.add(JSON.stringify(["ReceiveMessage", me.name, message]));
        // --to takes a username or a user id; to oneself, the direct message comes back too
        // (and may arrive before SendToUser's answer, so it is awaited from now on).
        if (values.to === me.userId || values.to === me.name) {
            awaited.add(JSON.stringify(["ReceiveDirectMessage", me.userId, message]));
        }
        await connection.invoke("SendMessage", message);
        if (values.to !== undefined) await connection.invoke("SendToUser", values.to, message);
        await within(Promise.race([backAgain, closed]), "message back");
        const listenMs = Number(values.listen) * 1000;
        if (listenMs > 0) await Promise.race([new Promise((r) => setTimeout(r, listenMs)), closed]);
    } finally {
        await connection.stop();
    }
}

// A HubException is the hub refusing on purpose: its own words, not the reference's
// "unexpected error" wrapper.
const HUB_EXCEPTION = /^An unexpected error occurred invoking '[^']*' on the server\. HubException: /;

main().catch((error) => {
    console.error(`error: ${String(error.message ?? error).replace(HUB_EXCEPTION, "")}`);
    process.exit(1);
});
