// RevokeSessions on the demo's /hubs/chat with the official client: alice ends every
// session of bob (one connection per transport), bob's old token stops working, a
// new sign-in works, and bob himself may not call it.
//   node revoke_sessions.mjs BASE_URL   -> one JSON line
import * as signalR from "@microsoft/signalr";
import { outcome, token as demoToken } from "./demo.mjs";

const base = process.argv[2];
const TRANSPORTS = ["WebSockets", "ServerSentEvents", "LongPolling"];

function build(accessToken, transport = "WebSockets") {
    return new signalR.HubConnectionBuilder()
        .withUrl(`${base}/hubs/chat`, {
            accessTokenFactory: () => accessToken,
            transport: signalR.HttpTransportType[transport],
        })
        // Would reconnect at once if the server's Close allowed it.
        .withAutomaticReconnect([0, 0])
        .configureLogging(signalR.LogLevel.None)
        .build();
}

function watch(connection) {
    const seen = { reconnecting: false };
    seen.closed = new Promise((resolve) => {
        connection.onreconnecting(() => {
            seen.reconnecting = true;
        });
        connection.onclose((error) => resolve(error ? String(error.message) : null));
    });
    return seen;
}

const results = {};
const oldBob = await demoToken(base, "bob");
const bobs = [];
for (const transport of TRANSPORTS) {
    const connection = build(oldBob, transport);
    await connection.start();
    bobs.push({ transport, connection, seen: watch(connection) });
}
const alice = build(await demoToken(base, "alice"));
await alice.start();
results.bobDenied = await outcome(() => bobs[0].connection.invoke("RevokeSessions", "alice"));
results.revoked = await outcome(() => alice.invoke("RevokeSessions", "bob"));
results.closes = {};
for (const { transport, seen } of bobs) {
    const error = await seen.closed;
    results.closes[transport] = { error, reconnecting: seen.reconnecting };
}
results.oldToken = await outcome(() => build(oldBob).start());
const newBob = build(await demoToken(base, "bob"));
results.newSignIn = await outcome(() => newBob.start().then(() => newBob.invoke("WhoAmI")));
results.aliceStill = await outcome(() => alice.invoke("WhoAmI").then((w) => w.userId));
await newBob.stop();
await alice.stop();
process.stdout.write(JSON.stringify({ ok: true, results }) + "\n");
