"""python-socketio (PyPI, the sync socketio.Client) against two Parley relays linked only by Redis,
with the real API, on each transport setting.

Run by socket-server's `relay` test binary (socket-server/tests/relay/python_clients.rs), which
prepares the scenario and passes it in PARLEY_RELAY_SCENARIO: {relays: [url, url], api,
alice/bob/carol/dave/erin/frank/grace/heidi: {token, id}, direct (alice and bob's conversation),
group (all eight), expiredToken, control}. With `control`, the last test asks the runner to stop
relay 0 gracefully (a line `PARLEY-CONTROL stop-relay 0` on stdout, answered `stopped 0` on
stdin).

By hand, with a stack already running: PARLEY_RELAY_SCENARIO='{…}' \
    tests/python/.venv/bin/python tests/python/relay_clients.py
"""

import json
import os
import select
import socket
import sys
import threading
import time
import unittest

import engineio
import engineio.packet
import engineio.payload
import socketio
import socketio.exceptions

# Waits for what must happen; only a real failure exhausts them, never a busy machine.
PATIENCE = 60.0

# python-engineio refuses a polling answer of more than 16 packets ("Unexpected packet from
# server", then it drops the connection); a burst of messages is more. docs/protocol.md tells
# python clients kept on long-polling to raise it so, before connecting.
engineio.payload.Payload.max_decode_packets = 1000

S = json.loads(os.environ.get("PARLEY_RELAY_SCENARIO") or "null")
if S is None:
    sys.exit(
        "PARLEY_RELAY_SCENARIO is not set "
        "(run through `cargo test -p socket-server --test relay python`)"
    )

TRANSPORTS = (["websocket"], ["polling"])
# Presence has its own tests (socket-server/tests/relay/presence.rs); this suite follows messages.
IGNORED = {"presence", "online_users"}


def msg_id_of(arg):
    return arg.get("clientMsgId") if isinstance(arg, dict) else None


class WireOrderClient(engineio.Client):
    """python-engineio's client, keeping each Socket.IO packet in the order it arrived.

    The sync client runs every event handler in a thread of its own, so handlers may run out of
    the order the relay sent; order is asserted on what came off the wire. (`_receive_packet` is
    python-engineio's own method, pinned by requirements.txt.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.wire = []
        self.observer = None

    def _receive_packet(self, pkt):
        if pkt.packet_type == engineio.packet.MESSAGE and isinstance(pkt.data, str):
            self.wire.append(pkt.data)
            if self.observer:
                self.observer()
        super()._receive_packet(pkt)


class Client(socketio.Client):
    def _engineio_client_class(self):
        return WireOrderClient


class Device:
    """One python-socketio client: the events its handlers saw, and the events on the wire."""

    def __init__(self, name, relay, token, transports, reconnection=False, url=None):
        self.name = name
        self.url = url or S["relays"][relay]
        self.token = token
        self.transports = transports
        # python-engineio gives an HTTP request or a WebSocket handshake 5 s by default.
        self.sio = Client(reconnection=reconnection, request_timeout=PATIENCE)
        self.cond = threading.Condition()
        self.handled = []  # (event, arg) as the handlers ran
        self.connects = 0
        self.disconnects = []  # reasons
        self.connect_errors = []
        self.sio.eio.observer = self._notify
        self.sio.on("*", self._on_any)
        self.sio.on("connect", self._on_connect)
        self.sio.on("disconnect", self._on_disconnect)
        self.sio.on("connect_error", self._on_connect_error)

    def __repr__(self):
        return f"{self.name}({self.url}, {self.transports})"

    def _notify(self):
        with self.cond:
            self.cond.notify_all()

    def _record(self, field, value):
        with self.cond:
            field.append(value)
            self.cond.notify_all()

    def _on_any(self, event, *args):
        self._record(self.handled, (event, args[0] if args else None))

    def _on_connect(self):
        with self.cond:
            self.connects += 1
            self.cond.notify_all()

    def _on_disconnect(self, reason=None):
        self._record(self.disconnects, reason)

    def _on_connect_error(self, data=None):
        self._record(self.connect_errors, data)

    def connect(self):
        self.sio.connect(
            self.url,
            auth={"token": self.token} if self.token is not None else None,
            transports=self.transports,
            wait_timeout=PATIENCE,
        )
        return self

    def close(self):
        self.sio.disconnect()

    def call(self, event, data=None):
        try:
            return self.sio.call(event, data, timeout=PATIENCE)
        except socketio.exceptions.TimeoutError:
            raise AssertionError(
                f"timeout: {self} got no answer to {event} in {PATIENCE:.0f} s "
                f"(connected: {self.sio.connected}, disconnects: {self.disconnects})"
            ) from None

    def wire_events(self):
        """The server's events in the order they arrived: [(event, arg)]."""
        events = []
        for data in list(self.sio.eio.wire):
            # A Socket.IO EVENT on namespace "/" without an ack id: 2["name",arg]
            if data.startswith("2["):
                name, *args = json.loads(data[1:])
                if name not in IGNORED:
                    events.append((name, args[0] if args else None))
        return events

    def until(self, what, found):
        """Wait until found(self) is truthy; return it. Fails after PATIENCE."""
        deadline = time.monotonic() + PATIENCE
        with self.cond:
            while True:
                value = found(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"timeout: {self} waited {PATIENCE:.0f} s for {what} "
                        f"(connected: {self.sio.connected}, disconnects: {self.disconnects})"
                    )
                self.cond.wait(left)

    def event(self, name, match=lambda arg: True):
        """The first `name` event on the wire whose argument matches; waits for it."""
        return self.until(
            name,
            lambda d: next((arg for ev, arg in d.wire_events() if ev == name and match(arg)), None),
        )


class RelayTest(unittest.TestCase):
    def device(self, *args, **kwargs):
        d = Device(*args, **kwargs)
        self.addCleanup(d.close)
        return d.connect()


class Connect(RelayTest):
    def test_a_token_in_auth_connects_and_bad_ones_are_refused_with_their_code(self):
        # python-socketio's default: polling, then the upgrade to WebSocket
        default = self.device("alice-default", 1, S["alice"]["token"], None)
        self.assertEqual(default.sio.transport(), "websocket")
        self.assertIn("serverTime", default.call("ping", {}))
        for transports in TRANSPORTS:
            with self.subTest(transports=transports):
                a = self.device("alice", 0, S["alice"]["token"], transports)
                self.assertTrue(a.sio.connected)
                self.assertIn("serverTime", a.call("ping", {}))
                self.assertEqual(a.sio.transport(), transports[0])
                for token, code in [
                    (S["expiredToken"], "token_expired"),
                    ("not.a.jwt", "invalid_token"),
                    (None, "missing_token"),
                ]:
                    d = Device("refused", 1, token, transports)
                    self.addCleanup(d.close)
                    with self.assertRaises(socketio.exceptions.ConnectionError):
                        d.connect()
                    self.assertFalse(d.sio.connected)
                    self.assertEqual(len(d.connect_errors), 1, d.connect_errors)
                    error = d.connect_errors[0]
                    self.assertEqual(error["data"]["code"], code, error)
                    self.assertTrue(error["message"], error)


class SendMessage(RelayTest):
    def test_the_other_user_and_the_senders_other_device_get_the_copy_then_the_saved_message(self):
        for transports in TRANSPORTS:
            with self.subTest(transports=transports):
                other = ["polling"] if transports == ["websocket"] else ["websocket"]
                a1 = self.device("alice-1", 0, S["alice"]["token"], transports)
                a2 = self.device("alice-2", 1, S["alice"]["token"], other)
                b1 = self.device("bob-1", 1, S["bob"]["token"], transports)
                b2 = self.device("bob-2", 0, S["bob"]["token"], None)  # polling, then upgraded
                # An answered ping: the relay handled the connect (room joined, subscribed).
                for d in (a1, a2, b1, b2):
                    self.assertIn("serverTime", d.call("ping", {}))
                client_msg_id = f"py-{transports[0]}-1"

                ack = a1.call(
                    "send_message",
                    {
                        "clientMsgId": client_msg_id,
                        "conversationId": S["direct"],
                        "kind": "text",
                        "content": f"from python over {transports[0]}",
                    },
                )

                self.assertIs(ack["success"], True, ack)
                self.assertEqual(ack["clientMsgId"], client_msg_id)
                self.assertTrue(ack["id"].isdigit(), ack)
                self.assertIsInstance(ack["seq"], int)
                self.assertEqual(ack["conversationId"], S["direct"])
                mine = lambda arg: msg_id_of(arg) == client_msg_id
                for d in (a2, b1, b2):
                    saved = d.event("message_saved", mine)
                    self.assertEqual((saved["id"], saved["seq"]), (ack["id"], ack["seq"]))
                    events = [ev for ev, arg in d.wire_events() if mine(arg)]
                    self.assertEqual(events, ["receive_message", "message_saved"], d)
                    relayed = d.event("receive_message", mine)
                    self.assertEqual(relayed["senderId"], S["alice"]["id"])
                    self.assertEqual(relayed["status"], "sent")
                    self.assertEqual(relayed["content"], f"from python over {transports[0]}")
                    # The handlers got them too.
                    d.until(
                        "the handlers",
                        lambda d: {ev for ev, arg in d.handled if mine(arg)}
                        == {"receive_message", "message_saved"},
                    )
                self.assertEqual(a1.event("message_saved", mine)["id"], ack["id"])
                self.assertEqual([ev for ev, arg in a1.wire_events() if mine(arg)], ["message_saved"])


class UnreadableArguments(RelayTest):
    def test_a_lone_surrogate_is_answered_invalid_json_and_the_connection_stays(self):
        for transports in TRANSPORTS:
            with self.subTest(transports=transports):
                a = self.device("alice", 0, S["alice"]["token"], transports)
                # Half an emoji: json.dumps writes the lone surrogate as the escape "\ud83d".
                half = "typed \ud83d"
                self.assertIn("\\ud83d", json.dumps(half))

                ack = a.call(
                    "send_message",
                    {
                        "clientMsgId": f"py-half-emoji-{transports[0]}",
                        "conversationId": S["direct"],
                        "content": half,
                    },
                )

                self.assertIs(ack["success"], False, ack)
                self.assertEqual(ack["error"]["code"], "invalid_json", ack)
                self.assertIs(ack["error"]["retryable"], False, ack)
                # The connection is still there: the next request is answered on it.
                self.assertIn("serverTime", a.call("ping", {}))
                self.assertTrue(a.sio.connected)
                self.assertEqual(a.disconnects, [])


class Burst(RelayTest):
    SENDS = 20

    def test_a_polling_receiver_gets_every_senders_burst_in_order_and_stays_connected(self):
        # 7 x 20 messages, each a receive_message and a message_saved for the receiver: more
        # than the 256 packets a session may queue on WebSocket.
        senders = [
            ("alice", 0, ["websocket"]),
            ("carol", 0, ["polling"]),
            ("dave", 1, ["websocket"]),
            ("erin", 1, ["polling"]),
            ("frank", 0, ["polling"]),
            ("grace", 1, ["websocket"]),
            ("heidi", 0, ["websocket"]),
        ]
        receiver = self.device("bob", 1, S["bob"]["token"], ["polling"])
        self.assertIn("serverTime", receiver.call("ping", {}))
        devices = {}
        for name, relay, transports in senders:
            devices[name] = self.device(name, relay, S[name]["token"], transports)
            self.assertIn("serverTime", devices[name].call("ping", {}))
        acks = {name: [None] * self.SENDS for name, _, _ in senders}
        acked = threading.Condition()
        start = threading.Barrier(len(senders))

        def burst(name):
            def on_ack(i):
                def record(answer):
                    with acked:
                        acks[name][i] = answer
                        acked.notify_all()

                return record

            start.wait(PATIENCE)
            for i in range(self.SENDS):
                devices[name].sio.emit(
                    "send_message",
                    {
                        "clientMsgId": f"burst-{name}-{i}",
                        "conversationId": S["group"],
                        "content": f"{name} {i}",
                    },
                    callback=on_ack(i),
                )

        # Act: every sender emits all its messages at once, all senders together
        threads = [threading.Thread(target=burst, args=(name,)) for name, _, _ in senders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PATIENCE)

        # Assert: every send stored, in order per sender
        deadline = time.monotonic() + PATIENCE
        with acked:
            while any(a is None for answers in acks.values() for a in answers):
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, f"timeout: acks {acks}")
                acked.wait(left)
        for name, answers in acks.items():
            for answer in answers:
                self.assertIs(answer["success"], True, answer)
            seqs = [answer["seq"] for answer in answers]
            self.assertEqual(seqs, sorted(seqs), f"{name}'s messages stored out of order")
        total = len(senders) * self.SENDS

        def burst_events(d, event):
            return [
                arg["clientMsgId"]
                for ev, arg in d.wire_events()
                if ev == event and (msg_id_of(arg) or "").startswith("burst-")
            ]

        receiver.until(f"{total} message_saved", lambda d: len(burst_events(d, "message_saved")) >= total)
        for event in ("receive_message", "message_saved"):
            got = burst_events(receiver, event)
            self.assertEqual(len(got), total, f"{event}: {got}")
            for name, _, _ in senders:
                mine = [m for m in got if m.startswith(f"burst-{name}-")]
                self.assertEqual(
                    mine, [f"burst-{name}-{i}" for i in range(self.SENDS)], f"{event} of {name}"
                )
        saved = {
            arg["clientMsgId"]: arg["id"]
            for ev, arg in receiver.wire_events()
            if ev == "message_saved"
        }
        for name, answers in acks.items():
            for i, answer in enumerate(answers):
                self.assertEqual(saved[f"burst-{name}-{i}"], answer["id"])
        # Still connected, on polling, and the handlers saw every message.
        self.assertEqual(receiver.disconnects, [])
        self.assertTrue(receiver.sio.connected)
        self.assertEqual(receiver.sio.transport(), "polling")
        self.assertIn("serverTime", receiver.call("ping", {}))
        receiver.until(
            "the handlers",
            lambda d: sum(
                1
                for ev, arg in d.handled
                if ev == "message_saved" and (msg_id_of(arg) or "").startswith("burst-")
            )
            == total,
        )


class SyncAndReceipts(RelayTest):
    def test_sync_returns_the_messages_and_mark_read_reaches_the_sender(self):
        for transports in TRANSPORTS:
            with self.subTest(transports=transports):
                a = self.device("alice", 0, S["alice"]["token"], transports)
                b = self.device("bob", 1, S["bob"]["token"], transports)
                client_msg_id = f"py-sync-{transports[0]}"
                ack = a.call(
                    "send_message",
                    {"clientMsgId": client_msg_id, "conversationId": S["direct"], "content": "sync me"},
                )
                self.assertIs(ack["success"], True, ack)

                # sync from the beginning, page after page
                messages, since = [], None
                for _ in range(100):
                    page = b.call("sync", {"since": since} if since else {})
                    self.assertIs(page.get("success"), True, page)
                    messages += page["messages"]
                    since = page["nextCursor"]
                    if not page["hasMore"]:
                        break
                ids = {m["clientMsgId"]: m for m in messages}
                self.assertIn(client_msg_id, ids)
                self.assertEqual(ids[client_msg_id]["id"], ack["id"])
                self.assertEqual(ids[client_msg_id]["seq"], ack["seq"])
                self.assertEqual(ids[client_msg_id]["senderId"], S["alice"]["id"])

                read = b.call("mark_read", {"conversationId": S["direct"], "upToSeq": ack["seq"]})

                self.assertIs(read.get("success"), True, read)
                self.assertEqual(read["readUpToSeq"], ack["seq"], read)
                self.assertEqual(read["userId"], S["bob"]["id"], read)
                status = a.event(
                    "message_status",
                    lambda arg: arg["userId"] == S["bob"]["id"]
                    and arg["conversationId"] == S["direct"]
                    and arg["readUpToSeq"] >= ack["seq"],
                )
                self.assertGreaterEqual(status["deliveredUpToSeq"], ack["seq"])


class Forwarder:
    """A TCP load balancer on 127.0.0.1: each new connection goes to the first backend that
    accepts it, and a backend that refuses one is left for good (a replica gone). It also tells
    when a long-polling GET is waiting at a backend for its answer (HTTP/1.1 without pipelining:
    a connection's next bytes from the backend answer the request it carried last)."""

    def __init__(self, backends):
        self.backends = list(backends)
        self.current = 0
        self.choosing = threading.Lock()
        self.cond = threading.Condition()
        self.pending_polls = set()  # connections whose polling GET waits for its answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.listener.close()

    def until_poll_pending(self, backend):
        """Wait until a polling GET is waiting at backend `backend`."""
        deadline = time.monotonic() + PATIENCE
        with self.cond:
            while not any(b == backend for b, _ in self.pending_polls):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timeout: no poll pending at backend {backend}")
                self.cond.wait(left)

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        upstream = None
        with self.choosing:
            while self.current < len(self.backends):
                backend = self.current
                try:
                    upstream = socket.create_connection(self.backends[backend], timeout=PATIENCE)
                    upstream.settimeout(None)
                    break
                except ConnectionRefusedError:
                    self.current += 1
        if upstream is None:
            client.close()
            return
        key = (backend, client.fileno())
        request = bytearray()

        def sent(chunk):
            if len(request) < 65536:
                request.extend(chunk)
            head = bytes(request)
            if b"\r\n\r\n" in head and head.startswith(b"GET ") and b"transport=polling" in head \
                    and b"sid=" in head.split(b"\r\n", 1)[0]:
                with self.cond:
                    self.pending_polls.add(key)
                    self.cond.notify_all()

        def answered(chunk):
            request.clear()
            with self.cond:
                self.pending_polls.discard(key)

        threading.Thread(target=self._pipe, args=(upstream, client, answered), daemon=True).start()
        self._pipe(client, upstream, sent)
        with self.cond:
            self.pending_polls.discard(key)

    @staticmethod
    def _pipe(source, sink, seen):
        try:
            while data := source.recv(65536):
                seen(data)
                sink.sendall(data)
        except OSError:
            pass
        for s, how in ((sink, socket.SHUT_WR), (source, socket.SHUT_RD)):
            try:
                s.shutdown(how)
            except OSError:
                pass


def stop_relay(index):
    """Ask the runner (python_clients.rs) to stop relay `index` as SIGTERM does; returns once it
    has exited."""
    print(f"PARLEY-CONTROL stop-relay {index}", flush=True)
    ready, _, _ = select.select([sys.stdin], [], [], PATIENCE)
    if not ready:
        raise AssertionError(f"timeout: the runner did not stop relay {index}")
    answer = sys.stdin.readline().strip()
    if answer != f"stopped {index}":
        raise AssertionError(f"the runner answered {answer!r} to stop-relay {index}")


@unittest.skipUnless(S.get("control"), "needs the runner's control channel (python_clients.rs)")
class RelayShutdown(RelayTest):
    """Last: it stops relay 0 for good."""

    def test_clients_reconnect_to_another_relay_after_a_graceful_shutdown(self):
        host = "127.0.0.1"
        ports = [int(url.rsplit(":", 1)[1]) for url in S["relays"]]
        balancer = Forwarder([(host, ports[0]), (host, ports[1])])
        self.addCleanup(balancer.close)
        devices = [
            self.device("bob-" + t[0], None, S["bob"]["token"], t, reconnection=True, url=balancer.url())
            for t in TRANSPORTS
        ]
        for d in devices:
            self.assertIn("serverTime", d.call("ping", {}))
            self.assertEqual(d.connects, 1)
        self.assertEqual(balancer.current, 0)

        # Act: relay 0, where both devices are, shuts down as on SIGTERM while the polling device
        # waits for a poll's answer (the answer that must not carry a close packet)
        balancer.until_poll_pending(0)
        stop_relay(0)

        # Assert: each device comes back by itself, on relay 1, and receives there
        for d in devices:
            d.until("a reconnect", lambda d: d.connects >= 2 and d.sio.connected)
            self.assertEqual(len(d.disconnects), 1, d.disconnects)
            self.assertIn("serverTime", d.call("ping", {}))
        self.assertEqual(balancer.current, 1)
        a = self.device("alice", 1, S["alice"]["token"], ["websocket"])
        ack = a.call(
            "send_message",
            {"clientMsgId": "py-after-shutdown", "conversationId": S["direct"], "content": "back?"},
        )
        self.assertIs(ack["success"], True, ack)
        for d in devices:
            saved = d.event("message_saved", lambda arg: msg_id_of(arg) == "py-after-shutdown")
            self.assertEqual(saved["id"], ack["id"])


def main():
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(
        loader.loadTestsFromTestCase(case)
        for case in (Connect, SendMessage, UnreadableArguments, Burst, SyncAndReceipts, RelayShutdown)
    )
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stderr).run(suite)
    sys.exit(0 if result.wasSuccessful() else 1)


if __name__ == "__main__":
    main()
