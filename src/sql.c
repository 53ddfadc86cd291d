/*-------------------------------------------------------------------------
 *
 * sql.c
 *	  The SQL functions and views of schema raft.
 *
 * NOTES
 *	  Everything here runs in an ordinary backend.  Functions that change
 *	  the cluster queue a request in shared memory, wake the raft worker
 *	  and wait on their own latch for the result (RaftRunRequest); the
 *	  worker is the only process that touches Raft state.  The views copy
 *	  the worker's published view under the shared lock, release it, and
 *	  only then build their rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <signal.h>

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "postmaster/postmaster.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "pg_raft.h"
#include "sql.h"
#include "storage.h"

PG_FUNCTION_INFO_V1(pg_raft_deliver);
PG_FUNCTION_INFO_V1(pg_raft_create_cluster);
PG_FUNCTION_INFO_V1(pg_raft_add_node);
PG_FUNCTION_INFO_V1(pg_raft_remove_node);
PG_FUNCTION_INFO_V1(pg_raft_transfer_leadership);
PG_FUNCTION_INFO_V1(pg_raft_barrier);
PG_FUNCTION_INFO_V1(pg_raft_status_info);
PG_FUNCTION_INFO_V1(pg_raft_nodes_info);
PG_FUNCTION_INFO_V1(pg_raft_metrics_info);
PG_FUNCTION_INFO_V1(pg_raft_wait_for_index);
PG_FUNCTION_INFO_V1(pg_raft_table_checksum);
PG_FUNCTION_INFO_V1(pg_raft_recopy);

static int	timeout_ms_arg(Interval *timeout, const char *what);

/* How long membership requests may take before the caller gives up. */
#define MEMBERSHIP_TIMEOUT_MS (30 * 1000)

/*
 * Checks a node name: 1 to 63 letters, digits, '_', '-' or '.', so that it
 * reads well in views, logs and hints.
 */
void
RaftCheckNodeName(const char *name)
{
	const char *p;

	if (name[0] == '\0' || strlen(name) >= RAFT_NAME_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid node name \"%s\"", name),
				 errdetail("A node name has 1 to %d characters.", RAFT_NAME_BYTES - 1)));
	for (p = name; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid node name \"%s\"", name),
					 errdetail("A node name may contain only letters, digits, underscores, hyphens and dots.")));
}

/* Checks that a conninfo string parses (libpq's own rules). */
void
RaftCheckConninfo(const char *conninfo, const char *what)
{
	char	   *err = NULL;
	PQconninfoOption *opts;

	if (strlen(conninfo) >= RAFT_CONNINFO_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("The limit is %d bytes.", RAFT_CONNINFO_BYTES - 1)));
	opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL)
	{
		char	   *msg = err ? pchomp(err) : pstrdup("out of memory");

		if (err)
			PQfreemem(err);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", what, msg)));
	}
	PQconninfoFree(opts);
}

/*
 * Checks that this instance may become a member as node name, reached by
 * the others with conninfo: it is not a member yet, and conninfo works
 * from here.
 */
void
RaftCheckNewMember(const char *name, const char *conninfo)
{
	RaftView   *view = palloc(sizeof(RaftView));

	RaftCheckNodeName(name);
	RaftCheckConninfo(conninfo, "conninfo");
	RaftGetView(view);
	if (view->configured)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is already a member of a raft cluster"),
				 errhint("See raft.status and raft.nodes.")));
	PQfinish(RaftConnect(conninfo, "this node with the given conninfo"));
	pfree(view);
}

/*
 * Connects to conninfo, giving up after 10 seconds.  Errors name what the
 * connection was for.
 */
static PGconn *
connect_as(const char *conninfo, const char *what, const char *replication)
{
	const char *keywords[] = {"dbname", "connect_timeout", "application_name",
	"replication", NULL};
	const char *values[] = {conninfo, "10", "pg_raft", replication, NULL};
	PGconn	   *conn;

	if (replication == NULL)
		keywords[3] = NULL;
	conn = PQconnectdbParams(keywords, values, 1);

	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		char	   *msg = conn ? pchomp(PQerrorMessage(conn)) : pstrdup("out of memory");

		if (conn)
			PQfinish(conn);
		ereport(ERROR,
				(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
				 errmsg("could not connect to %s", what),
				 errdetail_internal("%s", msg)));
	}
	return conn;
}

PGconn *
RaftConnect(const char *conninfo, const char *what)
{
	return connect_as(conninfo, what, NULL);
}

/* The same, as a logical replication connection (replication=database). */
PGconn *
RaftConnectReplication(const char *conninfo, const char *what)
{
	return connect_as(conninfo, what, "database");
}

/*
 * Queues req for the raft worker and waits up to timeout_ms for it to be
 * done; on return req holds the result.  Raises the request's error, if
 * any.  A cancelled or timed-out wait leaves the slot to the worker, which
 * frees it.
 */
void
RaftRunRequest(RaftRequest *req, int timeout_ms)
{
	RaftRequest *slot = NULL;
	Latch	   *worker_latch;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	int			i;

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	worker_latch = RaftShmem->worker_latch;
	for (i = 0; i < RAFT_MAX_REQUESTS && worker_latch != NULL; i++)
		if (RaftShmem->requests[i].state == RAFT_REQUEST_FREE)
		{
			slot = &RaftShmem->requests[i];
			*slot = *req;
			slot->state = RAFT_REQUEST_QUEUED;
			slot->requester_latch = MyLatch;
			break;
		}
	LWLockRelease(RaftShmem->lock);

	if (worker_latch == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the raft worker is not running"),
				 errhint("Check the server log; the postmaster restarts the worker after a failure.")));
	if (slot == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many raft requests in progress"),
				 errhint("Retry in a moment.")));
	SetLatch(worker_latch);

	for (;;)
	{
		long		remaining_ms;
		bool		done;

		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		done = slot->state == RAFT_REQUEST_DONE;
		if (done)
		{
			*req = *slot;
			slot->state = RAFT_REQUEST_FREE;
		}
		remaining_ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													   deadline);
		if (!done && (remaining_ms <= 0 || InterruptPending))
			slot->state = RAFT_REQUEST_ABANDONED;
		LWLockRelease(RaftShmem->lock);

		if (done)
			break;
		CHECK_FOR_INTERRUPTS();
		if (remaining_ms <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("raft request timed out after %d ms", timeout_ms),
					 errhint("Check raft.status: the cluster may have no leader with a majority.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(remaining_ms, 1000), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	if (req->sqlerrcode != 0)
		ereport(ERROR,
				(errcode(req->sqlerrcode),
				 errmsg_internal("%s", req->message),
				 req->detail[0] ? errdetail_internal("%s", req->detail) : 0,
				 req->hint[0] ? errhint("%s", req->hint) : 0));
}

/*
 * Refuses to form or join a cluster on an instance that cannot capture
 * its changes: the leader decodes its WAL through a replication slot.
 */
void
RaftCheckReplicationSettings(void)
{
	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_raft requires \"wal_level\" to be \"logical\""),
				 errhint("Set wal_level = logical in postgresql.conf and restart the server.")));
	if (max_wal_senders < 1 || max_replication_slots < 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_raft requires \"max_wal_senders\" and \"max_replication_slots\" to be at least 1"),
				 errhint("Raise them in postgresql.conf and restart the server.")));
}

/*
 * Sets synchronous_standby_names with ALTER SYSTEM (value NULL: resets
 * it) and has the postmaster reload the configuration.  The caller must
 * be a superuser's session.
 */
void
RaftSetSynchronousStandbyNames(const char *value)
{
	AlterSystemStmt *stmt = makeNode(AlterSystemStmt);
	VariableSetStmt *set = makeNode(VariableSetStmt);

	set->name = "synchronous_standby_names";
	if (value != NULL)
	{
		A_Const    *arg = makeNode(A_Const);

		arg->val.sval.type = T_String;
		arg->val.sval.sval = pstrdup(value);
		arg->location = -1;
		set->kind = VAR_SET_VALUE;
		set->args = list_make1(arg);
	}
	else
		set->kind = VAR_RESET;
	stmt->setstmt = set;
	AlterSystemSetConfigFile(stmt);
	if (kill(PostmasterPid, SIGHUP) != 0)
		ereport(WARNING,
				(errmsg("could not signal the postmaster to reload: %m"),
				 errhint("Run SELECT pg_reload_conf().")));
}

/*
 * Synchronous mode: makes every COMMIT on the leader wait until its
 * transaction is committed in the Raft log, by naming the leader's capture
 * connection in synchronous_standby_names (ALTER SYSTEM, then a reload).
 * A setting the operator chose is kept, with a warning when it leaves
 * pg_raft out.
 */
void
RaftConfigureSynchronousCommit(void)
{
	const char *current = GetConfigOption("synchronous_standby_names", false, false);

	/*
	 * A value of exactly pg_raft is written again: this session may not
	 * have seen the apply worker reset it yet (forget_synchronous_standby).
	 */
	if (current != NULL && current[0] != '\0' &&
		strcmp(current, RAFT_CAPTURE_APPLICATION_NAME) != 0)
	{
		if (strstr(current, RAFT_CAPTURE_APPLICATION_NAME) == NULL)
			ereport(WARNING,
					(errcode(ERRCODE_WARNING),
					 errmsg("\"synchronous_standby_names\" does not name %s",
							RAFT_CAPTURE_APPLICATION_NAME),
					 errdetail("Commits on this node, when it leads, do not wait for a majority of the raft log: a failover can lose acknowledged transactions."),
					 errhint("Set synchronous_standby_names = '%s'.",
							 RAFT_CAPTURE_APPLICATION_NAME)));
		return;
	}
	RaftSetSynchronousStandbyNames(RAFT_CAPTURE_APPLICATION_NAME);
	ereport(NOTICE,
			(errmsg("synchronous_standby_names is now '%s': commits on the leader wait for a majority of the raft log",
					RAFT_CAPTURE_APPLICATION_NAME),
			 errhint("Set synchronous_commit = local, per session or globally, to stop waiting (acknowledged transactions may then be lost in a failover).")));
}

/*
 * Waits until the node takes writes after it created a cluster, and lets
 * the session carry on although the node's writability changed.
 */
static void
wait_until_writable(int timeout_ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	RaftView   *view = palloc(sizeof(RaftView));

	for (;;)
	{
		RaftGetView(view);
		if (view->writable)
			break;
		if (GetCurrentTimestamp() >= deadline)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the cluster is created, but this node takes no writes yet"),
					 errdetail("%s", view->not_writable_reason[0] ?
							   view->not_writable_reason : "The node is not the leader."),
					 errhint("raft.status shows when it does; the server log says what stops it.")));
			break;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	pfree(view);
	RaftFenceAdoptEpoch();
}

/* Copies the worker's published view. */
void
RaftGetView(RaftView *view)
{
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	memcpy(view, &RaftShmem->view, sizeof(RaftView));
	LWLockRelease(RaftShmem->lock);
}

static RaftRequest *
new_request(RaftRequestType type)
{
	RaftRequest *req = palloc0(sizeof(RaftRequest));

	req->type = type;
	return req;
}

/*
 * raft.deliver(message bytea): receives one message from a peer.  Only
 * members of raft_peer (and superusers) may call it; see the install
 * script.
 */
Datum
pg_raft_deliver(PG_FUNCTION_ARGS)
{
	bytea	   *frame = PG_GETARG_BYTEA_PP(0);

	RaftTransportReceive((const uint8 *) VARDATA_ANY(frame),
						 VARSIZE_ANY_EXHDR(frame));
	PG_RETURN_VOID();
}

/*
 * raft.create_cluster(node_name, conninfo): bootstraps a one-node cluster
 * here.  conninfo is how the other members will reach this node; it must
 * work from here too.
 */
Datum
pg_raft_create_cluster(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(1));
	RaftRequest *req = new_request(RAFT_REQUEST_CREATE);

	RaftCheckNewMember(name, conninfo);
	RaftCheckReplicationSettings();
	strlcpy(req->name, name, RAFT_NAME_BYTES);
	strlcpy(req->conninfo, conninfo, RAFT_CONNINFO_BYTES);
	RaftRunRequest(req, MEMBERSHIP_TIMEOUT_MS);
	RaftConfigureSynchronousCommit();
	wait_until_writable(MEMBERSHIP_TIMEOUT_MS);
	PG_RETURN_VOID();
}

/*
 * raft.add_node(node_name, conninfo): on the leader, adds a learner and
 * returns the cluster id and the new node's id.  raft.join_cluster() on
 * the joining node calls it through libpq.
 */
Datum
pg_raft_add_node(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(1));
	RaftRequest *req = new_request(RAFT_REQUEST_ADD);
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	RaftView   *view = palloc(sizeof(RaftView));

	RaftCheckNodeName(name);
	RaftCheckConninfo(conninfo, "conninfo");
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	strlcpy(req->name, name, RAFT_NAME_BYTES);
	strlcpy(req->conninfo, conninfo, RAFT_CONNINFO_BYTES);
	RaftRunRequest(req, MEMBERSHIP_TIMEOUT_MS);

	values[0] = CStringGetTextDatum(psprintf("%llu",
											 (unsigned long long) req->cluster_id));
	values[1] = Int32GetDatum((int32) req->result_node_id);
	/* the leader's own id and name, so that the joiner can answer it */
	RaftGetView(view);
	values[2] = Int32GetDatum((int32) view->node_id);
	values[3] = CStringGetTextDatum(view->node_name);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}

/* raft.remove_node(node_name): removes a member, through the leader. */
Datum
pg_raft_remove_node(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	RaftRequest *req = new_request(RAFT_REQUEST_REMOVE);

	RaftCheckNodeName(name);
	strlcpy(req->name, name, RAFT_NAME_BYTES);
	RaftRunRequest(req, MEMBERSHIP_TIMEOUT_MS);
	PG_RETURN_VOID();
}

/*
 * raft.transfer_leadership(node_name default null): hands leadership to
 * node_name, or to the most up-to-date voter, and returns the new leader.
 */
Datum
pg_raft_transfer_leadership(PG_FUNCTION_ARGS)
{
	RaftRequest *req = new_request(RAFT_REQUEST_TRANSFER);

	if (!PG_ARGISNULL(0))
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

		RaftCheckNodeName(name);
		strlcpy(req->name, name, RAFT_NAME_BYTES);
	}
	RaftRunRequest(req, Max(4 * raft_election_timeout_ms, 5000));
	PG_RETURN_TEXT_P(cstring_to_text(req->result_name));
}

/*
 * raft.barrier(timeout interval default '5s'): commits a no-op through the
 * leader and returns its index, proving that a majority works.
 */
Datum
pg_raft_barrier(PG_FUNCTION_ARGS)
{
	int			timeout_ms = timeout_ms_arg(PG_GETARG_INTERVAL_P(0), "barrier");
	RaftRequest *req = new_request(RAFT_REQUEST_BARRIER);

	RaftRunRequest(req, timeout_ms);
	PG_RETURN_INT64((int64) req->result_index);
}

/* The role as raft.status and /status name it. */
const char *
RaftRoleName(const RaftView *v)
{
	if (v->is_learner)
		return "learner";
	switch (v->role)
	{
		case RAFT_LEADER:
			return "leader";
		case RAFT_CANDIDATE:
		case RAFT_PRE_CANDIDATE:
			return "candidate";
		default:
			return "follower";
	}
}

/* raft.status_info(): the row of view raft.status (none outside a cluster). */
Datum
pg_raft_status_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RaftView   *v = palloc(sizeof(RaftView));
	Datum		values[23];
	bool		nulls[23];
	bool		self_voter = false;
	pid_t		worker_pid;
	bool		resyncing;
	uint64		diverged;
	char		diverged_file[MAXPGPATH];
	char		apply_error[RAFT_ERROR_BYTES];
	TimestampTz apply_error_since;
	uint32		apply_failures;
	uint32		i;

	InitMaterializedSRF(fcinfo, 0);
	RaftGetView(v);
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	worker_pid = RaftShmem->worker_pid;
	diverged = RaftShmem->apply.diverged_transactions;
	resyncing = RaftShmem->apply.resyncing;
	strlcpy(diverged_file, RaftShmem->apply.diverged_file, MAXPGPATH);
	strlcpy(apply_error, RaftShmem->apply.apply_error, RAFT_ERROR_BYTES);
	apply_error_since = RaftShmem->apply.apply_error_since;
	apply_failures = RaftShmem->apply.apply_failures;
	LWLockRelease(RaftShmem->lock);
	if (!v->configured)
		return (Datum) 0;

	for (i = 0; i < v->n_members; i++)
		if (v->members[i].id == v->node_id)
			self_voter = v->members[i].voter;
	memset(nulls, 0, sizeof(nulls));
	values[0] = CStringGetTextDatum(v->node_name);
	values[1] = Int32GetDatum((int32) v->node_id);
	values[2] = CStringGetTextDatum(RaftRoleName(v));
	values[3] = Int64GetDatum((int64) v->term);
	if (v->leader_id != RAFT_NO_NODE && v->leader_name[0] != '\0')
		values[4] = CStringGetTextDatum(v->leader_name);
	else
		nulls[4] = true;
	values[5] = Int64GetDatum((int64) v->commit_index);
	values[6] = Int64GetDatum((int64) v->applied_index);
	values[7] = Int64GetDatum((int64) v->last_index);
	values[8] = Int64GetDatum((int64) v->first_index);
	values[9] = BoolGetDatum(self_voter);
	values[10] = Int64GetDatum((int64) v->log_bytes);
	values[11] = CStringGetTextDatum(psprintf("%016llx",
											  (unsigned long long) v->cluster_id));
	if (v->leader_conninfo[0] != '\0')
		values[12] = CStringGetTextDatum(v->leader_conninfo);
	else
		nulls[12] = true;
	if (worker_pid != 0)
		values[13] = Int32GetDatum((int32) worker_pid);
	else
		nulls[13] = true;
	values[14] = BoolGetDatum(v->writable);
	values[15] = Int64GetDatum((int64) diverged);
	if (diverged_file[0] != '\0')
		values[16] = CStringGetTextDatum(diverged_file);
	else
		nulls[16] = true;
	values[17] = BoolGetDatum(resyncing);
	values[18] = BoolGetDatum(v->serves_copies);
	values[19] = Int32GetDatum((int32) apply_failures);
	if (apply_failures > 0)
	{
		values[20] = CStringGetTextDatum(apply_error);
		values[21] = TimestampTzGetDatum(apply_error_since);
	}
	else
		nulls[20] = nulls[21] = true;
	if (v->not_writable_reason[0] != '\0')
		values[22] = CStringGetTextDatum(v->not_writable_reason);
	else
		nulls[22] = true;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}

/* raft.nodes_info(): the rows of view raft.nodes, one per member. */
Datum
pg_raft_nodes_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RaftView   *v = palloc(sizeof(RaftView));
	bool		leader_view;
	uint32		i;

	InitMaterializedSRF(fcinfo, 0);
	RaftGetView(v);
	if (!v->configured)
		return (Datum) 0;
	leader_view = v->role == RAFT_LEADER;

	for (i = 0; i < v->n_members; i++)
	{
		RaftMemberInfo *m = &v->members[i];
		Datum		values[12];
		bool		nulls[12];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(m->name);
		values[1] = Int32GetDatum((int32) m->id);
		values[2] = CStringGetTextDatum(m->conninfo);
		values[3] = BoolGetDatum(m->voter);
		values[4] = BoolGetDatum(m->is_leader);
		values[5] = BoolGetDatum(m->reachable);
		if (m->last_contact != 0)
			values[6] = TimestampTzGetDatum(m->last_contact);
		else
			nulls[6] = true;
		/* what only the leader measures is unknown elsewhere */
		if (leader_view || m->id == v->node_id)
			values[7] = Int64GetDatum((int64) m->match_index);
		else
			nulls[7] = true;
		if (leader_view || m->id == v->node_id)
			values[8] = Int64GetDatum((int64) m->applied_index);
		else
			nulls[8] = true;
		if (leader_view)
		{
			values[9] = Int64GetDatum((int64) m->lag_entries);
			values[10] = Int64GetDatum((int64) m->lag_bytes);
		}
		else
			nulls[9] = nulls[10] = true;
		if (leader_view && m->replay_lag_us >= 0)
		{
			Interval   *lag = palloc0(sizeof(Interval));

			lag->time = m->replay_lag_us;
			values[11] = IntervalPGetDatum(lag);
		}
		else
			nulls[11] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * raft.metrics_info(): the rows of view raft.metrics, one per sample of
 * what /metrics shows (metrics.c), with the same names.
 */
Datum
pg_raft_metrics_info(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	RaftMetricSample *samples;
	int			n;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	n = RaftMetricsCollect(&samples);
	for (i = 0; i < n; i++)
	{
		const RaftMetricSample *s = &samples[i];
		Datum		values[6];
		bool		nulls[6];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(psprintf("%s%s", s->family->name, s->suffix));
		if (s->member[0] != '\0')
			values[1] = CStringGetTextDatum(s->member);
		else
			nulls[1] = true;
		if (!isnan(s->le))
			values[2] = Float8GetDatum(s->le);
		else
			nulls[2] = true;
		values[3] = Float8GetDatum(s->value);
		values[4] = CStringGetTextDatum(s->family->type);
		values[5] = CStringGetTextDatum(s->family->help);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* Converts an interval argument to milliseconds, refusing nonsense. */
static int
timeout_ms_arg(Interval *timeout, const char *what)
{
	int64		ms = (timeout->time + (int64) timeout->day * USECS_PER_DAY +
					  (int64) timeout->month * 30 * USECS_PER_DAY) / 1000;

	if (ms <= 0 || ms > INT_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s timeout must be positive and less than 24 days", what)));
	return (int) ms;
}

/*
 * raft.wait_for_index(index bigint, timeout interval): waits until this
 * node has applied index; true once it has, false when the timeout passes
 * first.  A client that wrote through the leader passes the index it got
 * there (raft.barrier() returns one) to read its own writes here.
 */
Datum
pg_raft_wait_for_index(PG_FUNCTION_ARGS)
{
	int64		index = PG_GETARG_INT64(0);
	int			timeout_ms = timeout_ms_arg(PG_GETARG_INTERVAL_P(1), "wait");
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   timeout_ms);
	RaftView   *view = palloc(sizeof(RaftView));

	if (index < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("raft index must not be negative")));
	for (;;)
	{
		RaftGetView(view);
		if (!view->configured)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("this node is not a member of a raft cluster")));
		if (view->applied_index >= (uint64) index)
			PG_RETURN_BOOL(true);
		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* acc += digest, as 256-bit big-endian integers (carry out dropped). */
static void
add_digest(uint8 *acc, const uint8 *digest)
{
	int			carry = 0;
	int			i;

	for (i = PG_SHA256_DIGEST_LENGTH - 1; i >= 0; i--)
	{
		int			sum = acc[i] + digest[i] + carry;

		acc[i] = (uint8) sum;
		carry = sum >> 8;
	}
}

static void
sha256(const void *data, size_t len, uint8 *digest)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) < 0)
		elog(ERROR, "could not compute a SHA-256 digest: %s",
			 pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
}

/*
 * raft.table_checksum(table regclass): an order-independent digest of the
 * table's rows, equal on members that hold the same data.
 *
 * Each row's text form is hashed with SHA-256 and the digests are added as
 * 256-bit numbers, so the order of rows does not matter while a duplicated
 * row still counts twice; the sum and the row count are hashed once more.
 * Output settings are fixed for the duration, so that a timestamptz or a
 * float reads the same whatever the session's TimeZone or
 * extra_float_digits.  Rows are read through a cursor, in bounded memory.
 */
Datum
pg_raft_table_checksum(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	uint8		acc[PG_SHA256_DIGEST_LENGTH];
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	uint8		final[PG_SHA256_DIGEST_LENGTH + sizeof(uint64)];
	uint64		rows = 0;
	char	   *relname;
	char	   *query;
	char		hex[PG_SHA256_DIGEST_LENGTH * 2 + 1];
	Portal		portal;
	int			nest_level;
	int			i;

	relname = get_rel_name(relid);
	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (get_rel_relkind(relid) != RELKIND_RELATION &&
		get_rel_relkind(relid) != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", relname)));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		aclcheck_error(ACLCHECK_NO_PRIV, OBJECT_TABLE, relname);

	nest_level = NewGUCNestLevel();
	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("DateStyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("bytea_output", "hex", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);

	memset(acc, 0, sizeof(acc));
	/* ROW(r.*) is the whole row even when a column is named r */
	query = psprintf("SELECT ROW(r.*)::text FROM %s AS r",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												relname));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	portal = SPI_cursor_open_with_args(NULL, query, 0, NULL, NULL, NULL, true, 0);
	for (;;)
	{
		uint64		k;

		SPI_cursor_fetch(portal, true, 1000);
		if (SPI_processed == 0)
			break;
		for (k = 0; k < SPI_processed; k++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[k],
										  SPI_tuptable->tupdesc, 1, &isnull);
			text	   *t;

			if (isnull)
				elog(ERROR, "row of \"%s\" has no text form", relname);
			t = DatumGetTextPP(d);
			sha256(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), digest);
			add_digest(acc, digest);
			rows++;
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	AtEOXact_GUC(true, nest_level);

	memcpy(final, acc, sizeof(acc));
	memcpy(final + sizeof(acc), &rows, sizeof(rows));
	sha256(final, sizeof(final), digest);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
	PG_RETURN_TEXT_P(cstring_to_text(hex));
}

/*
 * raft.recopy(): makes this member empty raft.database and copy the
 * leader's schema and data again, in its apply worker, which is restarted
 * for it.  For a member whose data or schema parted from the leader's in
 * a way the log cannot mend (an object dropped by hand, say).
 */
Datum
pg_raft_recopy(PG_FUNCTION_ARGS)
{
	RaftView   *v = palloc(sizeof(RaftView));
	pid_t		apply_pid;

	RaftGetView(v);
	if (!v->configured)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is not a member of a raft cluster")));
	if (v->role == RAFT_LEADER)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the raft leader cannot copy the leader's data"),
				 errhint("Hand leadership to another member with raft.transfer_leadership() first.")));
	RaftStorageWriteFile(RAFT_RECOPY_FILE, "", 0);
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	apply_pid = RaftShmem->apply.apply_pid;
	LWLockRelease(RaftShmem->lock);
	if (apply_pid != 0)
		kill(apply_pid, SIGTERM);
	ereport(NOTICE,
			(errmsg("the apply worker empties database \"%s\" and copies the leader's schema and data",
					raft_database),
			 errhint("raft.status shows resyncing until the copy is done.")));
	PG_RETURN_VOID();
}
