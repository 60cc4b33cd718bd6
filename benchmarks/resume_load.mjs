// bench_resume.py's load: RECEIVERS connections (the official client, WebSockets,
// MessagePack) receive a broadcast stream of MESSAGES records sent by one more
// connection; with STATEFUL=1 the receivers use withStatefulReconnect() and go through
// a TCP proxy in this script that cuts a tenth of them every CUT_MS (never a socket
// younger than a second: the client makes one resume attempt, and a cut during it
// ends the connection by design).
//
//   node benchmarks/resume_load.mjs URL RECEIVERS MESSAGES STATEFUL CUT_MS TOKEN
//
// Prints one JSON line: deliveries, missing, duplicated, reordered, cuts, reconnecting,
// closed, seconds.

import net from "node:net";
import signalR from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";

const { HubConnectionBuilder, HttpTransportType, LogLevel } = signalR;
const [url, receiversArg, messagesArg, statefulArg, cutArg, token] = process.argv.slice(2);
const RECEIVERS = Number(receiversArg);
const MESSAGES = Number(messagesArg);
const STATEFUL = statefulArg === "1";
const CUT_MS = Number(cutArg);
const target = new URL(url);

const sockets = new Set();
const proxy = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    const pair = [client, upstream];
    pair.opened = Date.now();
    for (const socket of pair) {
        socket.on("error", () => {});
        socket.on("close", () => sockets.delete(pair));
    }
    sockets.add(pair);
    client.pipe(upstream);
    upstream.pipe(client);
});
await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
const proxyUrl = `http://127.0.0.1:${proxy.address().port}${target.pathname}`;

function build(hubUrl, stateful) {
    const builder = new HubConnectionBuilder()
        .withUrl(hubUrl, {
            transport: HttpTransportType.WebSockets,
            accessTokenFactory: () => token,
        })
        .withHubProtocol(new msgpack.MessagePackHubProtocol())
        .configureLogging(LogLevel.None);
    return (stateful ? builder.withStatefulReconnect() : builder).build();
}

const events = { reconnecting: 0, closed: 0 };
const seen = [];
const receivers = [];
let deliveries = 0;
let finished = 0;
let allDone;
const done = new Promise((resolve) => (allDone = resolve));
for (let i = 0; i < RECEIVERS; i++) {
    const connection = build(STATEFUL ? proxyUrl : url, STATEFUL);
    const mine = [];
    seen.push(mine);
    connection.on("Receive", (n) => {
        mine.push(n);
        deliveries++;
        if (n === MESSAGES - 1 && ++finished === RECEIVERS) allDone();
    });
    connection.onreconnecting(() => events.reconnecting++);
    connection.onclose(() => events.closed++);
    receivers.push(connection);
}
await Promise.all(receivers.map((c) => c.start()));

let cuts = 0;
const cutter = STATEFUL
    ? setInterval(() => {
          // Only sockets older than a second: a cut during the client's one resume
          // attempt ends the connection by the client's design (not a server fault).
          const now = Date.now();
          const pairs = [...sockets].filter((pair) => now - pair.opened > 1000);
          for (let i = 0; i < pairs.length; i += 10) {
              const j = (i + cuts) % pairs.length;
              for (const socket of pairs[j]) socket.destroy();
              sockets.delete(pairs[j]);
          }
          cuts++;
      }, CUT_MS)
    : null;

const sender = build(url, false);
await sender.start();
const start = process.hrtime.bigint();
for (let n = 0; n < MESSAGES; n++) {
    await sender.send("Broadcast", n);
    if (n % 50 === 49) await new Promise((r) => setTimeout(r, 10));
}
const timeout = new Promise((resolve) => setTimeout(resolve, 60000));
await Promise.race([done, timeout]);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
if (cutter) clearInterval(cutter);

let missing = 0;
let duplicated = 0;
let reordered = 0;
for (const mine of seen) {
    const unique = new Set(mine);
    duplicated += mine.length - unique.size;
    missing += MESSAGES - unique.size;
    for (let k = 1; k < mine.length; k++) if (mine[k] <= mine[k - 1]) reordered++;
}
const noticed = { ...events };
await sender.stop();
await Promise.all(receivers.map((c) => c.stop()));
proxy.close();
process.stdout.write(
    JSON.stringify({ deliveries, missing, duplicated, reordered, cuts, ...noticed, seconds }) + "\n",
);
process.exit(0);
