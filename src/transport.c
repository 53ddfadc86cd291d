/*-------------------------------------------------------------------------
 *
 * transport.c
 *	  Carries Raft messages between instances over libpq.
 *
 * NOTES
 *	  Sending (the raft worker): one non-blocking libpq connection per peer,
 *	  to the peer's ordinary PostgreSQL port, so pg_hba.conf, SCRAM and TLS
 *	  (sslmode=require or verify-full in the member's conninfo) guard the
 *	  cluster like any other client.  Each message becomes one execution
 *	  of "SELECT raft.deliver($1)", prepared once per connection, in
 *	  pipeline mode; many are in flight at once.  A connection moves through
 *
 *		idle --(conninfo, back-off elapsed)--> connecting --(PQconnectPoll
 *		OK)--> ready --(error)--> idle, back-off doubled up to 0.5 s
 *
 *	  A link that silently drops packets must not leave a connection that
 *	  looks ready while the kernel backs off its retransmissions: a
 *	  connection that is not up within PEER_DEADLINE_ELECTIONS election
 *	  timeouts, or whose oldest unanswered message has waited that long
 *	  for its reply (longer for a large one, which a slow link takes a
 *	  while to carry), is closed and made again.  TCP keepalives and
 *	  tcp_user_timeout (defaults that the member's conninfo may override)
 *	  tell the kernel the same.  Nothing here waits: one unreachable peer
 *	  never holds up the worker's work with the others.
 *
 *	  Messages queued for a peer that is not ready wait, up to a bound;
 *	  beyond it the oldest are dropped (Raft retries what matters).
 *
 *	  Receiving (a backend running raft.deliver()): the frame is checked
 *	  (length, version, checksum), its Raft message decoded by the core
 *	  (which checks cluster id, types and every field), its sequence number
 *	  compared with the last one accepted from that sender, and only then
 *	  queued in the shared-memory inbox for the worker.
 *
 *	  Frame (little-endian as written by this machine):
 *		u32 magic "RFRM" | u32 version | u64 sender incarnation | u64 seq
 *		| u64 sender's applied index | raft message (wire.c)
 *		| u32 CRC-32C of everything before it
 *	  The incarnation is the sending worker's start time, so a restarted
 *	  sender starts a new sequence; a replayed or reordered frame is
 *	  refused.  The applied index is how far the sender's apply worker
 *	  got: the leader shows it in raft.nodes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include "catalog/pg_type_d.h"
#include "libpq-fe.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_raft.h"

#define FRAME_MAGIC 0x4d524652	/* "RFRM" */
#define FRAME_VERSION 2
#define FRAME_HEADER_BYTES 32
#define FRAME_OVERHEAD (FRAME_HEADER_BYTES + 4)

#define DELIVER_STATEMENT "raft_deliver"
static const Oid deliver_types[1] = {BYTEAOID};

#define MAX_PEERS RAFT_MAX_MEMBERS
#define MAX_QUEUED_BYTES (64 * 1024 * 1024)
#define MAX_IN_FLIGHT 256
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 500
/* how many election timeouts a connection or a reply may take ... */
#define PEER_DEADLINE_ELECTIONS 2
/* ... and for a large message, a millisecond more per this many bytes */
#define PEER_SLOWEST_BYTES_PER_MS 1000

typedef enum PeerState
{
	PEER_IDLE,
	PEER_CONNECTING,
	PEER_READY
} PeerState;

typedef struct QueuedFrame
{
	struct QueuedFrame *next;
	size_t		len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} QueuedFrame;

typedef struct Peer
{
	raft_id_t	id;
	char	   *conninfo;
	PeerState	state;
	PGconn	   *conn;
	uint64		connection;		/* its number (RaftWaitSocket) */
	PostgresPollingStatusType poll;
	TimestampTz next_attempt;
	int			backoff_ms;
	uint64		seq;
	uint64		applied_sent;	/* the applied index of the last frame */
	QueuedFrame *head;
	QueuedFrame *tail;
	size_t		queued_bytes;
	int			in_flight;		/* queries sent, result not read */
	int			syncs;			/* pipeline syncs sent, not read */
	TimestampTz connect_started;
	TimestampTz waiting_since;	/* the last reply, or the first query since */
	uint32		sizes[MAX_IN_FLIGHT];	/* bytes of the queries in flight */
	int			oldest;			/* ... the oldest of them at this slot */
	bool		want_write;
	TimestampTz last_error_logged;

	/*
	 * Whether its server is gone (RaftTransportPeerGone): when a connection
	 * that was up breaks, a bare TCP (or unix-domain) connection is tried
	 * at the address it went to, and refused or not.
	 */
	struct sockaddr_storage addr;	/* where the last ready connection went */
	socklen_t	addr_len;		/* 0: not known */
	TimestampTz lost_at;		/* when a ready connection broke */
	TimestampTz refused_at;		/* when the address refused a connection */
	int			probe_fd;		/* that connection being tried, or -1 */
	uint64		probe_connection;	/* its number (RaftWaitSocket) */
	TimestampTz probe_started;
} Peer;

static Peer peers[MAX_PEERS];
static int	n_peers;
static uint64 my_incarnation;
static uint64 my_applied_index;
static raft_id_t my_id;
static MemoryContext transport_cxt;

static int	peer_deadline_ms(void);

static Peer *
peer_find(raft_id_t id)
{
	int			i;

	for (i = 0; i < n_peers; i++)
		if (peers[i].id == id)
			return &peers[i];
	return NULL;
}

void
RaftTransportInit(uint64 cluster_id, raft_id_t self_id)
{
	RaftTransportShutdown();
	if (transport_cxt == NULL)
		transport_cxt = AllocSetContextCreate(TopMemoryContext,
											  "pg_raft transport",
											  ALLOCSET_DEFAULT_SIZES);
	my_id = self_id;
	my_incarnation = (uint64) GetCurrentTimestamp();
}

static void
peer_disconnect(Peer *p)
{
	if (p->conn != NULL)
		PQfinish(p->conn);
	p->conn = NULL;
	p->state = PEER_IDLE;
	p->in_flight = 0;
	p->oldest = 0;
	p->syncs = 0;
	p->want_write = false;
}

/* Logs a peer's failure, at most every 10 seconds per peer. */
static void
peer_log_failure(Peer *p, const char *what)
{
	TimestampTz now = GetCurrentTimestamp();
	char	   *msg = p->conn ? pchomp(PQerrorMessage(p->conn)) : pstrdup("");

	if (p->last_error_logged != 0 &&
		!TimestampDifferenceExceeds(p->last_error_logged, now, 10000))
		return;
	p->last_error_logged = now;
	ereport(LOG,
			(errmsg("raft peer %u: %s", p->id, what),
			 msg[0] ? errdetail_internal("%s", msg) : 0));
}

/*
 * Remembers the address a ready connection went to: the server's IP
 * address and port, or its unix-domain socket.
 */
static void
peer_remember_address(Peer *p)
{
	const char *host = PQhost(p->conn);
	const char *hostaddr = PQhostaddr(p->conn);
	const char *port = PQport(p->conn);
	int			port_number = port != NULL ? atoi(port) : 0;

	memset(&p->addr, 0, sizeof(p->addr));
	p->addr_len = 0;
	if (port_number <= 0 || port_number > 65535)
		return;
	if (host != NULL && is_absolute_path(host))
	{
		struct sockaddr_un *un = (struct sockaddr_un *) &p->addr;

		un->sun_family = AF_UNIX;
		if (snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d",
					 host, port_number) < (int) sizeof(un->sun_path))
			p->addr_len = sizeof(struct sockaddr_un);
	}
	else if (hostaddr != NULL)
	{
		struct sockaddr_in *in4 = (struct sockaddr_in *) &p->addr;
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &p->addr;

		if (inet_pton(AF_INET, hostaddr, &in4->sin_addr) == 1)
		{
			in4->sin_family = AF_INET;
			in4->sin_port = pg_hton16((uint16) port_number);
			p->addr_len = sizeof(struct sockaddr_in);
		}
		else if (inet_pton(AF_INET6, hostaddr, &in6->sin6_addr) == 1)
		{
			in6->sin6_family = AF_INET6;
			in6->sin6_port = pg_hton16((uint16) port_number);
			p->addr_len = sizeof(struct sockaddr_in6);
		}
	}
}

/* Ends the connection attempt at the peer's address; err is its outcome. */
static void
probe_end(Peer *p, int err)
{
	if (p->probe_fd >= 0)
		close(p->probe_fd);
	p->probe_fd = -1;
	/* nothing listens there: refused, or the socket file is gone */
	if (err == ECONNREFUSED || err == ENOENT)
	{
		p->refused_at = GetCurrentTimestamp();
		/* the worker may have news for the core: not after its sleep */
		SetLatch(MyLatch);
	}
}

/* Tries a bare connection to the address of the connection that broke. */
static void
probe_start(Peer *p)
{
	int			fd;

	if (p->addr_len == 0 || p->probe_fd >= 0)
		return;
	fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	p->probe_fd = fd;
	if (connect(fd, (struct sockaddr *) &p->addr, p->addr_len) == 0)
		probe_end(p, 0);
	else if (errno == EINPROGRESS)
	{
		p->probe_connection = RaftNewConnectionNumber();
		p->probe_started = GetCurrentTimestamp();
	}
	else
		probe_end(p, errno);
}

/* Reads the outcome of the connection attempt, if it has one by now. */
static void
probe_poll(Peer *p)
{
	struct pollfd pfd;
	int			err = 0;
	socklen_t	len = sizeof(err);

	if (p->probe_fd < 0)
		return;
	pfd.fd = p->probe_fd;
	pfd.events = POLLOUT;
	pfd.revents = 0;
	if (poll(&pfd, 1, 0) == 0)
	{
		/* a link that drops packets does not answer: that proves nothing */
		if (TimestampDifferenceExceeds(p->probe_started, GetCurrentTimestamp(),
									   peer_deadline_ms()))
			probe_end(p, ETIMEDOUT);
		return;
	}
	if (getsockopt(p->probe_fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	probe_end(p, err);
}

static void
peer_fail(Peer *p, const char *what)
{
	peer_log_failure(p, what);
	if (p->state == PEER_READY && p->conn != NULL)
	{
		peer_remember_address(p);
		p->lost_at = GetCurrentTimestamp();
		p->refused_at = 0;
		if (p->probe_fd >= 0)
			probe_end(p, 0);
		probe_start(p);
	}
	peer_disconnect(p);
	p->backoff_ms = Min(Max(p->backoff_ms * 2, BACKOFF_MIN_MS), BACKOFF_MAX_MS);
	p->next_attempt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  p->backoff_ms);
}

void
RaftTransportSetPeer(raft_id_t id, const char *conninfo)
{
	Peer	   *p = peer_find(id);

	if (p != NULL)
	{
		if (strcmp(p->conninfo, conninfo) == 0)
			return;
		peer_disconnect(p);
		pfree(p->conninfo);
	}
	else
	{
		if (n_peers >= MAX_PEERS)
			elog(ERROR, "too many raft peers");
		p = &peers[n_peers++];
		memset(p, 0, sizeof(*p));
		p->id = id;
		p->probe_fd = -1;
	}
	p->conninfo = MemoryContextStrdup(transport_cxt, conninfo);
	p->next_attempt = 0;
}

static void
queue_clear(Peer *p)
{
	while (p->head != NULL)
	{
		QueuedFrame *f = p->head;

		p->head = f->next;
		pfree(f);
	}
	p->tail = NULL;
	p->queued_bytes = 0;
}

void
RaftTransportDropPeer(raft_id_t id)
{
	Peer	   *p = peer_find(id);

	if (p == NULL)
		return;
	peer_disconnect(p);
	queue_clear(p);
	if (p->probe_fd >= 0)
		probe_end(p, 0);
	pfree(p->conninfo);
	*p = peers[--n_peers];
}

/* The applied index that frames sent from now on carry. */
void
RaftTransportSetApplied(uint64 applied_index)
{
	my_applied_index = applied_index;
}

/*
 * Whether the peer's server is gone: a connection to it that was up broke,
 * and a connection to the address it went to was refused since (nothing
 * listens there: its postmaster is dead or stopped).  A link that drops
 * packets never looks like this; its connections time out instead.
 */
bool
RaftTransportPeerGone(raft_id_t id)
{
	Peer	   *p = peer_find(id);

	return p != NULL && p->lost_at != 0 && p->refused_at >= p->lost_at;
}

/*
 * Whether nothing in the transport waits on a clock: every peer connected,
 * with nothing queued or awaiting its result, and no probe under way.
 */
bool
RaftTransportSettled(void)
{
	int			i;

	for (i = 0; i < n_peers; i++)
	{
		const Peer *p = &peers[i];

		if (p->state != PEER_READY || p->head != NULL || p->in_flight > 0 ||
			p->probe_fd >= 0)
			return false;
	}
	return true;
}

/* Whether the applied index moved since the last frame to this peer. */
bool
RaftTransportAppliedUnsent(raft_id_t to)
{
	Peer	   *p = peer_find(to);

	return p != NULL && my_applied_index > p->applied_sent;
}

/* Frames a message and queues it for its peer. */
void
RaftTransportSend(raft_id_t to, const uint8 *msg, size_t len)
{
	Peer	   *p = peer_find(to);
	QueuedFrame *f;
	uint32		magic = FRAME_MAGIC;
	uint32		version = FRAME_VERSION;
	pg_crc32c	crc;

	if (p == NULL)
		return;					/* not (or no longer) a member we know */
	while (p->head != NULL && p->queued_bytes + len > MAX_QUEUED_BYTES)
	{
		/* a peer that is down does not get an unbounded backlog */
		QueuedFrame *old = p->head;

		p->head = old->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued_bytes -= old->len;
		pfree(old);
	}
	f = MemoryContextAlloc(transport_cxt,
						   offsetof(QueuedFrame, data) + len + FRAME_OVERHEAD);
	f->next = NULL;
	f->len = len + FRAME_OVERHEAD;
	p->seq++;
	memcpy(f->data, &magic, 4);
	memcpy(f->data + 4, &version, 4);
	memcpy(f->data + 8, &my_incarnation, 8);
	memcpy(f->data + 16, &p->seq, 8);
	memcpy(f->data + 24, &my_applied_index, 8);
	p->applied_sent = my_applied_index;
	memcpy(f->data + FRAME_HEADER_BYTES, msg, len);
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, f->data, FRAME_HEADER_BYTES + len);
	FIN_CRC32C(crc);
	memcpy(f->data + FRAME_HEADER_BYTES + len, &crc, 4);
	if (p->tail != NULL)
		p->tail->next = f;
	else
		p->head = f;
	p->tail = f;
	p->queued_bytes += f->len;
}

/* Milliseconds a connection attempt or a reply may take. */
static int
peer_deadline_ms(void)
{
	return PEER_DEADLINE_ELECTIONS * raft_election_timeout_ms;
}

static void
peer_start_connect(Peer *p)
{
	char		application_name[64];
	char		user_timeout[16];
	char		connect_timeout[16];

	/* keywords before dbname are defaults: the conninfo overrides them */
	const char *keywords[] = {"keepalives", "keepalives_idle", "keepalives_interval",
		"keepalives_count", "tcp_user_timeout", "connect_timeout",
	"dbname", "application_name", NULL};
	const char *values[] = {"1", "1", "1", "2", user_timeout, connect_timeout,
	p->conninfo, application_name, NULL};

	snprintf(user_timeout, sizeof(user_timeout), "%d", peer_deadline_ms());
	snprintf(connect_timeout, sizeof(connect_timeout), "%d",
			 Max(2, (peer_deadline_ms() + 999) / 1000));
	snprintf(application_name, sizeof(application_name),
			 "pg_raft node %u", my_id);
	p->conn = PQconnectStartParams(keywords, values, 1);
	p->connection = RaftNewConnectionNumber();
	if (p->conn == NULL || PQstatus(p->conn) == CONNECTION_BAD)
	{
		peer_fail(p, "could not start a connection");
		return;
	}
	p->state = PEER_CONNECTING;
	p->poll = PGRES_POLLING_WRITING;
	p->connect_started = GetCurrentTimestamp();
}

static void
peer_continue_connect(Peer *p)
{
	if (TimestampDifferenceExceeds(p->connect_started, GetCurrentTimestamp(),
								   peer_deadline_ms()))
	{
		peer_fail(p, "could not connect in time");
		return;
	}
	p->poll = PQconnectPoll(p->conn);
	if (p->poll == PGRES_POLLING_FAILED)
	{
		peer_fail(p, "could not connect");
		return;
	}
	if (p->poll != PGRES_POLLING_OK)
		return;
	if (PQsetnonblocking(p->conn, 1) != 0 || PQenterPipelineMode(p->conn) != 1)
	{
		peer_fail(p, "could not enter pipeline mode");
		return;
	}
	/* parsed and planned once: its result comes first, as a reply would */
	if (PQsendPrepare(p->conn, DELIVER_STATEMENT, "SELECT raft.deliver($1)", 1,
					  deliver_types) != 1 || PQpipelineSync(p->conn) != 1)
	{
		peer_fail(p, "could not prepare the delivery statement");
		return;
	}
	p->waiting_since = GetCurrentTimestamp();
	p->sizes[p->oldest] = 0;
	p->in_flight = 1;
	p->syncs = 1;
	p->want_write = true;
	p->state = PEER_READY;
	p->backoff_ms = 0;
	p->lost_at = 0;
	p->refused_at = 0;
	ereport(DEBUG1, (errmsg("raft peer %u: connected", p->id)));
}

/* The oldest query in flight has its result. */
static void
peer_answered(Peer *p)
{
	p->in_flight--;
	p->oldest = (p->oldest + 1) % MAX_IN_FLIGHT;
	p->waiting_since = GetCurrentTimestamp();
}

/* Reads every result that has arrived. */
static void
peer_read(Peer *p)
{
	bool		last_was_null = false;

	if (PQconsumeInput(p->conn) != 1)
	{
		peer_fail(p, "connection lost");
		return;
	}
	while (!PQisBusy(p->conn))
	{
		PGresult   *res = PQgetResult(p->conn);

		if (res == NULL)
		{
			if (last_was_null)
				break;
			last_was_null = true;
			continue;
		}
		last_was_null = false;
		switch (PQresultStatus(res))
		{
			case PGRES_PIPELINE_SYNC:
				p->syncs--;
				break;
			case PGRES_TUPLES_OK:
			case PGRES_COMMAND_OK:
			case PGRES_PIPELINE_ABORTED:
				peer_answered(p);
				break;
			default:
				peer_answered(p);
				{
					TimestampTz now = GetCurrentTimestamp();

					if (p->last_error_logged == 0 ||
						TimestampDifferenceExceeds(p->last_error_logged, now, 10000))
					{
						p->last_error_logged = now;
						ereport(LOG,
								(errmsg("raft peer %u refused a message", p->id),
								 errdetail_internal("%s",
													pchomp(PQresultErrorMessage(res)))));
					}
				}
				break;
		}
		PQclear(res);
	}
	if (PQstatus(p->conn) == CONNECTION_BAD)
	{
		peer_fail(p, "connection lost");
		return;
	}
	if (p->in_flight > 0 &&
		TimestampDifferenceExceeds(p->waiting_since, GetCurrentTimestamp(),
								   peer_deadline_ms() +
								   p->sizes[p->oldest] / PEER_SLOWEST_BYTES_PER_MS))
		peer_fail(p, "no reply in time");
}

/* Sends queued frames while the pipeline has room. */
static void
peer_write(Peer *p)
{
	int			sent = 0;
	int			formats[1] = {1};

	while (p->head != NULL && p->in_flight < MAX_IN_FLIGHT)
	{
		QueuedFrame *f = p->head;
		const char *values[1] = {f->data};
		int			lengths[1] = {(int) f->len};

		if (PQsendQueryPrepared(p->conn, DELIVER_STATEMENT, 1, values, lengths,
								formats, 0) != 1)
		{
			peer_fail(p, "could not send a message");
			return;
		}
		if (p->in_flight == 0)
			p->waiting_since = GetCurrentTimestamp();
		p->sizes[(p->oldest + p->in_flight) % MAX_IN_FLIGHT] = (uint32) f->len;
		p->in_flight++;
		sent++;
		p->head = f->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued_bytes -= f->len;
		pfree(f);
	}
	if (sent > 0)
	{
		if (PQpipelineSync(p->conn) != 1)
		{
			peer_fail(p, "could not send a message");
			return;
		}
		p->syncs++;
	}
	switch (PQflush(p->conn))
	{
		case 0:
			p->want_write = false;
			break;
		case 1:
			p->want_write = true;
			break;
		default:
			peer_fail(p, "could not send a message");
			break;
	}
}

/* Advances every connection as far as it can go without blocking. */
void
RaftTransportPoll(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < n_peers; i++)
	{
		Peer	   *p = &peers[i];

		probe_poll(p);
		if (p->state == PEER_IDLE && now >= p->next_attempt)
			peer_start_connect(p);
		if (p->state == PEER_CONNECTING)
			peer_continue_connect(p);
		if (p->state == PEER_READY)
			peer_read(p);
		if (p->state == PEER_READY)
			peer_write(p);
	}
}

/* The peers' sockets and what to wait for on each; at most max of them. */
int
RaftTransportWaitSockets(RaftWaitSocket *out, int max)
{
	int			n = 0;
	int			i;

	for (i = 0; i < n_peers && n < max; i++)
	{
		Peer	   *p = &peers[i];
		pgsocket	sock;

		if (p->probe_fd >= 0 && n < max)
		{
			out[n].sock = p->probe_fd;
			out[n].events = WL_SOCKET_WRITEABLE;
			out[n].connection = p->probe_connection;
			out[n].settled = true;
			n++;
		}
		if (n >= max || p->conn == NULL ||
			(sock = PQsocket(p->conn)) == PGINVALID_SOCKET)
			continue;
		out[n].sock = sock;
		out[n].connection = p->connection;
		out[n].settled = p->state == PEER_READY;
		if (p->state == PEER_CONNECTING)
			out[n].events = p->poll == PGRES_POLLING_READING ?
				WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE;
		else
			out[n].events = WL_SOCKET_READABLE |
				(p->want_write ? WL_SOCKET_WRITEABLE : 0);
		n++;
	}
	return n;
}

void
RaftTransportShutdown(void)
{
	int			i;

	for (i = 0; i < n_peers; i++)
	{
		peer_disconnect(&peers[i]);
		queue_clear(&peers[i]);
		if (peers[i].probe_fd >= 0)
			probe_end(&peers[i], 0);
		pfree(peers[i].conninfo);
	}
	n_peers = 0;
}

/* ----------------------------------------------------------------
 * The receiving side
 * ----------------------------------------------------------------
 */

/* The worker takes the oldest message; false when the inbox is empty. */
bool
RaftInboxPop(uint8 *buf, size_t cap, size_t *len)
{
	uint32		msg_len;
	bool		found;

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	found = RaftRingPop(&RaftShmem->inbox, buf, (uint32) Min(cap, PG_UINT32_MAX),
						&msg_len);
	LWLockRelease(RaftShmem->lock);
	if (found)
		*len = msg_len;
	return found;
}

/*
 * Checks a frame received by raft.deliver() and queues its message for the
 * worker.  Every problem is an ERROR that names it; nothing reaches the
 * worker unless the whole frame is sound.
 */
void
RaftTransportReceive(const uint8 *frame, size_t len)
{
	uint32		magic;
	uint32		version;
	uint64		incarnation;
	uint64		seq;
	uint64		applied_index;
	pg_crc32c	crc;
	pg_crc32c	expected;
	raft_msg	m;
	raft_entry *entries;
	uint64		cluster_id;
	raft_id_t	node_id;
	Latch	   *latch;
	RaftSenderSeq *sender = NULL;
	size_t		i;
	int			rc;
	bool		pushed;

	if (len > RAFT_WIRE_MAX_MSG_BYTES + FRAME_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("raft message is too large"),
				 errdetail("The message has %zu bytes; the limit is %u.",
						   len, RAFT_WIRE_MAX_MSG_BYTES + FRAME_OVERHEAD)));
	if (len < FRAME_OVERHEAD)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("raft message is truncated"),
				 errdetail("The message has %zu bytes; a frame has at least %d.",
						   len, FRAME_OVERHEAD)));
	memcpy(&magic, frame, 4);
	memcpy(&version, frame + 4, 4);
	memcpy(&incarnation, frame + 8, 8);
	memcpy(&seq, frame + 16, 8);
	memcpy(&applied_index, frame + 24, 8);
	memcpy(&crc, frame + len - 4, 4);
	if (magic != FRAME_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("raft message has an invalid frame header")));
	if (version != FRAME_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("raft message has unsupported frame version %u", version),
				 errdetail("This server understands version %d.", FRAME_VERSION),
				 errhint("Run the same pg_raft version on every member.")));
	INIT_CRC32C(expected);
	COMP_CRC32C(expected, frame, len - 4);
	FIN_CRC32C(expected);
	if (crc != expected)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft message checksum mismatch")));

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	cluster_id = RaftShmem->cluster_id;
	node_id = RaftShmem->node_id;
	LWLockRelease(RaftShmem->lock);
	if (cluster_id == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is not a member of a raft cluster")));

	entries = palloc(sizeof(raft_entry) * RAFT_MAX_ENTRIES_PER_MSG);
	rc = raft_msg_decode(frame + FRAME_HEADER_BYTES, len - FRAME_OVERHEAD,
						 cluster_id, &m, entries, RAFT_MAX_ENTRIES_PER_MSG);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(rc == RAFT_ERR_MSG_CLUSTER ?
						 ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION :
						 ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("invalid raft message: %s", raft_strerror(rc))));
	if (m.to != node_id)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("raft message is addressed to node %u, but this is node %u",
						m.to, node_id)));
	pfree(entries);

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	for (i = 0; i < lengthof(RaftShmem->senders); i++)
		if (RaftShmem->senders[i].node_id == m.from)
			sender = &RaftShmem->senders[i];
	if (sender == NULL)
	{
		/* take a free slot, or the one of the oldest incarnation */
		for (i = 0; i < lengthof(RaftShmem->senders); i++)
			if (sender == NULL ||
				RaftShmem->senders[i].incarnation < sender->incarnation)
				sender = &RaftShmem->senders[i];
		sender->node_id = m.from;
		sender->incarnation = 0;
		sender->seq = 0;
	}
	if (incarnation < sender->incarnation ||
		(incarnation == sender->incarnation && seq <= sender->seq))
	{
		LWLockRelease(RaftShmem->lock);
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("replayed raft message from node %u", m.from),
				 errdetail("Sequence %llu of incarnation %llu is not newer than the last one accepted.",
						   (unsigned long long) seq,
						   (unsigned long long) incarnation)));
	}
	pushed = RaftRingPush(&RaftShmem->inbox, NULL, 0, frame + FRAME_HEADER_BYTES,
						  (uint32) (len - FRAME_OVERHEAD));
	if (pushed)
	{
		sender->incarnation = incarnation;
		sender->seq = seq;
		sender->applied_index = applied_index;
	}
	else
		RaftShmem->inbox_dropped++;
	latch = RaftShmem->worker_latch;
	LWLockRelease(RaftShmem->lock);

	if (!pushed)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
				 errmsg("raft inbox is full"),
				 errdetail("The raft worker is not keeping up; the message is dropped.")));
	if (latch != NULL)
		SetLatch(latch);
}
