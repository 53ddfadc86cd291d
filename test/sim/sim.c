/*-------------------------------------------------------------------------
 *
 * sim.c
 *	  The simulator's command line: seeded random campaigns, scripted
 *	  scenarios, and the core benchmark.
 *
 * NOTES
 *	  A campaign runs each seed for a number of steps.  A step is one event:
 *	  deliver a message (picked at random among those due, so messages are
 *	  reordered), advance the clock one tick on every live node, propose,
 *	  or inject a fault (crash with or without losing unsynced work,
 *	  restart, symmetric or one-way partition, heal, membership change,
 *	  leadership transfer, ReadIndex).  Messages are also dropped,
 *	  duplicated and delayed as they are sent.
 *
 *	  A seed alternates chaos periods with healing periods.  When a period
 *	  of chaos ends, the network heals and every node restarts; a leader
 *	  must then emerge, a fresh proposal commit, and every live member
 *	  learn that it committed, within LIVENESS_TICKS, or the run reports a
 *	  liveness violation.
 *
 *	  `sim --seed N` replays seed N exactly; `--verbose` prints every event.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim.h"

#define LIVENESS_TICKS 200
#define MAX_MEMBERS_IN_SIM 9

typedef struct campaign
{
	sim_cluster c;
	bool		healing;
	uint32_t	chaos_left;
	uint64_t	liveness_deadline;
	raft_id_t	probe_leader;	/* node that holds our liveness proposal */
	bool		probe_committed;	/* ... and has committed it */
	raft_index_t probe_index;
	raft_term_t probe_term;
	uint64_t	next_payload;
	raft_id_t	last_leader;	/* leader seen at the previous chaos step */
	/* ReadIndex requests: the commit observed before each was asked */
	raft_index_t read_floor[64];
	uint64_t	next_read;
} campaign;

/*
 * Varies the core's options with the seed, so that campaigns cover small
 * batches and windows (which let old entries reach a majority before a new
 * leader's no-op does), windows bounded by bytes, elections without the
 * pre-vote round, and followers caught up from an archive of compacted
 * entries (its size is the campaign's: seed_archive_keep).
 */
static void
seed_options(raft_options *opts, uint64_t seed)
{
	static const uint32_t batch[] = {1, 2, 8};
	static const uint32_t window[] = {1, 4};
	static const uint64_t window_bytes[] = {0, 64};
	uint64_t	h = sim_hash_bytes(0, &seed, sizeof(seed));

	opts->max_entries_per_msg = batch[h % 3];
	opts->max_inflight_msgs = window[(h >> 8) % 2];
	opts->pre_vote = (h >> 16) % 2 == 0;
	opts->quiet_heartbeat_ticks = (h >> 24) % 2 == 0 ? 0 : opts->election_timeout_ticks / 2;
	opts->max_inflight_bytes = window_bytes[(h >> 32) % 2];
	opts->archive_read = (h >> 40) % 3 == 0 ? NULL : sim_archive_read;
}

/* Compacted entries each node keeps when the seed gives it an archive. */
static uint32_t
seed_archive_keep(uint64_t seed)
{
	uint64_t	h = sim_hash_bytes(0, &seed, sizeof(seed));

	return (h >> 40) % 3 == 1 ? 16 : 256;
}

static void
default_options(raft_options *opts)
{
	raft_options_default(opts, 1, 0);
	opts->election_timeout_ticks = 10;
	opts->heartbeat_ticks = 2;
	opts->max_inflight_msgs = 4;
	opts->max_entries_per_msg = 8;
	opts->max_bytes_per_msg = 4096;
	opts->log_capacity_entries = 512;
	opts->log_capacity_bytes = 64 * 1024;
	opts->max_entry_bytes = 1024;
	opts->max_pending_reads = 16;
}

static raft_id_t
random_node(sim_cluster *c, bool want_up)
{
	raft_id_t	candidates[SIM_MAX_NODES];
	uint32_t	n = 0;
	uint32_t	i;

	for (i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].exists && c->nodes[i].up == want_up)
			candidates[n++] = c->nodes[i].id;
	return n == 0 ? RAFT_NO_NODE : candidates[sim_random_below(c, n)];
}

static void
propose(campaign *cp, raft_id_t leader, raft_index_t *index)
{
	sim_node   *n = sim_node_get(&cp->c, leader);
	char		payload[64];
	int			len;

	len = snprintf(payload, sizeof(payload), "seed %llu payload %llu",
				   (unsigned long long) cp->c.seed,
				   (unsigned long long) ++cp->next_payload);
	raft_propose(n->r, RAFT_ENTRY_NORMAL, payload, (uint32_t) len, index);
}

/* A random membership change proposed on the leader. */
static void
change_membership(campaign *cp, raft_id_t leader)
{
	sim_cluster *c = &cp->c;
	sim_node   *n = sim_node_get(c, leader);
	raft_status st;
	uint32_t	voters = 0;
	uint32_t	i;
	uint32_t	pick = sim_random_below(c, 3);

	raft_get_status(n->r, &st);
	for (i = 0; i < st.config.n_members; i++)
		if (st.config.members[i].voter)
			voters++;
	/* learners waiting for promotion get it first, once caught up */
	if (voters < st.config.n_members && sim_random_below(c, 2) == 0)
		pick = 1;

	if (pick == 0 && st.config.n_members < MAX_MEMBERS_IN_SIM &&
		c->n_nodes < SIM_MAX_NODES)
	{
		raft_id_t	id = c->n_nodes + 1;

		/* a brand-new node that waits, empty, to be added */
		sim_node_create(c, id, NULL);
		if (raft_propose_conf_change(n->r, RAFT_CONF_ADD_LEARNER, id,
									 "ctx", 3, NULL) == RAFT_OK)
			sim_trace(c, "leader %u adds learner %u", leader, id);
	}
	else if (pick == 1)
	{
		for (i = 0; i < st.config.n_members; i++)
		{
			int			rc;

			if (st.config.members[i].voter)
				continue;
			rc = raft_propose_conf_change(n->r, RAFT_CONF_PROMOTE,
										  st.config.members[i].id,
										  NULL, 0, NULL);
			sim_trace(c, "leader %u promotes %u: %s", leader,
					  st.config.members[i].id, raft_strerror(rc));
			if (rc == RAFT_OK)
				break;
		}
	}
	else if (st.config.n_members > 0)
	{
		raft_member m = st.config.members[sim_random_below(c, st.config.n_members)];

		if ((!m.voter || voters > 3) &&
			raft_propose_conf_change(n->r, RAFT_CONF_REMOVE, m.id,
									 NULL, 0, NULL) == RAFT_OK)
			sim_trace(c, "leader %u removes %u", leader, m.id);
	}
}

static void
partition(sim_cluster *c, bool one_way)
{
	raft_id_t	a = random_node(c, true);
	raft_id_t	b = random_node(c, true);
	uint32_t	i;
	uint32_t	j;

	if (one_way)
	{
		if (a != RAFT_NO_NODE && b != RAFT_NO_NODE && a != b)
		{
			c->blocked[a][b] = true;
			sim_trace(c, "link %u -> %u cut", a, b);
		}
		return;
	}
	/* split every node into one of two sides */
	{
		bool		side[SIM_MAX_NODES + 1];

		for (i = 1; i <= c->n_nodes; i++)
			side[i] = sim_random_below(c, 2) == 1;
		for (i = 1; i <= c->n_nodes; i++)
			for (j = 1; j <= c->n_nodes; j++)
				c->blocked[i][j] = side[i] != side[j];
		sim_trace(c, "network partitioned");
	}
}

/* Cuts every link to and from one node. */
static void
isolate(sim_cluster *c, raft_id_t id)
{
	uint32_t	i;

	for (i = 1; i <= c->n_nodes; i++)
	{
		c->blocked[id][i] = i != id;
		c->blocked[i][id] = i != id;
	}
	sim_trace(c, "node %u isolated", id);
}

static void
read_index(campaign *cp, raft_id_t leader)
{
	sim_node   *n = sim_node_get(&cp->c, leader);
	uint64_t	id = ++cp->next_read;

	cp->read_floor[id % 64] = cp->c.max_commit;
	raft_read_index(n->r, id);
}

/* Checks ReadIndex results: none may be older than a commit seen before it. */
static void
check_reads(campaign *cp)
{
	sim_cluster *c = &cp->c;
	uint32_t	k;

	for (k = 0; k < c->n_reads; k++)
	{
		uint64_t	id = c->reads[k].request_id;

		if (id + 64 > cp->next_read &&
			c->reads[k].index < cp->read_floor[id % 64])
			sim_fail(c, "read index: request %llu got %llu, but %llu was committed before it was asked",
					 (unsigned long long) id,
					 (unsigned long long) c->reads[k].index,
					 (unsigned long long) cp->read_floor[id % 64]);
	}
	c->n_reads = 0;
}

/*
 * Followers whose leader crashed learn it, as the worker does when the
 * leader's port refuses connections; never of a leader that is up.
 */
static void
leader_gone(sim_cluster *c)
{
	uint32_t	i;

	for (i = 0; i < c->n_nodes; i++)
	{
		sim_node   *n = &c->nodes[i];
		sim_node   *leader;
		raft_status st;

		if (!n->up)
			continue;
		raft_get_status(n->r, &st);
		leader = st.leader != RAFT_NO_NODE ? sim_node_get(c, st.leader) : NULL;
		if (st.role == RAFT_FOLLOWER && leader != NULL && !leader->up)
		{
			raft_leader_gone(n->r);
			sim_trace(c, "node %u learns that leader %u is gone", n->id, st.leader);
		}
	}
}

/* Picks a message that is due, starting at a random place. */
static bool
deliver_random(sim_cluster *c)
{
	size_t		start;
	size_t		k;

	if (c->n_net == 0)
		return false;
	start = sim_random_below(c, (uint32_t) c->n_net);
	for (k = 0; k < c->n_net; k++)
	{
		size_t		i = (start + k) % c->n_net;

		if (c->net[i].deliver_at <= c->now)
		{
			sim_deliver(c, i);
			return true;
		}
	}
	return false;
}

static void
chaos_step(campaign *cp)
{
	sim_cluster *c = &cp->c;
	raft_id_t	leader = sim_leader(c);
	uint32_t	roll;

	if (leader != cp->last_leader)
	{
		/*
		 * A new leader is cut off before its first entries spread now and
		 * then: that leaves logs that diverge in their last term, the
		 * ingredient of the thesis' Figure 3.7.
		 */
		cp->last_leader = leader;
		if (leader != RAFT_NO_NODE && sim_random_below(c, 100) < 15)
		{
			isolate(c, leader);
			return;
		}
	}
	if (sim_random_below(c, 100) < 90 && deliver_random(c))
		return;
	roll = sim_random_below(c, 1000);
	if (roll < 12)
	{
		/* a third of the crashes hit the leader */
		raft_id_t	id = roll < 4 && leader != RAFT_NO_NODE ?
			leader : random_node(c, true);

		/* half the crashes lose work the node had not yet made durable */
		if (id != RAFT_NO_NODE && sim_random_below(c, 2) == 0)
		{
			size_t		k;

			for (k = 0; k < c->n_net; k++)
				if (c->net[k].to == id)
				{
					sim_deliver(c, k);
					break;
				}
			raft_tick(sim_node_get(c, id)->r);
		}
		sim_crash(c, id);
	}
	else if (roll < 24)
		sim_restart(c, random_node(c, false));
	else if (roll < 28)
		partition(c, false);
	else if (roll < 31 && leader != RAFT_NO_NODE)
		isolate(c, leader);
	else if (roll < 34)
		partition(c, true);
	else if (roll < 42)
		sim_heal(c);
	else if (roll < 80 && leader != RAFT_NO_NODE)
		change_membership(cp, leader);
	else if (roll < 86 && leader != RAFT_NO_NODE)
	{
		raft_id_t	target = random_node(c, true);

		if (target == leader || sim_random_below(c, 2) == 0)
			target = RAFT_NO_NODE;
		if (raft_transfer_leadership(sim_node_get(c, leader)->r, target) == RAFT_OK)
			sim_trace(c, "leader %u transfers to %u", leader, target);
	}
	else if (roll < 100 && leader != RAFT_NO_NODE)
		read_index(cp, leader);
	else if (roll < 110)
		leader_gone(c);
	else if (roll < 300 && leader != RAFT_NO_NODE)
		propose(cp, leader, NULL);
	else
		sim_tick_all(c);
}

static void
start_healing(campaign *cp)
{
	sim_cluster *c = &cp->c;
	uint32_t	i;

	sim_heal(c);
	c->drop_permille = 0;
	c->dup_permille = 0;
	c->bounce_permille = 0;
	c->commit_crash_permille = 0;
	c->early_send_crash_permille = 0;
	c->state_crash_permille = 0;
	c->max_delay_ticks = 0;
	for (i = 0; i < c->n_nodes; i++)
		if (c->nodes[i].exists && !c->nodes[i].up)
			sim_restart(c, c->nodes[i].id);
	cp->healing = true;
	cp->liveness_deadline = c->now + LIVENESS_TICKS;
	cp->probe_leader = RAFT_NO_NODE;
	cp->probe_committed = false;
}

static void
start_chaos(campaign *cp)
{
	sim_cluster *c = &cp->c;

	cp->healing = false;
	cp->chaos_left = 200 + sim_random_below(c, 800);
	c->drop_permille = sim_random_below(c, 80);
	c->dup_permille = sim_random_below(c, 40);
	c->max_delay_ticks = sim_random_below(c, 4);
	c->bounce_permille = sim_random_below(c, 20);
	c->commit_crash_permille = sim_random_below(c, 200);
	c->early_send_crash_permille = sim_random_below(c, 50);
	c->state_crash_permille = sim_random_below(c, 100);
}

/*
 * Whether every live member of leader_status's configuration (learners
 * too) has learnt that index is committed.
 */
static bool
members_know_commit(sim_cluster *c, const raft_status *leader_status,
					raft_index_t index)
{
	uint32_t	i;

	for (i = 0; i < leader_status->config.n_members; i++)
	{
		sim_node   *n = sim_node_get(c, leader_status->config.members[i].id);
		raft_status st;

		if (n == NULL || !n->up)
			continue;
		raft_get_status(n->r, &st);
		if (st.commit_index < index)
			return false;
	}
	return true;
}

/*
 * After healing, a leader must emerge and commit a new proposal, and every
 * live member must learn of that commit.  The proposal is retried on each
 * new leader until one commits it.
 */
static void
healing_step(campaign *cp)
{
	sim_cluster *c = &cp->c;
	raft_id_t	leader;

	if (c->now > cp->liveness_deadline)
	{
		sim_fail(c, cp->probe_committed ?
				 "liveness: a member did not learn of the commit within %d ticks after the faults healed" :
				 "liveness: no proposal committed within %d ticks after the faults healed",
				 LIVENESS_TICKS);
		return;
	}
	if (cp->probe_leader != RAFT_NO_NODE)
	{
		sim_node   *n = sim_node_get(c, cp->probe_leader);
		raft_status st;

		raft_get_status(n->r, &st);
		if (st.commit_index >= cp->probe_index &&
			raft_term_at(n->r, cp->probe_index) == cp->probe_term)
		{
			cp->probe_committed = true;
			if (members_know_commit(c, &st, cp->probe_index))
			{
				c->proposals_committed++;
				start_chaos(cp);
				return;
			}
		}
		else if (st.role != RAFT_LEADER || st.term != cp->probe_term)
			cp->probe_leader = RAFT_NO_NODE;
	}
	leader = sim_leader(c);
	if (cp->probe_leader == RAFT_NO_NODE && leader != RAFT_NO_NODE)
	{
		raft_index_t index = 0;

		propose(cp, leader, &index);
		if (index != 0)
		{
			cp->probe_leader = leader;
			cp->probe_index = index;
			cp->probe_term = raft_term_at(sim_node_get(c, leader)->r, index);
		}
	}
	/* a healed network delivers in order */
	if (sim_random_below(c, 100) < 95 && c->n_net > 0)
	{
		sim_deliver(c, 0);
		return;
	}
	sim_tick_all(c);
}

/* Runs one seed; returns true when every check held. */
static bool
run_seed(uint64_t seed, uint32_t voters, uint64_t steps, bool verbose,
		 uint64_t *steps_done, uint64_t *committed)
{
	campaign   *cp = calloc(1, sizeof(campaign));
	raft_options opts;
	bool		ok;
	uint64_t	s;

	default_options(&opts);
	seed_options(&opts, seed);
	sim_init(&cp->c, seed, &opts, voters);
	cp->c.archive_keep = seed_archive_keep(seed);
	cp->c.verbose = verbose;
	start_chaos(cp);
	for (s = 0; s < steps && !cp->c.failed; s++)
	{
		cp->c.step = s;
		if (cp->healing)
			healing_step(cp);
		else
		{
			chaos_step(cp);
			if (--cp->chaos_left == 0)
				start_healing(cp);
		}
		sim_process_all(&cp->c);
		check_reads(cp);
		sim_check(&cp->c);
	}
	ok = !cp->c.failed;
	if (!ok)
		printf("VIOLATION seed=%llu nodes=%u step=%llu: %s\n"
			   "  replay: sim --seed %llu --nodes %u --steps %llu --verbose\n",
			   (unsigned long long) seed, voters,
			   (unsigned long long) cp->c.step, cp->c.violation,
			   (unsigned long long) seed, voters, (unsigned long long) steps);
	if (!ok && verbose)
		sim_dump(&cp->c, stdout);
	*steps_done += s;
	*committed += cp->c.max_commit;
	sim_free(&cp->c);
	free(cp);
	return ok;
}

/*
 * The benchmark: 3 nodes, a proposal whenever the leader has room, the
 * rest of the steps delivering and ticking.  Prints simulated steps and
 * committed entries per second of wall time.
 */
static int
run_bench(bool faults, double seconds)
{
	campaign   *cp = calloc(1, sizeof(campaign));
	sim_cluster *c = &cp->c;
	raft_options opts;
	struct timespec t0;
	struct timespec t1;
	double		elapsed = 0;
	uint64_t	steps = 0;
	int			rc;

	default_options(&opts);
	opts.log_capacity_entries = 4096;
	opts.log_capacity_bytes = 1024 * 1024;
	sim_init(c, 42, &opts, 3);
	c->compact_every = 1024;
	c->compact_keep = 64;
	start_chaos(cp);
	if (!faults)
	{
		c->drop_permille = 0;
		c->dup_permille = 0;
		c->max_delay_ticks = 0;
		c->bounce_permille = 0;
		c->commit_crash_permille = 0;
		c->early_send_crash_permille = 0;
		c->state_crash_permille = 0;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (elapsed < seconds && !c->failed)
	{
		uint32_t	k;

		for (k = 0; k < 1000; k++)
		{
			raft_id_t	leader;

			c->step = steps++;
			if (faults)
			{
				chaos_step(cp);
				if (--cp->chaos_left == 0)
					start_healing(cp);
				if (cp->healing)
					start_chaos(cp);
			}
			else if ((leader = sim_leader(c)) != RAFT_NO_NODE &&
					 sim_random_below(c, 100) < 30)
				propose(cp, leader, NULL);
			else if (!deliver_random(c))
				sim_tick_all(c);
			sim_process_all(c);
			sim_check(c);
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		elapsed = (double) (t1.tv_sec - t0.tv_sec) +
			(double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
	}
	printf("bench %-9s 3 nodes: %.0f steps/s, %.0f committed entries/s, %.0f messages/s (%.1f s, %llu steps)\n",
		   faults ? "faults" : "no-faults",
		   (double) steps / elapsed, (double) c->max_commit / elapsed,
		   (double) c->msgs_delivered / elapsed, elapsed,
		   (unsigned long long) steps);
	rc = c->failed ? 1 : 0;
	if (c->failed)
		printf("VIOLATION during bench: %s\n", c->violation);
	sim_free(c);
	free(cp);
	return rc;
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: sim [--seeds A..B | --seed N] [--steps K] [--nodes 3|5|7]\n"
			"           [--verbose]\n"
			"       sim --script FILE [--verbose]\n"
			"       sim --bench [--faults] [--seconds S]\n"
			"Without --nodes, seeds cycle through 3, 5 and 7 nodes.\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	uint64_t	first = 1;
	uint64_t	last = 100;
	uint64_t	steps = 5000;
	uint32_t	nodes = 0;
	bool		verbose = false;
	bool		bench = false;
	bool		faults = false;
	double		seconds = 5;
	const char *script = NULL;
	uint64_t	seed;
	uint64_t	failed = 0;
	uint64_t	steps_done = 0;
	uint64_t	committed = 0;
	struct timespec t0;
	struct timespec t1;
	double		elapsed;
	int			i;

	for (i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc)
		{
			unsigned long long a;
			unsigned long long b;

			if (sscanf(argv[++i], "%llu..%llu", &a, &b) != 2 || a > b)
				usage();
			first = a;
			last = b;
		}
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			first = last = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc)
			steps = strtoull(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--nodes") == 0 && i + 1 < argc)
		{
			nodes = (uint32_t) atoi(argv[++i]);
			if (nodes < 1 || nodes > 7)
				usage();
		}
		else if (strcmp(argv[i], "--verbose") == 0)
			verbose = true;
		else if (strcmp(argv[i], "--script") == 0 && i + 1 < argc)
			script = argv[++i];
		else if (strcmp(argv[i], "--bench") == 0)
			bench = true;
		else if (strcmp(argv[i], "--faults") == 0)
			faults = true;
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atof(argv[++i]);
		else
			usage();
	}
	if (script != NULL)
		return sim_run_script(script, verbose);
	if (bench)
		return run_bench(faults, seconds);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (seed = first; seed <= last; seed++)
	{
		uint32_t	n = nodes != 0 ? nodes : 3 + 2 * (uint32_t) (seed % 3);

		if (!run_seed(seed, n, steps, verbose, &steps_done, &committed))
			failed++;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	elapsed = (double) (t1.tv_sec - t0.tv_sec) +
		(double) (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("seeds %llu..%llu, %llu steps each: %llu passed, %llu failed; %llu steps in %.1f s (%.0f steps/s), %llu entries committed\n",
		   (unsigned long long) first, (unsigned long long) last,
		   (unsigned long long) steps,
		   (unsigned long long) (last - first + 1 - failed),
		   (unsigned long long) failed, (unsigned long long) steps_done,
		   elapsed, (double) steps_done / (elapsed > 0 ? elapsed : 1),
		   (unsigned long long) committed);
	return failed == 0 ? 0 : 1;
}
