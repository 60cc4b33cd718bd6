// The official @microsoft/signalr client sending invocations with a W3C traceparent.
//
//   node tests/observability/js/traced.mjs URL TRACEPARENT
//
// The 10.x client has no API for invocation headers, but the protocol is pluggable
// (withHubProtocol): HeaderProtocol is the client's own JsonHubProtocol that adds
// `headers` to the Invocation messages it writes while `headers` is set. The script
// opens one connection per transport, asks the hub for the server's
// active-connection counts, calls Echo and the policy-guarded Secret with the
// traceparent, closes everything, and prints one JSON line of observations.

import signalR from "@microsoft/signalr";

const { HubConnectionBuilder, HttpTransportType, JsonHubProtocol, LogLevel, MessageType } = signalR;
const [url, traceparent] = process.argv.slice(2);

class HeaderProtocol extends JsonHubProtocol {
    constructor() {
        super();
        this.headers = null;
    }

    writeMessage(message) {
        if (this.headers !== null && message.type === MessageType.Invocation) {
            message = { ...message, headers: this.headers };
        }
        return super.writeMessage(message);
    }
}

async function open(transport) {
    const protocol = new HeaderProtocol();
    const connection = new HubConnectionBuilder()
        .withUrl(url, { transport: HttpTransportType[transport] })
        .withHubProtocol(protocol)
        .configureLogging(LogLevel.Warning)
        .build();
    await connection.start();
    return { connection, protocol };
}

try {
    const ws = await open("WebSockets");
    const sse = await open("ServerSentEvents");
    const lp = await open("LongPolling");
    // A completed call on each proves the server has counted it open (the handshake
    // reply goes out before the server registers the connection).
    await Promise.all([sse.connection.invoke("Ready"), lp.connection.invoke("Ready")]);
    const active = await ws.connection.invoke("Active");
    ws.protocol.headers = { traceparent };
    const echo = await ws.connection.invoke("Echo", "hi");
    let denied = null;
    try {
        await ws.connection.invoke("Secret");
    } catch (error) {
        denied = error.message;
    }
    ws.protocol.headers = null;
    await Promise.all([ws.connection.stop(), sse.connection.stop(), lp.connection.stop()]);
    console.log(JSON.stringify({ ok: true, active, echo, denied }));
} catch (error) {
    console.log(JSON.stringify({ ok: false, error: String(error) }));
    process.exit(1);
}
