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
 *	  _PG_init also registers the raft worker (worker.c), the apply worker
 *	  (apply.c) and, when raft.http_listen is set, the health API's worker
 *	  (http.c), and asks for the shared memory described in pg_raft.h.
 *
 * IDENTIFICATION
 *	  src/pg_raft.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "pg_raft.h"

#ifndef PG_RAFT_VERSION
#error "PG_RAFT_VERSION must be defined (the Makefile takes it from pg_raft.control)"
#endif

PG_MODULE_MAGIC;

void		_PG_init(void);

/* settings */
char	   *raft_database = NULL;
char	   *raft_local_databases = NULL;
int			raft_election_timeout_ms = 1000;
int			raft_heartbeat_interval_ms = 100;
int			raft_log_keep_size_mb = 1024;
char	   *raft_http_listen = NULL;
char	   *raft_http_user = NULL;
char	   *raft_http_password = NULL;
char	   *raft_http_ssl_cert_file = NULL;
char	   *raft_http_ssl_key_file = NULL;
bool		raft_stream_large_transactions = true;
int			raft_decoding = RAFT_DECODING_AUTO;

static const struct config_enum_entry raft_decoding_options[] = {
	{"auto", RAFT_DECODING_AUTO, false},
	{"walsender", RAFT_DECODING_WALSENDER, false},
	{"worker", RAFT_DECODING_WORKER, false},
	{NULL, 0, false}
};

RaftShared *RaftShmem = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

PG_FUNCTION_INFO_V1(pg_raft_version);

static void raft_shmem_request(void);
static void raft_shmem_startup(void);
static void register_worker(const char *name, const char *function, int flags);
static bool check_http_listen(char **newval, void **extra, GucSource source);

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

	DefineCustomStringVariable("raft.database",
							   "Database in which the raft workers apply replicated changes.",
							   NULL,
							   &raft_database,
							   "postgres",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("raft.local_databases",
							   "Databases besides raft.database that take writes on a member, which stay on it.",
							   "A comma-separated list of database names.  Their changes are not replicated; "
							   "on a member, every other database takes no writes.",
							   &raft_local_databases,
							   "",
							   PGC_SIGHUP,
							   GUC_LIST_INPUT,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("raft.election_timeout",
							"Time without word from a leader after which a follower starts an election.",
							"Followers wait a random time between this value and twice it. "
							"A leader that has not heard from a majority for this long steps down.",
							&raft_election_timeout_ms,
							1000, 50, 60 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("raft.heartbeat_interval",
							"Time between the leader's heartbeats; the Raft clock ticks ten times per interval.",
							"Must be less than half of raft.election_timeout.",
							&raft_heartbeat_interval_ms,
							100, 10, 10 * 1000,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("raft.log_keep_size",
							"Compacted raft log kept on disk for members that lag.",
							"The leader sends a member that was away the entries it lacks from there; "
							"one that lacks more copies every table from the leader instead. "
							"0 keeps none.",
							&raft_log_keep_size_mb,
							1024, 0, INT_MAX,
							PGC_SIGHUP,
							GUC_UNIT_MB,
							NULL, NULL, NULL);
	DefineCustomStringVariable("raft.http_listen",
							   "Address and port (address:port) on which the health API answers HTTP checks.",
							   "Empty: no health API.  For example 127.0.0.1:8008, [::1]:8008, or *:8008 for every IPv4 address.",
							   &raft_http_listen,
							   "",
							   PGC_POSTMASTER,
							   0,
							   check_http_listen, NULL, NULL);
	DefineCustomStringVariable("raft.http_user",
							   "User name that /status and /metrics of the health API ask for (HTTP basic authentication).",
							   "Empty: they answer anyone.  The health checks never ask.",
							   &raft_http_user,
							   "",
							   PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("raft.http_password",
							   "Password of raft.http_user for /status and /metrics of the health API.",
							   NULL,
							   &raft_http_password,
							   "",
							   PGC_SIGHUP,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("raft.http_ssl_cert_file",
							   "Certificate (PEM) with which the health API speaks HTTPS.",
							   "Empty: plain HTTP.  Set raft.http_ssl_key_file too.  Relative to the data directory.",
							   &raft_http_ssl_cert_file,
							   "",
							   PGC_POSTMASTER,
							   0,
							   NULL, NULL, NULL);
	DefineCustomStringVariable("raft.http_ssl_key_file",
							   "Private key (PEM) of raft.http_ssl_cert_file.",
							   NULL,
							   &raft_http_ssl_key_file,
							   "",
							   PGC_POSTMASTER,
							   GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("raft.stream_large_transactions",
							 "Sends a transaction that outgrows logical_decoding_work_mem through the log while it runs.",
							 "Its COMMIT then waits for the tail only.  Takes effect when the leader next starts capturing.",
							 &raft_stream_large_transactions,
							 true,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	DefineCustomEnumVariable("raft.decoding",
							 "Where the leader decodes its transactions: walsender, worker or auto.",
							 "A walsender costs a small commit least; a decoding worker of pg_raft's own decodes a large transaction four times faster.  auto decodes in a walsender and hands over to the decoding worker while the walsender falls behind.",
							 &raft_decoding,
							 RAFT_DECODING_AUTO,
							 raft_decoding_options,
							 PGC_SIGHUP,
							 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("raft");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = raft_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = raft_shmem_startup;

	/* the raft worker (worker.c), the apply worker (apply.c) in raft.database */
	register_worker("pg_raft worker", "RaftWorkerMain", BGWORKER_SHMEM_ACCESS);
	register_worker("pg_raft apply worker", "RaftApplyWorkerMain",
					BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION);
	/* the health API (http.c), when asked for */
	if (raft_http_listen[0] != '\0')
		register_worker("pg_raft http", "RaftHttpMain", BGWORKER_SHMEM_ACCESS);
	/* the fence's hook runs first: a fenced node refuses before shipping */
	RaftDdlInit();
	RaftFenceInit();
	RaftSequencesInit();
}

Size
RaftShmemSize(void)
{
	return MAXALIGN(sizeof(RaftShared));
}

/*
 * raft_shmem_request
 *		Asks for the shared memory and the lock that RaftShared needs.
 */
static void
raft_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(RaftShmemSize());
	RequestNamedLWLockTranche("pg_raft", 1);
}

/*
 * raft_shmem_startup
 *		Attaches to RaftShared, initialising it in the postmaster.
 */
static void
raft_shmem_startup(void)
{
	bool		found;
	struct stat st;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	RaftShmem = ShmemInitStruct("pg_raft", RaftShmemSize(), &found);
	if (!found)
	{
		memset(RaftShmem, 0, offsetof(RaftShared, inbox_data));
		RaftShmem->role_epoch = 1;
		pg_atomic_init_u64(&RaftShmem->sequence_generation, 0);
		pg_atomic_init_u32(&RaftShmem->apply_origin, 0);	/* InvalidRepOriginId */
		pg_atomic_init_u64(&RaftShmem->commits_until, 0);
		RaftCountersInit(&RaftShmem->counters);
		RaftRingInit(&RaftShmem->inbox, RaftShmem->inbox_data, RAFT_INBOX_BYTES);
		/* the postmaster runs in the data directory */
		RaftShmem->member = stat(RAFT_IDENTITY_PATH, &st) == 0;
		RaftRingInit(&RaftShmem->apply.ring, RaftShmem->apply_data,
					 RAFT_APPLY_QUEUE_BYTES);
		RaftRingInit(&RaftShmem->capture.ring, RaftShmem->capture_data,
					 RAFT_CAPTURE_QUEUE_BYTES);
		pg_atomic_init_u64(&RaftShmem->capture.decoded, InvalidXLogRecPtr);
		RaftShmem->lock = &(GetNamedLWLockTranche("pg_raft"))->lock;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * register_worker
 *		Registers one of pg_raft's background workers, started once the
 *		server accepts connections.
 *
 * The postmaster restarts it a second after it exits with an error, so a
 * worker that stops on a transient problem comes back by itself.
 */
static void
register_worker(const char *name, const char *function, int flags)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = flags;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 1;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_raft");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(worker.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(worker.bgw_type, BGW_MAXLEN, "%s", name);
	RegisterBackgroundWorker(&worker);
}

/* raft.http_listen: empty, or an address:port the health API can bind. */
static bool
check_http_listen(char **newval, void **extra, GucSource source)
{
	struct sockaddr_storage addr;
	socklen_t	addr_len;
	char		problem[256];

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (RaftHttpParseListen(*newval, &addr, &addr_len, problem, sizeof(problem)))
		return true;
	GUC_check_errdetail("%s", problem);
	return false;
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
