#!/usr/bin/env python3
"""Memory figures of issue 13 (points 2 and 3), against a `ringport` binary.

Each scenario starts its own server pinned to CPU 0 (`taskset -c 0`), runs
its clients pinned to CPU 1, samples the server's VmRSS from
/proc/PID/status every 20 ms and prints one line of figures.

  abusive   N clients each push up to M MiB and never read; a well-behaved
            client (its own process) echoes 64-byte messages meanwhile.
            Prints the server's RSS before, at its peak, growth per abusive
            connection, and the good client's echo p50/p99/max.
  afterload R rounds of `ringport load` (C connections x S bytes, pipelined),
            then the RSS of the idle server with no connection, against the
            RSS before the first round.

Every loop is bounded in count and in time. 127.0.0.1 only.

  scripts/memory_repro.py abusive --bin target/release/ringport --backend uring \
      --clients 20 --mib 64
  scripts/memory_repro.py abusive --bin ... --cmd log --clients 100 --mib 64
  scripts/memory_repro.py afterload --bin ... --backend epoll --rounds 3
"""

import argparse
import os
import selectors
import socket
import subprocess
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def start_server(args, port, extra=()):
    cmd = ["taskset", "-c", "0", args.bin, args.cmd, "--bind", "127.0.0.1",
           "--port", str(port), "--backend", args.backend, *extra]
    env = dict(os.environ, RUST_LOG="warn")
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=env)
    line = p.stdout.readline().decode()
    if not line.startswith("listening"):
        p.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    if args.cmd == "log":
        # Keep draining its stdout (one line per message) into /dev/null,
        # as fast as a terminal-less log would be written.
        subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
    return p


def stop_server(p):
    p.terminate()
    try:
        p.wait(timeout=15)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


GOOD_CLIENT = r"""
import socket, sys, time
port, secs = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
s.settimeout(20)
msg = bytes(range(64))
lat = []
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
start = time.monotonic()
stamps = []
end = time.monotonic() + secs
while time.monotonic() < end and len(lat) < 1_000_000:
    t = time.perf_counter()
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(len(msg) - len(got))
        if not chunk:
            raise SystemExit("server closed the good client")
        got += chunk
    lat.append(time.perf_counter() - t)
    stamps.append((time.monotonic() - start, lat[-1]))
    time.sleep(0.002)
if len(sys.argv) > 3:
    # Per-second timeline: count, p99 and max (ms), on stderr.
    secs = {}
    for t0, l in stamps:
        secs.setdefault(int(t0), []).append(l)
    for k in sorted(secs):
        v = sorted(secs[k])
        sys.stderr.write(f"  t={k}s n={len(v)} p99={v[int(0.99 * len(v))] * 1000:.1f} max={v[-1] * 1000:.1f}\n")
lat.sort()
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1000
print(f"{len(lat)} {q(0.5):.3f} {q(0.99):.3f} {lat[-1]*1000:.3f}")
"""


def abusive(args):
    port = free_port()
    extra = []
    if args.limit:
        extra += ["--send-queue-limit", str(args.limit)]
    srv = start_server(args, port, extra)
    try:
        time.sleep(0.3)  # let the server settle before the baseline (not a sync)
        before = rss_kib(srv.pid)
        good = None
        if args.cmd == "echo":
            good = subprocess.Popen(
                ["taskset", "-c", "1", sys.executable, "-c", GOOD_CLIENT,
                 str(port), str(args.seconds)] + (["timeline"] if args.timeline else []),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            assert good.stdout.readline().strip() == b"ready"
        sel = selectors.DefaultSelector()
        socks = []
        for _ in range(args.clients):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_WRITE, [0, time.monotonic()])
            socks.append(s)
        if good:
            good.stdin.write(b"go\n")
            good.stdin.flush()
        payload = (b"0123456789abcdef" * 4096)[:args.msg] if args.msg else b"x" * 65536
        if args.cmd == "log":
            # Printable lines, so the log handler has real work per message.
            payload = (b"log line from a noisy client\n" * 4096)[:65536]
        target = args.mib << 20
        peak = before
        start = time.monotonic()
        last_sample = 0.0
        done = 0
        while time.monotonic() - start < args.seconds:
            now = time.monotonic()
            if now - last_sample >= 0.02:
                peak = max(peak, rss_kib(srv.pid))
                last_sample = now
            for key, _ in sel.select(timeout=0.02):
                st = key.data
                try:
                    n = key.fileobj.send(payload[: min(len(payload), target - st[0])])
                except (BlockingIOError, InterruptedError):
                    continue
                st[0] += n
                st[1] = now
                if st[0] >= target:
                    sel.unregister(key.fileobj)
                    done += 1
            if done == len(socks):
                break
        # Keep sampling a little while the server catches up with what the
        # kernel buffered.
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            peak = max(peak, rss_kib(srv.pid))
            time.sleep(0.02)
        total = 0
        for key in list(sel.get_map().values()):
            total += key.data[0]
        lat = ""
        if good:
            good.wait(timeout=args.seconds + 60)
            n, p50, p99, mx = good.stdout.read().decode().split()
            lat = f" good client: {n} echoes p50 {p50} ms p99 {p99} ms max {mx} ms"
        grown = peak - before
        print(f"{args.cmd} {args.backend} clients={args.clients} "
              f"limit={args.limit or 'default'}: RSS {before} KiB -> peak {peak} KiB "
              f"(+{grown / 1024:.1f} MiB, {grown * 1024 // max(1, args.clients)} B per conn);"
              f" {done} clients finished their {args.mib} MiB{lat}")
        for s in socks:
            s.close()
    finally:
        stop_server(srv)


def afterload(args):
    port = free_port()
    srv = start_server(args, port)
    try:
        time.sleep(0.3)
        before = rss_kib(srv.pid)
        peaks = []
        idles = []
        for r in range(args.rounds):
            load = subprocess.Popen(
                ["taskset", "-c", "1", args.bin, "load", "--addr", f"127.0.0.1:{port}",
                 "--conns", str(args.conns), "--size", str(args.size),
                 "--pipeline", str(args.pipeline), "--duration", str(args.duration),
                 "--warmup", "0", "--json"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peak = 0
            deadline = time.monotonic() + args.duration + 60
            while load.poll() is None and time.monotonic() < deadline:
                peak = max(peak, rss_kib(srv.pid))
                time.sleep(0.02)
            if load.poll() is None:
                load.kill()
            load.wait()
            # Idle: wait (bounded) until the RSS stops moving.
            last, t_end = rss_kib(srv.pid), time.monotonic() + 5
            while time.monotonic() < t_end:
                time.sleep(0.25)
                cur = rss_kib(srv.pid)
                if cur == last:
                    break
                last = cur
            peaks.append(peak)
            idles.append(last)
        extra = os.environ.get("MALLOC_ARENA_MAX")
        print(f"afterload {args.backend} {args.rounds} x {args.conns} conns x {args.size} B "
              f"pipeline {args.pipeline}{' MALLOC_ARENA_MAX=' + extra if extra else ''}: "
              f"RSS before {before} KiB; peaks {peaks} KiB; idle after each {idles} KiB; "
              f"idle - before = {(idles[-1] - before) / 1024:.1f} MiB")
    finally:
        stop_server(srv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("scenario", choices=["abusive", "afterload"])
    ap.add_argument("--bin", default="target/release/ringport")
    ap.add_argument("--cmd", default="echo", choices=["echo", "log"])
    ap.add_argument("--backend", default="uring", choices=["uring", "epoll"])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--msg", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--size", type=int, default=4 << 20)
    ap.add_argument("--pipeline", type=int, default=1)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--timeline", action="store_true",
                    help="print the good client's latency per second")
    args = ap.parse_args()
    {"abusive": abusive, "afterload": afterload}[args.scenario](args)


if __name__ == "__main__":
    main()
