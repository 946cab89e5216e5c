#!/usr/bin/env bash
# The benchmark of issue 8: kanmon against Debian's nginx in front of the same upstream,
# logins against raw argon2id, a login flood, WebSockets, memory and start-up.
#   bench/run.sh           full run (3 runs of each figure, ~10 min), writes docs/benchmarks.md
#   bench/run.sh --smoke   every part for a second or so, exit 1 on any error (what CI runs)
# Needs wrk and nginx (apt-get install -y nginx wrk). Run it on a quiet machine: the load
# generator, both proxies and the upstream share its cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is missing: apt-get install -y nginx wrk" >&2; exit 1; }
done
exec cargo run --release --locked --bin kanmon-bench -- "$@"
