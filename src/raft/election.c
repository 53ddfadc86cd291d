/*-------------------------------------------------------------------------
 *
 * election.c
 *	  Leader election: pre-vote, RequestVote and counting the answers.
 *
 * NOTES
 *	  Thesis 3.4 (leader election), 3.6.1 (election restriction), 9.6
 *	  (pre-vote) and 4.2.3 (disruptive servers; the lease check itself is
 *	  in raft.c's step_term).  A pre-vote round asks "would you vote for me
 *	  in term T + 1?" without changing anyone's term, so a node that was
 *	  partitioned away cannot force a healthy leader to step down when it
 *	  comes back.
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"

/* elections a few ticks apart after raft_leader_gone */
#define GONE_ROUNDS 3

/*
 * Starts a pre-vote round (pre) or a real election.  transfer marks the
 * requests as coming from a leadership transfer (TimeoutNow), which voters
 * honour even while they still hear from the current leader.
 */
void
raft_campaign(raft *r, bool pre, bool transfer)
{
	raft_term_t vote_term;
	raft_progress *self;
	uint32_t	i;

	raft_become_candidate(r, pre);
	r->starting = false;
	vote_term = pre ? r->term + 1 : r->term;

	self = raft_progress_find(r, r->id);
	RAFT_ASSERT(self != NULL && self->voter);
	self->vote_responded = true;
	self->vote_granted = true;
	if (raft_voter_count(r) == 1)
	{
		if (pre)
			raft_campaign(r, false, transfer);
		else
			raft_become_leader(r);
		return;
	}

	for (i = 0; i < r->n_progress; i++)
	{
		raft_progress *pr = &r->progress[i];
		raft_msg   *m;

		if (!pr->voter || pr->id == r->id)
			continue;
		m = raft_out_msg(r, pre ? RAFT_MSG_PRE_VOTE : RAFT_MSG_VOTE, pr->id);
		if (m == NULL)
			return;
		m->term = vote_term;
		m->index = raft_log_last_index(&r->log);
		m->log_term = raft_log_last_term(&r->log);
		if (transfer)
			m->flags |= RAFT_MSG_FLAG_TRANSFER;
	}
}

/*
 * Answers a (pre-)vote request whose term is not below ours.  We grant a
 * real vote at most once per term (election safety) and only to a log at
 * least as up-to-date as ours (thesis 3.6.1).  The vote reaches disk before
 * the answer is sent: the caller persists the hard state of the ready that
 * carries the answer.
 */
void
raft_recv_vote(raft *r, const raft_msg *m)
{
	bool		pre = m->type == RAFT_MSG_PRE_VOTE;
	bool		can_vote;
	bool		grant;
	raft_msg   *resp;

	can_vote = r->vote == m->from ||
		(r->vote == RAFT_NO_NODE && r->leader == RAFT_NO_NODE) ||
		(pre && m->term > r->term);
	grant = can_vote && raft_log_up_to_date(r, m->index, m->log_term);

	resp = raft_out_msg(r, pre ? RAFT_MSG_PRE_VOTE_RESP : RAFT_MSG_VOTE_RESP,
						m->from);
	if (grant && !pre)
	{
		r->vote = m->from;
		r->election_elapsed = 0;
	}
	if (resp == NULL)
		return;
	resp->reject = !grant;
	/* a granted pre-vote answers in the term it was asked about */
	resp->term = grant && pre ? m->term : r->term;
}

void
raft_recv_vote_resp(raft *r, const raft_msg *m)
{
	bool		pre = m->type == RAFT_MSG_PRE_VOTE_RESP;
	raft_progress *pr;
	uint32_t	i;
	uint32_t	granted = 0;
	uint32_t	rejected = 0;
	uint32_t	voters = raft_voter_count(r);

	if (pre ? r->role != RAFT_PRE_CANDIDATE : r->role != RAFT_CANDIDATE)
		return;
	if (pre && !m->reject && m->term != r->term + 1)
		return;
	pr = raft_progress_find(r, m->from);
	if (pr == NULL || !pr->voter || pr->vote_responded)
		return;
	pr->vote_responded = true;
	pr->vote_granted = !m->reject;

	for (i = 0; i < r->n_progress; i++)
	{
		if (!r->progress[i].voter || !r->progress[i].vote_responded)
			continue;
		if (r->progress[i].vote_granted)
			granted++;
		else
			rejected++;
	}
	if (granted * 2 > voters)
	{
		if (pre)
			raft_campaign(r, false, false);
		else
			raft_become_leader(r);
	}
	else if (rejected * 2 >= voters)
		raft_become_follower(r, r->term, RAFT_NO_NODE);
}

/*
 * The caller knows that the leader's server is gone.  Forgetting the
 * leader lets this node vote for a candidate at once: the lease check of
 * step_term protects a leader that may still serve, and this one cannot.
 * Nor can one before it (starting): this node has heard from the leader
 * of a later term since it started.
 * It then stands for election within a few ticks, one more pair of ticks
 * for each voter of lower id besides the leader, so that followers that
 * learn it together do not split their votes.  A voter that did not know
 * yet refuses that first election, and one whose log is behind fails
 * too: GONE_ROUNDS more elections follow a few random ticks apart
 * (raft_reset_election_timer), until a leader is known.
 */
void
raft_leader_gone(raft *r)
{
	raft_id_t	gone = r->leader;
	uint32_t	wait = 1;
	uint32_t	i;

	if (r->role != RAFT_FOLLOWER || gone == RAFT_NO_NODE)
		return;
	r->leader = RAFT_NO_NODE;
	r->starting = false;
	r->gone_rounds = GONE_ROUNDS;
	for (i = 0; i < r->n_progress; i++)
		if (r->progress[i].voter && r->progress[i].id != gone &&
			r->progress[i].id < r->id)
			wait += 2;
	if (r->randomized_timeout > wait &&
		r->election_elapsed < r->randomized_timeout - wait)
		r->election_elapsed = r->randomized_timeout - wait;
}
