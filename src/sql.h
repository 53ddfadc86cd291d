/*-------------------------------------------------------------------------
 *
 * sql.h
 *	  Helpers shared by the SQL-callable functions (sql.c, join.c), and
 *	  the copy of the leader's data that the apply worker also runs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_SQL_H
#define PG_RAFT_SQL_H

#include "libpq-fe.h"

#include "pg_raft.h"

extern void RaftCheckNodeName(const char *name);
extern void RaftCheckConninfo(const char *conninfo, const char *what);
extern void RaftCheckNewMember(const char *name, const char *conninfo);
extern PGconn *RaftConnect(const char *conninfo, const char *what);
extern PGconn *RaftConnectReplication(const char *conninfo, const char *what);
extern void RaftGetView(RaftView *view);
extern const char *RaftRoleName(const RaftView *view);
extern void RaftCheckReplicationSettings(void);
extern void RaftConfigureSynchronousCommit(void);
extern void RaftSetSynchronousStandbyNames(const char *value);

/*
 * SQL condition: the schema named by the column nspcol holds user objects
 * (not the catalogue, information_schema, TOAST or temporary schemas).
 * The emptiness check, the emptying and a whole repair must agree on it.
 */
#define USER_SCHEMA(nspcol) \
	" " nspcol " NOT IN ('pg_catalog', 'information_schema')" \
	" AND " nspcol " !~ '^pg_(toast|temp)'"

/* join.c: copying the leader's data, for a join, a repair or a re-synchronisation */
extern void RaftCopyData(const char *member_conninfo);
extern void RaftEmptyDatabase(void);
extern char *RaftConninfoForDatabase(const char *conninfo);
extern char *RaftLeaderSnapshot(PGconn *conn, PGconn *repl, RaftCopyStart *start,
								uint64 *term, uint64 *confirmed_index);

#endif							/* PG_RAFT_SQL_H */
