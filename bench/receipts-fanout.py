#!/usr/bin/env python3
"""Live events caused by delivery receipts in a group: one message to an N-member group, then
every other member marks it delivered (REST). Counts the PUBLISH commands (one per user channel)
on a Redis of its own, so nothing else is counted.

    python3 bench/receipts-fanout.py target/release/api-server [--members 100]

Starts `redis-server` on a free port and the given `api-server` on a fresh PostgreSQL database
(127.0.0.1:5432, user postgres), drops both afterwards; prints one JSON line.
"""
import argparse, json, os, socket, subprocess, time, urllib.request, uuid


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(api, method, path, token=None, body=None):
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = "Bearer " + token
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(api + path, method=method, data=data, headers=headers)
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


def publishes(redis_port):
    info = subprocess.run(["redis-cli", "-p", str(redis_port), "info", "commandstats"],
                          capture_output=True, text=True, check=True).stdout
    for line in info.splitlines():
        if line.startswith("cmdstat_publish:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("api_server")
    parser.add_argument("--members", type=int, default=100)
    args = parser.parse_args()
    redis_port, api_port = free_port(), free_port()
    database = f"parley_receipts_fanout_{uuid.uuid4().hex[:12]}"
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    env = dict(os.environ, JWT_SECRET=uuid.uuid4().hex + uuid.uuid4().hex, API_HOST="127.0.0.1",
               API_PORT=str(api_port), DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{database}",
               REDIS_URL=f"redis://127.0.0.1:{redis_port}", RUST_LOG="warn")
    api = subprocess.Popen([args.api_server], env=env)
    base = f"http://127.0.0.1:{api_port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/ready")
                break
            except OSError:
                time.sleep(0.1)
        users = [call(base, "POST", "/api/auth/register", body={
            "username": f"member{i}", "password": "correct-horse-battery"}) for i in range(args.members)]
        tokens = [u["token"] for u in users]
        others = [u["user"]["id"] for u in users[1:]]
        group = call(base, "POST", "/api/conversations", tokens[0], {"memberIds": others, "title": "group"})
        call(base, "POST", "/api/messages", tokens[0],
             {"conversationId": group["id"], "clientMsgId": "m1", "content": "hello all"})
        time.sleep(1)  # the message's own events are published in the background
        before = publishes(redis_port)
        started = time.perf_counter()
        for token in tokens[1:]:
            call(base, "POST", f"/api/conversations/{group['id']}/delivered", token, {"upToSeq": 1})
        seconds = time.perf_counter() - started
        time.sleep(1)  # likewise the receipts' events
        print(json.dumps({"members": args.members, "receipts": args.members - 1,
                          "publishes": publishes(redis_port) - before, "seconds": round(seconds, 2)}))
    finally:
        api.terminate()
        api.wait()
        redis.terminate()
        redis.wait()
        subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-qc",
                        f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'], check=False)


if __name__ == "__main__":
    main()
