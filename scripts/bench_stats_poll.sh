#!/bin/sh
# `ringport echo --stats-socket` for `ringport bench`, with or without a
# client that asks the stats socket for a snapshot 10 times a second
# (it writes how many it got to SOCKET.polls when the server has ended)
# (pinned to CPU 1, beside the load; the server keeps the CPU bench gives
# it). The client ends when the server does (it is the server's child).
#
#   flock /work/bench.lock ringport bench --cases 100x512,1000x512 --rounds 9 \
#     --ringport-cmd "scripts/bench_stats_poll.sh $BIN nopoll" \
#     --tokio-cmd "scripts/bench_stats_poll.sh $BIN poll"
#
# usage: bench_stats_poll.sh RINGPORT_BINARY poll|nopoll
set -e
exe=$1
mode=$2
sock=$(mktemp -u /tmp/ringport-statsbench.XXXXXX)
if [ "$mode" = poll ]; then
    taskset -c 1 python3 -c '
import os, socket, sys, time
path, parent = sys.argv[1], os.getppid()
s = f = None
polls = 0
next_t = time.monotonic()
while os.getppid() == parent:
    try:
        if s is None:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            f = s.makefile("rb")
        s.sendall(b"get top=20\n")
        if not f.readline():
            raise OSError("closed")
        polls += 1
    except OSError:
        s = None
    next_t += 0.1
    time.sleep(max(0.0, next_t - time.monotonic()))
with open(path + ".polls", "w") as out:
    out.write(str(polls) + "\n")
' "$sock" &
fi
exec "$exe" echo --bind 127.0.0.1 --port 0 --workers 1 --stats-socket "$sock"
