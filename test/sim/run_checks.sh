#!/usr/bin/env bash
#
# test/sim/run_checks.sh SEEDS STEPS FUZZ_SECONDS
#
# Runs every check of the consensus core, printing one TAP line per check
# ("ok N - ..." / "not ok N - ..."), for test/run_all.sh to count:
#   - the core's unit tests and the wire-format tests (their own TAP lines);
#   - each scripted scenario in testdata/;
#   - the random campaign over SEEDS (e.g. 1..2000), STEPS steps each,
#     under AddressSanitizer and UndefinedBehaviorSanitizer, split over two
#     processes;
#   - each planted bug (raft_int.h): the campaign, or the lease scenario,
#     must report a violation of the check written for it;
#   - the change format's unit tests;
#   - the fuzz targets of the wire and change decoders, FUZZ_SECONDS each.
# Called by `make check`, which builds the binaries first.

set -uo pipefail

seeds="$1"
steps="$2"
fuzz_seconds="$3"
cd "$(dirname "${BASH_SOURCE[0]}")"

n=0
failures=0

report() {	# report STATUS DESCRIPTION
	n=$((n + 1))
	if [ "$1" -eq 0 ]; then
		echo "ok $n - $2"
	else
		echo "not ok $n - $2"
		failures=$((failures + 1))
	fi
}

# Unit tests print their own TAP lines; renumbering is not needed since
# only "ok"/"not ok" prefixes are counted.
for t in test_core test_wire test_changes; do
	echo "# $t"
	if ! ./build/$t | grep -v '^1\.\.'; then
		report 1 "$t exited with an error"
	fi
done

for script in testdata/*.txt; do
	./build/sim --script "$script"
	report $? "scenario $(basename "$script" .txt)"
done

# The campaign, split in two halves that run side by side.
first="${seeds%..*}"
last="${seeds#*..}"
middle=$(( (first + last) / 2 ))
log1=$(mktemp)
log2=$(mktemp)
trap 'rm -f "$log1" "$log2"' EXIT
start=$(date +%s)
./build/sim --seeds "$first..$middle" --steps "$steps" > "$log1" 2>&1 &
pid1=$!
./build/sim --seeds "$((middle + 1))..$last" --steps "$steps" > "$log2" 2>&1
status2=$?
wait $pid1
status1=$?
sed 's/^/# /' "$log1" "$log2"
report $status1 "campaign seeds $first..$middle x $steps steps under ASan/UBSan"
report $status2 "campaign seeds $((middle + 1))..$last x $steps steps under ASan/UBSan"
echo "# campaign: $((last - first + 1)) seeds x $steps steps in $(( $(date +%s) - start )) s"

# Each planted bug (src/raft/raft_int.h) must make the campaign report a
# violation of the check written for it.
declare -A check_of=(
	[1]='election safety'
	[2]='leader completeness'
	[3]='log matching'
	[4]='raft_load of its own disk failed'
	[5]='liveness'
	[6]='check-quorum'
)
for bug in 1 2 3 4 5 6; do
	out=$(./build/sim_bug$bug --seeds "$seeds" --steps "$steps" 2>&1)
	status=$?
	caught=$(grep -m1 "^VIOLATION .*: ${check_of[$bug]}" <<< "$out")
	echo "# planted bug $bug: ${caught:-no violation of ${check_of[$bug]}}"
	echo "# planted bug $bug: $(tail -n1 <<< "$out")"
	[ $status -eq 1 ] && [ -n "$caught" ]
	report $? "planted bug $bug is caught by the ${check_of[$bug]} check"
done
# The lease bugs need a leader cut off at the wrong moment, which random
# campaigns meet rarely: the lease scenario must catch them every time.
for bug in 7 8; do
	out=$(./build/sim_bug$bug --script testdata/lease.txt 2>&1)
	status=$?
	echo "# planted bug $bug, lease scenario: $(tail -n1 <<< "$out")"
	[ $status -eq 1 ] && grep -q 'VIOLATION: lease' <<< "$out"
	report $? "planted bug $bug is caught by the lease check in the lease scenario"
done
# The Figure 8 scenario must catch the commit-rule bug too.
./build/sim_bug2 --script testdata/figure8.txt > /dev/null 2>&1
[ $? -eq 1 ]
report $? "planted bug 2 fails the figure8 scenario"

# Each fuzz target starts from its seed corpus.
for target in wire changes; do
	corpus=$(mktemp -d)
	cp "corpus_$target"/* "$corpus"/
	./build/fuzz_$target -max_total_time="$fuzz_seconds" -print_final_stats=1 "$corpus" > "$corpus.log" 2>&1
	status=$?
	grep -E '^stat::number_of_executed_units' "$corpus.log" | sed "s/^/# fuzz_$target: /"
	[ $status -ne 0 ] && tail -n 30 "$corpus.log" | sed 's/^/# /'
	report $status "fuzz_$target ran $fuzz_seconds s without a finding"
	rm -rf "$corpus" "$corpus.log"
done

echo "# core checks: $n run, $failures failed"
[ "$failures" -eq 0 ]
