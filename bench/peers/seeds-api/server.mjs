// The seeds' REST API, as the seed design documents have it beside the Node socket.io relay:
// the client emits `send_message` to the relay and, in parallel, POSTs the message here to be
// stored. One route, `POST /api/messages`, JWT-authenticated (HS256, `JWT_SECRET`).
//
// Environment: PORT (listen on 127.0.0.1), DATABASE_URL (its own database; created with its
// schema at start), JWT_SECRET, POOL_SIZE (default 10).

import http from 'node:http';
import jwt from 'jsonwebtoken';
import { HttpError, isId, parseMessage } from './validate.mjs';
import { Store } from './store.mjs';

const MAX_BODY_BYTES = 64 * 1024;

function settings(env) {
  const missing = ['PORT', 'DATABASE_URL', 'JWT_SECRET'].filter((key) => !env[key]);
  if (missing.length > 0) {
    throw new Error(`set ${missing.join(', ')} in the environment`);
  }
  const port = Number(env.PORT);
  const poolSize = Number(env.POOL_SIZE ?? 10);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`PORT must be a port number, not ${JSON.stringify(env.PORT)}`);
  }
  if (!Number.isInteger(poolSize) || poolSize < 1) {
    throw new Error(`POOL_SIZE must be a positive integer, not ${JSON.stringify(env.POOL_SIZE)}`);
  }
  if (env.JWT_SECRET.length < 32) {
    throw new Error('JWT_SECRET must be at least 32 characters');
  }
  return { port, poolSize, databaseUrl: env.DATABASE_URL, secret: env.JWT_SECRET };
}

// The user id of the request's bearer token (signature and expiry checked), or throws 401.
function authenticate(request, secret) {
  const header = request.headers.authorization ?? '';
  const token = header.startsWith('Bearer ') ? header.slice(7) : null;
  if (!token) throw new HttpError(401, 'unauthorized', 'a Bearer token is required');
  let claims;
  try {
    claims = jwt.verify(token, secret, { algorithms: ['HS256'] });
  } catch (error) {
    throw new HttpError(401, 'unauthorized', `invalid token: ${error.message}`);
  }
  if (!isId(claims.sub)) throw new HttpError(401, 'unauthorized', 'the token names no user');
  return claims.sub;
}

async function readJson(request) {
  if (!(request.headers['content-type'] ?? '').startsWith('application/json')) {
    throw new HttpError(415, 'unsupported_media_type', 'send application/json');
  }
  const chunks = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      throw new HttpError(413, 'payload_too_large', `the body is over ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'invalid_json', 'the body is not valid JSON');
  }
}

function send(response, status, body) {
  const text = JSON.stringify(body);
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

function wire(row, recipientId) {
  return {
    id: row.id,
    conversationId: row.conversation_id,
    senderId: row.sender_id,
    recipientId,
    seq: Number(row.seq),
    content: row.content,
    clientMsgId: row.client_msg_id,
    createdAt: row.created_at.toISOString(),
  };
}

async function postMessage(request, response, store, secret) {
  const senderId = authenticate(request, secret);
  const message = parseMessage(await readJson(request));
  const result = await store.storeMessage(senderId, message);
  switch (result.outcome) {
    case 'created':
      return send(response, 201, wire(result.row, message.recipientId));
    case 'stored_before':
      return send(response, 200, wire(result.row, message.recipientId));
    case 'conflict':
      throw new HttpError(409, 'conflict', 'this clientMsgId was used in another conversation');
    default:
      throw new HttpError(403, 'not_a_member', 'no such conversation of yours');
  }
}

function handler(store, secret) {
  return async (request, response) => {
    try {
      const path = request.url.split('?')[0];
      if (path !== '/api/messages') throw new HttpError(404, 'not_found', 'no such route');
      if (request.method !== 'POST') {
        throw new HttpError(405, 'method_not_allowed', 'POST /api/messages only');
      }
      await postMessage(request, response, store, secret);
    } catch (error) {
      if (error instanceof HttpError) {
        send(response, error.status, { error: { code: error.code, message: error.message } });
        return;
      }
      console.error(`seeds-api: ${request.method} ${request.url}: ${error.stack ?? error}`);
      if (!response.headersSent) {
        send(response, 500, { error: { code: 'internal', message: 'internal error' } });
      }
    }
  };
}

async function main() {
  const config = settings(process.env);
  const store = await Store.open(config.databaseUrl, config.poolSize);
  const server = http.createServer(handler(store, config.secret));
  server.keepAliveTimeout = 60_000;
  server.listen(config.port, '127.0.0.1', () => {
    console.error(`seeds-api: listening on 127.0.0.1:${server.address().port}`);
  });
  const stop = () => {
    server.close(() => store.close().finally(() => process.exit(0)));
    server.closeAllConnections();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error) => {
  console.error(`seeds-api: ${error.message}`);
  process.exit(1);
});
