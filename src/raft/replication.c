/*-------------------------------------------------------------------------
 *
 * replication.c
 *	  Log replication: AppendEntries, heartbeats, snapshots and commit.
 *
 * NOTES
 *	  Thesis 3.5 (log replication) and 3.6.2 (committing entries from
 *	  previous terms).  The leader keeps a progress record per member:
 *
 *		probe		it does not yet know where the follower's log matches
 *					its own; it sends one append at a time and backs off
 *					using the follower's hint (the conflicting term and the
 *					first index the follower has of it), skipping a whole
 *					term per round trip rather than one entry;
 *		replicate	it knows the match; it pipelines appends, at most
 *					max_inflight_msgs unacknowledged at once (and, if set,
 *					about max_inflight_bytes of payload), each carrying
 *					up to max_entries_per_msg entries or max_bytes_per_msg
 *					payload bytes;
 *		snapshot	the entries the follower needs were compacted, and
 *					the caller's archive (raft_options.archive_read) does
 *					not hold them either; a RAFT_MSG_SNAPSHOT went out and
 *					the leader waits for the follower to report it
 *					installed.
 *
 *	  Entries the archive holds go out as any others do, in the follower's
 *	  progress state: an append starting before the log's base carries
 *	  archived entries only, up to the base, and the next one goes on from
 *	  the log.
 *
 *	  A rejected APPEND_RESP carries the rejected previous index in
 *	  context, the follower's hint in index and the term at the hint in
 *	  log_term.  Every response carries the follower's commit index, which
 *	  the leader shows for monitoring (it decides nothing with it).
 *
 *-------------------------------------------------------------------------
 */
#include "raft_int.h"

static void
inflight_clear(raft_progress *pr)
{
	pr->inflight_start = 0;
	pr->inflight_count = 0;
	pr->inflight_total_bytes = 0;
}

static bool
inflight_full(const raft *r, const raft_progress *pr)
{
	return pr->inflight_count >= r->opts.max_inflight_msgs ||
		(r->opts.max_inflight_bytes > 0 &&
		 pr->inflight_total_bytes >= r->opts.max_inflight_bytes);
}

static void
inflight_add(raft_progress *pr, raft_index_t last, uint64_t bytes)
{
	uint32_t	pos = (pr->inflight_start + pr->inflight_count) % RAFT_MAX_INFLIGHT;

	pr->inflight[pos] = last;
	pr->inflight_bytes[pos] = bytes;
	pr->inflight_count++;
	pr->inflight_total_bytes += bytes;
}

/* Forgets the oldest append in flight. */
static void
inflight_free_oldest(raft_progress *pr)
{
	RAFT_ASSERT(pr->inflight_count > 0);
	pr->inflight_total_bytes -= pr->inflight_bytes[pr->inflight_start];
	pr->inflight_start = (pr->inflight_start + 1) % RAFT_MAX_INFLIGHT;
	pr->inflight_count--;
}

/* Frees every in-flight append whose last index is at or below index. */
static void
inflight_free_to(raft_progress *pr, raft_index_t index)
{
	while (pr->inflight_count > 0 && pr->inflight[pr->inflight_start] <= index)
		inflight_free_oldest(pr);
}

void
raft_progress_reset(raft *r, raft_progress *pr)
{
	pr->state = RAFT_PROGRESS_PROBE;
	pr->next = raft_log_last_index(&r->log) + 1;
	pr->match = pr->id == r->id ? r->persisted : 0;
	pr->probe_sent = false;
	pr->acked_context = 0;
	pr->pending_snapshot = 0;
	pr->commit_sent = 0;
	pr->commit_due = 0;
	inflight_clear(pr);
}

static void
become_replicate(raft_progress *pr)
{
	pr->state = RAFT_PROGRESS_REPLICATE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	inflight_clear(pr);
}

static void
send_snapshot(raft *r, raft_progress *pr)
{
	raft_msg   *m = raft_out_msg(r, RAFT_MSG_SNAPSHOT, pr->id);

	pr->state = RAFT_PROGRESS_SNAPSHOT;
	pr->pending_snapshot = r->log.base_index;
	inflight_clear(pr);
	if (m == NULL)
		return;
	m->index = r->log.base_index;
	m->log_term = r->log.base_term;
	m->config = r->base_config;
}

/*
 * Fills the outbox's entries with archived entries for member to, from
 * prev + 1 on, up to the log's base, and *prev_term with the term at prev.
 * Returns how many, 0 when the archive does not hold them.  The outbox has
 * room for one.
 */
static uint32_t
archived_entries(raft *r, raft_id_t to, raft_index_t prev,
				 raft_term_t *prev_term, uint64_t *bytes)
{
	uint32_t	room = r->out_entries_cap - r->n_out_entries;
	uint32_t	max = r->opts.max_entries_per_msg;
	uint32_t	n;
	uint32_t	i;

	if (r->opts.archive_read == NULL || prev == 0)
		return 0;
	if (max > room)
		max = room;
	n = r->opts.archive_read(r->opts.archive_arg, to, prev, r->log.base_index,
							 max, r->opts.max_bytes_per_msg, prev_term,
							 &r->out_entries[r->n_out_entries]);
	RAFT_ASSERT(n <= max && prev + n <= r->log.base_index);
	*bytes = 0;
	for (i = 0; i < n; i++)
		*bytes += r->out_entries[r->n_out_entries + i].len;
	return n;
}

/*
 * Sends the follower the entries it needs next, if its progress state
 * allows.  allow_empty sends an append without entries (it still carries
 * the commit index, and in probe state it asks "do you match here?").
 */
void
raft_send_append(raft *r, raft_progress *pr, bool allow_empty)
{
	raft_index_t prev = pr->next - 1;
	raft_index_t last = raft_log_last_index(&r->log);
	raft_term_t prev_term;
	uint32_t	n = 0;
	uint64_t	bytes = 0;
	uint32_t	room;
	raft_msg   *m;

	RAFT_ASSERT(r->role == RAFT_LEADER);
	if (pr->id == r->id)
		return;
	if ((pr->state == RAFT_PROGRESS_PROBE && pr->probe_sent) ||
		(pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(r, pr)) ||
		pr->state == RAFT_PROGRESS_SNAPSHOT)
		return;
	if (!raft_log_term(&r->log, prev, &prev_term))
	{
		/* compacted: from the archive, or else a snapshot */
		if (r->opts.archive_read != NULL && prev > 0 &&
			r->n_out_entries == r->out_entries_cap)
			return;				/* no room to send archived entries yet */
		n = archived_entries(r, pr->id, prev, &prev_term, &bytes);
		if (n == 0)
		{
			send_snapshot(r, pr);
			return;
		}
	}
	else
	{
		room = r->out_entries_cap - r->n_out_entries;
		while (prev + n < last && n < r->opts.max_entries_per_msg && n < room)
		{
			raft_entry *e = &r->out_entries[r->n_out_entries + n];

			raft_log_entry(&r->log, prev + n + 1, e);
			if (n > 0 && bytes + e->len > r->opts.max_bytes_per_msg)
				break;
			bytes += e->len;
			n++;
		}
		if (n == 0 && (!allow_empty || prev < last))
			return;				/* nothing to send, or no room to send it */
	}

	m = raft_out_msg(r, RAFT_MSG_APPEND, pr->id);
	if (m == NULL)
		return;
	m->index = prev;
	m->log_term = prev_term;
	m->commit = r->commit;
	pr->commit_sent = r->commit;
	m->n_entries = n;
	m->entries = n > 0 ? &r->out_entries[r->n_out_entries] : NULL;
	r->n_out_entries += n;

	if (pr->state == RAFT_PROGRESS_REPLICATE)
	{
		if (n > 0)
		{
			pr->next = prev + n + 1;
			inflight_add(pr, prev + n, bytes);
		}
	}
	else
		pr->probe_sent = true;
}

void
raft_broadcast_append(raft *r)
{
	uint32_t	i;

	for (i = 0; i < r->n_progress; i++)
		raft_send_append(r, &r->progress[i], true);
}

/*
 * Heartbeats carry commit only up to what the follower is known to hold,
 * so a follower never marks as committed an entry it may not have.
 */
void
raft_broadcast_heartbeat(raft *r, uint64_t context)
{
	uint32_t	i;

	for (i = 0; i < r->n_progress; i++)
	{
		raft_progress *pr = &r->progress[i];
		raft_msg   *m;

		if (pr->id == r->id)
			continue;
		m = raft_out_msg(r, RAFT_MSG_HEARTBEAT, pr->id);
		if (m == NULL)
			return;
		m->commit = pr->match < r->commit ? pr->match : r->commit;
		m->context = context;
		if (pr->commit_sent < m->commit)
			pr->commit_sent = m->commit;
	}
}

static void
commit_to(raft *r, raft_index_t index)
{
	if (index <= r->commit)
		return;
	RAFT_ASSERT(index <= raft_log_last_index(&r->log));
	r->commit = index;
}

/*
 * Advances commit to the highest index stored on a majority of voters,
 * but only if that entry is of the current term (thesis 3.6.2): counting
 * replicas of an older entry is unsafe (the thesis' Figure 3.7).  Returns
 * true when commit moved.
 */
bool
raft_maybe_commit(raft *r)
{
	raft_index_t matches[RAFT_MAX_MEMBERS];
	uint32_t	n = 0;
	uint32_t	i;
	raft_index_t quorum_index;
	raft_term_t term = 0;

	for (i = 0; i < r->n_progress; i++)
	{
		uint32_t	j;
		raft_index_t match = r->progress[i].match;

		if (!r->progress[i].voter)
			continue;
		/* insertion sort, descending */
		for (j = n; j > 0 && matches[j - 1] < match; j--)
			matches[j] = matches[j - 1];
		matches[j] = match;
		n++;
	}
	if (n == 0)
		return false;
	quorum_index = matches[n / 2];
	if (quorum_index <= r->commit)
		return false;
	raft_log_term(&r->log, quorum_index, &term);
#if RAFT_PLANTED_BUG != 2
	if (term != r->term)
		return false;
#endif
	commit_to(r, quorum_index);
	return true;
}

/*
 * After the commit index moved: sends the entries that wait (they carry
 * the new commit index); followers that wait for nothing learn it within
 * one to two ticks (raft_send_commit_notices).  A leader removed by a
 * change that has now committed (thesis 4.2.2) tells every follower at
 * once and steps down, so that none waits for the next leader to apply
 * the change.
 */
void
raft_commit_advanced(raft *r)
{
	uint32_t	i;

	if (!raft_is_voter(r, r->id) && r->commit >= r->config_index)
	{
		raft_broadcast_append(r);
		raft_become_follower(r, r->term, RAFT_NO_NODE);
		return;
	}
	for (i = 0; i < r->n_progress; i++)
		raft_send_append(r, &r->progress[i], false);
}

/*
 * Tells each follower the commit index of entries it held a tick ago and
 * has not been told about since: so within one to two ticks of the commit
 * when nothing else goes its way.  Not on every commit: under load the
 * next append carries the news, and a notice of its own per commit would
 * double the messages (and their answers) of every transaction.
 */
void
raft_send_commit_notices(raft *r)
{
	uint32_t	i;

	for (i = 0; i < r->n_progress; i++)
	{
		raft_progress *pr = &r->progress[i];
		raft_index_t known = pr->match < r->commit ? pr->match : r->commit;

		if (pr->id == r->id)
			continue;
		if (pr->commit_due != 0 && pr->commit_sent < pr->commit_due)
			raft_send_append(r, pr, true);
		pr->commit_due = pr->commit_sent < known ? known : 0;
	}
}

/*
 * Whether an append without entries would now tell this follower a commit
 * index it has not been told: it holds committed entries beyond the commit
 * index sent to it, every entry has gone its way, and its progress state
 * lets a message go.
 */
static bool
commit_news_waits(const raft *r, const raft_progress *pr)
{
	raft_index_t known = pr->match < r->commit ? pr->match : r->commit;

	return pr->id != r->id && pr->commit_sent < known &&
		pr->next > raft_log_last_index(&r->log) &&
		!(pr->state == RAFT_PROGRESS_PROBE && pr->probe_sent) &&
		!(pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(r, pr)) &&
		pr->state != RAFT_PROGRESS_SNAPSHOT;
}

bool
raft_commit_news_waits(const raft *r)
{
	uint32_t	i;

	if (r->role != RAFT_LEADER)
		return false;
	for (i = 0; i < r->n_progress; i++)
		if (commit_news_waits(r, &r->progress[i]))
			return true;
	return false;
}

void
raft_send_commit_news(raft *r)
{
	uint32_t	i;

	if (r->role != RAFT_LEADER)
		return;
	for (i = 0; i < r->n_progress; i++)
		if (commit_news_waits(r, &r->progress[i]))
			raft_send_append(r, &r->progress[i], true);
}

/* Finds the largest index <= index whose term is <= term (fast back-off). */
static raft_index_t
find_conflict_by_term(const raft *r, raft_index_t index, raft_term_t term)
{
	raft_index_t last = raft_log_last_index(&r->log);
	raft_term_t t;

	if (index > last)
		index = last;
	while (index > r->log.base_index &&
		   raft_log_term(&r->log, index, &t) && t > term)
		index--;
	return index;
}

/*
 * Sends an append response: index acknowledged, or with reject the hint
 * (index, hint_term) for the append after rejected.
 */
static void
send_append_resp(raft *r, raft_id_t to, raft_index_t index, bool reject,
				 raft_term_t hint_term, raft_index_t rejected)
{
	raft_msg   *resp = raft_out_msg(r, RAFT_MSG_APPEND_RESP, to);

	if (resp == NULL)
		return;
	resp->index = index;
	resp->reject = reject;
	resp->log_term = hint_term;
	resp->context = rejected;
	resp->commit = r->commit;
}

static void
reply_append(raft *r, const raft_msg *m, raft_index_t index, bool reject,
			 raft_term_t hint_term)
{
	send_append_resp(r, m->from, index, reject, hint_term,
					 reject ? m->index : 0);
}

void
raft_send_progress(raft *r)
{
	if (r->role != RAFT_FOLLOWER || r->leader == RAFT_NO_NODE)
		return;
	/* committed entries are in every later leader's log, as they are here */
	send_append_resp(r, r->leader,
					 r->commit < r->persisted ? r->commit : r->persisted,
					 false, 0, 0);
}

/* Drops our entries from index on: a leader's log overrides ours. */
static void
truncate_from(raft *r, raft_index_t index)
{
	RAFT_ASSERT(index > r->commit);
	raft_log_truncate_after(&r->log, index - 1);
	if (r->unstable_from > index)
		r->unstable_from = index;
	if (r->persisted >= index)
		r->persisted = index - 1;
	if (r->config_index >= index)
		raft_config_refresh(r);
}

/*
 * Handles AppendEntries from the leader of our term (thesis Figure 3.1,
 * receiver implementation steps 2-5).
 */
void
raft_recv_append(raft *r, const raft_msg *m)
{
	raft_term_t prev_term;
	raft_index_t last_new;
	uint32_t	i;

	if (m->index < r->commit)
	{
		reply_append(r, m, r->commit, false, 0);
		return;
	}
	if (!raft_log_term(&r->log, m->index, &prev_term) ||
		(prev_term != m->log_term && RAFT_PLANTED_BUG != 3))
	{
		raft_index_t hint = find_conflict_by_term(r, m->index, m->log_term);

		reply_append(r, m, hint, true, raft_term_at(r, hint));
		return;
	}

	last_new = m->index;
	for (i = 0; i < m->n_entries; i++)
	{
		const raft_entry *e = &m->entries[i];
		raft_index_t index = m->index + 1 + i;
		raft_term_t have;

		if (raft_log_term(&r->log, index, &have))
		{
			if (have == e->term)
			{
				last_new = index;
				continue;
			}
			truncate_from(r, index);
		}
		/*
		 * Accept what fits; the leader resends the rest.  The new leader's
		 * no-op may take a reserved slot here too, or a leader elected
		 * with a full log could never commit.
		 */
		if (e->len > r->opts.max_entry_bytes ||
			raft_log_append(&r->log, e->term, e->type, e->data, e->len,
							e->type == RAFT_ENTRY_NOOP && e->term == m->term) != RAFT_OK)
			break;
		if (e->type == RAFT_ENTRY_CONFIG)
		{
			raft_entry	stored;
			raft_config config;

			raft_log_entry(&r->log, index, &stored);
			if (raft_config_decode(&stored, &config, NULL, NULL) == RAFT_OK)
				raft_config_apply(r, &config, index);
		}
		last_new = index;
	}
	commit_to(r, m->commit < last_new ? m->commit : last_new);
	reply_append(r, m, last_new, false, 0);
}

void
raft_recv_append_resp(raft *r, const raft_msg *m)
{
	raft_progress *pr = raft_progress_find(r, m->from);

	if (pr == NULL)
		return;
	/* no correct follower acknowledges or rejects beyond our log */
	if (m->index > raft_log_last_index(&r->log) ||
		(m->reject && m->context > raft_log_last_index(&r->log)))
		return;
	pr->recent_active = true;
	if (m->commit > pr->remote_commit)
		pr->remote_commit = m->commit;

	if (m->reject)
	{
		raft_index_t rejected = m->context;
		raft_index_t hint = m->index;

		if (m->log_term > 0)
			hint = find_conflict_by_term(r, hint, m->log_term);
		if (pr->state == RAFT_PROGRESS_REPLICATE)
		{
			if (rejected <= pr->match)
				return;			/* stale */
			pr->state = RAFT_PROGRESS_PROBE;
			pr->next = pr->match + 1;
			inflight_clear(pr);
		}
		else if (pr->state == RAFT_PROGRESS_PROBE)
		{
			if (pr->next - 1 != rejected)
				return;			/* stale */
			pr->next = rejected < hint + 1 ? rejected : hint + 1;
			if (pr->next < pr->match + 1)
				pr->next = pr->match + 1;
		}
		else
			return;
		pr->probe_sent = false;
		raft_send_append(r, pr, true);
		return;
	}

	if (m->index > pr->match)
	{
		pr->match = m->index;
		if (pr->next < m->index + 1)
			pr->next = m->index + 1;
		pr->probe_sent = false;
		if (pr->state == RAFT_PROGRESS_PROBE)
			become_replicate(pr);
		else if (pr->state == RAFT_PROGRESS_SNAPSHOT &&
				 pr->match >= pr->pending_snapshot)
			become_replicate(pr);
		else
			inflight_free_to(pr, pr->match);

		if (raft_maybe_commit(r))
		{
			raft_commit_advanced(r);
			if (r->role != RAFT_LEADER)
				return;
		}
		raft_transfer_check(r, pr);
	}
	/*
	 * An acknowledgement that moved nothing (a follower with a full log, or
	 * a duplicate) does not unpause a probe: the next heartbeat response
	 * does, so a stuck follower costs one append per heartbeat, not a loop.
	 */

	/* keep the pipeline full */
	while (pr->state == RAFT_PROGRESS_REPLICATE &&
		   pr->next <= raft_log_last_index(&r->log) && !inflight_full(r, pr))
	{
		raft_index_t before = pr->next;

		raft_send_append(r, pr, false);
		if (pr->next == before)
			break;
	}
	if (pr->state == RAFT_PROGRESS_PROBE && !pr->probe_sent &&
		pr->next <= raft_log_last_index(&r->log))
		raft_send_append(r, pr, false);
}

void
raft_recv_heartbeat(raft *r, const raft_msg *m)
{
	raft_msg   *resp;
	raft_index_t last = raft_log_last_index(&r->log);

	commit_to(r, m->commit < last ? m->commit : last);
	resp = raft_out_msg(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
	if (resp != NULL)
	{
		resp->context = m->context;
		resp->commit = r->commit;
	}
}

void
raft_recv_heartbeat_resp(raft *r, const raft_msg *m)
{
	raft_progress *pr = raft_progress_find(r, m->from);

	if (pr == NULL)
		return;
	pr->recent_active = true;
	if (m->context > pr->acked_context)
		pr->acked_context = m->context;
#if RAFT_PLANTED_BUG != 5
	pr->probe_sent = false;
#endif
	if (m->commit > pr->remote_commit)
		pr->remote_commit = m->commit;
	/* an append may have been lost: let one more through */
	if (pr->state == RAFT_PROGRESS_REPLICATE && inflight_full(r, pr))
		inflight_free_oldest(pr);
	if (pr->state == RAFT_PROGRESS_SNAPSHOT)
		send_snapshot(r, pr);	/* the last one may have been lost */
	else if (pr->match < raft_log_last_index(&r->log))
	{
		/*
		 * The follower lags.  Even with nothing left to send (every entry
		 * is in flight, perhaps lost), an empty append makes a follower
		 * that lacks them reject, which puts it back into probe.
		 */
		raft_send_append(r, pr, true);
	}
	raft_reads_ack(r, m->from, m->context);
}

/*
 * Handles the leader's "snapshot needed" message.  The core carries only
 * the metadata; the caller restores the state machine out of band when
 * the ready says snapshot_changed (thesis 5.3).
 */
void
raft_recv_snapshot(raft *r, const raft_msg *m)
{
	raft_term_t have;

	if (m->index <= r->commit)
	{
		reply_append(r, m, r->commit, false, 0);
		return;
	}
	if (raft_log_term(&r->log, m->index, &have) && have == m->log_term)
	{
		/* we hold the snapshot's last entry: just fast-forward commit */
		commit_to(r, m->index);
		reply_append(r, m, m->index, false, 0);
		return;
	}

	raft_log_reset(&r->log, m->index, m->log_term);
	r->base_config = m->config;
	raft_config_refresh(r);
	r->commit = m->index;
	r->applied = m->index;
	r->persisted = m->index;
	r->unstable_from = m->index + 1;
	r->snapshot_pending = true;
	r->snapshot.index = m->index;
	r->snapshot.term = m->log_term;
	r->snapshot.config = m->config;
	reply_append(r, m, m->index, false, 0);
}
