/*-------------------------------------------------------------------------
 *
 * cluster.c
 *	  The simulated cluster: nodes, disks, network, and the safety checker.
 *
 * NOTES
 *	  Each node is driven exactly as raft.h's caller contract says: after
 *	  every event its ready is taken, the snapshot, hard state and entries
 *	  are written to the node's simulated disk, then messages are encoded
 *	  onto the network, then committed entries are applied to a state
 *	  machine whose applied index is durable with it (like a replication
 *	  origin).  A crash frees the core; a restart rebuilds it from the disk
 *	  alone.
 *
 *	  The checker (thesis Figure 3.2) runs after every step:
 *		election safety		at most one leader per term, ever;
 *		leader append-only	a leader never rewrites its own log;
 *		log matching		two logs with an entry of the same index and
 *							term are identical up to it (checked through a
 *							prefix hash per (index, term));
 *		leader completeness a new leader holds every committed entry;
 *		state machine safety every node applies the same entry at an
 *							index (applied sequences are prefixes);
 *		commit monotonicity a node's commit index never goes backwards,
 *							across restarts too;
 *		read linearizability a ReadIndex is at least every commit index
 *							observed before it was asked;
 *		lease				no leader of a later term while a leader's
 *							lease runs;
 *		check-quorum		a leader no majority answers steps down.
 *
 *	  Term, vote and entries reach the disk in the worker's order, with a
 *	  crash possible between them (persist_state_and_entries).
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

/*
 * A leader steps down within this many election timeouts of hearing from
 * no majority: check-quorum looks once per timeout, at what the last one
 * brought.
 */
#define CHECK_QUORUM_TIMEOUTS 3

uint64_t
sim_random(sim_cluster *c)
{
	uint64_t	z = (c->rng += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

uint32_t
sim_random_below(sim_cluster *c, uint32_t n)
{
	return n == 0 ? 0 : (uint32_t) (sim_random(c) % n);
}

/* FNV-1a, never returning 0 (0 means "unknown" in the checker arrays). */
uint64_t
sim_hash_bytes(uint64_t h, const void *data, size_t len)
{
	const uint8_t *p = data;
	size_t		i;

	if (h == 0)
		h = 0xcbf29ce484222325ULL;
	for (i = 0; i < len; i++)
	{
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h == 0 ? 1 : h;
}

static raft_term_t
raft_status_term(const raft *r)
{
	raft_status st;

	raft_get_status(r, &st);
	return st.term;
}

static uint64_t
entry_hash(uint64_t h, raft_term_t term, uint8_t type, const void *data,
		   uint32_t len)
{
	h = sim_hash_bytes(h, &term, sizeof(term));
	h = sim_hash_bytes(h, &type, 1);
	h = sim_hash_bytes(h, &len, sizeof(len));
	return len > 0 ? sim_hash_bytes(h, data, len) : h;
}

static void *
xrealloc(void *p, size_t size)
{
	void	   *q = realloc(p, size);

	if (q == NULL)
	{
		fprintf(stderr, "sim: out of memory\n");
		exit(2);
	}
	return q;
}

void
sim_fail(sim_cluster *c, const char *fmt,...)
{
	va_list		ap;

	if (c->failed)
		return;
	c->failed = true;
	va_start(ap, fmt);
	vsnprintf(c->violation, sizeof(c->violation), fmt, ap);
	va_end(ap);
}

void
sim_trace(sim_cluster *c, const char *fmt,...)
{
	va_list		ap;

	if (!c->verbose)
		return;
	printf("[step %llu tick %llu] ", (unsigned long long) c->step,
		   (unsigned long long) c->now);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
}

/* Grows the per-index checker arrays to hold index. */
static void
hashes_reserve(sim_cluster *c, raft_index_t index)
{
	size_t		cap = c->hashes_cap;

	if (index < cap)
		return;
	while (cap <= index)
		cap = cap == 0 ? 1024 : cap * 2;
	c->committed_hash = xrealloc(c->committed_hash, cap * sizeof(uint64_t));
	c->commit_term = xrealloc(c->commit_term, cap * sizeof(raft_term_t));
	c->applied_hash = xrealloc(c->applied_hash, cap * sizeof(uint64_t));
	memset(c->committed_hash + c->hashes_cap, 0,
		   (cap - c->hashes_cap) * sizeof(uint64_t));
	memset(c->commit_term + c->hashes_cap, 0,
		   (cap - c->hashes_cap) * sizeof(raft_term_t));
	memset(c->applied_hash + c->hashes_cap, 0,
		   (cap - c->hashes_cap) * sizeof(uint64_t));
	c->hashes_cap = cap;
}

static sim_match_slot *
match_lookup(sim_cluster *c, raft_index_t index, raft_term_t term, bool insert)
{
	size_t		mask;
	size_t		i;

	if (insert && (c->match_used + 1) * 10 >= c->match_cap * 7)
	{
		sim_match_slot *old = c->match;
		size_t		old_cap = c->match_cap;

		c->match_cap = old_cap == 0 ? 4096 : old_cap * 2;
		c->match = calloc(c->match_cap, sizeof(sim_match_slot));
		if (c->match == NULL)
			exit(2);
		c->match_used = 0;
		for (i = 0; i < old_cap; i++)
			if (old[i].used)
				*match_lookup(c, old[i].index, old[i].term, true) = old[i];
		free(old);
	}
	if (c->match_cap == 0)
		return NULL;
	mask = c->match_cap - 1;
	i = (size_t) ((index * 0x9E3779B97F4A7C15ULL) ^ (term * 0xC2B2AE3D27D4EB4FULL)) & mask;
	while (c->match[i].used)
	{
		if (c->match[i].index == index && c->match[i].term == term)
			return &c->match[i];
		i = (i + 1) & mask;
	}
	if (!insert)
		return NULL;
	c->match[i].used = true;
	c->match[i].index = index;
	c->match[i].term = term;
	c->match_used++;
	return &c->match[i];
}

void
sim_init(sim_cluster *c, uint64_t seed, const raft_options *opts,
		 uint32_t voters)
{
	raft_config config;
	uint32_t	i;

	memset(c, 0, sizeof(*c));
	c->opts = *opts;
	c->seed = seed;
	c->rng = seed * 0x2545F4914F6CDD1DULL + 1;
	c->compact_every = 64;
	c->compact_keep = 8;
	c->archive_keep = 256;
	memset(&config, 0, sizeof(config));
	for (i = 0; i < voters; i++)
	{
		config.members[i].id = i + 1;
		config.members[i].voter = true;
	}
	config.n_members = voters;
	for (i = 0; i < voters; i++)
		sim_node_create(c, i + 1, &config);
}

static void
disk_truncate(sim_disk *d, size_t keep)
{
	size_t		i;

	for (i = keep; i < d->n; i++)
		free(d->entries[i].data);
	if (keep < d->n)
		d->n = keep;
}

/* Drops the oldest archived entries, keeping the last keep of them. */
static void
archive_trim(sim_disk *d, size_t keep)
{
	size_t		drop;
	size_t		i;

	if (d->n_archive <= keep)
		return;
	drop = d->n_archive - keep;
	for (i = 0; i < drop; i++)
		free(d->archive[i].data);
	memmove(d->archive, d->archive + drop, keep * sizeof(sim_entry));
	d->n_archive = keep;
}

/* Frees a node's disk, archive included. */
static void
disk_free(sim_disk *d)
{
	disk_truncate(d, 0);
	free(d->entries);
	archive_trim(d, 0);
	free(d->archive);
}

/* Frees what the node lent its core: the core no longer points there. */
static void
lent_free(sim_node *n)
{
	size_t		i;

	for (i = 0; i < n->n_lent; i++)
		free(n->lent[i]);
	n->n_lent = 0;
}

/*
 * The caller's archive (raft_archive_read_fn): the node's compacted
 * entries, copied so that trimming the archive cannot pull them from
 * under a message not yet sent.
 */
uint32_t
sim_archive_read(void *arg, raft_id_t to, raft_index_t prev, raft_index_t last,
				 uint32_t max_entries, uint64_t max_bytes,
				 raft_term_t *prev_term, raft_entry *entries)
{
	sim_node   *n = arg;
	sim_disk   *d = &n->disk;
	raft_index_t first = d->base.index - d->n_archive + 1;
	uint64_t	bytes = 0;
	uint32_t	k = 0;

	if (last > d->base.index)
		last = d->base.index;
	if (d->n_archive == 0 || prev < first || prev >= last)
		return 0;
	*prev_term = d->archive[prev - first].term;
	while (k < max_entries && prev + k < last)
	{
		const sim_entry *se = &d->archive[prev + k + 1 - first];
		raft_entry *e = &entries[k];

		if (k > 0 && bytes + se->len > max_bytes)
			break;
		e->term = se->term;
		e->index = prev + k + 1;
		e->type = se->type;
		e->len = se->len;
		e->data = NULL;
		if (se->len > 0)
		{
			uint8_t    *copy = malloc(se->len);

			if (copy == NULL)
				exit(2);
			memcpy(copy, se->data, se->len);
			if (n->n_lent == n->lent_cap)
			{
				n->lent_cap = n->lent_cap == 0 ? 64 : n->lent_cap * 2;
				n->lent = xrealloc(n->lent, n->lent_cap * sizeof(uint8_t *));
			}
			n->lent[n->n_lent++] = copy;
			e->data = copy;
		}
		bytes += se->len;
		k++;
	}
	return k;
}

void
sim_free(sim_cluster *c)
{
	uint32_t	i;
	size_t		j;

	for (i = 0; i < c->n_nodes; i++)
	{
		free(c->nodes[i].mem);
		disk_free(&c->nodes[i].disk);
		lent_free(&c->nodes[i]);
		free(c->nodes[i].lent);
	}
	for (j = 0; j < c->n_net; j++)
		free(c->net[j].buf);
	free(c->net);
	free(c->leader_of_term);
	free(c->match);
	free(c->committed_hash);
	free(c->commit_term);
	free(c->applied_hash);
	memset(c, 0, sizeof(*c));
}

sim_node *
sim_node_get(sim_cluster *c, raft_id_t id)
{
	if (id == RAFT_NO_NODE || id > c->n_nodes)
		return NULL;
	return &c->nodes[id - 1];
}

/* Builds a core from the node's disk, as a restarted process would. */
static void
node_boot(sim_cluster *c, sim_node *n)
{
	raft_options opts = c->opts;
	raft_entry *entries;
	size_t		size;
	size_t		i;
	int			rc;

	opts.id = n->id;
	opts.random_seed = c->seed * 1000003ULL + n->id * 7919ULL + c->step;
	opts.archive_arg = n;
	size = raft_size(&opts);
	n->mem = malloc(size);	/* malloc aligns for any type */
	if (n->mem == NULL)
		exit(2);
	rc = raft_init(n->mem, size, &opts, &n->r);
	if (rc != RAFT_OK)
	{
		fprintf(stderr, "sim: raft_init: %s\n", raft_strerror(rc));
		exit(2);
	}
	entries = calloc(n->disk.n + 1, sizeof(raft_entry));
	for (i = 0; i < n->disk.n; i++)
	{
		entries[i].term = n->disk.entries[i].term;
		entries[i].index = n->disk.base.index + 1 + i;
		entries[i].type = n->disk.entries[i].type;
		entries[i].len = n->disk.entries[i].len;
		entries[i].data = n->disk.entries[i].data;
	}
	/* heartbeat contexts start over with the core */
	memset(n->hb_context, 0, sizeof(n->hb_context));
	n->hb_next = 0;
	rc = raft_load(n->r, &n->disk.hs, &n->disk.base, entries, n->disk.n,
				   n->sm_applied);
	free(entries);
	if (rc != RAFT_OK)
		sim_fail(c, "node %u: raft_load of its own disk failed: %s",
				 n->id, raft_strerror(rc));
	n->up = true;
}

void
sim_node_create(sim_cluster *c, raft_id_t id, const raft_config *initial)
{
	sim_node   *n;

	if (id > SIM_MAX_NODES)
		return;
	while (c->n_nodes < id)
	{
		c->nodes[c->n_nodes].id = c->n_nodes + 1;
		c->n_nodes++;
	}
	n = &c->nodes[id - 1];
	/* a node created again starts over, empty */
	free(n->mem);
	disk_free(&n->disk);
	lent_free(n);
	free(n->lent);
	memset(n, 0, sizeof(*n));
	n->id = id;
	n->exists = true;
	if (initial != NULL)
		n->disk.base.config = *initial;
	node_boot(c, n);
	sim_trace(c, "node %u created", id);
}

void
sim_crash(sim_cluster *c, raft_id_t id)
{
	sim_node   *n = sim_node_get(c, id);

	if (n == NULL || !n->up)
		return;
	free(n->mem);
	n->mem = NULL;
	n->r = NULL;
	n->up = false;
	lent_free(n);
	sim_trace(c, "node %u crashed", id);
}

void
sim_restart(sim_cluster *c, raft_id_t id)
{
	sim_node   *n = sim_node_get(c, id);

	if (n == NULL || n->up || !n->exists)
		return;
	node_boot(c, n);
	sim_trace(c, "node %u restarted (term %llu, %zu entries after %llu)", id,
			  (unsigned long long) n->disk.hs.term, n->disk.n,
			  (unsigned long long) n->disk.base.index);
}

/* Remembers when a leader sent a heartbeat context, for the lease check. */
static void
note_heartbeat(sim_cluster *c, sim_node *n, uint64_t context)
{
	uint32_t	last;

	if (n == NULL)
		return;
	last = (n->hb_next + SIM_HEARTBEATS_KEPT - 1) % SIM_HEARTBEATS_KEPT;
	if (n->hb_context[last] == context)
		return;					/* the same round, to another follower */
	n->hb_context[n->hb_next] = context;
	n->hb_sent_at[n->hb_next] = c->now;
	n->hb_next = (n->hb_next + 1) % SIM_HEARTBEATS_KEPT;
}

static bool
same_config(const raft_config *a, const raft_config *b)
{
	uint32_t	k;

	if (a->n_members != b->n_members)
		return false;
	for (k = 0; k < a->n_members; k++)
		if (a->members[k].id != b->members[k].id ||
			a->members[k].voter != b->members[k].voter)
			return false;
	return true;
}

/*
 * The last tick at which a leader had heard from a majority of the voters
 * (itself included), counting from when it took its leadership or its
 * configuration last changed: a new configuration has a new majority.
 */
static uint64_t
majority_heard(const sim_node *n, const raft_status *st)
{
	uint64_t	heard[RAFT_MAX_MEMBERS];
	uint32_t	voters = 0;
	uint32_t	k;
	uint32_t	j;

	for (k = 0; k < st->config.n_members; k++)
	{
		raft_id_t	id = st->config.members[k].id;
		uint64_t	t;

		if (!st->config.members[k].voter)
			continue;
		t = id == n->id ? UINT64_MAX : id <= SIM_MAX_NODES ? n->heard_from[id] : 0;
		if (t < n->config_since)
			t = n->config_since;
		for (j = voters; j > 0 && heard[j - 1] < t; j--)
			heard[j] = heard[j - 1];
		heard[j] = t;
		voters++;
	}
	return voters == 0 ? n->config_since : heard[voters / 2];
}

/*
 * The tick at which a leader sent the heartbeat of its lease, or when it
 * took its leadership if no heartbeat has a majority's answer yet; 0 when
 * that heartbeat is too old to be remembered (any lease is long over).
 */
static uint64_t
lease_start(const sim_node *n, const raft_status *st)
{
	uint32_t	i;

	if (st->lease_context == 0)
		return n->leads_since;
	for (i = 0; i < SIM_HEARTBEATS_KEPT; i++)
		if (n->hb_context[i] == st->lease_context)
			return n->hb_sent_at[i];
	return 0;
}

static void
net_send(sim_cluster *c, const raft_msg *m)
{
	size_t		len = raft_msg_encoded_size(m);
	uint8_t    *buf = malloc(len);
	size_t		written;
	int			copies = 1;
	bool		queued = false;
	int			rc;
	int			k;

	rc = raft_msg_encode(m, SIM_CLUSTER_ID, buf, len, &written);
	if (rc != RAFT_OK || written != len)
	{
		sim_fail(c, "node %u: cannot encode %s: %s", m->from,
				 raft_msg_type_name(m->type), raft_strerror(rc));
		free(buf);
		return;
	}
	c->msgs_sent++;
	if (m->type == RAFT_MSG_HEARTBEAT)
		note_heartbeat(c, sim_node_get(c, m->from), m->context);
	if (c->drop_permille > 0 && sim_random_below(c, 1000) < c->drop_permille)
	{
		free(buf);
		return;
	}
	if (c->dup_permille > 0 && sim_random_below(c, 1000) < c->dup_permille)
		copies = 2;
	for (k = 0; k < copies; k++)
	{
		sim_msg    *sm;

		if (c->n_net >= c->net_cap)
		{
			if (c->net_cap >= 65536)
				break;			/* the network is saturated: drop */
			c->net_cap = c->net_cap == 0 ? 256 : c->net_cap * 2;
			c->net = xrealloc(c->net, c->net_cap * sizeof(sim_msg));
		}
		sm = &c->net[c->n_net++];
		sm->from = m->from;
		sm->to = m->to;
		sm->deliver_at = c->now + (c->max_delay_ticks > 0 ?
								   sim_random_below(c, c->max_delay_ticks + 1) : 0);
		sm->len = len;
		if (!queued)
		{
			sm->buf = buf;
			queued = true;
		}
		else
		{
			sm->buf = malloc(len);
			memcpy(sm->buf, buf, len);
		}
	}
	if (!queued)
		free(buf);
}

void
sim_drop(sim_cluster *c, size_t i)
{
	free(c->net[i].buf);
	memmove(&c->net[i], &c->net[i + 1], (c->n_net - i - 1) * sizeof(sim_msg));
	c->n_net--;
}

/*
 * Delivers message i (if its link is up and its target alive) and removes
 * it from the network.  Returns true when a core received it.
 */
bool
sim_deliver(sim_cluster *c, size_t i)
{
	sim_msg		sm = c->net[i];
	sim_node   *to = sim_node_get(c, sm.to);
	raft_entry	entries[RAFT_MAX_ENTRIES_PER_MSG];
	raft_msg	m;
	bool		delivered = false;
	int			rc;

	memmove(&c->net[i], &c->net[i + 1], (c->n_net - i - 1) * sizeof(sim_msg));
	c->n_net--;
	if (to != NULL && to->up && !c->blocked[sm.from][sm.to])
	{
		rc = raft_msg_decode(sm.buf, sm.len, SIM_CLUSTER_ID, &m, entries,
							 RAFT_MAX_ENTRIES_PER_MSG);
		if (rc != RAFT_OK)
			sim_fail(c, "decode of a message from %u failed: %s", sm.from,
					 raft_strerror(rc));
		else
		{
			sim_trace(c, "%u -> %u %s term %llu index %llu log_term %llu commit %llu n %u%s",
					  m.from, m.to, raft_msg_type_name(m.type),
					  (unsigned long long) m.term, (unsigned long long) m.index,
					  (unsigned long long) m.log_term,
					  (unsigned long long) m.commit, m.n_entries,
					  m.reject ? " reject" : "");
			if (m.from <= SIM_MAX_NODES && m.term == raft_status_term(to->r))
				to->heard_from[m.from] = c->now;
			rc = raft_step(to->r, &m);
			if (rc != RAFT_OK)
				sim_fail(c, "node %u rejected a valid message: %s", sm.to,
						 raft_strerror(rc));
			c->msgs_delivered++;
			delivered = true;
		}
	}
	free(sm.buf);
	return delivered;
}

void
sim_tick_all(sim_cluster *c)
{
	uint32_t	i;

	c->now++;
	for (i = 0; i < c->n_nodes; i++)
	{
		raft	   *r = c->nodes[i].r;
		bool		idle;
		uint32_t	due;

		if (!c->nodes[i].up)
			continue;
		/*
		 * Some ticks, a caller sends commit news early, and followers
		 * their progress, as the worker does.
		 */
		if (c->now % 3 == 0 && raft_commit_news_waits(r))
			raft_send_commit_news(r);
		if (c->now % 5 == 0)
			raft_send_progress(r);
		/* a tick before the one raft_ticks_until_due names does nothing */
		idle = !raft_has_ready(r);
		due = raft_ticks_until_due(r);
		raft_tick(r);
		if (idle && due > 1 && raft_has_ready(r))
			sim_fail(c, "node %u's tick did something %u ticks before it was due",
					 c->nodes[i].id, due);
	}
}

void
sim_heal(sim_cluster *c)
{
	memset(c->blocked, 0, sizeof(c->blocked));
	sim_trace(c, "network healed");
}

raft_id_t
sim_leader(sim_cluster *c)
{
	uint32_t	i;
	raft_id_t	leader = RAFT_NO_NODE;
	raft_term_t best = 0;

	for (i = 0; i < c->n_nodes; i++)
	{
		raft_status st;

		if (!c->nodes[i].up)
			continue;
		raft_get_status(c->nodes[i].r, &st);
		if (st.role == RAFT_LEADER && st.term >= best)
		{
			leader = st.id;
			best = st.term;
		}
	}
	return leader;
}

/* Writes the ready's entries to the disk and runs the log matching check. */
static void
persist_entries(sim_cluster *c, sim_node *n, const raft_ready *rd)
{
	sim_disk   *d = &n->disk;
	raft_index_t i;
	size_t		keep;

	if (rd->persist_from > rd->persist_to)
		return;
	if (rd->persist_from <= d->base.index ||
		rd->persist_from > d->base.index + d->n + 1)
	{
		sim_fail(c, "node %u: ready persists from %llu but the disk holds (%llu, %llu]",
				 n->id, (unsigned long long) rd->persist_from,
				 (unsigned long long) d->base.index,
				 (unsigned long long) (d->base.index + d->n));
		return;
	}
	keep = (size_t) (rd->persist_from - d->base.index - 1);
	if (keep < d->n && n->seen_role == RAFT_LEADER)
	{
		raft_status st;

		raft_get_status(n->r, &st);
		if (st.role == RAFT_LEADER && st.term == n->seen_term)
			sim_fail(c, "leader append-only: leader %u of term %llu overwrote its entries from %llu",
					 n->id, (unsigned long long) st.term,
					 (unsigned long long) rd->persist_from);
	}
	disk_truncate(d, keep);
	for (i = rd->persist_from; i <= rd->persist_to; i++)
	{
		raft_entry	e;
		sim_entry  *se;
		uint64_t	prev;
		sim_match_slot *slot;

		if (raft_entry_get(n->r, i, &e) != RAFT_OK)
		{
			sim_fail(c, "node %u: entry %llu of the ready is unreadable",
					 n->id, (unsigned long long) i);
			return;
		}
		if (d->n == d->cap)
		{
			d->cap = d->cap == 0 ? 64 : d->cap * 2;
			d->entries = xrealloc(d->entries, d->cap * sizeof(sim_entry));
		}
		prev = d->n == 0 ? d->base_prefix_hash : d->entries[d->n - 1].prefix_hash;
		se = &d->entries[d->n++];
		se->term = e.term;
		se->type = e.type;
		se->len = e.len;
		se->data = NULL;
		if (e.len > 0)
		{
			se->data = malloc(e.len);
			memcpy(se->data, e.data, e.len);
		}
		se->prefix_hash = entry_hash(prev, e.term, e.type, e.data, e.len);

		slot = match_lookup(c, i, e.term, true);
		if (slot->prefix_hash == 0)
			slot->prefix_hash = se->prefix_hash;
		else if (slot->prefix_hash != se->prefix_hash)
			sim_fail(c, "log matching: node %u holds entry %llu of term %llu with a different history",
					 n->id, (unsigned long long) i, (unsigned long long) e.term);
	}
}

/* Restores the node's state machine and disk to a snapshot. */
static void
install_snapshot(sim_cluster *c, sim_node *n, const raft_snapshot_meta *snap)
{
	sim_match_slot *slot;
	uint64_t	h = 0;
	raft_index_t i;

	hashes_reserve(c, snap->index);
	for (i = 1; i <= snap->index; i++)
	{
		if (c->applied_hash[i] == 0)
		{
			sim_fail(c, "node %u: snapshot at %llu includes entry %llu that no node applied",
					 n->id, (unsigned long long) snap->index,
					 (unsigned long long) i);
			return;
		}
		h = sim_hash_bytes(h, &c->applied_hash[i], sizeof(uint64_t));
	}
	n->sm_applied = snap->index;
	n->sm_hash = h;
	disk_truncate(&n->disk, 0);
	archive_trim(&n->disk, 0);
	n->disk.base = *snap;
	n->snapshots_installed++;
	slot = snap->index == 0 ? NULL : match_lookup(c, snap->index, snap->term, false);
	n->disk.base_prefix_hash = slot != NULL ? slot->prefix_hash : 0;
	sim_trace(c, "node %u installed snapshot at %llu", n->id,
			  (unsigned long long) snap->index);
}

static void
apply_entries(sim_cluster *c, sim_node *n, const raft_ready *rd)
{
	raft_index_t i;

	for (i = rd->apply_from; i <= rd->apply_to; i++)
	{
		raft_entry	e;
		uint64_t	h;

		if (raft_entry_get(n->r, i, &e) != RAFT_OK)
		{
			sim_fail(c, "node %u: committed entry %llu is unreadable",
					 n->id, (unsigned long long) i);
			return;
		}
		if (n->sm_applied + 1 != i)
		{
			sim_fail(c, "node %u: applies %llu after %llu", n->id,
					 (unsigned long long) i, (unsigned long long) n->sm_applied);
			return;
		}
		h = entry_hash(0, e.term, e.type, e.data, e.len);
		hashes_reserve(c, i);
		if (c->applied_hash[i] == 0)
			c->applied_hash[i] = h;
		else if (c->applied_hash[i] != h)
			sim_fail(c, "state machine safety: node %u applied a different entry at %llu (term %llu)",
					 n->id, (unsigned long long) i, (unsigned long long) e.term);
		n->sm_applied = i;
		n->sm_hash = sim_hash_bytes(n->sm_hash, &h, sizeof(h));
		c->entries_applied++;
	}
}

/*
 * Compacts the node's log up to index, in the core and then on its disk,
 * as a caller would after taking a snapshot.  Returns the core's code.
 */
int
sim_compact(sim_cluster *c, sim_node *n, raft_index_t upto)
{
	raft_snapshot_meta base;
	size_t		drop;
	size_t		i;
	int			rc;

	rc = raft_compact(n->r, upto);
	if (rc != RAFT_OK)
		return rc;
	raft_get_base(n->r, &base);
	if (base.index <= n->disk.base.index)
		return RAFT_OK;
	if (base.index > n->disk.base.index + n->disk.n)
	{
		sim_fail(c, "node %u: compacted to %llu beyond its durable log", n->id,
				 (unsigned long long) base.index);
		return RAFT_OK;
	}
	drop = (size_t) (base.index - n->disk.base.index);
	n->disk.base_prefix_hash = n->disk.entries[drop - 1].prefix_hash;
	if (c->opts.archive_read != NULL)
	{
		/* the compacted entries go to the archive, its oldest out */
		if (n->disk.n_archive + drop > n->disk.archive_cap)
		{
			n->disk.archive_cap = n->disk.n_archive + drop + 64;
			n->disk.archive = xrealloc(n->disk.archive,
									   n->disk.archive_cap * sizeof(sim_entry));
		}
		memcpy(n->disk.archive + n->disk.n_archive, n->disk.entries,
			   drop * sizeof(sim_entry));
		n->disk.n_archive += drop;
		archive_trim(&n->disk, c->archive_keep);
	}
	else
		for (i = 0; i < drop; i++)
			free(n->disk.entries[i].data);
	memmove(n->disk.entries, n->disk.entries + drop,
			(n->disk.n - drop) * sizeof(sim_entry));
	n->disk.n -= drop;
	n->disk.base = base;
	return RAFT_OK;
}

/* Compacts once enough applied entries pile up. */
static void
maybe_compact(sim_cluster *c, sim_node *n)
{
	if (c->compact_every == 0 ||
		n->sm_applied < n->disk.base.index + c->compact_every + c->compact_keep)
		return;
	sim_compact(c, n, n->sm_applied - c->compact_keep);
}

/*
 * Records newly committed entries; every node must agree on them.  The
 * term in which an entry was committed is the lowest term in which any
 * node saw it committed (a leader sees it first, in its own term).
 */
static void
note_commit(sim_cluster *c, sim_node *n, raft_index_t commit)
{
	raft_index_t i;
	raft_term_t term = raft_status_term(n->r);

	if (commit < n->seen_commit)
	{
		sim_fail(c, "commit went backwards on node %u: %llu after %llu", n->id,
				 (unsigned long long) commit,
				 (unsigned long long) n->seen_commit);
		return;
	}
	hashes_reserve(c, commit);
	for (i = n->seen_commit + 1; i <= commit; i++)
	{
		uint64_t	h;

		if (i <= n->disk.base.index)
			continue;
		if (i > n->disk.base.index + n->disk.n)
		{
			sim_fail(c, "node %u: commit %llu beyond its durable log", n->id,
					 (unsigned long long) i);
			return;
		}
		if (c->commit_term[i] == 0 || term < c->commit_term[i])
			c->commit_term[i] = term;
		h = n->disk.entries[i - n->disk.base.index - 1].prefix_hash;
		if (c->committed_hash[i] == 0)
			c->committed_hash[i] = h;
		else if (c->committed_hash[i] != h)
			sim_fail(c, "node %u committed a different entry at %llu", n->id,
					 (unsigned long long) i);
	}
	n->seen_commit = commit;
	if (commit > c->max_commit)
		c->max_commit = commit;
}

/* Crashes a node and loses every message it has in flight. */
static void
crash_losing_messages(sim_cluster *c, sim_node *n)
{
	size_t		i = 0;

	while (i < c->n_net)
		if (c->net[i].from == n->id)
			sim_drop(c, i);
		else
			i++;
	sim_crash(c, n->id);
}

/*
 * Writes term, vote and entries in the order the worker does (worker.c,
 * handle_ready): the state file first, with a commit index no further than
 * the entries already on disk, then the entries, then the commit index
 * (the worker's commit hint).  A crash may fall between the two writes.
 * Returns true if the node crashed.  Planted bug 4 writes in the other
 * order, which an earlier worker did: a crash between then leaves entries
 * of a term the state has not seen, and the node cannot start again.
 */
static bool
persist_state_and_entries(sim_cluster *c, sim_node *n, const raft_ready *rd)
{
	bool		crash = c->state_crash_permille > 0 &&
		rd->persist_from <= rd->persist_to &&
		sim_random_below(c, 1000) < c->state_crash_permille;

#if RAFT_PLANTED_BUG == 4
	persist_entries(c, n, rd);
	if (crash && rd->hard_state_changed)
	{
		sim_crash(c, n->id);
		return true;
	}
	if (rd->hard_state_changed)
		n->disk.hs = rd->hard_state;
#else
	if (rd->hard_state_changed)
	{
		raft_hard_state hs = rd->hard_state;
		raft_index_t durable = n->disk.base.index + n->disk.n;

		if (rd->persist_from <= rd->persist_to && rd->persist_from - 1 < durable)
			durable = rd->persist_from - 1;
		if (hs.commit > durable)
			hs.commit = durable;
		n->disk.hs = hs;
	}
	if (crash)
	{
		sim_crash(c, n->id);
		return true;
	}
	persist_entries(c, n, rd);
	if (rd->hard_state_changed)
		n->disk.hs.commit = rd->hard_state.commit;
#endif
	return false;
}

/* Runs the caller's side of the contract for every pending ready. */
void
sim_process(sim_cluster *c, sim_node *n)
{
	uint32_t	rounds = 0;

	while (n->up && raft_has_ready(n->r) && !c->failed)
	{
		raft_ready	rd;
		size_t		i;

		if (++rounds > 1000)
		{
			sim_fail(c, "node %u: ready never settles", n->id);
			return;
		}
		raft_ready_get(n->r, &rd);
		if (rd.send_before_persist)
		{
			/* a leader's messages go while its disk writes */
			for (i = 0; i < rd.n_msgs; i++)
				net_send(c, &rd.msgs[i]);
			if (rd.persist_from <= rd.persist_to && c->early_send_crash_permille > 0 &&
				sim_random_below(c, 1000) < c->early_send_crash_permille)
			{
				/* it dies with the entries it sent not yet on its disk */
				sim_crash(c, n->id);
				return;
			}
		}
		if (rd.snapshot_changed)
			install_snapshot(c, n, &rd.snapshot);
		if (persist_state_and_entries(c, n, &rd))
			return;
		/* all of the above is now durable: the messages may go */
		if (!rd.send_before_persist)
			for (i = 0; i < rd.n_msgs; i++)
				net_send(c, &rd.msgs[i]);
		apply_entries(c, n, &rd);
		for (i = 0; i < rd.n_reads && c->n_reads < SIM_MAX_READS; i++)
		{
			sim_read   *sr = &c->reads[c->n_reads++];

			sr->node = n->id;
			sr->request_id = rd.reads[i].request_id;
			sr->index = rd.reads[i].index;
		}
		raft_advance(n->r);
		lent_free(n);
		if (rd.persist_from <= rd.persist_to)
			raft_persisted(n->r, rd.persist_to,
						   raft_term_at(n->r, rd.persist_to));
		if (c->commit_crash_permille > 0 && rd.hard_state_changed &&
			rd.hard_state.commit > n->seen_commit &&
			n->seen_role == RAFT_LEADER &&
			sim_random_below(c, 1000) < c->commit_crash_permille)
		{
			note_commit(c, n, n->disk.hs.commit);
			crash_losing_messages(c, n);
			return;
		}
		note_commit(c, n, n->disk.hs.commit);
		maybe_compact(c, n);
		if (rd.n_msgs > 0 && c->bounce_permille > 0 &&
			sim_random_below(c, 1000) < c->bounce_permille)
		{
			/* everything it promised is durable: it must keep its word */
			sim_crash(c, n->id);
			sim_restart(c, n->id);
		}
	}
}

void
sim_process_all(sim_cluster *c)
{
	uint32_t	i;

	for (i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].up)
			sim_process(c, &c->nodes[i]);
}

/*
 * Leader completeness: the new leader of term T must hold every entry
 * committed in a term before T.  By log matching it is enough to compare
 * the prefix hash of the last such entry.
 */
static void
check_new_leader(sim_cluster *c, sim_node *n, const raft_status *st)
{
	raft_index_t i = c->max_commit;
	uint64_t	h;

	while (i > 0 && (c->commit_term[i] == 0 || c->commit_term[i] >= st->term))
		i--;
	if (i == 0 || i <= n->disk.base.index)
		return;
	if (i > n->disk.base.index + n->disk.n)
	{
		sim_fail(c, "leader completeness: leader %u of term %llu lacks committed entry %llu",
				 n->id, (unsigned long long) st->term, (unsigned long long) i);
		return;
	}
	h = n->disk.entries[i - n->disk.base.index - 1].prefix_hash;
	if (h != c->committed_hash[i])
		sim_fail(c, "leader completeness: leader %u of term %llu holds another entry at committed index %llu",
				 n->id, (unsigned long long) st->term, (unsigned long long) i);
}

/*
 * The lease and check-quorum: while a leader's lease runs (raft.h,
 * raft_status.lease_context), no leader of a later term exists; and a
 * leader that no majority has answered for CHECK_QUORUM_TIMEOUTS election
 * timeouts has stepped down.
 */
static void
check_leases(sim_cluster *c)
{
	raft_status st[SIM_MAX_NODES];
	uint64_t	start[SIM_MAX_NODES];
	uint64_t	heard;
	uint32_t	i;
	uint32_t	j;
	uint64_t	timeout = c->opts.election_timeout_ticks;

	for (i = 0; i < c->n_nodes; i++)
	{
		sim_node   *n = &c->nodes[i];

		st[i].role = RAFT_FOLLOWER;
		if (!n->up)
			continue;
		raft_get_status(n->r, &st[i]);
		if (st[i].role != RAFT_LEADER)
			continue;
		if (!same_config(&n->seen_config, &st[i].config))
		{
			n->seen_config = st[i].config;
			n->config_since = c->now;
		}
		start[i] = lease_start(n, &st[i]);
		heard = majority_heard(n, &st[i]);
		if (c->now > heard + CHECK_QUORUM_TIMEOUTS * timeout)
		{
			sim_fail(c, "check-quorum: leader %u of term %llu has not heard from a majority for %llu ticks",
					 n->id, (unsigned long long) st[i].term,
					 (unsigned long long) (c->now - heard));
			return;
		}
	}
	for (i = 0; i < c->n_nodes; i++)
	{
		if (st[i].role != RAFT_LEADER || st[i].lease_context == 0 ||
			c->now >= start[i] + timeout)
			continue;
		for (j = 0; j < c->n_nodes; j++)
			if (st[j].role == RAFT_LEADER && st[j].term > st[i].term)
			{
				sim_fail(c, "lease: node %u leads term %llu while the lease of node %u (term %llu) runs until tick %llu",
						 c->nodes[j].id, (unsigned long long) st[j].term,
						 c->nodes[i].id, (unsigned long long) st[i].term,
						 (unsigned long long) (start[i] + timeout));
				return;
			}
	}
}

void
sim_check(sim_cluster *c)
{
	uint32_t	i;

	for (i = 0; i < c->n_nodes && !c->failed; i++)
	{
		sim_node   *n = &c->nodes[i];
		raft_status st;

		if (!n->up)
			continue;
		raft_get_status(n->r, &st);
		if (st.role == RAFT_LEADER)
		{
			if (st.term >= c->leader_of_term_cap)
			{
				size_t		cap = c->leader_of_term_cap;

				while (cap <= st.term)
					cap = cap == 0 ? 256 : cap * 2;
				c->leader_of_term = xrealloc(c->leader_of_term,
											 cap * sizeof(raft_id_t));
				memset(c->leader_of_term + c->leader_of_term_cap, 0,
					   (cap - c->leader_of_term_cap) * sizeof(raft_id_t));
				c->leader_of_term_cap = cap;
			}
			if (c->leader_of_term[st.term] == RAFT_NO_NODE)
				c->leader_of_term[st.term] = n->id;
			else if (c->leader_of_term[st.term] != n->id)
				sim_fail(c, "election safety: nodes %u and %u both led term %llu",
						 c->leader_of_term[st.term], n->id,
						 (unsigned long long) st.term);
			if (n->seen_role != RAFT_LEADER || n->seen_term != st.term)
			{
				n->leads_since = c->now;
				n->config_since = c->now;
				sim_trace(c, "node %u leads term %llu", n->id,
						  (unsigned long long) st.term);
				check_new_leader(c, n, &st);
			}
			else if (st.last_index < n->seen_last)
				sim_fail(c, "leader append-only: leader %u's log shrank from %llu to %llu",
						 n->id, (unsigned long long) n->seen_last,
						 (unsigned long long) st.last_index);
		}
		if (st.commit_index < n->seen_commit)
			sim_fail(c, "commit went backwards on node %u: %llu after %llu",
					 n->id, (unsigned long long) st.commit_index,
					 (unsigned long long) n->seen_commit);
		if (st.applied_index > st.commit_index)
			sim_fail(c, "node %u applied %llu beyond commit %llu", n->id,
					 (unsigned long long) st.applied_index,
					 (unsigned long long) st.commit_index);
		n->seen_role = st.role;
		n->seen_term = st.term;
		n->seen_last = st.last_index;
	}
	if (!c->failed)
		check_leases(c);
}

/* Prints every node's view, for a replayed failure. */
void
sim_dump(sim_cluster *c, FILE *out)
{
	uint32_t	i;
	uint32_t	k;

	for (i = 0; i < c->n_nodes; i++)
	{
		sim_node   *n = &c->nodes[i];
		raft_status st;

		if (!n->up)
		{
			fprintf(out, "  node %u: down\n", n->id);
			continue;
		}
		raft_get_status(n->r, &st);
		fprintf(out, "  node %u: %s term %llu vote %u leader %u log (%llu, %llu] last_term %llu commit %llu applied %llu config",
				n->id, raft_role_name(st.role), (unsigned long long) st.term,
				st.vote, st.leader, (unsigned long long) st.first_index - 1,
				(unsigned long long) st.last_index,
				(unsigned long long) st.last_term,
				(unsigned long long) st.commit_index,
				(unsigned long long) st.applied_index);
		for (k = 0; k < st.config.n_members; k++)
			fprintf(out, " %u%s", st.config.members[k].id,
					st.config.members[k].voter ? "" : "(learner)");
		fprintf(out, "\n");
	}
}
