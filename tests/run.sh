#!/usr/bin/env bash
# The test suite over both FUSE transports: everything over io_uring (where
# the kernel has it: the harness turns /sys/module/fuse/parameters/enable_uring
# on for each test binary and restores it), then every mounting test but
# README's (which builds a fresh clone) again over /dev/fuse. Needs root.
# Extra arguments go to both cargo test runs (e.g. a test name filter).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release "$@"
targets=()
for t in tests/*.rs; do
    n=$(basename "$t" .rs)
    [ "$n" = readme ] || targets+=(--test "$n")
done
OVLFUSE_TEST_TRANSPORT=classic cargo test --release "${targets[@]}" "$@"
