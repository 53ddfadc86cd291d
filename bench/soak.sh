#!/usr/bin/env bash
#
# bench/soak.sh [SECONDS] [SEEDS...]: the fault campaign of the tests
# (test/faults/flapping.pl), longer: three members in network namespaces,
# a bank workload, the leader cut off and healed every 1.5 s, for SECONDS
# (default 600) per seed (default 1).  Prints each campaign's checks and
# counts (transfers acknowledged, reads checked, terms, time to writable
# after healing) and exits non-zero if a check failed.
#
# Run as root (it makes network namespaces; the servers run as the
# unprivileged user pgraft, which must exist, as test/run_all.sh makes
# it), with pg_raft installed and libdbd-pg-perl present.

set -euo pipefail
seconds="${1:-600}"
shift || true
seeds=("${@:-1}")
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
status=0
for seed in "${seeds[@]}"; do
	perl "$tree/test/faults/flapping.pl" --seed "$seed" --duration "$seconds" || status=1
done
exit "$status"
