/*-------------------------------------------------------------------------
 *
 * sql.h
 *	  Helpers shared by the SQL-callable functions (sql.c, join.c).
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
extern void RaftCheckReplicationSettings(void);
extern void RaftConfigureSynchronousCommit(void);

#endif							/* PG_RAFT_SQL_H */
