/*-------------------------------------------------------------------------
 *
 * decoding.c
 *	  The decoding worker: the leader's transactions decoded with the
 *	  pg_raft output plugin in a background worker of pg_raft's own, for
 *	  capture in the raft worker.
 *
 * NOTES
 *	  Capture (capture.c) starts one, as a dynamic background worker, when
 *	  it hands decoding to it, and stops it by moving
 *	  RaftShmem->capture.generation on.  The worker acquires the slot
 *	  pg_raft (an error if another process still holds it after two
 *	  seconds), decodes the
 *	  WAL from the slot's position as far as it is flushed, and queues each
 *	  write of the plugin (decoder.c) in RaftShmem->capture.ring as the
 *	  message a walsender would have sent: 'w' with the write, and, each
 *	  time it has caught up with the WAL, 'k' with the position up to which
 *	  everything decoded is queued.
 *
 *	  A walsender does the same decoding (and capture uses one while it
 *	  keeps up), but PostgreSQL 15's walsender polls its client with a
 *	  recv() before every WAL record: for a million-row transaction that
 *	  took three quarters of its 4.2 s of CPU against 0.9 s for the
 *	  decoding itself (bench/decoding.sh, docs/benchmarks.md), and the
 *	  leader's COMMIT waits for the decoding.  The worker publishes how far
 *	  it decoded in RaftShmem->capture.decoded, for capture to see whether
 *	  it keeps up.
 *
 *	  With no WAL left to decode, it waits on its latch, which capture sets
 *	  when WAL arrives on the physical stream it keeps with its own server
 *	  (the stream whose reports release the commits), and once a second
 *	  anyway.  Each time it wakes it confirms the slot up to
 *	  RaftShmem->capture.confirmed, which capture moves as transactions
 *	  are committed in Raft; capture does not wake it for that alone.
 *
 *	  Wakeups are what a small commit costs most, so it wakes capture only
 *	  once per batch: when it is about to wait (for WAL or for room), or
 *	  when a batch has grown to RAFT_CAPTURE_WAKE_BYTES.  A small
 *	  transaction's writes and the position after it then reach capture at
 *	  one wakeup.  When the ring is full it waits for capture to take from
 *	  it, and says so: capture wakes it once it has taken half of it.  An
 *	  error (such as a change the plugin refuses to ship) ends it, after it
 *	  has left its message in the queue for capture to report.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "access/xlogutils.h"
#include "access/xlogreader.h"
#include "miscadmin.h"
#include "libpq/pqformat.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "pgstat.h"
#include "port/pg_bswap.h"
#include "postmaster/bgworker.h"
#include "replication/decode.h"
#include "replication/logical.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "pg_raft.h"

/* the header of a walsender's 'w' message: kind, start, end, time */
#define DECODED_W_HEADER (1 + 8 + 8 + 8)
/* how long the worker sleeps when nothing wakes it */
#define DECODING_NAP_MS 1000
/* how long a process that holds the slot has to let it go */
#define SLOT_RELEASE_WAIT_MS 2000
/* queued bytes after which capture is woken without waiting for the batch's end */
#define RAFT_CAPTURE_WAKE_BYTES (256 * 1024)

bool		raft_am_decoding_worker = false;

static uint64 my_generation;
static XLogRecPtr confirmed_here = InvalidXLogRecPtr;
static XLogRecPtr position_queued = InvalidXLogRecPtr;
/* bytes queued since capture was last woken */
static size_t queued_unannounced = 0;

/* Exits when capture no longer wants this worker.  Caller holds the lock. */
static void
exit_if_unwanted_locked(void)
{
	if (RaftShmem->capture.generation != my_generation)
	{
		LWLockRelease(RaftShmem->lock);
		proc_exit(0);
	}
}

/*
 * Confirms the slot up to where capture says every transaction is in
 * Raft: the slot's WAL and catalog rows before it may then go.
 */
static void
confirm_committed(void)
{
	XLogRecPtr	confirmed;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	confirmed = RaftShmem->capture.confirmed;
	LWLockRelease(RaftShmem->lock);
	if (confirmed > confirmed_here)
	{
		LogicalConfirmReceivedLocation(confirmed);
		confirmed_here = confirmed;
	}
}

/* Wakes capture for what was queued since it was last woken. */
static void
wake_capture(void)
{
	Latch	   *worker_latch;

	if (queued_unannounced == 0)
		return;
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	worker_latch = RaftShmem->worker_latch;
	LWLockRelease(RaftShmem->lock);
	if (worker_latch != NULL)
		SetLatch(worker_latch);
	queued_unannounced = 0;
}

/*
 * Waits for the latch, or a nap, after waking capture for what is queued;
 * reacts to signals and to capture.
 */
static void
nap(void)
{
	wake_capture();
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 DECODING_NAP_MS, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	confirm_committed();
}

/*
 * Queues one message, in chunks, waiting for room when the ring is full.
 * part a (a_len bytes) and part b (b_len bytes) make the message.
 */
static void
queue_message(const char *a, size_t a_len, const char *b, size_t b_len)
{
	size_t		len = a_len + b_len;
	size_t		done = 0;

	do
	{
		size_t		chunk = Min(len - done, RAFT_CAPTURE_CHUNK_BYTES);
		char		marker = done + chunk == len ? RAFT_CAPTURE_LAST : RAFT_CAPTURE_MORE;
		char	   *copy = NULL;
		const char *data;
		bool		pushed;

		/* a chunk that spans both parts (only the header is part a) */
		if (done < a_len && done + chunk > a_len)
		{
			copy = palloc(chunk);
			memcpy(copy, a + done, a_len - done);
			memcpy(copy + (a_len - done), b, chunk - (a_len - done));
			data = copy;
		}
		else
			data = done < a_len ? a + done : b + (done - a_len);
		for (;;)
		{
			LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
			exit_if_unwanted_locked();
			pushed = RaftRingPush(&RaftShmem->capture.ring, &marker, 1,
								  data, (uint32) chunk);
			if (!pushed)
				RaftShmem->capture.decoder_waits_for_room = true;
			LWLockRelease(RaftShmem->lock);
			if (pushed)
				break;
			nap();
		}
		if (copy != NULL)
			pfree(copy);
		done += chunk;
		queued_unannounced += chunk;
	} while (done < len);
	if (queued_unannounced >= RAFT_CAPTURE_WAKE_BYTES)
		wake_capture();
}

/* The output plugin's prepare_write: room for the 'w' header first. */
static void
prepare_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
			  bool last_write)
{
	resetStringInfo(ctx->out);
	pq_sendbyte(ctx->out, 'w');
	pq_sendint64(ctx->out, lsn);
	pq_sendint64(ctx->out, lsn);
	pq_sendint64(ctx->out, 0);
}

static void
do_write(LogicalDecodingContext *ctx, XLogRecPtr lsn, TransactionId xid,
		 bool last_write)
{
	Assert(ctx->out->len >= DECODED_W_HEADER);
	queue_message(ctx->out->data, DECODED_W_HEADER,
				  ctx->out->data + DECODED_W_HEADER,
				  ctx->out->len - DECODED_W_HEADER);
}

/*
 * Tells capture that everything decoded before lsn is queued: a 'k'
 * message, as a walsender's keepalive.
 */
static void
queue_position(XLogRecPtr lsn)
{
	char		msg[1 + 8 + 8 + 1];
	uint64		be;

	if (lsn <= position_queued)
		return;
	msg[0] = 'k';
	be = pg_hton64(lsn);
	memcpy(msg + 1, &be, 8);
	be = pg_hton64((uint64) GetCurrentTimestamp());
	memcpy(msg + 9, &be, 8);
	msg[17] = 0;
	queue_message(msg, sizeof(msg), NULL, 0);
	position_queued = lsn;
}

/*
 * The reader's page_read: waits until the WAL asked for is flushed, then
 * reads it as the SQL interface does.  Waiting, it has caught up: it says
 * so with the position of the last record decoded.
 */
static int
read_page(XLogReaderState *state, XLogRecPtr target_page, int req_len,
		  XLogRecPtr target_rec, char *cur_page)
{
	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		confirm_committed();
		LWLockAcquire(RaftShmem->lock, LW_SHARED);
		exit_if_unwanted_locked();
		LWLockRelease(RaftShmem->lock);
		if (target_page + req_len <= GetFlushRecPtr(NULL))
			break;
		if (!XLogRecPtrIsInvalid(state->EndRecPtr))
			queue_position(state->EndRecPtr);
		nap();
	}
	return read_local_xlog_page(state, target_page, req_len, target_rec,
								cur_page);
}

/*
 * Waits, up to SLOT_RELEASE_WAIT_MS, for the process that holds the slot
 * to let it go: the walsender that decoded before this worker (capture
 * hands decoding over, and closes its connection) is on its way out.  A
 * holder that stays makes the acquisition fail, as it should.
 */
static void
wait_for_slot_release(void)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   SLOT_RELEASE_WAIT_MS);

	for (;;)
	{
		pid_t		holder = 0;

		if (!RaftSlotState(&holder, NULL, NULL) || holder == 0 ||
			GetCurrentTimestamp() >= deadline)
			return;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		LWLockAcquire(RaftShmem->lock, LW_SHARED);
		exit_if_unwanted_locked();
		LWLockRelease(RaftShmem->lock);
	}
}

/* Decodes from the slot's position on, until told to stop. */
static void
decode(bool streaming)
{
	LogicalDecodingContext *ctx;
	List	   *options;

	wait_for_slot_release();
	ReplicationSlotAcquire(RAFT_SLOT_NAME, true);
	options = list_make1(makeDefElem("streaming",
									 (Node *) makeString(streaming ? "on" : "off"),
									 -1));
	ctx = CreateDecodingContext(InvalidXLogRecPtr, options, false,
								XL_ROUTINE(.page_read = read_page,
										   .segment_open = wal_segment_open,
										   .segment_close = wal_segment_close),
								prepare_write, do_write, NULL);
	XLogBeginRead(ctx->reader, MyReplicationSlot->data.restart_lsn);
	confirmed_here = MyReplicationSlot->data.confirmed_flush;
	for (;;)
	{
		char	   *errm = NULL;
		XLogRecord *record = XLogReadRecord(ctx->reader, &errm);

		if (errm != NULL)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read the WAL at %X/%X: %s",
							LSN_FORMAT_ARGS(ctx->reader->EndRecPtr), errm)));
		if (record != NULL)
		{
			LogicalDecodingProcessRecord(ctx, ctx->reader);
			pg_atomic_write_u64(&RaftShmem->capture.decoded,
								ctx->reader->EndRecPtr);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/* Forgets this worker in the queue, if it is still the one named there. */
static void
forget_decoder(int code, Datum arg)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (RaftShmem->capture.decoder_latch == MyLatch)
		RaftShmem->capture.decoder_latch = NULL;
	LWLockRelease(RaftShmem->lock);
}

/*
 * RaftDecodingWorkerMain
 *		The decoding worker for capture's generation arg.
 */
void
RaftDecodingWorkerMain(Datum arg)
{
	bool		streaming;

	my_generation = DatumGetUInt64(arg);
	raft_am_decoding_worker = true;
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(raft_database, NULL, 0);

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	exit_if_unwanted_locked();
	RaftShmem->capture.decoder_latch = MyLatch;
	streaming = RaftShmem->capture.streaming;
	LWLockRelease(RaftShmem->lock);
	before_shmem_exit(forget_decoder, 0);

	PG_TRY();
	{
		decode(streaming);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		Latch	   *worker_latch;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		if (RaftShmem->capture.generation == my_generation)
		{
			strlcpy(RaftShmem->capture.error, edata->message,
					sizeof(RaftShmem->capture.error));
			RaftShmem->capture.error_generation = my_generation;
			RaftShmem->capture.error_code = edata->sqlerrcode;
		}
		worker_latch = RaftShmem->worker_latch;
		LWLockRelease(RaftShmem->lock);
		if (worker_latch != NULL)
			SetLatch(worker_latch);
		PG_RE_THROW();
	}
	PG_END_TRY();
}
