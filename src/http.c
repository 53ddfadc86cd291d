/*-------------------------------------------------------------------------
 *
 * http.c
 *	  The health API: HTTP checks for load balancers and orchestrators.
 *
 * NOTES
 *	  When raft.http_listen is set (address:port), a background worker,
 *	  "pg_raft http", serves on that address:
 *
 *		GET /leader (/primary, /read-write)	200 on the leader while it takes
 *											writes, 503 otherwise
 *		GET /replica (/read-only)			200 on a follower that applies
 *											normally; ?lag=<bound> within it
 *		GET /health							200 while the raft worker runs
 *		GET /status							JSON: what raft.status and raft.nodes
 *											show
 *		GET /metrics						Prometheus's text format (metrics.c)
 *
 *	  /status and /metrics ask for HTTP basic authentication when
 *	  raft.http_user is set; with raft.http_ssl_cert_file and
 *	  raft.http_ssl_key_file the whole API speaks HTTPS.  The checks stay
 *	  open: load balancers probe them often and learn nothing secret.
 *
 *	  HAProxy, Kubernetes probes and the like point their checks there.
 *	  /leader asks the fence itself (RaftFenceTakesWrites), so the check
 *	  never sends a write where the fence would refuse it, and stops
 *	  sending to a leader whose lease ran out.
 *
 *	  GNU libmicrohttpd does the HTTP, in its external event loop mode
 *	  with epoll: it creates no thread, the worker waits on its epoll
 *	  descriptor and its latch (in a wait set made once; with no client,
 *	  it sleeps until one comes), and the answers run in the worker's own
 *	  thread, where they may read shared memory under the LWLock.  The
 *	  library does not block on a socket; a client that sends slowly is
 *	  closed after HTTP_CONNECTION_TIMEOUT_S, and at most
 *	  HTTP_CONNECTION_LIMIT are served at once.  It answers malformed
 *	  requests with 400 itself.
 *
 * IDENTIFICATION
 *	  src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "common/string.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_raft.h"
#include "sql.h"

#define HTTP_CONNECTION_LIMIT 64
#define HTTP_CONNECTION_TIMEOUT_S 5

/*
 * Parses address:port ("127.0.0.1:8008", "[::1]:8008", "*:8008" for every
 * IPv4 address) into addr.  On failure returns false with a message in
 * problem.
 */
bool
RaftHttpParseListen(const char *value, struct sockaddr_storage *addr,
					socklen_t *addr_len, char *problem, size_t problem_len)
{
	const char *colon = strrchr(value, ':');
	char		host[256];
	size_t		host_len;
	char	   *end;
	long		port;

	memset(addr, 0, sizeof(*addr));
	if (colon == NULL)
	{
		snprintf(problem, problem_len, "It must be address:port, such as 127.0.0.1:8008.");
		return false;
	}
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < 1 || port > 65535)
	{
		snprintf(problem, problem_len, "The port must be a number from 1 to 65535.");
		return false;
	}
	host_len = colon - value;
	if (host_len >= 2 && value[0] == '[' && value[host_len - 1] == ']')
	{
		value++;
		host_len -= 2;
	}
	if (host_len >= sizeof(host))
	{
		snprintf(problem, problem_len, "The address is too long.");
		return false;
	}
	memcpy(host, value, host_len);
	host[host_len] = '\0';

	if (strcmp(host, "*") == 0 || strcmp(host, "0.0.0.0") == 0)
	{
		struct sockaddr_in *in = (struct sockaddr_in *) addr;

		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		in->sin_port = htons((uint16) port);
		*addr_len = sizeof(*in);
		return true;
	}
	else
	{
		struct sockaddr_in *in = (struct sockaddr_in *) addr;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) addr;

		if (inet_pton(AF_INET, host, &in->sin_addr) == 1)
		{
			in->sin_family = AF_INET;
			in->sin_port = htons((uint16) port);
			*addr_len = sizeof(*in);
			return true;
		}
		if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1)
		{
			in6->sin6_family = AF_INET6;
			in6->sin6_port = htons((uint16) port);
			*addr_len = sizeof(*in6);
			return true;
		}
	}
	snprintf(problem, problem_len,
			 "\"%s\" is not an IP address; use a numeric IPv4 or IPv6 address, or * for all IPv4 addresses.",
			 host);
	return false;
}

/*
 * Parses a replica's lag bound: a bare number of entries ("100"), or a
 * duration with a unit ("500ms", "2s", "1min") as PostgreSQL settings
 * take them.  Returns false when it is neither.
 */
static bool
parse_lag_bound(const char *text, int64 *entries, int64 *lag_us)
{
	char	   *end;
	double		number;
	const char *hint;

	*entries = -1;
	*lag_us = -1;
	errno = 0;
	number = strtod(text, &end);
	if (end == text || errno != 0 || number < 0 || isnan(number))
		return false;
	if (*end == '\0')
	{
		if (number != floor(number) || number > (double) PG_INT64_MAX)
			return false;
		*entries = (int64) number;
		return true;
	}
	if (!parse_real(text, &number, GUC_UNIT_MS, &hint) || number < 0)
		return false;
	*lag_us = (int64) (number * 1000.0);
	return true;
}

/* Queues an answer of status with body, of content_type. */
static enum MHD_Result
answer_typed(struct MHD_Connection *connection, unsigned int status,
			 const char *content_type, const char *body, size_t len)
{
	struct MHD_Response *response;
	enum MHD_Result ret;

	response = MHD_create_response_from_buffer(len, (void *) body,
											   MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
	MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	ret = MHD_queue_response(connection, status, response);
	MHD_destroy_response(response);
	return ret;
}

/* Queues an answer of status with body as text. */
static enum MHD_Result
answer(struct MHD_Connection *connection, unsigned int status, const char *body)
{
	return answer_typed(connection, status, "text/plain; charset=utf-8",
						body, strlen(body));
}

/* GET /leader: whether a write sent here now would be taken. */
static enum MHD_Result
answer_leader(struct MHD_Connection *connection)
{
	char		reason[RAFT_ERROR_BYTES];
	char		body[RAFT_ERROR_BYTES + 64];

	if (RaftFenceTakesWrites(reason, sizeof(reason)))
		return answer(connection, MHD_HTTP_OK, "leader: takes writes\n");
	snprintf(body, sizeof(body), "not the writable leader: %s\n", reason);
	return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

/*
 * GET /replica[?lag=bound]: a follower that hears from its leader and
 * applies normally, and, with a bound, whose data is within it: entries
 * committed and not yet applied here, or how long the oldest of them has
 * waited since it arrived.
 */
static enum MHD_Result
answer_replica(struct MHD_Connection *connection)
{
	const char *lag = MHD_lookup_connection_value(connection, MHD_GET_ARGUMENT_KIND, "lag");
	int64		max_entries = -1;
	int64		max_lag_us = -1;
	RaftMemberState ms;
	int64		behind;
	char		body[RAFT_ERROR_BYTES + 128];

	if (lag != NULL && !parse_lag_bound(lag, &max_entries, &max_lag_us))
		return answer(connection, MHD_HTTP_BAD_REQUEST,
					  "lag must be a number of entries (100) or a duration with a unit (500ms, 2s, 1min)\n");
	RaftReadMemberState(&ms, NULL);
	if (!ms.member || !ms.configured || !ms.worker_up)
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
					  "not a replica: this instance is not a running member of a raft cluster\n");
	if (ms.role == RAFT_LEADER)
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "not a replica: this member leads\n");
	if (!ms.leader_heard)
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
					  "not a replica: no leader heard from within the election timeout, so how far behind it is is not known\n");
	if (ms.copying)
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
					  "not a replica: its data is being copied from the leader\n");
	if (ms.apply_error[0] != '\0')
	{
		snprintf(body, sizeof(body), "not a replica: applying fails: %s\n", ms.apply_error);
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE, body);
	}
	behind = ms.commit_index > ms.applied_index ? (int64) (ms.commit_index - ms.applied_index) : 0;
	if (max_entries >= 0 && behind > max_entries)
	{
		snprintf(body, sizeof(body), "lagging: " INT64_FORMAT " entries not applied, over " INT64_FORMAT "\n",
				 behind, max_entries);
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE, body);
	}
	if (max_lag_us >= 0 && (ms.replay_lag_us < 0 || ms.replay_lag_us > max_lag_us))
	{
		snprintf(body, sizeof(body), "lagging: replay lag %.1f ms, over %.1f ms\n",
				 ms.replay_lag_us / 1000.0, max_lag_us / 1000.0);
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE, body);
	}
	snprintf(body, sizeof(body), "replica: " INT64_FORMAT " entries behind, replay lag %.1f ms\n",
			 behind, Max(ms.replay_lag_us, 0) / 1000.0);
	return answer(connection, MHD_HTTP_OK, body);
}

/* GET /health: this PostgreSQL runs (it serves this) and so does its raft worker. */
static enum MHD_Result
answer_health(struct MHD_Connection *connection)
{
	RaftMemberState ms;

	RaftReadMemberState(&ms, NULL);
	if (!ms.worker_up)
		return answer(connection, MHD_HTTP_SERVICE_UNAVAILABLE,
					  "unhealthy: the raft worker is not running\n");
	return answer(connection, MHD_HTTP_OK, "healthy\n");
}

/* Compares without returning early, so that timing tells nothing of b. */
static bool
same_secret(const char *a, const char *b)
{
	size_t		a_len = strlen(a);
	size_t		b_len = strlen(b);
	unsigned char diff = a_len != b_len;
	size_t		i;

	for (i = 0; i < a_len; i++)
		diff |= (unsigned char) a[i] ^ (unsigned char) b[i % Max(b_len, 1)];
	return diff == 0;
}

/*
 * Whether the request may see /status and /metrics: always when
 * raft.http_user is empty, else with that user and raft.http_password
 * (a user with an empty password never gets in).
 */
static bool
authorized(struct MHD_Connection *connection)
{
	char	   *password = NULL;
	char	   *user;
	bool		ok;

	if (raft_http_user[0] == '\0')
		return true;
	user = MHD_basic_auth_get_username_password(connection, &password);
	ok = user != NULL && password != NULL && raft_http_password[0] != '\0' &&
		same_secret(user, raft_http_user) & same_secret(password, raft_http_password);
	MHD_free(user);
	MHD_free(password);
	return ok;
}

static enum MHD_Result
refuse_unauthorized(struct MHD_Connection *connection)
{
	static const char body[] = "authentication required\n";
	struct MHD_Response *response;
	enum MHD_Result ret;

	response = MHD_create_response_from_buffer(strlen(body), (void *) body,
											   MHD_RESPMEM_PERSISTENT);
	if (response == NULL)
		return MHD_NO;
	MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
							"text/plain; charset=utf-8");
	ret = MHD_queue_basic_auth_fail_response(connection, "pg_raft", response);
	MHD_destroy_response(response);
	return ret;
}

static void
json_key(StringInfo out, const char *key)
{
	escape_json(out, key);
	appendStringInfoChar(out, ':');
}

static void
json_text(StringInfo out, const char *key, const char *value)
{
	json_key(out, key);
	if (value == NULL)
		appendStringInfoString(out, "null");
	else
		escape_json(out, value);
	appendStringInfoChar(out, ',');
}

static void
json_uint(StringInfo out, const char *key, uint64 value)
{
	json_key(out, key);
	appendStringInfo(out, UINT64_FORMAT ",", value);
}

static void
json_bool(StringInfo out, const char *key, bool value)
{
	json_key(out, key);
	appendStringInfoString(out, value ? "true," : "false,");
}

/* seconds, or null when unknown (negative) */
static void
json_seconds(StringInfo out, const char *key, int64 us)
{
	json_key(out, key);
	if (us < 0)
		appendStringInfoString(out, "null,");
	else
		appendStringInfo(out, "%.6f,", us / 1e6);
}

/* Drops the comma after the last member of an object or array. */
static void
json_close(StringInfo out, char closing)
{
	if (out->len > 0 && out->data[out->len - 1] == ',')
		out->data[--out->len] = '\0';
	appendStringInfoChar(out, closing);
}

/*
 * GET /status: this member's view as JSON, with the fields of raft.status
 * and raft.nodes (conninfo strings left out: they may hold passwords).
 */
static enum MHD_Result
answer_status(struct MHD_Connection *connection)
{
	RaftView   *v = palloc(sizeof(RaftView));
	RaftMemberState ms;
	StringInfoData out;
	char		reason[RAFT_ERROR_BYTES];
	bool		takes_writes;
	TimestampTz now = GetCurrentTimestamp();
	uint32		i;

	RaftReadMemberState(&ms, v);
	takes_writes = RaftFenceTakesWrites(reason, sizeof(reason));

	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	json_bool(&out, "member", ms.member && ms.configured);
	json_bool(&out, "worker_running", ms.worker_up);
	if (v->configured)
	{
		json_text(&out, "cluster_id", psprintf("%016llx", (unsigned long long) v->cluster_id));
		json_text(&out, "node_name", v->node_name);
		json_uint(&out, "node_id", v->node_id);
		json_text(&out, "role", RaftRoleName(v));
		json_uint(&out, "term", v->term);
		json_text(&out, "leader_name", v->leader_name[0] != '\0' ? v->leader_name : NULL);
		json_bool(&out, "writable", takes_writes);
		json_text(&out, "not_writable_reason", takes_writes ? NULL : reason);
		json_uint(&out, "commit_index", v->commit_index);
		json_uint(&out, "applied_index", v->applied_index);
		json_uint(&out, "first_index", v->first_index);
		json_uint(&out, "last_index", v->last_index);
		json_uint(&out, "log_bytes", v->log_bytes);
		json_uint(&out, "log_archive_bytes", v->archive_bytes);
		json_seconds(&out, "replay_lag_seconds", ms.replay_lag_us);
		json_bool(&out, "copying", ms.copying);
		json_text(&out, "apply_error", ms.apply_error[0] != '\0' ? ms.apply_error : NULL);
		json_uint(&out, "diverged_transactions", ms.diverged_transactions);
		json_key(&out, "members");
		appendStringInfoChar(&out, '[');
		for (i = 0; i < v->n_members; i++)
		{
			const RaftMemberInfo *m = &v->members[i];
			bool		measured = v->role == RAFT_LEADER;

			appendStringInfoChar(&out, '{');
			json_text(&out, "name", m->name);
			json_uint(&out, "id", m->id);
			json_bool(&out, "voting", m->voter);
			json_bool(&out, "is_leader", m->is_leader);
			json_bool(&out, "reachable", m->reachable);
			json_seconds(&out, "last_contact_seconds_ago",
						 m->last_contact != 0 ? Max(now - m->last_contact, 0) : -1);
			/* what only the leader measures is null elsewhere */
			if (measured || m->id == v->node_id)
			{
				json_uint(&out, "match_index", m->match_index);
				json_uint(&out, "applied_index", m->applied_index);
			}
			else
			{
				json_text(&out, "match_index", NULL);
				json_text(&out, "applied_index", NULL);
			}
			if (measured)
			{
				json_uint(&out, "lag_entries", m->lag_entries);
				json_uint(&out, "lag_bytes", m->lag_bytes);
				json_seconds(&out, "replay_lag_seconds", m->replay_lag_us);
			}
			else
			{
				json_text(&out, "lag_entries", NULL);
				json_text(&out, "lag_bytes", NULL);
				json_text(&out, "replay_lag_seconds", NULL);
			}
			json_close(&out, '}');
			appendStringInfoChar(&out, ',');
		}
		json_close(&out, ']');
		appendStringInfoChar(&out, ',');
	}
	json_close(&out, '}');
	appendStringInfoChar(&out, '\n');
	return answer_typed(connection, MHD_HTTP_OK, "application/json", out.data, out.len);
}

/* GET /metrics: Prometheus's text format, version 0.0.4. */
static enum MHD_Result
answer_metrics(struct MHD_Connection *connection)
{
	RaftMetricSample *samples;
	int			n = RaftMetricsCollect(&samples);
	StringInfoData out;

	initStringInfo(&out);
	RaftMetricsRender(&out, samples, n);
	return answer_typed(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
						out.data, out.len);
}

/* libmicrohttpd's request handler: one call per request, no body taken. */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *connection, const char *url,
			   const char *method, const char *version, const char *upload_data,
			   size_t *upload_data_size, void **request_state)
{
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
		strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return answer(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD are served\n");
	if (strcmp(url, "/leader") == 0 || strcmp(url, "/primary") == 0 ||
		strcmp(url, "/read-write") == 0)
		return answer_leader(connection);
	if (strcmp(url, "/replica") == 0 || strcmp(url, "/read-only") == 0)
		return answer_replica(connection);
	if (strcmp(url, "/health") == 0)
		return answer_health(connection);
	if (strcmp(url, "/status") == 0 || strcmp(url, "/metrics") == 0)
	{
		if (!authorized(connection))
			return refuse_unauthorized(connection);
		return strcmp(url, "/status") == 0 ?
			answer_status(connection) : answer_metrics(connection);
	}
	return answer(connection, MHD_HTTP_NOT_FOUND,
				  "not found: the paths are /leader, /primary, /read-write, /replica, /read-only, /health, /status and /metrics\n");
}

/* libmicrohttpd's messages go to the server log. */
static void
log_library_message(void *cls, const char *format, va_list ap)
{
	char		message[1024];

	vsnprintf(message, sizeof(message), format, ap);
	(void) pg_strip_crlf(message);
	ereport(LOG,
			(errmsg("pg_raft http: %s", message)));
}

/* The whole of a certificate or key file, for libmicrohttpd's TLS. */
static char *
read_pem_file(const char *path, const char *setting)
{
	FILE	   *file = AllocateFile(path, "r");
	StringInfoData text;
	char		chunk[4096];
	size_t		n;

	if (file == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\" named by \"%s\": %m", path, setting)));
	initStringInfo(&text);
	while ((n = fread(chunk, 1, sizeof(chunk), file)) > 0)
		appendBinaryStringInfo(&text, chunk, n);
	if (ferror(file))
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path)));
	FreeFile(file);
	return text.data;
}

/*
 * Starts libmicrohttpd on addr: with TLS when raft.http_ssl_cert_file and
 * raft.http_ssl_key_file are set.
 */
static struct MHD_Daemon *
start_daemon(struct sockaddr_storage *addr)
{
	unsigned int flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
		(addr->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
	bool		tls = raft_http_ssl_cert_file[0] != '\0' || raft_http_ssl_key_file[0] != '\0';
	char	   *cert = NULL;
	char	   *key = NULL;

	if (tls)
	{
		if (raft_http_ssl_cert_file[0] == '\0' || raft_http_ssl_key_file[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("raft.http_ssl_cert_file and raft.http_ssl_key_file must be set together")));
		if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("this build of libmicrohttpd does not support TLS")));
		cert = read_pem_file(raft_http_ssl_cert_file, "raft.http_ssl_cert_file");
		key = read_pem_file(raft_http_ssl_key_file, "raft.http_ssl_key_file");
		flags |= MHD_USE_TLS;
	}
	return MHD_start_daemon(flags, 0, NULL, NULL,
							handle_request, NULL,
							MHD_OPTION_SOCK_ADDR, (struct sockaddr *) addr,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) HTTP_CONNECTION_LIMIT,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) HTTP_CONNECTION_TIMEOUT_S,
							MHD_OPTION_EXTERNAL_LOGGER, log_library_message, NULL,
							/* without TLS, the list ends here */
							tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
							MHD_OPTION_HTTPS_MEM_KEY, key,
							MHD_OPTION_END);
}

void
RaftHttpMain(Datum main_arg)
{
	struct sockaddr_storage addr;
	socklen_t	addr_len;
	char		problem[256];
	struct MHD_Daemon *daemon;
	const union MHD_DaemonInfo *info;
	WaitEventSet *wait_set;
	MemoryContext request_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	if (!RaftHttpParseListen(raft_http_listen, &addr, &addr_len, problem, sizeof(problem)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for parameter \"raft.http_listen\": \"%s\"", raft_http_listen),
				 errdetail_internal("%s", problem)));
	daemon = start_daemon(&addr);
	if (daemon == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("pg_raft http could not listen on \"%s\"", raft_http_listen),
				 raft_http_ssl_cert_file[0] != '\0' ?
				 errhint("Check that raft.http_listen is an address of this host, that no other program uses the port, and that raft.http_ssl_cert_file and raft.http_ssl_key_file hold a PEM certificate and its key.") :
				 errhint("Check that raft.http_listen is an address of this host and that no other program uses the port.")));
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (info == NULL)
		ereport(ERROR,
				(errmsg("pg_raft http could not set up its event loop")));
	/* made once: the latch, the postmaster, and the library's epoll */
	/* what the answers allocate, freed after each round of the library */
	request_cxt = AllocSetContextCreate(TopMemoryContext, "pg_raft http requests",
										ALLOCSET_DEFAULT_SIZES);
	wait_set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wait_set, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
	ereport(LOG,
			(errmsg("pg_raft http listens on %s", raft_http_listen)));

	while (!ShutdownRequestPending)
	{
		MHD_UNSIGNED_LONG_LONG library_ms;
		long		timeout_ms = -1;	/* no connection with a timeout */
		WaitEvent	event;

		ResetLatch(MyLatch);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		MemoryContextSwitchTo(request_cxt);
		MHD_run(daemon);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(request_cxt);
		if (MHD_get_timeout(daemon, &library_ms) == MHD_YES)
			timeout_ms = (long) Min(library_ms, (MHD_UNSIGNED_LONG_LONG) LONG_MAX);
		(void) WaitEventSetWait(wait_set, timeout_ms, &event, 1, PG_WAIT_EXTENSION);
	}
	FreeWaitEventSet(wait_set);
	MHD_stop_daemon(daemon);

	/* as the raft worker: 1, so that the postmaster starts it again */
	proc_exit(1);
}
