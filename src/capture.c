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
 *	  leadership holds nothing this one may ship), then starts a decoding
 *	  worker (decoding.c), which decodes from the slot with the pg_raft
 *	  output plugin (decoder.c) and queues the plugin's writes in shared
 *	  memory, and turns the connection into a physical stream from the
 *	  WAL's flush position.  The WAL that stream brings is not used: it
 *	  only says that there is more to decode, and wakes the decoding worker
 *	  up.  What the stream is for is the other way: the reports of the
 *	  standby it stands for.
 *
 *	  Each transaction's stream is cut into data entries of at most
 *	  RAFT_DATA_PIECE_BYTES (see changes/changes.h) and proposed.  The
 *	  position reported on the physical stream as written and flushed
 *	  moves past a transaction only once its last entry is committed in
 *	  Raft.  With synchronous_standby_names naming pg_raft, that report is
 *	  what releases the client's COMMIT: every acknowledged transaction is
 *	  in a majority of the members' logs.  When nothing is waiting for
 *	  Raft, the position up to which the decoding worker has decoded
 *	  everything is reported as it comes, which releases the commits of
 *	  transactions that replicate nothing.  The decoding worker confirms
 *	  the slot up to the reported position.
 *
 *	  Decoding does not run in a walsender: PostgreSQL 15's walsender
 *	  polls its client with a recv() before every WAL record, which cost
 *	  three quarters of its time in a large transaction
 *	  (docs/benchmarks.md), and the COMMIT waits for the decoding.
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
 *	  block), and one whose commit was proposed already, streamed again,
 *	  gets an abort in place of a second commit.
 *
 *	  The connection goes through states, each waiting for its socket:
 *
 *		idle -> connecting -> dropping the slot -> creating it ->
 *		starting (the decoding worker and the physical stream) -> streaming
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

/* Closes the connection and retries later; what was captured is kept. */
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
	decoding_stop();
	if (C.conn != NULL)
		PQfinish(C.conn);
	C.conn = NULL;
	C.state = CAPTURE_IDLE;
	C.retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 CAPTURE_RETRY_MS);
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
	C.flushed = InvalidXLogRecPtr;
	C.reported = InvalidXLogRecPtr;
	C.retry_at = 0;
	C.problem[0] = '\0';
	C.failures = 0;
	C.failed_flushed = InvalidXLogRecPtr;
	if (C.cxt != NULL)
		MemoryContextReset(C.cxt);
	C.chunk = NULL;
	C.message = NULL;
	C.piece = NULL;
	C.ready = NIL;
	C.pending = NIL;
	C.open_streams = NIL;
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

/*
 * A streamed transaction committed.  One whose commit was proposed in this
 * term already was streamed again after a reconnect: the followers are
 * told to drop that second copy instead.
 */
static void
stream_commit(const chg_message *m, const uint8 *buf, size_t len)
{
	C.open_streams = list_delete_oid(C.open_streams, m->xid);
	if (m->lsn <= C.last_proposed_final_lsn)
	{
		queue_stream_abort(m->xid);
		return;
	}
	queue_stream_message(m->xid, buf, len, true, m->end_lsn);
	C.last_proposed_final_lsn = m->lsn;
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
				stream_block_start(&m, buf, len);
				return;
			case CHG_STREAM_ABORT:
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
		stream_block_take(buf, len);
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
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (RaftShmem->capture.generation == C.decoder_generation &&
		C.flushed > RaftShmem->capture.confirmed)
		RaftShmem->capture.confirmed = C.flushed;
	LWLockRelease(RaftShmem->lock);
	C.reported = C.flushed;
	C.last_feedback = GetCurrentTimestamp();
	C.reply_requested = false;
}

/*
 * Handles one message of the decoding worker, as a walsender would have
 * sent it; false when it failed.
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
	capture_fail_because("unexpected message from the decoding worker", "");
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

/* Wakes the decoding worker up if it waits for room in the ring. */
static void
wake_decoder_for_room(void)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (RaftShmem->capture.decoder_waits_for_room)
	{
		RaftShmem->capture.decoder_waits_for_room = false;
		if (RaftShmem->capture.decoder_latch != NULL)
			SetLatch(RaftShmem->capture.decoder_latch);
	}
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
 * length in *len, 0 when there is none.
 */
static void
pop_decoded_chunk(uint32 *len)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (!RaftRingPop(&RaftShmem->capture.ring, C.chunk,
					 RAFT_CAPTURE_CHUNK_BYTES + 1, len))
		*len = 0;
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

static void
stream(uint64 commit_index)
{
	size_t		budget = CAPTURE_READ_BUDGET_BYTES;
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

	if (!PQconsumeInput(C.conn))
	{
		capture_fail("lost the local replication connection");
		return;
	}
	for (;;)
	{
		char	   *msg;
		int			len = PQgetCopyData(C.conn, &msg, 1);

		if (len == 0)
			break;
		if (len < 0)
		{
			capture_fail("the local replication stream ended");
			return;
		}
		if (!take_physical_message(msg, len))
		{
			PQfreemem(msg);
			return;
		}
		PQfreemem(msg);
	}

	if (propose_ready())
	{
		bool		popped = false;

		while (budget > 0 && C.ready == NIL)
		{
			uint32		len;

			pop_decoded_chunk(&len);
			if (len == 0)
				break;
			popped = true;
			appendBinaryStringInfo(C.message, C.chunk + 1, len - 1);
			budget = (size_t) len >= budget ? 0 : budget - len;
			if (C.chunk[0] != RAFT_CAPTURE_LAST)
				continue;
			if (!take_decoded_message(C.message->data, C.message->len))
				return;
			resetStringInfo(C.message);
			propose_ready();
		}
		if (popped)
			wake_decoder_for_room();
		/* more may wait in the ring: come back at once */
		if (budget == 0)
			SetLatch(MyLatch);
	}
	if (!decoder_alive())
		return;

	now = GetCurrentTimestamp();
	if (C.flushed > C.reported || C.reply_requested ||
		now - C.last_feedback >= CAPTURE_FEEDBACK_MS * 1000)
		send_feedback();
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
 * Starts the decoding worker, which decodes from the slot, and the
 * physical stream from the WAL's flush position, which wakes the worker
 * up as WAL comes and carries the reports that release the commits.
 */
static void
start_streaming(void)
{
	char		command[128];
	XLogRecPtr	flush = GetFlushRecPtr(NULL);

	if (!decoding_start())
	{
		capture_fail_because("could not start the decoding worker",
							 "no background worker slot is free (raise \"max_worker_processes\")");
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
			if (GetCurrentTimestamp() >= C.retry_at)
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
				capture_fail("could not start the physical stream");
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
