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
 *	  Copying the data arrives with data replication.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "sql.h"

PG_FUNCTION_INFO_V1(pg_raft_join_cluster);

/* How long a learner may take to catch up before join_cluster gives up. */
#define CATCH_UP_TIMEOUT_MS (120 * 1000)

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

/*
 * raft.join_cluster(node_name, conninfo, peer_conninfo): run on a new
 * instance to make it a member of the cluster that peer_conninfo reaches.
 */
Datum
pg_raft_join_cluster(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *conninfo = text_to_cstring(PG_GETARG_TEXT_PP(1));
	char	   *peer_conninfo = text_to_cstring(PG_GETARG_TEXT_PP(2));
	PGconn	   *leader;
	char	   *leader_conninfo;
	PGresult   *res;
	RaftRequest *req;
	const char *params[2];

	RaftCheckConninfo(peer_conninfo, "peer conninfo");
	RaftCheckNewMember(name, conninfo);
	RaftCheckReplicationSettings();

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

	RaftRunRequest(req, 30 * 1000);
	RaftConfigureSynchronousCommit();
	wait_for_promotion();
	PG_RETURN_VOID();
}
