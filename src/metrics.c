/*-------------------------------------------------------------------------
 *
 * metrics.c
 *	  What monitoring reads: counters, latency histograms, and the list of
 *	  samples that /metrics (http.c) and the raft.metrics view (sql.c) show.
 *
 * NOTES
 *	  The counters live in shared memory (RaftShared->counters) and are
 *	  updated with atomic adds, without the lock: the raft worker counts
 *	  elections, leader changes, log syncs and commits, the apply worker
 *	  its errors.  They survive restarts of the workers; a restart of the
 *	  server resets them, as Prometheus expects of a counter.
 *
 *	  RaftMetricsCollect reads everything once (the worker's view under
 *	  the lock, then the counters) into an array of samples, grouped by
 *	  metric family.  The HTTP worker renders them in Prometheus's text
 *	  format; the SQL function returns one row per sample.  Both show the
 *	  same names, so a dashboard works with either way of scraping.
 *
 * IDENTIFICATION
 *	  src/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "pg_raft.h"

/* The bounds of the latency buckets, in seconds. */
const double RaftLatencyBounds[RAFT_LATENCY_BUCKETS] = {
	0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5
};

static const RaftMetricFamily in_cluster = {"pg_raft_in_cluster", "gauge",
"1 when this instance is a member of a raft cluster"};
static const RaftMetricFamily worker_up = {"pg_raft_worker_up", "gauge",
"1 while the raft worker runs (it published its view within 5 s)"};
static const RaftMetricFamily is_leader = {"pg_raft_leader", "gauge",
"1 while this member leads"};
static const RaftMetricFamily writable = {"pg_raft_writable", "gauge",
"1 while a session on this member can write (what /leader answers)"};
static const RaftMetricFamily voter = {"pg_raft_voter", "gauge",
"1 when this member votes, 0 for a learner"};
static const RaftMetricFamily leader_known = {"pg_raft_leader_known", "gauge",
"1 while this member leads or heard from its leader within the election timeout"};
static const RaftMetricFamily term = {"pg_raft_term", "gauge",
"current Raft term"};
static const RaftMetricFamily commit_index = {"pg_raft_commit_index", "gauge",
"highest log index known committed"};
static const RaftMetricFamily applied_index = {"pg_raft_applied_index", "gauge",
"highest log index whose data is applied on this member"};
static const RaftMetricFamily first_index = {"pg_raft_first_index", "gauge",
"first log index kept (the log is compacted before it)"};
static const RaftMetricFamily last_index = {"pg_raft_last_index", "gauge",
"last log index stored on this member"};
static const RaftMetricFamily log_bytes = {"pg_raft_log_bytes", "gauge",
"bytes of log segments on disk"};
static const RaftMetricFamily archive_bytes = {"pg_raft_log_archive_bytes", "gauge",
"bytes of compacted log segments kept on disk for members that lag (raft.log_keep_size)"};
static const RaftMetricFamily replay_lag = {"pg_raft_replay_lag_seconds", "gauge",
"how long the oldest committed entry not yet applied here has waited; 0 when none waits"};
static const RaftMetricFamily apply_failing = {"pg_raft_apply_failures", "gauge",
"failed attempts in a row of the apply worker; 0 while it applies normally"};
static const RaftMetricFamily copying = {"pg_raft_copying", "gauge",
"1 while this member copies its data from the leader"};
static const RaftMetricFamily diverged = {"pg_raft_diverged_transactions", "gauge",
"transactions of an earlier leadership that never reached the log, kept aside"};
static const RaftMetricFamily members = {"pg_raft_members", "gauge",
"members in the configuration, learners included"};
static const RaftMetricFamily members_reachable = {"pg_raft_members_reachable", "gauge",
"members this one heard from within the election timeout, itself included"};
static const RaftMetricFamily elections = {"pg_raft_elections_total", "counter",
"elections this member started as a candidate"};
static const RaftMetricFamily elections_won = {"pg_raft_elections_won_total", "counter",
"elections this member won"};
static const RaftMetricFamily leader_changes = {"pg_raft_leader_changes_total", "counter",
"times this member saw a leader other than the last one it saw"};
static const RaftMetricFamily apply_errors = {"pg_raft_apply_errors_total", "counter",
"failed attempts of the apply worker"};
static const RaftMetricFamily inbox_dropped = {"pg_raft_inbox_dropped_total", "counter",
"messages from peers refused because the worker's inbox was full"};
static const RaftMetricFamily member_reachable = {"pg_raft_member_reachable", "gauge",
"1 when this member heard from that one within the election timeout"};
static const RaftMetricFamily member_contact_age = {"pg_raft_member_last_contact_seconds", "gauge",
"seconds since this member last heard from that one"};
static const RaftMetricFamily member_applied = {"pg_raft_member_applied_index", "gauge",
"leader only: the highest index whose data that member applied"};
static const RaftMetricFamily member_lag_entries = {"pg_raft_member_lag_entries", "gauge",
"leader only: entries that member does not hold yet"};
static const RaftMetricFamily member_lag_bytes = {"pg_raft_member_lag_bytes", "gauge",
"leader only: bytes of entries that member does not hold yet"};
static const RaftMetricFamily member_replay_lag = {"pg_raft_member_replay_lag_seconds", "gauge",
"leader only: how long that member's oldest unapplied committed entry has waited"};
static const RaftMetricFamily log_sync = {"pg_raft_log_sync_seconds", "histogram",
"time to make appended log entries durable (fdatasync)"};
static const RaftMetricFamily commit_latency = {"pg_raft_commit_seconds", "histogram",
"leader only: time from appending an entry to a majority holding it"};

void
RaftCountersInit(RaftCounters *counters)
{
	RaftHistogram *histograms[2] = {&counters->log_sync, &counters->commit};
	int			h;
	int			i;

	pg_atomic_init_u64(&counters->elections, 0);
	pg_atomic_init_u64(&counters->elections_won, 0);
	pg_atomic_init_u64(&counters->leader_changes, 0);
	pg_atomic_init_u64(&counters->apply_errors, 0);
	for (h = 0; h < 2; h++)
	{
		for (i = 0; i <= RAFT_LATENCY_BUCKETS; i++)
			pg_atomic_init_u64(&histograms[h]->buckets[i], 0);
		pg_atomic_init_u64(&histograms[h]->sum_us, 0);
	}
}

void
RaftCount(pg_atomic_uint64 *counter, uint64 n)
{
	if (n > 0)
		pg_atomic_fetch_add_u64(counter, n);
}

void
RaftHistogramObserve(RaftHistogram *histogram, int64 elapsed_us)
{
	int			i;

	elapsed_us = Max(elapsed_us, 0);
	for (i = 0; i < RAFT_LATENCY_BUCKETS; i++)
		if (elapsed_us <= (int64) (RaftLatencyBounds[i] * 1e6))
			break;
	pg_atomic_fetch_add_u64(&histogram->buckets[i], 1);
	pg_atomic_fetch_add_u64(&histogram->sum_us, (uint64) elapsed_us);
}

/*
 * RaftReadMemberState
 *		Reads this member's state, and into view (unless NULL) the worker's
 *		whole view, under one hold of the lock, so that they agree.
 */
void
RaftReadMemberState(RaftMemberState *ms, RaftView *view)
{
	TimestampTz now = GetCurrentTimestamp();
	const RaftView *v = &RaftShmem->view;
	uint32		i;

	memset(ms, 0, sizeof(*ms));
	ms->replay_lag_us = -1;
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	if (view != NULL)
		memcpy(view, v, sizeof(RaftView));
	ms->member = RaftShmem->member;
	ms->configured = v->configured;
	ms->worker_up = RaftShmem->worker_pid != 0 &&
		!TimestampDifferenceExceeds(v->updated, now, RAFT_WORKER_SILENCE_MS);
	ms->role = v->role;
	ms->commit_index = v->commit_index;
	ms->applied_index = v->applied_index;
	for (i = 0; i < v->n_members; i++)
	{
		const RaftMemberInfo *mi = &v->members[i];

		if (mi->id == v->node_id)
			ms->replay_lag_us = mi->replay_lag_us;
		else if (mi->is_leader)
			ms->leader_heard = mi->reachable;
	}
	ms->copying = RaftShmem->apply.resyncing || RaftShmem->copying;
	ms->apply_failures = RaftShmem->apply.apply_failures;
	strlcpy(ms->apply_error, RaftShmem->apply.apply_error, RAFT_ERROR_BYTES);
	ms->diverged_transactions = RaftShmem->apply.diverged_transactions;
	ms->inbox_dropped = RaftShmem->inbox_dropped;
	LWLockRelease(RaftShmem->lock);
}

typedef struct SampleList
{
	RaftMetricSample *items;
	int			n;
	int			cap;
} SampleList;

static void
add(SampleList *list, const RaftMetricFamily *family, const char *suffix,
	const char *member, double le, double value)
{
	RaftMetricSample *s;

	if (list->n == list->cap)
	{
		list->cap *= 2;
		list->items = repalloc(list->items, sizeof(RaftMetricSample) * list->cap);
	}
	s = &list->items[list->n++];
	s->family = family;
	s->suffix = suffix;
	strlcpy(s->member, member, RAFT_NAME_BYTES);
	s->le = le;
	s->value = value;
}

static void
add_value(SampleList *list, const RaftMetricFamily *family, double value)
{
	add(list, family, "", "", NAN, value);
}

static void
add_histogram(SampleList *list, const RaftMetricFamily *family, RaftHistogram *h)
{
	uint64		cumulative = 0;
	int			i;

	for (i = 0; i <= RAFT_LATENCY_BUCKETS; i++)
	{
		cumulative += pg_atomic_read_u64(&h->buckets[i]);
		add(list, family, "_bucket", "",
			i < RAFT_LATENCY_BUCKETS ? RaftLatencyBounds[i] : INFINITY,
			(double) cumulative);
	}
	add(list, family, "_sum", "", NAN, pg_atomic_read_u64(&h->sum_us) / 1e6);
	add(list, family, "_count", "", NAN, (double) cumulative);
}

/* Adds one sample of family per member m, of value expr. */
#define ADD_PER_MEMBER(list, family, v, expr) \
	do { \
		uint32		i_; \
		for (i_ = 0; i_ < (v)->n_members; i_++) \
		{ \
			const RaftMemberInfo *m = &(v)->members[i_]; \
			add((list), (family), "", m->name, NAN, (double) (expr)); \
		} \
	} while (0)

/*
 * RaftMetricsCollect
 *		Reads this member's metrics into *samples (palloc'd); returns how
 *		many.  Samples of one family are next to each other.
 */
int
RaftMetricsCollect(RaftMetricSample **samples)
{
	RaftView   *v = palloc(sizeof(RaftView));
	RaftCounters *c = &RaftShmem->counters;
	TimestampTz now = GetCurrentTimestamp();
	SampleList	list;
	RaftMemberState ms;
	char		reason[RAFT_ERROR_BYTES];
	uint32		reachable = 0;
	bool		self_voter = false;
	bool		leads;
	uint32		i;

	list.cap = 64 + 8 * RAFT_MAX_MEMBERS;
	list.n = 0;
	list.items = palloc(sizeof(RaftMetricSample) * list.cap);

	RaftReadMemberState(&ms, v);
	add_value(&list, &in_cluster, ms.member && ms.configured ? 1 : 0);
	add_value(&list, &worker_up, ms.worker_up ? 1 : 0);
	add_value(&list, &elections, (double) pg_atomic_read_u64(&c->elections));
	add_value(&list, &elections_won, (double) pg_atomic_read_u64(&c->elections_won));
	add_value(&list, &leader_changes, (double) pg_atomic_read_u64(&c->leader_changes));
	add_value(&list, &apply_errors, (double) pg_atomic_read_u64(&c->apply_errors));
	add_value(&list, &inbox_dropped, (double) ms.inbox_dropped);
	add_histogram(&list, &log_sync, &c->log_sync);
	add_histogram(&list, &commit_latency, &c->commit);
	if (!ms.configured)
	{
		*samples = list.items;
		return list.n;
	}

	leads = v->role == RAFT_LEADER;
	for (i = 0; i < v->n_members; i++)
	{
		const RaftMemberInfo *m = &v->members[i];

		reachable += m->reachable ? 1 : 0;
		if (m->id == v->node_id)
			self_voter = m->voter;
	}
	add_value(&list, &is_leader, leads ? 1 : 0);
	add_value(&list, &writable, RaftFenceTakesWrites(reason, sizeof(reason)) ? 1 : 0);
	add_value(&list, &voter, self_voter ? 1 : 0);
	add_value(&list, &leader_known, leads || ms.leader_heard ? 1 : 0);
	add_value(&list, &term, (double) v->term);
	add_value(&list, &commit_index, (double) v->commit_index);
	add_value(&list, &applied_index, (double) v->applied_index);
	add_value(&list, &first_index, (double) v->first_index);
	add_value(&list, &last_index, (double) v->last_index);
	add_value(&list, &log_bytes, (double) v->log_bytes);
	add_value(&list, &archive_bytes, (double) v->archive_bytes);
	if (ms.replay_lag_us >= 0)
		add_value(&list, &replay_lag, ms.replay_lag_us / 1e6);
	add_value(&list, &apply_failing, ms.apply_failures);
	add_value(&list, &copying, ms.copying ? 1 : 0);
	add_value(&list, &diverged, (double) ms.diverged_transactions);
	add_value(&list, &members, v->n_members);
	add_value(&list, &members_reachable, reachable);

	ADD_PER_MEMBER(&list, &member_reachable, v, m->reachable ? 1 : 0);
	for (i = 0; i < v->n_members; i++)
	{
		const RaftMemberInfo *m = &v->members[i];

		if (m->id != v->node_id && m->last_contact != 0)
			add(&list, &member_contact_age, "", m->name, NAN,
				Max(now - m->last_contact, 0) / 1e6);
	}
	/* what only the leader measures */
	if (leads)
	{
		ADD_PER_MEMBER(&list, &member_applied, v, m->applied_index);
		ADD_PER_MEMBER(&list, &member_lag_entries, v, m->lag_entries);
		ADD_PER_MEMBER(&list, &member_lag_bytes, v, m->lag_bytes);
		for (i = 0; i < v->n_members; i++)
		{
			const RaftMemberInfo *m = &v->members[i];

			if (m->replay_lag_us >= 0)
				add(&list, &member_replay_lag, "", m->name, NAN, m->replay_lag_us / 1e6);
		}
	}
	*samples = list.items;
	return list.n;
}

/* A label's value in the text format: backslash, quote and newline escaped. */
static void
append_label_value(StringInfo out, const char *value)
{
	const char *p;

	for (p = value; *p != '\0'; p++)
	{
		if (*p == '\\' || *p == '"')
			appendStringInfoChar(out, '\\');
		if (*p == '\n')
			appendStringInfoString(out, "\\n");
		else
			appendStringInfoChar(out, *p);
	}
}

static void
append_number(StringInfo out, double value)
{
	if (isnan(value))
		appendStringInfoString(out, "NaN");
	else if (isinf(value))
		appendStringInfoString(out, value > 0 ? "+Inf" : "-Inf");
	else if (value == floor(value) && fabs(value) < 9e15)
		appendStringInfo(out, INT64_FORMAT, (int64) value);
	else
		appendStringInfo(out, "%.15g", value);
}

/*
 * RaftMetricsRender
 *		Appends samples to out in Prometheus's text exposition format
 *		(version 0.0.4): HELP and TYPE once per family, then its samples.
 */
void
RaftMetricsRender(StringInfo out, const RaftMetricSample *samples, int n)
{
	const RaftMetricFamily *family = NULL;
	int			i;

	for (i = 0; i < n; i++)
	{
		const RaftMetricSample *s = &samples[i];
		bool		labels = s->member[0] != '\0' || !isnan(s->le);

		if (s->family != family)
		{
			family = s->family;
			appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n",
							 family->name, family->help, family->name, family->type);
		}
		appendStringInfo(out, "%s%s", family->name, s->suffix);
		if (labels)
		{
			appendStringInfoChar(out, '{');
			if (s->member[0] != '\0')
			{
				appendStringInfoString(out, "member=\"");
				append_label_value(out, s->member);
				appendStringInfoChar(out, '"');
			}
			if (!isnan(s->le))
			{
				appendStringInfoString(out, s->member[0] != '\0' ? ",le=\"" : "le=\"");
				append_number(out, s->le);
				appendStringInfoChar(out, '"');
			}
			appendStringInfoChar(out, '}');
		}
		appendStringInfoChar(out, ' ');
		append_number(out, s->value);
		appendStringInfoChar(out, '\n');
	}
}
