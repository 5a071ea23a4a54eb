#!/bin/bash
# CPU time per iteration of the criterion loops, this tree against an older
# revision, alternated in rounds (CPU time, not wall time: a loaded 2-core
# machine stretches wall time, not the process's own CPU time).
#
#   scripts/micro/run.sh [OLD_REV] [ROUNDS]     (default 227b709, 5)
#
# OLD_REV must have the pre-reshape API (old_api.rs); prints a markdown table
# of medians and the paired new/old ratios with their range.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
old=${1:-227b709}
rounds=${2:-5}
work=${TMPDIR:-/tmp}/ringport-micro
mkdir -p "$work"
[ -d "$work/old-tree" ] || git -C "$root" worktree add --detach "$work/old-tree" "$old" >/dev/null
git -C "$work/old-tree" checkout -q --detach "$old"
build() { # name ringport_path api_file
    mkdir -p "$work/$1/src"
    cat > "$work/$1/Cargo.toml" <<TOML
[package]
name = "micro"
version = "0.0.0"
edition = "2021"
[dependencies]
ringport = { path = "$2/crates/ringport" }
[workspace]
TOML
    cp "$here/$3" "$work/$1/src/main.rs"
    cp "$here/body.rs" "$work/$1/src/body.rs"
    (cd "$work/$1" && cargo build --release -q)
}
build new "$root" new_api.rs
build old "$work/old-tree" old_api.rs
out=$work/results.txt
: > "$out"
for r in $(seq 1 "$rounds"); do
    for s in "post_get 2000000" "packets_64 40000" "timeouts_64 10000" "send_recv_64B 100000"; do
        set -- $s
        for be in io_uring epoll; do
            for v in old new; do
                perf stat -x, -e task-clock taskset -c 1 "$work/$v/target/release/micro" "$1" "$be" "$2" \
                    2>"$work/stat" >/dev/null
                ms=$(grep task-clock "$work/stat" | cut -d, -f1)
                echo "$r $1 $be $v $(python3 -c "print($ms*1e6/$2)")" >> "$out"
            done
        done
    done
done
python3 - "$out" <<'PY'
import collections, statistics, sys
d = collections.defaultdict(list)
for line in open(sys.argv[1]):
    r, sc, be, v, ns = line.split()
    d[(sc, be, v)].append(float(ns))
print("| loop | backend | old ns/iter | new ns/iter | new/old | range |")
print("|---|---|--:|--:|--:|--:|")
for sc, be in sorted({(k[0], k[1]) for k in d}):
    o, n = d[(sc, be, "old")], d[(sc, be, "new")]
    rat = [a / b for a, b in zip(n, o)]
    print(f"| {sc} | {be} | {statistics.median(o):.1f} | {statistics.median(n):.1f} | "
          f"{statistics.median(rat):.2f} | {min(rat):.2f}–{max(rat):.2f} |")
PY
