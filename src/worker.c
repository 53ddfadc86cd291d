/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The raft worker: the one driver of the consensus core on an instance.
 *
 * NOTES
 *	  One background worker per instance, registered from
 *	  shared_preload_libraries (pg_raft.c).  Until the instance belongs to
 *	  a cluster it only waits for a request to create or join one.  Then
 *	  it owns the core, the durable log (storage.c) and the connections to
 *	  the peers (transport.c), and runs one event loop over its latch, the
 *	  peers' sockets and the Raft clock.  Each turn of the loop:
 *
 *		1. takes the backends' requests (create, add, remove, transfer,
 *		   barrier) from shared memory;
 *		2. steps the core with the messages raft.deliver() queued;
 *		3. ticks the core once per tenth of raft.heartbeat_interval that
 *		   passed;
 *		4. carries out every ready in the contract's fixed order: persist
 *		   term and vote, append and fsync entries, send messages, apply
 *		   committed entries, report what is persisted;
 *		5. lets the transport connect, send and read;
 *		6. finishes requests whose entries are applied, and publishes its
 *		   view for raft.status and raft.nodes;
 *		7. sleeps until a socket, the latch or the next tick wakes it.
 *
 *	  What survives a restart is on disk under $PGDATA/pg_raft/: the
 *	  identity (cluster id, node id, name), the hard state (term and vote;
 *	  the commit index is written along with them but not on every
 *	  advance, since it is only a hint), the log base with the member
 *	  directory, and the log segments.
 *
 *	  A failure to read or write that state is an ERROR: the worker exits,
 *	  the postmaster starts it again a second later, and the start-up
 *	  checks decide whether it can go on (a corrupt log keeps it down,
 *	  with the file named in the server log).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "pg_raft.h"
#include "storage.h"

/*
 * In-memory log of the core, and when to compact it.  Its arena is
 * allocated once: the raft worker's memory holds all of it once that much
 * went through the log.
 */
#define LOG_CAPACITY_ENTRIES (64 * 1024)
#define LOG_CAPACITY_BYTES (64 * 1024 * 1024)
/*
 * Payload sent to a peer and not yet acknowledged, beyond which appends
 * wait in the log: what a slow follower has not taken costs no memory in
 * the transport's queues beyond this.
 */
#define INFLIGHT_BYTES (8 * 1024 * 1024)
#define COMPACT_THRESHOLD_ENTRIES (16 * 1024)
#define COMPACT_THRESHOLD_BYTES (16 * 1024 * 1024)
#define COMPACT_MIN_ENTRIES 64
/* a learner is promoted once it applied up to this close to the commit */
#define PROMOTE_APPLY_SLACK 1024
/*
 * A member that lags (away, or copying its data) holds the leader's log back
 * only while the log stays under these: a member away for any time catches
 * up from the log in memory as long as less than that was written
 * meanwhile, then from the log's archive on disk (raft.log_keep_size), and
 * repairs every table beyond.  Well under the core's capacity, so that a
 * lagging member never fills the log and stops the cluster's writes.
 */
#define LAGGING_KEEP_BYTES (2 * COMPACT_THRESHOLD_BYTES)
#define LAGGING_KEEP_ENTRIES (2 * COMPACT_THRESHOLD_ENTRIES)
#define COMPACT_KEEP_ENTRIES 1024
#define COMPACT_KEEP_BYTES (8 * 1024 * 1024)
/* the least time between two writes of the commit index hint */
#define COMMIT_HINT_MS 1000
/* heartbeat rounds remembered for the lease: six election timeouts' worth */
#define LEASE_HEARTBEATS_KEPT 64

/* Everyone who ever was a member, so that names outlive removals. */
#define MAX_DIRECTORY 64

/*
 * When this node appended its recent entries: for the leader's replay_lag,
 * and a follower's own lag (the health API).
 */
#define LAG_SAMPLES 4096

/*
 * The sockets the worker may wait on: two per peer (its connection, and a
 * bare connection to its address: RaftTransportPeerGone), and capture's.
 */
#define MAX_WAIT_SOCKETS (2 * RAFT_MAX_MEMBERS + 1)

/*
 * How long a leader waits for an append to carry a new commit index to
 * followers that have every entry before it sends the news alone, and a
 * follower for a message to carry its applied index to the leader: under
 * load one comes sooner, and a message of its own per commit would double
 * the messages of every transaction.
 */
#define NEWS_DELAY_US 1000

/*
 * ... unless news last began to wait this long ago or more: then traffic
 * is sparse, no message is coming soon to carry it, and it goes at once.
 * At 200 transactions a second the news goes out without the delay; with
 * commits closer together than this, it waits for an append to carry it.
 */
#define NEWS_SPARSE_US 3000

/* When news that no message carried goes (news_due). */
typedef struct NewsTimer
{
	TimestampTz due;			/* when it goes; 0 while none waits */
	TimestampTz began;			/* when news last began to wait */
} NewsTimer;

typedef struct DirectoryEntry
{
	raft_id_t	id;
	char		name[RAFT_NAME_BYTES];
	char		conninfo[RAFT_CONNINFO_BYTES];
} DirectoryEntry;

typedef struct LagSample
{
	raft_index_t index;
	TimestampTz appended;
} LagSample;

/* What the worker knows about each member beyond the core's progress. */
typedef struct MemberTrack
{
	raft_id_t	id;
	TimestampTz last_contact;
	raft_index_t seen_applied;
	int64		replay_lag_us;
} MemberTrack;

typedef struct RaftWorker
{
	bool		configured;
	uint64		cluster_id;
	raft_id_t	node_id;
	char		node_name[RAFT_NAME_BYTES];

	void	   *core_mem;
	raft	   *r;
	RaftLogStore *log;
	raft_snapshot_meta base;
	raft_hard_state written_hs; /* as last written to the state file */
	/* the heartbeat contexts sent last, and when (a ring; lease_until) */
	uint64		heartbeat_context[LEASE_HEARTBEATS_KEPT];
	TimestampTz heartbeat_sent[LEASE_HEARTBEATS_KEPT];
	int			next_heartbeat;
	raft_index_t durable_last;	/* the last entry durable in the log */
	raft_index_t written_commit;	/* as last written to either file */
	raft_index_t latest_commit;	/* as the core last said */
	TimestampTz commit_hint_written;	/* when the commit hint last was */

	DirectoryEntry directory[MAX_DIRECTORY];
	int			n_directory;

	MemberTrack members[MAX_DIRECTORY];
	int			n_members;

	LagSample	lag[LAG_SAMPLES];
	TimestampTz next_tick;
	MemoryContext loop_cxt;
	/*
	 * Entries read from the log's archive for appends (read_archive): those
	 * of messages the core has not handed out yet, and those of the ready
	 * being carried out, freed once the core is told it is done.
	 */
	MemoryContext archive_cxt;
	MemoryContext archive_handed_cxt;

	/* the wait set, kept across waits, and the sockets it waits on */
	WaitEventSet *wait_set;
	RaftWaitSocket waiting[MAX_WAIT_SOCKETS];
	int			n_waiting;
	/* when a leader sends commit news no append has carried */
	NewsTimer	commit_news;
	/* when a follower tells its leader how far it applied */
	NewsTimer	progress;

	/* leadership: the term it began in and the index of its first entry */
	uint64		lead_term;
	raft_index_t lead_start;
	bool		writable;
	TimestampTz unwritable_since;	/* when it stopped taking writes, if it did */
	TimestampTz idle_ended_at;	/* when it last ended idle write transactions */
	uint64		handover_term;	/* leadership handed over in this term */
	uint64		settled_term;	/* no slot of an earlier leadership is left */
	TimestampTz leaderless_since;	/* since when no leader was heard, or 0 */
	bool		said_unsettled_campaign;	/* in this leaderless spell */

	/*
	 * A leadership transfer of drain_term waits, fenced, until the commits
	 * in flight have reached the log (or drain_deadline passes), then hands
	 * leadership to drain_target.
	 */
	uint64		drain_term;
	raft_id_t	drain_target;
	TimestampTz drain_deadline;

	/* the next committed entry to hand to the apply worker */
	raft_index_t next_to_queue;

	/* what the metrics counted last (count_events) */
	uint64		elections_counted;
	uint64		elections_won_counted;
	raft_id_t	leader_seen;
} RaftWorker;

static RaftWorker W;
static uint64 connections_started;

static void start_node(void);
static uint32_t read_archive(void *arg, raft_id_t to, raft_index_t prev,
							 raft_index_t last,
							 uint32_t max_entries, uint64_t max_bytes,
							 raft_term_t *prev_term, raft_entry *entries);
static void handle_ready(void);
static void publish_view(void);
static raft_index_t apply_done_index(void);
static bool has_other_voter(const raft_status *st);
static bool draining(const raft_status *st);

/*
 * The identity file: who this node is.  Written once, when the node
 * creates or joins a cluster.
 */
typedef struct IdentityFile
{
	uint64		cluster_id;
	raft_id_t	node_id;
	char		name[RAFT_NAME_BYTES];
} IdentityFile;

/* ----------------------------------------------------------------
 * The member directory and its encoding in configuration entries
 * ----------------------------------------------------------------
 */

static bool
config_has_member(const raft_config *config, raft_id_t id)
{
	uint32		k;

	for (k = 0; k < config->n_members; k++)
		if (config->members[k].id == id)
			return true;
	return false;
}

static DirectoryEntry *
directory_find(raft_id_t id)
{
	int			i;

	for (i = 0; i < W.n_directory; i++)
		if (W.directory[i].id == id)
			return &W.directory[i];
	return NULL;
}

static void
directory_set(raft_id_t id, const char *name, const char *conninfo)
{
	DirectoryEntry *d = directory_find(id);

	if (d == NULL)
	{
		if (W.n_directory >= MAX_DIRECTORY)
		{
			/* forget the oldest name: it belongs to a long-gone member */
			memmove(&W.directory[0], &W.directory[1],
					sizeof(DirectoryEntry) * (MAX_DIRECTORY - 1));
			W.n_directory--;
		}
		d = &W.directory[W.n_directory++];
	}
	d->id = id;
	strlcpy(d->name, name, RAFT_NAME_BYTES);
	strlcpy(d->conninfo, conninfo, RAFT_CONNINFO_BYTES);
}

static void
encode_member(StringInfo buf, raft_id_t id, const char *name,
			  const char *conninfo)
{
	uint16		name_len = strlen(name);
	uint16		conninfo_len = strlen(conninfo);

	appendBinaryStringInfo(buf, (char *) &id, sizeof(id));
	appendBinaryStringInfo(buf, (char *) &name_len, sizeof(name_len));
	appendBinaryStringInfo(buf, name, name_len);
	appendBinaryStringInfo(buf, (char *) &conninfo_len, sizeof(conninfo_len));
	appendBinaryStringInfo(buf, conninfo, conninfo_len);
}

/*
 * Serialises the directory entries of the given members (all entries when
 * config is NULL), plus an extra member when extra_id is set: u32 count,
 * then per member u32 id, u16 name length, name, u16 conninfo length,
 * conninfo.
 */
static StringInfo
directory_encode(const raft_config *config, raft_id_t extra_id,
				 const char *extra_name, const char *extra_conninfo)
{
	StringInfo	buf = makeStringInfo();
	uint32		count = 0;
	int			i;

	appendBinaryStringInfo(buf, (char *) &count, sizeof(count));
	for (i = 0; i < W.n_directory; i++)
	{
		DirectoryEntry *d = &W.directory[i];

		if (config != NULL && !config_has_member(config, d->id))
			continue;
		encode_member(buf, d->id, d->name, d->conninfo);
		count++;
	}
	if (extra_id != RAFT_NO_NODE)
	{
		encode_member(buf, extra_id, extra_name, extra_conninfo);
		count++;
	}
	memcpy(buf->data, &count, sizeof(count));
	return buf;
}

/*
 * Merges an encoded directory into ours.  The bytes come from our own log
 * (checksummed on disk and on the wire), so a malformed one means a bug:
 * it is reported and ignored rather than trusted.
 */
static void
directory_merge(const uint8 *p, size_t len)
{
	uint32		count;
	uint32		i;

	if (len < sizeof(count))
		return;
	memcpy(&count, p, sizeof(count));
	p += sizeof(count);
	len -= sizeof(count);
	for (i = 0; i < count; i++)
	{
		raft_id_t	id;
		uint16		name_len;
		uint16		conninfo_len;
		char		name[RAFT_NAME_BYTES];
		char		conninfo[RAFT_CONNINFO_BYTES];

		if (len < sizeof(id) + sizeof(name_len))
			goto malformed;
		memcpy(&id, p, sizeof(id));
		memcpy(&name_len, p + sizeof(id), sizeof(name_len));
		p += sizeof(id) + sizeof(name_len);
		len -= sizeof(id) + sizeof(name_len);
		if (name_len >= RAFT_NAME_BYTES || len < name_len + sizeof(conninfo_len))
			goto malformed;
		memcpy(name, p, name_len);
		name[name_len] = '\0';
		memcpy(&conninfo_len, p + name_len, sizeof(conninfo_len));
		p += name_len + sizeof(conninfo_len);
		len -= name_len + sizeof(conninfo_len);
		if (conninfo_len >= RAFT_CONNINFO_BYTES || len < conninfo_len)
			goto malformed;
		memcpy(conninfo, p, conninfo_len);
		conninfo[conninfo_len] = '\0';
		p += conninfo_len;
		len -= conninfo_len;
		directory_set(id, name, conninfo);
	}
	return;

malformed:
	ereport(WARNING,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("ignoring a malformed member directory in the raft log")));
}

/* Learns names and conninfo strings from a configuration entry. */
static void
directory_learn(const raft_entry *e)
{
	raft_config config;
	const uint8_t *context;
	uint32_t	context_len;

	if (e->type == RAFT_ENTRY_CONFIG &&
		raft_config_decode(e, &config, &context, &context_len) == RAFT_OK &&
		context != NULL)
		directory_merge(context, context_len);
}

/* ----------------------------------------------------------------
 * Durable state
 * ----------------------------------------------------------------
 */

/* The base file: the log base and the directory as of then. */
static void
write_base(void)
{
	StringInfo	dir = directory_encode(NULL, RAFT_NO_NODE, NULL, NULL);
	StringInfo	buf = makeStringInfo();

	appendBinaryStringInfo(buf, (char *) &W.base, sizeof(W.base));
	appendBinaryStringInfo(buf, dir->data, dir->len);
	RaftStorageWriteFile("base", buf->data, buf->len);
}

static void
read_base(void)
{
	void	   *data;
	size_t		len;

	if (!RaftStorageReadFile("base", &data, &len))
	{
		memset(&W.base, 0, sizeof(W.base));
		return;
	}
	if (len < sizeof(W.base))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft file \"%s/base\" is too short", RAFT_STORAGE_DIR)));
	memcpy(&W.base, data, sizeof(W.base));
	directory_merge((uint8 *) data + sizeof(W.base), len - sizeof(W.base));
}

static void
write_hard_state(const raft_hard_state *hs)
{
	RaftStorageWriteFile("state", hs, sizeof(*hs));
	W.written_hs = *hs;
	W.written_commit = hs->commit;
}

/*
 * Writes the commit index hint, so that a restarted node does not show a
 * much older one: without fsync, and unless forced at most every
 * COMMIT_HINT_MS (a new file for every commit was a good part of the
 * worker's time on the path of every commit).
 */
static void
write_commit_hint(bool force)
{
	TimestampTz now;

	if (W.latest_commit == W.written_commit)
		return;
	now = GetCurrentTimestamp();
	if (!force && now - W.commit_hint_written < (int64) COMMIT_HINT_MS * 1000)
		return;
	RaftStorageWriteHint("commit", &W.latest_commit, sizeof(W.latest_commit));
	W.written_commit = W.latest_commit;
	W.commit_hint_written = now;
}

/* ----------------------------------------------------------------
 * Starting the core
 * ----------------------------------------------------------------
 */

/*
 * The Raft clock ticks TICKS_PER_HEARTBEAT times per heartbeat interval.
 * A fine clock matters for failover: a follower whose election timer fires
 * asks the others for their pre-vote, and they refuse while their own
 * lease (a whole election timeout since they last heard from the leader)
 * runs; with one tick per heartbeat their clocks could differ by a whole
 * heartbeat, and a refused candidate waits a new random timeout.
 */
#define TICKS_PER_HEARTBEAT 10

/* The length of a tick in microseconds (raft.heartbeat_interval >= 10 ms). */
static int64
tick_us(void)
{
	return (int64) raft_heartbeat_interval_ms * 1000 / TICKS_PER_HEARTBEAT;
}

/*
 * Converts the timing settings into ticks of the core's clock.  An election
 * timeout under two heartbeat intervals is raised to two, as the settings'
 * descriptions require: check-quorum needs a heartbeat round per timeout.
 *
 * A quiet leader (nothing written, every member up to date) sends a round
 * every quarter election timeout instead, or every heartbeat interval if
 * that is longer: with the defaults, 4 rounds a second instead of 10.
 * The followers still hear from it four times per timeout, and its lease
 * is renewed as often; a write brings back the short interval at once.
 */
static void
timeout_ticks(uint32 *election_ticks, uint32 *heartbeat_ticks,
			  uint32 *quiet_heartbeat_ticks)
{
	*heartbeat_ticks = TICKS_PER_HEARTBEAT;
	*election_ticks = Max((uint32) ((int64) raft_election_timeout_ms * 1000 / tick_us()),
						  2 * TICKS_PER_HEARTBEAT);
	*quiet_heartbeat_ticks = Max(*heartbeat_ticks, *election_ticks / 4);
}

static void
core_options(raft_options *opts)
{
	uint64		seed;

	if (!pg_strong_random(&seed, sizeof(seed)))
		seed = (uint64) MyProcPid ^ (uint64) GetCurrentTimestamp();
	raft_options_default(opts, W.node_id, seed);
	timeout_ticks(&opts->election_timeout_ticks, &opts->heartbeat_ticks,
				  &opts->quiet_heartbeat_ticks);
	opts->log_capacity_entries = LOG_CAPACITY_ENTRIES;
	opts->log_capacity_bytes = LOG_CAPACITY_BYTES;
	opts->max_entry_bytes = RAFT_MAX_ENTRY_BYTES;
	opts->max_inflight_msgs = 32;
	opts->max_inflight_bytes = INFLIGHT_BYTES;
	opts->max_entries_per_msg = 256;
	opts->max_bytes_per_msg = 4 * 1024 * 1024;
	opts->archive_read = read_archive;
}

/*
 * The core's raft_archive_read_fn: entries compacted from its log that
 * the log's archive on disk still holds, for a member that lags.  Their
 * data lives until the ready that carries them is carried out
 * (handle_ready).
 */
static uint32_t
read_archive(void *arg, raft_id_t to, raft_index_t prev, raft_index_t last,
			 uint32_t max_entries, uint64_t max_bytes,
			 raft_term_t *prev_term, raft_entry *entries)
{
	MemoryContext old;
	uint32		n;

	if (W.archive_cxt == NULL)
	{
		W.archive_cxt = AllocSetContextCreate(TopMemoryContext,
											  "pg_raft archived entries",
											  ALLOCSET_DEFAULT_SIZES);
		W.archive_handed_cxt = AllocSetContextCreate(TopMemoryContext,
													 "pg_raft archived entries",
													 ALLOCSET_DEFAULT_SIZES);
	}
	old = MemoryContextSwitchTo(W.archive_cxt);
	n = RaftLogArchiveRead(W.log, to, prev, last, max_entries, max_bytes,
						   prev_term, entries);
	MemoryContextSwitchTo(old);
	return n;
}

/*
 * Loads identity, hard state, base and log from disk and builds the core.
 */
static void
start_node(void)
{
	IdentityFile identity;
	void	   *data;
	size_t		len;
	raft_hard_state hs;
	RaftLoadedLog loaded;
	raft_options opts;
	size_t		size;
	size_t		i;
	int			rc;
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	if (!RaftStorageReadStruct("identity", &identity, sizeof(identity)))
		elog(ERROR, "raft identity file is missing");
	W.cluster_id = identity.cluster_id;
	W.node_id = identity.node_id;
	strlcpy(W.node_name, identity.name, RAFT_NAME_BYTES);

	memset(&hs, 0, sizeof(hs));
	(void) RaftStorageReadStruct("state", &hs, sizeof(hs));
	W.written_hs = hs;
	if (RaftStorageReadHint("commit", &data, &len) && len == sizeof(uint64))
		hs.commit = Max(hs.commit, *(uint64 *) data);
	read_base();
	W.log = RaftLogOpen(W.base.index, W.base.term, &loaded);
	for (i = 0; i < loaded.n_entries; i++)
		directory_learn(&loaded.entries[i]);

	/*
	 * The commit index on disk may be older than what was applied (it is
	 * not rewritten on every advance), never newer than the log.
	 */
	if (hs.commit < W.base.index)
		hs.commit = W.base.index;
	/* the hint may outlive entries lost with an operating system crash */
	if (hs.commit > W.written_hs.commit &&
		hs.commit > W.base.index + loaded.n_entries)
		hs.commit = Max(W.written_hs.commit, W.base.index);
	W.written_commit = hs.commit;
	W.latest_commit = hs.commit;
	W.durable_last = W.base.index + loaded.n_entries;
	if (hs.commit > W.base.index + loaded.n_entries)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft log ends at index %llu, before the commit index %llu",
						(unsigned long long) (W.base.index + loaded.n_entries),
						(unsigned long long) hs.commit),
				 errdetail("Committed entries are missing from \"%s/log\".",
						   RAFT_STORAGE_DIR)));

	core_options(&opts);
	size = raft_size(&opts);
	W.core_mem = MemoryContextAllocHuge(TopMemoryContext, size);
	rc = raft_init(W.core_mem, size, &opts, &W.r);
	if (rc != RAFT_OK)
		elog(ERROR, "could not initialise the raft core: %s", raft_strerror(rc));
	/* a new core counts its elections from 0 (count_events) */
	W.elections_counted = W.elections_won_counted = 0;
	rc = raft_load(W.r, &hs, &W.base, loaded.entries, loaded.n_entries,
				   hs.commit);
	if (rc != RAFT_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("could not load the raft state from \"%s\": %s",
						RAFT_STORAGE_DIR, raft_strerror(rc))));
	for (i = 0; i < loaded.n_entries; i++)
		pfree((void *) loaded.entries[i].data);
	if (loaded.entries != NULL)
		pfree(loaded.entries);

	RaftTransportInit(W.cluster_id, W.node_id);
	W.configured = true;
	W.next_tick = GetCurrentTimestamp();

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->cluster_id = W.cluster_id;
	RaftShmem->node_id = W.node_id;
	RaftShmem->member = true;
	LWLockRelease(RaftShmem->lock);

	ereport(LOG,
			(errmsg("raft node \"%s\" (id %u) started at term %llu with log (%llu, %llu]",
					W.node_name, W.node_id, (unsigned long long) hs.term,
					(unsigned long long) W.base.index,
					(unsigned long long) (W.base.index + loaded.n_entries))));
	MemoryContextSwitchTo(old);
}

/* Writes identity, base and an empty state for a node that is new. */
static void
init_node(uint64 cluster_id, raft_id_t node_id, const char *name,
		  const char *conninfo, bool bootstrap)
{
	IdentityFile identity;
	raft_hard_state hs;

	memset(&identity, 0, sizeof(identity));
	identity.cluster_id = cluster_id;
	identity.node_id = node_id;
	strlcpy(identity.name, name, RAFT_NAME_BYTES);

	memset(&W.base, 0, sizeof(W.base));
	W.n_directory = 0;
	if (bootstrap)
	{
		W.base.config.n_members = 1;
		W.base.config.members[0].id = node_id;
		W.base.config.members[0].voter = true;
		directory_set(node_id, name, conninfo);
	}
	memset(&hs, 0, sizeof(hs));

	RaftStorageRemoveAll();
	write_base();
	write_hard_state(&hs);
	/* the identity goes last: a node is configured once it exists */
	RaftStorageWriteFile("identity", &identity, sizeof(identity));
}

/* ----------------------------------------------------------------
 * Requests from backends
 * ----------------------------------------------------------------
 */

static void
request_fail(RaftRequest *req, int sqlerrcode, const char *message,
			 const char *detail, const char *hint)
{
	req->sqlerrcode = sqlerrcode;
	strlcpy(req->message, message, RAFT_ERROR_BYTES);
	strlcpy(req->detail, detail ? detail : "", RAFT_ERROR_BYTES);
	strlcpy(req->hint, hint ? hint : "", RAFT_ERROR_BYTES);
	req->state = RAFT_REQUEST_DONE;
}

static void
request_succeed(RaftRequest *req)
{
	req->sqlerrcode = 0;
	req->state = RAFT_REQUEST_DONE;
}

/* Fails a request that only the leader can serve, naming the leader. */
static bool
require_leader(RaftRequest *req)
{
	raft_status st;
	DirectoryEntry *leader;
	char		hint[RAFT_ERROR_BYTES];

	if (!W.configured)
	{
		request_fail(req, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
					 "this node is not a member of a raft cluster", NULL,
					 "Create a cluster with raft.create_cluster() or join one with raft.join_cluster().");
		return false;
	}
	raft_get_status(W.r, &st);
	if (st.role == RAFT_LEADER)
		return true;
	leader = st.leader != RAFT_NO_NODE ? directory_find(st.leader) : NULL;
	if (leader != NULL)
		snprintf(hint, sizeof(hint),
				 "Run it on the leader, node \"%s\": %s", leader->name,
				 leader->conninfo);
	else
		snprintf(hint, sizeof(hint),
				 "No leader is known at the moment; retry once raft.status shows one.");
	request_fail(req, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
				 "this node is not the raft leader", NULL, hint);
	return false;
}

/* Maps a core return code to a request failure. */
static void
request_fail_rc(RaftRequest *req, int rc, const char *what)
{
	char		message[RAFT_ERROR_BYTES];
	int			code;

	switch (rc)
	{
		case RAFT_ERR_CONF_PENDING:
		case RAFT_ERR_TRANSFER_PENDING:
		case RAFT_ERR_NOT_COMMITTED_IN_TERM:
		case RAFT_ERR_NOT_CAUGHT_UP:
		case RAFT_ERR_LOG_FULL:
			code = ERRCODE_LOCK_NOT_AVAILABLE;
			break;
		case RAFT_ERR_UNKNOWN_NODE:
			code = ERRCODE_UNDEFINED_OBJECT;
			break;
		case RAFT_ERR_ALREADY_MEMBER:
			code = ERRCODE_DUPLICATE_OBJECT;
			break;
		case RAFT_ERR_LAST_VOTER:
		case RAFT_ERR_TOO_MANY_MEMBERS:
			code = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
			break;
		default:
			code = ERRCODE_INTERNAL_ERROR;
			break;
	}
	snprintf(message, sizeof(message), "could not %s: %s", what,
			 raft_strerror(rc));
	request_fail(req, code, message, NULL,
				 code == ERRCODE_LOCK_NOT_AVAILABLE ?
				 "Retry in a moment." : NULL);
}

static raft_id_t
member_by_name(const raft_status *st, const char *name)
{
	uint32		i;

	for (i = 0; i < st->config.n_members; i++)
	{
		DirectoryEntry *d = directory_find(st->config.members[i].id);

		if (d != NULL && strcmp(d->name, name) == 0)
			return d->id;
	}
	return RAFT_NO_NODE;
}

/* Proposes a membership change carrying the directory after it. */
static void
propose_change(RaftRequest *req, raft_conf_change_type type, raft_id_t id,
			   const raft_config *after, const char *new_name,
			   const char *new_conninfo, const char *what)
{
	StringInfo	context = directory_encode(after, type == RAFT_CONF_ADD_LEARNER ? id : RAFT_NO_NODE,
										   new_name, new_conninfo);
	raft_index_t index;
	int			rc;

	rc = raft_propose_conf_change(W.r, type, id, context->data, context->len,
								  &index);
	if (rc != RAFT_OK)
	{
		request_fail_rc(req, rc, what);
		return;
	}
	req->wait_index = index;
	req->wait_term = raft_term_at(W.r, index);
	req->result_node_id = id;
	req->state = RAFT_REQUEST_RUNNING;
}

static void
start_request(RaftRequest *req)
{
	raft_status st;

	switch (req->type)
	{
		case RAFT_REQUEST_CREATE:
		case RAFT_REQUEST_ADOPT:
			{
				bool		create = req->type == RAFT_REQUEST_CREATE;
				uint64		cluster_id = req->cluster_id;

				if (W.configured)
				{
					request_fail(req, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
								 "this node is already a member of a raft cluster",
								 NULL, "See raft.status and raft.nodes.");
					return;
				}
				while (create && cluster_id == 0)
				{
					if (!pg_strong_random(&cluster_id, sizeof(cluster_id)))
						cluster_id = (uint64) GetCurrentTimestamp();
				}
				init_node(cluster_id, create ? 1 : req->node_id, req->name,
						  req->conninfo, create);
				if (!create)
				{
					/* until the log brings the directory, know the leader */
					directory_set(req->leader_id, req->leader_name,
								  req->leader_conninfo);
					write_base();
				}
				start_node();
				if (create)
					raft_campaign_now(W.r);
				/* the caller reads raft.status next: make it true first */
				while (raft_has_ready(W.r))
					handle_ready();
				publish_view();
				req->result_node_id = W.node_id;
				request_succeed(req);
				return;
			}
		case RAFT_REQUEST_ADD:
			{
				raft_config after;
				raft_id_t	id = 0;
				int			i;

				if (!require_leader(req))
					return;
				raft_get_status(W.r, &st);
				if (member_by_name(&st, req->name) != RAFT_NO_NODE)
				{
					char		message[RAFT_ERROR_BYTES];

					snprintf(message, sizeof(message),
							 "a member named \"%s\" already exists", req->name);
					request_fail(req, ERRCODE_DUPLICATE_OBJECT, message, NULL,
								 "Choose another node name, or remove the old member first.");
					return;
				}
				/* ids are never reused: pick one above every id ever seen */
				for (i = 0; i < W.n_directory; i++)
					id = Max(id, W.directory[i].id);
				for (i = 0; i < (int) st.config.n_members; i++)
					id = Max(id, st.config.members[i].id);
				id++;
				after = st.config;
				propose_change(req, RAFT_CONF_ADD_LEARNER, id, &after,
							   req->name, req->conninfo, "add the member");
				req->cluster_id = W.cluster_id;
				return;
			}
		case RAFT_REQUEST_REMOVE:
			{
				raft_config after;
				raft_id_t	id;
				uint32		i;
				uint32		k = 0;

				if (!require_leader(req))
					return;
				raft_get_status(W.r, &st);
				id = member_by_name(&st, req->name);
				if (id == RAFT_NO_NODE)
				{
					char		message[RAFT_ERROR_BYTES];

					snprintf(message, sizeof(message),
							 "no member named \"%s\"", req->name);
					request_fail(req, ERRCODE_UNDEFINED_OBJECT, message, NULL,
								 "See raft.nodes for the members.");
					return;
				}
				memset(&after, 0, sizeof(after));
				for (i = 0; i < st.config.n_members; i++)
					if (st.config.members[i].id != id)
						after.members[k++] = st.config.members[i];
				after.n_members = k;
				propose_change(req, RAFT_CONF_REMOVE, id, &after, NULL, NULL,
							   "remove the member");
				return;
			}
		case RAFT_REQUEST_TRANSFER:
			{
				raft_id_t	target = RAFT_NO_NODE;

				if (!require_leader(req))
					return;
				raft_get_status(W.r, &st);
				if (req->name[0] != '\0')
				{
					char		message[RAFT_ERROR_BYTES];

					target = member_by_name(&st, req->name);
					if (target == RAFT_NO_NODE)
					{
						snprintf(message, sizeof(message),
								 "no member named \"%s\"", req->name);
						request_fail(req, ERRCODE_UNDEFINED_OBJECT, message,
									 NULL, "See raft.nodes for the members.");
						return;
					}
					if (target == W.node_id)
					{
						strlcpy(req->result_name, W.node_name, RAFT_NAME_BYTES);
						request_succeed(req);
						return;
					}
				}
				if (target == RAFT_NO_NODE && !has_other_voter(&st))
				{
					request_fail(req, ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
								 "there is no other voter to hand leadership to",
								 NULL, NULL);
					return;
				}
				/* first the commits in flight reach the log (check_request) */
				W.drain_term = st.term;
				W.drain_target = target;
				W.drain_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															   raft_election_timeout_ms);
				req->wait_term = st.term;
				req->state = RAFT_REQUEST_RUNNING;
				return;
			}
		case RAFT_REQUEST_BARRIER:
			{
				raft_index_t index;
				int			rc;

				if (!require_leader(req))
					return;
				rc = raft_propose(W.r, RAFT_ENTRY_NOOP, NULL, 0, &index);
				if (rc != RAFT_OK)
				{
					request_fail_rc(req, rc, "commit a barrier");
					return;
				}
				req->wait_index = index;
				req->wait_term = raft_term_at(W.r, index);
				req->state = RAFT_REQUEST_RUNNING;
				return;
			}
	}
}

/*
 * Has a later leader overwritten the request's entry, or truncated it away
 * from this former leader's log?
 */
static bool
entry_discarded(const RaftRequest *req, const raft_status *st)
{
	bool		in_log = req->wait_index >= st->first_index &&
		req->wait_index <= st->last_index;

	if (in_log)
		return raft_term_at(W.r, req->wait_index) != req->wait_term;
	return req->wait_index > st->last_index && st->role != RAFT_LEADER;
}

/* Whether a voter other than this node exists. */
static bool
has_other_voter(const raft_status *st)
{
	uint32		i;

	for (i = 0; i < st->config.n_members; i++)
		if (st->progress[i].voter && st->progress[i].id != W.node_id)
			return true;
	return false;
}

/*
 * Whether this leader is handing its leadership over and waits, fenced,
 * for the commits in flight to reach the log first: a transfer must not
 * leave them outside the log, to be repaired away (and their clients told
 * their commit failed).
 */
static bool
draining(const raft_status *st)
{
	return W.drain_term != 0 && W.drain_term == st->term &&
		st->role == RAFT_LEADER;
}

/*
 * Finishes running requests whose entry is applied, or fails them when the
 * entry was lost to a leader change.
 */
static void
check_request(RaftRequest *req)
{
	raft_status st;

	raft_get_status(W.r, &st);
	if (req->type == RAFT_REQUEST_TRANSFER)
	{
		DirectoryEntry *d;

		if (draining(&st))
		{
			int			rc;

			/*
			 * Once the fence is up (the published view says no writes), a
			 * statement that began before may still write: it must end
			 * and its commit reach the log too.
			 */
			if (!RaftCaptureDrained() || RaftFenceSyncWaiters() || W.writable ||
				RaftFenceStatementsRunning(W.unwritable_since, req->requester_latch))
			{
				if (GetCurrentTimestamp() < W.drain_deadline)
					return;
			}
			W.drain_term = 0;
			rc = raft_transfer_leadership(W.r, W.drain_target);
			if (rc != RAFT_OK)
				request_fail_rc(req, rc, "transfer leadership");
			return;
		}
		W.drain_term = 0;
		if (st.role == RAFT_LEADER && st.transfer_target != RAFT_NO_NODE)
			return;				/* still transferring */
		if (st.role == RAFT_LEADER)
		{
			request_fail(req, ERRCODE_LOCK_NOT_AVAILABLE,
						 "leadership transfer did not complete",
						 "The target did not win an election within the election timeout.",
						 "Check that the target is reachable and caught up (raft.nodes), then retry.");
			return;
		}
		if (st.leader == RAFT_NO_NODE)
			return;				/* the election is under way */
		d = directory_find(st.leader);
		strlcpy(req->result_name, d ? d->name : "", RAFT_NAME_BYTES);
		request_succeed(req);
		return;
	}

	if (entry_discarded(req, &st))
	{
		request_fail(req, ERRCODE_T_R_SERIALIZATION_FAILURE,
					 "the entry was discarded by a leader change",
					 NULL, "Retry on the new leader.");
		return;
	}
	if (st.applied_index < req->wait_index)
		return;
	req->result_index = req->wait_index;
	request_succeed(req);
}

/*
 * Takes queued requests and checks running ones.  Backends are woken when
 * their request is done.
 */
static void
process_requests(void)
{
	int			i;

	for (i = 0; i < RAFT_MAX_REQUESTS; i++)
	{
		RaftRequest *req = &RaftShmem->requests[i];
		RaftRequest work;
		RaftRequestState state;

		LWLockAcquire(RaftShmem->lock, LW_SHARED);
		state = req->state;
		if (state == RAFT_REQUEST_QUEUED || state == RAFT_REQUEST_RUNNING)
			work = *req;
		LWLockRelease(RaftShmem->lock);

		if (state == RAFT_REQUEST_ABANDONED)
		{
			LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
			if (req->state == RAFT_REQUEST_ABANDONED)
				req->state = RAFT_REQUEST_FREE;
			LWLockRelease(RaftShmem->lock);
			continue;
		}
		if (state != RAFT_REQUEST_QUEUED && state != RAFT_REQUEST_RUNNING)
			continue;

		if (state == RAFT_REQUEST_QUEUED)
			start_request(&work);
		else if (W.configured)
			check_request(&work);
		if (work.state == state && state == RAFT_REQUEST_RUNNING)
			continue;

		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		if (req->state == RAFT_REQUEST_ABANDONED)
			req->state = RAFT_REQUEST_FREE;
		else
		{
			Latch	   *latch = req->requester_latch;

			*req = work;
			if (work.state == RAFT_REQUEST_DONE && latch != NULL)
				SetLatch(latch);
		}
		LWLockRelease(RaftShmem->lock);
	}
}

/* ----------------------------------------------------------------
 * The core's side of the loop
 * ----------------------------------------------------------------
 */

static MemberTrack *
member_track(raft_id_t id)
{
	int			i;

	for (i = 0; i < W.n_members; i++)
		if (W.members[i].id == id)
			return &W.members[i];
	if (W.n_members >= MAX_DIRECTORY)
		return NULL;
	W.members[W.n_members].id = id;
	W.members[W.n_members].last_contact = 0;
	W.members[W.n_members].seen_applied = 0;
	W.members[W.n_members].replay_lag_us = -1;
	return &W.members[W.n_members++];
}

/* Whether a frame came from the member of t within an election timeout. */
static bool
heard_lately(const MemberTrack *t, TimestampTz now)
{
	return t != NULL && t->last_contact != 0 &&
		now - t->last_contact <= (int64) raft_election_timeout_ms * 1000;
}

/* Steps the core with every message raft.deliver() queued. */
static void
drain_inbox(void)
{
	static uint8 *buf = NULL;
	size_t		len;
	raft_entry *entries;

	if (buf == NULL)
		buf = MemoryContextAllocHuge(TopMemoryContext, RAFT_WIRE_MAX_MSG_BYTES);
	entries = palloc(sizeof(raft_entry) * RAFT_MAX_ENTRIES_PER_MSG);
	while (RaftInboxPop(buf, RAFT_WIRE_MAX_MSG_BYTES, &len))
	{
		raft_msg	m;
		MemberTrack *t;
		int			rc;

		rc = raft_msg_decode(buf, len, W.cluster_id, &m, entries,
							 RAFT_MAX_ENTRIES_PER_MSG);
		if (rc != RAFT_OK)
			continue;			/* raft.deliver() checked it; it cannot fail */
		t = member_track(m.from);
		if (t != NULL)
			t->last_contact = GetCurrentTimestamp();
		/* the core copies what it keeps, so buf can be reused at once */
		rc = raft_step(W.r, &m);
		if (rc != RAFT_OK)
			ereport(LOG,
					(errmsg("raft ignored a %s message from node %u: %s",
							raft_msg_type_name(m.type), m.from,
							raft_strerror(rc))));
	}
	pfree(entries);
}

/*
 * Ticks the core once per tick that passed, catching up at most a hundred
 * heartbeat intervals after a stall.
 */
static void
tick(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ticks = 0;

	while (now >= W.next_tick && ticks < 100 * TICKS_PER_HEARTBEAT)
	{
		raft_tick(W.r);
		W.next_tick += tick_us();
		ticks++;
	}
	if (now >= W.next_tick)
		W.next_tick = now + tick_us();
}

static void
note_append_time(raft_index_t index, TimestampTz now)
{
	LagSample  *s = &W.lag[index % LAG_SAMPLES];

	s->index = index;
	s->appended = now;
}

static TimestampTz
append_time(raft_index_t index)
{
	LagSample  *s = &W.lag[index % LAG_SAMPLES];

	return s->index == index ? s->appended : 0;
}

/*
 * A leader's commit index moved from before to after: each entry's time
 * from its append here to a majority holding it goes into the commit
 * latency histogram (entries appended before this leadership, or too long
 * ago to be remembered, are left out).
 */
static void
observe_commit_latency(raft_index_t before, raft_index_t after)
{
	TimestampTz now = GetCurrentTimestamp();
	raft_index_t i;

	if (after > before + LAG_SAMPLES)
		before = after - LAG_SAMPLES;
	for (i = before + 1; i <= after; i++)
	{
		TimestampTz at = append_time(i);

		if (at != 0 && W.lead_term != 0 && i >= W.lead_start)
			RaftHistogramObserve(&RaftShmem->counters.commit, now - at);
	}
}

/*
 * Remembers when a heartbeat context went out (to the first follower of
 * its round), before the transport sends it: the lease counts from there.
 */
static void
note_heartbeat(uint64 context)
{
	int			last = (W.next_heartbeat + LEASE_HEARTBEATS_KEPT - 1) % LEASE_HEARTBEATS_KEPT;

	if (W.heartbeat_context[last] == context)
		return;
	W.heartbeat_context[W.next_heartbeat] = context;
	W.heartbeat_sent[W.next_heartbeat] = GetCurrentTimestamp();
	W.next_heartbeat = (W.next_heartbeat + 1) % LEASE_HEARTBEATS_KEPT;
}

/*
 * Until when this leader may take writes alone (its lease, raft.h): the
 * sending of the newest heartbeat a majority of the voters answered, plus
 * an election timeout, less a tenth of it and two ticks for the clocks'
 * drift and the tick a voter's count may be short.  No other member can
 * be elected before.  An only voter's lease never ends; a node that does
 * not lead has none.  The fence compares it with the clock when a write
 * begins and when it commits (fence.c), so a leader that is cut off, or
 * whose worker stalls, stops taking writes by itself.
 */
static TimestampTz
lease_until(const raft_status *st)
{
	int64		election_us = (int64) raft_election_timeout_ms * 1000;
	uint32		voters = 0;
	uint32		i;
	int			k;

	if (st->role != RAFT_LEADER)
		return 0;
	for (i = 0; i < st->config.n_members; i++)
		voters += st->config.members[i].voter ? 1 : 0;
	if (voters == 1)
		return DT_NOEND;
	if (st->lease_context == 0)
		return 0;
	for (k = 0; k < LEASE_HEARTBEATS_KEPT; k++)
		if (W.heartbeat_context[k] == st->lease_context)
			return W.heartbeat_sent[k] + election_us - election_us / 10 -
				2 * tick_us();
	return 0;
}

/* Encodes the ready's messages and queues them for the transport. */
static void
send_messages(const raft_ready *rd)
{
	size_t		k;

	for (k = 0; k < rd->n_msgs; k++)
	{
		const raft_msg *m = &rd->msgs[k];
		size_t		len = raft_msg_encoded_size(m);
		uint8	   *buf = palloc(len);
		size_t		written;
		int			rc;

		if (m->type == RAFT_MSG_HEARTBEAT)
			note_heartbeat(m->context);

		rc = raft_msg_encode(m, W.cluster_id, buf, len, &written);
		if (rc != RAFT_OK)
			elog(ERROR, "could not encode a raft %s message: %s",
				 raft_msg_type_name(m->type), raft_strerror(rc));
		RaftTransportSend(m->to, buf, written);
		pfree(buf);
	}
	/* on their way now, not at the end of the loop */
	RaftTransportPoll();
}

/*
 * Carries out one ready in the contract's order (raft.h): snapshot, hard
 * state and entries made durable, then messages, then applying, then
 * telling the core what is persisted.  A leader's messages go first, so
 * that the followers write while it does.
 */
static void
handle_ready(void)
{
	raft_ready	rd;
	raft_index_t i;
	TimestampTz now = GetCurrentTimestamp();

	raft_ready_get(W.r, &rd);
	if (W.archive_cxt != NULL)
	{
		/* archived entries read so far are this ready's */
		MemoryContext handed = W.archive_cxt;

		W.archive_cxt = W.archive_handed_cxt;
		W.archive_handed_cxt = handed;
	}
	if (rd.send_before_persist)
		send_messages(&rd);

	if (rd.snapshot_changed)
	{
		W.base = rd.snapshot;
		write_base();
		RaftLogReset(W.log, W.base.index);
		W.durable_last = W.base.index;
	}

	/*
	 * Term and vote are durable before any entry of that term: a crash in
	 * between must leave a state that loads (raft_load refuses entries of
	 * a term later than the state's).  The commit index written with them
	 * stops at the entries already durable, for the same reason.
	 */
	if (rd.hard_state_changed &&
		(rd.hard_state.term != W.written_hs.term ||
		 rd.hard_state.vote != W.written_hs.vote))
	{
		raft_hard_state hs = rd.hard_state;
		raft_index_t durable = W.durable_last;

		if (rd.persist_from <= rd.persist_to)
			durable = Min(durable, rd.persist_from - 1);
		hs.commit = Min(hs.commit, durable);
		write_hard_state(&hs);
	}

	if (rd.persist_from <= rd.persist_to)
	{
		size_t		n = rd.persist_to - rd.persist_from + 1;
		raft_entry *entries = palloc(sizeof(raft_entry) * n);
		TimestampTz sync_began;

		for (i = rd.persist_from; i <= rd.persist_to; i++)
		{
			raft_entry *e = &entries[i - rd.persist_from];

			if (raft_entry_get(W.r, i, e) != RAFT_OK)
				elog(ERROR, "raft entry %llu vanished before it was persisted",
					 (unsigned long long) i);
			directory_learn(e);
			note_append_time(i, now);
		}
		sync_began = GetCurrentTimestamp();
		RaftLogAppend(W.log, entries, n);
		RaftLogSync(W.log);
		RaftHistogramObserve(&RaftShmem->counters.log_sync,
							 GetCurrentTimestamp() - sync_began);
		W.durable_last = rd.persist_to;
		pfree(entries);
	}

	if (!rd.send_before_persist)
		send_messages(&rd);
	if (rd.hard_state_changed)
	{
		if (raft_get_role(W.r) == RAFT_LEADER)
			observe_commit_latency(W.latest_commit, rd.hard_state.commit);
		W.latest_commit = rd.hard_state.commit;
	}

	/*
	 * Applying: the apply worker takes committed entries from the apply
	 * queue (feed_apply_queue); the core only needs to know they are taken
	 * care of.
	 */
	raft_advance(W.r);
	if (W.archive_handed_cxt != NULL)
		MemoryContextReset(W.archive_handed_cxt);
	if (rd.persist_from <= rd.persist_to)
		raft_persisted(W.r, rd.persist_to, raft_term_at(W.r, rd.persist_to));
}

/*
 * Keeps the transport's peers equal to the members other than us, plus the
 * leader: a learner that has not yet received the configuration must still
 * answer the leader that sends it the log.
 */
static void
sync_peers(const raft_status *st)
{
	static raft_id_t known[RAFT_MAX_MEMBERS + 1];
	static int	n_known;
	raft_id_t	wanted[RAFT_MAX_MEMBERS + 1];
	int			n_wanted = 0;
	uint32		k;
	int			i;
	int			j;

	for (k = 0; k < st->config.n_members; k++)
		if (st->config.members[k].id != W.node_id)
			wanted[n_wanted++] = st->config.members[k].id;
	if (st->leader != RAFT_NO_NODE && st->leader != W.node_id)
	{
		for (i = 0; i < n_wanted && wanted[i] != st->leader; i++)
			;
		if (i == n_wanted)
			wanted[n_wanted++] = st->leader;
	}

	for (i = 0; i < n_known; i++)
	{
		for (j = 0; j < n_wanted && wanted[j] != known[i]; j++)
			;
		if (j == n_wanted)
			RaftTransportDropPeer(known[i]);
	}
	n_known = 0;
	for (i = 0; i < n_wanted; i++)
	{
		DirectoryEntry *d = directory_find(wanted[i]);

		if (d == NULL)
			continue;
		RaftTransportSetPeer(d->id, d->conninfo);
		known[n_known++] = d->id;
	}
}

/* The applied index a member's last frame carried (transport.c). */
static uint64
member_applied_index(raft_id_t id)
{
	uint64		applied = 0;
	size_t		i;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	for (i = 0; i < lengthof(RaftShmem->senders); i++)
		if (RaftShmem->senders[i].node_id == id)
			applied = RaftShmem->senders[i].applied_index;
	LWLockRelease(RaftShmem->lock);
	return applied;
}

/*
 * The leader promotes each learner as soon as it has caught up: its log
 * holds what is committed and its data is nearly applied.
 */
static void
promote_learners(const raft_status *st)
{
	uint32		i;
	uint64		applied;

	if (st->role != RAFT_LEADER || st->conf_pending ||
		st->transfer_target != RAFT_NO_NODE)
		return;
	for (i = 0; i < st->config.n_members; i++)
	{
		const raft_member_status *p = &st->progress[i];
		raft_config after = st->config;
		StringInfo	context;

		if (p->voter || p->match_index < st->commit_index)
			continue;
		/* its data too: a joiner copying from the leader applies nothing */
		applied = member_applied_index(p->id);
		if (applied == 0 || applied + PROMOTE_APPLY_SLACK < st->commit_index)
			continue;
		after.members[i].voter = true;
		context = directory_encode(&after, RAFT_NO_NODE, NULL, NULL);
		if (raft_propose_conf_change(W.r, RAFT_CONF_PROMOTE, p->id,
									 context->data, context->len, NULL) == RAFT_OK)
		{
			DirectoryEntry *d = directory_find(p->id);

			ereport(LOG,
					(errmsg("raft learner \"%s\" caught up and is promoted to voter",
							d ? d->name : "?")));
		}
		return;
	}
}

/*
 * Keeps the transport's peers in line with the configuration and, on the
 * leader, promotes caught-up learners.
 */
static void
maintain_membership(void)
{
	raft_status st;

	raft_get_status(W.r, &st);
	sync_peers(&st);
	promote_learners(&st);
}

/* capture.c proposes the leader's transactions through this. */
static bool
propose_data(const void *data, uint32 len, uint64 *index)
{
	raft_index_t at;

	if (raft_propose(W.r, RAFT_ENTRY_NORMAL, data, len, &at) != RAFT_OK)
		return false;
	*index = at;
	return true;
}

/*
 * Whether this node's data is the log's: it is not being repaired
 * (resyncing, as the apply worker published it), and no
 * slot of an earlier leadership of its own waits to be settled (until the
 * apply worker has looked in it, a former leader may hold transactions
 * that never reached the log).  A leader is, once that slot is settled.
 */
static bool
holds_log_data(const raft_status *st, bool resyncing)
{
	bool		old_slot;

	if (resyncing)
		return false;
	if (st->role == RAFT_LEADER)
		return W.settled_term == st->term;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	old_slot = SearchNamedReplicationSlot(RAFT_SLOT_NAME, false) != NULL;
	LWLockRelease(ReplicationSlotControlLock);
	return !old_slot;
}

/*
 * Whether the apply worker fails again and again (apply.c records its
 * errors): a schema that parted from the leader's, say.  Such a member
 * neither leads nor holds the log back.
 */
static bool
apply_stuck(void)
{
	bool		stuck;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	stuck = RaftShmem->apply.apply_failures >= RAFT_APPLY_STUCK_FAILURES;
	LWLockRelease(RaftShmem->lock);
	return stuck;
}

/*
 * Whether this node leads, or heard from the leader it follows within an
 * election timeout.  A follower that holds its campaigns goes on naming
 * the leader it last heard from, however long ago.
 */
static bool
leader_heard(const raft_status *st)
{
	if (st->leader == W.node_id)
		return true;
	return st->leader != RAFT_NO_NODE &&
		heard_lately(member_track(st->leader), GetCurrentTimestamp());
}

/*
 * Whether a member whose old slot waits to be settled may campaign: once
 * it has heard from no leader for two election timeouts.  Until then it
 * leaves elections to members that hold the log's data.  But its slot
 * settles only under a leader, and there may be no such member within
 * reach: the other members may hold unsettled slots too, or be repairing.
 * The data-majority rule (leader_has_data_majority) means that such a
 * slot seldom holds diverged transactions; one that led while too few
 * held the log's data took no writes.  Elected, it settles its slot as a
 * leader (apply.c), and then either serves the others' repairs or, if it
 * did diverge, hands leadership to a member that settled meanwhile.
 */
static bool
old_slot_may_campaign(void)
{
	return W.leaderless_since != 0 &&
		TimestampDifferenceExceeds(W.leaderless_since, GetCurrentTimestamp(),
								   2 * raft_election_timeout_ms);
}

/*
 * Tells the core and the other members whether this node's data is the
 * log's.  A node whose data is not starts no election of its own (a
 * member that could lead should), and reports nothing applied in its
 * frames: the leader then counts it neither among the members that hold
 * the log's data (leader_has_data_majority) nor as a member to hand
 * leadership to (handover_target).
 */
static void
report_data_state(void)
{
	raft_status st;
	bool		clean;
	bool		resyncing;
	bool		stuck;
	bool		hold;
	uint32		voters = 0;
	uint32		i;

	raft_get_status(W.r, &st);
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	resyncing = RaftShmem->apply.resyncing;
	LWLockRelease(RaftShmem->lock);
	clean = holds_log_data(&st, resyncing);
	for (i = 0; i < st.config.n_members; i++)
		voters += st.progress[i].voter ? 1 : 0;
	if (leader_heard(&st))
	{
		W.leaderless_since = 0;
		W.said_unsettled_campaign = false;
	}
	else if (W.leaderless_since == 0)
		W.leaderless_since = GetCurrentTimestamp();
	/*
	 * The only voter settles its old slot as a leader, or never.  A member
	 * whose apply is stuck would lead a cluster that takes no writes.  One
	 * whose old slot waits stands back, for a while (old_slot_may_campaign).
	 */
	stuck = voters > 1 && apply_stuck();
	hold = resyncing || stuck || (voters > 1 && !clean);
	if (hold && !resyncing && !stuck && old_slot_may_campaign())
	{
		hold = false;
		if (!W.said_unsettled_campaign)
			ereport(LOG,
					(errmsg("pg_raft stands for election although the replication slot of its earlier leadership is not settled yet"),
					 errdetail("No leader has been heard from for %d ms; the slot is settled once a leader is known, this node or another.",
							   2 * raft_election_timeout_ms)));
		W.said_unsettled_campaign = true;
	}
	raft_hold_campaigns(W.r, hold);
	RaftTransportSetApplied(clean ? apply_done_index() : 0);
}

/*
 * Whether a majority of the voters, this leader among them, hold the
 * log's data: each other one reported an applied index (so it is not
 * repairing and settled its old slot) within an election timeout.  A
 * leader takes writes only then.  Only a leader that takes writes can
 * leave transactions outside the log when it is cut off; the majority that
 * holds the log's data then still intersects every majority, so whichever
 * side of a partition can elect a leader has a member that can lead and
 * serve the others' repairs: the cluster never ends with every member
 * repairing and none to repair from.
 */
static bool
leader_has_data_majority(const raft_status *st, uint32 *clean, uint32 *voters)
{
	TimestampTz now = GetCurrentTimestamp();
	uint32		i;

	*clean = 0;
	*voters = 0;
	for (i = 0; i < st->config.n_members; i++)
	{
		const raft_member_status *p = &st->progress[i];

		if (!p->voter)
			continue;
		(*voters)++;
		if (p->id == W.node_id)
		{
			(*clean)++;
			continue;
		}
		if (heard_lately(member_track(p->id), now) &&
			member_applied_index(p->id) > 0)
			(*clean)++;
	}
	return *clean > *voters / 2;
}

/*
 * The voter a leader whose data is being repaired hands its leadership to:
 * the most up-to-date one that is not repairing too (its frames report an
 * applied index; a repairing member reports 0, apply.c).  RAFT_NO_NODE if
 * there is none: handing leadership to another repairing member would only
 * bounce it back, many times a second.
 */
static raft_id_t
handover_target(const raft_status *st)
{
	raft_id_t	target = RAFT_NO_NODE;
	raft_index_t best = 0;
	uint32		i;

	for (i = 0; i < st->config.n_members; i++)
	{
		const raft_member_status *p = &st->progress[i];

		if (!p->voter || p->id == W.node_id || member_applied_index(p->id) == 0)
			continue;
		if (target == RAFT_NO_NODE || p->match_index > best)
		{
			target = p->id;
			best = p->match_index;
		}
	}
	return target;
}

/*
 * Whether the slot of an earlier leadership of this node is settled, for
 * a leadership of term: the apply worker has looked in it for
 * transactions that never reached the log, or there is none.  Until then
 * capture must not start, since it would drop that slot (repair.c).  Once
 * settled, the term is written to pg_raft/led_term before capture creates
 * a slot: the apply worker knows which leadership a slot it finds is of.
 */
static bool
old_slot_settled(uint64 term)
{
	bool		exists;
	bool		settled;

	if (W.settled_term == term)
		return true;
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	exists = SearchNamedReplicationSlot(RAFT_SLOT_NAME, false) != NULL;
	LWLockRelease(ReplicationSlotControlLock);
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	settled = !exists || RaftShmem->apply.settled_term == term;
	if (!settled && RaftShmem->apply.settle_term != term)
	{
		RaftShmem->apply.settle_term = term;
		RaftShmem->apply.settle_before = W.lead_start;
		if (RaftShmem->apply.apply_latch != NULL)
			SetLatch(RaftShmem->apply.apply_latch);
	}
	LWLockRelease(RaftShmem->lock);
	if (!settled)
		return false;
	RaftStorageWriteFile(RAFT_LED_TERM_FILE, &term, sizeof(term));
	W.settled_term = term;
	return true;
}

/*
 * Hands leadership to the most up-to-date voter that holds the log's data,
 * if there is one; says why once per term.
 */
static void
hand_over(const raft_status *st, const char *why)
{
	raft_id_t	target = handover_target(st);

	if (st->transfer_target == RAFT_NO_NODE && target != RAFT_NO_NODE &&
		raft_transfer_leadership(W.r, target) == RAFT_OK &&
		W.handover_term != st->term)
	{
		W.handover_term = st->term;
		ereport(LOG,
				(errmsg("pg_raft hands its leadership over: %s", why)));
	}
}

/*
 * Starts capturing the node's transactions when it leads, stops when it
 * no longer does, and remembers where each leadership began: a new leader
 * accepts writes only once it applied every entry before its own first.
 * A leader whose data is being copied again (apply.c), whose apply fails
 * again and again, or whose capture does, could never take writes: it
 * hands leadership to the most up-to-date voter instead.
 */
static void
follow_leadership(void)
{
	raft_status st;
	bool		resyncing;
	bool		stuck;

	raft_get_status(W.r, &st);
	if (st.role != RAFT_LEADER)
	{
		W.lead_term = 0;
		RaftCaptureStop();
		return;
	}
	if (W.lead_term != st.term)
	{
		W.lead_term = st.term;
		W.lead_start = st.last_index;
		/* the capture of an earlier leadership, if any, is over */
		RaftCaptureStop();
	}
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	resyncing = RaftShmem->apply.resyncing;
	LWLockRelease(RaftShmem->lock);
	stuck = !resyncing && apply_stuck();
	if (resyncing || stuck)
	{
		hand_over(&st, stuck ? "this node fails to apply the log (see raft.status.apply_error)" :
				  "this node's data is being copied again");
		RaftCaptureStop();
		return;
	}
	if (!old_slot_settled(st.term))
		return;
	RaftCaptureRun(st.term, W.node_id, propose_data);
	RaftCapturePoll(st.commit_index);
	/* its commits wait for a capture that may never work here */
	if (RaftCaptureStuck())
		hand_over(&st, psprintf("this node cannot capture its changes: %s",
								RaftCaptureProblem()));
}

/*
 * Hands committed entries to the apply worker through the apply queue,
 * from where it asked to start, as far as the queue has room.
 */
static void
feed_apply_queue(void)
{
	RaftApplyQueue *q = &RaftShmem->apply;
	raft_status st;
	Latch	   *latch;
	bool		pushed = false;

	raft_get_status(W.r, &st);
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (q->generation != q->served_generation)
	{
		RaftRingClear(&q->ring);
		W.next_to_queue = q->from_index;
		q->compacted = q->from_index <= W.base.index;
		q->log_base = W.base.index;
		q->served_generation = q->generation;
		pushed = true;
	}
	if (q->apply_pid != 0 && !q->compacted && W.next_to_queue > 0 &&
		W.next_to_queue <= W.base.index)
	{
		/* a base from the leader replaced entries the apply worker needs */
		q->compacted = true;
		q->log_base = W.base.index;
		pushed = true;
	}
	if (q->apply_pid != 0 && !q->compacted && W.next_to_queue > 0)
	{
		while (W.next_to_queue <= st.applied_index)
		{
			raft_entry	e;
			RaftQueuedEntry header;

			if (raft_entry_get(W.r, W.next_to_queue, &e) != RAFT_OK)
				break;
			header.index = e.index;
			header.term = e.term;
			header.type = e.type;
			if (!RaftRingPush(&q->ring, &header, sizeof(header), e.data, e.len))
				break;
			W.next_to_queue++;
			pushed = true;
		}
	}
	latch = q->apply_latch;
	LWLockRelease(RaftShmem->lock);
	if (pushed && latch != NULL)
		SetLatch(latch);
}

/* The index up to which the apply worker applied every entry. */
static raft_index_t
apply_done_index(void)
{
	raft_index_t done;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	done = RaftShmem->apply.done_index;
	LWLockRelease(RaftShmem->lock);
	return done;
}

/*
 * The index up to which the apply worker needs no entry again, even after
 * a crash: applied, or kept in its spool.
 */
static raft_index_t
apply_kept_index(void)
{
	raft_index_t kept;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	kept = RaftShmem->apply.kept_index;
	LWLockRelease(RaftShmem->lock);
	return kept;
}

/*
 * Compacts the log once enough of it is applied.  Entries the apply worker
 * has neither applied nor spooled stay (unless it is stuck and the log
 * large), and so, on the leader, do those
 * that a member still needs, however long it was away, until the log
 * passes LAGGING_KEEP_BYTES or LAGGING_KEEP_ENTRIES.  Compacted segments
 * go to the log's archive on disk, which keeps raft.log_keep_size of them
 * for members that lag further (read_archive); a member that needs older
 * entries still is sent the base, and repairs every table from the leader.
 */
static void
compact_log(void)
{
	raft_status st;
	raft_index_t upto;
	TimestampTz now = GetCurrentTimestamp();
	uint32		i;
	uint32		kept;
	uint64		kept_bytes = 0;
	bool		log_large;

	RaftLogTrimArchive(W.log, (uint64) raft_log_keep_size_mb * 1024 * 1024);
	raft_get_status(W.r, &st);
	log_large = RaftLogBytes(W.log) >= LAGGING_KEEP_BYTES ||
		st.last_index - W.base.index >= LAGGING_KEEP_ENTRIES;
	/*
	 * An apply worker that keeps failing gives way once the log is large,
	 * rather than fill it: this member then stops taking entries, and with
	 * a majority like it the leader commits nothing.  It copies the
	 * leader's data once it can apply again (the log it needs is gone).
	 */
	if (log_large && apply_stuck())
		upto = st.applied_index;
	else
		upto = Min(st.applied_index, apply_kept_index());
	if (st.role == RAFT_LEADER)
	{
		for (i = 0; i < st.config.n_members; i++)
		{
			const raft_member_status *p = &st.progress[i];
			MemberTrack *t = member_track(p->id);
			bool		lagging;

			if (p->id == W.node_id)
				continue;
			/*
			 * A member away for longer than an election timeout, a learner
			 * joining, or a member that repairs its data (it reports
			 * nothing applied) lags: it gives way once the log is large,
			 * rather than fill it and stop the cluster's writes.
			 */
			lagging = !heard_lately(t, now) ||
				!p->voter || member_applied_index(p->id) == 0;
			if (lagging && log_large)
				continue;
			upto = Min(upto, p->match_index);
		}
	}
	/* worth it: many entries, or a big log and more than a few entries */
	if (upto < W.base.index + COMPACT_THRESHOLD_ENTRIES &&
		(RaftLogBytes(W.log) < COMPACT_THRESHOLD_BYTES ||
		 upto < W.base.index + COMPACT_MIN_ENTRIES))
		return;

	/*
	 * Keep a tail for members a little behind: the last entries up to
	 * COMPACT_KEEP_ENTRIES of them and COMPACT_KEEP_BYTES (entries of a
	 * large transaction are big, and the log in memory is bounded).
	 */
	for (kept = 0; upto > W.base.index && kept < COMPACT_KEEP_ENTRIES; kept++)
	{
		raft_entry	e;

		if (raft_entry_get(W.r, upto, &e) != RAFT_OK ||
			kept_bytes + e.len > COMPACT_KEEP_BYTES)
			break;
		kept_bytes += e.len;
		upto--;
	}
	if (upto <= W.base.index)
		return;
	if (raft_compact(W.r, upto) == RAFT_OK)
	{
		raft_get_base(W.r, &W.base);
		write_base();
		RaftLogCompact(W.log, W.base.index);
	}
}

/*
 * Whether the node accepts writes: it leads, every entry before its
 * leadership is applied, its own transactions are being captured, and a
 * majority of the voters hold the log's data.  Otherwise says why in
 * reason.  *serves_copies says whether the first three hold: a member may
 * then copy or repair its data from this one.
 */
static bool
node_writable(const raft_status *st, char *reason, size_t reason_size,
			  bool *serves_copies)
{
	raft_index_t done = apply_done_index();
	uint32		clean;
	uint32		voters;

	*serves_copies = false;
	reason[0] = '\0';
	if (st->role != RAFT_LEADER || W.lead_term != st->term)
		return false;
	if (done < W.lead_start)
	{
		snprintf(reason, reason_size,
				 "the new leader is applying the entries of earlier terms (%llu of %llu applied)",
				 (unsigned long long) done, (unsigned long long) W.lead_start);
		return false;
	}
	if (W.settled_term != st->term)
	{
		snprintf(reason, reason_size,
				 "the leader is not capturing its changes yet: the replication slot of its earlier leadership is still to be settled");
		return false;
	}
	if (!RaftCaptureStreaming())
	{
		snprintf(reason, reason_size, "the leader is not capturing its changes yet%s%s",
				 RaftCaptureProblem()[0] ? ": " : "", RaftCaptureProblem());
		return false;
	}
	*serves_copies = true;
	if (draining(st))
	{
		snprintf(reason, reason_size,
				 "the leader is handing its leadership over");
		return false;
	}
	if (!leader_has_data_majority(st, &clean, &voters))
	{
		snprintf(reason, reason_size,
				 "a majority of the voters must hold the log's data, and %u of %u do; the others repair theirs",
				 clean, voters);
		return false;
	}
	return true;
}

/*
 * A follower's own measure of how far its data is behind, for the health
 * API (http.c): how long the oldest committed entry it has not applied
 * has been here; 0 when it applied every entry it knows committed, -1
 * when it does not know when that entry came.  The leader's view of it
 * (measure_lag) counts from the leader's append instead.
 */
static int64
own_replay_lag(const RaftView *v, TimestampTz now)
{
	TimestampTz at;

	if (v->applied_index >= v->commit_index)
		return 0;
	at = append_time(v->applied_index + 1);
	return at != 0 ? now - at : -1;
}

/*
 * The leader's measure of how far a member's data is behind its log: the
 * entries and bytes the member has not applied, and replay_lag, how long
 * ago the oldest of them was appended here (or, once it caught up, how
 * long the last entry it applied took to get there).
 */
static void
measure_lag(RaftMemberInfo *mi, MemberTrack *t, const raft_status *st,
			TimestampTz now)
{
	raft_index_t applied = Min(mi->applied_index, st->last_index);
	raft_index_t first = Max(applied + 1, st->first_index);
	raft_index_t k;

	/* the bytes of the entries still in the log, the first 100,000 of them */
	mi->lag_entries = st->last_index - applied;
	mi->lag_bytes = 0;
	for (k = first; k <= st->last_index && k < first + 100000; k++)
	{
		raft_entry	e;

		if (raft_entry_get(W.r, k, &e) == RAFT_OK)
			mi->lag_bytes += e.len;
	}
	if (t == NULL)
		return;
	if (applied > t->seen_applied)
	{
		TimestampTz at = append_time(applied);

		if (at != 0)
			t->replay_lag_us = now - at;
		t->seen_applied = applied;
	}
	if (mi->lag_entries > 0)
	{
		TimestampTz at = append_time(applied + 1);

		if (at != 0)
			t->replay_lag_us = Max(t->replay_lag_us, now - at);
	}
	mi->replay_lag_us = t->replay_lag_us;
}

/*
 * Whether news that waits (waits) is to go now: at once when traffic is
 * sparse, else once no message has carried it for NEWS_DELAY_US.
 */
static bool
news_due(bool waits, NewsTimer *t)
{
	TimestampTz now;

	if (!waits)
	{
		t->due = 0;
		return false;
	}
	now = GetCurrentTimestamp();
	if (t->due == 0)
	{
		t->due = now - t->began >= NEWS_SPARSE_US ? now : now + NEWS_DELAY_US;
		t->began = now;
	}
	if (now < t->due)
		return false;
	t->due = 0;
	return true;
}

/*
 * Sends commit news that no append carried (raft_commit_news_waits), so
 * that followers apply a commit within a millisecond or so rather than at
 * the next tick.
 */
static void
send_commit_news(void)
{
	if (!news_due(raft_commit_news_waits(W.r), &W.commit_news))
		return;
	raft_send_commit_news(W.r);
	while (raft_has_ready(W.r))
		handle_ready();
}

/*
 * A follower whose leader's server is gone (its connection broke and its
 * port refuses connections: RaftTransportPeerGone) need not wait out an
 * election timeout to replace it (raft_leader_gone).  A leader cut off by
 * the network, or whose raft worker alone stalls, never looks like this.
 */
static void
notice_leader_gone(void)
{
	raft_status st;

	raft_get_status(W.r, &st);
	if (st.role != RAFT_FOLLOWER || st.leader == RAFT_NO_NODE ||
		!RaftTransportPeerGone(st.leader))
		return;
	ereport(LOG,
			(errmsg("raft leader node %u is gone", st.leader),
			 errdetail("Its connection broke and its port refuses connections; this node does not wait for the election timeout to replace it.")));
	raft_leader_gone(W.r);
}

/*
 * Tells the leader how far this follower applied when no message to it
 * carried that (raft_send_progress): the leader's replay_lag runs until it
 * hears.
 */
static void
send_progress(void)
{
	raft_status st;

	raft_get_status(W.r, &st);
	if (!news_due(st.role == RAFT_FOLLOWER && st.leader != RAFT_NO_NODE &&
				  RaftTransportAppliedUnsent(st.leader), &W.progress))
		return;
	raft_send_progress(W.r);
	while (raft_has_ready(W.r))
		handle_ready();
}

/*
 * Whether nothing but the core's clock and its peers' messages has a
 * timer running: every peer connected with nothing queued or unanswered,
 * the leader's capture streaming with everything committed, a follower
 * hearing from its leader.  Membership changes, reconnection back-offs,
 * capture retries and the leaderless timers all start from an unsettled
 * state.
 */
static bool
settled(void)
{
	raft_status st;

	if (!RaftTransportSettled())
		return false;
	raft_get_status(W.r, &st);
	if (st.role == RAFT_LEADER)
		return RaftCaptureDrained();
	return st.role == RAFT_FOLLOWER && leader_heard(&st);
}

/*
 * How long the worker may sleep when nothing wakes it: until the core's
 * next due tick, or news to send, or at most a heartbeat interval, which
 * is how often it looks after what has no event of its own (compaction,
 * the commit hint, and the timers that settled() rules out).  When all is
 * settled, a quiet heartbeat interval at most (timeout_ticks): an idle
 * member wakes four times a second, not ten.  Rounded up, so as not to
 * spin through the last millisecond.
 */
static long
sleep_ms(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz wake;
	uint32		election;
	uint32		heartbeat;
	uint32		quiet_heartbeat;

	timeout_ticks(&election, &heartbeat, &quiet_heartbeat);
	wake = W.next_tick + (int64) (raft_ticks_until_due(W.r) - 1) * tick_us();
	wake = Min(wake, now + (int64) (settled() ? quiet_heartbeat : heartbeat) * tick_us());
	if (W.commit_news.due != 0)
		wake = Min(wake, W.commit_news.due);
	if (W.progress.due != 0)
		wake = Min(wake, W.progress.due);
	return Max(0, (wake - now + 999) / 1000);
}

/*
 * Waits for the latch, a socket or the timeout.  The wait set is kept from
 * one wait to the next: making it anew costs an epoll instance and a
 * system call per socket.  It is made again only when the sockets change
 * (a connection lost, made, or being made, whose socket libpq may still
 * replace); a change of what to wait for on a socket modifies its event.
 */
static void
wait_for_work(long timeout_ms)
{
	RaftWaitSocket want[MAX_WAIT_SOCKETS];
	WaitEvent	events[MAX_WAIT_SOCKETS + 2];
	int			n = 0;
	bool		remake;
	int			i;

	if (W.configured)
	{
		n = RaftTransportWaitSockets(want, MAX_WAIT_SOCKETS);
		n += RaftCaptureWaitSockets(want + n, MAX_WAIT_SOCKETS - n);
	}
	remake = W.wait_set == NULL || n != W.n_waiting;
	for (i = 0; i < n && !remake; i++)
		remake = !want[i].settled || !W.waiting[i].settled ||
			want[i].sock != W.waiting[i].sock ||
			want[i].connection != W.waiting[i].connection;
	if (remake)
	{
		if (W.wait_set != NULL)
			FreeWaitEventSet(W.wait_set);
		W.wait_set = CreateWaitEventSet(TopMemoryContext, 2 + n);
		AddWaitEventToSet(W.wait_set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(W.wait_set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET,
						  NULL, NULL);
		for (i = 0; i < n; i++)
			AddWaitEventToSet(W.wait_set, want[i].events, want[i].sock, NULL, NULL);
	}
	else
	{
		for (i = 0; i < n; i++)
			if (want[i].events != W.waiting[i].events)
				ModifyWaitEvent(W.wait_set, 2 + i, want[i].events, NULL);
	}
	memcpy(W.waiting, want, sizeof(RaftWaitSocket) * n);
	W.n_waiting = n;
	(void) WaitEventSetWait(W.wait_set, timeout_ms, events, lengthof(events),
							PG_WAIT_EXTENSION);
}

/* A number for a connection the worker starts (RaftWaitSocket). */
uint64
RaftNewConnectionNumber(void)
{
	return ++connections_started;
}

/*
 * Adds to the metrics' counters what happened since the last view: the
 * elections the core started and won, and a leader other than the last
 * one seen (the first one seen counts too).
 */
static void
count_events(const raft_status *st)
{
	RaftCounters *c = &RaftShmem->counters;

	RaftCount(&c->elections, st->elections_started - W.elections_counted);
	RaftCount(&c->elections_won, st->elections_won - W.elections_won_counted);
	W.elections_counted = st->elections_started;
	W.elections_won_counted = st->elections_won;
	if (st->leader != RAFT_NO_NODE && st->leader != W.leader_seen)
	{
		RaftCount(&c->leader_changes, 1);
		W.leader_seen = st->leader;
	}
}

/* Copies the worker's view into shared memory for the SQL views. */
static void
publish_view(void)
{
	RaftView   *v = palloc0(sizeof(RaftView));
	raft_status st;
	uint32		i;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz commits_until = 0;

	v->configured = W.configured;
	v->updated = now;
	if (W.configured)
	{
		DirectoryEntry *leader;

		raft_get_status(W.r, &st);
		count_events(&st);
		v->cluster_id = W.cluster_id;
		v->node_id = W.node_id;
		strlcpy(v->node_name, W.node_name, RAFT_NAME_BYTES);
		v->role = st.role;
		v->is_learner = st.is_learner;
		v->term = st.term;
		v->leader_id = st.leader;
		leader = st.leader != RAFT_NO_NODE ? directory_find(st.leader) : NULL;
		if (leader != NULL)
		{
			strlcpy(v->leader_name, leader->name, RAFT_NAME_BYTES);
			strlcpy(v->leader_conninfo, leader->conninfo, RAFT_CONNINFO_BYTES);
		}
		v->first_index = st.first_index;
		v->last_index = st.last_index;
		v->commit_index = st.commit_index;
		v->applied_index = apply_done_index();
		v->log_bytes = RaftLogBytes(W.log);
		v->archive_bytes = RaftLogArchiveBytes(W.log);
		v->writable = node_writable(&st, v->not_writable_reason,
									sizeof(v->not_writable_reason),
									&v->serves_copies);
		v->lease_until = lease_until(&st);
		/*
		 * Writable only with a lease: sessions that start now must not
		 * find writes refused.  One that runs out later refuses writes
		 * (fence.c) without changing the role, until answers come back.
		 */
		if (v->writable && !W.writable && now >= v->lease_until)
		{
			v->writable = false;
			snprintf(v->not_writable_reason, sizeof(v->not_writable_reason),
					 "a majority of the voters is still to answer the new leader's heartbeat");
		}
		/* a leader that hands over lets running transactions commit */
		if (v->writable || draining(&st))
			commits_until = v->lease_until;
		v->n_members = st.config.n_members;
		for (i = 0; i < st.config.n_members; i++)
		{
			RaftMemberInfo *mi = &v->members[i];
			const raft_member_status *p = &st.progress[i];
			DirectoryEntry *d = directory_find(p->id);
			MemberTrack *t = member_track(p->id);
			bool		self = p->id == W.node_id;
			raft_index_t match = self ? st.persisted_index : p->match_index;

			mi->id = p->id;
			mi->voter = p->voter;
			mi->is_leader = p->id == st.leader;
			if (d != NULL)
			{
				strlcpy(mi->name, d->name, RAFT_NAME_BYTES);
				strlcpy(mi->conninfo, d->conninfo, RAFT_CONNINFO_BYTES);
			}
			mi->last_contact = self ? now : (t ? t->last_contact : 0);
			mi->reachable = self || heard_lately(t, now);
			mi->commit_index = self ? st.commit_index : p->commit_index;
			mi->applied_index = self ? v->applied_index : member_applied_index(p->id);
			mi->replay_lag_us = -1;
			if (st.role != RAFT_LEADER)
			{
				/* only the leader knows how far each member is */
				mi->match_index = self ? match : 0;
				if (self)
					mi->replay_lag_us = own_replay_lag(v, now);
				continue;
			}
			mi->match_index = match;
			measure_lag(mi, t, &st, now);
		}
	}

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	/*
	 * Sessions that began when the node was writable (not a member, or a
	 * leader ready for writes) and now is not, or the other way round, are
	 * ended (fence.c).
	 */
	if ((!RaftShmem->member || (RaftShmem->view.configured && RaftShmem->view.writable)) !=
		(!RaftShmem->member || (v->configured && v->writable)))
		RaftShmem->role_epoch++;
	memcpy(&RaftShmem->view, v, sizeof(RaftView));
	pg_atomic_write_u64(&RaftShmem->commits_until, (uint64) commits_until);
	LWLockRelease(RaftShmem->lock);

	/*
	 * A commit waiting for synchronous replication on a node that does not
	 * take writes waits for a stream that will never carry it: end it, so
	 * that its client does not take it for acknowledged later.
	 */
	if (v->configured && !v->writable)
	{
		/* a leader handing over lets them finish first (check_request) */
		if (!draining(&st))
			RaftFenceEndSyncWaiters();
		if (W.writable)
			W.unwritable_since = GetCurrentTimestamp();
		/* once a second: it looks through every backend's status */
		if (W.unwritable_since != 0 &&
			TimestampDifferenceExceeds(W.idle_ended_at, GetCurrentTimestamp(), 1000))
		{
			RaftFenceEndIdleTransactions(W.unwritable_since);
			W.idle_ended_at = GetCurrentTimestamp();
		}
	}
	else
		W.unwritable_since = 0;
	W.writable = v->configured && v->writable;
	pfree(v);
}

/* Applies new settings to the running core after a reload. */
static void
reload_settings(void)
{
	ConfigReloadPending = false;
	ProcessConfigFile(PGC_SIGHUP);
	if (W.configured)
	{
		uint32		election;
		uint32		heartbeat;
		uint32		quiet_heartbeat;

		timeout_ticks(&election, &heartbeat, &quiet_heartbeat);
		if (raft_set_timeouts(W.r, election, heartbeat, quiet_heartbeat) != RAFT_OK)
			ereport(WARNING,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("raft.election_timeout must be at least twice raft.heartbeat_interval; keeping the previous timing")));
	}
}

static void
worker_shutdown(int code, Datum arg)
{
	RaftCaptureStop();
	RaftTransportShutdown();
	if (RaftShmem != NULL)
	{
		/* no worker, no view: the views show nothing rather than old news */
		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		RaftShmem->worker_latch = NULL;
		RaftShmem->worker_pid = 0;
		RaftShmem->cluster_id = 0;
		RaftShmem->view.configured = false;
		LWLockRelease(RaftShmem->lock);
	}
}

void
RaftWorkerMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();

	memset(&W, 0, sizeof(W));
	W.loop_cxt = AllocSetContextCreate(TopMemoryContext, "pg_raft worker loop",
									   ALLOCSET_DEFAULT_SIZES);

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->worker_pid = MyProcPid;
	RaftShmem->worker_latch = MyLatch;
	RaftShmem->cluster_id = 0;
	RaftShmem->node_id = 0;
	/* serve the apply worker again from where it is (feed_apply_queue) */
	RaftShmem->apply.served_generation = 0;
	LWLockRelease(RaftShmem->lock);
	before_shmem_exit(worker_shutdown, (Datum) 0);

	{
		void	   *data;
		size_t		len;

		if (RaftStorageReadFile("identity", &data, &len))
			start_node();
	}

	while (!ShutdownRequestPending)
	{
		MemoryContext old = MemoryContextSwitchTo(W.loop_cxt);
		long		timeout_ms = 1000;

		ResetLatch(MyLatch);
		if (ConfigReloadPending)
			reload_settings();

		process_requests();
		if (W.configured)
		{
			report_data_state();
			/* the ticks that passed while it slept come before the news */
			tick();
			drain_inbox();
			/*
			 * Again, before the answers go: a leader that stepped down on
			 * a message just now has its old slot to settle, and its first
			 * answers must not say that it holds the log's data (the new
			 * leader would count it towards its data majority, and take
			 * writes only to stop when the next answer says otherwise).
			 */
			report_data_state();
			notice_leader_gone();
			maintain_membership();
			while (raft_has_ready(W.r))
				handle_ready();
			follow_leadership();
			while (raft_has_ready(W.r))
				handle_ready();
			send_commit_news();
			send_progress();
			feed_apply_queue();
			write_commit_hint(false);
			compact_log();
			RaftTransportPoll();
			process_requests();
			timeout_ms = sleep_ms();
		}
		publish_view();
		wait_for_work(timeout_ms);

		MemoryContextSwitchTo(old);
		MemoryContextReset(W.loop_cxt);
	}

	if (W.configured)
		write_commit_hint(true);

	/*
	 * Exit with 1 so that the postmaster starts the worker again if only it
	 * was asked to stop (pg_terminate_backend); at server shutdown nothing
	 * is restarted anyway.
	 */
	proc_exit(1);
}
