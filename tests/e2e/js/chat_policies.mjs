// The seed's authorization examples against the demo's /hubs/chat, with the official
// client: each user's BanUser and ViewUserHistory outcomes, and an anonymous start.
//   node chat_policies.mjs BASE_URL   -> one JSON line
import * as signalR from "@microsoft/signalr";

const base = process.argv[2];
const USERS = ["alice", "bob", "asdf42", "mallory"];

async function token(username) {
    const response = await fetch(`${base}/api/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username, password: `${username}-password` }),
    });
    if (response.status !== 200) {
        throw new Error(`token for ${username}: HTTP ${response.status}`);
    }
    return (await response.json()).access_token;
}

async function outcome(call) {
    try {
        return { value: (await call()) ?? null };
    } catch (error) {
        return { error: String(error?.message ?? error) };
    }
}

function build(options) {
    return new signalR.HubConnectionBuilder()
        .withUrl(`${base}/hubs/chat`, options)
        .configureLogging(signalR.LogLevel.None)
        .build();
}

const results = { users: {} };
for (const username of USERS) {
    const accessToken = await token(username);
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
