// The official client's stateful-reconnect logic, driven one step at a time.
//
//   node tests/protocol/js/message_buffer_peer.mjs
//
// Runs the installed @microsoft/signalr MessageBuffer (the class HubConnection uses
// with withStatefulReconnect()) over a fake IConnection, with a fake clock for its
// 1 s Ack timer. Reads one JSON command per line on stdin, answers one JSON line:
//
//   {"op": "reset", "protocol": "json"|"messagepack", "bufferSize": N}
//   {"op": "send", "payload": N}        the app invokes Send(N) (not awaited)
//   {"op": "receive", "hex": "..."}     bytes from the server, processed as
//                                       HubConnection._processIncomingData does
//   {"op": "advance", "ms": N}          run the Ack timer if due
//   {"op": "cut"}                       the socket dies: later writes are lost
//   {"op": "disconnected"}              the client notices (features.disconnected)
//   {"op": "resend"}                    the new socket is up (features.resend)
//
// Every answer: {"out": [hex frames written to the live socket since the last answer],
// "received": [payloads of StreamItems processed], "blocked": sends still held by
// backpressure, "buffered": records kept for resending, "stopped": the error text if
// the buffer stopped the connection, else null, "sequence": the last Sequence id read,
// "next" / "latest": the buffer's next expected and highest received ids}.

import { createRequire } from "node:module";
import readline from "node:readline";

const require = createRequire(import.meta.url);
const signalR = require("@microsoft/signalr");
const { MessagePackHubProtocol } = require("@microsoft/signalr-protocol-msgpack");
const { MessageBuffer } = require("@microsoft/signalr/dist/cjs/MessageBuffer.js");
const { JsonHubProtocol, MessageType, NullLogger } = signalR;

// A fake clock: MessageBuffer calls the global setTimeout at run time.
let now = 0;
let timers = [];
let nextHandle = 1;
globalThis.setTimeout = (callback, ms) => {
  const handle = nextHandle++;
  timers.push({ handle, due: now + ms, callback });
  return handle;
};
globalThis.clearTimeout = (handle) => {
  timers = timers.filter((timer) => timer.handle !== handle);
};

let state;

function reset(protocolName, bufferSize) {
  const protocol = protocolName === "json" ? new JsonHubProtocol() : new MessagePackHubProtocol();
  const peer = { protocol, out: [], received: [], blocked: 0, stopped: null, alive: true, sequence: null };
  peer.connection = {
    features: {},
    send: async (data) => {
      if (peer.alive) peer.out.push(hex(data));
    },
    stop: async (error) => {
      peer.stopped = String(error?.message ?? error);
    },
  };
  peer.buffer = new MessageBuffer(protocol, peer.connection, bufferSize);
  now = 0;
  timers = [];
  return peer;
}

function hex(data) {
  return typeof data === "string"
    ? Buffer.from(data, "utf8").toString("hex")
    : Buffer.from(new Uint8Array(data)).toString("hex");
}

function parse(hexText) {
  const bytes = Buffer.from(hexText, "hex");
  const input =
    state.protocol instanceof JsonHubProtocol
      ? bytes.toString("utf8")
      : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  return state.protocol.parseMessages(input, NullLogger.instance);
}

function receive(hexText) {
  for (const message of parse(hexText)) {
    // The example ends where the buffer stops the connection. The real
    // HubConnection._processIncomingData goes on with the rest of the batch while
    // the stop is under way, numbered from the Sequence it refused (the same
    // upstream flaw); processing it here would report "next" / "latest" past the
    // stop and misnumbered records as received.
    if (state.stopped !== null) break;
    if (!state.buffer._shouldProcessMessage(message)) continue;
    if (message.type === MessageType.StreamItem) state.received.push(message.item[0]);
    else if (message.type === MessageType.Ack) state.buffer._ack(message);
    else if (message.type === MessageType.Sequence) {
      state.sequence = message.sequenceId;
      state.buffer._resetSequence(message);
    }
  }
}

async function advance(ms) {
  now += ms;
  for (;;) {
    const due = timers.filter((timer) => timer.due <= now).sort((a, b) => a.due - b.due)[0];
    if (!due) break;
    timers = timers.filter((timer) => timer !== due);
    await due.callback();
  }
}

function send(payload) {
  state.blocked++;
  const message = {
    type: MessageType.Invocation,
    target: "Send",
    arguments: [payload, "x".repeat(payload % 7)],
    streamIds: [],
  };
  state.buffer._send(message).then(
    () => state.blocked--,
    () => state.blocked--,
  );
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

for await (const line of readline.createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  switch (command.op) {
    case "reset":
      state = reset(command.protocol, command.bufferSize);
      break;
    case "send":
      send(command.payload);
      break;
    case "receive":
      receive(command.hex);
      break;
    case "advance":
      await advance(command.ms);
      break;
    case "cut":
      state.alive = false;
      break;
    case "disconnected":
      state.buffer._disconnected();
      break;
    case "resend":
      state.alive = true;
      await state.buffer._resend();
      break;
    default:
      throw new Error(`unknown op ${command.op}`);
  }
  await settle();
  const { out, received, blocked, stopped } = state;
  const { sequence, buffer } = state;
  const buffered = buffer._messages.length;
  const next = buffer._nextReceivingSequenceId;
  const latest = buffer._latestReceivedSequenceId;
  const answer = { out, received, blocked, buffered, stopped, sequence, next, latest };
  process.stdout.write(JSON.stringify(answer) + "\n");
  state.out = [];
}
