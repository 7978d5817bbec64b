#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, one after the other (README.md, "Reliability").
#   fuzz/run.sh [SECONDS]    # per target, default 60
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Each run starts from
# fuzz/seeds/<target>/ and what earlier runs found (fuzz/corpus/<target>/, not committed);
# a crash stops with its input in fuzz/artifacts/<target>/: fix it, then keep the input in
# fuzz/regressions/<target>/ (tests/fuzz_regressions.rs runs it in the normal suite).
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."
for t in signatures config proc_parsers sock_diag probe_replies spool; do
  mkdir -p "fuzz/corpus/$t"
  echo "==> $t for ${secs}s"
  cargo +nightly fuzz run -O "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
done
cd crates/collector
mkdir -p fuzz/corpus/report_decoder
echo "==> report_decoder for ${secs}s"
cargo +nightly fuzz run -O report_decoder fuzz/corpus/report_decoder fuzz/seeds/report_decoder -- \
  -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
