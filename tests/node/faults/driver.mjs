// The traffic of Parley's fault suite (`cargo nextest run -p faults`): socket.io-client users on
// two relays sending direct messages at a steady rate, retrying as a real client does, while the
// Rust test breaks a relay, the API, PostgreSQL or Redis underneath them. Each user also syncs
// from the cursor it keeps every second, as a client catching up does.
//
// Scenario (environment PARLEY_FAULT_SCENARIO, JSON): {api, relays: [url, url], users, intervalMs}.
// User i connects to relays[i % 2]; user i and user i+1 (mod users) share a direct conversation,
// so every conversation spans both relays.
//
// Talks JSON lines: events on stdout, commands on stdin.
//   out {"event":"ready","users":[{index,id,relay}],"conversations":[{id,members:[i,j]}]}
//   out {"event":"progress","acked","pending","connected"}            every 250 ms
//   in  {"cmd":"probe","user":i}       a new message from i → {"event":"probe_acked","user","ms"}
//   in  {"cmd":"live","from":i,"to":j} messages from i until j receives one live
//                                      → {"event":"live_received","from","to","probes","ms"}
//   in  {"cmd":"logout","user":i,"awaitRevoked":true}
//                                      i stops sending, logs out, awaits its session_revoked
//                                      → {"event":"logged_out","user","revoked"}
//   in  {"cmd":"revoked","user":i}     awaits i's session_revoked (after a logout that did not)
//                                      → {"event":"revoked","user","revoked","ms"} (ms since the logout)
//   in  {"cmd":"offline","user":i,"of":j} awaits i's `presence` event telling j offline (i saw j online)
//                                      → {"event":"offline_seen","user","of","lastSeen"} (lastSeen null: none came)
//   in  {"cmd":"failover"}             from now on a user whose connection is lost moves to the other relay
//   in  {"cmd":"connect","user":i}     i's token on each relay → {"event":"connect_results","results":[{relay,code}]}
//   in  {"cmd":"rest","user":i,"path":p} GET p on the API with i's token
//                                      → {"event":"rest_answered","user","path","status","code","ms"}
//   in  {"cmd":"stop"}                 stop sending, await every ack, sync everyone from its cursor and
//                                      from the start → {"event":"report","users":[…]}; exit
//   out {"event":"error","message"}    a command failed
// Stdin closing (the test is gone) ends the process.
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const S = JSON.parse(process.env.PARLEY_FAULT_SCENARIO ?? "null");
if (!S) throw new Error("PARLEY_FAULT_SCENARIO is not set (run through `cargo nextest run -p faults`)");

/** How long one send waits for its ack before it is sent again (same clientMsgId). */
const ACK_TIMEOUT_MS = 30_000;
/** Sends of one user waiting for their ack at most; the generator waits beyond. */
const MAX_PENDING = 16;
/** How long `stop` waits for the last acks and each sync may take, in all. */
const DRAIN_MS = 60_000;
/** How often each user syncs from its cursor (one at a time). */
const CATCH_UP_MS = 1000;
/** Whether users whose connection is lost move to the other relay (`failover` command). */
let failover = false;
/** Connect refusals a client retries by itself (the others need a new login). */
const RETRYABLE_CONNECT = new Set(["service_unavailable", "too_many_connections"]);

/** Write one event line; `then` runs once it is handed to the OS (a large one takes several writes). */
const emit = (event, then) => process.stdout.write(JSON.stringify(event) + "\n", then);
const now = () => performance.now();
const backoff = (attempt) => Math.min(2000, 100 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random() / 2);
const count = (counts, key) => (counts[key] = (counts[key] ?? 0) + 1);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function rest(method, path, token, body) {
  const response = await fetch(`${S.api}${path}`, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
  return text ? JSON.parse(text) : null;
}

/** One user with one device: its socket, what it sent and what it saw. */
class User {
  constructor(index, account) {
    this.index = index;
    this.name = account.user.username;
    this.id = account.user.id;
    this.token = account.token;
    this.relay = index % 2;
    this.conversations = [];
    this.sending = true;
    this.loggedOut = false;
    this.counter = 0;
    /** clientMsgId → {payload, attempts, inflight, retryAt, firstSentAt, onAck?} */
    this.pending = new Map();
    /** [id, seq, conversationId, clientMsgId] of every successful ack, in ack order. */
    this.acked = [];
    /** [clientMsgId, id] of every message_saved and stored receive_message seen. */
    this.saved = [];
    /** clientMsgIds of the relayed copies received live. */
    this.live = new Set();
    this.liveWaiters = [];
    this.failures = [];
    this.stats = {
      ackErrors: {},
      messageFailed: {},
      connectErrors: {},
      disconnects: {},
      syncErrors: {},
      slowestAckMs: 0,
      longestOfflineMs: 0,
    };
    this.revoked = null;
    /** Each contact's presence as this user's devices were told: user id → the event. */
    this.presence = new Map();
    /** The cursor of the periodic catch-up, and every message it returned, in order. */
    this.cursor = undefined;
    this.incremental = [];
    this.catchingUp = false;
    this.offlineSince = null;
    this.socket = this.connect();
  }

  connect() {
    const socket = io(S.relays[this.relay], {
      auth: { token: this.token },
      forceNew: true,
      // Half the users start on long-polling and upgrade, half go straight to WebSocket.
      ...(this.index % 4 < 2 ? {} : { transports: ["websocket"] }),
    });
    socket.on("connect", () => {
      if (this.offlineSince !== null) {
        this.stats.longestOfflineMs = Math.max(this.stats.longestOfflineMs, now() - this.offlineSince);
        this.offlineSince = null;
      }
      this.pump();
    });
    socket.on("disconnect", (reason) => {
      count(this.stats.disconnects, reason);
      this.offlineSince ??= now();
      // The connection was lost (not closed by either side on purpose).
      if (failover && reason.startsWith("transport") && socket === this.socket) this.moveToOtherRelay();
    });
    socket.on("connect_error", (err) => {
      const code = err.data?.code ?? err.message;
      count(this.stats.connectErrors, code);
      // A refusal by the relay is not retried by socket.io-client itself; a real client does.
      if (!socket.active && RETRYABLE_CONNECT.has(code) && !this.loggedOut) {
        setTimeout(() => socket.connect(), backoff(3));
      }
    });
    socket.on("message_saved", (m) => this.saved.push([m.clientMsgId, m.id]));
    socket.on("receive_message", (m) => {
      if (m.id !== undefined) this.saved.push([m.clientMsgId, m.id]);
      this.live.add(m.clientMsgId);
      this.liveWaiters = this.liveWaiters.filter((waiter) => !waiter(m));
    });
    socket.on("message_failed", (m) => count(this.stats.messageFailed, m.error?.code ?? "unknown"));
    socket.on("session_revoked", (body) => (this.revoked = body?.reason ?? "unknown"));
    socket.on("online_users", ({ users }) => users.forEach((id) => this.presence.set(String(id), { online: true })));
    socket.on("presence", (event) => this.presence.set(String(event.userId), event));
    return socket;
  }

  /** Leave the relay that went away for the other one, keeping what is pending to resend there. */
  moveToOtherRelay() {
    this.socket.io.reconnection(false);
    this.socket.disconnect();
    this.relay = 1 - this.relay;
    this.socket = this.connect();
  }

  /** Queue a new message to `conversationId`; `onAck` is called with the ack once stored. */
  queue(conversationId, label, onAck) {
    const clientMsgId = `${this.name}-${label}${++this.counter}`;
    const payload = { clientMsgId, conversationId, kind: "text", content: `${label}${this.counter} from ${this.name}` };
    this.pending.set(clientMsgId, { payload, attempts: 0, inflight: false, retryAt: 0, firstSentAt: now(), onAck });
    this.pump();
    return clientMsgId;
  }

  /** The next message of the steady traffic, alternating between the user's conversations. */
  generate() {
    if (!this.sending || this.pending.size >= MAX_PENDING) return;
    this.queue(this.conversations[this.counter % this.conversations.length], "m");
  }

  /** Send every pending message that is due and not in flight, if connected. */
  pump() {
    if (!this.socket?.connected) return;
    for (const message of this.pending.values()) {
      if (!message.inflight && message.retryAt <= now()) this.send(message);
    }
  }

  send(message) {
    message.inflight = true;
    const attempt = ++message.attempts;
    this.socket.timeout(ACK_TIMEOUT_MS).emit("send_message", message.payload, (err, ack) => {
      if (attempt !== message.attempts) {
        // The answer to an attempt already given up on: only a success still counts.
        if (!err && ack.success) this.onStored(message, ack);
        return;
      }
      message.inflight = false;
      if (err) {
        // Timed out, or the socket was disconnected: send again (after reconnecting).
        count(this.stats.ackErrors, err.message.includes("disconnected") ? "disconnected" : "ack_timeout");
        message.retryAt = now() + backoff(message.attempts);
      } else if (ack.success) {
        this.onStored(message, ack);
      } else if (ack.error?.retryable) {
        count(this.stats.ackErrors, ack.error.code);
        message.retryAt = now() + backoff(message.attempts);
      } else {
        count(this.stats.ackErrors, ack.error?.code ?? "unknown");
        this.failures.push([message.payload.clientMsgId, ack.error?.code ?? JSON.stringify(ack)]);
        this.pending.delete(message.payload.clientMsgId);
      }
    });
  }

  onStored(message, ack) {
    const { clientMsgId } = message.payload;
    this.acked.push([ack.id, ack.seq, ack.conversationId, ack.clientMsgId ?? clientMsgId]);
    this.stats.slowestAckMs = Math.max(this.stats.slowestAckMs, now() - message.firstSentAt);
    // A late ack of an earlier attempt can follow the first: only the first settles the message.
    if (this.pending.delete(clientMsgId)) message.onAck?.(ack);
  }

  /** Resolves when this user receives, live, a relayed copy matching `test`. */
  receivesLive(test) {
    return new Promise((resolve) => this.liveWaiters.push((m) => test(m) && (resolve(m), true)));
  }

  /**
   * `sync` from `since` (the start when undefined) page after page until `hasMore` is false:
   * the messages as [id, seq, conversationId, clientMsgId, senderId] and the cursor to keep.
   */
  async syncFrom(since, deadline) {
    const messages = [];
    for (;;) {
      if (now() > deadline) throw new Error(`${this.name}: sync did not finish`);
      if (!this.socket.connected) {
        await sleep(50);
        continue;
      }
      let answer;
      try {
        answer = await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck("sync", since ? { since } : {});
      } catch {
        continue;
      }
      if (answer.success === false) {
        count(this.stats.syncErrors, answer.error?.code ?? "unknown");
        await sleep(backoff(3));
        continue;
      }
      for (const m of answer.messages) messages.push([m.id, m.seq, m.conversationId, m.clientMsgId, m.senderId]);
      since = answer.nextCursor;
      if (!answer.hasMore) return { messages, cursor: since };
    }
  }

  /**
   * What a client does now and then, and on reconnecting: sync from the cursor it kept. Gives up
   * (keeping the old cursor, to start from it next time) past `deadline`.
   */
  async catchUp(deadline) {
    if (this.catchingUp || this.loggedOut) return;
    this.catchingUp = true;
    try {
      const { messages, cursor } = await this.syncFrom(this.cursor, deadline);
      this.incremental.push(...messages);
      this.cursor = cursor;
    } catch {
      count(this.stats.syncErrors, "gave_up");
    } finally {
      this.catchingUp = false;
    }
  }

  /** The last catch-up, after any one running, which must reach the end by `deadline`. */
  async finalCatchUp(deadline) {
    while (this.catchingUp) await sleep(20);
    const { messages } = await this.syncFrom(this.cursor, deadline);
    this.incremental.push(...messages);
    return this.incremental;
  }
}

async function setUp() {
  const accounts = [];
  for (let i = 0; i < S.users; i++) {
    const account = { username: `user${i}`, password: "correct-horse-battery" };
    accounts.push(await rest("POST", "/api/auth/register", null, account));
  }
  const users = accounts.map((account, i) => new User(i, account));
  const conversations = [];
  for (let i = 0; i < users.length; i++) {
    const [a, b] = [users[i], users[(i + 1) % users.length]];
    const conversation = await rest("POST", "/api/conversations", a.token, { memberIds: [b.id] });
    a.conversations.push(conversation.id);
    b.conversations.push(conversation.id);
    conversations.push({ id: conversation.id, members: [a.index, b.index] });
  }
  await Promise.all(users.map((u) => (u.socket.connected ? null : new Promise((r) => u.socket.once("connect", r)))));
  return { users, conversations };
}

const { users, conversations } = await setUp();
emit({
  event: "ready",
  users: users.map((u) => ({ index: u.index, id: u.id, relay: u.relay })),
  conversations,
});
const generator = setInterval(() => users.forEach((u) => u.generate()), S.intervalMs);
const pumper = setInterval(() => users.forEach((u) => u.pump()), 20);
const catchUps = setInterval(() => users.forEach((u) => u.catchUp(now() + DRAIN_MS)), CATCH_UP_MS);
const progress = setInterval(() => {
  emit({
    event: "progress",
    acked: users.reduce((n, u) => n + u.acked.length, 0),
    pending: users.reduce((n, u) => n + u.pending.size, 0),
    connected: users.filter((u) => u.socket.connected).length,
  });
}, 250);

/** The probe timers of `live` commands still waiting (cleared by `stop`). */
const liveTimers = new Set();
const conversationOf = (i, j) => conversations.find((c) => c.members.includes(i) && c.members.includes(j)).id;

const commands = {
  failover() {
    failover = true;
  },

  probe({ user }) {
    const started = now();
    const u = users[user];
    u.queue(u.conversations[0], "probe", () => emit({ event: "probe_acked", user, ms: now() - started }));
  },

  live({ from, to }) {
    const started = now();
    const [sender, recipient] = [users[from], users[to]];
    const conversationId = conversationOf(from, to);
    const probes = new Set();
    const prefix = `${sender.name}-live`;
    recipient.receivesLive((m) => m.clientMsgId.startsWith(prefix) && probes.has(m.clientMsgId)).then(() => {
      clearInterval(timer);
      liveTimers.delete(timer);
      emit({ event: "live_received", from, to, probes: probes.size, ms: now() - started });
    });
    const timer = setInterval(() => probes.add(sender.queue(conversationId, "live")), 250);
    liveTimers.add(timer);
    probes.add(sender.queue(conversationId, "live"));
  },

  async logout({ user, awaitRevoked = true }) {
    const u = users[user];
    u.sending = false;
    while (u.pending.size > 0) await sleep(20);
    await rest("POST", "/api/auth/logout", u.token);
    u.loggedOut = true;
    u.loggedOutAt = now();
    const until = now() + (awaitRevoked ? DRAIN_MS : 0);
    while (u.revoked === null && now() < until) await sleep(20);
    emit({ event: "logged_out", user, revoked: u.revoked });
  },

  async revoked({ user }) {
    const u = users[user];
    const until = now() + DRAIN_MS;
    while (u.revoked === null && now() < until) await sleep(20);
    emit({ event: "revoked", user, revoked: u.revoked, ms: now() - u.loggedOutAt });
  },

  async offline({ user, of }) {
    const [u, contact] = [users[user], String(users[of].id)];
    const until = now() + DRAIN_MS;
    while (u.presence.get(contact)?.online !== false && now() < until) await sleep(20);
    const told = u.presence.get(contact);
    emit({ event: "offline_seen", user, of, lastSeen: told?.online === false ? told.lastSeen : null });
  },

  async connect({ user }) {
    const results = await Promise.all(
      S.relays.map(
        (url, relay) =>
          new Promise((resolve) => {
            const socket = io(url, { auth: { token: users[user].token }, forceNew: true, reconnection: false });
            const done = (code) => {
              socket.disconnect();
              resolve({ relay, code });
            };
            socket.once("connect", () => done("connected"));
            socket.once("connect_error", (err) => done(err.data?.code ?? err.message));
          }),
      ),
    );
    emit({ event: "connect_results", user, results });
  },

  async rest({ user, path }) {
    const started = now();
    const response = await fetch(`${S.api}${path}`, { headers: { authorization: `Bearer ${users[user].token}` } });
    const body = await response.json().catch(() => null);
    emit({ event: "rest_answered", user, path, status: response.status, code: body?.error?.code ?? null, ms: now() - started });
  },

  async stop() {
    clearInterval(generator);
    liveTimers.forEach((timer) => clearInterval(timer));
    users.forEach((u) => (u.sending = false));
    const deadline = now() + DRAIN_MS;
    while (users.some((u) => u.pending.size > 0) && now() < deadline) await sleep(20);
    clearInterval(catchUps);
    const active = users.filter((u) => !u.loggedOut);
    const incremental = new Map(await Promise.all(active.map(async (u) => [u, await u.finalCatchUp(deadline)])));
    const synced = new Map(
      await Promise.all(active.map(async (u) => [u, (await u.syncFrom(undefined, deadline)).messages])),
    );
    clearInterval(pumper);
    clearInterval(progress);
    const report = {
      event: "report",
      users: users.map((u) => ({
        index: u.index,
        id: u.id,
        loggedOut: u.loggedOut,
        acked: u.acked,
        saved: u.saved,
        synced: synced.get(u) ?? null,
        incremental: incremental.get(u) ?? null,
        unacked: [...u.pending.keys()],
        failures: u.failures,
        stats: u.stats,
      })),
    };
    // Exit only once the whole report is written: it is larger than a pipe holds.
    emit(report, () => {
      users.forEach((u) => u.socket.disconnect());
      process.exit(0);
    });
  },
};

createInterface({ input: process.stdin })
  .on("line", (line) => {
    const command = JSON.parse(line);
    Promise.resolve(commands[command.cmd](command)).catch((e) => {
      emit({ event: "error", message: String(e?.stack ?? e) });
    });
  })
  .on("close", () => process.exit(0));
