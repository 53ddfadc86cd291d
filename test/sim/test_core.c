/*-------------------------------------------------------------------------
 *
 * test_core.c
 *	  Unit tests of the consensus core's public API (src/raft/raft.h).
 *
 * Prints TAP ("ok N - ...", "not ok N - ..." followed by "# " diagnostic
 * lines, then the plan "1..N") and exits non-zero if any test failed.
 * Only raft.h is included: these tests see the core exactly as a caller
 * does, and every core is carved out of a malloc'd block of raft_size()
 * bytes.
 *
 * NOTES
 *	  Each test_* function checks one area of the API: options and
 *	  sizing, raft_load validation, a single-node bootstrap and proposals,
 *	  the log ring (on a leader, and on a follower whose suffix is
 *	  overwritten) and its slots reserved for a new leader's no-op, leaders
 *	  and followers whose ring is full, configuration entries and their
 *	  decoding, raft_step's message validation, the election timer and
 *	  raft_set_timeouts, an election and replication between two nodes
 *	  driven by hand (no simulator), the commit index each member reports
 *	  to the leader, and the name functions.
 *
 *	  drain() plays the caller's part of THE CALLER'S CONTRACT in raft.h:
 *	  take a ready, "persist" it (the tests keep no disk, only the last
 *	  hard state), hand its messages to the peer node (if any) through
 *	  raft_step, apply committed entries, raft_advance, and report the
 *	  persisted entries with raft_persisted.  Per-test hooks inspect each
 *	  ready and each applied entry.
 *
 *	  Buffers given to raft_config_decode are heap blocks of exactly the
 *	  payload's size, so that AddressSanitizer reports any read past them.
 *	  A case that may crash the core runs in a child process
 *	  (run_isolated), so that it fails alone.
 *
 * IDENTIFICATION
 *	  test/sim/test_core.c
 *
 *-------------------------------------------------------------------------
 */
#include "raft.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tap.h"

/* ----------------------------------------------------------------
 *		TAP output, with the line of a failed check
 * ----------------------------------------------------------------
 */

static bool
report(bool cond, int line, const char *fmt, va_list ap)
{
	vcheck(cond, fmt, ap);
	if (!cond)
		diag("failed at test_core.c line %d", line);
	return cond;
}

/* One test: cond must hold. */
static bool
check_(bool cond, int line, const char *expr, const char *fmt,...)
{
	va_list		ap;
	bool		ok;

	va_start(ap, fmt);
	ok = report(cond, line, fmt, ap);
	va_end(ap);
	if (!ok)
		diag("expected: %s", expr);
	return ok;
}

/* One test: a return code must be the expected one. */
static bool
check_rc_(int got, int want, int line, const char *expr, const char *fmt,...)
{
	va_list		ap;
	bool		ok;

	va_start(ap, fmt);
	ok = report(got == want, line, fmt, ap);
	va_end(ap);
	if (!ok)
		diag("%s returned %d (%s), expected %d (%s)", expr,
			 got, raft_strerror(got), want, raft_strerror(want));
	return ok;
}

/* One test: an unsigned value must be the expected one. */
static bool
check_u64_(uint64_t got, uint64_t want, int line, const char *expr,
		   const char *fmt,...)
{
	va_list		ap;
	bool		ok;

	va_start(ap, fmt);
	ok = report(got == want, line, fmt, ap);
	va_end(ap);
	if (!ok)
		diag("%s is %llu, expected %llu", expr,
			 (unsigned long long) got, (unsigned long long) want);
	return ok;
}

#define CHECK(cond, ...) check_((cond), __LINE__, #cond, __VA_ARGS__)
#define CHECK_RC(got, want, ...) \
	check_rc_((got), (want), __LINE__, #got, __VA_ARGS__)
#define CHECK_U64(got, want, ...) \
	check_u64_((uint64_t) (got), (uint64_t) (want), __LINE__, #got, __VA_ARGS__)

/*
 * Runs fn (which returns a raft_rc) in a child process, so that a crash in
 * the core fails one test instead of ending the program.  Returns fn's
 * result, or CHILD_CRASHED when the child died (the sanitizers' report is
 * then on stderr).  The child passes the code as exit status 100 - rc.
 */
#define CHILD_CRASHED 1000

static int
run_isolated(int (*fn) (void))
{
	pid_t		pid;
	int			status;

	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
	{
		perror("fork");
		exit(2);
	}
	if (pid == 0)
	{
		int			rc = fn();

		_exit(rc <= 0 && rc > -100 ? 100 - rc : 99);
	}
	if (waitpid(pid, &status, 0) != pid)
	{
		perror("waitpid");
		exit(2);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) >= 100)
		return 100 - WEXITSTATUS(status);
	return CHILD_CRASHED;
}

/* ----------------------------------------------------------------
 *		Nodes and the ready loop
 * ----------------------------------------------------------------
 */

typedef struct node node;

/* Called with every ready before it is handled, and with every entry applied. */
typedef void (*ready_hook) (node *n, const raft_ready *rd);
typedef void (*apply_hook) (node *n, const raft_entry *e);

struct node
{
	void	   *mem;
	raft	   *r;
	raft_options opts;
	raft_hard_state hs;			/* the last hard state "persisted" */
	raft_index_t applied;		/* last index handed to apply_hook */
	int			errors;			/* contract violations seen by drain() */
	ready_hook on_ready;
	apply_hook on_apply;
	void	   *arg;			/* for the hooks */
};

/* Options of the tests: the defaults with a fixed seed. */
static raft_options
test_options(raft_id_t id)
{
	raft_options opts;

	raft_options_default(&opts, id, 42);
	return opts;
}

/* Allocates raft_size() bytes and initialises a core in them. */
static bool
node_init(node *n, const raft_options *opts)
{
	size_t		size = raft_size(opts);
	int			rc;

	memset(n, 0, sizeof(*n));
	n->opts = *opts;
	if (size == 0)
	{
		diag("raft_size() rejected the options of node %u", opts->id);
		return false;
	}
	n->mem = malloc(size);
	if (n->mem == NULL)
	{
		perror("malloc");
		exit(2);
	}
	rc = raft_init(n->mem, size, opts, &n->r);
	if (rc != RAFT_OK)
	{
		diag("raft_init: %s", raft_strerror(rc));
		free(n->mem);
		n->mem = NULL;
		return false;
	}
	return true;
}

static void
node_free(node *n)
{
	free(n->mem);
	n->mem = NULL;
	n->r = NULL;
}

/* A configuration of voters ids[0..n-1]. */
static raft_config
voters(const raft_id_t *ids, uint32_t n)
{
	raft_config config;
	uint32_t	i;

	memset(&config, 0, sizeof(config));
	config.n_members = n;
	for (i = 0; i < n; i++)
	{
		config.members[i].id = ids[i];
		config.members[i].voter = true;
	}
	return config;
}

/* A brand-new node of a cluster bootstrapped with the given voters. */
static bool
node_bootstrap(node *n, const raft_options *opts, const raft_id_t *ids,
			   uint32_t n_ids)
{
	raft_hard_state hs;
	raft_snapshot_meta base;
	int			rc;

	if (!node_init(n, opts))
		return false;
	memset(&hs, 0, sizeof(hs));
	memset(&base, 0, sizeof(base));
	base.config = voters(ids, n_ids);
	rc = raft_load(n->r, &hs, &base, NULL, 0, 0);
	if (rc != RAFT_OK)
	{
		diag("raft_load of a new node: %s", raft_strerror(rc));
		node_free(n);
		return false;
	}
	return true;
}

static raft_status
status_of(const node *n)
{
	raft_status st;

	raft_get_status(n->r, &st);
	return st;
}

/*
 * Handles every pending ready of n as THE CALLER'S CONTRACT asks.  Messages
 * go to peer through raft_step (they are dropped when peer is NULL or they
 * are addressed to someone else).  Returns the number of readies handled.
 */
static int
drain(node *n, node *peer)
{
	int			rounds = 0;

	while (raft_has_ready(n->r))
	{
		raft_ready	rd;
		raft_index_t i;
		size_t		k;

		if (++rounds > 1000)
		{
			diag("node %u: ready never settles", n->opts.id);
			n->errors++;
			break;
		}
		raft_ready_get(n->r, &rd);
		if (n->on_ready != NULL)
			n->on_ready(n, &rd);
		/* 1-4: "persist" (only the hard state is kept) */
		if (rd.hard_state_changed)
			n->hs = rd.hard_state;
		for (i = rd.persist_from; i <= rd.persist_to; i++)
		{
			raft_entry	e;

			if (raft_entry_get(n->r, i, &e) != RAFT_OK || e.index != i)
			{
				diag("node %u: entry %llu to persist is unreadable",
					 n->opts.id, (unsigned long long) i);
				n->errors++;
			}
		}
		/* 5: send */
		for (k = 0; k < rd.n_msgs; k++)
		{
			const raft_msg *m = &rd.msgs[k];
			int			rc;

			if (m->from != n->opts.id)
			{
				diag("node %u sends a message from %u", n->opts.id, m->from);
				n->errors++;
			}
			if (peer == NULL || m->to != peer->opts.id)
				continue;
			rc = raft_step(peer->r, m);
			if (rc != RAFT_OK)
			{
				diag("node %u rejects %s from %u: %s", peer->opts.id,
					 raft_msg_type_name(m->type), m->from, raft_strerror(rc));
				n->errors++;
			}
		}
		/* 6: apply, in order and without gaps */
		if (rd.apply_from <= rd.apply_to && rd.apply_from != n->applied + 1)
		{
			diag("node %u: apply_from %llu after applying %llu", n->opts.id,
				 (unsigned long long) rd.apply_from,
				 (unsigned long long) n->applied);
			n->errors++;
		}
		for (i = rd.apply_from; i <= rd.apply_to; i++)
		{
			raft_entry	e;

			if (raft_entry_get(n->r, i, &e) != RAFT_OK)
			{
				diag("node %u: entry %llu to apply is unreadable",
					 n->opts.id, (unsigned long long) i);
				n->errors++;
				continue;
			}
			if (n->on_apply != NULL)
				n->on_apply(n, &e);
			n->applied = i;
		}
		/* 7 */
		raft_advance(n->r);
		if (rd.persist_from <= rd.persist_to)
			raft_persisted(n->r, rd.persist_to,
						   raft_term_at(n->r, rd.persist_to));
	}
	return rounds;
}

/* Drains a and b, delivering each one's messages to the other, until both settle. */
static void
pump(node *a, node *b)
{
	int			i;

	for (i = 0; i < 100; i++)
	{
		int			n = drain(a, b) + drain(b, a);

		if (n == 0)
			return;
	}
	diag("nodes %u and %u never settle", a->opts.id, b->opts.id);
	a->errors++;
}

/*
 * A single-node cluster whose only node leads in term 1 with its no-op
 * (entry 1) committed and applied.  On failure n is freed.
 */
static bool
single_leader(node *n, const raft_options *opts)
{
	raft_id_t	self = opts->id;
	raft_status st;

	if (!node_bootstrap(n, opts, &self, 1))
		return false;
	if (raft_campaign_now(n->r) == RAFT_OK)
		drain(n, NULL);
	st = status_of(n);
	if (st.role == RAFT_LEADER && st.term == 1 && st.commit_index == 1 &&
		n->applied == 1 && n->errors == 0)
		return true;
	node_free(n);
	return false;
}

/*
 * Deterministic contents of test entries, by index and term (so that an
 * overwritten entry reads differently from the one it replaced).
 */
static uint8_t
pattern_byte(raft_index_t index, raft_term_t term, uint32_t j)
{
	return (uint8_t) (index * 131u + term * 61u + j * 7u + (index >> 8) + 1u);
}

static void
fill_pattern(uint8_t *buf, raft_index_t index, raft_term_t term, uint32_t len)
{
	uint32_t	j;

	for (j = 0; j < len; j++)
		buf[j] = pattern_byte(index, term, j);
}

static bool
has_pattern(const raft_entry *e, uint32_t len)
{
	uint32_t	j;

	if (e->len != len || (len > 0 && e->data == NULL))
		return false;
	for (j = 0; j < len; j++)
		if (e->data[j] != pattern_byte(e->index, e->term, j))
			return false;
	return true;
}

/* xorshift64*, for the test's own pseudo-random choices */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * UINT64_C(2685821657736338717);
}

/* ----------------------------------------------------------------
 *		Options, sizing and raft_init
 * ----------------------------------------------------------------
 */

/* Default options are valid and carry the id, the seed and both refinements. */
static void
test_options_default(void)
{
	raft_options opts;
	size_t		size;
	void	   *mem;
	raft	   *r = NULL;

	raft_options_default(&opts, 7, 99);
	CHECK(opts.id == 7 && opts.random_seed == 99,
		  "options_default: id and seed as given");
	CHECK(opts.pre_vote && opts.check_quorum,
		  "options_default: pre-vote and check-quorum on");
	CHECK(opts.heartbeat_ticks >= 1 &&
		  opts.heartbeat_ticks < opts.election_timeout_ticks,
		  "options_default: 1 <= heartbeat < election timeout");
	CHECK(opts.max_entries_per_msg >= 1 &&
		  opts.max_entries_per_msg <= RAFT_MAX_ENTRIES_PER_MSG,
		  "options_default: max_entries_per_msg within bounds");
	CHECK(opts.max_inflight_msgs >= 1 && opts.max_inflight_msgs <= 64,
		  "options_default: max_inflight_msgs within 1..64");
	CHECK(opts.log_capacity_bytes >= opts.max_entry_bytes &&
		  opts.max_entry_bytes > 0 && opts.log_capacity_entries > 0,
		  "options_default: the log holds at least one largest entry");

	size = raft_size(&opts);
	CHECK(size > 0, "options_default: raft_size > 0");
	mem = malloc(size);
	CHECK_RC(raft_init(mem, size, &opts, &r), RAFT_OK,
			 "options_default: raft_init succeeds");
	CHECK(r != NULL, "raft_init sets its out pointer");
	free(mem);
	CHECK_U64(raft_size(NULL), 0, "raft_size(NULL) is 0");
}

typedef struct bad_option
{
	const char *what;
	void		(*spoil) (raft_options *opts);
} bad_option;

static void spoil_id(raft_options *o) { o->id = RAFT_NO_NODE; }
static void spoil_hb_eq(raft_options *o) { o->heartbeat_ticks = o->election_timeout_ticks; }
static void spoil_hb_gt(raft_options *o) { o->heartbeat_ticks = o->election_timeout_ticks + 1; }
static void spoil_hb_zero(raft_options *o) { o->heartbeat_ticks = 0; }
static void spoil_et_zero(raft_options *o) { o->election_timeout_ticks = 0; o->heartbeat_ticks = 0; }
static void spoil_quiet_short(raft_options *o) { o->heartbeat_ticks = 2; o->quiet_heartbeat_ticks = 1; }
static void spoil_quiet_long(raft_options *o) { o->quiet_heartbeat_ticks = o->election_timeout_ticks / 2 + 1; }
static void spoil_epm_zero(raft_options *o) { o->max_entries_per_msg = 0; }
static void spoil_epm_big(raft_options *o) { o->max_entries_per_msg = RAFT_MAX_ENTRIES_PER_MSG + 1; }
static void spoil_inflight_big(raft_options *o) { o->max_inflight_msgs = 65; }
static void spoil_inflight_zero(raft_options *o) { o->max_inflight_msgs = 0; }
static void spoil_log_bytes(raft_options *o) { o->log_capacity_bytes = o->max_entry_bytes - 1; }
static void spoil_log_entries(raft_options *o) { o->log_capacity_entries = 0; }
static void spoil_reads_zero(raft_options *o) { o->max_pending_reads = 0; }
static void spoil_msg_bytes(raft_options *o) { o->max_bytes_per_msg = 0; }

/* Each invalid option makes raft_size return 0 and raft_init fail. */
static void
test_options_invalid(void)
{
	static const bad_option bad[] = {
		{"id 0", spoil_id},
		{"heartbeat == election timeout", spoil_hb_eq},
		{"heartbeat > election timeout", spoil_hb_gt},
		{"heartbeat 0", spoil_hb_zero},
		{"election timeout 0", spoil_et_zero},
		{"quiet heartbeat < heartbeat", spoil_quiet_short},
		{"quiet heartbeat > half the election timeout", spoil_quiet_long},
		{"max_entries_per_msg 0", spoil_epm_zero},
		{"max_entries_per_msg > RAFT_MAX_ENTRIES_PER_MSG", spoil_epm_big},
		{"max_inflight_msgs > 64", spoil_inflight_big},
		{"max_inflight_msgs 0", spoil_inflight_zero},
		{"log_capacity_bytes < max_entry_bytes", spoil_log_bytes},
		{"log_capacity_entries 0", spoil_log_entries},
		{"max_pending_reads 0", spoil_reads_zero},
		{"max_bytes_per_msg 0", spoil_msg_bytes},
	};
	raft_options good = test_options(1);
	size_t		big = raft_size(&good) * 2;
	void	   *mem = malloc(big);
	size_t		i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		raft_options opts = good;
		raft	   *r = NULL;

		bad[i].spoil(&opts);
		CHECK_U64(raft_size(&opts), 0, "raft_size is 0 for %s", bad[i].what);
		CHECK_RC(raft_init(mem, big, &opts, &r), RAFT_ERR_INVALID_ARG,
				 "raft_init rejects %s", bad[i].what);
	}
	free(mem);
}

/* raft_init wants raft_size bytes, 8-byte aligned, and its arguments. */
static void
test_init_memory(void)
{
	raft_options opts = test_options(1);
	size_t		size = raft_size(&opts);
	uint8_t    *mem = malloc(size + 16);
	raft	   *r = NULL;

	CHECK_RC(raft_init(mem, size - 1, &opts, &r), RAFT_ERR_NO_MEMORY,
			 "raft_init: one byte short is NO_MEMORY");
	CHECK_RC(raft_init(mem, 0, &opts, &r), RAFT_ERR_NO_MEMORY,
			 "raft_init: size 0 is NO_MEMORY");
	CHECK_RC(raft_init(mem + 1, size, &opts, &r), RAFT_ERR_INVALID_ARG,
			 "raft_init: memory misaligned by 1 is INVALID_ARG");
	CHECK_RC(raft_init(mem + 4, size, &opts, &r), RAFT_ERR_INVALID_ARG,
			 "raft_init: memory misaligned by 4 is INVALID_ARG");
	CHECK_RC(raft_init(NULL, size, &opts, &r), RAFT_ERR_INVALID_ARG,
			 "raft_init: NULL memory is INVALID_ARG");
	CHECK_RC(raft_init(mem, size, NULL, &r), RAFT_ERR_INVALID_ARG,
			 "raft_init: NULL options is INVALID_ARG");
	CHECK_RC(raft_init(mem, size, &opts, NULL), RAFT_ERR_INVALID_ARG,
			 "raft_init: NULL out is INVALID_ARG");
	r = NULL;
	CHECK_RC(raft_init(mem + 8, size, &opts, &r), RAFT_OK,
			 "raft_init: any 8-byte aligned block of raft_size bytes works");
	CHECK(r != NULL && (uint8_t *) r >= mem + 8 && (uint8_t *) r < mem + 8 + size,
		  "raft_init: the core lives inside the caller's block");
	free(mem);

	/* a much smaller log needs less memory */
	{
		raft_options small = opts;

		small.log_capacity_entries = 8;
		small.log_capacity_bytes = 256;
		small.max_entry_bytes = 64;
		CHECK(raft_size(&small) > 0 && raft_size(&small) < size,
			  "raft_size grows with the log capacity");
	}
}

/* ----------------------------------------------------------------
 *		raft_load
 * ----------------------------------------------------------------
 */

#define LOAD_MAX 8

/* What a test hands to raft_load. */
typedef struct load_args
{
	raft_hard_state hs;
	raft_snapshot_meta base;
	raft_entry	entries[LOAD_MAX];
	uint8_t		data[LOAD_MAX][16];
	size_t		n;
	raft_index_t applied;
} load_args;

/*
 * A valid load: base 5 (term 2, config {1,2,3}), entries 6..9 of terms
 * 2, 3, 3, 4 with pattern payloads of 3 bytes (entry 8 is empty), hard
 * state term 5, vote 2, commit 8, applied 6.
 */
static load_args
valid_load(void)
{
	static const raft_id_t ids[] = {1, 2, 3};
	static const raft_term_t terms[] = {2, 3, 3, 4};
	load_args	a;
	size_t		i;

	memset(&a, 0, sizeof(a));
	a.base.index = 5;
	a.base.term = 2;
	a.base.config = voters(ids, 3);
	a.n = 4;
	for (i = 0; i < a.n; i++)
	{
		raft_entry *e = &a.entries[i];

		e->index = 6 + i;
		e->term = terms[i];
		e->type = RAFT_ENTRY_NORMAL;
		e->len = i == 2 ? 0 : 3;
		fill_pattern(a.data[i], e->index, e->term, e->len);
		e->data = NULL;			/* do_load() points it into the caller's copy */
	}
	a.hs.term = 5;
	a.hs.vote = 2;
	a.hs.commit = 8;
	a.applied = 6;
	return a;
}

static int
do_load(node *n, load_args *a)
{
	/* entries[].data point into a: refresh them after a was copied */
	size_t		i;

	for (i = 0; i < a->n; i++)
		if (a->entries[i].len > 0)
			a->entries[i].data = a->data[i];
	return raft_load(n->r, &a->hs, &a->base, a->n > 0 ? a->entries : NULL,
					 a->n, a->applied);
}

/* Loads a into a fresh core of node 1 and returns raft_load's code. */
static int
load_fresh(load_args *a)
{
	node		n;
	raft_options opts = test_options(1);
	int			rc;

	if (!node_init(&n, &opts))
		return 1;
	rc = do_load(&n, a);
	node_free(&n);
	return rc;
}

/* raft_load refuses inconsistent persisted state. */
static void
test_load_invalid(void)
{
	load_args	a;

	a = valid_load();
	CHECK_RC(load_fresh(&a), RAFT_OK, "load: the valid state loads (control)");

	a = valid_load();
	a.hs.commit = 10;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: commit beyond the last entry");

	a = valid_load();
	a.hs.commit = 4;
	a.applied = 4;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: commit below the base");

	a = valid_load();
	a.applied = 9;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: applied beyond commit");

	a = valid_load();
	a.applied = 4;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: applied below the base");

	a = valid_load();
	a.entries[2].index = 9;
	a.entries[3].index = 10;
	a.hs.commit = 7;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: non-contiguous entry indexes (6, 7, 9, 10)");

	a = valid_load();
	a.entries[0].index = 5;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: first entry not at base + 1");

	a = valid_load();
	a.entries[0].term = 1;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: first entry's term below the base term");

	a = valid_load();
	a.entries[2].term = 2;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: decreasing entry terms (2, 3, 2, 4)");

	a = valid_load();
	a.hs.term = 3;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: hard state term below the last entry's term");

	a = valid_load();
	a.entries[1].type = 0;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: entry of type 0");

	a = valid_load();
	a.base.config.n_members = RAFT_MAX_MEMBERS + 1;
	CHECK_RC(load_fresh(&a), RAFT_ERR_INVALID_ARG,
			 "load: base configuration of more than RAFT_MAX_MEMBERS");

	{
		node		n;
		raft_options opts = test_options(1);

		a = valid_load();
		if (node_init(&n, &opts))
		{
			CHECK_RC(raft_load(n.r, &a.hs, &a.base, NULL, 2, 5),
					 RAFT_ERR_INVALID_ARG, "load: NULL entries with n_entries 2");
			node_free(&n);
		}
	}
}

/* A valid load restores term, vote, commit, applied and the log. */
static void
test_load_valid(void)
{
	load_args	a = valid_load();
	node		n;
	raft_options opts = test_options(1);
	raft_status st;
	raft_ready	rd;
	raft_entry	e;
	raft_index_t i;
	bool		same;

	if (!CHECK(node_init(&n, &opts), "load: fresh core for a valid load"))
		return;
	CHECK_RC(do_load(&n, &a), RAFT_OK, "load: valid state loads");
	/* the core must have copied the payloads */
	memset(a.data, 0xEE, sizeof(a.data));

	st = status_of(&n);
	CHECK_U64(st.term, 5, "load: term restored");
	CHECK_U64(st.vote, 2, "load: vote restored");
	CHECK_U64(st.commit_index, 8, "load: commit restored");
	CHECK_U64(st.applied_index, 6, "load: applied restored");
	CHECK_U64(st.first_index, 6, "load: first index is base + 1");
	CHECK_U64(st.last_index, 9, "load: last index restored");
	CHECK_U64(st.last_term, 4, "load: last term restored");
	CHECK(st.role == RAFT_FOLLOWER && st.leader == RAFT_NO_NODE,
		  "load: starts as a follower that knows no leader");
	CHECK(st.config.n_members == 3 && st.config.members[1].id == 2 &&
		  st.config.members[1].voter, "load: base configuration in force");
	CHECK_U64(raft_term_at(n.r, 5), 2, "load: term_at(base) is the base term");
	CHECK_U64(raft_term_at(n.r, 7), 3, "load: term_at(7) is 3");

	same = true;
	for (i = 6; i <= 9; i++)
	{
		uint32_t	len = i == 8 ? 0 : 3;

		if (raft_entry_get(n.r, i, &e) != RAFT_OK || e.index != i ||
			!has_pattern(&e, len))
			same = false;
	}
	CHECK(same, "load: the core keeps its own copy of every entry");

	CHECK(raft_has_ready(n.r), "load: committed but unapplied entries make a ready");
	raft_ready_get(n.r, &rd);
	CHECK(rd.apply_from == 7 && rd.apply_to == 8,
		  "load: ready applies applied+1..commit (7..8)");
	if (rd.apply_from != 7 || rd.apply_to != 8)
		diag("apply %llu..%llu", (unsigned long long) rd.apply_from,
			 (unsigned long long) rd.apply_to);
	CHECK(rd.persist_from > rd.persist_to,
		  "load: loaded entries are not handed out to persist again");
	CHECK(!rd.hard_state_changed, "load: the loaded hard state is not re-persisted");
	CHECK(!rd.snapshot_changed && rd.n_msgs == 0, "load: no snapshot, no messages");
	raft_advance(n.r);
	CHECK(!raft_has_ready(n.r), "load: nothing left after raft_advance");
	CHECK_U64(status_of(&n).applied_index, 8, "load: applied 8 after raft_advance");
	node_free(&n);
}

/* raft_load of an entry with a length but no data (run in a child). */
static int
load_null_data(void)
{
	load_args	a = valid_load();
	node		n;
	raft_options opts = test_options(1);
	int			rc;

	if (!node_init(&n, &opts))
		return 1;
	a.n = 1;
	a.hs.commit = 6;
	a.entries[0].data = NULL;
	/* not do_load(): it would restore the data pointer */
	rc = raft_load(n.r, &a.hs, &a.base, a.entries, a.n, a.applied);
	node_free(&n);
	return rc;
}

/* raft_load refuses an entry of length 3 whose data is NULL, like raft_step does. */
static void
test_load_null_data(void)
{
	int			rc = run_isolated(load_null_data);

	if (!CHECK(rc == RAFT_ERR_INVALID_ARG,
			   "load: an entry with len 3 and NULL data is INVALID_ARG"))
	{
		if (rc == CHILD_CRASHED)
			diag("raft_load crashed instead (raft.h: \"none aborts on bad input\"); "
				 "the sanitizer report is on stderr");
		else
			diag("raft_load returned %d (%s)", rc, raft_strerror(rc));
	}
}

/* ----------------------------------------------------------------
 *		Single-node bootstrap and proposals
 * ----------------------------------------------------------------
 */

/*
 * A node whose campaigns are held (its state machine is being repaired)
 * starts no election however long it waits, and campaigns at the next
 * tick once they are allowed again.
 */
static void
test_hold_campaigns(void)
{
	static const raft_id_t ids[] = {1, 2, 3};
	raft_options opts;
	node		n;
	uint32_t	ticks;

	raft_options_default(&opts, 1, 7);
	if (!CHECK(node_bootstrap(&n, &opts, ids, 3), "hold: loads {1,2,3}"))
		return;
	raft_hold_campaigns(n.r, true);
	for (ticks = 0; ticks < 10 * opts.election_timeout_ticks; ticks++)
		raft_tick(n.r);
	CHECK(status_of(&n).role == RAFT_FOLLOWER && status_of(&n).term == 0,
		  "hold: still a follower in term 0 after ten election timeouts");
	raft_hold_campaigns(n.r, false);
	raft_tick(n.r);
	CHECK(status_of(&n).role == RAFT_PRE_CANDIDATE,
		  "hold: campaigns at the next tick once allowed (role %s)",
		  raft_role_name(status_of(&n).role));
	node_free(&n);
}

/* A one-voter cluster elects itself at once and commits its no-op. */
static void
test_single_node_bootstrap(void)
{
	raft_options opts = test_options(1);
	raft_id_t	self = 1;
	node		n;
	raft_status st;
	raft_ready	rd;
	raft_entry	e;
	raft_index_t idx = 0;

	if (!CHECK(node_bootstrap(&n, &opts, &self, 1), "bootstrap: loads {1}"))
		return;
	CHECK(!raft_has_ready(n.r), "bootstrap: a new node has no ready");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, "x", 1, &idx), RAFT_ERR_NOT_LEADER,
			 "bootstrap: a follower's propose is NOT_LEADER");

	CHECK_RC(raft_campaign_now(n.r), RAFT_OK, "bootstrap: campaign_now");
	st = status_of(&n);
	CHECK(st.role == RAFT_LEADER, "bootstrap: leader at once (role %s)",
		  raft_role_name(st.role));
	CHECK_U64(st.term, 1, "bootstrap: term 1");
	CHECK_U64(st.leader, 1, "bootstrap: knows itself as leader");
	CHECK_U64(st.commit_index, 0, "bootstrap: nothing committed before persisting");

	CHECK(raft_has_ready(n.r), "bootstrap: has a ready");
	raft_ready_get(n.r, &rd);
	CHECK(rd.hard_state_changed && rd.hard_state.term == 1 &&
		  rd.hard_state.vote == 1, "bootstrap: ready persists term 1, vote self");
	CHECK(rd.persist_from == 1 && rd.persist_to == 1,
		  "bootstrap: ready persists entry 1 only");
	CHECK(raft_entry_get(n.r, 1, &e) == RAFT_OK && e.type == RAFT_ENTRY_NOOP &&
		  e.term == 1 && e.index == 1 && e.len == 0,
		  "bootstrap: entry 1 is an empty NOOP of term 1");
	CHECK(rd.apply_from > rd.apply_to, "bootstrap: nothing to apply yet");
	CHECK_U64(rd.n_msgs, 0, "bootstrap: no messages");

	raft_advance(n.r);
	CHECK_U64(status_of(&n).commit_index, 0,
			  "bootstrap: not committed before raft_persisted");
	CHECK_RC(raft_persisted(n.r, 1, 7), RAFT_OK,
			 "bootstrap: raft_persisted with a wrong term is accepted");
	CHECK_U64(status_of(&n).commit_index, 0,
			  "bootstrap: ... but ignored (wrong term commits nothing)");
	CHECK_RC(raft_persisted(n.r, 1, 1), RAFT_OK, "bootstrap: raft_persisted(1, 1)");
	st = status_of(&n);
	CHECK_U64(st.commit_index, 1, "bootstrap: entry 1 commits once persisted");
	CHECK_U64(st.persisted_index, 1, "bootstrap: persisted index 1");

	CHECK(raft_has_ready(n.r), "bootstrap: the commit makes a ready");
	raft_ready_get(n.r, &rd);
	CHECK(rd.apply_from == 1 && rd.apply_to == 1, "bootstrap: ready applies entry 1");
	CHECK(rd.hard_state_changed && rd.hard_state.commit == 1 &&
		  rd.hard_state.term == 1 && rd.hard_state.vote == 1,
		  "bootstrap: ready persists commit 1");
	CHECK(rd.persist_from > rd.persist_to, "bootstrap: no entries to persist again");
	raft_advance(n.r);
	CHECK(!raft_has_ready(n.r), "bootstrap: settled");
	CHECK_U64(status_of(&n).applied_index, 1, "bootstrap: applied 1");
	CHECK_RC(raft_campaign_now(n.r), RAFT_OK, "bootstrap: campaign_now on a leader is a no-op");
	CHECK_U64(status_of(&n).term, 1, "bootstrap: ... and keeps term 1");
	node_free(&n);
}

/* A leader's proposals get consecutive indexes; bad ones are refused. */
static void
test_propose(void)
{
	raft_options opts = test_options(1);
	node		n;
	raft_index_t idx = 0;
	raft_index_t i;
	raft_entry	e;
	uint8_t    *big;
	bool		consecutive = true;
	int			rc;

	opts.max_entry_bytes = 1024;
	opts.log_capacity_bytes = 4096;
	if (!CHECK(single_leader(&n, &opts), "propose: single-node leader"))
		return;

	for (i = 2; i <= 6; i++)
	{
		uint8_t		buf[8];

		fill_pattern(buf, i, 1, (uint32_t) i);
		rc = raft_propose(n.r, RAFT_ENTRY_NORMAL, buf, (uint32_t) i, &idx);
		if (rc != RAFT_OK || idx != i)
			consecutive = false;
	}
	CHECK(consecutive, "propose: five NORMAL entries get indexes 2..6");
	CHECK(raft_entry_get(n.r, 4, &e) == RAFT_OK && e.type == RAFT_ENTRY_NORMAL &&
		  e.term == 1 && has_pattern(&e, 4), "propose: entry 4 reads back as given");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NOOP, NULL, 0, &idx), RAFT_OK,
			 "propose: an empty NOOP is accepted");
	CHECK_U64(idx, 7, "propose: ... at index 7");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 0, NULL), RAFT_OK,
			 "propose: an empty NORMAL entry with a NULL index pointer");
	CHECK_U64(status_of(&n).last_index, 8, "propose: ... appended at 8");

	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_CONFIG, "abc", 3, &idx), RAFT_ERR_INVALID_ARG,
			 "propose: type CONFIG is INVALID_ARG");
	CHECK_RC(raft_propose(n.r, 0, "abc", 3, &idx), RAFT_ERR_INVALID_ARG,
			 "propose: type 0 is INVALID_ARG");
	CHECK_RC(raft_propose(n.r, 99, "abc", 3, &idx), RAFT_ERR_INVALID_ARG,
			 "propose: type 99 is INVALID_ARG");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 3, &idx), RAFT_ERR_INVALID_ARG,
			 "propose: NULL data with len 3 is INVALID_ARG");

	big = calloc(1, opts.max_entry_bytes + 1);
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, big, opts.max_entry_bytes + 1, &idx),
			 RAFT_ERR_TOO_LARGE, "propose: max_entry_bytes + 1 is TOO_LARGE");
	CHECK_U64(status_of(&n).last_index, 8, "propose: refused proposals append nothing");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, big, opts.max_entry_bytes, &idx),
			 RAFT_OK, "propose: exactly max_entry_bytes is accepted");
	free(big);

	drain(&n, NULL);
	CHECK(status_of(&n).commit_index == 9 && n.applied == 9 && n.errors == 0,
		  "propose: all 9 entries commit and apply");
	node_free(&n);
}

/*
 * A restarted single node with uncommitted entries of term 1 wins term 2
 * and commits them with its no-op (thesis 3.6.2).
 */
static void
test_restart_commits_old_entries(void)
{
	static const raft_id_t self[] = {1};
	raft_options opts = test_options(1);
	raft_hard_state hs;
	raft_snapshot_meta base;
	raft_entry	entries[3];
	uint8_t		data[3][8];
	raft_entry	e;
	node		n;
	int			i;
	raft_status st;

	if (!node_init(&n, &opts))
		return;
	memset(&base, 0, sizeof(base));
	base.config = voters(self, 1);
	for (i = 0; i < 3; i++)
	{
		entries[i].index = (raft_index_t) i + 1;
		entries[i].term = 1;
		entries[i].type = i == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_NORMAL;
		entries[i].len = i == 0 ? 0 : 8;
		fill_pattern(data[i], entries[i].index, 1, entries[i].len);
		entries[i].data = i == 0 ? NULL : data[i];
	}
	hs.term = 1;
	hs.vote = 1;
	hs.commit = 1;
	CHECK_RC(raft_load(n.r, &hs, &base, entries, 3, 1), RAFT_OK,
			 "restart: loads 3 entries of term 1, commit 1");
	n.applied = 1;
	CHECK_RC(raft_campaign_now(n.r), RAFT_OK, "restart: campaigns");
	drain(&n, NULL);
	st = status_of(&n);
	CHECK(st.role == RAFT_LEADER && st.term == 2, "restart: leader in term 2");
	CHECK(raft_entry_get(n.r, 4, &e) == RAFT_OK && e.type == RAFT_ENTRY_NOOP &&
		  e.term == 2, "restart: a no-op of term 2 at index 4");
	CHECK(st.commit_index == 4 && n.applied == 4 && n.errors == 0,
		  "restart: the no-op commits the entries of term 1 with it");
	CHECK(raft_entry_get(n.r, 3, &e) == RAFT_OK && has_pattern(&e, 8),
		  "restart: entry 3 kept its payload");
	node_free(&n);
}

/* ----------------------------------------------------------------
 *		The log ring
 * ----------------------------------------------------------------
 */

#define RING_ENTRIES 8
#define RING_BYTES 256
#define RING_ENTRY_MAX 64
#define RING_ROUNDS 4000

/*
 * Slots of a ring of capacity entries kept for a new leader's no-op
 * (log.c): an eighth of them, at least 1 and at most 8.  Proposals and the
 * entries a follower accepts may fill only the others; the no-op and
 * raft_load may fill them all.
 */
static uint32_t
reserved_slots(uint32_t capacity)
{
	uint32_t	reserve = capacity / 8;

	return reserve < 1 ? 1 : (reserve > 8 ? 8 : reserve);
}

/* The small ring: 1 of its 8 slots is reserved, 7 are open to proposals. */
#define RING_RESERVED 1
#define RING_USABLE (RING_ENTRIES - RING_RESERVED)

static raft_options
ring_options(void)
{
	raft_options opts = test_options(1);

	opts.log_capacity_entries = RING_ENTRIES;
	opts.log_capacity_bytes = RING_BYTES;
	opts.max_entry_bytes = RING_ENTRY_MAX;
	return opts;
}

/* What the ring tests expect of every index: its payload length. */
typedef struct ring_state
{
	uint32_t   *len;			/* by index */
	raft_index_t cap;
	int			bad_applies;
	raft_index_t first_bad;
} ring_state;

/* apply_hook: every applied entry must hold the pattern it was proposed with. */
static void
ring_verify_apply(node *n, const raft_entry *e)
{
	ring_state *rs = n->arg;
	uint32_t	want = e->index < rs->cap ? rs->len[e->index] : 0;

	if (e->type == RAFT_ENTRY_NOOP && e->len == 0)
		return;
	if (e->type != RAFT_ENTRY_NORMAL || !has_pattern(e, want))
	{
		if (rs->bad_applies++ == 0)
			rs->first_bad = e->index;
	}
}

/* Every live entry reads back with its pattern. */
static bool
ring_all_intact(node *n, ring_state *rs, raft_index_t *bad)
{
	raft_status st = status_of(n);
	raft_index_t i;

	for (i = st.first_index; i <= st.last_index; i++)
	{
		raft_entry	e;

		if (raft_entry_get(n->r, i, &e) != RAFT_OK ||
			(e.type == RAFT_ENTRY_NORMAL && !has_pattern(&e, rs->len[i])))
		{
			*bad = i;
			return false;
		}
	}
	return true;
}

/* Proposes a pattern entry of len bytes at the next index. */
static int
ring_propose(node *n, ring_state *rs, uint32_t len, raft_index_t *idx)
{
	uint8_t		buf[RING_ENTRY_MAX];
	raft_status st = status_of(n);
	int			rc;

	fill_pattern(buf, st.last_index + 1, st.term, len);
	rc = raft_propose(n->r, RAFT_ENTRY_NORMAL, buf, len, idx);
	if (rc == RAFT_OK && *idx < rs->cap)
		rs->len[*idx] = len;
	return rc;
}

/*
 * A full ring refuses proposals until the caller compacts.  Proposals may
 * fill only the 7 slots that are not reserved for a new leader's no-op.
 */
static void
test_log_full(void)
{
	raft_options opts = ring_options();
	node		n;
	ring_state	rs;
	raft_index_t idx = 0;
	raft_index_t bad = 0;
	raft_snapshot_meta base;
	raft_entry	e;
	int			i;
	int			rc = RAFT_OK;

	memset(&rs, 0, sizeof(rs));
	rs.cap = 64;
	rs.len = calloc(rs.cap, sizeof(uint32_t));
	if (!CHECK(single_leader(&n, &opts), "ring: single-node leader with an 8-entry, 256-byte log"))
	{
		free(rs.len);
		return;
	}
	n.arg = &rs;
	n.on_apply = ring_verify_apply;

	/* by entries: the no-op plus 6 more fill the 7 slots open to proposals */
	CHECK_U64(reserved_slots(RING_ENTRIES), RING_RESERVED,
			  "ring: an 8-slot ring reserves 1 slot (8 / 8)");
	for (i = 0; i < RING_USABLE - 1; i++)
		if ((rc = ring_propose(&n, &rs, 1, &idx)) != RAFT_OK)
			break;
	if (!CHECK(rc == RAFT_OK && idx == RING_USABLE,
			   "ring: 6 one-byte entries fit after the no-op (indexes 2..7)"))
		diag("proposal %d: %s, last index %llu", i + 1, raft_strerror(rc),
			 (unsigned long long) idx);
	CHECK_RC(ring_propose(&n, &rs, 1, &idx), RAFT_ERR_LOG_FULL,
			 "ring: a 7th proposal is LOG_FULL (the 8th slot is reserved)");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 0, &idx), RAFT_ERR_LOG_FULL,
			 "ring: even an empty 7th proposal is LOG_FULL");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 2, NULL, 0, &idx),
			 RAFT_ERR_LOG_FULL,
			 "ring: a configuration change may not take the reserved slot either");
	CHECK_U64(status_of(&n).last_index, RING_USABLE,
			  "ring: refused proposals append nothing (the reserved slot stays free)");
	CHECK(status_of(&n).config.n_members == 1,
		  "ring: the refused configuration change is not in force");
	CHECK_RC(raft_compact(n.r, 1), RAFT_OK, "ring: compact the applied no-op");
	CHECK_RC(ring_propose(&n, &rs, 1, &idx), RAFT_OK,
			 "ring: compaction frees a slot even before persisting the rest");
	CHECK_U64(idx, 8, "ring: ... for entry 8");
	CHECK_RC(ring_propose(&n, &rs, 1, &idx), RAFT_ERR_LOG_FULL,
			 "ring: ... and with entries 2..8 held, the next proposal is LOG_FULL again");
	CHECK_RC(raft_compact(n.r, 2), RAFT_ERR_INVALID_ARG,
			 "ring: compact beyond applied is INVALID_ARG");
	CHECK_RC(raft_compact(n.r, 100), RAFT_ERR_INVALID_ARG,
			 "ring: compact beyond the last index is INVALID_ARG");
	CHECK_U64(status_of(&n).first_index, 2, "ring: refused compactions drop nothing");

	drain(&n, NULL);
	CHECK(n.errors == 0 && status_of(&n).commit_index == 8 && n.applied == 8,
		  "ring: everything commits and applies");
	CHECK(rs.bad_applies == 0, "ring: applied entries hold what was proposed");
	CHECK_RC(raft_compact(n.r, 8), RAFT_OK, "ring: compact everything applied");
	raft_get_base(n.r, &base);
	CHECK(base.index == 8 && base.term == 1, "ring: get_base reports index 8, term 1");
	CHECK(base.config.n_members == 1 && base.config.members[0].id == 1 &&
		  base.config.members[0].voter, "ring: get_base reports the configuration {1}");
	CHECK_RC(raft_entry_get(n.r, 8, &e), RAFT_ERR_COMPACTED,
			 "ring: entry_get of the base index is COMPACTED");
	CHECK_RC(raft_entry_get(n.r, 3, &e), RAFT_ERR_COMPACTED,
			 "ring: entry_get of a compacted index is COMPACTED");
	CHECK_RC(raft_entry_get(n.r, 9, &e), RAFT_ERR_UNAVAILABLE,
			 "ring: entry_get beyond the last index is UNAVAILABLE");
	CHECK_U64(raft_term_at(n.r, 8), 1, "ring: term_at(base) still known");
	CHECK_RC(raft_compact(n.r, 5), RAFT_OK, "ring: compact below the base is a no-op");
	raft_get_base(n.r, &base);
	CHECK_U64(base.index, 8, "ring: ... and the base stays at 8");

	/* by bytes: four 64-byte entries fill the 256-byte arena */
	for (i = 0; i < 4; i++)
		if ((rc = ring_propose(&n, &rs, RING_ENTRY_MAX, &idx)) != RAFT_OK)
			break;
	CHECK(rc == RAFT_OK && idx == 12, "ring: four 64-byte entries fit in 256 bytes");
	CHECK_RC(ring_propose(&n, &rs, 1, &idx), RAFT_ERR_LOG_FULL,
			 "ring: one more byte is LOG_FULL (arena), with 3 slots still open");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 0, &idx), RAFT_OK,
			 "ring: ... while an empty entry, which takes no arena space, fits");
	CHECK_U64(idx, 13, "ring: ... at index 13");
	CHECK(ring_all_intact(&n, &rs, &bad), "ring: the full arena reads back intact");
	drain(&n, NULL);
	CHECK_RC(raft_compact(n.r, 9), RAFT_OK, "ring: compact the first 64-byte entry");
	CHECK_RC(ring_propose(&n, &rs, RING_ENTRY_MAX, &idx), RAFT_OK,
			 "ring: after compacting, a 64-byte entry fits again (wraps)");
	CHECK_U64(idx, 14, "ring: ... at index 14");
	CHECK(ring_all_intact(&n, &rs, &bad), "ring: the wrapped arena reads back intact");
	drain(&n, NULL);
	CHECK(n.errors == 0 && rs.bad_applies == 0 && n.applied == 14,
		  "ring: everything applies intact");
	free(rs.len);
	node_free(&n);
}

/*
 * The reserve scales with the ring: capacity / 8 slots, at least 1 and at
 * most 8.  After its no-op, a single-node leader can propose exactly
 * capacity - reserve - 1 entries; compacting the no-op makes room for one
 * more.
 */
static void
test_log_reserve(void)
{
	static const uint32_t caps[] = {2, 7, 8, 9, 16, 63, 64, 65, 100, 4096};
	size_t		c;

	for (c = 0; c < sizeof(caps) / sizeof(caps[0]); c++)
	{
		raft_options opts = test_options(1);
		uint32_t	cap = caps[c];
		uint32_t	want = cap - reserved_slots(cap) - 1;
		uint32_t	fitted = 0;
		raft_index_t idx = 0;
		node		n;
		int			rc;

		opts.log_capacity_entries = cap;
		opts.log_capacity_bytes = RING_BYTES;
		opts.max_entry_bytes = RING_ENTRY_MAX;
		if (!CHECK(single_leader(&n, &opts), "reserve: single-node leader, %u-slot ring", cap))
			continue;
		while ((rc = raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 0, &idx)) == RAFT_OK &&
			   fitted < cap)
			fitted++;
		if (!CHECK(fitted == want && rc == RAFT_ERR_LOG_FULL,
				   "reserve: %u slots, %u reserved: %u proposals fit after the no-op",
				   cap, reserved_slots(cap), want))
			diag("%u fitted, then %s", fitted, raft_strerror(rc));
		CHECK(raft_compact(n.r, 1) == RAFT_OK &&
			  raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 0, &idx) == RAFT_OK &&
			  idx == want + 2 &&
			  raft_propose(n.r, RAFT_ENTRY_NORMAL, NULL, 0, &idx) == RAFT_ERR_LOG_FULL,
			  "reserve: %u slots: compacting the no-op frees exactly one more", cap);
		drain(&n, NULL);
		CHECK(n.errors == 0 && n.applied == want + 2,
			  "reserve: %u slots: all %u entries commit", cap, want + 2);
		node_free(&n);
	}
}

/*
 * Thousands of proposals of 0..64 bytes, compacting as they apply, so that
 * the slot ring and the arena wrap around many times: every entry must
 * read back byte for byte when appended, while it waits and when applied,
 * and the ring must refuse a proposal only when it is really full: when
 * its 7 slots open to proposals are taken, or its arena has no room.  The
 * reserved 8th slot must never be taken by a proposal.
 */
static void
test_log_wraparound(void)
{
	raft_options opts = ring_options();
	node		n;
	ring_state	rs;
	uint64_t	seed = 0x1234567887654321ULL;
	int			round;
	int			proposed = 0;
	int			full = 0;
	int			wraps = 0;
	int			spurious_full = 0;
	int			full_slots = 0;
	int			over_full = 0;
	int			bad_append = 0;
	int			bad_live = 0;
	int			bad_compact = 0;
	raft_index_t first_bad = 0;
	const uint8_t *last_ptr = NULL;

	memset(&rs, 0, sizeof(rs));
	rs.cap = RING_ROUNDS * 8 + 16;
	rs.len = calloc(rs.cap, sizeof(uint32_t));
	if (!CHECK(single_leader(&n, &opts), "wrap: single-node leader"))
	{
		free(rs.len);
		return;
	}
	n.arg = &rs;
	n.on_apply = ring_verify_apply;

	for (round = 0; round < RING_ROUNDS; round++)
	{
		int			batch = 1 + (int) (rnd(&seed) % 6);
		int			b;
		raft_status st;
		raft_index_t keep;
		raft_index_t bad = 0;

		for (b = 0; b < batch; b++)
		{
			uint32_t	len = (uint32_t) (rnd(&seed) % (RING_ENTRY_MAX + 1));
			raft_index_t idx = 0;
			raft_entry	e;
			int			rc;
			uint64_t	live = 0;
			raft_index_t i;
			raft_index_t held;

			st = status_of(&n);
			held = st.last_index - st.first_index + 1;
			for (i = st.first_index; i <= st.last_index; i++)
				live += rs.len[i];
			rc = ring_propose(&n, &rs, len, &idx);
			if (rc == RAFT_OK && held >= RING_USABLE)
			{
				if (over_full++ == 0)
					diag("a proposal took slot %llu of %d (the reserved one)",
						 (unsigned long long) held + 1, RING_ENTRIES);
			}
			if (rc == RAFT_ERR_LOG_FULL)
			{
				full++;
				if (held >= RING_USABLE)
					full_slots++;

				/*
				 * A ring of C bytes that refuses len <= M bytes holds more
				 * than C - 2M live bytes (at most M - 1 are lost at the end
				 * of the arena, and the hole is shorter than len).
				 */
				if (held < RING_USABLE &&
					live + 2 * RING_ENTRY_MAX <= RING_BYTES)
				{
					if (spurious_full++ == 0)
						diag("LOG_FULL with %llu entries, %llu live bytes, len %u",
							 (unsigned long long) held,
							 (unsigned long long) live, len);
				}
				break;
			}
			if (rc != RAFT_OK || idx != st.last_index + 1)
			{
				if (bad_append++ == 0)
					diag("propose of %u bytes: %s, index %llu", len,
						 raft_strerror(rc), (unsigned long long) idx);
				break;
			}
			proposed++;
			if (raft_entry_get(n.r, idx, &e) != RAFT_OK || !has_pattern(&e, len))
			{
				if (bad_append++ == 0)
					first_bad = idx;
			}
			else if (len > 0)
			{
				if (last_ptr != NULL && e.data < last_ptr)
					wraps++;
				last_ptr = e.data;
			}
			if (!ring_all_intact(&n, &rs, &bad) && bad_live++ == 0)
				diag("entry %llu damaged by appending entry %llu",
					 (unsigned long long) bad, (unsigned long long) idx);
		}
		drain(&n, NULL);

		/* compact, leaving 0..2 applied entries in the log */
		st = status_of(&n);
		keep = rnd(&seed) % 3;
		if (st.applied_index > keep && st.applied_index - keep >= st.first_index)
		{
			if (raft_compact(n.r, st.applied_index - keep) != RAFT_OK)
				bad_compact++;
		}
		if (!ring_all_intact(&n, &rs, &bad) && bad_live++ == 0)
			diag("entry %llu damaged by compaction", (unsigned long long) bad);
	}
	drain(&n, NULL);

	CHECK(proposed > RING_ROUNDS, "wrap: %d entries proposed", proposed);
	CHECK(wraps > 100, "wrap: the arena wrapped around %d times", wraps);
	CHECK(full > 0, "wrap: the ring was found full %d times", full);
	CHECK(full_slots > 0, "wrap: %d times by its %d open slots", full_slots, RING_USABLE);
	CHECK(spurious_full == 0, "wrap: LOG_FULL only when the ring is really full (%d spurious)",
		  spurious_full);
	CHECK(over_full == 0, "wrap: no proposal takes the reserved slot (%d did)", over_full);
	if (!CHECK(bad_append == 0, "wrap: every entry reads back right after it is appended"))
		diag("%d bad, first at index %llu", bad_append, (unsigned long long) first_bad);
	CHECK(bad_live == 0, "wrap: entries in the log stay intact (%d damaged)", bad_live);
	if (!CHECK(rs.bad_applies == 0, "wrap: every applied entry holds its payload"))
		diag("%d bad, first at index %llu", rs.bad_applies,
			 (unsigned long long) rs.first_bad);
	CHECK(n.errors == 0 && n.applied == status_of(&n).last_index &&
		  n.applied == (raft_index_t) proposed + 1,
		  "wrap: all %d entries applied, in order", proposed);
	CHECK(bad_compact == 0, "wrap: every compaction up to applied succeeds");
	free(rs.len);
	node_free(&n);
}

#define FOLLOWER_STEPS 1500
#define FOLLOWER_BATCH 6

/*
 * The follower ring test: a model of the leader's log (term and payload
 * length by index, payloads from pattern_byte) and what the follower said.
 */
typedef struct model_entry
{
	raft_term_t term;
	uint32_t	len;
} model_entry;

typedef struct follower_run
{
	model_entry *log;			/* by index; log[0] is the base of index 0 */
	raft_index_t last;
	raft_index_t cap;
	raft_index_t commit;		/* the leader's commit index */
	bool		resp_seen;		/* the last APPEND_RESP */
	bool		resp_reject;
	raft_index_t resp_index;
	int			bad_applies;
	raft_index_t first_bad;
} follower_run;

static void
follower_ready(node *n, const raft_ready *rd)
{
	follower_run *fr = n->arg;
	size_t		k;

	for (k = 0; k < rd->n_msgs; k++)
		if (rd->msgs[k].type == RAFT_MSG_APPEND_RESP)
		{
			fr->resp_seen = true;
			fr->resp_reject = rd->msgs[k].reject;
			fr->resp_index = rd->msgs[k].index;
		}
}

/* apply_hook: committed entries never change, so the model's must match. */
static void
follower_apply(node *n, const raft_entry *e)
{
	follower_run *fr = n->arg;

	if (e->index > fr->last || e->term != fr->log[e->index].term ||
		!has_pattern(e, fr->log[e->index].len))
	{
		if (fr->bad_applies++ == 0)
			fr->first_bad = e->index;
	}
}

/* The last index at which the follower's log agrees with the model. */
static raft_index_t
follower_match(node *f, const follower_run *fr)
{
	raft_status st = status_of(f);
	raft_index_t p = st.last_index < fr->last ? st.last_index : fr->last;

	while (p > st.first_index - 1 && raft_term_at(f->r, p) != fr->log[p].term)
		p--;
	return p;
}

/* Sends the follower up to max_n model entries after prev, as leader 1 of term. */
static bool
follower_send(node *f, follower_run *fr, raft_term_t term, raft_index_t prev,
			  uint32_t max_n)
{
	raft_entry	ents[FOLLOWER_BATCH];
	uint8_t		bufs[FOLLOWER_BATCH][RING_ENTRY_MAX];
	raft_msg	m;
	uint32_t	n = 0;
	int			rc;

	while (n < max_n && n < FOLLOWER_BATCH && prev + n < fr->last)
	{
		raft_index_t idx = prev + n + 1;

		ents[n].index = idx;
		ents[n].term = fr->log[idx].term;
		ents[n].type = RAFT_ENTRY_NORMAL;
		ents[n].len = fr->log[idx].len;
		fill_pattern(bufs[n], idx, ents[n].term, ents[n].len);
		ents[n].data = bufs[n];
		n++;
	}
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = term;
	m.index = prev;
	m.log_term = fr->log[prev].term;
	m.commit = fr->commit;
	m.n_entries = n;
	m.entries = n > 0 ? ents : NULL;
	fr->resp_seen = false;
	rc = raft_step(f->r, &m);
	drain(f, NULL);
	if (rc != RAFT_OK || !fr->resp_seen || fr->resp_reject ||
		fr->resp_index < prev || fr->resp_index > prev + n)
	{
		diag("APPEND prev %llu, %u entries: rc %d, resp %d, reject %d, index %llu",
			 (unsigned long long) prev, n, rc, fr->resp_seen, fr->resp_reject,
			 (unsigned long long) fr->resp_index);
		return false;
	}
	return true;
}

/*
 * A follower with the small ring receives entries of 0..64 bytes from a
 * leader that now and then is replaced by one of a new term whose log
 * differs after the commit index.  The follower must truncate its
 * conflicting suffix, accept what fits (never more than the 7 slots that
 * are not reserved), and end up holding exactly the leader's log, byte for
 * byte, across many wrap-arounds of its arena.
 */
static void
test_follower_ring(void)
{
	static const raft_id_t ids[] = {1, 2};
	raft_options opts = ring_options();
	node		f;
	follower_run fr;
	uint64_t	seed = 0xC0FFEE;
	raft_term_t term = 1;
	int			step;
	int			truncations = 0;
	int			stuck = 0;
	int			mismatched = 0;
	int			bad_compact = 0;
	int			at_limit = 0;
	int			over_full = 0;

	opts.id = 2;
	memset(&fr, 0, sizeof(fr));
	fr.cap = FOLLOWER_STEPS * 4 + 16;
	fr.log = calloc(fr.cap, sizeof(model_entry));
	if (!CHECK(node_bootstrap(&f, &opts, ids, 2), "follower ring: node 2 of {1,2}"))
	{
		free(fr.log);
		return;
	}
	f.arg = &fr;
	f.on_ready = follower_ready;
	f.on_apply = follower_apply;

	for (step = 0; step < FOLLOWER_STEPS; step++)
	{
		uint32_t	k = 1 + (uint32_t) (rnd(&seed) % 4);
		uint32_t	i;
		int			tries;
		raft_status st;

		if (step > 0 && rnd(&seed) % 5 == 0)
		{
			/* a new leader whose log diverges after some index >= commit */
			raft_index_t cut = fr.commit + rnd(&seed) % (fr.last - fr.commit + 1);

			term++;
			if (status_of(&f).last_index > cut)
				truncations++;
			fr.last = cut;
		}
		for (i = 0; i < k; i++)
		{
			fr.last++;
			fr.log[fr.last].term = term;
			fr.log[fr.last].len = (uint32_t) (rnd(&seed) % (RING_ENTRY_MAX + 1));
		}

		for (tries = 0; tries < 100; tries++)
		{
			raft_index_t p = follower_match(&f, &fr);

			st = status_of(&f);
			if (p == fr.last && st.last_index == fr.last &&
				st.commit_index == fr.commit)
				break;
			if (!follower_send(&f, &fr, term, p,
							   1 + (uint32_t) (rnd(&seed) % FOLLOWER_BATCH)))
			{
				stuck++;
				break;
			}
			/* the follower holds at most the slots that are not reserved */
			st = status_of(&f);
			if (st.last_index - st.first_index + 1 == RING_USABLE)
				at_limit++;
			else if (st.last_index - st.first_index + 1 > RING_USABLE &&
					 over_full++ == 0)
				diag("step %d: the follower holds entries %llu..%llu", step,
					 (unsigned long long) st.first_index,
					 (unsigned long long) st.last_index);
			/* the leader learns the match; sometimes commit follows */
			if (fr.resp_index > fr.commit && rnd(&seed) % 2 == 0)
				fr.commit = fr.resp_index;
			st = status_of(&f);
			if (st.applied_index >= st.first_index)
			{
				raft_index_t upto = st.applied_index - rnd(&seed) % 3;

				if (upto >= st.first_index && raft_compact(f.r, upto) != RAFT_OK)
					bad_compact++;
			}
		}
		if (tries == 100)
			stuck++;

		/* the follower holds exactly the model's log */
		st = status_of(&f);
		if (st.last_index != fr.last || st.term != term || st.leader != 1)
			mismatched++;
		else
		{
			raft_index_t j;

			for (j = st.first_index; j <= st.last_index; j++)
			{
				raft_entry	e;

				if (raft_entry_get(f.r, j, &e) != RAFT_OK ||
					e.term != fr.log[j].term || !has_pattern(&e, fr.log[j].len))
				{
					if (mismatched++ == 0)
						diag("step %d: entry %llu differs from the leader's", step,
							 (unsigned long long) j);
					break;
				}
			}
		}
		if (stuck > 0 || mismatched > 0)
			break;
	}
	CHECK(step == FOLLOWER_STEPS, "follower ring: %d of %d steps done", step,
		  FOLLOWER_STEPS);
	CHECK(truncations > 50, "follower ring: %d suffixes overwritten", truncations);
	CHECK(stuck == 0, "follower ring: every APPEND is acknowledged and the follower catches up");
	CHECK(mismatched == 0, "follower ring: the follower's log equals the leader's after each step");
	if (!CHECK(fr.bad_applies == 0, "follower ring: every applied entry is the committed one"))
		diag("%d bad, first at %llu", fr.bad_applies, (unsigned long long) fr.first_bad);
	CHECK(f.errors == 0 && f.applied == fr.commit && fr.commit + 10 > fr.last,
		  "follower ring: applied up to the leader's commit (%llu)",
		  (unsigned long long) fr.commit);
	CHECK(bad_compact == 0, "follower ring: compaction up to applied always succeeds");
	CHECK(at_limit > 0 && over_full == 0,
		  "follower ring: the follower filled its %d open slots %d times, the reserved one never",
		  RING_USABLE, at_limit);
	free(fr.log);
	node_free(&f);
}

/*
 * Loads into n (initialised, not loaded) entries 1..count of term 1, each
 * of 4 pattern bytes, under hard state term 1 with the given commit (also
 * the applied index), and the configuration of voters ids.
 */
static int
load_term1_entries(node *n, const raft_id_t *ids, uint32_t n_ids,
				   uint32_t count, raft_index_t commit)
{
	raft_hard_state hs;
	raft_snapshot_meta base;
	raft_entry	entries[RING_ENTRIES];
	uint8_t		data[RING_ENTRIES][4];
	uint32_t	i;
	int			rc;

	if (count > RING_ENTRIES)
		return RAFT_ERR_INVALID_ARG;
	memset(&base, 0, sizeof(base));
	base.config = voters(ids, n_ids);
	for (i = 0; i < count; i++)
	{
		entries[i].index = i + 1;
		entries[i].term = 1;
		entries[i].type = RAFT_ENTRY_NORMAL;
		entries[i].len = 4;
		fill_pattern(data[i], i + 1, 1, 4);
		entries[i].data = data[i];
	}
	hs.term = 1;
	hs.vote = RAFT_NO_NODE;
	hs.commit = commit;
	rc = raft_load(n->r, &hs, &base, count > 0 ? entries : NULL, count, commit);
	if (rc == RAFT_OK)
		n->applied = commit;
	return rc;
}

/* Do entries from..to of n hold what load_term1_entries gave them? */
static bool
term1_entries_intact(const node *n, raft_index_t from, raft_index_t to)
{
	raft_index_t i;

	for (i = from; i <= to; i++)
	{
		raft_entry	e;

		if (raft_entry_get(n->r, i, &e) != RAFT_OK || e.term != 1 ||
			e.type != RAFT_ENTRY_NORMAL || !has_pattern(&e, 4))
			return false;
	}
	return true;
}

/*
 * A node holding 7 uncommitted entries of term 1 -- the most a follower
 * can hold in an 8-slot ring -- wins an election.  Entries of earlier
 * terms commit only through one of the current term (thesis 3.6.2), so
 * its no-op goes into the reserved slot, and then everything commits;
 * otherwise nothing could ever be applied, compacted or proposed.
 */
static void
test_full_log_leader(void)
{
	static const raft_id_t self[] = {1};
	raft_options opts = ring_options();
	node		n;
	raft_status st;
	raft_entry	e;
	raft_index_t idx = 0;
	uint32_t	i;

	if (!node_init(&n, &opts))
		return;
	CHECK_RC(load_term1_entries(&n, self, 1, RING_USABLE, 0), RAFT_OK,
			 "full log: loads 7 uncommitted entries of term 1 into an 8-slot ring");
	CHECK_RC(raft_campaign_now(n.r), RAFT_OK, "full log: campaigns");
	drain(&n, NULL);
	st = status_of(&n);
	CHECK(st.role == RAFT_LEADER && st.term == 2, "full log: leader in term 2");
	CHECK(raft_entry_get(n.r, RING_ENTRIES, &e) == RAFT_OK &&
		  e.type == RAFT_ENTRY_NOOP && e.term == 2 && e.len == 0,
		  "full log: its no-op of term 2 takes the reserved slot (index 8)");
	if (!CHECK(st.commit_index == RING_ENTRIES && n.applied == RING_ENTRIES &&
			   n.errors == 0,
			   "full log: the new leader commits and applies the entries of term 1 with it"))
	{
		diag("commit %llu, applied %llu, last index %llu",
			 (unsigned long long) st.commit_index,
			 (unsigned long long) n.applied,
			 (unsigned long long) st.last_index);
		diag("propose: %s; compact(1): %s; read_index: %s",
			 raft_strerror(raft_propose(n.r, RAFT_ENTRY_NORMAL, "z", 1, &idx)),
			 raft_strerror(raft_compact(n.r, 1)),
			 raft_strerror(raft_read_index(n.r, 1)));
	}
	CHECK(term1_entries_intact(&n, 1, RING_USABLE),
		  "full log: entries 1..7 kept their payloads");
	for (i = 0; i < 3 * opts.election_timeout_ticks; i++)
	{
		raft_tick(n.r);
		drain(&n, NULL);
	}
	st = status_of(&n);
	CHECK(st.role == RAFT_LEADER && st.last_index == RING_ENTRIES && n.errors == 0,
		  "full log: ticks append no second no-op (the leader has an entry of its term)");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, "z", 1, &idx), RAFT_ERR_LOG_FULL,
			 "full log: with all 8 slots taken, a proposal is LOG_FULL");
	CHECK_RC(raft_compact(n.r, RING_ENTRIES), RAFT_OK,
			 "full log: the caller can compact everything");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, "z", 1, &idx), RAFT_OK,
			 "full log: ... and propose again");
	CHECK_U64(idx, RING_ENTRIES + 1, "full log: ... at index 9");
	drain(&n, NULL);
	CHECK(status_of(&n).commit_index == RING_ENTRIES + 1 && n.applied == RING_ENTRIES + 1 &&
		  n.errors == 0, "full log: entry 9 commits and applies");
	node_free(&n);
}

/*
 * A leader elected with all 8 slots taken (raft_load may fill the reserved
 * one too: it gives back what was persisted) has no room for its no-op.
 * It retries on every tick; the first tick after the caller compacts
 * appends it, into the reserved slot when that is the only one free.
 */
static void
test_full_log_noop_retry(void)
{
	static const raft_id_t self[] = {1};
	raft_options opts = ring_options();
	node		n;
	raft_status st;
	raft_entry	e;
	raft_index_t idx = 0;
	uint32_t	i;
	bool		held = true;

	if (!node_init(&n, &opts))
		return;
	CHECK_RC(load_term1_entries(&n, self, 1, RING_ENTRIES, 1), RAFT_OK,
			 "noop retry: raft_load fills all 8 slots (entries 1..8 of term 1, commit 1)");
	CHECK_RC(raft_campaign_now(n.r), RAFT_OK, "noop retry: campaigns");
	drain(&n, NULL);
	st = status_of(&n);
	CHECK(st.role == RAFT_LEADER && st.term == 2 && st.last_index == RING_ENTRIES &&
		  st.last_term == 1, "noop retry: leader in term 2, with no room for its no-op");
	for (i = 0; i < 2 * opts.election_timeout_ticks; i++)
	{
		raft_tick(n.r);
		drain(&n, NULL);
		st = status_of(&n);
		if (st.role != RAFT_LEADER || st.last_index != RING_ENTRIES || st.commit_index != 1)
			held = false;
	}
	CHECK(held && n.errors == 0,
		  "noop retry: while every slot is taken, ticks append nothing and commit nothing");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, "z", 1, &idx), RAFT_ERR_LOG_FULL,
			 "noop retry: a proposal is LOG_FULL");
	CHECK_RC(raft_compact(n.r, 1), RAFT_OK, "noop retry: the caller compacts entry 1");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, "z", 1, &idx), RAFT_ERR_LOG_FULL,
			 "noop retry: the slot freed is the reserved one: a proposal is still LOG_FULL");
	CHECK_U64(status_of(&n).last_index, RING_ENTRIES,
			  "noop retry: compaction itself appends nothing");
	raft_tick(n.r);
	CHECK(raft_entry_get(n.r, RING_ENTRIES + 1, &e) == RAFT_OK &&
		  e.type == RAFT_ENTRY_NOOP && e.term == 2 && e.len == 0,
		  "noop retry: the next tick appends the no-op of term 2 into the reserved slot (index 9)");
	drain(&n, NULL);
	st = status_of(&n);
	CHECK(st.commit_index == RING_ENTRIES + 1 && n.applied == RING_ENTRIES + 1 &&
		  n.errors == 0, "noop retry: ... and the leader commits and applies entries 2..9");
	CHECK(term1_entries_intact(&n, 2, RING_ENTRIES),
		  "noop retry: entries 2..8 kept their payloads");
	node_free(&n);
}

/* The first message of the given type in n's pending ready (type 0 if none). */
static raft_msg
pending_msg(node *n, uint8_t type)
{
	raft_msg	m;
	raft_ready	rd;
	size_t		k;

	memset(&m, 0, sizeof(m));
	if (!raft_has_ready(n->r))
		return m;
	raft_ready_get(n->r, &rd);
	for (k = 0; k < rd.n_msgs; k++)
		if (rd.msgs[k].type == type)
		{
			m = rd.msgs[k];
			m.entries = NULL;	/* only valid until the core changes */
			break;
		}
	return m;
}

/*
 * Steps into node 2 an APPEND of leader 1 in term: entries prev+1..last of
 * that term (none when last <= prev), NORMAL, 4 pattern bytes each, after
 * (prev, prev_term), with commit.  Puts node 2's APPEND_RESP in *resp
 * (type 0 if it sent none), then drains node 2.
 */
static int
hand_append(node *f, raft_term_t term, raft_index_t prev, raft_term_t prev_term,
			raft_index_t last, raft_index_t commit, raft_msg *resp)
{
	raft_entry	ents[16];
	uint8_t		data[16][4];
	raft_msg	m;
	uint32_t	n = 0;
	int			rc;

	while (prev + n < last && n < 16)
	{
		raft_index_t idx = prev + n + 1;

		ents[n].index = idx;
		ents[n].term = term;
		ents[n].type = RAFT_ENTRY_NORMAL;
		ents[n].len = 4;
		fill_pattern(data[n], idx, term, 4);
		ents[n].data = data[n];
		n++;
	}
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = term;
	m.index = prev;
	m.log_term = prev_term;
	m.commit = commit;
	m.n_entries = n;
	m.entries = n > 0 ? ents : NULL;
	rc = raft_step(f->r, &m);
	*resp = pending_msg(f, RAFT_MSG_APPEND_RESP);
	drain(f, NULL);
	return rc;
}

/*
 * A follower fed entries by hand stores at most the 7 slots that are not
 * reserved, acknowledges exactly up to there (an acceptance, not a
 * rejection: the leader resends the rest), and takes more once the
 * leader's commit lets its caller compact.
 */
static void
test_full_log_follower(void)
{
	static const raft_id_t ids[] = {1, 2};
	raft_options opts = ring_options();
	node		f;
	raft_msg	resp;
	raft_entry	e;
	raft_status st;

	opts.id = 2;
	if (!CHECK(node_bootstrap(&f, &opts, ids, 2), "full follower: node 2 of {1,2}, 8-slot ring"))
		return;
	CHECK_RC(hand_append(&f, 1, 0, 0, RING_ENTRIES, 0, &resp), RAFT_OK,
			 "full follower: takes an APPEND of entries 1..8");
	if (!CHECK(resp.type == RAFT_MSG_APPEND_RESP && !resp.reject &&
			   resp.index == RING_USABLE,
			   "full follower: ... stores and acknowledges exactly 1..7"))
		diag("response type %d, reject %d, index %llu", resp.type, resp.reject,
			 (unsigned long long) resp.index);
	st = status_of(&f);
	CHECK(st.last_index == RING_USABLE &&
		  raft_entry_get(f.r, RING_ENTRIES, &e) == RAFT_ERR_UNAVAILABLE,
		  "full follower: entry 8 is not in its log (the 8th slot is reserved)");
	CHECK(term1_entries_intact(&f, 1, RING_USABLE),
		  "full follower: entries 1..7 hold their payloads");

	CHECK_RC(hand_append(&f, 1, RING_USABLE, 1, RING_ENTRIES, 0, &resp), RAFT_OK,
			 "full follower: takes a resent APPEND of entry 8 alone");
	CHECK(resp.type == RAFT_MSG_APPEND_RESP && !resp.reject && resp.index == RING_USABLE &&
		  status_of(&f).last_index == RING_USABLE,
		  "full follower: ... still stores nothing and acknowledges 7 again");

	CHECK_RC(hand_append(&f, 1, RING_USABLE, 1, RING_USABLE, 3, &resp), RAFT_OK,
			 "full follower: takes an empty APPEND with commit 3");
	st = status_of(&f);
	CHECK(st.commit_index == 3 && f.applied == 3 && resp.index == RING_USABLE && !resp.reject,
		  "full follower: ... commits and applies 1..3");
	CHECK_RC(raft_compact(f.r, 3), RAFT_OK, "full follower: its caller compacts 1..3");
	CHECK_RC(hand_append(&f, 1, RING_USABLE, 1, RING_USABLE + 5, 3, &resp), RAFT_OK,
			 "full follower: takes an APPEND of entries 8..12");
	st = status_of(&f);
	if (!CHECK(resp.type == RAFT_MSG_APPEND_RESP && !resp.reject && resp.index == 10 &&
			   st.first_index == 4 && st.last_index == 10,
			   "full follower: ... stores 8..10, filling 7 slots again, and acknowledges 10"))
		diag("response index %llu, log %llu..%llu", (unsigned long long) resp.index,
			 (unsigned long long) st.first_index, (unsigned long long) st.last_index);
	CHECK(term1_entries_intact(&f, 4, 10) && f.errors == 0,
		  "full follower: entries 4..10 hold their payloads");
	node_free(&f);
}

/* What the full-pair test saw: sends of entry 8 and answers to them. */
typedef struct full_pair_log
{
	int			sends_of_8;		/* APPENDs from node 1 carrying entry 8 */
	int			acks_below_8;	/* APPEND_RESPs from node 2 accepting < 8 */
} full_pair_log;

static void
full_pair_ready(node *n, const raft_ready *rd)
{
	full_pair_log *log = n->arg;
	size_t		k;

	for (k = 0; k < rd->n_msgs; k++)
	{
		const raft_msg *m = &rd->msgs[k];

		if (m->type == RAFT_MSG_APPEND && m->n_entries > 0 &&
			m->index + m->n_entries >= RING_ENTRIES)
			log->sends_of_8++;
		if (m->type == RAFT_MSG_APPEND_RESP && !m->reject && m->index < RING_ENTRIES)
			log->acks_below_8++;
	}
}

/*
 * The same in a cluster of two: both nodes hold 7 uncommitted entries of
 * term 1, the most a follower may hold.  Node 1 wins term 2 and puts its
 * no-op into its reserved slot; but the no-op commits only once a majority
 * -- here node 2 as well -- stores it.  Unless node 2 finds room for the
 * new leader's no-op, the cluster is stuck for good: nothing commits, so
 * nothing can be compacted, so nothing more fits.
 */
static void
test_full_log_two_nodes(void)
{
	static const raft_id_t ids[] = {1, 2};
	raft_options o1 = ring_options();
	raft_options o2 = ring_options();
	node		n1;
	node		n2;
	full_pair_log log;
	raft_status s1;
	raft_status s2;
	raft_entry	e;
	uint32_t	i;
	bool		settled;

	o2.id = 2;
	memset(&log, 0, sizeof(log));
	if (!node_init(&n1, &o1))
		return;
	if (!node_init(&n2, &o2))
	{
		node_free(&n1);
		return;
	}
	n1.arg = n2.arg = &log;
	n1.on_ready = n2.on_ready = full_pair_ready;
	CHECK(load_term1_entries(&n1, ids, 2, RING_USABLE, 0) == RAFT_OK &&
		  load_term1_entries(&n2, ids, 2, RING_USABLE, 0) == RAFT_OK,
		  "full pair: nodes 1 and 2 of {1,2} load 7 uncommitted entries of term 1");
	/* node 2, just started, keeps any lease it gave for an election timeout */
	for (i = 0; i < o2.election_timeout_ticks; i++)
		raft_tick(n2.r);
	CHECK_RC(raft_campaign_now(n1.r), RAFT_OK, "full pair: node 1 campaigns");
	pump(&n1, &n2);
	settled = n1.errors == 0 && n2.errors == 0;
	/* heartbeats and their answers give replication more chances */
	for (i = 0; settled && i < 3 * o1.election_timeout_ticks; i++)
	{
		raft_tick(n1.r);
		pump(&n1, &n2);
		settled = n1.errors == 0 && n2.errors == 0;
	}
	s1 = status_of(&n1);
	s2 = status_of(&n2);
	CHECK(s1.role == RAFT_LEADER && s1.term == 2 && s2.role == RAFT_FOLLOWER &&
		  s2.term == 2 && s2.leader == 1, "full pair: node 1 leads term 2, node 2 follows");
	CHECK(raft_entry_get(n1.r, RING_ENTRIES, &e) == RAFT_OK &&
		  e.type == RAFT_ENTRY_NOOP && e.term == 2,
		  "full pair: the leader's no-op of term 2 is its entry 8");
	if (!CHECK(s1.commit_index == RING_ENTRIES && s2.commit_index == RING_ENTRIES &&
			   n1.applied == RING_ENTRIES && n2.applied == RING_ENTRIES,
			   "full pair: node 2 stores the no-op too, and both commit and apply 1..8"))
		diag("leader commit %llu, follower commit %llu, follower's last index %llu, "
			 "leader's match for node 2 %llu",
			 (unsigned long long) s1.commit_index, (unsigned long long) s2.commit_index,
			 (unsigned long long) s2.last_index,
			 (unsigned long long) s1.progress[1].match_index);
	if (!CHECK(settled, "full pair: the exchange settles (entry 8 is not resent endlessly)"))
		diag("node 1 sent entry 8 %d times and node 2 acknowledged only up to 7 "
			 "%d times, until a pump gave up after 100 rounds",
			 log.sends_of_8, log.acks_below_8);
	node_free(&n1);
	node_free(&n2);
}

/* ----------------------------------------------------------------
 *		Configuration entries
 * ----------------------------------------------------------------
 */

/* Writes a configuration payload in the layout documented in membership.c. */
static size_t
encode_config(uint8_t *buf, uint8_t version, uint32_t n,
			  const raft_id_t *ids, const uint8_t *voter,
			  const void *ctx, uint32_t ctx_len)
{
	uint8_t    *p = buf;
	uint32_t	i;

	*p++ = version;
	p[0] = (uint8_t) n;
	p[1] = (uint8_t) (n >> 8);
	p[2] = (uint8_t) (n >> 16);
	p[3] = (uint8_t) (n >> 24);
	p += 4;
	for (i = 0; i < n; i++)
	{
		p[0] = (uint8_t) ids[i];
		p[1] = (uint8_t) (ids[i] >> 8);
		p[2] = (uint8_t) (ids[i] >> 16);
		p[3] = (uint8_t) (ids[i] >> 24);
		p[4] = voter[i];
		p += 5;
	}
	p[0] = (uint8_t) ctx_len;
	p[1] = (uint8_t) (ctx_len >> 8);
	p[2] = (uint8_t) (ctx_len >> 16);
	p[3] = (uint8_t) (ctx_len >> 24);
	p += 4;
	if (ctx_len > 0)
		memcpy(p, ctx, ctx_len);
	p += ctx_len;
	return (size_t) (p - buf);
}

/* Decodes a copy of buf[0..len) in a heap block of exactly len bytes. */
static int
decode_exact(const uint8_t *buf, size_t len, uint8_t type, raft_config *config,
			 const uint8_t **ctx, uint32_t *ctx_len)
{
	uint8_t    *copy = malloc(len);	/* malloc(0) too: any read is caught */
	raft_entry	e;
	int			rc;

	if (len > 0 && copy == NULL)
	{
		perror("malloc");
		exit(2);
	}
	if (len > 0)
		memcpy(copy, buf, len);
	memset(&e, 0, sizeof(e));
	e.term = 1;
	e.index = 1;
	e.type = type;
	e.len = (uint32_t) len;
	e.data = copy;
	rc = raft_config_decode(&e, config, ctx, ctx_len);
	free(copy);
	return rc;
}

/* Membership changes on a single-node leader, and their errors. */
static void
test_conf_change(void)
{
	static const char ctx[] = "conninfo: host=n2 port=5433";
	raft_options opts = test_options(1);
	node		n;
	raft_index_t idx = 0;
	raft_index_t idx2 = 0;
	raft_entry	e;
	raft_config config;
	const uint8_t *got_ctx = NULL;
	uint32_t	got_len = 0;
	raft_status st;
	uint8_t    *huge;

	if (!CHECK(single_leader(&n, &opts), "conf: single-node leader"))
		return;

	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, RAFT_NO_NODE,
									  NULL, 0, &idx),
			 RAFT_ERR_INVALID_ARG, "conf: node 0 is INVALID_ARG");
	huge = calloc(1, RAFT_MAX_CONF_CONTEXT_BYTES + 1);
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 2, huge,
									  RAFT_MAX_CONF_CONTEXT_BYTES + 1, &idx),
			 RAFT_ERR_INVALID_ARG, "conf: context over RAFT_MAX_CONF_CONTEXT_BYTES is INVALID_ARG");
	free(huge);
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 2, NULL, 5, &idx),
			 RAFT_ERR_INVALID_ARG, "conf: NULL context with length 5 is INVALID_ARG");
	CHECK_RC(raft_propose_conf_change(n.r, 42, 2, NULL, 0, &idx),
			 RAFT_ERR_INVALID_ARG, "conf: unknown change type is INVALID_ARG");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 1, NULL, 0, &idx),
			 RAFT_ERR_ALREADY_MEMBER, "conf: adding an existing member is ALREADY_MEMBER");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_REMOVE, 9, NULL, 0, &idx),
			 RAFT_ERR_UNKNOWN_NODE, "conf: removing an unknown node is UNKNOWN_NODE");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_PROMOTE, 9, NULL, 0, &idx),
			 RAFT_ERR_UNKNOWN_NODE, "conf: promoting an unknown node is UNKNOWN_NODE");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_REMOVE, 1, NULL, 0, &idx),
			 RAFT_ERR_LAST_VOTER, "conf: removing the last voter is LAST_VOTER");
	CHECK_U64(status_of(&n).last_index, 1, "conf: refused changes append nothing");

	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 2, ctx,
									  (uint32_t) sizeof(ctx), &idx),
			 RAFT_OK, "conf: ADD_LEARNER 2 with a context");
	CHECK_U64(idx, 2, "conf: ... at index 2");
	st = status_of(&n);
	CHECK(st.conf_pending, "conf: the change is pending until it commits");
	CHECK(st.config.n_members == 2 && st.config.members[1].id == 2 &&
		  !st.config.members[1].voter,
		  "conf: the new configuration is in force at once (thesis 4.1)");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 3, NULL, 0, &idx2),
			 RAFT_ERR_CONF_PENDING, "conf: a second change while one is uncommitted is CONF_PENDING");
	CHECK_RC(raft_propose(n.r, RAFT_ENTRY_NORMAL, "y", 1, &idx2), RAFT_OK,
			 "conf: normal proposals go on during a change");

	drain(&n, NULL);			/* appends to node 2 are dropped */
	st = status_of(&n);
	CHECK(n.errors == 0 && st.commit_index == 3 && n.applied == 3,
		  "conf: the change commits on the single voter alone");
	CHECK(!st.conf_pending, "conf: no longer pending once committed");

	CHECK(raft_entry_get(n.r, 2, &e) == RAFT_OK && e.type == RAFT_ENTRY_CONFIG,
		  "conf: entry 2 is a CONFIG entry");
	CHECK_RC(raft_config_decode(&e, &config, &got_ctx, &got_len), RAFT_OK,
			 "conf: the committed entry decodes");
	CHECK(config.n_members == 2 &&
		  config.members[0].id == 1 && config.members[0].voter &&
		  config.members[1].id == 2 && !config.members[1].voter,
		  "conf: decoded members are {1 voter, 2 learner}");
	CHECK(got_len == sizeof(ctx) && got_ctx != NULL &&
		  memcmp(got_ctx, ctx, sizeof(ctx)) == 0,
		  "conf: decoded context is byte-identical");
	{
		static const raft_id_t ids[] = {1, 2};
		static const uint8_t vot[] = {1, 0};
		uint8_t		want[128];
		size_t		len = encode_config(want, 1, 2, ids, vot, ctx, sizeof(ctx));

		CHECK(e.len == len && memcmp(e.data, want, len) == 0,
			  "conf: the payload has the documented layout");
	}

	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, 2, NULL, 0, &idx2),
			 RAFT_ERR_ALREADY_MEMBER, "conf: adding a learner twice is ALREADY_MEMBER");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_PROMOTE, 1, NULL, 0, &idx2),
			 RAFT_ERR_ALREADY_MEMBER, "conf: promoting a voter is ALREADY_MEMBER");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_PROMOTE, 2, NULL, 0, &idx2),
			 RAFT_ERR_NOT_CAUGHT_UP,
			 "conf: promoting a learner whose match is behind commit is NOT_CAUGHT_UP");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_REMOVE, 1, NULL, 0, &idx2),
			 RAFT_ERR_LAST_VOTER, "conf: a learner does not save the last voter");
	CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_REMOVE, 2, NULL, 0, &idx2),
			 RAFT_OK, "conf: removing the learner");
	drain(&n, NULL);
	st = status_of(&n);
	CHECK(st.commit_index == idx2 && st.config.n_members == 1 &&
		  st.config.members[0].id == 1, "conf: the removal commits; config {1}");
	node_free(&n);

	/* learners count towards RAFT_MAX_MEMBERS */
	if (CHECK(single_leader(&n, &opts), "conf: a fresh single-node leader"))
	{
		raft_id_t	id;
		bool		added = true;

		for (id = 2; id <= RAFT_MAX_MEMBERS; id++)
		{
			if (raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER, id, NULL, 0,
										 &idx) != RAFT_OK)
				added = false;
			drain(&n, NULL);
		}
		CHECK(added && status_of(&n).config.n_members == RAFT_MAX_MEMBERS,
			  "conf: learners 2..%d join", RAFT_MAX_MEMBERS);
		CHECK_RC(raft_propose_conf_change(n.r, RAFT_CONF_ADD_LEARNER,
										  RAFT_MAX_MEMBERS + 1, NULL, 0, &idx),
				 RAFT_ERR_TOO_MANY_MEMBERS,
				 "conf: member %d is TOO_MANY_MEMBERS", RAFT_MAX_MEMBERS + 1);
		node_free(&n);
	}

	/* a follower cannot change the membership */
	{
		raft_id_t	ids[] = {1, 2};
		node		f;

		if (node_bootstrap(&f, &opts, ids, 2))
		{
			CHECK_RC(raft_propose_conf_change(f.r, RAFT_CONF_ADD_LEARNER, 3,
											  NULL, 0, &idx),
					 RAFT_ERR_NOT_LEADER, "conf: a follower's change is NOT_LEADER");
			node_free(&f);
		}
	}

	/* the leader must first commit an entry of its own term (thesis 4.1) */
	{
		raft_id_t	self = 1;
		node		l;

		if (node_bootstrap(&l, &opts, &self, 1) && raft_campaign_now(l.r) == RAFT_OK)
		{
			CHECK_RC(raft_propose_conf_change(l.r, RAFT_CONF_ADD_LEARNER, 2,
											  NULL, 0, &idx),
					 RAFT_ERR_NOT_COMMITTED_IN_TERM,
					 "conf: a change before the no-op commits is NOT_COMMITTED_IN_TERM");
			node_free(&l);
		}
	}
}

/* raft_config_decode refuses malformed payloads without reading past them. */
static void
test_config_decode(void)
{
	static const raft_id_t ids[] = {1, 2, 3};
	static const uint8_t vot[] = {1, 1, 0};
	static const raft_id_t dup[] = {1, 2, 1};
	static const raft_id_t zero[] = {1, 0, 3};
	static const uint8_t bad_vot[] = {1, 2, 0};
	static const char ctx[] = "ctx!";
	uint8_t		buf[512];
	uint8_t		many[RAFT_MAX_MEMBERS + 1];
	raft_id_t	many_ids[RAFT_MAX_MEMBERS + 1];
	raft_config config;
	const uint8_t *got_ctx = NULL;
	uint32_t	got_len = 99;
	size_t		len;
	size_t		cut;
	bool		all_refused = true;
	uint32_t	i;

	len = encode_config(buf, 1, 3, ids, vot, ctx, 4);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, &got_ctx, &got_len),
			 RAFT_OK, "decode: a well-formed payload decodes (control)");
	CHECK(config.n_members == 3 && config.members[2].id == 3 &&
		  !config.members[2].voter && config.members[1].voter,
		  "decode: members as encoded");
	CHECK_U64(got_len, 4, "decode: context length as encoded");

	len = encode_config(buf, 1, 0, NULL, NULL, NULL, 0);
	got_ctx = (const uint8_t *) "x";
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, &got_ctx, &got_len),
			 RAFT_OK, "decode: an empty configuration without context decodes");
	CHECK(config.n_members == 0 && got_len == 0 && got_ctx == NULL,
		  "decode: ... to no members and a NULL, empty context");
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL), RAFT_OK,
			 "decode: context pointers may be NULL");

	len = encode_config(buf, 2, 3, ids, vot, ctx, 4);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: version byte 2");
	len = encode_config(buf, 0, 3, ids, vot, ctx, 4);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: version byte 0");

	for (i = 0; i <= RAFT_MAX_MEMBERS; i++)
	{
		many_ids[i] = i + 1;
		many[i] = 1;
	}
	len = encode_config(buf, 1, RAFT_MAX_MEMBERS, many_ids, many, NULL, 0);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL), RAFT_OK,
			 "decode: exactly RAFT_MAX_MEMBERS members decode");
	len = encode_config(buf, 1, RAFT_MAX_MEMBERS + 1, many_ids, many, NULL, 0);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: RAFT_MAX_MEMBERS + 1 members");
	len = encode_config(buf, 1, 3, ids, vot, NULL, 0);
	buf[1] = buf[2] = buf[3] = buf[4] = 0xFF;	/* n_members = 2^32 - 1 */
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: member count 0xFFFFFFFF");

	len = encode_config(buf, 1, 3, ids, vot, ctx, 4);
	for (cut = 0; cut < len; cut++)
		if (decode_exact(buf, cut, RAFT_ENTRY_CONFIG, &config, NULL, NULL) !=
			RAFT_ERR_INVALID_ARG)
		{
			if (all_refused)
				diag("a payload truncated to %zu of %zu bytes is accepted", cut, len);
			all_refused = false;
		}
	CHECK(all_refused, "decode: every truncation (0..%zu bytes) is INVALID_ARG", len - 1);

	len = encode_config(buf, 1, 3, ids, vot, ctx, 4);
	buf[len++] = 0;
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: one trailing byte");
	len = encode_config(buf, 1, 3, ids, vot, ctx, 4);
	buf[len - 4 - 4] = 5;		/* context length 5, 4 bytes present */
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: context length beyond the payload");
	len = encode_config(buf, 1, 3, ids, vot, ctx, 4);
	buf[len - 4 - 1] = 0xFF;	/* context length 0xFF000004 */
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: huge context length");

	len = encode_config(buf, 1, 3, dup, vot, NULL, 0);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: duplicate member ids");
	len = encode_config(buf, 1, 3, zero, vot, NULL, 0);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: member id 0");
	len = encode_config(buf, 1, 3, ids, bad_vot, NULL, 0);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_CONFIG, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: voter flag 2");

	len = encode_config(buf, 1, 3, ids, vot, ctx, 4);
	CHECK_RC(decode_exact(buf, len, RAFT_ENTRY_NORMAL, &config, NULL, NULL),
			 RAFT_ERR_INVALID_ARG, "decode: a NORMAL entry is INVALID_ARG");
	{
		raft_entry	e;

		memset(&e, 0, sizeof(e));
		e.type = RAFT_ENTRY_CONFIG;
		e.len = (uint32_t) len;
		e.data = NULL;
		CHECK_RC(raft_config_decode(&e, &config, NULL, NULL), RAFT_ERR_INVALID_ARG,
				 "decode: NULL data with a length is INVALID_ARG");
	}
}

/* ----------------------------------------------------------------
 *		raft_step validation
 * ----------------------------------------------------------------
 */

/* Node 2 of {1,2,3}: entries 1..3 of term 1, term 2, commit 2, applied 2. */
static bool
step_victim(node *n)
{
	static const raft_id_t ids[] = {1, 2, 3};
	raft_options opts = test_options(2);
	raft_hard_state hs;
	raft_snapshot_meta base;
	raft_entry	entries[3];
	uint8_t		data[3][4];
	int			i;

	if (!node_init(n, &opts))
		return false;
	memset(&base, 0, sizeof(base));
	base.config = voters(ids, 3);
	for (i = 0; i < 3; i++)
	{
		entries[i].index = (raft_index_t) i + 1;
		entries[i].term = 1;
		entries[i].type = RAFT_ENTRY_NORMAL;
		entries[i].len = 4;
		fill_pattern(data[i], entries[i].index, 1, 4);
		entries[i].data = data[i];
	}
	hs.term = 2;
	hs.vote = 1;
	hs.commit = 2;
	if (raft_load(n->r, &hs, &base, entries, 3, 2) != RAFT_OK)
	{
		node_free(n);
		return false;
	}
	return true;
}

static bool
same_state(const raft_status *a, const raft_status *b)
{
	return a->role == b->role && a->term == b->term && a->vote == b->vote &&
		a->leader == b->leader && a->first_index == b->first_index &&
		a->last_index == b->last_index && a->last_term == b->last_term &&
		a->commit_index == b->commit_index &&
		a->applied_index == b->applied_index &&
		a->persisted_index == b->persisted_index;
}

/* A valid APPEND from leader 1 in term 7 carrying entry 4 (term 7). */
static raft_msg
good_append(raft_entry *entries, uint32_t n)
{
	raft_msg	m;
	uint32_t	i;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = 7;
	m.index = 3;
	m.log_term = 1;
	m.commit = 3;
	m.n_entries = n;
	m.entries = entries;
	for (i = 0; i < n; i++)
	{
		memset(&entries[i], 0, sizeof(entries[i]));
		entries[i].index = 4 + i;
		entries[i].term = 7;
		entries[i].type = RAFT_ENTRY_NORMAL;
		entries[i].len = 1;
		entries[i].data = (const uint8_t *) "e";
	}
	return m;
}

/* Steps m into the victim: INVALID_ARG, and nothing changes. */
static void
expect_rejected(node *n, const raft_msg *m, const char *what)
{
	raft_status before = status_of(n);
	raft_status after;

	CHECK_RC(raft_step(n->r, m), RAFT_ERR_INVALID_ARG, "step rejects %s", what);
	after = status_of(n);
	CHECK(same_state(&before, &after) && !raft_has_ready(n->r),
		  "step: %s changes nothing", what);
	if (!same_state(&before, &after))
		diag("term %llu -> %llu, last %llu -> %llu, commit %llu -> %llu",
			 (unsigned long long) before.term, (unsigned long long) after.term,
			 (unsigned long long) before.last_index,
			 (unsigned long long) after.last_index,
			 (unsigned long long) before.commit_index,
			 (unsigned long long) after.commit_index);
	/* a message wrongly taken must not spoil the cases after it */
	if (raft_has_ready(n->r))
	{
		raft_ready	rd;

		raft_ready_get(n->r, &rd);
		raft_advance(n->r);
	}
}

/* raft_step refuses malformed messages before acting on any of their fields. */
static void
test_step_invalid(void)
{
	node		n;
	raft_entry	ents[RAFT_MAX_ENTRIES_PER_MSG + 1];
	raft_msg	m;
	raft_status st;
	uint32_t	i;

	if (!CHECK(step_victim(&n), "step: follower 2 of {1,2,3} loaded"))
		return;
	CHECK(!raft_has_ready(n.r), "step: the loaded follower has no ready");
	CHECK_RC(raft_step(n.r, NULL), RAFT_ERR_INVALID_ARG, "step rejects NULL");

	m = good_append(ents, 1);
	m.to = 3;
	expect_rejected(&n, &m, "a message to another node");
	m = good_append(ents, 1);
	m.to = RAFT_NO_NODE;
	expect_rejected(&n, &m, "a message to node 0");
	m = good_append(ents, 1);
	m.from = RAFT_NO_NODE;
	expect_rejected(&n, &m, "a message from node 0");
	m = good_append(ents, 1);
	m.from = 2;
	expect_rejected(&n, &m, "a message from ourselves");
	m = good_append(ents, 0);
	m.type = 0;
	expect_rejected(&n, &m, "message type 0");
	m = good_append(ents, 0);
	m.type = RAFT_MSG_TYPE_MAX + 1;
	expect_rejected(&n, &m, "message type RAFT_MSG_TYPE_MAX + 1");
	m = good_append(ents, 0);
	m.type = 255;
	expect_rejected(&n, &m, "message type 255");

	m = good_append(ents, 1);
	m.type = RAFT_MSG_VOTE;
	expect_rejected(&n, &m, "a VOTE with entries");
	m = good_append(ents, 1);
	m.type = RAFT_MSG_HEARTBEAT;
	expect_rejected(&n, &m, "a HEARTBEAT with entries");
	m = good_append(ents, 1);
	m.type = RAFT_MSG_APPEND_RESP;
	expect_rejected(&n, &m, "an APPEND_RESP with entries");
	m = good_append(ents, 1);
	m.type = RAFT_MSG_SNAPSHOT;
	expect_rejected(&n, &m, "a SNAPSHOT with entries");

	m = good_append(ents, RAFT_MAX_ENTRIES_PER_MSG + 1);
	expect_rejected(&n, &m, "an APPEND of RAFT_MAX_ENTRIES_PER_MSG + 1 entries");
	m = good_append(ents, 1);
	m.entries = NULL;
	expect_rejected(&n, &m, "an APPEND with n_entries 1 and NULL entries");

	m = good_append(ents, 3);
	ents[1].index = 6;
	ents[2].index = 7;
	expect_rejected(&n, &m, "entries 4, 6, 7 (a gap)");
	m = good_append(ents, 2);
	ents[0].index = 3;
	ents[1].index = 4;
	expect_rejected(&n, &m, "entries starting at m->index instead of m->index + 1");
	m = good_append(ents, 2);
	ents[1].index = 4;
	expect_rejected(&n, &m, "a repeated entry index");
	m = good_append(ents, 2);
	ents[1].term = 8;
	expect_rejected(&n, &m, "an entry term above the message term");
	m = good_append(ents, 2);
	ents[0].term = 5;
	ents[1].term = 4;
	expect_rejected(&n, &m, "decreasing entry terms");
	m = good_append(ents, 1);
	m.log_term = 6;
	ents[0].term = 5;
	expect_rejected(&n, &m, "an entry term below the previous entry's term");
	m = good_append(ents, 1);
	ents[0].type = 0;
	expect_rejected(&n, &m, "an entry of type 0");
	m = good_append(ents, 1);
	ents[0].type = RAFT_ENTRY_CONFIG + 1;
	expect_rejected(&n, &m, "an entry of an unknown type");
	m = good_append(ents, 1);
	ents[0].data = NULL;
	expect_rejected(&n, &m, "an entry of length 1 with NULL data");

	m = good_append(ents, 0);
	m.type = RAFT_MSG_SNAPSHOT;
	m.index = 10;
	m.config.n_members = RAFT_MAX_MEMBERS + 1;
	for (i = 0; i < RAFT_MAX_MEMBERS; i++)
		m.config.members[i].id = i + 1;
	expect_rejected(&n, &m, "a SNAPSHOT whose config has RAFT_MAX_MEMBERS + 1 members");

	/* control: the same APPEND, well formed, is taken */
	m = good_append(ents, 2);
	CHECK_RC(raft_step(n.r, &m), RAFT_OK, "step: a well-formed APPEND is accepted (control)");
	st = status_of(&n);
	CHECK(st.term == 7 && st.leader == 1 && st.last_index == 5 &&
		  st.commit_index == 3, "step: ... and adopts term 7, leader 1, entries 4-5, commit 3");
	node_free(&n);
}

/* ----------------------------------------------------------------
 *		Election timer
 * ----------------------------------------------------------------
 */

/*
 * A follower that hears nothing campaigns after a randomised timeout in
 * [t, 2t) ticks, starting with a pre-vote round that changes no term.
 */
static void
test_election_timer(void)
{
	static const raft_id_t ids[] = {1, 2, 3};
	uint64_t	seed;
	uint32_t	lo = UINT32_MAX;
	uint32_t	hi = 0;
	bool		pre_ok = true;

	for (seed = 1; seed <= 32; seed++)
	{
		raft_options opts;
		node		n;
		uint32_t	ticks;
		raft_ready	rd;
		size_t		k;

		raft_options_default(&opts, 1, seed);
		if (!node_bootstrap(&n, &opts, ids, 3))
			return;
		for (ticks = 1; ticks <= 2 * opts.election_timeout_ticks; ticks++)
		{
			raft_tick(n.r);
			if (status_of(&n).role != RAFT_FOLLOWER)
				break;
		}
		if (ticks < lo)
			lo = ticks;
		if (ticks > hi)
			hi = ticks;
		raft_ready_get(n.r, &rd);
		if (status_of(&n).role != RAFT_PRE_CANDIDATE || status_of(&n).term != 0 ||
			rd.n_msgs != 2 || rd.hard_state_changed)
			pre_ok = false;
		for (k = 0; k < rd.n_msgs; k++)
			if (rd.msgs[k].type != RAFT_MSG_PRE_VOTE || rd.msgs[k].term != 1 ||
				rd.msgs[k].to == 1)
				pre_ok = false;
		node_free(&n);
	}
	CHECK(lo >= 10 && hi < 20,
		  "timer: campaigns after %u..%u ticks, within [t, 2t) = [10, 20)", lo, hi);
	CHECK(hi > lo, "timer: the timeout is randomised by the seed");
	CHECK(pre_ok, "timer: the campaign starts with PRE_VOTEs for term 1 to both peers");
}

/* Nodes that are not voters never campaign. */
static void
test_non_voters_wait(void)
{
	raft_options opts = test_options(2);
	raft_hard_state hs;
	raft_snapshot_meta base;
	node		n;
	int			i;
	raft_status st;

	memset(&hs, 0, sizeof(hs));
	memset(&base, 0, sizeof(base));

	/* a joiner: no configuration yet */
	if (!node_init(&n, &opts))
		return;
	CHECK_RC(raft_load(n.r, &hs, &base, NULL, 0, 0), RAFT_OK,
			 "non-voter: a joiner loads an empty configuration");
	CHECK_RC(raft_campaign_now(n.r), RAFT_ERR_UNKNOWN_NODE,
			 "non-voter: a joiner's campaign_now is UNKNOWN_NODE");
	for (i = 0; i < 100; i++)
		raft_tick(n.r);
	st = status_of(&n);
	CHECK(st.role == RAFT_FOLLOWER && st.term == 0 && !raft_has_ready(n.r),
		  "non-voter: 100 ticks leave a joiner a quiet follower of term 0");
	node_free(&n);

	/* a learner */
	if (!node_init(&n, &opts))
		return;
	base.config.n_members = 2;
	base.config.members[0].id = 1;
	base.config.members[0].voter = true;
	base.config.members[1].id = 2;
	base.config.members[1].voter = false;
	CHECK_RC(raft_load(n.r, &hs, &base, NULL, 0, 0), RAFT_OK,
			 "non-voter: learner 2 of {1, 2 learner} loads");
	CHECK(status_of(&n).is_learner, "non-voter: status says learner");
	CHECK_RC(raft_campaign_now(n.r), RAFT_ERR_UNKNOWN_NODE,
			 "non-voter: a learner's campaign_now is UNKNOWN_NODE");
	for (i = 0; i < 100; i++)
		raft_tick(n.r);
	st = status_of(&n);
	CHECK(st.role == RAFT_FOLLOWER && st.term == 0 && !raft_has_ready(n.r),
		  "non-voter: 100 ticks leave a learner a quiet follower of term 0");
	node_free(&n);
}

/*
 * Ticks n, its messages lost, until it starts a campaign (sends PRE_VOTEs);
 * returns the number of ticks, or max + 1 if it never does.
 */
static uint32_t
ticks_to_campaign(node *n, uint32_t max)
{
	uint32_t	ticks;

	for (ticks = 1; ticks <= max; ticks++)
	{
		bool		campaigned;

		raft_tick(n->r);
		campaigned = pending_msg(n, RAFT_MSG_PRE_VOTE).type == RAFT_MSG_PRE_VOTE;
		drain(n, NULL);
		if (campaigned)
			break;
	}
	return ticks;
}

typedef struct bad_timeouts
{
	uint32_t	election;
	uint32_t	heartbeat;
	uint32_t	quiet;
	const char *what;
} bad_timeouts;

/*
 * raft_set_timeouts refuses what raft_init would refuse, and then changes
 * nothing: a follower given only refused calls campaigns at the very ticks
 * of an untouched twin (same seed).
 */
static void
test_set_timeouts_invalid(void)
{
	static const raft_id_t ids[] = {1, 2, 3};
	static const bad_timeouts bad[] = {
		{0, 0, 0, "election timeout 0, heartbeat 0"},
		{1, 1, 0, "election timeout 1 (below 2)"},
		{1, 0, 0, "election timeout 1, heartbeat 0"},
		{10, 0, 0, "heartbeat 0"},
		{5, 5, 0, "heartbeat == election timeout"},
		{4, 6, 0, "heartbeat > election timeout"},
		{2, UINT32_MAX, 0, "heartbeat UINT32_MAX"},
		{10, 3, 2, "quiet heartbeat below the heartbeat"},
		{10, 3, 6, "quiet heartbeat over half the election timeout"},
		{10, 3, UINT32_MAX, "quiet heartbeat UINT32_MAX"},
	};
	const size_t n_bad = sizeof(bad) / sizeof(bad[0]);
	bool		refused[sizeof(bad) / sizeof(bad[0])];
	bool		unchanged = true;
	bool		same_ticks = true;
	uint64_t	seed;
	size_t		i;

	for (i = 0; i < n_bad; i++)
		refused[i] = true;
	for (seed = 1; seed <= 16; seed++)
	{
		raft_options opts;
		node		a;
		node		b;
		uint32_t	round;

		raft_options_default(&opts, 1, seed);
		if (!node_bootstrap(&a, &opts, ids, 3))
			return;
		if (!node_bootstrap(&b, &opts, ids, 3))
		{
			node_free(&a);
			return;
		}
		/* both a few ticks into their first timeout */
		for (round = 0; round < 3; round++)
		{
			raft_tick(a.r);
			raft_tick(b.r);
		}
		for (i = 0; i < n_bad; i++)
		{
			raft_status before = status_of(&b);
			raft_status after;

			if (raft_set_timeouts(b.r, bad[i].election, bad[i].heartbeat,
								  bad[i].quiet) !=
				RAFT_ERR_INVALID_ARG)
				refused[i] = false;
			after = status_of(&b);
			if (!same_state(&before, &after) || raft_has_ready(b.r))
				unchanged = false;
		}
		/* the first timeout, then two redrawn by the campaigns */
		for (round = 0; round < 3; round++)
		{
			uint32_t	ta = ticks_to_campaign(&a, 40);
			uint32_t	tb = ticks_to_campaign(&b, 40);

			if (ta != tb || ta > 40)
			{
				if (same_ticks)
					diag("seed %llu, campaign %u: after %u ticks, the twin after %u",
						 (unsigned long long) seed, round + 1, tb, ta);
				same_ticks = false;
			}
		}
		node_free(&a);
		node_free(&b);
	}
	for (i = 0; i < n_bad; i++)
		CHECK(refused[i], "set_timeouts: %s is INVALID_ARG", bad[i].what);
	CHECK(unchanged, "set_timeouts: a refused call changes no state and makes no ready");
	CHECK(same_ticks,
		  "set_timeouts: after refused calls, a follower campaigns at the ticks of an untouched twin");
}

/*
 * After raft_set_timeouts(t, ...) a fresh follower campaigns within the new
 * [t, 2t) window, for its first timeout and for the ones drawn later.
 */
static void
test_set_timeouts_window(void)
{
	static const raft_id_t ids[] = {1, 2, 3};
	static const uint32_t windows[][2] = {{4, 1}, {2, 1}, {30, 3}};
	size_t		w;

	for (w = 0; w < sizeof(windows) / sizeof(windows[0]); w++)
	{
		uint32_t	t = windows[w][0];
		uint32_t	lo = UINT32_MAX;
		uint32_t	hi = 0;
		bool		accepted = true;
		uint64_t	seed;

		for (seed = 1; seed <= 32; seed++)
		{
			raft_options opts;
			node		n;
			int			round;

			raft_options_default(&opts, 1, seed);
			if (!node_bootstrap(&n, &opts, ids, 3))
				return;
			if (raft_set_timeouts(n.r, t, windows[w][1], 0) != RAFT_OK)
				accepted = false;
			for (round = 0; round < 3; round++)
			{
				uint32_t	ticks = ticks_to_campaign(&n, 4 * t + 40);

				if (ticks < lo)
					lo = ticks;
				if (ticks > hi)
					hi = ticks;
			}
			node_free(&n);
		}
		CHECK(accepted, "set_timeouts: (%u, %u) is accepted on a follower of timeout 10",
			  t, windows[w][1]);
		CHECK(lo >= t && hi < 2 * t,
			  "set_timeouts: with t = %u, campaigns after %u..%u ticks, within [%u, %u)",
			  t, lo, hi, t, 2 * t);
		CHECK(hi > lo, "set_timeouts: with t = %u, the timeout is still randomised", t);
	}
}

/* Nodes 1 and 2 of {1,2}, node 1 elected; false (and checks failed) if not. */
static bool
leader_of_two(node *n1, node *n2, const raft_options *o1, const raft_options *o2,
			  const char *what)
{
	static const raft_id_t ids[] = {1, 2};

	if (!CHECK(node_bootstrap(n1, o1, ids, 2) && node_bootstrap(n2, o2, ids, 2),
			   "%s: nodes 1 and 2 of {1,2}", what))
		return false;
	raft_campaign_now(n1->r);
	pump(n1, n2);
	return CHECK(status_of(n1).role == RAFT_LEADER, "%s: node 1 leads", what);
}

/*
 * A leader's heartbeats follow the interval raft_set_timeouts gives it; a
 * refused call keeps the interval.
 */
static void
test_set_timeouts_heartbeat(void)
{
	raft_options o1 = test_options(1);
	raft_options o2 = test_options(2);
	node		n1;
	node		n2;
	char		seen[25];
	char		want[25];
	uint32_t	i;

	if (!leader_of_two(&n1, &n2, &o1, &o2, "set_timeouts"))
		return;
	CHECK_RC(raft_set_timeouts(n1.r, 10, 3, 0), RAFT_OK,
			 "set_timeouts: the leader takes heartbeat 3, election timeout 10");
	for (i = 0; i < 24; i++)
	{
		if (i == 12)
			CHECK_RC(raft_set_timeouts(n1.r, 10, 0, 0), RAFT_ERR_INVALID_ARG,
					 "set_timeouts: heartbeat 0 is refused on the leader");
		raft_tick(n1.r);
		seen[i] = pending_msg(&n1, RAFT_MSG_HEARTBEAT).type == RAFT_MSG_HEARTBEAT ? 'H' : '.';
		want[i] = (i + 1) % 3 == 0 ? 'H' : '.';
		pump(&n1, &n2);
	}
	seen[24] = want[24] = '\0';
	if (!CHECK(strcmp(seen, want) == 0,
			   "set_timeouts: the leader sends a heartbeat every 3rd tick, before and after the refused call"))
		diag("heartbeats by tick: %s, expected %s", seen, want);
	CHECK(status_of(&n1).role == RAFT_LEADER && n1.errors == 0 && n2.errors == 0,
		  "set_timeouts: node 1 still leads (node 2 answered every heartbeat)");
	node_free(&n1);
	node_free(&n2);
}

/*
 * A quiet leader (everything committed and held by its follower) sends a
 * heartbeat every quiet_heartbeat_ticks; an entry its follower does not
 * hold brings back one every heartbeat_ticks.
 */
static void
test_quiet_heartbeat(void)
{
	raft_options o1 = test_options(1);
	raft_options o2 = test_options(2);
	node		n1;
	node		n2;
	char		seen[31];
	char		want[31];
	uint32_t	i;

	o1.election_timeout_ticks = o2.election_timeout_ticks = 12;
	o1.heartbeat_ticks = o2.heartbeat_ticks = 2;
	o1.quiet_heartbeat_ticks = o2.quiet_heartbeat_ticks = 6;
	if (!leader_of_two(&n1, &n2, &o1, &o2, "quiet heartbeat"))
		return;

	/*
	 * Ticks 0-11 quiet; at tick 12 an entry whose appends to node 2 are
	 * lost until tick 18; the next heartbeat's answer then shows it
	 * missing, and quiet comes back once node 2 holds it.
	 */
	for (i = 0; i < 30; i++)
	{
		if (i == 12)
			CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "q", 1, NULL), RAFT_OK,
					 "quiet heartbeat: the leader takes an entry");
		raft_tick(n1.r);
		seen[i] = pending_msg(&n1, RAFT_MSG_HEARTBEAT).type == RAFT_MSG_HEARTBEAT ? 'H' : '.';
		if (i < 12 || i >= 18)
			pump(&n1, &n2);
		else
			drain(&n1, NULL);
	}
	seen[30] = '\0';
	/*
	 * Quiet: every 6th tick.  From tick 12, every 2nd, until the answer
	 * to tick 19's round brings the entry to node 2; quiet after that.
	 */
	memcpy(want, ".....H.....H.H.H.H.H.....H....", 31);
	if (!CHECK(strcmp(seen, want) == 0,
			   "quiet heartbeat: every 6th tick while quiet, every 2nd while an entry waits"))
		diag("heartbeats by tick: %s, expected %s", seen, want);
	CHECK(status_of(&n1).role == RAFT_LEADER && status_of(&n2).commit_index == status_of(&n1).commit_index,
		  "quiet heartbeat: node 1 still leads and node 2 holds its commit index");
	node_free(&n1);
	node_free(&n2);
}

/*
 * The status counts the elections a node started as a candidate (a
 * pre-vote round is not one) and those it won; raft_get_role agrees with
 * the status.
 */
static void
test_election_counters(void)
{
	raft_options o1 = test_options(1);
	raft_options o2 = test_options(2);
	node		n1;
	node		n2;
	raft_status s1;
	raft_status s2;

	if (!leader_of_two(&n1, &n2, &o1, &o2, "election counters"))
		return;
	s1 = status_of(&n1);
	s2 = status_of(&n2);
	CHECK(s1.elections_started == 1 && s1.elections_won == 1,
		  "election counters: the leader started one election and won it");
	CHECK(s2.elections_started == 0 && s2.elections_won == 0,
		  "election counters: the follower started none");
	CHECK(raft_get_role(n1.r) == RAFT_LEADER && raft_get_role(n2.r) == RAFT_FOLLOWER,
		  "election counters: raft_get_role gives each node's role");

	/* node 2 takes over: one more election, on its side */
	raft_transfer_leadership(n1.r, 2);
	pump(&n1, &n2);
	s1 = status_of(&n1);
	s2 = status_of(&n2);
	CHECK(s2.role == RAFT_LEADER && s2.elections_started == 1 && s2.elections_won == 1,
		  "election counters: after a transfer the new leader counts its election");
	CHECK(s1.elections_started == 1 && s1.elections_won == 1,
		  "election counters: the old leader's counts stay");
	node_free(&n1);
	node_free(&n2);
}

/* ----------------------------------------------------------------
 *		Two nodes by hand
 * ----------------------------------------------------------------
 */

/* What the ready hooks of the two-node test saw. */
typedef struct two_node_log
{
	bool		pre_vote_seen;		/* node 1 sent PRE_VOTE */
	bool		pre_vote_term_ok;	/* ... for term 1 while still in term 0 */
	bool		pre_vote_hs_quiet;	/* ... without changing its hard state */
	bool		vote_seen;			/* node 1 sent VOTE */
	bool		vote_hs_ok;			/* ... with hard state term 1, vote 1 */
	bool		grant_seen;			/* node 2 granted a VOTE */
	bool		grant_hs_ok;		/* ... in a ready persisting term 1, vote 1 */
	bool		promise_early;		/* a vote, grant or ack allowed before persisting */
	bool		append_early;		/* the leader's entries allowed before persisting */
	bool		apply_ok[3];		/* per node: saw entry 1 as a NOOP of term 1 */
	int			applied_count[3];
	char		applied_data[3][16];
} two_node_log;

static void
two_node_ready(node *n, const raft_ready *rd)
{
	two_node_log *log = n->arg;
	size_t		k;

	for (k = 0; k < rd->n_msgs; k++)
	{
		const raft_msg *m = &rd->msgs[k];

		if (rd->send_before_persist &&
			(m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_APPEND_RESP ||
			 (m->type == RAFT_MSG_VOTE_RESP && !m->reject)))
			log->promise_early = true;
		if (rd->send_before_persist && m->type == RAFT_MSG_APPEND &&
			m->n_entries > 0 && rd->persist_from <= rd->persist_to)
			log->append_early = true;
		if (m->type == RAFT_MSG_PRE_VOTE && n->opts.id == 1)
		{
			raft_status st;

			raft_get_status(n->r, &st);
			log->pre_vote_seen = true;
			log->pre_vote_term_ok = m->term == 1 && st.term == 0 &&
				st.role == RAFT_PRE_CANDIDATE;
			log->pre_vote_hs_quiet = !rd->hard_state_changed;
		}
		if (m->type == RAFT_MSG_VOTE && n->opts.id == 1)
		{
			log->vote_seen = true;
			log->vote_hs_ok = m->term == 1 && rd->hard_state_changed &&
				rd->hard_state.term == 1 && rd->hard_state.vote == 1;
		}
		if (m->type == RAFT_MSG_VOTE_RESP && !m->reject && n->opts.id == 2)
		{
			log->grant_seen = true;
			log->grant_hs_ok = rd->hard_state_changed &&
				rd->hard_state.term == 1 && rd->hard_state.vote == 1;
		}
	}
}

static void
two_node_apply(node *n, const raft_entry *e)
{
	two_node_log *log = n->arg;
	raft_id_t	id = n->opts.id;

	if (e->index == 1)
		log->apply_ok[id] = e->type == RAFT_ENTRY_NOOP && e->term == 1;
	else if (e->type == RAFT_ENTRY_NORMAL && e->len < sizeof(log->applied_data[id]))
	{
		memcpy(log->applied_data[id], e->data, e->len);
		log->applied_data[id][e->len] = '\0';
	}
	log->applied_count[id]++;
}

/* Nodes 1 and 2 of {1,2}: a pre-vote, a vote, a no-op and an entry. */
static void
test_two_nodes(void)
{
	static const raft_id_t ids[] = {1, 2};
	raft_options o1 = test_options(1);
	raft_options o2 = test_options(2);
	node		n1;
	node		n2;
	two_node_log log;
	raft_status s1;
	raft_status s2;
	raft_index_t idx = 0;
	raft_entry	e;

	memset(&log, 0, sizeof(log));
	if (!CHECK(node_bootstrap(&n1, &o1, ids, 2) && node_bootstrap(&n2, &o2, ids, 2),
			   "two nodes: both load {1,2}"))
		return;
	n1.arg = n2.arg = &log;
	n1.on_ready = n2.on_ready = two_node_ready;
	n1.on_apply = n2.on_apply = two_node_apply;

	CHECK_RC(raft_campaign_now(n1.r), RAFT_OK, "two nodes: node 1 campaigns");
	s1 = status_of(&n1);
	CHECK(s1.role == RAFT_PRE_CANDIDATE && s1.term == 0,
		  "two nodes: with pre-vote, node 1 is a pre-candidate still in term 0");
	pump(&n1, &n2);

	CHECK(log.pre_vote_seen && log.pre_vote_term_ok,
		  "two nodes: node 1 asks a PRE_VOTE for term 1 while in term 0");
	CHECK(log.pre_vote_hs_quiet, "two nodes: the pre-vote persists no hard state");
	CHECK(log.vote_seen && log.vote_hs_ok,
		  "two nodes: node 1's VOTE ready persists term 1, vote for itself");
	CHECK(log.grant_seen, "two nodes: node 2 grants its vote");
	CHECK(log.grant_hs_ok,
		  "two nodes: the ready carrying the grant persists term 1, vote 1");

	s1 = status_of(&n1);
	s2 = status_of(&n2);
	CHECK(n1.errors == 0 && n2.errors == 0, "two nodes: contract kept on both sides");
	CHECK(s1.role == RAFT_LEADER && s1.term == 1 && s1.leader == 1,
		  "two nodes: node 1 leads in term 1");
	CHECK(s2.role == RAFT_FOLLOWER && s2.term == 1 && s2.leader == 1 && s2.vote == 1,
		  "two nodes: node 2 follows leader 1 in term 1, having voted for 1");
	/* node 2 learns the commit index at the leader's next tick */
	raft_tick(n1.r);
	pump(&n1, &n2);
	s2 = status_of(&n2);
	CHECK(s1.commit_index == 1 && s2.commit_index == 1,
		  "two nodes: both commit the no-op (commit 1)");
	CHECK(log.apply_ok[1] && log.apply_ok[2] && n1.applied == 1 && n2.applied == 1,
		  "two nodes: both apply entry 1, a NOOP of term 1");
	CHECK(n1.hs.term == 1 && n1.hs.vote == 1 && n1.hs.commit == 1 &&
		  n2.hs.term == 1 && n2.hs.vote == 1 && n2.hs.commit == 1,
		  "two nodes: both persisted term 1, vote 1, commit 1");
	CHECK(s1.progress[1].id == 2 && s1.progress[1].match_index == 1,
		  "two nodes: the leader knows node 2 matches at 1");

	CHECK_RC(raft_propose(n2.r, RAFT_ENTRY_NORMAL, "no", 2, &idx), RAFT_ERR_NOT_LEADER,
			 "two nodes: the follower's propose is NOT_LEADER");
	CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "hello", 5, &idx), RAFT_OK,
			 "two nodes: the leader proposes an entry");
	CHECK_U64(idx, 2, "two nodes: ... at index 2");
	pump(&n1, &n2);
	raft_tick(n1.r);
	pump(&n1, &n2);
	CHECK(status_of(&n1).commit_index == 2 && status_of(&n2).commit_index == 2,
		  "two nodes: entry 2 commits on both");
	CHECK(log.append_early,
		  "two nodes: the leader may send its new entries before persisting them");
	CHECK(!log.promise_early,
		  "two nodes: no vote, grant or acknowledgement may go before persisting");
	CHECK(strcmp(log.applied_data[1], "hello") == 0 &&
		  strcmp(log.applied_data[2], "hello") == 0,
		  "two nodes: both apply \"hello\"");

	/* messages of a lower term */
	{
		raft_entry	stale_entry;
		raft_msg	m;
		raft_ready	rd;
		raft_status before;
		raft_status after;

		before = status_of(&n2);
		memset(&stale_entry, 0, sizeof(stale_entry));
		stale_entry.index = 1;
		stale_entry.term = 0;
		stale_entry.type = RAFT_ENTRY_NORMAL;
		stale_entry.len = 5;
		stale_entry.data = (const uint8_t *) "stale";
		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_APPEND;
		m.from = 1;
		m.to = 2;
		m.term = 0;
		m.index = 0;
		m.log_term = 0;
		m.commit = 1;
		m.n_entries = 1;
		m.entries = &stale_entry;
		CHECK_RC(raft_step(n2.r, &m), RAFT_OK, "two nodes: an APPEND of term 0 is taken");
		after = status_of(&n2);
		CHECK(same_state(&before, &after), "two nodes: ... and ignored (state unchanged)");
		CHECK(raft_entry_get(n2.r, 1, &e) == RAFT_OK && e.term == 1 &&
			  e.type == RAFT_ENTRY_NOOP, "two nodes: ... entry 1 is not overwritten");
		raft_ready_get(n2.r, &rd);
		CHECK(rd.n_msgs == 1 && rd.msgs[0].type == RAFT_MSG_APPEND_RESP &&
			  rd.msgs[0].term == 1 && rd.msgs[0].to == 1 && !rd.hard_state_changed &&
			  rd.persist_from > rd.persist_to,
			  "two nodes: ... answered only with our term, nothing persisted");
		if (!CHECK(rd.n_msgs == 1 && rd.msgs[0].commit == 2,
				   "two nodes: ... and, like every response, the answer carries node 2's commit (2)"))
			diag("commit field %llu", rd.n_msgs == 1 ?
				 (unsigned long long) rd.msgs[0].commit : 0ULL);
		raft_advance(n2.r);

		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_VOTE;
		m.from = 1;
		m.to = 2;
		m.term = 0;
		m.index = 5;
		m.log_term = 0;
		before = status_of(&n2);
		CHECK_RC(raft_step(n2.r, &m), RAFT_OK, "two nodes: a VOTE of term 0 is taken");
		after = status_of(&n2);
		CHECK(same_state(&before, &after) && !raft_has_ready(n2.r),
			  "two nodes: ... and ignored (no vote change, no answer)");

		m.type = RAFT_MSG_HEARTBEAT;
		m.from = 2;
		m.to = 1;
		m.commit = 99;
		before = status_of(&n1);
		CHECK_RC(raft_step(n1.r, &m), RAFT_OK, "two nodes: a HEARTBEAT of term 0 to the leader");
		after = status_of(&n1);
		CHECK(same_state(&before, &after) && after.role == RAFT_LEADER,
			  "two nodes: ... leaves the leader leading in term 1");
		drain(&n1, NULL);
	}

	/* check-quorum: a leader that hears from nobody steps down */
	{
		uint32_t	i;
		raft_msg	m;
		raft_status before;

		for (i = 0; i < 2 * o1.election_timeout_ticks + 1; i++)
		{
			raft_tick(n1.r);
			drain(&n1, NULL);	/* its heartbeats are lost */
			if (status_of(&n1).role != RAFT_LEADER)
				break;
		}
		s1 = status_of(&n1);
		CHECK(s1.role == RAFT_FOLLOWER && s1.term == 1,
			  "two nodes: with check-quorum, an isolated leader steps down within 2t ticks");

		/* leader lease: node 2 heard from its leader within t ticks */
		memset(&m, 0, sizeof(m));
		m.type = RAFT_MSG_VOTE;
		m.from = 1;
		m.to = 2;
		m.term = 2;
		m.index = 2;
		m.log_term = 1;
		before = status_of(&n2);
		CHECK_RC(raft_step(n2.r, &m), RAFT_OK, "two nodes: a VOTE of term 2 to node 2");
		s2 = status_of(&n2);
		CHECK(same_state(&before, &s2) && s2.term == 1 && s2.vote == 1,
			  "two nodes: ... is ignored within the leader lease (term 1, vote 1 kept)");
		drain(&n2, NULL);
	}

	node_free(&n1);
	node_free(&n2);
}

/*
 * A follower that held entries committed at one tick and was not told the
 * commit index since learns it at the leader's next tick, from an APPEND
 * without entries when that tick sends no heartbeat; once told, it is not
 * told again.  Nodes 1 and 2 of {1,2}, heartbeats every 5 ticks.
 */
static void
test_commit_notice(void)
{
	static const raft_id_t ids[] = {1, 2};
	raft_options o1 = test_options(1);
	raft_options o2 = test_options(2);
	node		n1;
	node		n2;
	raft_msg	m;
	raft_index_t idx = 0;

	o1.heartbeat_ticks = o2.heartbeat_ticks = 5;
	if (!CHECK(node_bootstrap(&n1, &o1, ids, 2) && node_bootstrap(&n2, &o2, ids, 2),
			   "commit notice: nodes 1 and 2 of {1,2}, heartbeat every 5 ticks"))
		return;
	raft_campaign_now(n1.r);
	pump(&n1, &n2);
	CHECK(status_of(&n1).commit_index == 1 && status_of(&n2).commit_index == 0,
		  "commit notice: node 1 leads and commits its no-op; node 2 does not know yet");
	raft_tick(n1.r);
	CHECK(pending_msg(&n1, RAFT_MSG_APPEND).type == 0,
		  "commit notice: the first tick after the commit sends nothing (an append might carry it)");
	raft_tick(n1.r);
	m = pending_msg(&n1, RAFT_MSG_APPEND);
	CHECK(m.type == RAFT_MSG_APPEND && m.n_entries == 0 && m.index == 1 && m.commit == 1 &&
		  pending_msg(&n1, RAFT_MSG_HEARTBEAT).type == 0,
		  "commit notice: the second sends an APPEND without entries carrying commit 1");
	drain(&n1, NULL);			/* the notice is lost */
	raft_tick(n1.r);
	CHECK(pending_msg(&n1, RAFT_MSG_APPEND).type == 0,
		  "commit notice: the tick after sends no notice again");
	pump(&n1, &n2);
	CHECK(status_of(&n2).commit_index == 0,
		  "commit notice: node 2, whose notice was lost, still knows commit 0");
	raft_tick(n1.r);
	raft_tick(n1.r);
	m = pending_msg(&n1, RAFT_MSG_HEARTBEAT);
	CHECK(m.type == RAFT_MSG_HEARTBEAT && m.commit == 1,
		  "commit notice: the next heartbeat carries commit 1");
	pump(&n1, &n2);
	CHECK(status_of(&n2).commit_index == 1, "commit notice: node 2 commits 1");

	CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "a", 1, &idx), RAFT_OK,
			 "commit notice: the leader proposes entry 2");
	pump(&n1, &n2);
	CHECK(status_of(&n1).commit_index == 2 && status_of(&n2).commit_index == 1,
		  "commit notice: entry 2 commits; node 2 does not know yet");
	raft_tick(n1.r);
	CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "b", 1, &idx), RAFT_OK,
			 "commit notice: the leader proposes entry 3 after a tick");
	m = pending_msg(&n1, RAFT_MSG_APPEND);
	CHECK(m.type == RAFT_MSG_APPEND && m.n_entries == 1 && m.commit == 2,
		  "commit notice: whose APPEND carries commit 2");
	pump(&n1, &n2);
	CHECK(status_of(&n1).commit_index == 3 && status_of(&n2).commit_index == 2,
		  "commit notice: entry 3 commits; node 2 knows commit 2");
	raft_tick(n1.r);
	CHECK(pending_msg(&n1, RAFT_MSG_APPEND).type == 0 &&
		  pending_msg(&n1, RAFT_MSG_HEARTBEAT).type == 0,
		  "commit notice: the next tick sends nothing (commit 2 went with entry 3)");
	raft_tick(n1.r);
	m = pending_msg(&n1, RAFT_MSG_APPEND);
	CHECK(m.type == RAFT_MSG_APPEND && m.n_entries == 0 && m.commit == 3,
		  "commit notice: the tick after tells node 2 about commit 3");
	pump(&n1, &n2);
	CHECK(n1.errors == 0 && n2.errors == 0 && status_of(&n2).commit_index == 3 &&
		  n2.applied == 3, "commit notice: node 2 commits and applies 3");
	node_free(&n1);
	node_free(&n2);
}

/* The progress entry of member id in st, or NULL. */
static const raft_member_status *
member_status(const raft_status *st, raft_id_t id)
{
	uint32_t	i;

	for (i = 0; i < st->config.n_members && i < RAFT_MAX_MEMBERS; i++)
		if (st->progress[i].id == id)
			return &st->progress[i];
	return NULL;
}

/*
 * The leader shows, per member, the commit index that member last
 * reported: every APPEND_RESP and HEARTBEAT_RESP carries its sender's
 * commit.  Nodes 1 and 2 of {1,2}, one delivery at a time.
 */
static void
test_member_commit_index(void)
{
	static const raft_id_t ids[] = {1, 2};
	raft_options o1 = test_options(1);
	raft_options o2 = test_options(2);
	node		n1;
	node		n2;
	raft_status s1;
	raft_status s2;
	const raft_member_status *p;
	raft_msg	m;
	raft_index_t idx = 0;
	uint32_t	i;
	bool		zero = true;

	if (!CHECK(node_bootstrap(&n1, &o1, ids, 2) && node_bootstrap(&n2, &o2, ids, 2),
			   "commit index: nodes 1 and 2 of {1,2}"))
		return;
	raft_campaign_now(n1.r);
	pump(&n1, &n2);
	raft_tick(n1.r);			/* node 2 learns the commit index */
	pump(&n1, &n2);
	s1 = status_of(&n1);
	s2 = status_of(&n2);
	CHECK(s1.role == RAFT_LEADER && s1.commit_index == 1 && s2.commit_index == 1,
		  "commit index: node 1 leads, the no-op is committed on both");
	p = member_status(&s1, 2);
	CHECK(p != NULL && p->match_index == 1 && p->commit_index == 1,
		  "commit index: the leader shows node 2 at match 1, commit 1");
	for (i = 0; i < s2.config.n_members; i++)
		if (s2.progress[i].commit_index != 0)
			zero = false;
	CHECK(zero, "commit index: a follower shows 0 for every member (a leader field)");

	/* an entry: node 2 acknowledges it before it learns that it committed */
	CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "a", 1, &idx), RAFT_OK,
			 "commit index: the leader proposes entry 2");
	drain(&n1, &n2);
	m = pending_msg(&n2, RAFT_MSG_APPEND_RESP);
	CHECK(m.type == RAFT_MSG_APPEND_RESP && !m.reject && m.index == 2 && m.commit == 1,
		  "commit index: node 2 acknowledges entry 2 carrying its commit, 1");
	drain(&n2, &n1);
	s1 = status_of(&n1);
	p = member_status(&s1, 2);
	CHECK(s1.commit_index == 2 && p != NULL && p->match_index == 2 && p->commit_index == 1,
		  "commit index: the leader commits 2 but shows node 2 at commit 1, as reported");
	CHECK(pending_msg(&n1, RAFT_MSG_APPEND).type == 0 &&
		  pending_msg(&n1, RAFT_MSG_HEARTBEAT).type == 0,
		  "commit index: the leader sends nothing only to tell the new commit index");

	/* the next tick's heartbeat tells it */
	raft_tick(n1.r);
	m = pending_msg(&n1, RAFT_MSG_HEARTBEAT);
	CHECK(m.type == RAFT_MSG_HEARTBEAT && m.commit == 2,
		  "commit index: the next tick's HEARTBEAT carries commit 2");
	drain(&n1, &n2);
	m = pending_msg(&n2, RAFT_MSG_HEARTBEAT_RESP);
	CHECK(m.type == RAFT_MSG_HEARTBEAT_RESP && m.commit == 2 &&
		  status_of(&n2).commit_index == 2,
		  "commit index: node 2 commits 2 and its HEARTBEAT_RESP carries commit 2");
	drain(&n2, &n1);
	s1 = status_of(&n1);
	p = member_status(&s1, 2);
	CHECK(p != NULL && p->commit_index == 2,
		  "commit index: the leader shows node 2 at commit 2 (HEARTBEAT_RESP)");

	/* entry 3 commits; the append of entry 4 carries the news */
	CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "b", 1, &idx), RAFT_OK,
			 "commit index: the leader proposes entry 3");
	drain(&n1, &n2);
	drain(&n2, &n1);
	s1 = status_of(&n1);
	p = member_status(&s1, 2);
	CHECK(s1.commit_index == 3 && status_of(&n2).commit_index == 2 && p != NULL &&
		  p->match_index == 3 && p->commit_index == 2,
		  "commit index: entry 3 commits; node 2, not told, is still shown at 2");
	CHECK_RC(raft_propose(n1.r, RAFT_ENTRY_NORMAL, "c", 1, &idx), RAFT_OK,
			 "commit index: the leader proposes entry 4");
	m = pending_msg(&n1, RAFT_MSG_APPEND);
	CHECK(m.type == RAFT_MSG_APPEND && m.n_entries == 1 && m.commit == 3,
		  "commit index: the APPEND of entry 4 carries commit 3");
	drain(&n1, &n2);
	m = pending_msg(&n2, RAFT_MSG_APPEND_RESP);
	CHECK(m.type == RAFT_MSG_APPEND_RESP && !m.reject && m.index == 4 && m.commit == 3,
		  "commit index: node 2 acknowledges entry 4 carrying its commit, 3");
	drain(&n2, &n1);
	s1 = status_of(&n1);
	p = member_status(&s1, 2);
	CHECK(s1.commit_index == 4 && p != NULL && p->commit_index == 3,
		  "commit index: the leader shows node 2 at commit 3 (APPEND_RESP)");
	raft_tick(n1.r);
	pump(&n1, &n2);
	CHECK(n1.errors == 0 && n2.errors == 0 && n1.applied == 4 && n2.applied == 4,
		  "commit index: contract kept, both applied 1..4");
	node_free(&n1);
	node_free(&n2);
}

/* ----------------------------------------------------------------
 *		Names
 * ----------------------------------------------------------------
 */

/* Every return code, role and message type has its own name. */
static void
test_names(void)
{
	static const int rcs[] = {
		RAFT_OK, RAFT_ERR_INVALID_ARG, RAFT_ERR_NOT_LEADER, RAFT_ERR_LOG_FULL,
		RAFT_ERR_TOO_LARGE, RAFT_ERR_CONF_PENDING, RAFT_ERR_TRANSFER_PENDING,
		RAFT_ERR_UNKNOWN_NODE, RAFT_ERR_ALREADY_MEMBER, RAFT_ERR_NOT_CAUGHT_UP,
		RAFT_ERR_LAST_VOTER, RAFT_ERR_TOO_MANY_MEMBERS, RAFT_ERR_NO_MEMORY,
		RAFT_ERR_COMPACTED, RAFT_ERR_UNAVAILABLE, RAFT_ERR_NOT_COMMITTED_IN_TERM,
		RAFT_ERR_MSG_TRUNCATED, RAFT_ERR_MSG_MAGIC, RAFT_ERR_MSG_VERSION,
		RAFT_ERR_MSG_CHECKSUM, RAFT_ERR_MSG_CLUSTER, RAFT_ERR_MSG_TYPE,
		RAFT_ERR_MSG_LENGTH, RAFT_ERR_MSG_FIELD, RAFT_ERR_MSG_TOO_LARGE,
	};
	const size_t n_rcs = sizeof(rcs) / sizeof(rcs[0]);
	const char *unknown = raft_strerror(-999);
	const char *role_names[4];
	const char *type_names[RAFT_MSG_TYPE_MAX + 1];
	size_t		i;
	size_t		j;
	bool		ok = true;

	CHECK(unknown != NULL && strcmp(unknown, "unknown error") == 0,
		  "strerror: an undeclared code is \"unknown error\"");
	for (i = 0; i < n_rcs; i++)
	{
		const char *s = raft_strerror(rcs[i]);

		if (s == NULL || s[0] == '\0' || strcmp(s, "unknown error") == 0)
		{
			diag("raft_strerror(%d) = \"%s\"", rcs[i], s ? s : "(null)");
			ok = false;
			continue;
		}
		for (j = 0; j < i; j++)
			if (strcmp(s, raft_strerror(rcs[j])) == 0)
			{
				diag("raft_strerror(%d) == raft_strerror(%d) = \"%s\"",
					 rcs[i], rcs[j], s);
				ok = false;
			}
	}
	CHECK(ok, "strerror: all %zu declared codes have distinct names", n_rcs);

	ok = true;
	for (i = 0; i < 4; i++)
	{
		role_names[i] = raft_role_name((raft_role) i);
		if (role_names[i] == NULL || strcmp(role_names[i], "unknown") == 0)
			ok = false;
		for (j = 0; j < i && ok; j++)
			if (strcmp(role_names[i], role_names[j]) == 0)
				ok = false;
	}
	CHECK(ok, "role_name: the four roles have distinct names");
	CHECK(strcmp(raft_role_name(RAFT_LEADER), "leader") == 0 &&
		  strcmp(raft_role_name(RAFT_FOLLOWER), "follower") == 0,
		  "role_name: leader and follower");

	ok = true;
	for (i = 1; i <= RAFT_MSG_TYPE_MAX; i++)
	{
		type_names[i] = raft_msg_type_name((int) i);
		if (type_names[i] == NULL || type_names[i][0] == '\0' ||
			strcmp(type_names[i], "unknown") == 0)
		{
			diag("raft_msg_type_name(%zu) = \"%s\"", i,
				 type_names[i] ? type_names[i] : "(null)");
			ok = false;
			continue;
		}
		for (j = 1; j < i; j++)
			if (strcmp(type_names[i], type_names[j]) == 0)
				ok = false;
	}
	CHECK(ok, "msg_type_name: the %d message types have distinct names",
		  RAFT_MSG_TYPE_MAX);
	ok = true;
	for (i = 1; i <= RAFT_MSG_TYPE_MAX; i++)
		if (strcmp(raft_msg_type_name(0), type_names[i]) == 0 ||
			strcmp(raft_msg_type_name(RAFT_MSG_TYPE_MAX + 1), type_names[i]) == 0)
			ok = false;
	CHECK(ok, "msg_type_name: types 0 and RAFT_MSG_TYPE_MAX + 1 are not named as valid ones");
}

int
main(void)
{
	test_options_default();
	test_options_invalid();
	test_init_memory();
	test_load_invalid();
	test_load_valid();
	test_load_null_data();
	test_single_node_bootstrap();
	test_propose();
	test_restart_commits_old_entries();
	test_log_full();
	test_log_reserve();
	test_log_wraparound();
	test_follower_ring();
	test_full_log_leader();
	test_full_log_noop_retry();
	test_full_log_follower();
	test_full_log_two_nodes();
	test_conf_change();
	test_config_decode();
	test_step_invalid();
	test_election_timer();
	test_hold_campaigns();
	test_non_voters_wait();
	test_set_timeouts_invalid();
	test_set_timeouts_window();
	test_set_timeouts_heartbeat();
	test_quiet_heartbeat();
	test_election_counters();
	test_two_nodes();
	test_member_commit_index();
	test_commit_notice();
	test_names();

	printf("1..%d\n", n_tests);
	if (n_failed > 0)
		fprintf(stderr, "%d of %d core tests failed\n", n_failed, n_tests);
	return n_failed > 0 ? 1 : 0;
}
