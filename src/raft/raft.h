/*-------------------------------------------------------------------------
 *
 * raft.h
 *	  The pg_raft consensus core: the one public header.
 *
 * The core is a deterministic state machine that implements the Raft
 * algorithm and nothing else.  It has no PostgreSQL includes, does no I/O,
 * reads no clock and has no randomness of its own: disk, network, time and
 * the random seed belong to the caller.  The same state and the same inputs
 * always give the same outputs, which is what lets test/sim replay a run
 * from its seed.
 *
 * Vocabulary (Raft thesis, chapter 3): a node has a term, a vote, a log of
 * entries numbered by index from 1, a commit_index and an applied index.
 * A leader tracks, per member, a match_index and a next_index.  A member is
 * a voter or a learner; learners receive the log but neither vote nor count
 * towards a majority.  The configuration is the member list; a node uses
 * the latest configuration in its log, committed or not (thesis 4.1).
 *
 * THE CALLER'S CONTRACT
 *
 * Exactly one caller drives a raft instance, from one thread.  It feeds
 * events in:
 *
 *	 raft_tick()               one logical clock tick has passed;
 *	 raft_step()               a message arrived from a peer;
 *	 raft_propose*()           a client wants an entry appended;
 *	 raft_persisted()          entries up to an index are durable;
 *	 raft_compact()            the log prefix up to an index may be dropped.
 *
 * After any event, while raft_has_ready() is true, the caller takes the
 * pending work with raft_ready_get() and carries it out in this order:
 *
 *	 1. if ready.snapshot_changed, restore the state machine to the snapshot
 *		(out of band: the core ships only its metadata) and persist the
 *		snapshot metadata as the new log base, dropping every stored entry;
 *	 2. if ready.hard_state_changed, persist term, vote and commit durably
 *		(replace them atomically);
 *	 3. persist entries [persist_from, persist_to] (read them with
 *		raft_entry_get); first discard every stored entry at or after
 *		persist_from, since a leader may have overwritten a suffix;
 *	 4. make steps 1-3 durable (fsync), and only then
 *	 5. send ready.msgs.  A vote granted or an append acknowledged is a
 *		promise about durable state: sending it before step 4 breaks
 *		election safety or loses committed entries after a crash.  When
 *		ready.send_before_persist is true (a leader whose term and vote are
 *		durable already), the messages promise nothing about this node's
 *		disk and may be sent before steps 3 and 4, so that the followers
 *		write in parallel with the leader (thesis 10.2.1): the leader
 *		counts itself towards a majority only after step 7;
 *	 6. apply entries [apply_from, apply_to] to the state machine in order;
 *	 7. call raft_advance(), then raft_persisted(persist_to, its term) once
 *		the entries of step 3 are durable (the leader counts itself towards
 *		a majority only for persisted entries).
 *
 * Pointers handed out by raft_ready_get() and raft_entry_get() stay valid
 * until the next call that changes the core (any event or raft_advance).
 *
 * On restart the caller rebuilds the core with raft_init() and raft_load(),
 * giving it exactly what it persisted.  Entries that were written but not
 * made durable must not be given back.
 *
 * Memory: the caller allocates raft_size(options) bytes once and hands them
 * to raft_init().  The core never allocates afterwards; the log is a ring
 * of bounded capacity, and a proposal that does not fit fails with
 * RAFT_ERR_LOG_FULL until the caller compacts.
 *
 * Every function returns RAFT_OK or a negative raft_rc; none aborts on bad
 * input.  Assertions (RAFT_ASSERT) guard only programming errors.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_RAFT_H
#define PG_RAFT_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint64_t raft_term_t;
typedef uint64_t raft_index_t;
typedef uint32_t raft_id_t;

/* Node id 0 means "nobody" (no vote, no known leader). */
#define RAFT_NO_NODE ((raft_id_t) 0)

/* Upper bounds that size fixed arrays; members include learners. */
#define RAFT_MAX_MEMBERS 16
#define RAFT_MAX_ENTRIES_PER_MSG 256
/* Largest opaque context a configuration change may carry, in bytes. */
#define RAFT_MAX_CONF_CONTEXT_BYTES 4096

/* Return codes.  RAFT_OK is zero; every error is negative. */
typedef enum raft_rc
{
	RAFT_OK = 0,
	RAFT_ERR_INVALID_ARG = -1,
	RAFT_ERR_NOT_LEADER = -2,
	RAFT_ERR_LOG_FULL = -3,
	RAFT_ERR_TOO_LARGE = -4,
	RAFT_ERR_CONF_PENDING = -5,
	RAFT_ERR_TRANSFER_PENDING = -6,
	RAFT_ERR_UNKNOWN_NODE = -7,
	RAFT_ERR_ALREADY_MEMBER = -8,
	RAFT_ERR_NOT_CAUGHT_UP = -9,
	RAFT_ERR_LAST_VOTER = -10,
	RAFT_ERR_TOO_MANY_MEMBERS = -11,
	RAFT_ERR_NO_MEMORY = -12,
	RAFT_ERR_COMPACTED = -13,
	RAFT_ERR_UNAVAILABLE = -14,
	RAFT_ERR_NOT_COMMITTED_IN_TERM = -15,
	/* wire format errors (raft_msg_decode) */
	RAFT_ERR_MSG_TRUNCATED = -20,
	RAFT_ERR_MSG_MAGIC = -21,
	RAFT_ERR_MSG_VERSION = -22,
	RAFT_ERR_MSG_CHECKSUM = -23,
	RAFT_ERR_MSG_CLUSTER = -24,
	RAFT_ERR_MSG_TYPE = -25,
	RAFT_ERR_MSG_LENGTH = -26,
	RAFT_ERR_MSG_FIELD = -27,
	RAFT_ERR_MSG_TOO_LARGE = -28
} raft_rc;

/* A short English description of a return code, for logs and errors. */
extern const char *raft_strerror(int rc);

typedef enum raft_role
{
	RAFT_FOLLOWER = 0,
	RAFT_PRE_CANDIDATE = 1,
	RAFT_CANDIDATE = 2,
	RAFT_LEADER = 3
} raft_role;

extern const char *raft_role_name(raft_role role);

typedef enum raft_entry_type
{
	RAFT_ENTRY_NORMAL = 1,		/* opaque client data */
	RAFT_ENTRY_NOOP = 2,		/* appended by a new leader; also barriers */
	RAFT_ENTRY_CONFIG = 3		/* a full configuration plus opaque context */
} raft_entry_type;

typedef struct raft_entry
{
	raft_term_t term;
	raft_index_t index;
	uint8_t		type;			/* raft_entry_type */
	uint32_t	len;
	const uint8_t *data;
} raft_entry;

typedef struct raft_member
{
	raft_id_t	id;
	bool		voter;
} raft_member;

typedef struct raft_config
{
	uint32_t	n_members;
	raft_member members[RAFT_MAX_MEMBERS];
} raft_config;

/*
 * The state that must survive a crash besides the log: the current term,
 * the vote cast in it, and the commit index (persisting commit is optional
 * for safety but lets a restarted node apply without waiting for a leader).
 */
typedef struct raft_hard_state
{
	raft_term_t term;
	raft_id_t	vote;
	raft_index_t commit;
} raft_hard_state;

/*
 * Where the log starts: every entry up to index is compacted (or was
 * installed by a snapshot); term is the term of that entry and config the
 * configuration in force at it.  A new cluster starts from a base of index
 * 0, term 0 and its initial configuration.
 */
typedef struct raft_snapshot_meta
{
	raft_index_t index;
	raft_term_t term;
	raft_config config;
} raft_snapshot_meta;

typedef enum raft_msg_type
{
	RAFT_MSG_APPEND = 1,		/* AppendEntries: prev index/term, entries, commit */
	RAFT_MSG_APPEND_RESP = 2,	/* index = match (or hint when rejected) */
	RAFT_MSG_VOTE = 3,			/* RequestVote: index/log_term = last entry */
	RAFT_MSG_VOTE_RESP = 4,
	RAFT_MSG_PRE_VOTE = 5,		/* thesis 9.6; term is the term it would use */
	RAFT_MSG_PRE_VOTE_RESP = 6,
	RAFT_MSG_HEARTBEAT = 7,		/* commit and read-index context only */
	RAFT_MSG_HEARTBEAT_RESP = 8,
	RAFT_MSG_TIMEOUT_NOW = 9,	/* leadership transfer: campaign at once */
	RAFT_MSG_SNAPSHOT = 10		/* "snapshot needed": metadata of the base */
} raft_msg_type;

#define RAFT_MSG_TYPE_MAX RAFT_MSG_SNAPSHOT

extern const char *raft_msg_type_name(int type);

/* Message flags. */
#define RAFT_MSG_FLAG_TRANSFER 0x01 /* vote requested by a leadership transfer */

/*
 * One message.  Which fields mean something depends on the type:
 *
 *	APPEND			index/log_term: the entry before entries[0]; commit
 *	APPEND_RESP		index: last matching index; when reject, index is the
 *					follower's hint, log_term the term at the hint and
 *					context the rejected index; commit: the follower's
 *	(PRE_)VOTE		index/log_term: the candidate's last entry
 *	(PRE_)VOTE_RESP reject
 *	HEARTBEAT		commit, context
 *	HEARTBEAT_RESP	context; commit: the follower's
 *	SNAPSHOT		index/log_term: snapshot point; config: its configuration
 */
typedef struct raft_msg
{
	uint8_t		type;
	uint8_t		flags;
	bool		reject;
	raft_id_t	from;
	raft_id_t	to;
	raft_term_t term;
	raft_term_t log_term;
	raft_index_t index;
	raft_index_t commit;
	uint64_t	context;
	uint32_t	n_entries;
	const raft_entry *entries;
	raft_config config;
} raft_msg;

/* A linearizable read point produced by raft_read_index(). */
typedef struct raft_read_state
{
	uint64_t	request_id;
	raft_index_t index;
} raft_read_state;

typedef struct raft_ready
{
	bool		snapshot_changed;
	raft_snapshot_meta snapshot;

	bool		hard_state_changed;
	raft_hard_state hard_state;

	/* entries to persist; none when persist_from > persist_to */
	raft_index_t persist_from;
	raft_index_t persist_to;

	/* messages to send once the above is durable */
	const raft_msg *msgs;
	size_t		n_msgs;
	/* ... or at once: a leader's messages, with term and vote durable */
	bool		send_before_persist;

	/* committed entries to apply; none when apply_from > apply_to */
	raft_index_t apply_from;
	raft_index_t apply_to;

	/* ReadIndex results: safe to serve once applied >= index */
	const raft_read_state *reads;
	size_t		n_reads;
} raft_ready;

/*
 * Reads entries that the core compacted but the caller still keeps (its
 * archive), so that follower to, needing them, catches up from them rather
 * than be sent a snapshot.  Fills *prev_term with the term of entry prev,
 * and entries[] with entries prev + 1 onwards: at most max_entries, none
 * after last, and no more payload than max_bytes beyond the first entry.
 * Returns how many it filled, or 0 when the archive lacks entry prev or
 * prev + 1 (the core then sends a snapshot).  Entry prev must be in the
 * archive itself, so prev is at least 1: a follower with an empty log is
 * always sent a snapshot.  The data must stay valid until the caller's
 * raft_advance() for the ready that carries the messages.
 */
typedef uint32_t (*raft_archive_read_fn) (void *arg, raft_id_t to,
										  raft_index_t prev,
										  raft_index_t last,
										  uint32_t max_entries,
										  uint64_t max_bytes,
										  raft_term_t *prev_term,
										  raft_entry *entries);

typedef struct raft_options
{
	raft_id_t	id;
	uint32_t	election_timeout_ticks; /* base; randomised in [t, 2t) */
	uint32_t	heartbeat_ticks;
	/*
	 * Ticks between heartbeat rounds while the leader is quiet: every
	 * entry committed and held by every member, no read, no transfer.
	 * Fewer rounds then cost less; a follower still hears from its leader
	 * at least twice per election timeout, and the lease and check-quorum
	 * a round per election timeout need.  0: always heartbeat_ticks.
	 */
	uint32_t	quiet_heartbeat_ticks;
	uint64_t	random_seed;
	uint32_t	max_inflight_msgs;		/* appends in flight per peer */
	/*
	 * Payload bytes of the appends in flight per peer beyond which no more
	 * go; 0: only max_inflight_msgs counts.  With it, what waits for a slow
	 * follower stays in the log rather than in the caller's send queues.
	 * The bound is soft, as the count's is: the append that reaches it
	 * passes it, and each heartbeat answered while the window is full
	 * frees its oldest append (it may have been lost).
	 */
	uint64_t	max_inflight_bytes;
	uint32_t	max_entries_per_msg;	/* <= RAFT_MAX_ENTRIES_PER_MSG */
	uint32_t	max_bytes_per_msg;		/* payload bytes per append */
	uint32_t	log_capacity_entries;	/* in-memory log ring */
	uint32_t	log_capacity_bytes;		/* payload bytes in the ring */
	uint32_t	max_entry_bytes;		/* largest single entry */
	uint32_t	max_pending_reads;		/* ReadIndex requests in flight */
	bool		pre_vote;
	bool		check_quorum;
	/* the caller's archive of compacted entries; NULL: none */
	raft_archive_read_fn archive_read;
	void	   *archive_arg;
} raft_options;

/* Fills opts with defaults (pre-vote and check-quorum on). */
extern void raft_options_default(raft_options *opts, raft_id_t id, uint64_t seed);

typedef struct raft raft;

/*
 * Changes the election timeout and heartbeat intervals of a running core
 * (after a configuration reload).  Same limits as raft_init.
 */
extern int	raft_set_timeouts(raft *r, uint32_t election_timeout_ticks,
							  uint32_t heartbeat_ticks,
							  uint32_t quiet_heartbeat_ticks);

/* Bytes needed for a core with these options; 0 when they are invalid. */
extern size_t raft_size(const raft_options *opts);
/* Carves a core out of mem (raft_size bytes, 8-byte aligned). */
extern int	raft_init(void *mem, size_t size, const raft_options *opts, raft **out);

/*
 * Loads what the caller persisted: hard state, log base, the entries after
 * the base (contiguous from base->index + 1) and the index up to which the
 * state machine has already applied (between base->index and commit).
 * Call once, right after raft_init.  A brand-new node passes a zero hard
 * state, a base with index 0 and either its initial configuration
 * (bootstrap) or no members (a joiner that waits to be added).
 */
extern int	raft_load(raft *r, const raft_hard_state *hs,
					  const raft_snapshot_meta *base,
					  const raft_entry *entries, size_t n_entries,
					  raft_index_t applied);

/* Events */
extern int	raft_tick(raft *r);
extern int	raft_step(raft *r, const raft_msg *m);
extern int	raft_propose(raft *r, uint8_t type, const void *data, uint32_t len,
						 raft_index_t *index);
extern int	raft_persisted(raft *r, raft_index_t index, raft_term_t term);
extern int	raft_compact(raft *r, raft_index_t index);

/*
 * How many ticks may pass before one does anything (an election, a
 * heartbeat round, commit notices, a quorum check, the end of a transfer):
 * at least 1.  A caller with nothing else to do may sleep that long, then
 * pass the ticks one after the other; the ticks before the last one do
 * nothing, so the result is the same as ticking all along.
 */
extern uint32_t raft_ticks_until_due(const raft *r);

/*
 * Commit news.  Followers learn the commit index with the next append, or
 * from the tick within two ticks when none comes.  A leader's caller that
 * wants them to learn it sooner asks whether news waits for a follower
 * that has every entry (raft_commit_news_waits), and after a pause of its
 * choosing in which no append carried it, sends it (raft_send_commit_news:
 * an append without entries to each such follower).  Leaders only; false
 * and nothing elsewhere.
 */
extern bool raft_commit_news_waits(const raft *r);
extern void raft_send_commit_news(raft *r);

/*
 * A follower's answer to nothing: an acknowledgement of its committed and
 * durable entries, sent to its leader so that whatever the caller carries
 * with messages (how far it applied) reaches the leader now.  Followers
 * with a known leader only; nothing elsewhere.
 */
extern void raft_send_progress(raft *r);

/*
 * The caller knows that this follower's leader is gone: its server is not
 * running (its connections broke and its port refuses new ones), which a
 * network fault never looks like.  The follower forgets its leader, grants
 * votes at once, and stands for election within a few ticks (the voter of
 * lowest id first) instead of an election timeout.  Nothing elsewhere.
 */
extern void raft_leader_gone(raft *r);

typedef enum raft_conf_change_type
{
	RAFT_CONF_ADD_LEARNER = 1,
	RAFT_CONF_PROMOTE = 2,
	RAFT_CONF_REMOVE = 3
} raft_conf_change_type;

/*
 * Proposes one membership change (thesis 4.1: one server at a time).  The
 * leader must have committed an entry of its term and no other change may
 * be pending.  A learner is promoted only when its match_index has reached
 * the commit index.  context (may be NULL) travels in the entry unchanged.
 */
extern int	raft_propose_conf_change(raft *r, raft_conf_change_type type,
									 raft_id_t node, const void *context,
									 uint32_t context_len, raft_index_t *index);

/* Decodes a committed RAFT_ENTRY_CONFIG entry. */
extern int	raft_config_decode(const raft_entry *e, raft_config *config,
							   const uint8_t **context, uint32_t *context_len);

/*
 * Hands leadership to target (thesis 3.10); RAFT_NO_NODE picks the voter
 * with the highest match_index.  Proposals fail with
 * RAFT_ERR_TRANSFER_PENDING until the transfer ends or times out.
 */
extern int	raft_transfer_leadership(raft *r, raft_id_t target);

/*
 * Starts a ReadIndex (thesis 6.4).  The result arrives in a later ready as
 * a raft_read_state with this request_id.  Leaders only.
 */
extern int	raft_read_index(raft *r, uint64_t request_id);

/*
 * Starts an election now, as if the election timeout had passed (with a
 * pre-vote round first when enabled).  Voters only.
 */
extern int	raft_campaign_now(raft *r);

/*
 * Holds (hold true) or allows again this node's own elections: while held,
 * an election timeout that passes starts none.  The caller holds them
 * while the node could not serve as leader (its state machine is being
 * repaired), so that a node that could wins instead.  It still votes, and
 * still campaigns when a leader hands leadership to it (TimeoutNow).
 */
extern void raft_hold_campaigns(raft *r, bool hold);

/*
 * The current log base (after raft_compact or a snapshot): what the caller
 * persists as the new base when it drops the compacted prefix on disk.
 */
extern void raft_get_base(const raft *r, raft_snapshot_meta *base);

/* Ready handling */
extern bool raft_has_ready(const raft *r);
extern void raft_ready_get(raft *r, raft_ready *rd);
extern void raft_advance(raft *r);

/* Reading the log: index must lie in (first_index - 1, last_index]. */
extern int	raft_entry_get(const raft *r, raft_index_t index, raft_entry *e);
extern raft_term_t raft_term_at(const raft *r, raft_index_t index);

/* Per-member view for monitoring (leader fields are 0 elsewhere). */
typedef struct raft_member_status
{
	raft_id_t	id;
	bool		voter;
	raft_index_t match_index;
	raft_index_t next_index;
	raft_index_t commit_index;	/* as the member last reported it */
	bool		recent_active;
} raft_member_status;

typedef struct raft_status
{
	raft_id_t	id;
	raft_role	role;
	bool		is_learner;
	raft_term_t term;
	raft_id_t	vote;
	raft_id_t	leader;
	raft_index_t first_index;
	raft_index_t last_index;
	raft_term_t last_term;
	raft_index_t commit_index;
	raft_index_t applied_index;
	raft_index_t persisted_index;
	raft_id_t	transfer_target;
	bool		conf_pending;
	/* elections this node started as a candidate, and won, since raft_init */
	uint64_t	elections_started;
	uint64_t	elections_won;
	raft_config config;
	raft_member_status progress[RAFT_MAX_MEMBERS];

	/*
	 * The leader's lease: the newest heartbeat context that a majority of
	 * the voters (the leader with its own newest) have answered in this
	 * term; 0 when none has, when the node does not lead, or while it
	 * hands its leadership over.  A voter that answered a heartbeat
	 * refuses to vote for another for an election timeout after it got
	 * it, and one that restarts refuses for an election timeout after
	 * that; so no other leader can exist before the heartbeat's sending
	 * plus an election timeout.  The caller remembers when it sent each
	 * context (the HEARTBEAT messages carry it) and may take writes alone
	 * until then, less a margin for the clocks' drift and a tick.
	 */
	uint64_t	lease_context;
} raft_status;

extern void raft_get_status(const raft *r, raft_status *st);
/* The role alone, without the copying of raft_get_status. */
extern raft_role raft_get_role(const raft *r);

/*
 * The wire format (wire.c).  Every message is framed as a fixed header
 * (magic, version, type, flags, cluster id, lengths), a body, and a
 * CRC-32C over all of it.  Decoding checks every length against the
 * buffer and never reads past it.
 */
#define RAFT_WIRE_VERSION 1
#define RAFT_WIRE_MAX_MSG_BYTES (64u * 1024u * 1024u)

extern size_t raft_msg_encoded_size(const raft_msg *m);
extern int	raft_msg_encode(const raft_msg *m, uint64_t cluster_id,
							uint8_t *buf, size_t cap, size_t *len);
/*
 * Decodes buf into m.  Entry descriptors go to entries (capacity
 * entries_cap); their data points into buf, which must outlive m.
 */
extern int	raft_msg_decode(const uint8_t *buf, size_t len, uint64_t cluster_id,
							raft_msg *m, raft_entry *entries, size_t entries_cap);

extern uint32_t raft_crc32c(uint32_t crc, const void *data, size_t len);

#endif							/* PG_RAFT_RAFT_H */
