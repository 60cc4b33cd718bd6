// The official client's own encoding of the stateful-reconnect messages.
//
//   node tests/protocol/js/stateful_vectors.mjs < request.json
//
// request: {"ids": [N, ...], "json": "<hex>", "messagepack": "<hex>"}
// Writes, for each id, Ack{id} and Sequence{id} with the client's JsonHubProtocol and
// MessagePackHubProtocol (hex), and parses the given hex (records the server wrote) with
// each protocol, printing what the client read:
//   {"write": {"json": [[ackHex, seqHex], ...], "messagepack": [...]},
//    "read": {"json": [{type, sequenceId}, ...], "messagepack": [...]}}

import signalR from "@microsoft/signalr";
import msgpack from "@microsoft/signalr-protocol-msgpack";

const { JsonHubProtocol, MessageType, NullLogger } = signalR;
const { MessagePackHubProtocol } = msgpack;

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

const protocols = { json: new JsonHubProtocol(), messagepack: new MessagePackHubProtocol() };

const hex = (written) =>
  typeof written === "string"
    ? Buffer.from(written, "utf8").toString("hex")
    : Buffer.from(new Uint8Array(written)).toString("hex");

const write = {};
const read = {};
for (const [name, protocol] of Object.entries(protocols)) {
  write[name] = request.ids.map((sequenceId) => [
    hex(protocol.writeMessage({ type: MessageType.Ack, sequenceId })),
    hex(protocol.writeMessage({ type: MessageType.Sequence, sequenceId })),
  ]);
  const bytes = Buffer.from(request[name], "hex");
  const input = name === "json" ? bytes.toString("utf8") : bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  read[name] = protocol
    .parseMessages(input, NullLogger.instance)
    .map((message) => ({ type: message.type, sequenceId: message.sequenceId }));
}
process.stdout.write(JSON.stringify({ write, read, versions: { json: protocols.json.version, messagepack: protocols.messagepack.version } }) + "\n");
