// Parley's bench peer: a Node socket.io 4.8 relay, as a competent team would deploy one, with
// the protocol echo of the bench's `echo` scenario. The contract is in bench/README.md
// ("Peers") and /work/notes/bench-contract.md; engineer D's seeds stack reuses this relay.
//
// Environment:
//   PORT        listen on 127.0.0.1:PORT (required)
//   JWT_SECRET  HS256 secret of the tokens (required: no token, no connection)
//   REDIS_URL   when set, @socket.io/redis-adapter links the relays sharing this Redis
//
// Namespace "/" on /socket.io/ (socket.io's defaults: polling and websocket transports,
// perMessageDeflate off; ws uses bufferutil for masking):
//   CONNECT {"token"}  HS256 signature and exp verified; the socket joins room user:<sub>;
//                      otherwise CONNECT_ERROR {"message":"unauthorized"}
//   send_message       {conversationId?, recipientId, content, clientMsgId} with an ack:
//                      receive_message to room user:<recipientId> and the sender's other
//                      sockets, then ack {success: true, clientMsgId}; nothing is stored
//   message            echoed back as message-back with the same arguments

import { createServer } from "node:http";
import { Server } from "socket.io";
import jwt from "jsonwebtoken";

/** Longest message content accepted, in characters (Parley's limit). */
const MAX_CONTENT = 10_000;

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`relay.mjs: ${name} must be set (see bench/README.md, "Peers")`);
    process.exit(2);
  }
  return value;
}

const port = Number.parseInt(required("PORT"), 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`relay.mjs: PORT must be a TCP port, got ${JSON.stringify(process.env.PORT)}`);
  process.exit(2);
}
const secret = required("JWT_SECRET");
const redisUrl = process.env.REDIS_URL;

const httpServer = createServer();
const io = new Server(httpServer, { serveClient: false });

let redisClients = [];
if (redisUrl) {
  const [{ createClient }, { createAdapter }] = await Promise.all([
    import("redis"),
    import("@socket.io/redis-adapter"),
  ]);
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) {
    client.on("error", (error) => console.error("relay.mjs: redis:", error.message));
  }
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  redisClients = [pub, sub];
}

io.use((socket, next) => {
  const token = socket.handshake.auth?.token;
  if (typeof token !== "string") {
    return next(new Error("unauthorized"));
  }
  try {
    const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
    if (typeof claims.sub !== "string" || claims.sub === "") {
      return next(new Error("unauthorized"));
    }
    socket.data.userId = claims.sub;
    next();
  } catch {
    next(new Error("unauthorized"));
  }
});

function invalid(message) {
  return { success: false, error: { code: "invalid_payload", message, retryable: false } };
}

/** The error of a send_message payload, or null when it is valid. */
function payloadError(payload) {
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    return "the payload must be an object";
  }
  for (const field of ["recipientId", "content", "clientMsgId"]) {
    if (typeof payload[field] !== "string") {
      return `${field} must be a string`;
    }
  }
  if (payload.conversationId !== undefined && typeof payload.conversationId !== "string") {
    return "conversationId must be a string";
  }
  if (payload.recipientId === "" || payload.clientMsgId === "") {
    return "recipientId and clientMsgId must not be empty";
  }
  if (payload.content.length > MAX_CONTENT) {
    return `content must be at most ${MAX_CONTENT} characters`;
  }
  return null;
}

io.on("connection", (socket) => {
  const userId = socket.data.userId;
  socket.join(`user:${userId}`);

  socket.on("send_message", (payload, ack) => {
    const reply = typeof ack === "function" ? ack : () => {};
    const error = payloadError(payload);
    if (error) {
      return reply(invalid(error));
    }
    const message = {
      conversationId: payload.conversationId,
      senderId: userId,
      recipientId: payload.recipientId,
      content: payload.content,
      clientMsgId: payload.clientMsgId,
      createdAt: new Date().toISOString(),
    };
    // One broadcast to both rooms: each socket once, never this one.
    socket.to([`user:${payload.recipientId}`, `user:${userId}`]).emit("receive_message", message);
    reply({ success: true, clientMsgId: payload.clientMsgId });
  });

  socket.on("message", (...args) => {
    socket.emit("message-back", ...args);
  });
});

function stop() {
  io.close(() => {
    Promise.allSettled(redisClients.map((client) => client.quit())).then(() => process.exit(0));
  });
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

httpServer.on("error", (error) => {
  console.error(`relay.mjs: cannot listen on 127.0.0.1:${port}: ${error.message}`);
  process.exit(1);
});
httpServer.listen(port, "127.0.0.1");
