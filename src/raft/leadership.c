/*-------------------------------------------------------------------------
 *
 * leadership.c
 *	  Leadership transfer (TimeoutNow) and linearizable reads (ReadIndex).
 *
 * NOTES
 *	  Thesis 3.10: to hand leadership over, the leader stops accepting
 *	  proposals, brings the target's log up to date, and sends it
 *	  TimeoutNow; the target campaigns at once, and voters honour its
 *	  request even while they still hear from the old leader.  The transfer
 *	  is abandoned after an election timeout.
 *
 *	  Thesis 6.4: a ReadIndex records the commit index, then confirms with
 *	  a round of heartbeats that this node was still leader when it did.
 *	  A heartbeat answered with context c confirms every read registered
 *	  at or before c.  Reads complete in the order they were asked.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"

static void
send_timeout_now(raft *r, raft_id_t to)
{
	raft_out_msg(r, RAFT_MSG_TIMEOUT_NOW, to);
	r->transfer_told = true;
}

int
raft_transfer_leadership(raft *r, raft_id_t target)
{
	raft_progress *pr;

	if (r->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (r->transfer_target != RAFT_NO_NODE)
		return RAFT_ERR_TRANSFER_PENDING;
	if (target == RAFT_NO_NODE)
	{
		uint32_t	i;
		raft_index_t best = 0;

		/* the most up-to-date voter other than us */
		for (i = 0; i < r->n_progress; i++)
		{
			raft_progress *p = &r->progress[i];

			if (p->voter && p->id != r->id &&
				(target == RAFT_NO_NODE || p->match > best))
			{
				target = p->id;
				best = p->match;
			}
		}
		if (target == RAFT_NO_NODE)
			return RAFT_ERR_UNAVAILABLE;
	}
	if (target == r->id)
		return RAFT_ERR_INVALID_ARG;
	pr = raft_progress_find(r, target);
	if (pr == NULL || !pr->voter)
		return RAFT_ERR_UNKNOWN_NODE;

	r->transfer_target = target;
	r->transfer_elapsed = 0;
	r->transfer_told = false;
	if (pr->match == raft_log_last_index(&r->log))
		send_timeout_now(r, target);
	else
		raft_send_append(r, pr, true);
	return RAFT_OK;
}

void
raft_transfer_tick(raft *r)
{
	if (r->transfer_target == RAFT_NO_NODE)
		return;
	if (++r->transfer_elapsed < r->opts.election_timeout_ticks)
		return;
	r->transfer_target = RAFT_NO_NODE;
	/*
	 * A target told to campaign may still do so, and the voters let a
	 * transfer's campaign through the lease: a leader that told one has
	 * no lease left, and steps down rather than lead on without it.
	 */
	if (r->transfer_told)
		raft_become_follower(r, r->term, RAFT_NO_NODE);
}

/* Sends TimeoutNow once the transfer target has caught up. */
void
raft_transfer_check(raft *r, raft_progress *pr)
{
	if (r->role == RAFT_LEADER && pr->id == r->transfer_target &&
		pr->match == raft_log_last_index(&r->log))
		send_timeout_now(r, pr->id);
}

static int
progress_slot(const raft *r, raft_id_t id)
{
	uint32_t	i;

	for (i = 0; i < r->n_progress; i++)
		if (r->progress[i].id == id)
			return (int) i;
	return -1;
}

static bool
read_has_quorum(const raft *r, const raft_pending_read *rd)
{
	uint32_t	i;
	uint32_t	acks = 0;

	for (i = 0; i < r->n_progress; i++)
		if (r->progress[i].voter &&
			(r->progress[i].id == r->id || (rd->acks & (1u << i))))
			acks++;
	return acks * 2 > raft_voter_count(r);
}

static void
read_release(raft *r, uint64_t request_id, raft_index_t index)
{
	raft_read_state *rs;

	if (r->n_read_states >= r->opts.max_pending_reads)
		return;					/* the caller's request times out */
	rs = &r->read_states[r->n_read_states++];
	rs->request_id = request_id;
	rs->index = index;
}

int
raft_read_index(raft *r, uint64_t request_id)
{
	raft_pending_read *rd;

	if (r->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	/* until an entry of our term commits, our commit index may be stale */
	if (raft_term_at(r, r->commit) != r->term)
		return RAFT_ERR_NOT_COMMITTED_IN_TERM;
	/* every admitted read must find room in read_states when released */
	if (r->n_reads + r->n_read_states >= r->opts.max_pending_reads)
		return RAFT_ERR_UNAVAILABLE;

	if (raft_voter_count(r) == 1 && raft_is_voter(r, r->id))
	{
		read_release(r, request_id, r->commit);
		return RAFT_OK;
	}
	rd = &r->reads[r->n_reads++];
	rd->request_id = request_id;
	rd->index = r->commit;
	rd->context = ++r->heartbeat_context;
	rd->acks = 0;
	raft_broadcast_heartbeat(r, rd->context);
	return RAFT_OK;
}

void
raft_reads_ack(raft *r, raft_id_t from, uint64_t context)
{
	int			slot = progress_slot(r, from);
	uint32_t	i;
	uint32_t	done = 0;

	if (context == 0 || slot < 0 || r->role != RAFT_LEADER)
		return;
	for (i = 0; i < r->n_reads; i++)
	{
		if (r->reads[i].context > context)
			break;
		r->reads[i].acks |= 1u << slot;
		if (read_has_quorum(r, &r->reads[i]))
			done = i + 1;
	}
	for (i = 0; i < done; i++)
		read_release(r, r->reads[i].request_id, r->reads[i].index);
	for (i = done; i < r->n_reads; i++)
		r->reads[i - done] = r->reads[i];
	r->n_reads -= done;
}

/* Forgets pending reads when leadership is lost; callers time out. */
void
raft_reads_drop(raft *r)
{
	r->n_reads = 0;
}
