/*-------------------------------------------------------------------------
 *
 * join.c
 *	  raft.join_cluster(): bringing a new instance into a running cluster.
 *
 * NOTES
 *	  Runs in the backend of the joining instance.  It finds the leader
 *	  through any member, asks it (raft.add_node over libpq) to add this
 *	  node as a learner, which gives the node its id and the cluster's id,
 *	  has the local raft worker adopt that identity, and waits while the
 *	  learner receives the log.  The leader promotes a learner to voter by
 *	  itself once it has caught up (worker.c); join_cluster returns then.
 *
 *	  Unless told that the instance already holds the cluster's data, it
 *	  first copies it from the leader, while writes go on there:
 *
 *		1. it reads the leader's commit index B (the leader must take
 *		   writes, so it has applied everything of earlier terms);
 *		2. it creates a temporary logical slot on the leader that exports
 *		   a snapshot, consistent at LSN L, and checks that the same node
 *		   still leads in the same term: every transaction in the log up
 *		   to B committed before L, so it is in the snapshot;
 *		3. pg_dumpall copies the roles, then pg_dump with that snapshot and
 *		   pg_restore copy schema and data of raft.database;
 *		4. the apply worker, held back meanwhile, starts after index B and
 *		   skips the leader's transactions that committed before L (they
 *		   are in the copy): file pg_raft/copy_start says so, and gives
 *		   the leader's commit index C once its slot confirmed L: every
 *		   entry of a transaction in the copy is at or before C, so a
 *		   stream of the leader's that begins after C is not in it.
 *
 *	  While the copy runs, pg_raft/copy_pending exists: an instance that
 *	  stops in the middle holds part of the data, and its apply worker
 *	  copies it again (apply.c), after emptying the database.  The apply
 *	  worker uses the same copy to re-synchronise a member whose data
 *	  parted from the log's: a former leader with transactions that never
 *	  reached the log, or a member that was away while the log it needed
 *	  was compacted.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_authid.h"
#include "commands/dbcommands.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "sql.h"
#include "storage.h"

PG_FUNCTION_INFO_V1(pg_raft_join_cluster);

/* How long a learner may take to catch up before join_cluster gives up. */
#define CATCH_UP_TIMEOUT_MS (120 * 1000)
/* How long the leader may take to confirm a snapshot's position. */
#define CONFIRM_TIMEOUT_MS (30 * 1000)

/* Runs a query expected to return one row; errors carry the remote text. */
static PGresult *
remote_query(PGconn *conn, const char *sql, int nparams,
			 const char *const *params, const char *what)
{
	PGresult   *res = PQexecParams(conn, sql, nparams, NULL, params, NULL,
								   NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *msg = pchomp(PQresultErrorMessage(res));
		char	   *hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);

		hint = hint ? pstrdup(hint) : NULL;
		PQclear(res);
		PQfinish(conn);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not %s", what),
				 errdetail_internal("%s", msg),
				 hint ? errhint("%s", hint) : 0));
	}
	return res;
}

/*
 * Returns a connection to the leader, found through the member at
 * peer_conninfo.
 */
static PGconn *
connect_to_leader(const char *peer_conninfo, char **leader_conninfo_out)
{
	PGconn	   *conn = RaftConnect(peer_conninfo, "the peer");
	PGresult   *res;
	char	   *leader_conninfo;

	res = remote_query(conn,
					   "SELECT role, leader_conninfo FROM raft.status", 0, NULL,
					   "ask the peer for the cluster's leader");
	if (PQntuples(res) != 1)
	{
		PQclear(res);
		PQfinish(conn);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the peer is not a member of a raft cluster"),
				 errhint("Give the conninfo of a member as peer_conninfo.")));
	}
	if (strcmp(PQgetvalue(res, 0, 0), "leader") == 0)
	{
		*leader_conninfo_out = pstrdup(PQgetisnull(res, 0, 1) ?
									   peer_conninfo : PQgetvalue(res, 0, 1));
		PQclear(res);
		return conn;
	}
	if (PQgetisnull(res, 0, 1))
	{
		PQclear(res);
		PQfinish(conn);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the cluster has no leader at the moment"),
				 errhint("Retry once raft.status on the peer shows a leader.")));
	}
	leader_conninfo = pstrdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	PQfinish(conn);
	*leader_conninfo_out = leader_conninfo;
	return RaftConnect(leader_conninfo, "the leader");
}

/* Waits until this node is a voter; errors after CATCH_UP_TIMEOUT_MS. */
static void
wait_for_promotion(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   CATCH_UP_TIMEOUT_MS);
	RaftView   *v = palloc(sizeof(RaftView));

	for (;;)
	{
		uint32		i;

		RaftGetView(v);
		for (i = 0; i < v->n_members; i++)
			if (v->members[i].id == v->node_id && v->members[i].voter)
				return;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("this node joined as a learner but was not promoted within %d seconds",
							CATCH_UP_TIMEOUT_MS / 1000),
					 errhint("It keeps catching up; raft.status shows when it becomes a voter.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/* ----------------------------------------------------------------
 * Copying the data
 * ----------------------------------------------------------------
 */

/* Refuses to copy onto an instance whose database already holds tables. */
static void
require_empty_database(void)
{
	int64		found;
	bool		isnull;

	SPI_connect();
	if (SPI_execute("SELECT count(*) FROM pg_class c"
					" JOIN pg_namespace n ON n.oid = c.relnamespace"
					" WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"
					" AND" USER_SCHEMA("n.nspname")
					" AND NOT EXISTS (SELECT FROM pg_depend d"
					"  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid"
					"  AND d.deptype = 'e')", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not list the tables of this database");
	found = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	if (found > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this database already holds %lld tables, views or sequences",
						(long long) found),
				 errdetail("raft.join_cluster copies the cluster's data onto an empty database."),
				 errhint("Join from an empty database, or pass copy_data => false if this instance already holds exactly the cluster's data.")));
}

/* Appends s to buf as one word for /bin/sh. */
static void
append_shell_word(StringInfo buf, const char *s)
{
	appendStringInfoChar(buf, '\'');
	for (; *s; s++)
	{
		if (*s == '\'')
			appendStringInfoString(buf, "'\\''");
		else
			appendStringInfoChar(buf, *s);
	}
	appendStringInfoChar(buf, '\'');
}

/* The path of one of PostgreSQL's programs, next to the server's. */
static char *
program_path(const char *name)
{
	char		dir[MAXPGPATH];

	strlcpy(dir, my_exec_path, sizeof(dir));
	get_parent_directory(dir);
	return psprintf("%s/%s", dir, name);
}

/*
 * Runs a shell command whose standard error goes to pg_raft/join.log; an
 * exit status other than 0 is an ERROR whose detail is the end of that
 * log, unless errors are expected (the roles: those that exist here fail).
 */
static void
run_program(const char *command, const char *what, bool may_fail)
{
	char	   *full = psprintf("%s 2>>%s/join.log", command, RAFT_STORAGE_DIR);
	int			rc;

	ereport(DEBUG1, (errmsg_internal("running: %s", full)));
	fflush(NULL);
	rc = system(full);
	if (rc != 0 && !may_fail)
	{
		char	   *tail = "";
		char		path[MAXPGPATH];
		FILE	   *f;

		snprintf(path, sizeof(path), "%s/join.log", RAFT_STORAGE_DIR);
		f = AllocateFile(path, "r");
		if (f != NULL)
		{
			char		buf[1024];
			size_t		n;

			if (fseek(f, -(long) (sizeof(buf) - 1), SEEK_END) != 0)
				rewind(f);
			n = fread(buf, 1, sizeof(buf) - 1, f);
			buf[n] = '\0';
			tail = pchomp(buf);
			FreeFile(f);
		}
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not %s: %s", what, wait_result_to_str(rc)),
				 errdetail_internal("%s", tail),
				 errhint("The whole output is in \"%s/join.log\".", RAFT_STORAGE_DIR)));
	}
}

/* A conninfo reaching this server as the bootstrap superuser. */
static char *
local_conninfo(void)
{
	StringInfoData buf;
	char	   *dir = RaftLocalSocketDirectory();

	initStringInfo(&buf);
	appendStringInfo(&buf, "host='%s' port=%d dbname='%s' user='%s' application_name=%s"
					 " options='-c synchronous_commit=local'",
					 dir ? dir : "localhost", PostPortNumber, raft_database,
					 GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false),
					 RAFT_COPY_APPLICATION_NAME);
	return buf.data;
}

/*
 * Runs a command that may wait long (a slot's snapshot waits for the
 * transactions running on the leader to end), answering cancel requests
 * meanwhile.  Returns the last result.
 */
static PGresult *
exec_interruptible(PGconn *conn, const char *command)
{
	PGresult   *last = NULL;
	PGresult   *res;

	if (!PQsendQuery(conn, command))
		return PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
	for (;;)
	{
		while (PQisBusy(conn))
		{
			(void) WaitLatchOrSocket(MyLatch,
									 WL_LATCH_SET | WL_SOCKET_READABLE | WL_EXIT_ON_PM_DEATH,
									 PQsocket(conn), 1000L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			if (InterruptPending)
				PQrequestCancel(conn);
			CHECK_FOR_INTERRUPTS();
			if (!PQconsumeInput(conn))
				break;
		}
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		if (last != NULL)
			PQclear(last);
		last = res;
	}
	return last ? last : PQmakeEmptyPGresult(conn, PGRES_FATAL_ERROR);
}

/*
 * Reads the leader's commit index and term; the leader must serve copies
 * (raft.status.serves_copies: it applied everything before its term and
 * captures its changes), though it may not take writes yet while too few
 * members hold the log's data.
 * Leaves conn open on error: the caller closes it.
 */
static void
leader_position(PGconn *conn, uint64 *commit_index, uint64 *term,
				raft_id_t *leader_id)
{
	PGresult   *res = PQexec(conn,
							 "SELECT commit_index, term, node_id FROM raft.status"
							 " WHERE role = 'leader' AND serves_copies");

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		char	   *msg = pchomp(PQresultStatus(res) == PGRES_TUPLES_OK ?
								 "" : PQerrorMessage(conn));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the node this instance copies from no longer leads, or takes no writes yet"),
				 msg[0] ? errdetail_internal("%s", msg) : 0,
				 errhint("The apply worker copies the data again once a leader takes writes; raft.status shows when it is done.")));
	}
	*commit_index = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	*term = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
	*leader_id = (raft_id_t) strtoul(PQgetvalue(res, 0, 2), NULL, 10);
	PQclear(res);
}

/*
 * The conninfo with its database replaced by raft.database (the data to
 * copy is there, whatever the member's conninfo names), and the copy's
 * application name.
 */
char *
RaftConninfoForDatabase(const char *conninfo)
{
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	PQconninfoOption *o;
	StringInfoData buf;

	if (opts == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("invalid conninfo of the leader")));
	initStringInfo(&buf);
	for (o = opts; o->keyword != NULL; o++)
	{
		const char *value = strcmp(o->keyword, "dbname") == 0 ? raft_database : o->val;
		const char *c;

		/*
		 * The copy's sessions on the leader (pg_dump, pg_dumpall) are a
		 * member's: the fence does not end them when a role changes.
		 */
		if (strcmp(o->keyword, "application_name") == 0)
			value = RAFT_COPY_APPLICATION_NAME;

		if (value == NULL)
			continue;
		appendStringInfo(&buf, "%s='", o->keyword);
		for (c = value; *c; c++)
		{
			if (*c == '\'' || *c == '\\')
				appendStringInfoChar(&buf, '\\');
			appendStringInfoChar(&buf, *c);
		}
		appendStringInfoString(&buf, "' ");
	}
	PQconninfoFree(opts);
	return buf.data;
}

/*
 * Copies roles, schema and data from the leader at a known point of its
 * log, and tells the apply worker where to start.
 */
static void copy_at_snapshot(const char *leader_conninfo, PGconn *conn,
							 PGconn *repl);

static void
copy_from_leader(const char *member_conninfo)
{
	char	   *leader_conninfo = RaftConninfoForDatabase(member_conninfo);
	PGconn	   *volatile conn = NULL;
	PGconn	   *volatile repl = NULL;

	PG_TRY();
	{
		conn = RaftConnect(leader_conninfo, "the leader");
		repl = RaftConnectReplication(leader_conninfo, "the leader for replication");
		copy_at_snapshot(leader_conninfo, conn, repl);
	}
	PG_FINALLY();
	{
		/* the temporary slot and the exported snapshot end with them */
		if (repl != NULL)
			PQfinish(repl);
		if (conn != NULL)
			PQfinish(conn);
	}
	PG_END_TRY();
}

/*
 * Waits until the leader's own slot has confirmed lsn while the same node
 * leads in the same term: capture confirms a position only once every
 * transaction that committed before it is committed in the Raft log.  A
 * snapshot consistent at lsn then holds no transaction that the log could
 * still lose (one that committed with synchronous_commit = local, or whose
 * wait for the log was cancelled, while the leadership ends).
 */
static void
wait_for_confirmed(PGconn *conn, XLogRecPtr lsn, uint64 term, raft_id_t leader_id)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   CONFIRM_TIMEOUT_MS);
	char	   *query = psprintf("SELECT s.confirmed_flush_lsn >= '%X/%X'::pg_lsn, r.term, r.node_id"
								 " FROM pg_replication_slots s, raft.status r"
								 " WHERE s.slot_name = '%s' AND r.role = 'leader'",
								 LSN_FORMAT_ARGS(lsn), RAFT_SLOT_NAME);

	for (;;)
	{
		PGresult   *res = exec_interruptible(conn, query);
		bool		confirmed;

		if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
			strtoull(PQgetvalue(res, 0, 1), NULL, 10) != term ||
			strtoul(PQgetvalue(res, 0, 2), NULL, 10) != leader_id)
		{
			PQclear(res);
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("the leadership changed while the copy began"),
					 errhint("The apply worker copies the data again once a leader takes writes; raft.status shows when it is done.")));
		}
		confirmed = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		if (confirmed)
			return;
		if (GetCurrentTimestamp() >= deadline)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("the leader did not confirm its log up to LSN %X/%X within %d seconds",
							LSN_FORMAT_ARGS(lsn), CONFIRM_TIMEOUT_MS / 1000),
					 errdetail("A copy must not hold transactions that the raft log may still lose."),
					 errhint("The apply worker copies the data again once a leader takes writes; raft.status shows when it is done.")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * RaftLeaderSnapshot
 *		Exports a snapshot of the leader's data that holds exactly the
 *		log up to a known point, and says which point in *start and *term.
 *
 * conn is a normal connection to the leader, repl a replication one; the
 * snapshot lives as long as repl runs no other command.  The snapshot is
 * the one of a temporary logical slot, consistent at LSN L, taken while
 * the same node led in the same term before and after: every transaction
 * in the log up to the commit index read before committed before L, and
 * every transaction of the leader's that committed before L is in the log
 * (wait_for_confirmed).  Entries of earlier terms are in it too: a leader
 * takes writes only once it has applied them.  If confirmed_index is not
 * NULL, it is set to the leader's commit index once L is confirmed: every
 * entry the snapshot holds is at or before it.  Returns the snapshot's name.
 */
char *
RaftLeaderSnapshot(PGconn *conn, PGconn *repl, RaftCopyStart *start,
				   uint64 *term, uint64 *confirmed_index)
{
	PGresult   *res;
	uint64		index;
	uint64		term_after;
	raft_id_t	leader_id;
	raft_id_t	leader_after;
	uint64		index_after;
	char	   *snapshot;

	leader_position(conn, &index, term, &leader_id);

	res = exec_interruptible(repl,
							 psprintf("CREATE_REPLICATION_SLOT pg_raft_copy_%u_%d TEMPORARY LOGICAL pg_raft (SNAPSHOT 'export')",
									  RaftShmem->node_id, MyProcPid));
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		char	   *msg = pchomp(PQerrorMessage(repl));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not take a snapshot of the leader's data"),
				 errdetail_internal("%s", msg),
				 errhint("The conninfo's role needs the REPLICATION attribute, and the leader a free replication slot.")));
	}
	start->origin = leader_id;
	start->lsn = DatumGetLSN(DirectFunctionCall1(pg_lsn_in,
												 CStringGetDatum(PQgetvalue(res, 0, 1))));
	snapshot = pstrdup(PQgetvalue(res, 0, 2));
	PQclear(res);

	/* the snapshot holds the whole log up to index only if leadership held */
	leader_position(conn, &index_after, &term_after, &leader_after);
	if (term_after != *term || leader_after != leader_id)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("the leadership changed while the copy began"),
				 errhint("The apply worker copies the data again once a leader takes writes; raft.status shows when it is done.")));
	wait_for_confirmed(conn, start->lsn, *term, leader_id);
	start->index = index;
	if (confirmed_index != NULL)
	{
		leader_position(conn, confirmed_index, &term_after, &leader_after);
		if (term_after != *term || leader_after != leader_id)
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("the leadership changed while the copy began"),
					 errhint("The apply worker copies the data again once a leader takes writes; raft.status shows when it is done.")));
	}
	return snapshot;
}

/*
 * The copy itself, through a normal connection to the leader (conn) and a
 * replication one (repl).
 */
static void
copy_at_snapshot(const char *leader_conninfo, PGconn *conn, PGconn *repl)
{
	RaftCopyStartFile start;
	uint64		term;
	char	   *snapshot;
	char	   *dump_file = psprintf("%s/join.dump", RAFT_STORAGE_DIR);
	char	   *roles_file = psprintf("%s/join_roles.sql", RAFT_STORAGE_DIR);
	char	   *list_file = psprintf("%s/join.list", RAFT_STORAGE_DIR);
	StringInfoData cmd;

	/* written whole to a file: no uninitialised padding */
	memset(&start, 0, sizeof(start));
	snapshot = RaftLeaderSnapshot(conn, repl, &start.start, &term,
								  &start.confirmed_index);

	initStringInfo(&cmd);
	append_shell_word(&cmd, program_path("pg_dumpall"));
	appendStringInfoString(&cmd, " --roles-only -f ");
	append_shell_word(&cmd, roles_file);
	appendStringInfoString(&cmd, " -d ");
	append_shell_word(&cmd, leader_conninfo);
	run_program(cmd.data, "copy the roles from the leader", false);
	resetStringInfo(&cmd);
	append_shell_word(&cmd, program_path("psql"));
	appendStringInfoString(&cmd, " -X -q -o /dev/null -f ");
	append_shell_word(&cmd, roles_file);
	appendStringInfoString(&cmd, " -d ");
	append_shell_word(&cmd, local_conninfo());
	run_program(cmd.data, "create the roles here", true);

	resetStringInfo(&cmd);
	append_shell_word(&cmd, program_path("pg_dump"));
	appendStringInfoString(&cmd, " -Fc --no-subscriptions --snapshot=");
	append_shell_word(&cmd, snapshot);
	appendStringInfoString(&cmd, " -f ");
	append_shell_word(&cmd, dump_file);
	appendStringInfoString(&cmd, " -d ");
	append_shell_word(&cmd, leader_conninfo);
	run_program(cmd.data, "dump the leader's data", false);

	/* everything but the extension itself, which exists here already */
	resetStringInfo(&cmd);
	append_shell_word(&cmd, program_path("pg_restore"));
	appendStringInfoString(&cmd, " -l ");
	append_shell_word(&cmd, dump_file);
	appendStringInfoString(&cmd, " | grep -v -E ' (SCHEMA - raft|EXTENSION - pg_raft|COMMENT - EXTENSION pg_raft)( |$)' > ");
	append_shell_word(&cmd, list_file);
	run_program(cmd.data, "list the leader's data", false);
	resetStringInfo(&cmd);
	append_shell_word(&cmd, program_path("pg_restore"));
	appendStringInfoString(&cmd, " --exit-on-error -L ");
	append_shell_word(&cmd, list_file);
	appendStringInfoString(&cmd, " -d ");
	append_shell_word(&cmd, local_conninfo());
	appendStringInfoChar(&cmd, ' ');
	append_shell_word(&cmd, dump_file);
	run_program(cmd.data, "restore the leader's data here", false);
	unlink(dump_file);
	unlink(list_file);
	unlink(roles_file);

	RaftStorageWriteFile(RAFT_COPY_START_FILE, &start, sizeof(start));
	ereport(LOG,
			(errmsg("pg_raft copied the data of node %u as of raft index %llu (LSN %X/%X there)",
					start.start.origin, (unsigned long long) start.start.index,
					LSN_FORMAT_ARGS(start.start.lsn))));
}

/* Holds the apply worker back while the copy runs (apply.c). */
static void
set_copying(bool copying)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->copying = copying;
	LWLockRelease(RaftShmem->lock);
}

/* Ends the copy's hold on an error, and when the process exits (FATAL). */
static void
end_copying(int code, Datum arg)
{
	set_copying(false);
}

/*
 * Copies the leader's data through the member at member_conninfo (the
 * leader itself) and records where the apply worker starts after it.
 * pg_raft/copy_pending exists until the copy is whole.  Sessions restoring
 * it are let through the fence meanwhile.
 */
void
RaftCopyData(const char *member_conninfo)
{
	set_copying(true);
	PG_ENSURE_ERROR_CLEANUP(end_copying, (Datum) 0);
	{
		RaftStorageWriteFile(RAFT_COPY_PENDING_FILE, "", 0);
		copy_from_leader(member_conninfo);
		RaftStorageRemoveFile(RAFT_COPY_PENDING_FILE);
	}
	PG_END_ENSURE_ERROR_CLEANUP(end_copying, (Datum) 0);
	set_copying(false);
}

/*
 * Runs one SQL command in a transaction of its own, waiting for other
 * sessions' locks at most lock_timeout, if set, else 10 seconds.
 */
static void
run_in_transaction(const char *command)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SELECT set_config('lock_timeout', '10s', true)"
					" WHERE current_setting('lock_timeout') = '0'", false, 0) < 0 ||
		SPI_execute(command, false, 0) < 0)
		elog(ERROR, "could not run: %s", command);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Drops what the database holds outside the catalogs and pg_raft itself,
 * before a copy replaces it: the extensions, foreign-data wrappers (with
 * their servers and user mappings), event triggers, publications, large
 * objects, tables, views and sequences, then the schemas (a dump of the
 * leader holds its own; subscriptions are not copied).  The schema public
 * is made again as a new database has it.  Each object goes in a
 * transaction of its own, so that the locks of thousands of tables never
 * have to fit in the lock table at once.  Called outside a transaction.
 */
void
RaftEmptyDatabase(void)
{
	static const char *const lists[] = {
		"SELECT format('DROP EXTENSION IF EXISTS %I CASCADE', extname) FROM pg_extension"
		" WHERE extname NOT IN ('pg_raft', 'plpgsql')",
		"SELECT format('DROP FOREIGN DATA WRAPPER IF EXISTS %I CASCADE', fdwname)"
		" FROM pg_foreign_data_wrapper",
		"SELECT format('DROP EVENT TRIGGER IF EXISTS %I', evtname) FROM pg_event_trigger",
		"SELECT format('DROP PUBLICATION IF EXISTS %I', pubname) FROM pg_publication",
		"SELECT format('SELECT lo_unlink(%s) FROM pg_largeobject_metadata WHERE oid = %s', oid, oid)"
		" FROM pg_largeobject_metadata",
		"SELECT format('DROP %s IF EXISTS %I.%I CASCADE',"
		" CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'"
		"  WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END,"
		" n.nspname, c.relname)"
		" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
		" WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND NOT c.relispartition"
		" AND" USER_SCHEMA("n.nspname")
		" AND n.oid IS DISTINCT FROM (SELECT extnamespace FROM pg_extension WHERE extname = 'pg_raft')"
		/* a column's sequence (serial, identity) goes with its table */
		" AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
		"  AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i'))"
		" ORDER BY c.relkind = 'S'",
		"SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', nspname) FROM pg_namespace"
		" WHERE" USER_SCHEMA("nspname")
		" AND oid IS DISTINCT FROM (SELECT extnamespace FROM pg_extension WHERE extname = 'pg_raft')",
	};
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext,
											  "pg_raft emptying",
											  ALLOCSET_DEFAULT_SIZES);
	size_t		i;

	for (i = 0; i < lengthof(lists); i++)
	{
		List	   *commands = NIL;
		ListCell   *lc;
		uint64		j;

		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		SPI_connect();
		if (SPI_execute(lists[i], true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not list objects to drop: %s", lists[i]);
		for (j = 0; j < SPI_processed; j++)
			commands = lappend(commands,
							   MemoryContextStrdup(cxt, SPI_getvalue(SPI_tuptable->vals[j],
																	SPI_tuptable->tupdesc, 1)));
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		foreach(lc, commands)
			run_in_transaction((const char *) lfirst(lc));
	}
	run_in_transaction("CREATE SCHEMA public AUTHORIZATION pg_database_owner;"
					   " GRANT USAGE ON SCHEMA public TO PUBLIC;"
					   " COMMENT ON SCHEMA public IS 'standard public schema'");
	MemoryContextDelete(cxt);
}

/*
 * Becomes the member the request names, and copies the leader's data
 * before the apply worker may start (once adopted, it would at once).
 */
static void
adopt_and_copy(RaftRequest *req, const char *leader_conninfo)
{
	set_copying(true);
	PG_ENSURE_ERROR_CLEANUP(end_copying, (Datum) 0);
	{
		RaftRunRequest(req, 30 * 1000);
		RaftCopyData(leader_conninfo);
	}
	PG_END_ENSURE_ERROR_CLEANUP(end_copying, (Datum) 0);
}

/*
 * raft.join_cluster(node_name, conninfo, peer_conninfo, copy_data): run on
 * a new instance to make it a member of the cluster that peer_conninfo
 * reaches.
 */
Datum
pg_raft_join_cluster(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *peer_conninfo = text_to_cstring(PG_GETARG_TEXT_PP(2));
	bool		copy_data = PG_GETARG_BOOL(3);
	char	   *dbname = get_database_name(MyDatabaseId);
	PGconn	   *leader;
	char	   *leader_conninfo;
	PGresult   *res;
	RaftRequest *req;
	const char *params[2];

	RaftCheckConninfo(peer_conninfo, "peer conninfo");
	RaftCheckNewMember(name, conninfo);
	RaftCheckReplicationSettings();
	if (dbname == NULL || strcmp(dbname, raft_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("raft.join_cluster must run in the replicated database \"%s\"",
						raft_database),
				 errhint("Connect to database \"%s\" (the setting raft.database).",
						 raft_database)));
	if (copy_data)
		require_empty_database();

	leader = connect_to_leader(peer_conninfo, &leader_conninfo);
	params[0] = name;
	params[1] = conninfo;
	res = remote_query(leader,
					   "SELECT cluster_id, node_id, leader_id, leader_name FROM raft.add_node($1, $2)",
					   2, params, "add this node to the cluster");

	req = palloc0(sizeof(RaftRequest));
	req->type = RAFT_REQUEST_ADOPT;
	req->cluster_id = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	req->node_id = (raft_id_t) strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	strlcpy(req->name, name, RAFT_NAME_BYTES);
	strlcpy(req->conninfo, conninfo, RAFT_CONNINFO_BYTES);
	req->leader_id = (raft_id_t) strtoul(PQgetvalue(res, 0, 2), NULL, 10);
	strlcpy(req->leader_name, PQgetvalue(res, 0, 3), RAFT_NAME_BYTES);
	strlcpy(req->leader_conninfo, leader_conninfo, RAFT_CONNINFO_BYTES);
	PQclear(res);
	PQfinish(leader);

	if (copy_data)
		adopt_and_copy(req, leader_conninfo);
	else
		RaftRunRequest(req, 30 * 1000);
	RaftConfigureSynchronousCommit();
	wait_for_promotion();
	PG_RETURN_VOID();
}
