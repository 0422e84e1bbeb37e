// token_revoked at connect, end to end with socket.io-client 4.x: a token logged out through
// REST is refused by the relay. Run by socket-server's `relay` test binary (PARLEY_RELAY_SCENARIO).
import { it } from "node:test";
import assert from "node:assert/strict";
import { io } from "socket.io-client";

// Waits for what must happen; only a real failure exhausts them, never a busy machine.
const PATIENCE_MS = 60_000;

const S = JSON.parse(process.env.PARLEY_RELAY_SCENARIO ?? "null");
if (!S) throw new Error("PARLEY_RELAY_SCENARIO is not set (run through `cargo test -p socket-server --test relay`)");

const post = async (path, body, token) => {
  const response = await fetch(`${S.api}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: response.status === 204 ? null : await response.json() };
};

for (const [label, transports] of [["default transports", undefined], ["WebSocket only", ["websocket"]]]) {
  it(`refuses a logged-out token at connect with CONNECT_ERROR token_revoked (${label})`, async () => {
    // Arrange: a user of this test alone, whose token is logged out through REST
    const username = `revoked_${Math.random().toString(36).slice(2, 10)}`;
    const registered = await post("/api/auth/register", { username, password: "correct-horse-battery-staple" });
    assert.equal(registered.status, 201);
    const token = registered.body.token;
    assert.equal((await post("/api/auth/logout", {}, token)).status, 204);

    // Act
    const socket = io(S.relays[0], { forceNew: true, reconnection: false, auth: { token }, ...(transports ? { transports } : {}) });
    let timer;
    const err = await Promise.race([
      new Promise((resolve, reject) => {
        socket.once("connect", () => reject(new Error("connected with a revoked token")));
        socket.once("connect_error", resolve);
      }),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("timeout: connect_error")), PATIENCE_MS);
      }),
    ]).finally(() => {
      clearTimeout(timer);
      socket.disconnect();
    });

    // Assert
    assert.equal(err.data?.code, "token_revoked");
    assert.ok(err.message.length > 0);
  });
}
