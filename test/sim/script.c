/*-------------------------------------------------------------------------
 *
 * script.c
 *	  Runs the scripted scenarios of the files in test/sim/testdata.
 *
 * NOTES
 *	  A scenario is a transcript, one command per line; `#` starts a
 *	  comment that says why the scenario exists.  The safety checker of
 *	  cluster.c runs after every command, exactly as in a random campaign,
 *	  and `expect` lines state what the paper says must hold.  Time moves
 *	  only when the script ticks, and messages move only when it delivers
 *	  them, so a scenario replays the same way every time.
 *
 *	  Commands (X, L: node ids):
 *		options key=value ...	pre-vote, check-quorum (on/off), batch,
 *								inflight, inflight-bytes, election,
 *								heartbeat, archive (compacted entries
 *								each node keeps; 0: none) (numbers)
 *		nodes N					a fresh cluster of N voters, ids 1..N
 *		node X					a fresh, empty node that waits to join
 *		campaign X				X's election timeout fires
 *		tick X [n] | tick-all [n]
 *		deliver [X]				deliver what is queued now (to X), in order
 *		stabilize				deliver until the network is empty
 *		drop [X]				lose what is queued (to X)
 *		partition A.. | B..		cut every link between the two groups
 *		isolate X | heal
 *		crash X | restart X
 *		propose L text | barrier L
 *		add-learner L X | promote L X | remove L X
 *		transfer L [X] | read-index L id | compact X index
 *		expect X key=value ...	role, term, leader, vote, commit, applied,
 *								last, first, voters, learners, term@I,
 *								snapshots (installed since it was created)
 *		expect-read X id index	X answered ReadIndex request id at index
 *		expect-read X id none	X has not answered request id
 *	  A command that calls the core may end in "-> error-name" (for
 *	  example "-> not-leader") when the core must refuse it.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define MAX_WORDS 32

typedef struct script
{
	sim_cluster c;
	raft_options opts;
	bool		have_cluster;
	const char *path;
	int			line;
	bool		verbose;
	uint32_t	archive_keep;
} script;

static const struct
{
	const char *name;
	int			rc;
}			error_names[] =
{
	{"ok", RAFT_OK},
	{"invalid-arg", RAFT_ERR_INVALID_ARG},
	{"not-leader", RAFT_ERR_NOT_LEADER},
	{"log-full", RAFT_ERR_LOG_FULL},
	{"too-large", RAFT_ERR_TOO_LARGE},
	{"conf-pending", RAFT_ERR_CONF_PENDING},
	{"transfer-pending", RAFT_ERR_TRANSFER_PENDING},
	{"unknown-node", RAFT_ERR_UNKNOWN_NODE},
	{"already-member", RAFT_ERR_ALREADY_MEMBER},
	{"not-caught-up", RAFT_ERR_NOT_CAUGHT_UP},
	{"last-voter", RAFT_ERR_LAST_VOTER},
	{"unavailable", RAFT_ERR_UNAVAILABLE},
	{"not-committed-in-term", RAFT_ERR_NOT_COMMITTED_IN_TERM},
};

static int
fail(script *s, const char *fmt, const char *arg)
{
	fprintf(stderr, "%s:%d: ", s->path, s->line);
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\n");
	return 1;
}

static const char *
error_name(int rc)
{
	size_t		i;

	for (i = 0; i < sizeof(error_names) / sizeof(error_names[0]); i++)
		if (error_names[i].rc == rc)
			return error_names[i].name;
	return raft_strerror(rc);
}

static bool
parse_u64(const char *word, uint64_t *out)
{
	char	   *end;

	if (word == NULL || *word == '\0')
		return false;
	*out = strtoull(word, &end, 10);
	return *end == '\0';
}

/* Returns the live node named by word, or NULL. */
static sim_node *
live_node(script *s, const char *word)
{
	uint64_t	id;
	sim_node   *n;

	if (!parse_u64(word, &id) || id > SIM_MAX_NODES)
		return NULL;
	n = sim_node_get(&s->c, (raft_id_t) id);
	return n != NULL && n->up ? n : NULL;
}

static int
set_option(script *s, const char *kv)
{
	const char *eq = strchr(kv, '=');
	uint64_t	v = 0;
	bool		on;

	if (eq == NULL)
		return fail(s, "option %s has no value", kv);
	on = strcmp(eq + 1, "on") == 0;
	if (strncmp(kv, "pre-vote=", 9) == 0)
		s->opts.pre_vote = on;
	else if (strncmp(kv, "check-quorum=", 13) == 0)
		s->opts.check_quorum = on;
	else if (!parse_u64(eq + 1, &v))
		return fail(s, "option %s needs a number", kv);
	else if (strncmp(kv, "batch=", 6) == 0)
		s->opts.max_entries_per_msg = (uint32_t) v;
	else if (strncmp(kv, "inflight=", 9) == 0)
		s->opts.max_inflight_msgs = (uint32_t) v;
	else if (strncmp(kv, "inflight-bytes=", 15) == 0)
		s->opts.max_inflight_bytes = v;
	else if (strncmp(kv, "election=", 9) == 0)
		s->opts.election_timeout_ticks = (uint32_t) v;
	else if (strncmp(kv, "heartbeat=", 10) == 0)
		s->opts.heartbeat_ticks = (uint32_t) v;
	else if (strncmp(kv, "archive=", 8) == 0)
	{
		s->opts.archive_read = v > 0 ? sim_archive_read : NULL;
		s->archive_keep = (uint32_t) v;
	}
	else
		return fail(s, "unknown option %s", kv);
	return 0;
}

/* Delivers the messages queued now (to one node, if to != 0), in order. */
static void
deliver_queued(script *s, raft_id_t to)
{
	size_t		queued = s->c.n_net;
	size_t		i = 0;
	size_t		k;

	for (k = 0; k < queued && i < s->c.n_net; k++)
	{
		if (to != RAFT_NO_NODE && s->c.net[i].to != to)
		{
			i++;
			continue;
		}
		sim_deliver(&s->c, i);
		sim_process_all(&s->c);
		sim_check(&s->c);
	}
}

static int
format_members(const raft_config *config, bool voters, char *buf, size_t size)
{
	uint32_t	i;
	size_t		used = 0;

	buf[0] = '\0';
	for (i = 0; i < config->n_members; i++)
		if (config->members[i].voter == voters)
			used += (size_t) snprintf(buf + used, size - used, "%s%u",
									  used > 0 ? "," : "",
									  config->members[i].id);
	return (int) used;
}

/* Checks one key=value of an expect line against a node's status. */
static int
expect_one(script *s, sim_node *n, const char *kv)
{
	raft_status st;
	const char *eq = strchr(kv, '=');
	char		actual[256];
	size_t		key_len;

	if (eq == NULL)
		return fail(s, "expectation %s has no value", kv);
	key_len = (size_t) (eq - kv);
	raft_get_status(n->r, &st);

#define KEY(k) (key_len == strlen(k) && strncmp(kv, k, key_len) == 0)
	if (KEY("role"))
		snprintf(actual, sizeof(actual), "%s", raft_role_name(st.role));
	else if (KEY("term"))
		snprintf(actual, sizeof(actual), "%llu", (unsigned long long) st.term);
	else if (KEY("leader"))
		snprintf(actual, sizeof(actual), "%u", st.leader);
	else if (KEY("vote"))
		snprintf(actual, sizeof(actual), "%u", st.vote);
	else if (KEY("commit"))
		snprintf(actual, sizeof(actual), "%llu", (unsigned long long) st.commit_index);
	else if (KEY("applied"))
		snprintf(actual, sizeof(actual), "%llu", (unsigned long long) st.applied_index);
	else if (KEY("last"))
		snprintf(actual, sizeof(actual), "%llu", (unsigned long long) st.last_index);
	else if (KEY("first"))
		snprintf(actual, sizeof(actual), "%llu", (unsigned long long) st.first_index);
	else if (KEY("voters"))
		format_members(&st.config, true, actual, sizeof(actual));
	else if (KEY("learners"))
		format_members(&st.config, false, actual, sizeof(actual));
	else if (KEY("snapshots"))
		snprintf(actual, sizeof(actual), "%llu",
				 (unsigned long long) n->snapshots_installed);
	else if (strncmp(kv, "term@", 5) == 0)
	{
		uint64_t	index;
		char		num[32];

		snprintf(num, sizeof(num), "%.*s", (int) (key_len - 5), kv + 5);
		if (!parse_u64(num, &index))
			return fail(s, "bad index in %s", kv);
		snprintf(actual, sizeof(actual), "%llu",
				 (unsigned long long) raft_term_at(n->r, index));
	}
	else
		return fail(s, "unknown expectation %s", kv);
#undef KEY

	if (strcmp(actual, eq + 1) != 0)
	{
		char		msg[512];

		snprintf(msg, sizeof(msg), "node %u: expected %s, found %.*s=%s",
				 n->id, kv, (int) key_len, kv, actual);
		return fail(s, "%s", msg);
	}
	return 0;
}

static int
partition_groups(script *s, char **w, int nw)
{
	int			split = -1;
	int			i;
	int			j;

	for (i = 1; i < nw; i++)
		if (strcmp(w[i], "|") == 0)
			split = i;
	if (split < 0)
		return fail(s, "%s needs two groups separated by |", w[0]);
	for (i = 1; i < split; i++)
		for (j = split + 1; j < nw; j++)
		{
			uint64_t	a;
			uint64_t	b;

			if (!parse_u64(w[i], &a) || !parse_u64(w[j], &b) ||
				a > SIM_MAX_NODES || b > SIM_MAX_NODES)
				return fail(s, "bad node in %s", w[0]);
			s->c.blocked[a][b] = true;
			s->c.blocked[b][a] = true;
		}
	return 0;
}

/* Runs a command that calls the core and compares its return code. */
static int
core_command(script *s, char **w, int nw, const char *expected)
{
	sim_node   *n = live_node(s, nw > 1 ? w[1] : NULL);
	uint64_t	arg = 0;
	int			rc;

	if (n == NULL)
		return fail(s, "%s needs a live node", w[0]);
	if (nw > 2 && strcmp(w[0], "propose") != 0 && !parse_u64(w[2], &arg))
		return fail(s, "%s needs a number", w[0]);

	if (strcmp(w[0], "campaign") == 0)
		rc = raft_campaign_now(n->r);
	else if (strcmp(w[0], "propose") == 0)
	{
		const char *text = nw > 2 ? w[2] : "";

		rc = raft_propose(n->r, RAFT_ENTRY_NORMAL, text, (uint32_t) strlen(text), NULL);
	}
	else if (strcmp(w[0], "barrier") == 0)
		rc = raft_propose(n->r, RAFT_ENTRY_NOOP, NULL, 0, NULL);
	else if (strcmp(w[0], "add-learner") == 0)
	{
		if (sim_node_get(&s->c, (raft_id_t) arg) == NULL ||
			!sim_node_get(&s->c, (raft_id_t) arg)->exists)
			sim_node_create(&s->c, (raft_id_t) arg, NULL);
		rc = raft_propose_conf_change(n->r, RAFT_CONF_ADD_LEARNER,
									  (raft_id_t) arg, NULL, 0, NULL);
	}
	else if (strcmp(w[0], "promote") == 0)
		rc = raft_propose_conf_change(n->r, RAFT_CONF_PROMOTE,
									  (raft_id_t) arg, NULL, 0, NULL);
	else if (strcmp(w[0], "remove") == 0)
		rc = raft_propose_conf_change(n->r, RAFT_CONF_REMOVE,
									  (raft_id_t) arg, NULL, 0, NULL);
	else if (strcmp(w[0], "transfer") == 0)
		rc = raft_transfer_leadership(n->r, (raft_id_t) arg);
	else if (strcmp(w[0], "read-index") == 0)
		rc = raft_read_index(n->r, arg);
	else
		rc = sim_compact(&s->c, n, arg);

	if (strcmp(error_name(rc), expected) != 0)
	{
		char		msg[256];

		snprintf(msg, sizeof(msg), "%s returned %s, expected %s", w[0],
				 error_name(rc), expected);
		return fail(s, "%s", msg);
	}
	return 0;
}

static int
run_command(script *s, char **w, int nw)
{
	const char *expected = "ok";
	uint64_t	count = 1;
	int			i;

	/* a trailing "-> error-name" states the refusal we expect */
	if (nw >= 2 && strcmp(w[nw - 2], "->") == 0)
	{
		expected = w[nw - 1];
		nw -= 2;
	}

	if (strcmp(w[0], "options") == 0)
	{
		for (i = 1; i < nw; i++)
			if (set_option(s, w[i]) != 0)
				return 1;
		return 0;
	}
	if (strcmp(w[0], "nodes") == 0)
	{
		uint64_t	n;

		if (!parse_u64(nw > 1 ? w[1] : NULL, &n) || n < 1 || n > SIM_MAX_NODES)
			return fail(s, "%s needs a node count", w[0]);
		if (s->have_cluster)
			sim_free(&s->c);
		sim_init(&s->c, 1, &s->opts, (uint32_t) n);
		s->c.verbose = s->verbose;
		s->c.compact_every = 0;
		s->c.archive_keep = s->archive_keep;
		s->have_cluster = true;
		return 0;
	}
	if (!s->have_cluster)
		return fail(s, "%s before nodes", w[0]);

	if (strcmp(w[0], "node") == 0)
	{
		uint64_t	id;

		if (!parse_u64(nw > 1 ? w[1] : NULL, &id) || id == 0 || id > SIM_MAX_NODES)
			return fail(s, "%s needs a node id", w[0]);
		sim_node_create(&s->c, (raft_id_t) id, NULL);
	}
	else if (strcmp(w[0], "tick") == 0 || strcmp(w[0], "tick-all") == 0)
	{
		bool		all = strcmp(w[0], "tick-all") == 0;
		sim_node   *n = all ? NULL : live_node(s, nw > 1 ? w[1] : NULL);
		uint64_t	k;

		if (!all && n == NULL)
			return fail(s, "%s needs a live node", w[0]);
		if (nw > (all ? 1 : 2) && !parse_u64(w[all ? 1 : 2], &count))
			return fail(s, "%s needs a count", w[0]);
		for (k = 0; k < count; k++)
		{
			if (all)
				sim_tick_all(&s->c);
			else
				raft_tick(n->r);
			sim_process_all(&s->c);
			sim_check(&s->c);
		}
	}
	else if (strcmp(w[0], "deliver") == 0 || strcmp(w[0], "drop") == 0)
	{
		uint64_t	to = 0;

		if (nw > 1 && !parse_u64(w[1], &to))
			return fail(s, "%s takes a node id", w[0]);
		if (w[0][0] == 'd' && w[0][1] == 'e')
			deliver_queued(s, (raft_id_t) to);
		else
		{
			size_t		j = 0;

			while (j < s->c.n_net)
				if (to == 0 || s->c.net[j].to == to)
					sim_drop(&s->c, j);
				else
					j++;
		}
	}
	else if (strcmp(w[0], "stabilize") == 0)
	{
		int			rounds = 0;

		while (s->c.n_net > 0 && !s->c.failed)
		{
			if (++rounds > 1000)
				return fail(s, "%s: the network never went quiet", w[0]);
			deliver_queued(s, RAFT_NO_NODE);
		}
	}
	else if (strcmp(w[0], "partition") == 0)
		return partition_groups(s, w, nw);
	else if (strcmp(w[0], "isolate") == 0)
	{
		uint64_t	id;
		uint32_t	k;

		if (!parse_u64(nw > 1 ? w[1] : NULL, &id) || id == 0 || id > SIM_MAX_NODES)
			return fail(s, "%s needs a node id", w[0]);
		for (k = 1; k <= SIM_MAX_NODES; k++)
			if (k != id)
				s->c.blocked[id][k] = s->c.blocked[k][id] = true;
	}
	else if (strcmp(w[0], "heal") == 0)
		sim_heal(&s->c);
	else if (strcmp(w[0], "crash") == 0 || strcmp(w[0], "restart") == 0)
	{
		uint64_t	id;

		if (!parse_u64(nw > 1 ? w[1] : NULL, &id) ||
			sim_node_get(&s->c, (raft_id_t) id) == NULL)
			return fail(s, "%s needs a node id", w[0]);
		if (w[0][0] == 'c')
			sim_crash(&s->c, (raft_id_t) id);
		else
			sim_restart(&s->c, (raft_id_t) id);
	}
	else if (strcmp(w[0], "expect") == 0)
	{
		sim_node   *n = live_node(s, nw > 1 ? w[1] : NULL);

		if (n == NULL)
			return fail(s, "%s needs a live node", w[0]);
		for (i = 2; i < nw; i++)
			if (expect_one(s, n, w[i]) != 0)
				return 1;
	}
	else if (strcmp(w[0], "expect-read") == 0)
	{
		uint64_t	node;
		uint64_t	id;
		uint64_t	index;
		uint32_t	k;

		bool		none = nw == 4 && strcmp(w[3], "none") == 0;

		if (nw != 4 || !parse_u64(w[1], &node) || !parse_u64(w[2], &id) ||
			(!none && !parse_u64(w[3], &index)))
			return fail(s, "%s needs a node, a request id and an index or none", w[0]);
		for (k = 0; k < s->c.n_reads; k++)
			if (s->c.reads[k].node == node && s->c.reads[k].request_id == id)
				break;
		if (none)
			return k == s->c.n_reads ? 0 :
				fail(s, "ReadIndex request %s was answered", w[2]);
		if (k == s->c.n_reads)
			return fail(s, "no ReadIndex answer for request %s", w[2]);
		if (s->c.reads[k].index != index)
			return fail(s, "ReadIndex answered at another index than %s", w[3]);
	}
	else if (strcmp(w[0], "campaign") == 0 || strcmp(w[0], "propose") == 0 ||
			 strcmp(w[0], "barrier") == 0 || strcmp(w[0], "add-learner") == 0 ||
			 strcmp(w[0], "promote") == 0 || strcmp(w[0], "remove") == 0 ||
			 strcmp(w[0], "transfer") == 0 || strcmp(w[0], "read-index") == 0 ||
			 strcmp(w[0], "compact") == 0)
	{
		if (core_command(s, w, nw, expected) != 0)
			return 1;
	}
	else
		return fail(s, "unknown command %s", w[0]);

	sim_process_all(&s->c);
	sim_check(&s->c);
	return 0;
}

int
sim_run_script(const char *path, bool verbose)
{
	script	   *s = calloc(1, sizeof(script));
	FILE	   *f = fopen(path, "r");
	char		buf[1024];
	int			rc = 0;

	if (s == NULL || f == NULL)
	{
		fprintf(stderr, "sim: cannot open %s\n", path);
		free(s);
		if (f != NULL)
			fclose(f);
		return 2;
	}
	s->path = path;
	s->verbose = verbose;
	raft_options_default(&s->opts, 1, 1);
	s->opts.election_timeout_ticks = 10;
	s->opts.heartbeat_ticks = 1;

	while (rc == 0 && fgets(buf, sizeof(buf), f) != NULL)
	{
		char	   *w[MAX_WORDS];
		int			nw = 0;
		char	   *hash = strchr(buf, '#');
		char	   *tok;

		s->line++;
		if (hash != NULL)
			*hash = '\0';
		for (tok = strtok(buf, " \t\r\n"); tok != NULL && nw < MAX_WORDS;
			 tok = strtok(NULL, " \t\r\n"))
			w[nw++] = tok;
		if (nw == 0)
			continue;
		if (verbose)
			printf("> %s:%d %s\n", path, s->line, w[0]);
		rc = run_command(s, w, nw);
		if (rc == 0 && s->have_cluster && s->c.failed)
		{
			fprintf(stderr, "%s:%d: VIOLATION: %s\n", path, s->line,
					s->c.violation);
			rc = 1;
		}
	}
	fclose(f);
	if (s->have_cluster)
		sim_free(&s->c);
	free(s);
	return rc;
}
