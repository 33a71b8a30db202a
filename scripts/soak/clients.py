#!/usr/bin/env python3
"""Clients that hold a server without using it, for scripts/soak-serve.sh (loopback only, bounded in time).

  clients.py idle --port P --seconds S --idle N --slow M --idle-timeout T
      Keeps N keep-alive connections that ask GET /healthz once and then say nothing, and M slow clients that send a
      request head one byte a second. Each connection the server closes is opened again until S seconds have passed.
      Prints one JSON line: how many were closed, after how long, and how many outlived the timeout by 15 s or more
      (`held_too_long`, a failure).
  clients.py graceful --port P --pid PID
      Starts a text search whose body is still arriving, sends SIGTERM to the server, then finishes the body: the
      request must be answered 200 and the server must then exit. Prints one JSON line.
"""
import argparse
import json
import os
import selectors
import signal
import socket
import statistics
import sys
import time

SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000 + b"\r\n\r\n"


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setblocking(False)
    return s


def idle(args):
    sel = selectors.DefaultSelector()
    now = time.monotonic
    end = now() + args.seconds
    state = {}  # socket -> dict
    stats = {"idle_closed": 0, "slow_closed": 0, "idle_delays": [], "slow_holds": [], "held_too_long": 0, "errors": 0}
    limit = args.idle_timeout + 15

    def open_one(kind):
        try:
            s = connect(args.port)
        except OSError:
            stats["errors"] += 1
            return
        info = {"kind": kind, "opened": now(), "answered": None, "buffer": b"", "sent": 0, "next_byte": now()}
        if kind == "idle":
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        state[s] = info
        sel.register(s, selectors.EVENT_READ)

    def closed(s):
        info = state.pop(s)
        sel.unregister(s)
        s.close()
        t = now()
        if info["kind"] == "idle":
            if info["answered"] is None:
                stats["errors"] += 1
            else:
                stats["idle_closed"] += 1
                stats["idle_delays"].append(t - info["answered"])
        else:
            stats["slow_closed"] += 1
            stats["slow_holds"].append(t - info["opened"])
        if t < end:
            open_one(info["kind"])

    for _ in range(args.idle):
        open_one("idle")
    for _ in range(args.slow):
        open_one("slow")
    while now() < end:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            except BlockingIOError:
                continue
            if not data:
                closed(s)
                continue
            info = state[s]
            info["buffer"] += data
            if info["answered"] is None and b"\r\n\r\n" in info["buffer"]:
                info["answered"] = now()
        t = now()
        for s, info in list(state.items()):
            if info["kind"] == "slow" and t >= info["next_byte"] and info["sent"] < len(SLOW_HEAD):
                try:
                    s.send(SLOW_HEAD[info["sent"] : info["sent"] + 1])
                    info["sent"] += 1
                except (BrokenPipeError, ConnectionResetError, BlockingIOError):
                    pass
                info["next_byte"] = t + 1
            since = info["answered"] if info["kind"] == "idle" else info["opened"]
            if since is not None and t - since > limit and not info.get("counted"):
                info["counted"] = True
                stats["held_too_long"] += 1
    for s in list(state):
        sel.unregister(s)
        s.close()

    def summary(values):
        return {"median": round(statistics.median(values), 2), "max": round(max(values), 2)} if values else None

    print(json.dumps({
        "idle_connections": args.idle, "slow_clients": args.slow, "idle_closed": stats["idle_closed"],
        "idle_close_after_s": summary(stats["idle_delays"]), "slow_closed": stats["slow_closed"],
        "slow_held_s": summary(stats["slow_holds"]), "held_too_long": stats["held_too_long"], "errors": stats["errors"],
    }))


def graceful(args):
    body = json.dumps({"query": "红色的圆形", "k": 3}).encode()
    s = socket.create_connection(("127.0.0.1", args.port), timeout=30)
    head = "POST /api/search/text HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    s.sendall((head + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body[:5])
    time.sleep(0.5)
    os.kill(args.pid, signal.SIGTERM)
    time.sleep(0.5)
    s.sendall(body[5:])
    reply = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
    deadline = time.monotonic() + 15
    exited = False
    while time.monotonic() < deadline:
        try:
            os.kill(args.pid, 0)
        except ProcessLookupError:
            exited = True
            break
        with open(f"/proc/{args.pid}/stat") as f:  # a zombie has exited and waits for its parent
            if f.read().split(") ", 1)[1].startswith("Z"):
                exited = True
                break
        time.sleep(0.1)
    print(json.dumps({"in_flight_status": status, "exited_within_15_s": exited}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    i = sub.add_parser("idle")
    i.add_argument("--port", type=int, required=True)
    i.add_argument("--seconds", type=float, required=True)
    i.add_argument("--idle", type=int, default=500)
    i.add_argument("--slow", type=int, default=20)
    i.add_argument("--idle-timeout", type=float, required=True)
    g = sub.add_parser("graceful")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--pid", type=int, required=True)
    args = p.parse_args()
    idle(args) if args.mode == "idle" else graceful(args)


if __name__ == "__main__":
    sys.exit(main())
