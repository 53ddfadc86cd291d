/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  The leader's side of replication: its own committed transactions,
 *	  decoded, become Raft entries.
 *
 * NOTES
 *	  Runs in the raft worker while the node leads.  It opens a replication
 *	  connection to its own server with application_name pg_raft, creates
 *	  the slot pg_raft afresh for the term (a slot left from an earlier
 *	  leadership holds nothing this one may ship), and decodes from the
 *	  slot with the pg_raft output plugin (decoder.c) in one of two places
 *	  (raft.decoding):
 *
 *	  - in the walsender of that connection, which sends the plugin's
 *		writes;
 *	  - in a decoding worker (decoding.c), which queues them in shared
 *		memory as a walsender would have sent them.  The connection then
 *		becomes a physical stream from the WAL's flush position, whose WAL
 *		is not used: it only says that there is more to decode, and wakes
 *		the decoding worker up.
 *
 *	  Either way, what the connection is for is the other way: the reports
 *	  of the standby it stands for.  A walsender costs a small commit least
 *	  (one process less to wake), but PostgreSQL 15's walsender polls its
 *	  client with a recv() before every WAL record, which makes it decode a
 *	  large transaction four times slower than the worker
 *	  (docs/benchmarks.md), and the COMMIT waits for the decoding.  With
 *	  auto, a walsender decodes, and hands over to the decoding worker when
 *	  it falls behind the WAL (choose_decoding); the worker hands back once
 *	  it keeps up.  A hand-over is a break of the stream, as below.  The
 *	  default is walsender.
 *
 *	  Each transaction's stream is cut into data entries of at most
 *	  RAFT_DATA_PIECE_BYTES (see changes/changes.h) and proposed.  The
 *	  position reported on the connection as written and flushed
 *	  moves past a transaction only once its last entry is committed in
 *	  Raft.  With synchronous_standby_names naming pg_raft, that report is
 *	  what releases the client's COMMIT: every acknowledged transaction is
 *	  in a majority of the members' logs.  When nothing is waiting for
 *	  Raft, the position up to which everything is decoded is reported as
 *	  it comes, which releases the commits of transactions that replicate
 *	  nothing.  The slot is confirmed up to the reported position (by the
 *	  walsender, or by the decoding worker when it next wakes up).
 *
 *	  When the connection breaks or the decoding worker stops while the
 *	  node still leads, both start again and decoding resumes from the
 *	  slot's confirmed position; transactions whose last entry was already
 *	  proposed in this term are recognised by their commit LSN and
 *	  skipped, and a transaction cut off halfway is sent again from its
 *	  first entry (the apply worker drops the incomplete copy when it sees
 *	  a new first entry).
 *
 *	  With raft.stream_large_transactions (the default), the plugin also
 *	  streams a transaction that outgrows logical_decoding_work_mem while
 *	  it runs.  Its blocks become entries flagged as streamed (changes.h),
 *	  interleaved with other transactions; its abort or commit is an entry
 *	  of its own, and the commit's end LSN is what the flush position waits
 *	  for: the client's COMMIT waits for the tail of the transaction, not
 *	  for all of it.  When the stream breaks, each streamed transaction
 *	  still open gets an abort entry (it is streamed again from its first
 *	  block).  One whose commit was proposed already, which a new decoding
 *	  process also streams again until the slot has confirmed it, is
 *	  dropped as it comes: a member that applied its commit would take it
 *	  for a new stream of the same transaction.
 *
 *	  The connection goes through states, each waiting for its socket:
 *
 *		idle -> connecting -> dropping the slot -> creating it ->
 *		starting (from the slot, or the decoding worker and the physical
 *		stream) -> streaming
 *
 *	  (dropping and creating only once per term).  A failure returns to
 *	  idle, says why in RaftCaptureProblem(), and retries a second later.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xlog.h"
#include "access/xlogdefs.h"
#include "lib/stringinfo.h"
#include "libpq-fe.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "postmaster/bgworker.h"
#include "postmaster/postmaster.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "changes/changes.h"
#include "pg_raft.h"

#define CAPTURE_RETRY_MS 1000
#define CAPTURE_FEEDBACK_MS 1000
/* how long a slot creation may wait for transactions before idle ones end */
#define CAPTURE_IDLE_GRACE_MS 1000
/* failures in a row, with nothing flushed between them, that make it stuck */
#define CAPTURE_STUCK_FAILURES 3
/* read at most this much per turn of the worker's loop */
#define CAPTURE_READ_BUDGET_BYTES (4 * 1024 * 1024)
/* how often capture looks at whether decoding keeps up */
#define CAPTURE_MODE_CHECK_MS 100
/* WAL not yet decoded beyond which a walsender hands decoding over */
#define CAPTURE_BEHIND_BYTES (8 * 1024 * 1024)
/*
 * Streamed bytes of open transactions beyond which a walsender keeps
 * decoding: a hand-over streams them again from their start.
 */
#define CAPTURE_RESTREAM_BYTES (8 * 1024 * 1024)
/* how long the decoding worker keeps up before a walsender takes over */
#define CAPTURE_WALSENDER_AFTER_MS 5000
/* how long auto decodes in a walsender after no worker could start */
#define CAPTURE_WORKER_RETRY_MS 60000
/* how long a walsender waits for the decoding worker to let the slot go */
#define CAPTURE_SLOT_WAIT_MS 2000

typedef enum CaptureState
{
	CAPTURE_IDLE,
	CAPTURE_CONNECTING,
	CAPTURE_DROPPING,
	CAPTURE_CREATING,
	CAPTURE_STARTING,
	CAPTURE_STREAMING
} CaptureState;

/* An entry formed and waiting to be proposed. */
typedef struct ReadyEntry
{
	StringInfo	data;
	bool		streamed;		/* of a streamed transaction */
	bool		last;			/* the transaction's last entry (its commit) */
	XLogRecPtr	end_lsn;		/* when last: the end of its commit record */
} ReadyEntry;

/* A transaction whose last entry is proposed, not yet known committed. */
typedef struct PendingCommit
{
	uint64		index;
	XLogRecPtr	end_lsn;
} PendingCommit;

/* A streamed transaction whose commit was proposed (Capture.committed_streams). */
typedef struct CommittedStream
{
	TransactionId xid;
	XLogRecPtr	end_lsn;
} CommittedStream;

typedef struct Capture
{
	CaptureState state;
	PGconn	   *conn;
	uint64		connection;		/* its number (RaftWaitSocket) */
	PostgresPollingStatusType poll;
	MemoryContext cxt;
	TimestampTz retry_at;
	TimestampTz idle_check_at;	/* next look for sessions holding it up */
	char		problem[RAFT_ERROR_BYTES];
	int			failures;		/* in a row, with nothing flushed between */
	XLogRecPtr	failed_flushed; /* flushed at the last failure */

	uint64		term;			/* the leadership we capture for; 0 none */
	uint64		slot_term;		/* the term the slot was created in */
	uint64		streamed_term;	/* the term streaming started in */
	raft_id_t	node_id;

	/* where the stream decodes: the decoding worker, or a walsender */
	bool		use_decoder;
	TimestampTz mode_check_at;	/* next look at whether decoding keeps up */
	TimestampTz behind_at;		/* when decoding was last seen behind */
	TimestampTz slot_wait_until;	/* a walsender waits for the slot till then */
	TimestampTz worker_refused_at;	/* no worker slot was free for auto */

	/* the decoding worker of this stream (decoding.c) */
	BackgroundWorkerHandle *decoder;
	uint64		decoder_generation;
	char	   *chunk;			/* a record of its ring ... */
	StringInfo	message;		/* ... and the message its chunks make */
	RaftProposeData propose;

	/* the transaction, or the streamed block, being cut into entries */
	bool		in_txn;			/* a whole transaction */
	TransactionId block_xid;	/* a streamed transaction's block */
	bool		skipping;		/* already proposed in this term */
	bool		first_cut;		/* its first entry is cut */
	bool		controls_only;	/* the piece holds only stream messages */
	XLogRecPtr	final_lsn;
	StringInfo	piece;			/* stream bytes not yet in an entry ... */
	int			piece_cut;		/* ... from this offset on */
	List	   *ready;			/* ReadyEntry, oldest first */
	XLogRecPtr	last_proposed_final_lsn;
	List	   *open_streams;	/* xids streamed, not yet committed or aborted
								 * (kept as Oids: both are 32 bits) */

	/*
	 * Streamed transactions whose commit was proposed in this term and that
	 * the slot may not have confirmed yet: a new decoding process sends
	 * them again from their first block.  Their blocks are dropped then,
	 * since a member that applied the commit would take them for a new
	 * stream of the same transaction.
	 */
	List	   *committed_streams;	/* CommittedStream, in commit order */
	bool		dropping_block; /* block_xid's block is one of theirs */
	uint64		open_stream_bytes;	/* streamed since none was open */

	/* what may be reported as flushed */
	List	   *pending;		/* PendingCommit, oldest first */
	XLogRecPtr	flushed;
	XLogRecPtr	reported;
	TimestampTz last_feedback;
	bool		reply_requested;
} Capture;

static Capture C;

static void queue_stream_abort(TransactionId xid);

static void
capture_set_problem(const char *problem)
{
	if (strcmp(C.problem, problem) != 0)
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("pg_raft could not capture this leader's changes: %s",
						problem),
				 errhint("The raft worker opens a replication connection to its own server through the first of \"unix_socket_directories\", as the bootstrap superuser; \"pg_hba.conf\" must allow it, and \"max_wal_senders\" and \"wal_level = logical\" must permit it.")));
	strlcpy(C.problem, problem, sizeof(C.problem));
}

/*
 * Stops the decoding worker, if there is one: a worker of an older
 * generation queues nothing more and exits.
 */
static void
decoding_stop(void)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->capture.generation++;
	RaftRingClear(&RaftShmem->capture.ring);
	RaftShmem->capture.decoder_waits_for_room = false;
	if (RaftShmem->capture.decoder_latch != NULL)
		SetLatch(RaftShmem->capture.decoder_latch);
	LWLockRelease(RaftShmem->lock);
	if (C.decoder != NULL)
	{
		TerminateBackgroundWorker(C.decoder);
		pfree(C.decoder);
		C.decoder = NULL;
	}
	if (C.message != NULL)
		resetStringInfo(C.message);
}

/* Starts a decoding worker for the stream; false when it cannot. */
static bool
decoding_start(void)
{
	BackgroundWorker worker;
	MemoryContext old;
	bool		started;

	decoding_stop();
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	C.decoder_generation = RaftShmem->capture.generation;
	pg_atomic_write_u64(&RaftShmem->capture.decoded, InvalidXLogRecPtr);
	RaftShmem->capture.streaming = raft_stream_large_transactions;
	RaftShmem->capture.confirmed = C.flushed;
	RaftShmem->capture.error[0] = '\0';
	LWLockRelease(RaftShmem->lock);

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "pg_raft");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "RaftDecodingWorkerMain");
	snprintf(worker.bgw_name, BGW_MAXLEN, "pg_raft decoding worker");
	snprintf(worker.bgw_type, BGW_MAXLEN, "pg_raft decoding worker");
	worker.bgw_main_arg = UInt64GetDatum(C.decoder_generation);
	worker.bgw_notify_pid = MyProcPid;
	old = MemoryContextSwitchTo(C.cxt);
	started = RegisterDynamicBackgroundWorker(&worker, &C.decoder);
	if (C.chunk == NULL)
		C.chunk = palloc(RAFT_CAPTURE_CHUNK_BYTES + 1);
	if (C.message == NULL)
		C.message = makeStringInfo();
	MemoryContextSwitchTo(old);
	if (!started)
		C.decoder = NULL;
	return started;
}

/*
 * Ends the stream: the decoding worker, the connection, and what was read
 * of a transaction not read to its end.  What was captured is kept.
 */
static void
stream_break(void)
{
	decoding_stop();
	if (C.conn != NULL)
		PQfinish(C.conn);
	C.conn = NULL;
	C.state = CAPTURE_IDLE;
	/*
	 * A transaction cut off halfway is decoded again from its start: its
	 * entries not yet proposed are dropped.
	 */
	while (C.in_txn && C.ready != NIL &&
		   !((ReadyEntry *) llast(C.ready))->streamed &&
		   !((ReadyEntry *) llast(C.ready))->last)
		C.ready = list_delete_last(C.ready);
	C.in_txn = false;
	C.skipping = false;
	if (C.piece != NULL)
		resetStringInfo(C.piece);
	C.piece_cut = 0;
	C.block_xid = InvalidTransactionId;
	C.dropping_block = false;

	/*
	 * Streamed transactions still open are streamed again from their first
	 * block once the connection is back (or never, if they abort): the
	 * followers drop what they kept of them.
	 */
	while (C.open_streams != NIL)
	{
		TransactionId xid = linitial_oid(C.open_streams);

		C.open_streams = list_delete_first(C.open_streams);
		queue_stream_abort(xid);
	}
}

/* Ends the stream and retries later, saying why. */
static void
capture_fail_because(const char *what, const char *why)
{
	char		problem[RAFT_ERROR_BYTES];

	if (C.flushed > C.failed_flushed)
		C.failures = 0;
	C.failures++;
	C.failed_flushed = C.flushed;
	snprintf(problem, sizeof(problem), "%s: %s", what, why);
	/* libpq messages end with a newline */
	if (problem[0] != '\0' && problem[strlen(problem) - 1] == '\n')
		problem[strlen(problem) - 1] = '\0';
	capture_set_problem(problem);
	stream_break();
	C.retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 CAPTURE_RETRY_MS);
}

static void
capture_fail(const char *what)
{
	capture_fail_because(what, C.conn ? PQerrorMessage(C.conn) : "");
}

/* Forgets everything about the current leadership. */
static void
capture_reset(void)
{
	decoding_stop();
	if (C.conn != NULL)
		PQfinish(C.conn);
	C.conn = NULL;
	C.state = CAPTURE_IDLE;
	C.term = 0;
	C.in_txn = false;
	C.block_xid = InvalidTransactionId;
	C.skipping = false;
	C.last_proposed_final_lsn = InvalidXLogRecPtr;
	C.dropping_block = false;
	C.flushed = InvalidXLogRecPtr;
	C.reported = InvalidXLogRecPtr;
	C.retry_at = 0;
	C.problem[0] = '\0';
	C.failures = 0;
	C.use_decoder = raft_decoding == RAFT_DECODING_WORKER;
	C.mode_check_at = 0;
	C.behind_at = 0;
	C.slot_wait_until = 0;
	C.worker_refused_at = 0;
	C.failed_flushed = InvalidXLogRecPtr;
	if (C.cxt != NULL)
		MemoryContextReset(C.cxt);
	C.chunk = NULL;
	C.message = NULL;
	C.piece = NULL;
	C.ready = NIL;
	C.pending = NIL;
	C.open_streams = NIL;
	C.committed_streams = NIL;
	C.open_stream_bytes = 0;
}

/* The first directory of unix_socket_directories, or NULL. */
char *
RaftLocalSocketDirectory(void)
{
	char	   *raw;
	List	   *dirs;
	char	   *dir = NULL;

	if (Unix_socket_directories == NULL || Unix_socket_directories[0] == '\0')
		return NULL;
	raw = pstrdup(Unix_socket_directories);
	if (SplitDirectoriesString(raw, ',', &dirs) && dirs != NIL)
		dir = pstrdup(linitial(dirs));
	return dir;
}

static void
capture_connect(void)
{
	const char *keywords[9];
	const char *values[9];
	char		port[16];
	char		user[NAMEDATALEN];
	char	   *dir = RaftLocalSocketDirectory();
	int			n = 0;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	strlcpy(user, RaftShmem->superuser_name, NAMEDATALEN);
	LWLockRelease(RaftShmem->lock);
	if (user[0] == '\0')
	{
		/* the apply worker looks it up when it starts: not a failure */
		strlcpy(C.problem, "waiting for the apply worker to start",
				sizeof(C.problem));
		C.retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 100);
		return;
	}

	snprintf(port, sizeof(port), "%d", PostPortNumber);
	keywords[n] = "host";
	values[n++] = dir ? dir : "localhost";
	keywords[n] = "port";
	values[n++] = port;
	keywords[n] = "dbname";
	values[n++] = raft_database;
	keywords[n] = "user";
	values[n++] = user;
	keywords[n] = "replication";
	values[n++] = "database";
	keywords[n] = "application_name";
	values[n++] = RAFT_CAPTURE_APPLICATION_NAME;
	keywords[n] = "connect_timeout";
	values[n++] = "10";
	keywords[n] = NULL;
	values[n] = NULL;

	C.conn = PQconnectStartParams(keywords, values, 0);
	C.connection = RaftNewConnectionNumber();
	if (C.conn == NULL || PQstatus(C.conn) == CONNECTION_BAD)
	{
		capture_fail("could not connect to the local server");
		return;
	}
	C.poll = PGRES_POLLING_WRITING;
	C.state = CAPTURE_CONNECTING;
}

static void
capture_send(const char *command, CaptureState next)
{
	if (!PQsendQuery(C.conn, command))
	{
		capture_fail(command);
		return;
	}
	C.state = next;
}

/*
 * Collects the result of the command in flight.  Returns NULL while it is
 * not complete; the caller must PQclear the result.
 */
static PGresult *
capture_result(void)
{
	PGresult   *res;
	PGresult   *extra;

	if (!PQconsumeInput(C.conn))
	{
		capture_fail("lost the local replication connection");
		return NULL;
	}
	if (PQisBusy(C.conn))
		return NULL;
	res = PQgetResult(C.conn);
	if (res == NULL || PQresultStatus(res) == PGRES_COPY_BOTH)
		return res;
	/* a command's result is followed by NULL */
	while ((extra = PQgetResult(C.conn)) != NULL)
		PQclear(extra);
	return res;
}

/* ----------------------------------------------------------------
 * Cutting the stream into entries
 * ----------------------------------------------------------------
 */

static void
piece_start(void)
{
	MemoryContext old = MemoryContextSwitchTo(C.cxt);

	if (C.piece == NULL)
		C.piece = makeStringInfo();
	resetStringInfo(C.piece);
	C.piece_cut = 0;
	MemoryContextSwitchTo(old);
}

/*
 * Cuts an entry from the bytes of the piece not cut yet (up to a full
 * entry's worth, or all of them when last) and queues it for proposal.
 * In a streamed block (C.block_xid), the entry is the stream's, and
 * "first" means that it begins at a stream message (see changes.h).
 */
static void
cut_entry(bool last, XLogRecPtr end_lsn)
{
	MemoryContext old = MemoryContextSwitchTo(C.cxt);
	int			body = C.piece->len - C.piece_cut;
	int			take = last ? body : Min(body, RAFT_DATA_PIECE_BYTES);
	ReadyEntry *e = palloc0(sizeof(ReadyEntry));
	chg_entry_header header;

	header.flags = (C.first_cut ? 0 : CHG_ENTRY_FIRST) | (last ? CHG_ENTRY_LAST : 0);
	header.origin = C.node_id;
	header.final_lsn = C.final_lsn;
	header.xid = C.block_xid;
	if (C.block_xid != InvalidTransactionId)
	{
		header.flags |= CHG_ENTRY_STREAM;
		header.final_lsn = 0;
		e->streamed = true;
	}
	e->data = makeStringInfo();
	enlargeStringInfo(e->data, CHG_ENTRY_HEADER_BYTES + take);
	chg_entry_header_write((uint8 *) e->data->data, &header);
	e->data->len = CHG_ENTRY_HEADER_BYTES;
	appendBinaryStringInfo(e->data, C.piece->data + C.piece_cut, take);
	e->last = last;
	e->end_lsn = end_lsn;
	C.ready = lappend(C.ready, e);
	C.first_cut = true;
	C.piece_cut += take;
	MemoryContextSwitchTo(old);
}

/*
 * Drops the bytes already cut from the piece: once per message, so that a
 * huge value costs one pass, not one per entry.
 */
static void
piece_compact(void)
{
	if (C.piece_cut == 0)
		return;
	memmove(C.piece->data, C.piece->data + C.piece_cut,
			C.piece->len - C.piece_cut);
	C.piece->len -= C.piece_cut;
	C.piece_cut = 0;
}

/* Proposes the ready entries in order; false when the log has no room. */
static bool
propose_ready(void)
{
	while (C.ready != NIL)
	{
		ReadyEntry *e = linitial(C.ready);
		uint64		index;

		if (!C.propose(e->data->data, e->data->len, &index))
			return false;
		if (e->last)
		{
			MemoryContext old = MemoryContextSwitchTo(C.cxt);
			PendingCommit *p = palloc(sizeof(PendingCommit));

			p->index = index;
			p->end_lsn = e->end_lsn;
			C.pending = lappend(C.pending, p);
			MemoryContextSwitchTo(old);
		}
		C.ready = list_delete_first(C.ready);
		pfree(e->data->data);
		pfree(e->data);
		pfree(e);
	}
	return true;
}

/* Appends one message of the plugin's output to the piece. */
static void
piece_append(const uint8 *buf, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(C.cxt);

	appendBinaryStringInfo(C.piece, (const char *) buf, (int) len);
	MemoryContextSwitchTo(old);
}

/*
 * Cuts the whole piece into entries and starts an empty one, whose first
 * entry will begin at a message.
 */
static void
cut_all(void)
{
	while (C.piece->len > C.piece_cut)
		cut_entry(false, InvalidXLogRecPtr);
	piece_start();
	C.first_cut = false;
}

/*
 * Queues a stream's abort or commit message as an entry of its own; a
 * commit is its transaction's last entry, which releases its COMMIT.
 */
static void
queue_stream_message(TransactionId xid, const uint8 *buf, size_t len,
					 bool commit, XLogRecPtr end_lsn)
{
	C.block_xid = xid;
	piece_start();
	C.first_cut = false;
	piece_append(buf, len);
	cut_entry(commit, end_lsn);
	C.block_xid = InvalidTransactionId;
}

/* Queues an abort of the whole streamed transaction xid. */
static void
queue_stream_abort(TransactionId xid)
{
	MemoryContext old = MemoryContextSwitchTo(C.cxt);
	StringInfo	buf = makeStringInfo();
	chg_writer	w;

	w.append = RaftAppendToStringInfo;
	w.arg = buf;
	chg_write_version(&w);
	chg_write_stream_abort(&w, xid, xid);
	MemoryContextSwitchTo(old);
	queue_stream_message(xid, (const uint8 *) buf->data, buf->len, false,
						 InvalidXLogRecPtr);
	pfree(buf->data);
	pfree(buf);
}

/* A block of a streamed transaction begins. */
static void
stream_block_start(const chg_message *m, const uint8 *buf, size_t len)
{
	MemoryContext old = MemoryContextSwitchTo(C.cxt);

	if (!list_member_oid(C.open_streams, m->xid))
		C.open_streams = lappend_oid(C.open_streams, m->xid);
	MemoryContextSwitchTo(old);
	C.block_xid = m->xid;
	piece_start();
	C.first_cut = false;
	C.controls_only = true;
	piece_append(buf, len);
}

/*
 * A message inside a streamed block.  A change of subtransaction begins an
 * entry (the followers note where in the stream each one starts, and an
 * abort of it cuts their copy there); the block's end is cut at once.
 */
static void
stream_block_take(const uint8 *buf, size_t len)
{
	C.open_stream_bytes += len;
	if (buf[0] == CHG_SUBTRANSACTION)
	{
		if (!C.controls_only)
			cut_all();
		C.controls_only = true;
		piece_append(buf, len);
		return;
	}
	piece_append(buf, len);
	if (buf[0] == CHG_STREAM_STOP)
	{
		cut_all();
		C.block_xid = InvalidTransactionId;
		return;
	}
	C.controls_only = false;
	while (C.piece->len - C.piece_cut >= RAFT_DATA_PIECE_BYTES)
		cut_entry(false, InvalidXLogRecPtr);
	piece_compact();
}

/* Whether xid is a streamed transaction whose commit was proposed in this term. */
static bool
stream_committed(TransactionId xid)
{
	ListCell   *lc;

	foreach(lc, C.committed_streams)
	{
		if (((CommittedStream *) lfirst(lc))->xid == xid)
			return true;
	}
	return false;
}

/*
 * A streamed transaction committed.  One whose commit was proposed in this
 * term already was streamed again after a reconnect: its blocks were
 * dropped (stream_committed), or, if it is no longer remembered, the
 * followers are told to drop that second copy.
 */
static void
stream_commit(const chg_message *m, const uint8 *buf, size_t len)
{
	XLogRecPtr	confirmed;
	CommittedStream *committed;
	MemoryContext old;

	C.open_streams = list_delete_oid(C.open_streams, m->xid);
	if (m->lsn <= C.last_proposed_final_lsn)
	{
		if (!stream_committed(m->xid))
			queue_stream_abort(m->xid);
		return;
	}
	queue_stream_message(m->xid, buf, len, true, m->end_lsn);
	C.last_proposed_final_lsn = m->lsn;

	/* those the slot confirmed are never sent again */
	if (RaftSlotState(NULL, NULL, &confirmed))
		while (C.committed_streams != NIL &&
			   ((CommittedStream *) linitial(C.committed_streams))->end_lsn <= confirmed)
		{
			pfree(linitial(C.committed_streams));
			C.committed_streams = list_delete_first(C.committed_streams);
		}
	old = MemoryContextSwitchTo(C.cxt);
	committed = palloc(sizeof(CommittedStream));
	committed->xid = m->xid;
	committed->end_lsn = m->end_lsn;
	C.committed_streams = lappend(C.committed_streams, committed);
	MemoryContextSwitchTo(old);
}

/* A whole transaction begins (its version and begin messages). */
static void
whole_transaction_begin(const chg_message *m)
{
	C.in_txn = true;
	C.final_lsn = m->lsn;
	C.skipping = m->lsn <= C.last_proposed_final_lsn;
	C.first_cut = false;
	if (!C.skipping)
		piece_start();
}

/*
 * Takes one write of the plugin's output: a batch of row changes, or one
 * other message (decoder.c).
 */
static void
take_output(const uint8 *buf, size_t len)
{
	chg_message m;
	size_t		consumed;
	size_t		next_len;

	if (len == 0)
		return;
	if (buf[0] == CHG_VERSION)
	{
		if (chg_read(buf, len, NULL, &m, &consumed) != CHG_OK ||
			chg_read(buf + consumed, len - consumed, NULL, &m, &next_len) != CHG_OK)
			elog(ERROR, "the pg_raft output plugin wrote a malformed message");
		/* a begin, a block's start, an abort or a commit: between transactions */
		if (C.in_txn || C.block_xid != InvalidTransactionId)
			elog(ERROR, "the pg_raft output plugin wrote message '%c' inside a transaction",
				 m.kind);
		switch (m.kind)
		{
			case CHG_BEGIN:
				whole_transaction_begin(&m);
				break;
			case CHG_STREAM_START:
				if (stream_committed(m.xid))
				{
					C.block_xid = m.xid;
					C.dropping_block = true;
					return;
				}
				stream_block_start(&m, buf, len);
				return;
			case CHG_STREAM_ABORT:
				if (stream_committed(m.xid))
					return;		/* of a block dropped */
				if (m.subxid == m.xid)
					C.open_streams = list_delete_oid(C.open_streams, m.xid);
				queue_stream_message(m.xid, buf, len, false, InvalidXLogRecPtr);
				return;
			case CHG_STREAM_COMMIT:
				stream_commit(&m, buf, len);
				return;
			default:
				elog(ERROR, "the pg_raft output plugin wrote a transaction without a begin");
		}
	}
	if (C.block_xid != InvalidTransactionId)
	{
		if (!C.dropping_block)
			stream_block_take(buf, len);
		else if (buf[0] == CHG_STREAM_STOP)
		{
			C.block_xid = InvalidTransactionId;
			C.dropping_block = false;
		}
		return;
	}
	if (!C.in_txn)
		elog(ERROR, "the pg_raft output plugin wrote a change outside a transaction");
	if (!C.skipping)
		piece_append(buf, len);
	if (buf[0] == CHG_COMMIT)
	{
		if (chg_read(buf, len, NULL, &m, &consumed) != CHG_OK)
			elog(ERROR, "the pg_raft output plugin wrote a malformed commit");
		if (!C.skipping)
		{
			cut_entry(true, m.end_lsn);
			C.last_proposed_final_lsn = C.final_lsn;
		}
		C.in_txn = false;
		C.skipping = false;
		return;
	}
	while (!C.skipping && C.piece->len - C.piece_cut >= RAFT_DATA_PIECE_BYTES)
		cut_entry(false, InvalidXLogRecPtr);
	if (!C.skipping)
		piece_compact();
}

/* ----------------------------------------------------------------
 * The replication protocol
 * ----------------------------------------------------------------
 */

static uint64
read_be64(const char *p)
{
	uint64		v;

	memcpy(&v, p, sizeof(v));
	return pg_ntoh64(v);
}

/* Nothing decoded is waiting for Raft: the stream is durable up to lsn. */
static bool
idle_stream(void)
{
	return !C.in_txn && C.block_xid == InvalidTransactionId &&
		C.ready == NIL && C.pending == NIL;
}

static void
send_feedback(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	pq_sendbyte(&buf, 'r');
	pq_sendint64(&buf, C.flushed);	/* written */
	pq_sendint64(&buf, C.flushed);	/* flushed */
	pq_sendint64(&buf, C.flushed);	/* applied */
	pq_sendint64(&buf, GetCurrentTimestamp());
	pq_sendbyte(&buf, 0);
	if (PQputCopyData(C.conn, buf.data, buf.len) <= 0 || PQflush(C.conn) < 0)
		capture_fail("could not send feedback on the local replication connection");
	pfree(buf.data);
	/* a walsender confirms its slot itself; the decoding worker reads this */
	if (C.use_decoder)
	{
		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		if (RaftShmem->capture.generation == C.decoder_generation &&
			C.flushed > RaftShmem->capture.confirmed)
			RaftShmem->capture.confirmed = C.flushed;
		LWLockRelease(RaftShmem->lock);
	}
	C.reported = C.flushed;
	C.last_feedback = GetCurrentTimestamp();
	C.reply_requested = false;
}

/*
 * Handles one message of the walsender, or of the decoding worker, which
 * writes what a walsender would have sent; false when it failed.
 */
static bool
take_decoded_message(const char *msg, int len)
{
	const int	w_header = 1 + 8 + 8 + 8;
	const int	k_length = 1 + 8 + 8 + 1;

	if (len >= w_header && msg[0] == 'w')
	{
		take_output((const uint8 *) msg + w_header, len - w_header);
		return true;
	}
	if (len >= k_length && msg[0] == 'k')
	{
		XLogRecPtr	wal_end = read_be64(msg + 1);

		if (idle_stream() && wal_end > C.flushed)
			C.flushed = wal_end;
		if (msg[17])
			C.reply_requested = true;
		return true;
	}
	capture_fail_because("unexpected message in the decoded stream", "");
	return false;
}

/* Wakes the decoding worker up: there is WAL to decode. */
static void
wake_decoder(void)
{
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	if (RaftShmem->capture.decoder_latch != NULL)
		SetLatch(RaftShmem->capture.decoder_latch);
	LWLockRelease(RaftShmem->lock);
}

/*
 * Handles one CopyData message of the physical stream: its WAL is only a
 * sign that there is more to decode; false when it failed.
 */
static bool
take_physical_message(const char *msg, int len)
{
	const int	k_length = 1 + 8 + 8 + 1;

	if (len >= 1 && msg[0] == 'w')
	{
		wake_decoder();
		return true;
	}
	if (len >= k_length && msg[0] == 'k')
	{
		if (msg[17])
			C.reply_requested = true;
		return true;
	}
	capture_fail("unexpected message on the local replication connection");
	return false;
}

/*
 * Takes the next chunk the decoding worker queued into C.chunk; its
 * length in *len, 0 when there is none.  A worker that waits for room is
 * woken once the ring is half empty, so that it fills it again while
 * capture takes the rest, and does not wake for every chunk taken.
 */
static void
pop_decoded_chunk(uint32 *len)
{
	RaftRing   *ring = &RaftShmem->capture.ring;

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (!RaftRingPop(ring, C.chunk, RAFT_CAPTURE_CHUNK_BYTES + 1, len))
		*len = 0;
	if (RaftShmem->capture.decoder_waits_for_room &&
		ring->head - ring->tail <= ring->size / 2)
	{
		RaftShmem->capture.decoder_waits_for_room = false;
		if (RaftShmem->capture.decoder_latch != NULL)
			SetLatch(RaftShmem->capture.decoder_latch);
	}
	LWLockRelease(RaftShmem->lock);
}

/*
 * Whether the decoding worker runs or is starting; when it stopped, the
 * stream fails with the error it left.
 */
static bool
decoder_alive(void)
{
	pid_t		pid;
	char		error[RAFT_ERROR_BYTES];

	if (C.decoder != NULL &&
		GetBackgroundWorkerPid(C.decoder, &pid) != BGWH_STOPPED)
		return true;
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	if (RaftShmem->capture.error_generation == C.decoder_generation)
	{
		strlcpy(error, RaftShmem->capture.error, sizeof(error));
		/*
		 * Only a slot that is gone is made again.  One still held by
		 * another process (the decoding worker of a stream that broke, on
		 * its way out) is tried again, like any failure: a new slot would
		 * begin after transactions that the old one still holds, and they
		 * would never be captured.  A holder that stays makes capture
		 * stuck, and the leadership goes to another member.
		 */
		if (RaftShmem->capture.error_code == ERRCODE_UNDEFINED_OBJECT)
			C.slot_term = 0;
	}
	else
		strlcpy(error, "it exited", sizeof(error));
	LWLockRelease(RaftShmem->lock);
	capture_fail_because("the decoding worker stopped", error);
	return false;
}

/*
 * The next CopyData message on the connection, from libpq's buffer, in
 * *msg (PQfreemem it): its length, 0 when there is none, -1 when the
 * stream ended (capture failed).
 */
static int
next_copy_message(char **msg)
{
	int			len = PQgetCopyData(C.conn, msg, 1);

	if (len < 0)
	{
		capture_fail("the local replication stream ended");
		return -1;
	}
	return len;
}

/* Reads what arrived on the connection into libpq; false when it failed. */
static bool
consume_input(void)
{
	if (PQconsumeInput(C.conn))
		return true;
	capture_fail("lost the local replication connection");
	return false;
}

/*
 * Reads what the walsender decoded, as far as the log has room and the
 * budget goes; false when the stream failed.
 */
static bool
read_walsender(void)
{
	size_t		budget = CAPTURE_READ_BUDGET_BYTES;

	if (!propose_ready())
		return true;
	if (!consume_input())
		return false;
	while (budget > 0 && C.ready == NIL)
	{
		char	   *msg;
		int			len = next_copy_message(&msg);
		bool		taken;

		if (len <= 0)
			return len == 0;
		taken = take_decoded_message(msg, len);
		PQfreemem(msg);
		if (!taken)
			return false;
		budget = (size_t) len >= budget ? 0 : budget - len;
		propose_ready();
	}
	/* more may wait in libpq's buffer: come back at once */
	if (budget == 0)
		SetLatch(MyLatch);
	return true;
}

/*
 * Reads the physical stream (its WAL wakes the decoding worker up), then
 * what the decoding worker queued, as far as the log has room and the
 * budget goes; false when the stream failed.
 */
static bool
read_decoding_worker(void)
{
	size_t		budget = CAPTURE_READ_BUDGET_BYTES;
	char	   *msg;
	int			len;

	if (!consume_input())
		return false;
	while ((len = next_copy_message(&msg)) > 0)
	{
		bool		taken = take_physical_message(msg, len);

		PQfreemem(msg);
		if (!taken)
			return false;
	}
	if (len < 0)
		return false;

	if (propose_ready())
	{
		uint32		chunk_len;

		while (budget > 0 && C.ready == NIL)
		{
			pop_decoded_chunk(&chunk_len);
			if (chunk_len == 0)
				break;
			appendBinaryStringInfo(C.message, C.chunk + 1, chunk_len - 1);
			budget = (size_t) chunk_len >= budget ? 0 : budget - chunk_len;
			if (C.chunk[0] != RAFT_CAPTURE_LAST)
				continue;
			if (!take_decoded_message(C.message->data, C.message->len))
				return false;
			resetStringInfo(C.message);
			propose_ready();
		}
		/* more may wait in the ring: come back at once */
		if (budget == 0)
			SetLatch(MyLatch);
	}
	return decoder_alive();
}

/* How far the walsender of the stream has decoded; invalid if unknown. */
static XLogRecPtr
walsender_position(void)
{
	int			pid = PQbackendPID(C.conn);
	XLogRecPtr	sent = InvalidXLogRecPtr;

	for (int i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *walsnd = &WalSndCtl->walsnds[i];

		SpinLockAcquire(&walsnd->mutex);
		if (walsnd->pid == pid)
			sent = walsnd->sentPtr;
		SpinLockRelease(&walsnd->mutex);
	}
	return sent;
}

/*
 * RaftSlotState
 *		Whether the slot pg_raft exists; if so, the process that holds it
 *		(0 when none) in *holder, its restart point in *restart and its
 *		confirmed position in *confirmed, any of which may be NULL.
 */
bool
RaftSlotState(pid_t *holder, XLogRecPtr *restart, XLogRecPtr *confirmed)
{
	ReplicationSlot *slot;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	slot = SearchNamedReplicationSlot(RAFT_SLOT_NAME, false);
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		if (holder != NULL)
			*holder = slot->active_pid;
		if (restart != NULL)
			*restart = slot->data.restart_lsn;
		if (confirmed != NULL)
			*confirmed = slot->data.confirmed_flush;
		SpinLockRelease(&slot->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);
	return slot != NULL;
}

/*
 * Ends the stream and starts it again at once in the other place: in the
 * decoding worker (to_worker) or in a walsender.  Nothing is lost: as
 * after a failure, decoding resumes from the slot, and what was proposed
 * in the term is skipped.
 */
static void
hand_decoding_over(bool to_worker, const char *why)
{
	ereport(LOG,
			(errmsg(to_worker ?
					"pg_raft hands this leader's decoding to its decoding worker" :
					"pg_raft hands this leader's decoding back to a walsender"),
			 errdetail_internal("%s", why)));
	stream_break();
	C.use_decoder = to_worker;
	C.retry_at = 0;
	C.slot_wait_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													CAPTURE_SLOT_WAIT_MS);
	SetLatch(MyLatch);
}

/*
 * Chooses where to decode, as raft.decoding says.  With auto, a walsender
 * decodes while it keeps up: it costs a small commit least.  When it falls
 * CAPTURE_BEHIND_BYTES of WAL behind the flush position (a large
 * transaction: PostgreSQL 15's walsender decodes one at about a quarter of
 * the decoding worker's speed), the decoding worker takes over, unless
 * the transactions streamed and still open hold more than
 * CAPTURE_RESTREAM_BYTES: the hand-over streams them again from their
 * start, through the log and every member's stream files.  It hands
 * back once it has kept up for CAPTURE_WALSENDER_AFTER_MS, with no
 * transaction half read, and the slot's restart point is recent: a
 * walsender starts again from there, and would otherwise decode again
 * what the worker just did.  When no worker could start (no background
 * worker slot was free), a walsender goes on for CAPTURE_WORKER_RETRY_MS
 * before auto tries again.
 */
static void
choose_decoding(TimestampTz now)
{
	XLogRecPtr	flush;
	XLogRecPtr	at;
	XLogRecPtr	restart;
	char		why[128];

	if (now < C.mode_check_at)
		return;
	C.mode_check_at = TimestampTzPlusMilliseconds(now, CAPTURE_MODE_CHECK_MS);
	if (raft_decoding != RAFT_DECODING_AUTO)
	{
		bool		to_worker = raft_decoding == RAFT_DECODING_WORKER;

		if (to_worker != C.use_decoder)
			hand_decoding_over(to_worker, to_worker ?
							   "raft.decoding is set to worker." :
							   "raft.decoding is set to walsender.");
		return;
	}
	flush = GetFlushRecPtr(NULL);
	if (C.open_streams == NIL)
		C.open_stream_bytes = 0;
	if (!C.use_decoder)
	{
		if (now - C.worker_refused_at < CAPTURE_WORKER_RETRY_MS * INT64CONST(1000))
			return;
		at = walsender_position();
		if (!XLogRecPtrIsInvalid(at) && flush > at + CAPTURE_BEHIND_BYTES &&
			C.ready == NIL && C.open_stream_bytes < CAPTURE_RESTREAM_BYTES)
		{
			snprintf(why, sizeof(why),
					 "The walsender is %llu kB of WAL behind the flush position.",
					 (unsigned long long) ((flush - at) / 1024));
			C.behind_at = now;
			hand_decoding_over(true, why);
		}
		return;
	}
	at = pg_atomic_read_u64(&RaftShmem->capture.decoded);
	if (XLogRecPtrIsInvalid(at) || flush > at + CAPTURE_BEHIND_BYTES)
	{
		C.behind_at = now;
		return;
	}
	if (now - C.behind_at < CAPTURE_WALSENDER_AFTER_MS * INT64CONST(1000) ||
		C.in_txn || C.block_xid != InvalidTransactionId || C.open_streams != NIL)
		return;
	if (!RaftSlotState(NULL, &restart, NULL) || flush > restart + CAPTURE_BEHIND_BYTES)
		return;
	hand_decoding_over(false, "The decoding worker kept up, and the slot's restart point is recent.");
}

static void
stream(uint64 commit_index)
{
	TimestampTz now;

	/* transactions whose last entry is committed are durable */
	while (C.pending != NIL)
	{
		PendingCommit *p = linitial(C.pending);

		if (p->index > commit_index)
			break;
		C.flushed = Max(C.flushed, p->end_lsn);
		C.pending = list_delete_first(C.pending);
		pfree(p);
	}

	if (!(C.use_decoder ? read_decoding_worker() : read_walsender()))
		return;

	now = GetCurrentTimestamp();
	if (C.flushed > C.reported || C.reply_requested ||
		now - C.last_feedback >= CAPTURE_FEEDBACK_MS * 1000)
		send_feedback();
	if (C.conn != NULL)
		choose_decoding(now);
}

/*
 * While the slot creation waits for the transactions that were running
 * when it began, ends those idle in a transaction (fence.c), once a
 * second after a grace period: they would hold it up indefinitely.
 */
static void
end_idle_transactions(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (now < C.idle_check_at)
		return;
	C.idle_check_at = TimestampTzPlusMilliseconds(now, CAPTURE_IDLE_GRACE_MS);
	RaftFenceEndIdleTransactions(0);
}

/*
 * Starts decoding.  In a walsender: the connection streams from the slot.
 * In the decoding worker: the worker decodes from the slot, and the
 * connection becomes a physical stream from the WAL's flush position,
 * which wakes the worker up as WAL comes.  Either way, the reports on the
 * connection are what release the commits.
 */
static void
start_streaming(void)
{
	char		command[128];
	XLogRecPtr	flush = GetFlushRecPtr(NULL);

	if (!C.use_decoder)
	{
		snprintf(command, sizeof(command),
				 "START_REPLICATION SLOT %s LOGICAL 0/0 (streaming '%s')",
				 RAFT_SLOT_NAME, raft_stream_large_transactions ? "on" : "off");
		capture_send(command, CAPTURE_STARTING);
		return;
	}
	if (!decoding_start())
	{
		if (raft_decoding == RAFT_DECODING_WORKER)
		{
			capture_fail_because("could not start the decoding worker",
								 "no background worker slot is free (raise \"max_worker_processes\")");
			return;
		}
		/* auto: slower decoding beats none; try again later */
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("pg_raft could not start its decoding worker, and decodes in a walsender"),
				 errdetail("No background worker slot is free."),
				 errhint("Raise \"max_worker_processes\": a leader needs one background worker more while it decodes a large transaction.")));
		C.use_decoder = false;
		C.worker_refused_at = GetCurrentTimestamp();
		start_streaming();
		return;
	}
	snprintf(command, sizeof(command), "START_REPLICATION PHYSICAL %X/%X",
			 LSN_FORMAT_ARGS(flush));
	capture_send(command, CAPTURE_STARTING);
}

/* Moves the connection on as far as it can go without waiting. */
static void
advance(uint64 commit_index)
{
	PGresult   *res;
	char		command[128];

	switch (C.state)
	{
		case CAPTURE_IDLE:
			if (GetCurrentTimestamp() < C.retry_at)
				return;
			/* a walsender cannot take the slot while the worker holds it */
			if (!C.use_decoder && GetCurrentTimestamp() < C.slot_wait_until)
			{
				pid_t		holder;

				if (RaftSlotState(&holder, NULL, NULL) && holder != 0)
				{
					C.retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10);
					return;
				}
			}
			capture_connect();
			return;
		case CAPTURE_CONNECTING:
			C.poll = PQconnectPoll(C.conn);
			if (C.poll == PGRES_POLLING_FAILED)
			{
				capture_fail("could not connect to the local server");
				return;
			}
			if (C.poll != PGRES_POLLING_OK)
				return;
			if (PQsetnonblocking(C.conn, 1) != 0)
			{
				capture_fail("could not set the local replication connection non-blocking");
				return;
			}
			if (C.slot_term == C.term)
			{
				start_streaming();
				return;
			}
			snprintf(command, sizeof(command),
					 "DROP_REPLICATION_SLOT %s WAIT", RAFT_SLOT_NAME);
			capture_send(command, CAPTURE_DROPPING);
			return;
		case CAPTURE_DROPPING:
			if ((res = capture_result()) == NULL)
				return;
			if (PQresultStatus(res) != PGRES_COMMAND_OK &&
				strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE) ?
					   PQresultErrorField(res, PG_DIAG_SQLSTATE) : "",
					   "42704") != 0)
			{
				PQclear(res);
				capture_fail("could not drop the old replication slot");
				return;
			}
			PQclear(res);
			snprintf(command, sizeof(command),
					 "CREATE_REPLICATION_SLOT %s LOGICAL pg_raft (SNAPSHOT 'nothing')",
					 RAFT_SLOT_NAME);
			capture_send(command, CAPTURE_CREATING);
			C.idle_check_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  CAPTURE_IDLE_GRACE_MS);
			return;
		case CAPTURE_CREATING:
			if ((res = capture_result()) == NULL)
			{
				end_idle_transactions();
				return;
			}
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				PQclear(res);
				capture_fail("could not create the replication slot");
				return;
			}
			PQclear(res);
			C.slot_term = C.term;
			start_streaming();
			return;
		case CAPTURE_STARTING:
			if ((res = capture_result()) == NULL)
				return;
			if (PQresultStatus(res) != PGRES_COPY_BOTH)
			{
				PQclear(res);
				capture_fail(C.use_decoder ? "could not start the physical stream" :
							 "could not start streaming from the slot");
				return;
			}
			PQclear(res);
			C.state = CAPTURE_STREAMING;
			C.streamed_term = C.term;
			C.last_feedback = 0;
			if (C.problem[0] != '\0')
				ereport(LOG,
						(errmsg("pg_raft captures this leader's changes again")));
			C.problem[0] = '\0';
			stream(commit_index);
			return;
		case CAPTURE_STREAMING:
			stream(commit_index);
			return;
	}
}

/* ----------------------------------------------------------------
 * The raft worker's interface
 * ----------------------------------------------------------------
 */

/*
 * Captures for the leadership of term; a new term starts afresh.  propose
 * appends an entry to the log, or returns false when there is no room yet.
 */
void
RaftCaptureRun(uint64 term, raft_id_t node_id, RaftProposeData propose)
{
	if (C.cxt == NULL)
		C.cxt = AllocSetContextCreate(TopMemoryContext, "pg_raft capture",
									  ALLOCSET_DEFAULT_SIZES);
	if (C.term == term)
		return;
	capture_reset();
	C.term = term;
	C.node_id = node_id;
	C.propose = propose;
}

/* The node no longer leads: close the stream, forget the leadership. */
void
RaftCaptureStop(void)
{
	if (C.term != 0)
		capture_reset();
}

/* One step of work; commit_index says which entries are committed. */
void
RaftCapturePoll(uint64 commit_index)
{
	CaptureState before;

	if (C.term == 0)
		return;
	/* go through as many states as are ready now */
	do
	{
		before = C.state;
		advance(commit_index);
	} while (C.state != before && C.state != CAPTURE_IDLE);
}

/*
 * Whether the leader's transactions are captured: streaming started in
 * this term.  A broken connection does not change that: commits wait for
 * the stream to resume and are shipped then.
 */
bool
RaftCaptureStreaming(void)
{
	return C.term != 0 && C.streamed_term == C.term;
}

/*
 * Whether capture streams and holds nothing that waits for Raft: every
 * transaction it has decoded is committed in the log.
 */
bool
RaftCaptureDrained(void)
{
	return RaftCaptureStreaming() && C.state == CAPTURE_STREAMING && idle_stream();
}

/*
 * Whether capture failed again and again in this leadership with nothing
 * flushed in between: the stream stops at a change it cannot ship
 * (decoder.c), or the local server refuses it.  It may never work on this
 * node, and commits wait for it: the raft worker hands leadership over.
 */
bool
RaftCaptureStuck(void)
{
	return C.term != 0 && C.failures >= CAPTURE_STUCK_FAILURES;
}

/*
 * Why capturing does not work at the moment: the last failure, or else
 * the step it waits for; "" when it streams.
 */
const char *
RaftCaptureProblem(void)
{
	if (C.problem[0] != '\0')
		return C.problem;
	if (C.term == 0)
		return "";
	switch (C.state)
	{
		case CAPTURE_IDLE:
		case CAPTURE_CONNECTING:
			return "connecting to the local server";
		case CAPTURE_DROPPING:
			return "dropping an old replication slot";
		case CAPTURE_CREATING:
			return "creating the replication slot (it waits for running transactions)";
		case CAPTURE_STARTING:
		case CAPTURE_STREAMING:
			break;
	}
	return "";
}

int
RaftCaptureWaitSockets(RaftWaitSocket *out, int max)
{
	uint32		events = WL_SOCKET_READABLE;

	/* with entries waiting for room in the log, reading waits too */
	if (max < 1 || C.conn == NULL || PQsocket(C.conn) < 0 || C.ready != NIL)
		return 0;
	if (C.state == CAPTURE_CONNECTING && C.poll == PGRES_POLLING_WRITING)
		events = WL_SOCKET_WRITEABLE;
	else if (C.state != CAPTURE_CONNECTING && PQflush(C.conn) == 1)
		events |= WL_SOCKET_WRITEABLE;
	out[0].sock = PQsocket(C.conn);
	out[0].events = events;
	out[0].connection = C.connection;
	out[0].settled = C.state != CAPTURE_CONNECTING;
	return 1;
}
