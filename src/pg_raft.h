/*-------------------------------------------------------------------------
 *
 * pg_raft.h
 *	  Shared memory, settings and the interfaces between pg_raft's files.
 *
 * NOTES
 *	  Vocabulary.  A *member* is an instance that belongs to the cluster's
 *	  configuration, as a voter or a learner.  The *directory* maps member
 *	  ids to their names and conninfo strings; it travels in the context of
 *	  every configuration entry, so the latest configuration entry of the
 *	  log always carries all of it.  A *request* is work that a backend
 *	  asks the raft worker to do (create the cluster, add a member,
 *	  commit a barrier, ...): backends never touch Raft state themselves.
 *
 *	  Shared memory holds one RaftShared, protected by RaftShared->lock:
 *	  the worker's latch, the inbox of messages that raft.deliver() queued
 *	  for the worker, the request slots, and a copy of the worker's view
 *	  that the raft.status and raft.nodes views read.  Readers take the
 *	  lock shared, copy what they need and release it before doing
 *	  anything that may fail.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_H
#define PG_RAFT_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

#include "raft/raft.h"

#define RAFT_NAME_BYTES 64
#define RAFT_CONNINFO_BYTES 1024
#define RAFT_ERROR_BYTES 512
#define RAFT_INBOX_BYTES (8 * 1024 * 1024)
#define RAFT_APPLY_QUEUE_BYTES (16 * 1024 * 1024)
#define RAFT_CAPTURE_QUEUE_BYTES (8 * 1024 * 1024)
/* the decoding worker queues its output in records of at most this much */
#define RAFT_CAPTURE_CHUNK_BYTES (1024 * 1024)
#define RAFT_MAX_REQUESTS 32

/*
 * Data entries carry at most this much of a transaction's stream: bigger
 * transactions travel in several entries (changes/changes.h).
 */
#define RAFT_DATA_PIECE_BYTES (256 * 1024)
/* The largest entry of any kind. */
#define RAFT_MAX_ENTRY_BYTES (1024 * 1024)

/* The names the leader's decoding uses: slot, plugin, application_name. */
#define RAFT_SLOT_NAME "pg_raft"
#define RAFT_CAPTURE_APPLICATION_NAME "pg_raft"
/* The file that makes an instance a member (storage.c writes it). */
#define RAFT_IDENTITY_PATH "pg_raft/identity"

/*
 * The prefix of the logical messages that carry schema changes (ddl.c,
 * transactional) and sequences' positions (sequences.c).
 */
#define RAFT_MESSAGE_PREFIX "pg_raft"

/* The replication origin under which the apply worker writes. */
#define RAFT_ORIGIN_NAME "pg_raft"
/* The sessions that restore the copy of raft.join_cluster. */
#define RAFT_COPY_APPLICATION_NAME "pg_raft_copy"

/*
 * Files of the copy of the leader's data (join.c) under pg_raft/: the
 * first exists while the copy runs, or from when the apply worker decides
 * to copy again until it has; the second says where it starts after it.
 */
#define RAFT_COPY_PENDING_FILE "copy_pending"
#define RAFT_COPY_START_FILE "copy_start"
/* the term of the leadership that the slot pg_raft belongs to (worker.c) */
#define RAFT_LED_TERM_FILE "led_term"
/* an operator asked for a new copy of the leader's data (raft.recopy) */
#define RAFT_RECOPY_FILE "recopy"

/* how long the raft worker may go without publishing its view and count as up */
#define RAFT_WORKER_SILENCE_MS 5000

/* failures in a row after which the apply worker counts as stuck */
#define RAFT_APPLY_STUCK_FAILURES 3

typedef struct RaftCopyStart
{
	uint64		index;			/* the copy holds every entry up to here */
	raft_id_t	origin;			/* the leader it was copied from ... */
	uint64		lsn;			/* ... holds its transactions that committed before this */
} RaftCopyStart;

/*
 * What RAFT_COPY_START_FILE holds.  Files written before confirmed_index
 * was kept hold the RaftCopyStart alone.
 */
typedef struct RaftCopyStartFile
{
	RaftCopyStart start;
	/* every entry of a transaction that the copy holds is at or before it */
	uint64		confirmed_index;
} RaftCopyStartFile;

/* settings (pg_raft.c) */
extern char *raft_database;
extern char *raft_local_databases;
extern int	raft_election_timeout_ms;
extern int	raft_heartbeat_interval_ms;
extern int	raft_log_keep_size_mb;
extern char *raft_http_listen;
extern char *raft_http_user;
extern char *raft_http_password;
extern char *raft_http_ssl_cert_file;
extern char *raft_http_ssl_key_file;
extern bool raft_stream_large_transactions;
/* raft.decoding: where the leader decodes its transactions (capture.c) */
typedef enum RaftDecoding
{
	RAFT_DECODING_AUTO,
	RAFT_DECODING_WALSENDER,
	RAFT_DECODING_WORKER
} RaftDecoding;
extern int	raft_decoding;
/* the slot pg_raft: whether it exists, who holds it, where it restarts */
extern bool RaftSlotState(pid_t *holder, XLogRecPtr *restart,
						  XLogRecPtr *confirmed);

/* One member as the views show it. */
typedef struct RaftMemberInfo
{
	raft_id_t	id;
	char		name[RAFT_NAME_BYTES];
	char		conninfo[RAFT_CONNINFO_BYTES];
	bool		voter;
	bool		is_leader;
	bool		reachable;
	TimestampTz last_contact;	/* last message received from it; 0 never */
	uint64		match_index;	/* leader's view; for self, last index */
	uint64		commit_index;	/* as the member last reported it */
	uint64		applied_index;	/* data applied, as the member last reported it */
	uint64		lag_entries;
	uint64		lag_bytes;
	int64		replay_lag_us;	/* -1 when unknown */
} RaftMemberInfo;

/* The worker's view of the cluster, published after every loop. */
typedef struct RaftView
{
	bool		configured;
	uint64		cluster_id;
	raft_id_t	node_id;
	char		node_name[RAFT_NAME_BYTES];
	raft_role	role;
	bool		is_learner;
	uint64		term;
	raft_id_t	leader_id;
	char		leader_name[RAFT_NAME_BYTES];
	char		leader_conninfo[RAFT_CONNINFO_BYTES];
	uint64		first_index;
	uint64		last_index;
	uint64		commit_index;
	uint64		applied_index;	/* data applied by the apply worker */
	uint64		log_bytes;
	uint64		archive_bytes;	/* the log's archive (compacted segments kept) */
	bool		writable;		/* leader, caught up, its changes captured */
	TimestampTz lease_until;	/* ... and it may take writes alone until then */
	bool		serves_copies;	/* ... except that too few hold the log's data */
	char		not_writable_reason[RAFT_ERROR_BYTES];
	TimestampTz updated;
	uint32		n_members;
	RaftMemberInfo members[RAFT_MAX_MEMBERS];
} RaftView;

typedef enum RaftRequestType
{
	RAFT_REQUEST_CREATE,		/* bootstrap a one-node cluster here */
	RAFT_REQUEST_ADOPT,			/* become node_id of cluster_id, as a joiner */
	RAFT_REQUEST_ADD,			/* leader: add a learner */
	RAFT_REQUEST_REMOVE,		/* leader: remove a member */
	RAFT_REQUEST_TRANSFER,		/* leader: hand leadership over */
	RAFT_REQUEST_BARRIER		/* leader: commit a no-op */
} RaftRequestType;

typedef enum RaftRequestState
{
	RAFT_REQUEST_FREE = 0,
	RAFT_REQUEST_QUEUED,		/* waiting for the worker */
	RAFT_REQUEST_RUNNING,		/* the worker started it */
	RAFT_REQUEST_DONE,			/* result is set */
	RAFT_REQUEST_ABANDONED		/* the backend gave up; worker frees it */
} RaftRequestState;

typedef struct RaftRequest
{
	RaftRequestState state;
	RaftRequestType type;
	Latch	   *requester_latch;
	/* arguments */
	char		name[RAFT_NAME_BYTES];
	char		conninfo[RAFT_CONNINFO_BYTES];
	uint64		cluster_id;
	raft_id_t	node_id;
	/* ADOPT: the leader that added us, so that we can answer it */
	raft_id_t	leader_id;
	char		leader_name[RAFT_NAME_BYTES];
	char		leader_conninfo[RAFT_CONNINFO_BYTES];
	/* the worker's bookkeeping */
	uint64		wait_index;		/* done once this index is applied */
	uint64		wait_term;		/* ... and still holds an entry of this term */
	TimestampTz deadline;
	/* result: errcode 0 on success, else an SQLSTATE and messages */
	int			sqlerrcode;
	char		message[RAFT_ERROR_BYTES];
	char		detail[RAFT_ERROR_BYTES];
	char		hint[RAFT_ERROR_BYTES];
	uint64		result_index;
	raft_id_t	result_node_id;
	char		result_name[RAFT_NAME_BYTES];
} RaftRequest;

/*
 * The last message sequence accepted from each sender (replay defence),
 * and the applied index its frames carry.
 */
typedef struct RaftSenderSeq
{
	raft_id_t	node_id;
	uint64		incarnation;
	uint64		seq;
	uint64		applied_index;	/* as its last accepted frame said */
} RaftSenderSeq;

/* A ring of length-prefixed records (ring.c). */
typedef struct RaftRing
{
	uint64		head;			/* total bytes ever written */
	uint64		tail;			/* total bytes ever read */
	uint64		size;
	char	   *data;
} RaftRing;

/*
 * Committed entries on their way from the raft worker to the apply worker.
 * The apply worker says where it wants to start by bumping generation with
 * from_index set; the raft worker then empties the ring and fills it from
 * there, and sets served_generation.
 */
typedef struct RaftApplyQueue
{
	pid_t		apply_pid;
	Latch	   *apply_latch;
	uint64		generation;
	uint64		from_index;
	uint64		served_generation;
	bool		compacted;		/* from_index is before the log's base */
	uint64		log_base;		/* ... which was this */
	uint64		done_index;		/* every entry up to here is applied */
	uint64		kept_index;		/* ... or kept in the apply worker's spool */
	TimestampTz done_commit_time;	/* commit time of the last transaction applied */
	/* transactions of an earlier leadership that never reached the log */
	uint64		diverged_transactions;
	char		diverged_file[MAXPGPATH];
	/* the apply worker empties the database and copies the leader's */
	bool		resyncing;
	TimestampTz resync_started;	/* when it last began to */
	/*
	 * The apply worker's last error, while it fails to go on: since when,
	 * and how many times in a row (apply.c).  Stuck after
	 * RAFT_APPLY_STUCK_FAILURES: worker.c then keeps this node from leading.
	 */
	char		apply_error[RAFT_ERROR_BYTES];
	TimestampTz apply_error_since;
	uint32		apply_failures;
	/*
	 * A leader of settle_term found the slot of an earlier leadership: the
	 * apply worker settles it once every entry before settle_before is
	 * applied, then sets settled_term (worker.c, repair.c).
	 */
	uint64		settle_term;
	uint64		settle_before;
	uint64		settled_term;
	RaftRing	ring;
} RaftApplyQueue;

/*
 * What the decoding worker (decoding.c) decodes, on its way to capture in
 * the raft worker (capture.c).  Capture starts a decoding worker for a
 * generation, and bumps generation to stop it: a worker whose generation
 * is not the current one queues nothing and exits.  Each record of the
 * ring is a chunk of a message: a byte, RAFT_CAPTURE_MORE or
 * RAFT_CAPTURE_LAST, then up to RAFT_CAPTURE_CHUNK_BYTES of it.  The
 * messages are those a walsender would send: 'w' with a write of the
 * output plugin, 'k' with the position up to which everything decoded is
 * queued.
 */
#define RAFT_CAPTURE_MORE '+'
#define RAFT_CAPTURE_LAST '.'
typedef struct RaftCaptureQueue
{
	uint64		generation;
	Latch	   *decoder_latch;
	bool		streaming;		/* the output plugin's option "streaming" */
	/* every transaction that ends before here is committed in Raft */
	XLogRecPtr	confirmed;
	bool		decoder_waits_for_room; /* the ring was full at its push */
	pg_atomic_uint64 decoded;	/* the end of the last record it decoded */
	/* the error the decoding worker of error_generation stopped with */
	uint64		error_generation;
	int			error_code;		/* its SQLSTATE */
	char		error[RAFT_ERROR_BYTES];
	RaftRing	ring;
} RaftCaptureQueue;

/* An entry in the apply queue: this header, then the entry's data. */
typedef struct RaftQueuedEntry
{
	uint64		index;
	uint64		term;
	uint8		type;
} RaftQueuedEntry;

/*
 * A latency histogram in shared memory (metrics.c): counts per bucket of
 * RaftLatencyBounds (not cumulative; the last bucket is above them all),
 * their sum in microseconds, updated without a lock.
 */
#define RAFT_LATENCY_BUCKETS 13
typedef struct RaftHistogram
{
	pg_atomic_uint64 buckets[RAFT_LATENCY_BUCKETS + 1];
	pg_atomic_uint64 sum_us;
} RaftHistogram;

/*
 * Counters for /metrics and raft.metrics, kept across restarts of the
 * workers (not of the server): monitoring takes the rate of them.
 */
typedef struct RaftCounters
{
	pg_atomic_uint64 elections;		/* campaigns this member started */
	pg_atomic_uint64 elections_won;
	pg_atomic_uint64 leader_changes;	/* a leader other than the last one seen */
	pg_atomic_uint64 apply_errors;	/* failed attempts of the apply worker */
	RaftHistogram log_sync;		/* durable appends to the log (fdatasync) */
	RaftHistogram commit;		/* leader: entry appended to a majority holding it */
} RaftCounters;

typedef struct RaftShared
{
	LWLock	   *lock;
	pid_t		worker_pid;
	Latch	   *worker_latch;
	uint64		cluster_id;		/* 0 until the node belongs to a cluster */
	bool		member;			/* it does, even while its worker is down */
	raft_id_t	node_id;
	uint64		role_epoch;		/* bumped when the node gains or loses leadership */
	/* the bootstrap superuser, as whom the leader connects to itself */
	char		superuser_name[NAMEDATALEN];
	/*
	 * The leader's data is being copied here (join.c): the apply worker
	 * waits, unless it is the one copying, and the sessions restoring the
	 * copy pass the fence.
	 */
	bool		copying;
	/* bumped by setval() and ALTER SEQUENCE on the leader (sequences.c) */
	pg_atomic_uint64 sequence_generation;
	/* the apply worker's replication origin; 0 until it has started */
	pg_atomic_uint32 apply_origin;
	/*
	 * Until when a transaction that wrote may commit here: the view's
	 * lease_until while the node takes writes or hands over, else 0.
	 * Read without the lock on every commit (fence.c).
	 */
	pg_atomic_uint64 commits_until;

	/* messages that raft.deliver() queued for the worker */
	RaftRing	inbox;
	uint64		inbox_dropped;	/* messages refused because it was full */
	RaftSenderSeq senders[RAFT_MAX_MEMBERS * 2];

	RaftApplyQueue apply;
	RaftCaptureQueue capture;
	RaftCounters counters;

	RaftRequest requests[RAFT_MAX_REQUESTS];
	RaftView	view;
	char		inbox_data[RAFT_INBOX_BYTES];
	char		apply_data[RAFT_APPLY_QUEUE_BYTES];
	char		capture_data[RAFT_CAPTURE_QUEUE_BYTES];
} RaftShared;

extern RaftShared *RaftShmem;

/* pg_raft.c */
extern Size RaftShmemSize(void);

/* worker.c */
extern PGDLLEXPORT void RaftWorkerMain(Datum main_arg);
extern uint64 RaftNewConnectionNumber(void);

/*
 * A socket the raft worker waits on, and for what (WL_SOCKET_*).  Each
 * connection gets a new number when it starts, so that the worker knows a
 * socket of a new connection that happens to reuse a closed one's
 * descriptor; settled is false while libpq may still replace the socket
 * (a connection being made).
 */
typedef struct RaftWaitSocket
{
	pgsocket	sock;
	uint32		events;
	uint64		connection;
	bool		settled;
} RaftWaitSocket;

/* transport.c: the sending side runs in the worker */
extern void RaftTransportInit(uint64 cluster_id, raft_id_t self_id);
extern void RaftTransportSetPeer(raft_id_t id, const char *conninfo);
extern void RaftTransportDropPeer(raft_id_t id);
extern void RaftTransportSend(raft_id_t to, const uint8 *msg, size_t len);
extern void RaftTransportSetApplied(uint64 applied_index);
extern bool RaftTransportAppliedUnsent(raft_id_t to);
extern bool RaftTransportPeerGone(raft_id_t id);
extern bool RaftTransportSettled(void);
extern void RaftTransportPoll(void);
extern int	RaftTransportWaitSockets(RaftWaitSocket *out, int max);
extern void RaftTransportShutdown(void);
/* ... and the receiving side, in a backend running raft.deliver() */
extern void RaftTransportReceive(const uint8 *frame, size_t len);
/* the worker drains the inbox */
extern bool RaftInboxPop(uint8 *buf, size_t cap, size_t *len);

/* ring.c; callers hold RaftShmem->lock exclusively */
extern void RaftRingInit(RaftRing *ring, char *data, uint32 size);
extern uint64 RaftRingRecordBytes(uint32 len);
extern bool RaftRingPush(RaftRing *ring, const void *a, uint32 a_len,
						 const void *b, uint32 b_len);
extern bool RaftRingPop(RaftRing *ring, void *buf, uint32 cap, uint32 *len);
extern void RaftRingClear(RaftRing *ring);

/* fence.c */
extern void RaftFenceInit(void);
extern void RaftFenceAdoptEpoch(void);
extern void RaftFenceEndSyncWaiters(void);
extern bool RaftFenceSyncWaiters(void);
extern bool RaftFenceStatementsRunning(TimestampTz began_before, Latch *requester);
extern void RaftFenceEndIdleTransactions(TimestampTz began_before);
extern bool RaftFenceTakesWrites(char *reason, size_t reason_len);

/*
 * capture.c: the leader's consumer of its own logical decoding stream, in
 * the raft worker.  It proposes data entries through the callback and
 * reports the stream's flush position once they are committed.
 */
typedef bool (*RaftProposeData) (const void *data, uint32 len, uint64 *index);
extern void RaftCaptureRun(uint64 term, raft_id_t node_id, RaftProposeData propose);
extern void RaftCaptureStop(void);
extern void RaftCapturePoll(uint64 commit_index);
extern bool RaftCaptureStreaming(void);
extern bool RaftCaptureDrained(void);
extern const char *RaftCaptureProblem(void);
extern bool RaftCaptureStuck(void);
extern char *RaftLocalSocketDirectory(void);
extern int	RaftCaptureWaitSockets(RaftWaitSocket *out, int max);

/* decoding.c */
extern bool raft_am_decoding_worker;
extern PGDLLEXPORT void RaftDecodingWorkerMain(Datum arg);

/* decoder.c: writing and reading a change stream (changes/changes.h) */
struct chg_arrays;
struct chg_message;
extern void RaftAppendToStringInfo(void *arg, const void *data, size_t len);
extern void RaftChangeArraysInit(struct chg_arrays *arrays);
extern bool RaftChangeRead(const uint8 *buf, size_t len, size_t *offset,
						   const struct chg_arrays *arrays,
						   struct chg_message *m);

/* ddl.c: schema changes through the log */
extern void RaftDdlInit(void);
extern void RaftDdlReplay(const struct chg_message *m);

/* sequences.c: sequences never go back */
extern void RaftSequencesInit(void);
extern void RaftSequencesChanged(void);
extern void RaftSequenceApply(const struct chg_message *m);
extern void RaftAdvanceSequence(Oid seqoid, int64 lowest, int64 highest);

/* apply.c */
typedef struct RaftApplyState RaftApplyState;
extern RaftApplyState *RaftApplyBegin(MemoryContext parent);
extern void RaftApplyPiece(RaftApplyState *state, const uint8 *buf, size_t len);
extern void RaftApplyEnd(RaftApplyState *state);
extern PGDLLEXPORT void RaftApplyWorkerMain(Datum main_arg);

/*
 * metrics.c: what the health API and the metrics read of this member,
 * taken in one look under the lock (RaftReadMemberState)
 */
typedef struct RaftMemberState
{
	bool		member;			/* in a cluster (even with its worker down) */
	bool		configured;		/* the raft worker runs the cluster */
	bool		worker_up;		/* ... and published its view lately */
	raft_role	role;
	bool		leader_heard;	/* a follower that hears from its leader */
	uint64		commit_index;
	uint64		applied_index;
	int64		replay_lag_us;	/* of this member's data; -1 unknown */
	bool		copying;		/* its data is being copied from the leader */
	uint32		apply_failures; /* in a row, 0 while it applies */
	char		apply_error[RAFT_ERROR_BYTES];
	uint64		diverged_transactions;
	uint64		inbox_dropped;
} RaftMemberState;

extern void RaftReadMemberState(RaftMemberState *ms, RaftView *view);

/* metrics.c: counters, latency histograms, and the samples of /metrics */
extern const double RaftLatencyBounds[RAFT_LATENCY_BUCKETS];
extern void RaftCountersInit(RaftCounters *counters);
extern void RaftHistogramObserve(RaftHistogram *histogram, int64 elapsed_us);
extern void RaftCount(pg_atomic_uint64 *counter, uint64 n);

typedef struct RaftMetricFamily
{
	const char *name;
	const char *type;			/* gauge, counter or histogram */
	const char *help;
} RaftMetricFamily;

typedef struct RaftMetricSample
{
	const RaftMetricFamily *family;
	const char *suffix;			/* "", or _bucket, _sum, _count of a histogram */
	char		member[RAFT_NAME_BYTES];	/* the member label; "" none */
	double		le;				/* a bucket's bound; NaN for other samples */
	double		value;
} RaftMetricSample;

extern int	RaftMetricsCollect(RaftMetricSample **samples);
extern void RaftMetricsRender(StringInfo out, const RaftMetricSample *samples, int n);

/* http.c: the health API */
extern PGDLLEXPORT void RaftHttpMain(Datum main_arg);
struct sockaddr_storage;
extern bool RaftHttpParseListen(const char *value, struct sockaddr_storage *addr,
								socklen_t *addr_len, char *problem, size_t problem_len);

/* sql.c: backends hand work to the worker and wait for it */
extern void RaftRunRequest(RaftRequest *req, int timeout_ms);

#endif							/* PG_RAFT_H */
