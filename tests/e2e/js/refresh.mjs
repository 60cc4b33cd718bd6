// Authentication refresh in place with the official client (10.0.x: no refresh API, so
// the script calls POST {hub}/refresh?id={connectionToken} itself, as the demo page
// does). One connection per transport, on short tokens refreshed before they expire:
// the connection outlives every token but the last, never reconnects, loses no
// message, and closes at the last token's expiry. Then the refusals.
//   node refresh.mjs BASE_URL LIFETIME_S REFRESHES JSON_TOKENS  -> one JSON line
// JSON_TOKENS: credentials minted by the test ({name: token}) for the bad cases.
import * as signalR from "@microsoft/signalr";
import { outcome, token as demoToken } from "./demo.mjs";

const base = process.argv[2];
const lifetime = Number(process.argv[3]);
const refreshes = Number(process.argv[4]);
const minted = JSON.parse(process.argv[5]);
const hub = `${base}/hubs/chat`;
const TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"];

const token = (username, seconds) => demoToken(base, username, seconds);

// The 10.0.x client keeps the first token it got for every later HTTP request (long
// polling's polls and the sends of SSE and long polling) and fails on a 401 there, so
// a credential refreshed in place must also reach those requests. The documented
// httpClient option does both jobs: it puts the current credential on every request,
// and it reads the connection token, which appears only in the negotiate response.
class RefreshingHttpClient extends signalR.DefaultHttpClient {
    constructor(credential) {
        super(signalR.NullLogger.instance);
        this.credential = credential;
        this.negotiated = null;
    }
    async send(request) {
        request.headers = { ...request.headers, Authorization: `Bearer ${this.credential()}` };
        const response = await super.send(request);
        if (request.url.includes("/negotiate")) {
            this.negotiated = JSON.parse(response.content);
        }
        return response;
    }
}

async function refresh(connectionToken, credential) {
    const response = await fetch(`${hub}/refresh?id=${encodeURIComponent(connectionToken)}`, {
        method: "POST",
        headers: credential ? { Authorization: `Bearer ${credential}` } : {},
    });
    return { status: response.status, body: await response.json() };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function open(username, transport, credential) {
    const state = { credential, reconnecting: 0, received: 0 };
    const http = new RefreshingHttpClient(() => state.credential);
    const connection = new signalR.HubConnectionBuilder()
        .withUrl(hub, {
            transport: signalR.HttpTransportType[transport],
            accessTokenFactory: () => state.credential,
            httpClient: http,
        })
        .withAutomaticReconnect([0, 0, 0])
        .configureLogging(signalR.LogLevel.None)
        .build();
    // Every connection of alice gets every message sent to her; each counts its own.
    connection.on("ReceiveDirectMessage", (from, message) => {
        if (message.startsWith(`${transport}:`)) {
            state.received += 1;
        }
    });
    // The end of the connection: a close, or the start of a reconnect (what the
    // expiry's Close, which allows reconnecting, leads to).
    state.closed = new Promise((resolve) => {
        const ended = (error) => resolve({ error: error ? String(error.message) : null, at: Date.now() });
        connection.onclose(ended);
        connection.onreconnecting((error) => {
            state.reconnecting += 1;
            ended(error);
        });
    });
    await connection.start();
    state.connection = connection;
    state.http = http;
    state.token = http.negotiated.connectionToken;
    return state;
}

async function keepAlive(transport) {
    // Each refresh is due at 45 % of the current token's lifetime, counted from when
    // it was minted (not from when the connection was up: on a loaded machine the
    // start can take a good part of a short token's life).
    let mintedAt = Date.now();
    const alice = await open("alice", transport, await token("alice", lifetime));
    const started = mintedAt;
    const seen = { transport, negotiatedLifetime: alice.http.negotiated.tokenLifetimeSeconds, refreshes: [] };
    let sent = 0;
    for (let n = 0; n < refreshes; n++) {
        await sleep(Math.max(0, mintedAt + lifetime * 1000 * 0.45 - Date.now()));
        mintedAt = Date.now();
        const fresh = await token("alice", lifetime);
        const answer = await refresh(alice.token, fresh);
        alice.credential = fresh; // what later HTTP requests of the transport carry
        // A message a user sends to themself reaches this connection.
        await alice.connection.invoke("SendToUser", "alice@contoso.example", `${transport}:m${n}`);
        sent += 1;
        seen.refreshes.push({ status: answer.status, keys: Object.keys(answer.body).sort(), lifetime: answer.body.tokenLifetimeSeconds, connectionId: answer.body.connectionId === alice.connection.connectionId });
    }
    const lastRefresh = Date.now();
    seen.aliveAfterMs = lastRefresh - started;
    seen.whoami = await outcome(() => alice.connection.invoke("WhoAmI").then((w) => w.userId));
    await alice.connection.invoke("SendToUser", "alice@contoso.example", `${transport}:last`);
    sent += 1;
    seen.reconnectsWhileRefreshed = alice.reconnecting;
    const closed = await alice.closed;
    seen.closed = closed.error;
    seen.closedAfterLastRefreshMs = closed.at - lastRefresh;
    await alice.connection.stop();
    seen.sent = sent;
    seen.received = alice.received;
    return seen;
}

async function refusals() {
    const alice = await open("alice", "WebSockets", await token("alice", 60));
    const bob = await token("bob", 60);
    const results = {
        anotherUser: await refresh(alice.token, bob),
        stillAlice: await outcome(() => alice.connection.invoke("WhoAmI").then((w) => w.userId)),
        noCredential: await refresh(alice.token, null),
        missingId: await fetch(`${hub}/refresh`, { method: "POST", headers: { Authorization: `Bearer ${await token("alice", 60)}` } }).then(async (r) => ({ status: r.status, body: await r.json() })),
        unknownId: await refresh("no-such-connection", await token("alice", 60)),
    };
    for (const [name, credential] of Object.entries(minted)) {
        const answer = await fetch(`${hub}/refresh?id=${encodeURIComponent(alice.token)}`, {
            method: "POST",
            headers: { Authorization: `Bearer ${credential}` },
        });
        results[name] = {
            status: answer.status,
            body: await answer.json(),
            challenge: answer.headers.get("www-authenticate"),
        };
    }
    results.stillAliceAtTheEnd = await outcome(() => alice.connection.invoke("WhoAmI").then((w) => w.userId));
    await alice.connection.stop();
    return results;
}

const results = {
    transports: await Promise.all(TRANSPORTS.map(keepAlive)),
    refusals: await refusals(),
};
process.stdout.write(JSON.stringify({ ok: true, results }) + "\n");
