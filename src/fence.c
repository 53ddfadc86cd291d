/*-------------------------------------------------------------------------
 *
 * fence.c
 *	  One writer: only the raft leader accepts writes.
 *
 * NOTES
 *	  Runs in client backends, replication connections that run SQL, and
 *	  background workers other than pg_raft's own.  A node that belongs to
 *	  a cluster and is not its leader (a follower, a candidate, a learner,
 *	  or a leader that lost its majority and stepped down) is *fenced*:
 *	  every statement it runs executes in a read-only transaction, so
 *	  PostgreSQL itself refuses INSERT, UPDATE, DELETE, MERGE, COPY FROM,
 *	  TRUNCATE, DDL, nextval() and the rest, and the error's hint names
 *	  the leader and its conninfo.
 *
 *	  A session that starts on a fenced node reports
 *	  default_transaction_read_only = on, so that libpq's
 *	  target_session_attrs=read-write moves on to the leader and
 *	  prefer-standby settles on a follower.  A session that started before
 *	  the node gained or lost leadership (or joined a cluster as a
 *	  follower) is ended at its next statement,
 *	  with a message saying why, so that its client reconnects to the
 *	  right node.
 *
 *	  Only raft.database is replicated.  On a member, a session in any
 *	  other database is fenced the same way, whatever the role, unless
 *	  raft.local_databases names the database: its writes would otherwise
 *	  vanish at the next failover.
 *
 *	  On the leader, an UPDATE or DELETE of a table without a replica
 *	  identity is refused before it runs, as PostgreSQL does for tables in
 *	  a publication: the other members could not find its rows.
 *
 *	  A leader is writable only once it applied every entry of earlier
 *	  terms and captures its own changes (worker.c); until then it is
 *	  fenced like a follower.  The raft worker also ends sessions whose
 *	  COMMIT waits for synchronous replication on a node that is fenced
 *	  (RaftFenceEndSyncWaiters).
 *
 *	  The view's flag is not enough on its own: the worker that sets it may
 *	  be cut off or stalled.  A leader takes writes only while its lease
 *	  runs (worker.c, lease_until), compared with the clock when a
 *	  statement begins and again before a transaction that wrote commits
 *	  or prepares (fence_xact_callback), which also catches what no
 *	  statement hook sees: fast-path calls, background workers that write
 *	  without the executor's entry point.  PREPARE TRANSACTION and COMMIT
 *	  PREPARED, which PostgreSQL allows in a read-only transaction, are
 *	  refused on a fenced node.
 *
 *	  The role is read from the raft worker's published view in shared
 *	  memory (RaftShmem->view, role_epoch), under the shared lock; the
 *	  commit-time check reads RaftShmem->commits_until, without it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/table.h"
#include "catalog/catalog.h"
#include "catalog/pg_inherits.h"
#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "nodes/plannodes.h"
#include "parser/parsetree.h"
#include "libpq/auth.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "replication/syncrep.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "tcop/utility.h"
#include "utils/backend_status.h"
#include "utils/elog.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/varlena.h"

#include "pg_raft.h"

static ExecutorStart_hook_type prev_executor_start = NULL;
static ProcessUtility_hook_type prev_process_utility = NULL;
static ClientAuthentication_hook_type prev_client_authentication = NULL;
static emit_log_hook_type prev_emit_log = NULL;

/* The role epoch this session started in; 0 when not tracked. */
static uint64 session_epoch = 0;

/*
 * Whether this backend forced the current statement read-only, and
 * whether because its database is not replicated.
 */
static bool fenced_here = false;
static bool fenced_database = false;
/* the transaction wrote while the node took writes, then was fenced */
static bool wrote_before_fence = false;
static char fenced_database_name[NAMEDATALEN];

typedef struct FenceState
{
	bool		fenced;			/* not writable: new writes are refused */
	bool		lease_over;		/* writable, but its lease ran out: the same */
	uint64		epoch;
	bool		leader_known;
	char		leader_name[RAFT_NAME_BYTES];
	char		leader_conninfo[RAFT_CONNINFO_BYTES];
	char		reason[RAFT_ERROR_BYTES];	/* why a leader takes no writes */
} FenceState;

static void
read_fence_state(FenceState *fs)
{
	TimestampTz now = GetCurrentTimestamp();

	memset(fs, 0, sizeof(*fs));
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	/* a member whose worker is down (starting, restarting) is fenced too */
	fs->fenced = RaftShmem->member &&
		!(RaftShmem->view.configured && RaftShmem->view.writable);
	/*
	 * The clock decides, not the worker, which may be cut off or stalled.
	 * A lease that runs out refuses writes without changing the role: it
	 * may come back with the next heartbeat's answers.
	 */
	fs->lease_over = RaftShmem->member && !fs->fenced &&
		now >= RaftShmem->view.lease_until;
	fs->epoch = RaftShmem->role_epoch;
	fs->leader_known = RaftShmem->view.configured &&
		RaftShmem->view.leader_conninfo[0] != '\0' &&
		RaftShmem->view.leader_id != RaftShmem->view.node_id;
	if (fs->leader_known)
	{
		strlcpy(fs->leader_name, RaftShmem->view.leader_name, RAFT_NAME_BYTES);
		strlcpy(fs->leader_conninfo, RaftShmem->view.leader_conninfo,
				RAFT_CONNINFO_BYTES);
	}
	strlcpy(fs->reason, RaftShmem->view.not_writable_reason, RAFT_ERROR_BYTES);
	LWLockRelease(RaftShmem->lock);
	if (fs->lease_over)
		snprintf(fs->reason, RAFT_ERROR_BYTES,
				 "its lease ran out: a majority of the voters has not answered it within the election timeout (raft.election_timeout = %d ms)",
				 raft_election_timeout_ms);
}

/*
 * Whether a write that began now would be taken as a member's write: this
 * instance is a member, leads, takes writes and holds its lease, exactly
 * as the fence decides for a session.  Otherwise says why in reason.  For
 * the health API's /leader (http.c).
 */
bool
RaftFenceTakesWrites(char *reason, size_t reason_len)
{
	FenceState	fs;

	if (!RaftShmem->member)
	{
		strlcpy(reason, "this instance is not a member of a raft cluster", reason_len);
		return false;
	}
	read_fence_state(&fs);
	if (!fs.fenced && !fs.lease_over)
		return true;
	if (fs.reason[0] != '\0')
		strlcpy(reason, fs.reason, reason_len);
	else if (fs.leader_known)
		snprintf(reason, reason_len, "this member follows; the leader is \"%s\"",
				 fs.leader_name);
	else
		strlcpy(reason, "this member does not lead and knows no leader", reason_len);
	return false;
}

/*
 * Whether this session restores the copy of raft.join_cluster: a
 * superuser's session named so while the copy runs, on a node that is a
 * learner and would refuse its writes otherwise.
 */
static bool
restoring_copy(void)
{
	return RaftShmem->copying && application_name != NULL &&
		strcmp(application_name, RAFT_COPY_APPLICATION_NAME) == 0 &&
		superuser();
}

/*
 * Whether this session is a member's own (raft.deliver from a peer, the
 * join's helpers): named pg_raft..., and allowed to deliver messages.
 */
static bool
member_connection(void)
{
	Oid			peer_role;

	if (application_name == NULL || strncmp(application_name, "pg_raft", 7) != 0)
		return false;
	if (superuser())
		return true;
	peer_role = get_role_oid("raft_peer", true);
	return OidIsValid(peer_role) && is_member_of_role(GetUserId(), peer_role);
}

/*
 * Whether writes in this database travel through the raft log: the leader
 * decodes raft.database only.
 */
static bool
database_replicated(void)
{
	static Oid	replicated_db = InvalidOid;

	if (!OidIsValid(replicated_db) && raft_database != NULL)
		replicated_db = get_database_oid(raft_database, true);
	return OidIsValid(replicated_db) && MyDatabaseId == replicated_db;
}

/*
 * Whether a session in database dbname takes no writes on a member: the
 * database is neither raft.database nor listed in raft.local_databases,
 * so writes there would vanish at the next failover.  Names are compared
 * as they are written, so that this works before the session has a
 * database (at authentication).
 */
static bool
database_fenced(const char *dbname)
{
	char	   *names;
	List	   *list;
	ListCell   *lc;
	bool		local = false;

	if (RaftShmem == NULL || !RaftShmem->member || dbname == NULL ||
		raft_database == NULL || strcmp(dbname, raft_database) == 0)
		return false;
	names = pstrdup(raft_local_databases ? raft_local_databases : "");
	if (SplitIdentifierString(names, ',', &list))
	{
		foreach(lc, list)
			if (strcmp(lfirst(lc), dbname) == 0)
				local = true;
	}
	list_free(list);
	pfree(names);
	return !local;
}

/*
 * Whether the current transaction wrote something the log would carry:
 * it has a transaction id and wrote WAL, and touched no temporary objects
 * (what PostgreSQL lets a read-only transaction write).
 */
static bool
transaction_wrote(void)
{
	return TransactionIdIsValid(GetTopTransactionIdIfAny()) &&
		XactLastRecEnd != InvalidXLogRecPtr &&
		!(MyXactFlags & XACT_FLAGS_ACCESSEDTEMPNAMESPACE);
}

/*
 * Whether this process writes past the fence: pg_raft's own background
 * workers (the apply worker is how the log reaches the tables), the
 * session that restores a joining member's copy, and processes that are
 * not sessions (autovacuum and the like change nothing the log carries).
 * Client sessions, replication connections that run SQL, and every other
 * background worker (pg_cron's jobs, native subscriptions' apply workers)
 * are fenced.
 */
static bool
fence_exempt(void)
{
	if (RaftShmem == NULL || IsParallelWorker())
		return true;			/* a parallel worker acts for a checked session */
	if (MyBackendType == B_BG_WORKER)
		return MyBgworkerEntry != NULL &&
			strcmp(MyBgworkerEntry->bgw_library_name, "pg_raft") == 0;
	if (MyBackendType != B_BACKEND && MyBackendType != B_WAL_SENDER)
		return true;
	return restoring_copy();
}

/*
 * Whether this process works in a database that is fenced whatever the
 * role (database_fenced); if so, remembers its name for the error's hint.
 * In a transaction: a background worker's database is looked up.
 */
static bool
in_fenced_database(void)
{
	const char *dbname;

	if (MyProcPort != NULL)
		dbname = MyProcPort->database_name;
	else
		dbname = OidIsValid(MyDatabaseId) ? get_database_name(MyDatabaseId) : NULL;
	if (!database_fenced(dbname))
		return false;
	strlcpy(fenced_database_name, dbname, NAMEDATALEN);
	return true;
}

/*
 * Called before every statement of a session or background worker: ends a
 * session that outlived a change of role, and makes the statement
 * read-only on a fenced node.
 */
static void
fence_statement(void)
{
	FenceState	fs;

	fenced_here = false;
	fenced_database = false;
	if (fence_exempt())
		return;
	if (in_fenced_database())
	{
		XactReadOnly = true;
		fenced_here = true;
		fenced_database = true;
		return;
	}
	read_fence_state(&fs);

	/*
	 * The members' own connections (raft.deliver) carry on across role
	 * changes: they only read, and ending them would slow the very
	 * election that changed the role.  They are still fenced below.
	 */
	if (session_epoch != 0 && fs.epoch != session_epoch &&
		!member_connection())
		ereport(FATAL,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("terminating connection because this node's raft role changed"),
				 errdetail("This node %s.", fs.fenced ?
						   "does not take writes now" : "is now the leader and takes writes"),
				 errhint("Reconnect; a conninfo with target_session_attrs=read-write finds the leader.")));
	if (fs.fenced || fs.lease_over)
	{
		if (!XactReadOnly && transaction_wrote())
			wrote_before_fence = true;
		XactReadOnly = true;
		fenced_here = true;
	}
}

/*
 * Refuses to verb the rows of table relid if it has no replica identity;
 * the caller holds lockmode on it.
 */
static void
check_replica_identity_of(Oid relid, const char *verb, LOCKMODE lockmode)
{
	Relation	rel = table_open(relid, lockmode);
	bool		identified = !RelationIsLogicallyLogged(rel) ||
		rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL ||
		OidIsValid(RelationGetReplicaIndex(rel));

	if (!identified)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot %s table \"%s\" because it has no replica identity",
						verb, RelationGetRelationName(rel)),
				 errdetail("pg_raft finds the rows to change on the other members by the table's replica identity."),
				 errhint("Add a primary key, or set REPLICA IDENTITY FULL or USING INDEX with ALTER TABLE.")));
	table_close(rel, NoLock);
}

/*
 * Refuses an UPDATE or DELETE of a table that has no replica identity
 * (REPLICA IDENTITY NOTHING, or DEFAULT without a primary key) before it
 * runs: its rows could not be found on the other members.  This is the
 * check PostgreSQL makes for tables in a publication.  Every ModifyTable
 * of the plan counts: the statement's own, those of data-modifying WITH
 * queries, and INSERT ... ON CONFLICT DO UPDATE.
 */
static void
check_modify_table(PlannedStmt *stmt, ModifyTable *mt)
{
	ListCell   *lc;
	const char *verb;

	if (mt->operation == CMD_DELETE)
		verb = "delete from";
	else if (mt->operation == CMD_UPDATE || mt->operation == CMD_MERGE ||
			 (mt->operation == CMD_INSERT && mt->onConflictAction == ONCONFLICT_UPDATE))
		verb = "update";
	else
		return;
	foreach(lc, mt->resultRelations)
	{
		RangeTblEntry *rte = rt_fetch(lfirst_int(lc), stmt->rtable);
		ListCell   *lc2;

		if (rte->rtekind != RTE_RELATION)
			continue;
		if (rte->relkind == RELKIND_RELATION)
			check_replica_identity_of(rte->relid, verb, NoLock);
		else if (rte->relkind == RELKIND_PARTITIONED_TABLE)
		{
			/*
			 * An INSERT ... ON CONFLICT DO UPDATE names only the root: the
			 * rows it may update are in any of its partitions.
			 */
			foreach(lc2, find_all_inheritors(rte->relid, AccessShareLock, NULL))
				if (get_rel_relkind(lfirst_oid(lc2)) == RELKIND_RELATION)
					check_replica_identity_of(lfirst_oid(lc2), verb, AccessShareLock);
		}
	}
}

static void
check_replica_identity(QueryDesc *queryDesc)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;
	ListCell   *lc;

	if (stmt->commandType == CMD_SELECT && !stmt->hasModifyingCTE)
		return;
	if (stmt->planTree != NULL && IsA(stmt->planTree, ModifyTable))
		check_modify_table(stmt, (ModifyTable *) stmt->planTree);
	foreach(lc, stmt->subplans)
	{
		Plan	   *plan = lfirst(lc);

		if (plan != NULL && IsA(plan, ModifyTable))
			check_modify_table(stmt, (ModifyTable *) plan);
	}
}

static void
fence_executor_start(QueryDesc *queryDesc, int eflags)
{
	fence_statement();
	if (!fenced_here && !fence_exempt() && RaftShmem->member &&
		database_replicated())
		check_replica_identity(queryDesc);
	if (prev_executor_start)
		prev_executor_start(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

/*
 * PostgreSQL lets a read-only transaction prepare, and a read-only
 * session commit a prepared transaction: on a fenced node a transaction
 * prepared while it led would commit unseen by the log.  ROLLBACK
 * PREPARED stays allowed: nothing it wrote becomes visible, and it is how
 * an operator releases the locks such a transaction holds, which would
 * otherwise hold back the apply worker, and the node's next leadership
 * (whose replication slot waits for every running transaction).  It does
 * not wait for synchronous replication, which a fenced node does not
 * provide.
 */
static void
fence_two_phase(Node *stmt)
{
	TransactionStmt *ts;
	const char *command;

	if (!fenced_here || stmt == NULL || !IsA(stmt, TransactionStmt))
		return;
	ts = (TransactionStmt *) stmt;
	if (ts->kind == TRANS_STMT_ROLLBACK_PREPARED)
	{
		(void) set_config_option("synchronous_commit", "local", PGC_SUSET,
								 PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
		return;
	}
	if (ts->kind == TRANS_STMT_PREPARE)
		command = "PREPARE TRANSACTION";
	else if (ts->kind == TRANS_STMT_COMMIT_PREPARED)
		command = "COMMIT PREPARED";
	else
		return;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
	/* translator: %s is a SQL command name */
			 errmsg("cannot execute %s in a read-only transaction", command)));
}

/*
 * Before a commit or a PREPARE: a transaction that wrote, on a node that
 * takes no writes now (unless it hands its leadership over, and lets
 * running transactions finish), is refused.  Its statements began while
 * the node took writes, or bypassed the statement fence (fast-path calls such as
 * the large-object functions, background workers that write without the
 * executor's entry point).  What PostgreSQL lets a read-only transaction
 * write (temporary tables, ANALYZE's statistics) is left alone.
 */
static void
fence_xact_callback(XactEvent event, void *arg)
{
	bool		other_database;

	if (event != XACT_EVENT_PRE_COMMIT && event != XACT_EVENT_PRE_PREPARE)
	{
		wrote_before_fence = false;
		return;
	}
	/* read-only from its start, or made so before it wrote */
	if ((XactReadOnly && !wrote_before_fence) ||
		RaftShmem == NULL || !RaftShmem->member || fence_exempt() ||
		!transaction_wrote())
		return;
	other_database = in_fenced_database();
	if (!other_database)
	{
		/* on every commit of the leader: no lock */
		if (!database_replicated() ||
			GetCurrentTimestamp() < (TimestampTz) pg_atomic_read_u64(&RaftShmem->commits_until))
			return;
	}
	fenced_here = true;
	fenced_database = other_database;
	ereport(ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg(event == XACT_EVENT_PRE_PREPARE ?
					"cannot prepare a transaction that wrote, on a node that takes no writes" :
					"cannot commit a transaction that wrote, on a node that takes no writes"),
			 errdetail("The node stopped taking writes while the transaction ran; its changes are rolled back.")));
}

static void
fence_process_utility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	fence_statement();
	fence_two_phase(pstmt->utilityStmt);
	if (prev_process_utility)
		prev_process_utility(pstmt, queryString, readOnlyTree, context,
							 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * At the start of a session: remember the role epoch, and on a fenced node
 * make the session read-only by default, which libpq sees.
 */
static void
fence_client_authentication(Port *port, int status)
{
	FenceState	fs;

	if (prev_client_authentication)
		prev_client_authentication(port, status);
	if (status != STATUS_OK || RaftShmem == NULL)
		return;
	read_fence_state(&fs);
	session_epoch = fs.epoch;
	if ((fs.fenced || database_fenced(port->database_name)) &&
		!(RaftShmem->copying && port->application_name != NULL &&
		  strcmp(port->application_name, RAFT_COPY_APPLICATION_NAME) == 0))
		SetConfigOption("default_transaction_read_only", "on",
						PGC_SUSET, PGC_S_OVERRIDE);
}

/* Adds the leader to the hint of a write refused on a fenced node. */
static void
fence_emit_log(ErrorData *edata)
{
	if (fenced_here && edata->elevel >= ERROR &&
		edata->sqlerrcode == ERRCODE_READ_ONLY_SQL_TRANSACTION &&
		edata->hint == NULL)
	{
		FenceState	fs;
		MemoryContext old = MemoryContextSwitchTo(ErrorContext);

		read_fence_state(&fs);
		if (fenced_database)
			edata->hint = psprintf("Database \"%s\" is not replicated by pg_raft: write in raft.database (\"%s\"), or list this database in raft.local_databases to keep its changes on this member only.",
								   fenced_database_name, raft_database);
		else if (fs.leader_known)
			edata->hint = psprintf("This node is not the raft leader; write on the leader, node \"%s\": %s",
								   fs.leader_name, fs.leader_conninfo);
		else if (fs.reason[0] != '\0')
			edata->hint = psprintf("This node leads the raft cluster but takes no writes at the moment: %s.",
								   fs.reason);
		else
			edata->hint = pstrdup("This node is not the raft leader, and no leader is known at the moment.");
		MemoryContextSwitchTo(old);
	}
	if (prev_emit_log)
		prev_emit_log(edata);
}

/*
 * Lets the current session carry on across a change of writability that
 * it caused itself (raft.create_cluster()).
 */
void
RaftFenceAdoptEpoch(void)
{
	FenceState	fs;

	read_fence_state(&fs);
	session_epoch = fs.epoch;
	if (!fs.fenced)
		SetConfigOption("default_transaction_read_only", "off",
						PGC_SUSET, PGC_S_OVERRIDE);
}

/*
 * Ends the sessions whose COMMIT waits for synchronous replication.  Runs
 * in the raft worker on a node that takes no writes: such a commit was
 * made while the node led, and its changes may never reach the log, so it
 * must not be acknowledged later.  PostgreSQL tells the client that the
 * transaction committed locally but might not have been replicated.
 */
void
RaftFenceEndSyncWaiters(void)
{
	uint32		i;

	/* the waiters' states change under SyncRepLock */
	LWLockAcquire(SyncRepLock, LW_SHARED);
	for (i = 0; i < ProcGlobal->allProcCount; i++)
	{
		PGPROC	   *proc = &ProcGlobal->allProcs[i];
		pid_t		pid = proc->pid;

		if (pid != 0 && proc->syncRepState == SYNC_REP_WAITING)
		{
			ereport(LOG,
					(errmsg("ending the session of process %d: its commit waits for a replication this node no longer provides",
							(int) pid)));
			kill(pid, SIGTERM);
		}
	}
	LWLockRelease(SyncRepLock);
}

/*
 * Whether a session's COMMIT waits for synchronous replication: a leader
 * that hands its leadership over waits for none to be left (worker.c).
 */
bool
RaftFenceSyncWaiters(void)
{
	bool		found = false;
	uint32		i;

	LWLockAcquire(SyncRepLock, LW_SHARED);
	for (i = 0; i < ProcGlobal->allProcCount && !found; i++)
		found = ProcGlobal->allProcs[i].pid != 0 &&
			ProcGlobal->allProcs[i].syncRepState == SYNC_REP_WAITING;
	LWLockRelease(SyncRepLock);
	return found;
}

/*
 * The next client session after position *i (from 0) in this backend's
 * snapshot of the sessions' reported states, or NULL at the end.  The
 * caller clears the snapshot before the first call, for a fresh one, and
 * after the last.
 */
static LocalPgBackendStatus *
next_client_session(int *i)
{
	int			n = pgstat_fetch_stat_numbackends();

	while (++*i <= n)
	{
		LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(*i);

		if (local != NULL && local->backendStatus.st_backendType == B_BACKEND)
			return local;
	}
	return NULL;
}

/*
 * Whether a client session runs a statement that began before
 * began_before.  A leader that hands its leadership over waits for none
 * to be left (worker.c): one that began while the node took writes may
 * still write and commit, and its commit must reach the log before the
 * leadership goes.
 */
bool
RaftFenceStatementsRunning(TimestampTz began_before, Latch *requester)
{
	bool		found = false;
	LocalPgBackendStatus *local;
	int			i = 0;

	pgstat_clear_backend_activity_snapshot();
	while (!found && (local = next_client_session(&i)) != NULL)
	{
		PgBackendStatus *be = &local->backendStatus;
		PGPROC	   *proc;

		/* the members' own connections (raft.deliver) write nothing */
		if (be->st_state != STATE_RUNNING ||
			be->st_activity_start_timestamp >= began_before ||
			strncmp(be->st_appname, "pg_raft", 7) == 0)
			continue;
		/* nor does the session that asked for the transfer */
		proc = BackendPidGetProc(be->st_procpid);
		found = proc != NULL && &proc->procLatch != requester;
	}
	pgstat_clear_backend_activity_snapshot();
	return found;
}

void
RaftFenceInit(void)
{
	prev_executor_start = ExecutorStart_hook;
	ExecutorStart_hook = fence_executor_start;
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = fence_process_utility;
	prev_client_authentication = ClientAuthentication_hook;
	ClientAuthentication_hook = fence_client_authentication;
	prev_emit_log = emit_log_hook;
	emit_log_hook = fence_emit_log;
	RegisterXactCallback(fence_xact_callback, NULL);
}

/*
 * Ends the client sessions that sit idle in a transaction that holds a
 * transaction id and began before began_before (any, if 0).  The fence
 * ends other sessions at their next statement, but an idle one sends
 * none, and it holds its locks meanwhile:
 *
 * - a new leader's replication slot is created only once every
 *	 transaction running when it began has ended (logical decoding starts
 *	 from a point where none runs): such a session would hold the node
 *	 back from taking writes for as long as it idles;
 * - on a node that stopped taking writes, a write transaction that began
 *	 before can never commit, and its row locks would hold the apply
 *	 worker back for as long as it idles (a client cut off by a partition
 *	 may never send another byte).
 *
 * Runs in the raft worker.  Sessions are known by their reported state, so
 * with track_activities off none is found; prepared transactions hold
 * locks too, and only an operator can end them.
 */
void
RaftFenceEndIdleTransactions(TimestampTz began_before)
{
	LocalPgBackendStatus *local;
	int			i = 0;

	pgstat_clear_backend_activity_snapshot();
	while ((local = next_client_session(&i)) != NULL)
	{
		PgBackendStatus *be = &local->backendStatus;
		PGPROC	   *proc;

		if (be->st_state != STATE_IDLEINTRANSACTION ||
			!TransactionIdIsValid(local->backend_xid) ||
			(began_before != 0 && be->st_xact_start_timestamp >= began_before))
			continue;
		/* still the same process, still in that transaction? */
		proc = BackendPidGetProc(be->st_procpid);
		if (proc == NULL || proc->xid != local->backend_xid)
			continue;
		if (kill(be->st_procpid, SIGTERM) != 0)
			continue;
		if (began_before == 0)
			ereport(LOG,
					(errmsg("pg_raft is terminating process %d, idle in transaction %u, which holds back this new leader",
							(int) be->st_procpid, local->backend_xid),
					 errdetail("The leader's replication slot can be created only once every transaction that was running has ended.")));
		else
			ereport(LOG,
					(errmsg("pg_raft is terminating process %d, idle in transaction %u, which began while this node took writes",
							(int) be->st_procpid, local->backend_xid),
					 errdetail("The transaction can no longer commit, and its locks would hold back the apply worker.")));
	}
	pgstat_clear_backend_activity_snapshot();
}
