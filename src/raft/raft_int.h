/*-------------------------------------------------------------------------
 *
 * raft_int.h
 *	  Internal structures of the consensus core, shared by its files.
 *
 * NOTES
 *	  Nothing here is part of the caller's API (see raft.h).  The core is
 *	  split by concern: log.c (the in-memory log ring), raft.c (lifecycle,
 *	  events, ready), election.c, replication.c, membership.c and
 *	  leadership.c (transfer and ReadIndex).
 *
 *	  RAFT_PLANTED_BUG, when defined at compile time, enables one known
 *	  bug so that test/sim can prove its checks catch it (run_checks.sh
 *	  names the check each must fail):
 *		1  a granted vote is not persisted (hard state keeps the old vote);
 *		2  the leader commits entries of earlier terms by counting replicas
 *		   (thesis 3.6.2, Figure 3.7 -- the paper's Figure 8);
 *		3  a follower accepts AppendEntries without the previous-entry
 *		   check;
 *		4  (in the simulator's disk) entries are written before the term
 *		   and vote of their term;
 *		5  a heartbeat's answer does not unpause a probe: a follower that
 *		   lost an append stays behind (liveness);
 *		6  a leader that hears from no majority does not step down
 *		   (check-quorum);
 *		7  a voter that heard from a leader votes for another at once
 *		   (the lease);
 *		8  a restarted voter forgets the lease it may have given.
 *	  Planted builds also disable RAFT_ASSERT so that the simulator's
 *	  checks, not the core's assertions, have to notice.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_RAFT_INT_H
#define PG_RAFT_RAFT_INT_H

#include "raft.h"

#ifndef RAFT_PLANTED_BUG
#define RAFT_PLANTED_BUG 0
#endif

#if defined(NDEBUG) || RAFT_PLANTED_BUG != 0
#define RAFT_ASSERT(cond) ((void) 0)
#else
#include <assert.h>
#define RAFT_ASSERT(cond) assert(cond)
#endif

/* Upper bound on appends in flight to one peer (options may lower it). */
#define RAFT_MAX_INFLIGHT 64

/* Metadata of one entry in the ring; its payload lives in the arena. */
typedef struct raft_slot
{
	raft_term_t term;
	uint32_t	offset;
	uint32_t	len;
	uint8_t		type;
} raft_slot;

/*
 * The log kept in memory: entries (base_index, base_index + count] in a
 * ring of slots, their payloads in order in a circular byte arena.  Each
 * payload is contiguous, so raft_entry_get can hand out a pointer.
 * Payload bytes of non-empty entries occupy [arena_start, arena_tail),
 * or, when arena_wrapped, [arena_start, cap) and [0, arena_tail).
 */
typedef struct raft_log
{
	raft_index_t base_index;
	raft_term_t base_term;
	raft_slot  *slots;
	uint32_t	slots_cap;
	uint32_t	head;			/* slot of base_index + 1 */
	uint32_t	count;
	uint8_t    *arena;
	uint32_t	arena_cap;
	uint32_t	arena_start;
	uint32_t	arena_tail;
	bool		arena_wrapped;
} raft_log;

typedef enum raft_progress_state
{
	RAFT_PROGRESS_PROBE = 0,	/* one append at a time, finding the match */
	RAFT_PROGRESS_REPLICATE = 1,	/* pipelined appends */
	RAFT_PROGRESS_SNAPSHOT = 2	/* waiting for a snapshot to be installed */
} raft_progress_state;

/* What the leader knows about one member (thesis Figure 3.1). */
typedef struct raft_progress
{
	raft_id_t	id;
	bool		voter;
	raft_progress_state state;
	raft_index_t match;
	raft_index_t next;
	bool		probe_sent;
	bool		recent_active;
	uint64_t	acked_context;	/* newest heartbeat it answered, this term */
	raft_index_t commit_sent;	/* highest commit index sent to it */
	raft_index_t commit_due;	/* one it held at the last tick, not yet
								 * sent: told at this tick (0 if none) */
	raft_index_t remote_commit; /* its commit index, as it last said */
	raft_index_t pending_snapshot;
	/* last index and payload bytes of each append in flight, oldest first */
	raft_index_t inflight[RAFT_MAX_INFLIGHT];
	uint64_t	inflight_bytes[RAFT_MAX_INFLIGHT];
	uint32_t	inflight_start;
	uint32_t	inflight_count;
	uint64_t	inflight_total_bytes;
	/* votes, during an election */
	bool		vote_responded;
	bool		vote_granted;
} raft_progress;

typedef struct raft_pending_read
{
	uint64_t	request_id;
	raft_index_t index;
	uint64_t	context;
	uint32_t	acks;			/* bit per progress slot */
} raft_pending_read;

struct raft
{
	raft_options opts;
	raft_id_t	id;
	raft_role	role;
	raft_term_t term;
	bool		campaigns_held; /* raft_hold_campaigns */
	raft_id_t	vote;
	raft_id_t	leader;
	raft_index_t commit;
	raft_index_t applied;		/* handed out to the caller to apply */
	raft_index_t persisted;		/* durable on this node (raft_persisted) */

	raft_log	log;

	/* latest configuration in the log, and the one at the log base */
	raft_config config;
	raft_index_t config_index;	/* 0 when it is the base configuration */
	raft_config base_config;

	/* one per member of config, in the same order */
	raft_progress progress[RAFT_MAX_MEMBERS];
	uint32_t	n_progress;

	uint32_t	election_elapsed;
	uint32_t	heartbeat_elapsed;
	/*
	 * Started (or restarted) less than an election timeout ago: it may
	 * have promised a leader, before a crash, not to vote for another
	 * within that time (the leader's lease), and keeps that promise.
	 */
	bool		starting;
	uint32_t	randomized_timeout;
	uint64_t	rng;
	/*
	 * Elections left to hold within a few ticks of each other, since the
	 * caller said the leader is gone (raft_leader_gone): the first may
	 * come before the other voters know it too, and be refused.
	 */
	uint32_t	gone_rounds;

	/* elections this node started (as a candidate, not a pre-candidate), and won */
	uint64_t	elections_started;
	uint64_t	elections_won;

	raft_id_t	transfer_target;
	uint32_t	transfer_elapsed;
	bool		transfer_told;	/* TimeoutNow went to the target */

	raft_pending_read *reads;
	uint32_t	n_reads;
	/*
	 * Every heartbeat round, and every ReadIndex, takes the next context:
	 * a follower's answer to one acknowledges the leader as of when it
	 * was sent, for the reads before it and for the lease (raft.h).
	 */
	uint64_t	heartbeat_context;

	/* what the last raft_ready_get handed out, for raft_advance */
	struct
	{
		bool		valid;
		bool		snapshot;
		raft_hard_state hs;
		raft_index_t unstable_from;
		raft_index_t persist_to;
		raft_index_t apply_to;
		uint32_t	n_msgs;
		uint32_t	n_reads;
	}			handed;

	/* what the next ready hands out */
	raft_hard_state persisted_hs;	/* as last handed out */
	raft_index_t unstable_from; /* first entry not yet handed out */
	bool		snapshot_pending;
	raft_snapshot_meta snapshot;

	raft_msg   *out;
	uint32_t	n_out;
	uint32_t	out_cap;
	raft_entry *out_entries;
	uint32_t	n_out_entries;
	uint32_t	out_entries_cap;
	raft_read_state *read_states;
	uint32_t	n_read_states;
};

/* log.c */
extern void raft_log_init(raft_log *log, raft_slot *slots, uint32_t slots_cap,
						  uint8_t *arena, uint32_t arena_cap);
extern void raft_log_reset(raft_log *log, raft_index_t base_index,
						   raft_term_t base_term);
extern raft_index_t raft_log_last_index(const raft_log *log);
extern raft_term_t raft_log_last_term(const raft_log *log);
extern bool raft_log_term(const raft_log *log, raft_index_t index,
						  raft_term_t *term);
extern bool raft_log_entry(const raft_log *log, raft_index_t index,
						   raft_entry *e);
extern int	raft_log_append(raft_log *log, raft_term_t term, uint8_t type,
							const void *data, uint32_t len, bool use_reserve);
extern void raft_log_truncate_after(raft_log *log, raft_index_t index);
extern void raft_log_compact(raft_log *log, raft_index_t index);

/* raft.c */
extern void raft_become_follower(raft *r, raft_term_t term, raft_id_t leader);
extern void raft_become_candidate(raft *r, bool pre);
extern void raft_become_leader(raft *r);
extern void raft_reset_election_timer(raft *r);
extern raft_msg *raft_out_msg(raft *r, uint8_t type, raft_id_t to);
extern raft_progress *raft_progress_find(raft *r, raft_id_t id);
extern bool raft_is_voter(const raft *r, raft_id_t id);
extern uint32_t raft_voter_count(const raft *r);
extern bool raft_log_up_to_date(const raft *r, raft_index_t index,
								raft_term_t term);
extern int	raft_append_local(raft *r, uint8_t type, const void *data,
							  uint32_t len, raft_index_t *index);
extern void raft_append_leader_noop(raft *r);

/* election.c */
extern void raft_campaign(raft *r, bool pre, bool transfer);
extern void raft_recv_vote(raft *r, const raft_msg *m);
extern void raft_recv_vote_resp(raft *r, const raft_msg *m);

/* replication.c */
extern void raft_send_append(raft *r, raft_progress *pr, bool allow_empty);
extern void raft_broadcast_append(raft *r);
extern void raft_broadcast_heartbeat(raft *r, uint64_t context);
extern bool raft_maybe_commit(raft *r);
extern void raft_commit_advanced(raft *r);
extern void raft_send_commit_notices(raft *r);
extern void raft_recv_append(raft *r, const raft_msg *m);
extern void raft_recv_append_resp(raft *r, const raft_msg *m);
extern void raft_recv_heartbeat(raft *r, const raft_msg *m);
extern void raft_recv_heartbeat_resp(raft *r, const raft_msg *m);
extern void raft_recv_snapshot(raft *r, const raft_msg *m);
extern void raft_progress_reset(raft *r, raft_progress *pr);

/* membership.c */
extern void raft_config_apply(raft *r, const raft_config *config,
							  raft_index_t index);
extern void raft_config_refresh(raft *r);
extern bool raft_config_is_voter(const raft_config *config, raft_id_t id);
extern int	raft_config_find(const raft_config *config, raft_id_t id);
extern bool raft_config_at(const raft *r, raft_index_t index,
						   raft_config *config);

/* leadership.c */
extern void raft_transfer_tick(raft *r);
extern void raft_transfer_check(raft *r, raft_progress *pr);
extern void raft_reads_ack(raft *r, raft_id_t from, uint64_t context);
extern void raft_reads_drop(raft *r);

#endif							/* PG_RAFT_RAFT_INT_H */
