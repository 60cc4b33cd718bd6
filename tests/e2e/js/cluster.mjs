// Cross-node scenarios with the official @microsoft/signalr client, each connection on
// one node of a cluster (python -m demo --redis URL on several ports).
//
//   node tests/e2e/js/cluster.mjs SCENARIO TRANSPORT PROTOCOL BASE_URL0 BASE_URL1 [...]
//
//   targets  /hubs/echo: four connections spread over the nodes, groups joined locally
//            and across nodes, every clients.* target sent from node 0, a group removal
//            across nodes, client results across nodes. Reports what each got.
//   ban      /hubs/chat: alice on node 0 bans bob, connected to the other nodes; reports
//            how bob's connections closed and what his new ones got on every node.
//   revoke   /hubs/chat: alice on node 0 calls RevokeSessions("bob"), connected to every
//            other node; reports how bob's connections closed, the milliseconds from the
//            call returning to the last Close, negotiate with bob's old token on every
//            node, a new sign-in, and the old token (the test tries it on a restarted node).
//   failover /hubs/echo: a client with automatic reconnect through BASE_URL0 (a balancer
//            in front of the nodes) prints "READY" and waits; once its node is killed it
//            reconnects (through the balancer, to another node), joins a group again and
//            gets a send from a connection on BASE_URL1.
//
// Prints ONE JSON line, {"ok": true, "results": {...}}; failures print {"ok": false}.
import signalR from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";

const [scenario, transport, protocol, ...bases] = process.argv.slice(2);
const WAIT_MS = Number(process.env.E2E_WAIT_MS ?? 10000);
const END = "end";

async function token(username) {
    const response = await fetch(`${bases[0]}/api/token`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username, password: `${username}-password` }),
    });
    if (response.status !== 200) {
        throw new Error(`token for ${username}: HTTP ${response.status}`);
    }
    return (await response.json()).access_token;
}

function build(base, hub, accessToken) {
    let builder = new signalR.HubConnectionBuilder()
        .withUrl(`${base}${hub}`, {
            transport: signalR.HttpTransportType[transport],
            ...(accessToken ? { accessTokenFactory: () => accessToken } : {}),
        })
        .configureLogging(signalR.LogLevel.Warning);
    if (protocol === "messagepack") {
        builder = builder.withHubProtocol(new msgpack.MessagePackHubProtocol());
    }
    return builder.build();
}

function within(promise, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function outcome(call) {
    try {
        return { value: (await call()) ?? null };
    } catch (error) {
        return { error: String(error?.message ?? error) };
    }
}

async function targets() {
    const node = (i) => bases[i % bases.length];
    const last = bases.length - 1;
    const tokens = { alice: await token("alice"), bob: await token("bob"), asdf42: await token("asdf42") };
    const plan = [
        ["c0", "alice", node(0)],
        ["c1", "bob", node(1)],
        ["c2", "alice", node(last)],
        ["c3", "asdf42", node(1)],
    ];
    const c = {};
    const labels = {};
    const ends = {};
    const nodeOf = {};
    for (const [name, user, base] of plan) {
        const connection = build(base, "/hubs/echo", tokens[user]);
        labels[name] = [];
        ends[name] = new Promise((resolve) => {
            connection.on("Receive", (label) => {
                if (label === END) {
                    resolve();
                } else {
                    labels[name].push(label);
                }
            });
        });
        connection.on("GetValue", (x) => x * 2);
        await connection.start();
        c[name] = connection;
        nodeOf[name] = bases.indexOf(base);
    }
    const id = {};
    for (const name of Object.keys(c)) {
        id[name] = (await c[name].invoke("WhoAmI")).connectionId;
    }
    const c0 = c.c0;
    await c0.invoke("JoinGroup", "g1");
    await c0.invoke("AddToGroup", id.c1, "g1"); // held by node 1
    await c.c2.invoke("JoinGroup", "g2");
    await c0.invoke("AddToGroup", id.c3, "g2"); // held by node 1
    await c.c1.invoke("JoinGroup", "g2");
    const send = (target, names, label) => c0.invoke("SendTo", target, names, label);
    await send("all", [], "all");
    await send("all_except", [id.c1, id.c2], "all_except");
    await send("client", [id.c2], "client");
    await send("clients", [id.c1, id.c3], "clients");
    await send("user", ["alice"], "user");
    await send("users", ["bob", "asdf42"], "users");
    await send("group", ["g1"], "group");
    await send("groups", ["g1", "g2"], "groups");
    await send("group_except", ["g2", id.c3], "group_except");
    await send("others", [], "others");
    await send("others_in_group", ["g1"], "others_in_group");
    await c0.invoke("RemoveFromGroup", id.c1, "g1"); // held by node 1
    await send("group", ["g1"], "group_after_remove");
    await send("all", [], END);
    await within(Promise.all(Object.values(ends)), "the end marker on every connection");
    const results = {
        nodes: nodeOf,
        labels: Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, v.sort()])),
        askAcross: await outcome(() => c0.invoke("AskClient", id.c1, "GetValue", 21)),
        askMissing: await outcome(() => c0.invoke("AskClient", "nobody", "GetValue", 1)),
        addMissing: await outcome(() => c0.invoke("AddToGroup", "nobody", "g")),
    };
    await Promise.all(Object.values(c).map((connection) => connection.stop()));
    return results;
}

async function ban() {
    const alice = build(bases[0], "/hubs/chat", await token("alice"));
    await alice.start();
    const bobToken = await token("bob");
    const closed = [];
    const bobs = [];
    for (const base of bases.slice(1)) {
        const bob = build(base, "/hubs/chat", bobToken);
        closed.push(new Promise((resolve) => bob.onclose((error) => resolve(error ? String(error) : null))));
        await bob.start();
        bobs.push(bob);
    }
    const banned = await outcome(() => alice.invoke("BanUser", "bob"));
    const closes = await within(Promise.all(closed), "bob's connections to close");
    const refused = [];
    for (const base of bases) {
        refused.push(await outcome(() => build(base, "/hubs/chat", bobToken).start()));
    }
    await alice.stop();
    return { banned, closes, refused };
}

async function revoke() {
    const alice = build(bases[0], "/hubs/chat", await token("alice"));
    await alice.start();
    const oldToken = await token("bob");
    const closed = [];
    for (const base of bases.slice(1)) {
        const bob = build(base, "/hubs/chat", oldToken);
        closed.push(
            new Promise((resolve) =>
                bob.onclose((error) => resolve({ error: error ? String(error) : null, at: performance.now() })),
            ),
        );
        await bob.start();
    }
    const called = performance.now();
    const revoked = await outcome(() => alice.invoke("RevokeSessions", "bob"));
    const returned = performance.now();
    const closes = await within(Promise.all(closed), "bob's connections to close");
    const lastClose = Math.max(...closes.map((close) => close.at));
    // Negative when the Close came before the call's Completion.
    const lastCloseMs = lastClose - returned;
    const lastCloseFromCallMs = lastClose - called;
    const refused = [];
    for (const base of bases) {
        refused.push(await outcome(() => build(base, "/hubs/chat", oldToken).start()));
    }
    const fresh = build(bases[bases.length - 1], "/hubs/chat", await token("bob"));
    const newSignIn = await outcome(() => fresh.start().then(() => fresh.invoke("WhoAmI")));
    await Promise.all([alice.stop(), fresh.stop()]);
    return {
        revoked,
        closes: closes.map((close) => close.error),
        lastCloseMs,
        lastCloseFromCallMs,
        refused,
        newSignIn,
        oldToken,
    };
}

async function failover() {
    const client = new signalR.HubConnectionBuilder()
        .withUrl(`${bases[0]}/hubs/echo`, { transport: signalR.HttpTransportType[transport] })
        .withAutomaticReconnect([0, 200, 500, 1000, 1000, 1000, 1000, 1000])
        .configureLogging(signalR.LogLevel.Warning)
        .build();
    const received = [];
    let got;
    const gotBack = new Promise((resolve) => (got = resolve));
    client.on("Receive", (label) => {
        received.push(label);
        if (label === "back") got();
    });
    let reconnected;
    const back = new Promise((resolve) => (reconnected = resolve));
    const events = [];
    client.onreconnecting((error) => events.push(`reconnecting: ${error ? "error" : "no error"}`));
    client.onreconnected(() => {
        events.push("reconnected");
        reconnected();
    });
    await client.start();
    const before = (await client.invoke("WhoAmI")).connectionId;
    await client.invoke("JoinGroup", "failover");
    process.stdout.write("READY\n");
    await within(back, "the client to reconnect");
    const after = (await client.invoke("WhoAmI")).connectionId;
    await client.invoke("JoinGroup", "failover"); // membership died with the node
    const sender = build(bases[1], "/hubs/echo", null);
    await sender.start();
    await sender.invoke("SendToGroup", "failover", "back");
    await within(gotBack, "the group send after the reconnect");
    await Promise.all([client.stop(), sender.stop()]);
    return { events, newConnection: before !== after, received };
}

const scenarios = { targets, ban, revoke, failover };
try {
    const results = await scenarios[scenario]();
    process.stdout.write(JSON.stringify({ ok: true, results }) + "\n");
    process.exit(0);
} catch (error) {
    process.stdout.write(JSON.stringify({ ok: false, error: String(error?.stack ?? error) }) + "\n");
    process.exit(1);
}
