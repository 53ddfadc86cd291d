/*-------------------------------------------------------------------------
 *
 * raft.c
 *	  Lifecycle, events, role transitions and the ready/advance handshake.
 *
 * NOTES
 *	  raft_step() is the one entry point for received messages: it applies
 *	  the term rules of thesis Figure 3.1 ("if RPC request or response
 *	  contains term T > currentTerm: set currentTerm = T, convert to
 *	  follower"), plus the pre-vote and check-quorum refinements of thesis
 *	  sections 9.6 and 6.2, and then dispatches by role and message type to
 *	  election.c, replication.c and leadership.c.
 *
 *	  Outgoing messages accumulate in a bounded outbox until raft_advance().
 *	  When it is full, further messages are dropped: Raft tolerates message
 *	  loss, and heartbeats and retries make up for it.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "raft_int.h"

#define ALIGN8(x) (((x) + 7) & ~(size_t) 7)

const char *
raft_strerror(int rc)
{
	switch (rc)
	{
		case RAFT_OK:
			return "success";
		case RAFT_ERR_INVALID_ARG:
			return "invalid argument";
		case RAFT_ERR_NOT_LEADER:
			return "this node is not the leader";
		case RAFT_ERR_LOG_FULL:
			return "the in-memory log is full";
		case RAFT_ERR_TOO_LARGE:
			return "entry or message too large";
		case RAFT_ERR_CONF_PENDING:
			return "another membership change is in progress";
		case RAFT_ERR_TRANSFER_PENDING:
			return "a leadership transfer is in progress";
		case RAFT_ERR_UNKNOWN_NODE:
			return "no such member";
		case RAFT_ERR_ALREADY_MEMBER:
			return "node is already a member";
		case RAFT_ERR_NOT_CAUGHT_UP:
			return "learner has not caught up with the log";
		case RAFT_ERR_LAST_VOTER:
			return "cannot remove the last voter";
		case RAFT_ERR_TOO_MANY_MEMBERS:
			return "too many members";
		case RAFT_ERR_NO_MEMORY:
			return "not enough memory for these options";
		case RAFT_ERR_COMPACTED:
			return "entry has been compacted";
		case RAFT_ERR_UNAVAILABLE:
			return "entry or member not available";
		case RAFT_ERR_NOT_COMMITTED_IN_TERM:
			return "leader has not yet committed an entry in its term";
		case RAFT_ERR_MSG_TRUNCATED:
			return "message is truncated";
		case RAFT_ERR_MSG_MAGIC:
			return "message has a bad magic number";
		case RAFT_ERR_MSG_VERSION:
			return "message has an unsupported version";
		case RAFT_ERR_MSG_CHECKSUM:
			return "message checksum mismatch";
		case RAFT_ERR_MSG_CLUSTER:
			return "message belongs to another cluster";
		case RAFT_ERR_MSG_TYPE:
			return "message has an unknown type";
		case RAFT_ERR_MSG_LENGTH:
			return "message length is inconsistent";
		case RAFT_ERR_MSG_FIELD:
			return "message has an invalid field";
		case RAFT_ERR_MSG_TOO_LARGE:
			return "message is too large";
	}
	return "unknown error";
}

const char *
raft_role_name(raft_role role)
{
	switch (role)
	{
		case RAFT_FOLLOWER:
			return "follower";
		case RAFT_PRE_CANDIDATE:
			return "pre-candidate";
		case RAFT_CANDIDATE:
			return "candidate";
		case RAFT_LEADER:
			return "leader";
	}
	return "unknown";
}

void
raft_options_default(raft_options *opts, raft_id_t id, uint64_t seed)
{
	memset(opts, 0, sizeof(*opts));
	opts->id = id;
	opts->election_timeout_ticks = 10;
	opts->heartbeat_ticks = 1;
	opts->random_seed = seed;
	opts->max_inflight_msgs = 16;
	opts->max_entries_per_msg = 64;
	opts->max_bytes_per_msg = 1024 * 1024;
	opts->log_capacity_entries = 4096;
	opts->log_capacity_bytes = 16 * 1024 * 1024;
	opts->max_entry_bytes = 4 * 1024 * 1024;
	opts->max_pending_reads = 64;
	opts->pre_vote = true;
	opts->check_quorum = true;
}

static uint32_t
outbox_capacity(void)
{
	return RAFT_MAX_MEMBERS * (RAFT_MAX_INFLIGHT + 4);
}

static uint32_t
out_entries_capacity(const raft_options *opts)
{
	return opts->max_entries_per_msg * RAFT_MAX_MEMBERS * 4;
}

static bool
options_valid(const raft_options *opts)
{
	return opts->id != RAFT_NO_NODE &&
		opts->election_timeout_ticks >= 2 &&
		opts->heartbeat_ticks >= 1 &&
		opts->heartbeat_ticks < opts->election_timeout_ticks &&
		(opts->quiet_heartbeat_ticks == 0 ||
		 (opts->quiet_heartbeat_ticks >= opts->heartbeat_ticks &&
		  2 * (uint64_t) opts->quiet_heartbeat_ticks <= opts->election_timeout_ticks)) &&
		opts->max_inflight_msgs >= 1 &&
		opts->max_inflight_msgs <= RAFT_MAX_INFLIGHT &&
		opts->max_entries_per_msg >= 1 &&
		opts->max_entries_per_msg <= RAFT_MAX_ENTRIES_PER_MSG &&
		opts->max_bytes_per_msg >= 1 &&
		opts->log_capacity_entries >= 2 &&
		opts->log_capacity_bytes >= opts->max_entry_bytes &&
		opts->max_entry_bytes >= 64 &&
		/* whatever the core accepts must fit in a message on the wire */
		(uint64_t) opts->max_entry_bytes + 256 <= RAFT_WIRE_MAX_MSG_BYTES &&
		(uint64_t) opts->max_bytes_per_msg + opts->max_entry_bytes +
		(uint64_t) opts->max_entries_per_msg * 16 + 4096 <= RAFT_WIRE_MAX_MSG_BYTES &&
		opts->max_pending_reads >= 1 &&
		opts->max_pending_reads <= 32 * 1024;
}

size_t
raft_size(const raft_options *opts)
{
	size_t		size = 0;

	if (opts == NULL || !options_valid(opts))
		return 0;
	size += ALIGN8(sizeof(raft));
	size += ALIGN8(sizeof(raft_slot) * (size_t) opts->log_capacity_entries);
	size += ALIGN8((size_t) opts->log_capacity_bytes);
	size += ALIGN8(sizeof(raft_msg) * (size_t) outbox_capacity());
	size += ALIGN8(sizeof(raft_entry) * (size_t) out_entries_capacity(opts));
	size += ALIGN8(sizeof(raft_pending_read) * (size_t) opts->max_pending_reads);
	size += ALIGN8(sizeof(raft_read_state) * (size_t) opts->max_pending_reads);
	return size;
}

/* Draws the next pseudo-random number (splitmix64) from the caller's seed. */
static uint64_t
next_random(raft *r)
{
	uint64_t	z = (r->rng += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

void
raft_reset_election_timer(raft *r)
{
	uint32_t	t = r->opts.election_timeout_ticks;

	r->election_elapsed = 0;
	r->heartbeat_elapsed = 0;
	r->randomized_timeout = t + (uint32_t) (next_random(r) % t);
	if (r->gone_rounds > 0 && r->role != RAFT_LEADER)
	{
		/* a random few ticks, two per voter and two more, never beyond t */
		uint32_t	spread = 2 * raft_voter_count(r) + 2;

		r->gone_rounds--;
		r->randomized_timeout = 2 + (uint32_t) (next_random(r) % spread);
		if (r->randomized_timeout > t)
			r->randomized_timeout = t;
	}
}

int
raft_init(void *mem, size_t size, const raft_options *opts, raft **out)
{
	uint8_t    *p = mem;
	raft	   *r;
	raft_slot  *slots;
	uint8_t    *arena;

	if (mem == NULL || out == NULL || opts == NULL || !options_valid(opts))
		return RAFT_ERR_INVALID_ARG;
	if (((uintptr_t) mem & 7) != 0)
		return RAFT_ERR_INVALID_ARG;
	if (size < raft_size(opts))
		return RAFT_ERR_NO_MEMORY;

	r = (raft *) p;
	memset(r, 0, sizeof(*r));
	p += ALIGN8(sizeof(raft));
	slots = (raft_slot *) p;
	p += ALIGN8(sizeof(raft_slot) * (size_t) opts->log_capacity_entries);
	arena = p;
	p += ALIGN8((size_t) opts->log_capacity_bytes);
	r->out = (raft_msg *) p;
	r->out_cap = outbox_capacity();
	p += ALIGN8(sizeof(raft_msg) * (size_t) r->out_cap);
	r->out_entries = (raft_entry *) p;
	r->out_entries_cap = out_entries_capacity(opts);
	p += ALIGN8(sizeof(raft_entry) * (size_t) r->out_entries_cap);
	r->reads = (raft_pending_read *) p;
	p += ALIGN8(sizeof(raft_pending_read) * (size_t) opts->max_pending_reads);
	r->read_states = (raft_read_state *) p;

	r->opts = *opts;
	r->id = opts->id;
	r->rng = opts->random_seed ^ ((uint64_t) opts->id << 32);
	raft_log_init(&r->log, slots, opts->log_capacity_entries,
				  arena, opts->log_capacity_bytes);
	r->role = RAFT_FOLLOWER;
	r->unstable_from = 1;
	raft_reset_election_timer(r);
	*out = r;
	return RAFT_OK;
}

int
raft_set_timeouts(raft *r, uint32_t election_timeout_ticks,
				  uint32_t heartbeat_ticks, uint32_t quiet_heartbeat_ticks)
{
	raft_options opts = r->opts;

	opts.election_timeout_ticks = election_timeout_ticks;
	opts.heartbeat_ticks = heartbeat_ticks;
	opts.quiet_heartbeat_ticks = quiet_heartbeat_ticks;
	if (!options_valid(&opts))
		return RAFT_ERR_INVALID_ARG;
	r->opts = opts;
	if (r->randomized_timeout < election_timeout_ticks ||
		r->randomized_timeout >= 2 * election_timeout_ticks)
		r->randomized_timeout = election_timeout_ticks +
			(uint32_t) (next_random(r) % election_timeout_ticks);
	return RAFT_OK;
}

int
raft_load(raft *r, const raft_hard_state *hs, const raft_snapshot_meta *base,
		  const raft_entry *entries, size_t n_entries, raft_index_t applied)
{
	size_t		i;
	int			rc;

	if (hs == NULL || base == NULL || (n_entries > 0 && entries == NULL))
		return RAFT_ERR_INVALID_ARG;
	if (base->config.n_members > RAFT_MAX_MEMBERS)
		return RAFT_ERR_INVALID_ARG;
	if (hs->commit < base->index || hs->commit > base->index + n_entries)
		return RAFT_ERR_INVALID_ARG;
	if (applied < base->index || applied > hs->commit)
		return RAFT_ERR_INVALID_ARG;

	raft_log_reset(&r->log, base->index, base->term);
	for (i = 0; i < n_entries; i++)
	{
		const raft_entry *e = &entries[i];

		if (e->index != base->index + 1 + i ||
			e->term < raft_log_last_term(&r->log) ||
			e->len > r->opts.max_entry_bytes ||
			(e->len > 0 && e->data == NULL) ||
			e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONFIG)
			return RAFT_ERR_INVALID_ARG;
		rc = raft_log_append(&r->log, e->term, e->type, e->data, e->len, true);
		if (rc != RAFT_OK)
			return rc;
	}
	if (hs->term < raft_log_last_term(&r->log))
		return RAFT_ERR_INVALID_ARG;

	r->term = hs->term;
	r->vote = hs->vote;
	r->commit = hs->commit;
	r->applied = applied;
	r->persisted = raft_log_last_index(&r->log);
	r->persisted_hs = *hs;
	r->unstable_from = raft_log_last_index(&r->log) + 1;
	r->base_config = base->config;
	raft_config_refresh(r);
	raft_become_follower(r, r->term, RAFT_NO_NODE);
	/* a node that saw a term may have answered a leader of it */
	r->starting = r->term > 0 && RAFT_PLANTED_BUG != 8;
	return RAFT_OK;
}

bool
raft_is_voter(const raft *r, raft_id_t id)
{
	return raft_config_is_voter(&r->config, id);
}

uint32_t
raft_voter_count(const raft *r)
{
	uint32_t	i;
	uint32_t	n = 0;

	for (i = 0; i < r->config.n_members; i++)
		if (r->config.members[i].voter)
			n++;
	return n;
}

raft_progress *
raft_progress_find(raft *r, raft_id_t id)
{
	uint32_t	i;

	for (i = 0; i < r->n_progress; i++)
		if (r->progress[i].id == id)
			return &r->progress[i];
	return NULL;
}

/*
 * Is a log ending at (index, term) at least as up-to-date as ours?
 * Thesis 3.6.1: compare last terms first, then lengths.
 */
bool
raft_log_up_to_date(const raft *r, raft_index_t index, raft_term_t term)
{
	raft_term_t last_term = raft_log_last_term(&r->log);

	return term > last_term ||
		(term == last_term && index >= raft_log_last_index(&r->log));
}

/*
 * Queues a message for sending.  Returns NULL when the outbox is full; the
 * caller then simply does not send (see the file NOTES).
 */
raft_msg *
raft_out_msg(raft *r, uint8_t type, raft_id_t to)
{
	raft_msg   *m;

	if (r->n_out >= r->out_cap)
		return NULL;
	m = &r->out[r->n_out++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->id;
	m->to = to;
	m->term = r->term;
	return m;
}

/*
 * Drops queued appends that carry entries at or before index.  Queued
 * messages point into the log, so they must go before those entries can
 * change: when a leader becomes a follower (a new leader may overwrite
 * its suffix) and when the log is compacted.
 */
static void
outbox_drop_entries_upto(raft *r, raft_index_t index)
{
	uint32_t	i;
	uint32_t	kept = 0;

	for (i = 0; i < r->n_out; i++)
	{
		const raft_msg *m = &r->out[i];

		if (m->type != RAFT_MSG_APPEND || m->n_entries == 0 ||
			m->index + 1 > index)
			r->out[kept++] = *m;
	}
	r->n_out = kept;
}

void
raft_become_follower(raft *r, raft_term_t term, raft_id_t leader)
{
	if (r->role == RAFT_LEADER)
	{
		outbox_drop_entries_upto(r, UINT64_MAX);
		raft_reads_drop(r);
	}
	if (term != r->term)
	{
		r->term = term;
		r->vote = RAFT_NO_NODE;
	}
	r->role = RAFT_FOLLOWER;
	r->leader = leader;
	r->transfer_target = RAFT_NO_NODE;
	if (leader != RAFT_NO_NODE)
		r->gone_rounds = 0;
	raft_reset_election_timer(r);
}

/*
 * Starts an election (thesis 3.4) or a pre-vote round (thesis 9.6).  A
 * pre-candidate keeps its term and vote: nothing changes durably until a
 * majority says a real election could succeed.
 */
void
raft_become_candidate(raft *r, bool pre)
{
	uint32_t	i;

	RAFT_ASSERT(r->role != RAFT_LEADER);
	if (pre)
		r->role = RAFT_PRE_CANDIDATE;
	else
	{
		r->role = RAFT_CANDIDATE;
		r->term++;
		r->vote = r->id;
		r->elections_started++;
	}
	r->leader = RAFT_NO_NODE;
	for (i = 0; i < r->n_progress; i++)
	{
		r->progress[i].vote_responded = false;
		r->progress[i].vote_granted = false;
	}
	raft_reset_election_timer(r);
}

/*
 * Takes leadership: every follower starts in probe state just after our
 * last entry, and a no-op entry of the new term lets us commit what
 * earlier leaders left (thesis 3.6.2 and 6.4).
 */
void
raft_become_leader(raft *r)
{
	uint32_t	i;

	RAFT_ASSERT(r->role == RAFT_CANDIDATE);
	r->role = RAFT_LEADER;
	r->elections_won++;
	r->leader = r->id;
	r->transfer_target = RAFT_NO_NODE;
	r->gone_rounds = 0;
	raft_reset_election_timer(r);
	for (i = 0; i < r->n_progress; i++)
	{
		raft_progress_reset(r, &r->progress[i]);
		r->progress[i].recent_active = true;
	}
	raft_append_leader_noop(r);
	raft_broadcast_append(r);
}

/*
 * Appends the no-op that lets a new leader commit (thesis 6.4), into the
 * log's reserved slots if need be.  Should even those be taken, the tick
 * retries until the caller's compaction makes room.
 */
void
raft_append_leader_noop(raft *r)
{
	RAFT_ASSERT(r->role == RAFT_LEADER);
	if (raft_log_last_term(&r->log) == r->term)
		return;
	if (raft_log_append(&r->log, r->term, RAFT_ENTRY_NOOP, NULL, 0, true) == RAFT_OK)
		raft_broadcast_append(r);
}

/*
 * Appends an entry of the current term to the leader's own log.  Its own
 * progress advances only when raft_persisted() says the entry is durable.
 */
int
raft_append_local(raft *r, uint8_t type, const void *data, uint32_t len,
				  raft_index_t *index)
{
	int			rc;

	RAFT_ASSERT(r->role == RAFT_LEADER);
	if (len > r->opts.max_entry_bytes)
		return RAFT_ERR_TOO_LARGE;
	rc = raft_log_append(&r->log, r->term, type, data, len, false);
	if (rc != RAFT_OK)
		return rc;
	if (index != NULL)
		*index = raft_log_last_index(&r->log);
	if (type == RAFT_ENTRY_CONFIG)
	{
		raft_entry	e;
		raft_config config;

		raft_log_entry(&r->log, raft_log_last_index(&r->log), &e);
		rc = raft_config_decode(&e, &config, NULL, NULL);
		RAFT_ASSERT(rc == RAFT_OK);
		raft_config_apply(r, &config, e.index);
	}
	return RAFT_OK;
}

/*
 * A leader is quiet when nothing is under way that a heartbeat round
 * would help along: its log is committed and every member holds all of
 * it, no append is in flight, no read waits for a round, no transfer runs.
 */
static bool
leader_quiet(const raft *r)
{
	raft_index_t last = raft_log_last_index(&r->log);
	uint32_t	i;

	if (r->commit != last || r->n_reads > 0 || r->transfer_target != RAFT_NO_NODE)
		return false;
	for (i = 0; i < r->n_progress; i++)
	{
		const raft_progress *pr = &r->progress[i];

		if (pr->id != r->id &&
			(pr->match != last || pr->inflight_count > 0 ||
			 pr->state != RAFT_PROGRESS_REPLICATE))
			return false;
	}
	return true;
}

/* Ticks between a leader's heartbeat rounds, as things stand. */
static uint32_t
heartbeat_period(const raft *r)
{
	if (r->opts.quiet_heartbeat_ticks != 0 && leader_quiet(r))
		return r->opts.quiet_heartbeat_ticks;
	return r->opts.heartbeat_ticks;
}

int
raft_tick(raft *r)
{
	r->election_elapsed++;
	if (r->election_elapsed >= r->opts.election_timeout_ticks)
		r->starting = false;
	if (r->role != RAFT_LEADER)
	{
		if (r->election_elapsed >= r->randomized_timeout &&
			raft_is_voter(r, r->id) && !r->campaigns_held)
			raft_campaign(r, r->opts.pre_vote, false);
		return RAFT_OK;
	}

	raft_transfer_tick(r);
	if (r->role != RAFT_LEADER)
		return RAFT_OK;			/* a transfer that failed after all */
	raft_append_leader_noop(r);
	if (r->election_elapsed >= r->opts.election_timeout_ticks)
	{
		r->election_elapsed = 0;
		if (r->opts.check_quorum)
		{
			uint32_t	i;
			uint32_t	active = 0;

			/*
			 * Check-quorum (thesis 6.2): a leader that has not heard from
			 * a majority within an election timeout steps down, so that a
			 * partitioned leader stops serving.
			 */
			for (i = 0; i < r->n_progress; i++)
			{
				raft_progress *pr = &r->progress[i];

				if (pr->voter && (pr->id == r->id || pr->recent_active))
					active++;
				pr->recent_active = false;
			}
			if (active * 2 <= raft_voter_count(r) && RAFT_PLANTED_BUG != 6)
			{
				raft_become_follower(r, r->term, RAFT_NO_NODE);
				return RAFT_OK;
			}
		}
	}
	if (r->role == RAFT_LEADER &&
		++r->heartbeat_elapsed >= heartbeat_period(r))
	{
		r->heartbeat_elapsed = 0;
		/* a new context: its answers acknowledge every read before it */
		raft_broadcast_heartbeat(r, ++r->heartbeat_context);
	}
	if (r->role == RAFT_LEADER)
		raft_send_commit_notices(r);
	return RAFT_OK;
}

/* Ticks until a counter now at elapsed reaches limit when ticked: at least 1. */
static uint32_t
ticks_left(uint32_t limit, uint32_t elapsed)
{
	return limit > elapsed + 1 ? limit - elapsed : 1;
}

static uint32_t
min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

uint32_t
raft_ticks_until_due(const raft *r)
{
	uint32_t	due = r->opts.election_timeout_ticks;
	uint32_t	i;

	if (r->role != RAFT_LEADER)
	{
		if (r->starting)
			due = min_u32(due, ticks_left(r->opts.election_timeout_ticks,
									  r->election_elapsed));
		if (raft_is_voter(r, r->id) && !r->campaigns_held)
			due = min_u32(due, ticks_left(r->randomized_timeout, r->election_elapsed));
		return due;
	}
	if (raft_log_last_term(&r->log) != r->term)
		return 1;				/* the no-op still waits for room */
	due = min_u32(due, ticks_left(r->opts.election_timeout_ticks, r->election_elapsed));
	due = min_u32(due, ticks_left(heartbeat_period(r), r->heartbeat_elapsed));
	if (r->transfer_target != RAFT_NO_NODE)
		due = min_u32(due, ticks_left(r->opts.election_timeout_ticks,
								  r->transfer_elapsed));
	for (i = 0; i < r->n_progress; i++)
	{
		const raft_progress *pr = &r->progress[i];
		raft_index_t known = pr->match < r->commit ? pr->match : r->commit;

		if (pr->id != r->id && (pr->commit_due != 0 || pr->commit_sent < known))
			return 1;
	}
	return due;
}

static bool
msg_valid(const raft *r, const raft_msg *m)
{
	uint32_t	i;

	if (m == NULL || m->type < RAFT_MSG_APPEND || m->type > RAFT_MSG_TYPE_MAX)
		return false;
	if (m->to != r->id || m->from == RAFT_NO_NODE || m->from == r->id)
		return false;
	if (m->n_entries > RAFT_MAX_ENTRIES_PER_MSG ||
		(m->n_entries > 0 && (m->entries == NULL || m->type != RAFT_MSG_APPEND)))
		return false;
	if (m->type == RAFT_MSG_SNAPSHOT && m->config.n_members > RAFT_MAX_MEMBERS)
		return false;
	for (i = 0; i < m->n_entries; i++)
	{
		const raft_entry *e = &m->entries[i];

		/* a leader's entries are consecutive, of non-decreasing terms */
		if (e->index != m->index + 1 + i ||
			e->term > m->term ||
			e->term < (i == 0 ? m->log_term : m->entries[i - 1].term) ||
			e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONFIG ||
			(e->len > 0 && e->data == NULL))
			return false;
	}
	return true;
}

/*
 * Applies the term rules before any type-specific handling.  Returns false
 * when the message must be ignored.
 */
static bool
step_term(raft *r, const raft_msg *m)
{
	if (m->term > r->term)
	{
		bool		is_vote = m->type == RAFT_MSG_VOTE ||
			m->type == RAFT_MSG_PRE_VOTE;

		if (is_vote && r->opts.check_quorum && RAFT_PLANTED_BUG != 7 &&
			!(m->flags & RAFT_MSG_FLAG_TRANSFER) &&
			(r->leader != RAFT_NO_NODE || r->starting) &&
			r->election_elapsed < r->opts.election_timeout_ticks)
		{
			/*
			 * Leader lease (thesis 4.2.3): we heard from a leader less than
			 * a minimum election timeout ago (or may have, before a
			 * restart), so this candidate cannot be right that the leader
			 * is gone.  Do not even adopt its term.  The leader counts on
			 * it to take writes alone (raft_status.lease_context).
			 */
			return false;
		}
		if (m->type == RAFT_MSG_PRE_VOTE ||
			(m->type == RAFT_MSG_PRE_VOTE_RESP && !m->reject))
		{
			/* pre-votes carry a future term and change nothing */
			return true;
		}
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
			m->type == RAFT_MSG_SNAPSHOT)
			raft_become_follower(r, m->term, m->from);
		else
			raft_become_follower(r, m->term, RAFT_NO_NODE);
		return true;
	}
	if (m->term < r->term)
	{
		if ((r->opts.check_quorum || r->opts.pre_vote) &&
			(m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT))
		{
			/*
			 * A stale leader, perhaps back from a partition.  Tell it our
			 * term so it steps down; with pre-vote and check-quorum it
			 * would otherwise never learn it.
			 */
			raft_msg   *resp = raft_out_msg(r, RAFT_MSG_APPEND_RESP, m->from);

			if (resp != NULL)
				resp->commit = r->commit;
		}
		else if (m->type == RAFT_MSG_PRE_VOTE)
		{
			raft_msg   *resp = raft_out_msg(r, RAFT_MSG_PRE_VOTE_RESP, m->from);

			if (resp != NULL)
				resp->reject = true;
		}
		return false;
	}
	return true;
}

int
raft_step(raft *r, const raft_msg *m)
{
	if (!msg_valid(r, m))
		return RAFT_ERR_INVALID_ARG;
	if (!step_term(r, m))
		return RAFT_OK;

	switch (m->type)
	{
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PRE_VOTE:
			raft_recv_vote(r, m);
			return RAFT_OK;
		case RAFT_MSG_VOTE_RESP:
		case RAFT_MSG_PRE_VOTE_RESP:
			raft_recv_vote_resp(r, m);
			return RAFT_OK;
		default:
			break;
	}

	if (r->role == RAFT_LEADER)
	{
		if (m->type == RAFT_MSG_APPEND_RESP)
			raft_recv_append_resp(r, m);
		else if (m->type == RAFT_MSG_HEARTBEAT_RESP)
			raft_recv_heartbeat_resp(r, m);
		/* other messages of our own term cannot come from a leader */
		return RAFT_OK;
	}

	switch (m->type)
	{
		case RAFT_MSG_APPEND:
		case RAFT_MSG_HEARTBEAT:
		case RAFT_MSG_SNAPSHOT:
			/* a leader of our term exists (election safety) */
			if (r->role != RAFT_FOLLOWER)
				raft_become_follower(r, r->term, m->from);
			r->election_elapsed = 0;
			r->leader = m->from;
			if (m->type == RAFT_MSG_APPEND)
				raft_recv_append(r, m);
			else if (m->type == RAFT_MSG_HEARTBEAT)
				raft_recv_heartbeat(r, m);
			else
				raft_recv_snapshot(r, m);
			break;
		case RAFT_MSG_TIMEOUT_NOW:
			/* only our leader may hand us its leadership */
			if (m->from == r->leader && raft_is_voter(r, r->id))
				raft_campaign(r, false, true);
			break;
		default:
			break;
	}
	return RAFT_OK;
}

int
raft_propose(raft *r, uint8_t type, const void *data, uint32_t len,
			 raft_index_t *index)
{
	int			rc;

	if (type != RAFT_ENTRY_NORMAL && type != RAFT_ENTRY_NOOP)
		return RAFT_ERR_INVALID_ARG;
	if (len > 0 && data == NULL)
		return RAFT_ERR_INVALID_ARG;
	if (r->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (r->transfer_target != RAFT_NO_NODE)
		return RAFT_ERR_TRANSFER_PENDING;
	rc = raft_append_local(r, type, data, len, index);
	if (rc != RAFT_OK)
		return rc;
	raft_broadcast_append(r);
	return RAFT_OK;
}

/*
 * Records that entries up to index (whose term is term) are durable.  A
 * report about an entry that has since been overwritten is ignored.
 */
int
raft_persisted(raft *r, raft_index_t index, raft_term_t term)
{
	raft_term_t t;

	if (!raft_log_term(&r->log, index, &t) || t != term)
		return RAFT_OK;
	if (index <= r->persisted)
		return RAFT_OK;
	r->persisted = index;
	if (r->role == RAFT_LEADER)
	{
		raft_progress *self = raft_progress_find(r, r->id);

		if (self != NULL && self->match < index)
		{
			self->match = index;
			self->next = index + 1;
		}
		if (raft_maybe_commit(r))
			raft_commit_advanced(r);
	}
	return RAFT_OK;
}

/*
 * Drops the log prefix up to index, which the state machine has applied
 * (thesis 5.1).  Followers that still need those entries get a snapshot.
 */
int
raft_compact(raft *r, raft_index_t index)
{
	raft_config config;

	if (index > r->applied || index > r->persisted)
		return RAFT_ERR_INVALID_ARG;
	if (index <= r->log.base_index)
		return RAFT_OK;
	if (!raft_config_at(r, index, &config))
		return RAFT_ERR_INVALID_ARG;
	r->base_config = config;
	outbox_drop_entries_upto(r, index);
	raft_log_compact(&r->log, index);
	return RAFT_OK;
}

void
raft_hold_campaigns(raft *r, bool hold)
{
	r->campaigns_held = hold;
}

int
raft_campaign_now(raft *r)
{
	if (r->role == RAFT_LEADER)
		return RAFT_OK;
	if (!raft_is_voter(r, r->id))
		return RAFT_ERR_UNKNOWN_NODE;
	raft_campaign(r, r->opts.pre_vote, false);
	return RAFT_OK;
}

void
raft_get_base(const raft *r, raft_snapshot_meta *base)
{
	base->index = r->log.base_index;
	base->term = r->log.base_term;
	base->config = r->base_config;
}

/* The hard state the next ready asks the caller to persist. */
static raft_hard_state
current_hard_state(const raft *r)
{
	raft_hard_state hs;

	hs.term = r->term;
	hs.vote = r->vote;
	hs.commit = r->commit;
#if RAFT_PLANTED_BUG == 1
	/* the planted bug: a vote cast in an already persisted term is lost */
	hs.vote = r->persisted_hs.term == r->term ? r->persisted_hs.vote : 0;
#endif
	return hs;
}

static bool
hard_state_changed(const raft *r)
{
	raft_hard_state hs = current_hard_state(r);

	return hs.term != r->persisted_hs.term ||
		hs.vote != r->persisted_hs.vote ||
		hs.commit != r->persisted_hs.commit;
}

bool
raft_has_ready(const raft *r)
{
	return r->snapshot_pending || hard_state_changed(r) ||
		r->unstable_from <= raft_log_last_index(&r->log) ||
		r->n_out > 0 || r->applied < r->commit || r->n_read_states > 0;
}

void
raft_ready_get(raft *r, raft_ready *rd)
{
	memset(rd, 0, sizeof(*rd));
	r->handed.valid = true;
	r->handed.snapshot = r->snapshot_pending;
	r->handed.hs = current_hard_state(r);
	r->handed.unstable_from = r->unstable_from;
	r->handed.persist_to = raft_log_last_index(&r->log);
	r->handed.apply_to = r->commit;
	r->handed.n_msgs = r->n_out;
	r->handed.n_reads = r->n_read_states;
	rd->snapshot_changed = r->snapshot_pending;
	rd->snapshot = r->snapshot;
	rd->hard_state_changed = hard_state_changed(r);
	rd->hard_state = current_hard_state(r);
	rd->persist_from = r->unstable_from;
	rd->persist_to = raft_log_last_index(&r->log);
	rd->msgs = r->out;
	rd->n_msgs = r->n_out;
	rd->send_before_persist = r->role == RAFT_LEADER && !r->snapshot_pending &&
		rd->hard_state.term == r->persisted_hs.term &&
		rd->hard_state.vote == r->persisted_hs.vote;
	rd->apply_from = r->applied + 1;
	rd->apply_to = r->commit;
	rd->reads = r->read_states;
	rd->n_reads = r->n_read_states;
}

/*
 * Marks what the last raft_ready_get handed out as done, and only that:
 * events between the two (a proposal made while applying, say) leave their
 * own work pending for the next ready.
 */
void
raft_advance(raft *r)
{
	if (!r->handed.valid)
		return;
	r->handed.valid = false;
	if (r->handed.snapshot)
		r->snapshot_pending = false;
	r->persisted_hs = r->handed.hs;
	/* a truncation since then moved unstable_from back: keep that */
	if (r->unstable_from == r->handed.unstable_from &&
		r->handed.persist_to + 1 > r->unstable_from)
		r->unstable_from = r->handed.persist_to + 1;
	if (r->handed.apply_to > r->applied)
		r->applied = r->handed.apply_to;

	/* messages may have been dropped since (see outbox_drop_entries_upto) */
	if (r->handed.n_msgs > r->n_out)
		r->handed.n_msgs = r->n_out;
	memmove(r->out, r->out + r->handed.n_msgs,
			(r->n_out - r->handed.n_msgs) * sizeof(raft_msg));
	r->n_out -= r->handed.n_msgs;
	if (r->n_out == 0)
		r->n_out_entries = 0;
	memmove(r->read_states, r->read_states + r->handed.n_reads,
			(r->n_read_states - r->handed.n_reads) * sizeof(raft_read_state));
	r->n_read_states -= r->handed.n_reads;
}

int
raft_entry_get(const raft *r, raft_index_t index, raft_entry *e)
{
	if (e == NULL)
		return RAFT_ERR_INVALID_ARG;
	if (index <= r->log.base_index)
		return RAFT_ERR_COMPACTED;
	if (!raft_log_entry(&r->log, index, e))
		return RAFT_ERR_UNAVAILABLE;
	return RAFT_OK;
}

raft_term_t
raft_term_at(const raft *r, raft_index_t index)
{
	raft_term_t term = 0;

	raft_log_term(&r->log, index, &term);
	return term;
}

/* See raft_status.lease_context. */
static uint64_t
lease_context(const raft *r)
{
	uint64_t	acked[RAFT_MAX_MEMBERS];
	uint32_t	n = 0;
	uint32_t	i;
	uint32_t	j;

	if (r->role != RAFT_LEADER || r->transfer_target != RAFT_NO_NODE)
		return 0;
	for (i = 0; i < r->n_progress; i++)
	{
		const raft_progress *pr = &r->progress[i];
		uint64_t	c;

		if (!pr->voter)
			continue;
		c = pr->id == r->id ? r->heartbeat_context : pr->acked_context;
		/* insertion sort, newest first */
		for (j = n; j > 0 && acked[j - 1] < c; j--)
			acked[j] = acked[j - 1];
		acked[j] = c;
		n++;
	}
	/* the n / 2 + 1 newest answered this one or a newer one */
	return n == 0 ? 0 : acked[n / 2];
}

raft_role
raft_get_role(const raft *r)
{
	return r->role;
}

void
raft_get_status(const raft *r, raft_status *st)
{
	uint32_t	i;

	memset(st, 0, sizeof(*st));
	st->id = r->id;
	st->role = r->role;
	st->is_learner = raft_config_find(&r->config, r->id) >= 0 &&
		!raft_is_voter(r, r->id);
	st->term = r->term;
	st->vote = r->vote;
	st->leader = r->leader;
	st->first_index = r->log.base_index + 1;
	st->last_index = raft_log_last_index(&r->log);
	st->last_term = raft_log_last_term(&r->log);
	st->commit_index = r->commit;
	st->applied_index = r->applied;
	st->persisted_index = r->persisted;
	st->transfer_target = r->transfer_target;
	st->conf_pending = r->config_index > r->commit;
	st->elections_started = r->elections_started;
	st->elections_won = r->elections_won;
	st->config = r->config;
	for (i = 0; i < r->n_progress; i++)
	{
		const raft_progress *pr = &r->progress[i];

		st->progress[i].id = pr->id;
		st->progress[i].voter = pr->voter;
		if (r->role == RAFT_LEADER)
		{
			st->progress[i].match_index = pr->match;
			st->progress[i].next_index = pr->next;
			st->progress[i].commit_index = pr->remote_commit;
			st->progress[i].recent_active = pr->recent_active;
		}
	}
	st->lease_context = lease_context(r);
}
