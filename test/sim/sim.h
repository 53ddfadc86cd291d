/*-------------------------------------------------------------------------
 *
 * sim.h
 *	  The deterministic cluster simulator shared by the random campaign
 *	  (sim.c) and the scripted scenarios (script.c).
 *
 * NOTES
 *	  A sim_cluster holds up to SIM_MAX_NODES cores in one process, a
 *	  simulated disk per node (only what the caller contract says is
 *	  durable survives sim_crash), a network of encoded messages (every
 *	  message goes through raft_msg_encode and raft_msg_decode), and the
 *	  checker state.  Node ids are 1..SIM_MAX_NODES; node id i lives in
 *	  nodes[i - 1].  All randomness comes from the cluster's seed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_SIM_H
#define PG_RAFT_SIM_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "raft.h"

#define SIM_MAX_NODES 16
#define SIM_CLUSTER_ID 0x5052414654ULL

typedef struct sim_entry
{
	raft_term_t term;
	uint8_t		type;
	uint32_t	len;
	uint8_t    *data;
	uint64_t	prefix_hash;	/* hash of this entry and all before it */
} sim_entry;

/* What a node has made durable. */
typedef struct sim_disk
{
	raft_hard_state hs;
	raft_snapshot_meta base;
	uint64_t	base_prefix_hash;
	sim_entry  *entries;		/* base.index + 1 ... */
	size_t		n;
	size_t		cap;
	/* compacted entries kept: base.index - n_archive + 1 ... base.index */
	sim_entry  *archive;
	size_t		n_archive;
	size_t		archive_cap;
} sim_disk;

#define SIM_HEARTBEATS_KEPT 64

typedef struct sim_node
{
	raft_id_t	id;
	bool		exists;			/* has ever been started */
	bool		up;
	void	   *mem;
	raft	   *r;
	sim_disk	disk;
	/* copies of archived entries lent to the core until raft_advance */
	uint8_t   **lent;
	size_t		n_lent;
	size_t		lent_cap;
	uint64_t	snapshots_installed;
	/* the state machine, durable together with its applied index */
	raft_index_t sm_applied;
	uint64_t	sm_hash;
	/* checker memory */
	raft_index_t seen_commit;
	raft_role	seen_role;
	raft_term_t seen_term;
	raft_index_t seen_last;
	uint64_t	leads_since;	/* the tick it took its leadership */
	raft_config seen_config;	/* ... its configuration, since this tick */
	uint64_t	config_since;
	/* as leader: the tick it last got a message of its term from each */
	uint64_t	heard_from[SIM_MAX_NODES + 1];
	/* the heartbeat contexts it sent last, and when (a ring) */
	uint64_t	hb_context[SIM_HEARTBEATS_KEPT];
	uint64_t	hb_sent_at[SIM_HEARTBEATS_KEPT];
	uint32_t	hb_next;
} sim_node;

typedef struct sim_msg
{
	raft_id_t	from;
	raft_id_t	to;
	uint64_t	deliver_at;
	uint8_t    *buf;
	size_t		len;
} sim_msg;

/* A ReadIndex result, as a node's ready handed it out. */
typedef struct sim_read
{
	raft_id_t	node;
	uint64_t	request_id;
	raft_index_t index;
} sim_read;

#define SIM_MAX_READS 64

/* (index, term) -> prefix hash: the Log Matching witness */
typedef struct sim_match_slot
{
	raft_index_t index;
	raft_term_t term;
	uint64_t	prefix_hash;
	bool		used;
} sim_match_slot;

typedef struct sim_cluster
{
	raft_options opts;
	uint64_t	seed;
	uint64_t	rng;
	sim_node	nodes[SIM_MAX_NODES];
	uint32_t	n_nodes;		/* ids 1..n_nodes exist */

	sim_msg    *net;
	size_t		n_net;
	size_t		net_cap;
	bool		blocked[SIM_MAX_NODES + 1][SIM_MAX_NODES + 1];

	/* faults applied when sending */
	uint32_t	drop_permille;
	uint32_t	dup_permille;
	uint32_t	max_delay_ticks;
	/* chance that a node crashes and restarts right after sending */
	uint32_t	bounce_permille;
	/* chance that a leader crashes as it commits, its last messages lost */
	uint32_t	commit_crash_permille;
	/* a leader crashes after sending entries it had not persisted */
	uint32_t	early_send_crash_permille;
	/* a node crashes between writing its term and vote and its entries */
	uint32_t	state_crash_permille;

	/* compaction policy */
	uint32_t	compact_every;
	uint32_t	compact_keep;
	/* compacted entries a node keeps, with options.archive_read set */
	uint32_t	archive_keep;

	uint64_t	now;			/* ticks */
	uint64_t	step;

	/* checker state */
	raft_id_t  *leader_of_term;
	size_t		leader_of_term_cap;
	sim_match_slot *match;
	size_t		match_cap;
	size_t		match_used;
	uint64_t   *committed_hash; /* by index; 0 = unknown */
	raft_term_t *commit_term;	/* by index: term it was committed in */
	uint64_t   *applied_hash;	/* by index; 0 = unknown */
	size_t		hashes_cap;
	raft_index_t max_commit;

	bool		failed;
	char		violation[512];
	bool		verbose;		/* print every event (replaying a seed) */

	/* ReadIndex results since the driver last looked (oldest dropped) */
	sim_read	reads[SIM_MAX_READS];
	uint32_t	n_reads;

	/* statistics */
	uint64_t	msgs_sent;
	uint64_t	msgs_delivered;
	uint64_t	entries_applied;
	uint64_t	proposals_committed;
} sim_cluster;

extern uint64_t sim_random(sim_cluster *c);
extern uint32_t sim_random_below(sim_cluster *c, uint32_t n);
extern uint64_t sim_hash_bytes(uint64_t h, const void *data, size_t len);

extern uint32_t sim_archive_read(void *arg, raft_id_t to, raft_index_t prev,
								 raft_index_t last,
								 uint32_t max_entries, uint64_t max_bytes,
								 raft_term_t *prev_term, raft_entry *entries);
extern void sim_init(sim_cluster *c, uint64_t seed, const raft_options *opts,
					 uint32_t voters);
extern void sim_free(sim_cluster *c);
extern sim_node *sim_node_get(sim_cluster *c, raft_id_t id);
extern void sim_node_create(sim_cluster *c, raft_id_t id,
							const raft_config *initial);
extern void sim_crash(sim_cluster *c, raft_id_t id);
extern void sim_restart(sim_cluster *c, raft_id_t id);
extern void sim_process(sim_cluster *c, sim_node *n);
extern void sim_process_all(sim_cluster *c);
extern bool sim_deliver(sim_cluster *c, size_t i);
extern void sim_drop(sim_cluster *c, size_t i);
extern void sim_tick_all(sim_cluster *c);
extern void sim_check(sim_cluster *c);
extern void sim_fail(sim_cluster *c, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern void sim_trace(sim_cluster *c, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));
extern raft_id_t sim_leader(sim_cluster *c);
extern void sim_heal(sim_cluster *c);
extern int	sim_compact(sim_cluster *c, sim_node *n, raft_index_t upto);
extern void sim_dump(sim_cluster *c, FILE *out);

/* script.c */
extern int	sim_run_script(const char *path, bool verbose);

#endif							/* PG_RAFT_SIM_H */
