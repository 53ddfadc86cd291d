/*-------------------------------------------------------------------------
 *
 * pg_raft.c
 *	  Entry point of the pg_raft library: load-time checks and set-up.
 *
 * pg_raft turns 3 to 7 PostgreSQL instances into one highly available
 * database: background workers run Raft among the instances, and the
 * leader's committed transactions travel through the replicated Raft log to
 * every member.  The consensus core lives in src/raft/ and has no PostgreSQL
 * dependency; the files of src/ connect it to the server, one file per role.
 *
 * NOTES
 *	  _PG_init runs in the postmaster while it processes
 *	  shared_preload_libraries, and is inherited by every child process.  It
 *	  also runs in a backend that loads the library any other way (LOAD,
 *	  CREATE EXTENSION, a call to one of our functions); there it refuses,
 *	  because the workers and shared memory that the extension needs can
 *	  only be set up at postmaster start.  The ERROR aborts the command that
 *	  loaded the library and leaves the backend usable; the library is not
 *	  recorded as loaded, so every later attempt fails the same way.
 *
 *	  Settings use the prefix "raft."; it is reserved, so a misspelt
 *	  setting is reported instead of silently kept as a placeholder.
 *
 * IDENTIFICATION
 *	  src/pg_raft.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#ifndef PG_RAFT_VERSION
#error "PG_RAFT_VERSION must be defined (the Makefile takes it from pg_raft.control)"
#endif

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(pg_raft_version);

/*
 * _PG_init
 *		Checks that the library is preloaded and reserves the "raft." prefix.
 *
 * Everything pg_raft does needs the postmaster's cooperation (background
 * workers, shared memory), so loading it into a single backend is an
 * operator error: say which setting to change.
 */
void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("pg_raft must be loaded via \"shared_preload_libraries\""),
				 errhint("Add pg_raft to the \"shared_preload_libraries\" setting in postgresql.conf and restart the server.")));

	MarkGUCPrefixReserved("raft");
}

/*
 * pg_raft_version
 *		Returns the version of the loaded library, for raft.version().
 *
 * It may differ from pg_extension.extversion after a package upgrade, until
 * ALTER EXTENSION pg_raft UPDATE is run.
 */
Datum
pg_raft_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(PG_RAFT_VERSION));
}
