#!/usr/bin/env bash
#
# bench/core.sh [SECONDS]: how fast the consensus core runs in the
# simulator, optimised and without sanitizers.
#
# Prints simulated steps per second and committed entries per second for a
# 3-node cluster, first on a clean network (a proposal on 30% of the steps,
# the rest delivering messages and ticking), then under the random
# campaign's faults (drops, duplicates, delays, reordering, partitions,
# crashes, membership changes).  One process, so the figures are per core.

set -euo pipefail
seconds="${1:-5}"
cd "$(dirname "${BASH_SOURCE[0]}")/../test/sim"
make -s build/sim_fast
./build/sim_fast --bench --seconds "$seconds"
./build/sim_fast --bench --faults --seconds "$seconds"
