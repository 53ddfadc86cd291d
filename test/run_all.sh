#!/usr/bin/env bash
#
# test/run_all.sh: run every pg_raft test and print one summary line.
#
# Usage (after `make && make install`):   bash test/run_all.sh
#
# Four parts, in order:
#   1. the consensus core and simulator   make -C test/sim check
#   2. the pg_regress tests in sql/       make installcheck-regress
#   3. the TAP tests in test/t/           make installcheck-tap (prove -v)
#   4. the fault campaigns                test/faults/flapping.pl, as root
# Each part prints its output as it runs.  The last line counts passed and
# failed tests over all parts, e.g. "42 passed, 0 failed"; the exit status is
# non-zero if anything failed, including a part that stopped before it
# reported a failing test, or that reported no test at all.
#
# PostgreSQL refuses to run as root.  Run as root, the script creates the
# unprivileged user "pgraft" if missing, copies the tree to a scratch
# directory that user owns (the tests write their output into the tree),
# and runs parts 1 to 3 there as that user.  Part 4 makes network
# namespaces, which needs root: it runs only when the script is run as
# root (as the README and CI do), with the servers as that user.
# FAULT_CAMPAIGNS sets the campaigns, each SEED:FAULT[:kills[:DECODING]]
# (see test/faults/flapping.pl; kills also kills the leader a member
# repairs from, DECODING sets raft.decoding), and FAULT_SECONDS (default
# 45) their length.

set -euo pipefail

test_user=pgraft
tree="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "$(id -u)" -eq 0 ]; then
	if ! id "$test_user" >/dev/null 2>&1; then
		echo "run_all.sh: creating user $test_user to run PostgreSQL"
		useradd --create-home --shell /bin/bash "$test_user"
	fi
	scratch="$(mktemp -d /tmp/pg_raft-test-XXXX)"
	tar -C "$tree" --exclude=./.git -cf - . | tar -C "$scratch" -xf -
	chown -R "$test_user:" "$scratch"
	echo "run_all.sh: running as $test_user in $scratch"
	status=0
	(cd "$scratch" && runuser -u "$test_user" -- env RAFT_TEST_COUNTS="$scratch/counts" \
		bash test/run_all.sh "$@") || status=$?
	read -r passed failed < "$scratch/counts" || { passed=0; failed=1; }
	if [ "$status" -eq 0 ]; then
		rm -rf "$scratch"
	else
		echo "run_all.sh: outputs kept in $scratch"
	fi

	# 4. The fault campaigns: three members (five for the bridge) in
	# network namespaces, a fault applied and undone again and again under
	# a bank workload and large transactions that stream.
	logs="$(mktemp -d)"
	trap 'rm -rf "$logs"' EXIT
	# Campaigns 4 and 5 decode in the decoding worker, 10 with auto.
	default_campaigns="1:leader-cut 2:follower-cut 3:freeze 4:leader-cut:kills:worker
		5:freeze-worker::worker 6:kill-all 7:one-way 8:slow 9:bridge 10:double::auto"
	for campaign in ${FAULT_CAMPAIGNS:-$default_campaigns}; do
		IFS=: read -r seed fault kills decoding <<< "$campaign"
		kills=${kills:+--kills}
		decoding=${decoding:-walsender}
		log="$logs/faults-$seed.log"
		echo
		echo "=== faults: perl test/faults/flapping.pl --seed $seed --fault $fault --duration ${FAULT_SECONDS:-45} $kills --decoding $decoding"
		fstatus=0
		perl "$tree/test/faults/flapping.pl" --seed "$seed" --fault "$fault" \
			--duration "${FAULT_SECONDS:-45}" $kills --decoding "$decoding" --user "$test_user" 2>&1 | tee "$log" || fstatus=$?
		ok=$(grep -c '^ok ' "$log" || true)
		bad=$(grep -c '^not ok ' "$log" || true)
		if [ "$fstatus" -ne 0 ] && [ "$bad" -eq 0 ]; then
			echo "=== faults: FAILED: seed $seed exited with status $fstatus before reporting a failed test"
			bad=1
		fi
		echo "=== faults: seed $seed: $ok passed, $bad failed"
		passed=$((passed + ok))
		failed=$((failed + bad))
	done

	echo
	echo "$passed passed, $failed failed"
	[ "$failed" -eq 0 ] && [ "$status" -eq 0 ]
	exit
fi

cd "$tree"
logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT
passed=0
failed=0

# count_tap < LOG: prints "PASSED FAILED" for TAP output ("ok N - ...",
# "not ok N - ...").  Indented subtest lines do not count.  With prove -v,
# a test file that exits with an error after only passing assertions (it
# died, or ran fewer tests than planned) counts as one failure more.
count_tap() {
	awk '
		/ \.\.+ ?$/              { file_failed = 0 }	# a test file begins
		/^ok /                   { passed++ }
		/^not ok /               { failed++; file_failed++ }
		/^Dubious, test returned/ { if (file_failed == 0) failed++ }
		END                      { print passed + 0, failed + 0 }'
}

# count_regress < LOG: the same for pg_regress, which in PostgreSQL 15 prints
# "test NAME ... ok" or "... FAILED" (or "... failed (ignored)").
count_regress() {
	awk '
		/\.\.\. ok( |$)/           { passed++ }
		/\.\.\. (FAILED|failed)/   { failed++ }
		END                      { print passed + 0, failed + 0 }'
}

# run_part NAME COUNTER COMMAND...
#   Runs COMMAND, showing its output, and adds what COUNTER finds in that
#   output to the totals.  A command that fails without a failing test, or
#   that reports no test at all, counts as one failure.  Returns COMMAND's
#   exit status.
run_part() {
	local name="$1" counter="$2"
	shift 2
	local log="$logs/$name.log" status=0 ok bad
	echo
	echo "=== $name: $*"
	"$@" 2>&1 | tee "$log" || status=$?
	read -r ok bad < <("$counter" < "$log")
	if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
		echo "=== $name: FAILED: exited with status $status before reporting a failed test"
		bad=1
	elif [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
		echo "=== $name: FAILED: reported no test"
		bad=1
	fi
	echo "=== $name: $ok passed, $bad failed"
	passed=$((passed + ok))
	failed=$((failed + bad))
	return "$status"
}

# 1. Consensus core and simulator: TAP lines from every program.
if [ -f test/sim/Makefile ]; then
	run_part sim count_tap make -C test/sim check || true
else
	echo
	echo "=== sim: FAILED: test/sim/Makefile is missing"
	failed=$((failed + 1))
fi

# 2. pg_regress: sql/*.sql against a temporary instance that preloads pg_raft.
rm -f regression.diffs
if ! run_part regress count_regress make installcheck-regress; then
	if [ -s regression.diffs ]; then
		echo "=== regress: regression.diffs"
		cat regression.diffs
	fi
fi

# 3. TAP: test/t/*.pl; prove -v prints every assertion.
if ! run_part tap count_tap make installcheck-tap PROVE_FLAGS=-v; then
	echo "=== tap: the nodes' logs are in $tree/tmp_check/log/"
fi

echo
if [ -n "${RAFT_TEST_COUNTS:-}" ]; then
	# run by this script as root: it adds part 4 and prints the total
	echo "$passed $failed" > "$RAFT_TEST_COUNTS"
	echo "=== parts 1 to 3: $passed passed, $failed failed"
else
	echo "=== faults: not run: network namespaces need root (run this script as root)"
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
