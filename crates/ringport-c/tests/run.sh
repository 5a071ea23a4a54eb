#!/bin/sh
# Builds libringport_c and runs its C tests (tests/c_programs.rs: the C
# test programs, the seed-shaped servers and the seed texts, on both
# backends): once as built, once with every C program built with
# AddressSanitizer (the Rust library itself is not instrumented).
set -eu
cd "$(dirname "$0")/../../.."
cargo build --release -p ringport-c
cargo test --release -p ringport-c --test c_programs
RINGPORT_C_SANITIZE=address cargo test --release -p ringport-c --test c_programs
