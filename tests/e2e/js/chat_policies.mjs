// The seed's authorization examples against the demo's /hubs/chat, with the official
// client: each user's BanUser and ViewUserHistory outcomes, and an anonymous start.
//   node chat_policies.mjs BASE_URL   -> one JSON line
import * as signalR from "@microsoft/signalr";
import { outcome, token as demoToken } from "./demo.mjs";

const base = process.argv[2];
const USERS = ["alice", "bob", "asdf42", "mallory"];

function build(options) {
    return new signalR.HubConnectionBuilder()
        .withUrl(`${base}/hubs/chat`, options)
        .configureLogging(signalR.LogLevel.None)
        .build();
}

const results = { users: {} };
for (const username of USERS) {
    const accessToken = await demoToken(base, username);
    const connection = build({ accessTokenFactory: () => accessToken });
    await connection.start();
    results.users[username] = {
        whoami: await outcome(() => connection.invoke("WhoAmI")),
        // "ghost" is no demo user: an allowed BanUser reaches the method, which answers
        // with its own HubException, so nobody is really banned.
        banUser: await outcome(() => connection.invoke("BanUser", "ghost")),
        viewUserHistory: await outcome(() => connection.invoke("ViewUserHistory", "alice")),
        // Still connected after a denial: a denied call does not end the connection.
        afterwards: await outcome(() => connection.invoke("WhoAmI").then((w) => w.userId)),
    };
    await connection.stop();
}
results.anonymous = await outcome(() => build({}).start());
process.stdout.write(JSON.stringify({ ok: true, results }) + "\n");
