/*-------------------------------------------------------------------------
 *
 * membership.c
 *	  Configurations, their encoding in the log, and membership changes.
 *
 * NOTES
 *	  Thesis 4.1: changes go one server at a time, and every node uses the
 *	  latest configuration in its log, committed or not.  So the
 *	  configuration follows the log: appending a configuration entry
 *	  applies it at once, and truncating it away reverts to the previous
 *	  one (raft_config_refresh).  A new member enters as a learner, is
 *	  promoted to voter once it has caught up (thesis 4.2.1), and a leader
 *	  may remove itself: it keeps leading until the change commits, without
 *	  counting itself, then steps down (thesis 4.2.2).
 *
 *	  A configuration entry's payload, little-endian:
 *		u8 version (1) | u32 n_members | n_members x (u32 id, u8 voter)
 *		| u32 context_len | context bytes
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "raft_int.h"

#define CONFIG_ENTRY_VERSION 1

int
raft_config_find(const raft_config *config, raft_id_t id)
{
	uint32_t	i;

	for (i = 0; i < config->n_members; i++)
		if (config->members[i].id == id)
			return (int) i;
	return -1;
}

bool
raft_config_is_voter(const raft_config *config, raft_id_t id)
{
	int			i = raft_config_find(config, id);

	return i >= 0 && config->members[i].voter;
}

/*
 * Makes config the current configuration and rebuilds the progress
 * records, keeping those of members that stay.
 */
void
raft_config_apply(raft *r, const raft_config *config, raft_index_t index)
{
	raft_progress old[RAFT_MAX_MEMBERS];
	uint32_t	n_old = r->n_progress;
	uint32_t	i;

	memcpy(old, r->progress, sizeof(old));
	r->config = *config;
	r->config_index = index;
	r->n_progress = config->n_members;
	for (i = 0; i < config->n_members; i++)
	{
		raft_progress *pr = &r->progress[i];
		uint32_t	j;
		bool		kept = false;

		for (j = 0; j < n_old; j++)
			if (old[j].id == config->members[i].id)
			{
				*pr = old[j];
				kept = true;
				break;
			}
		if (!kept)
		{
			memset(pr, 0, sizeof(*pr));
			pr->id = config->members[i].id;
			raft_progress_reset(r, pr);
			pr->recent_active = true;
		}
		pr->voter = config->members[i].voter;
	}
	/* acknowledgements were counted by slot; let heartbeats redo them */
	for (i = 0; i < r->n_reads; i++)
		r->reads[i].acks = 0;
}

/* Finds the configuration in force at index: the latest entry at or before it. */
bool
raft_config_at(const raft *r, raft_index_t index, raft_config *config)
{
	raft_index_t i;

	if (index > raft_log_last_index(&r->log) || index < r->log.base_index)
		return false;
	for (i = index; i > r->log.base_index; i--)
	{
		raft_entry	e;

		raft_log_entry(&r->log, i, &e);
		if (e.type == RAFT_ENTRY_CONFIG &&
			raft_config_decode(&e, config, NULL, NULL) == RAFT_OK)
			return true;
	}
	*config = r->base_config;
	return true;
}

/* Re-derives the current configuration from the log (after a truncation). */
void
raft_config_refresh(raft *r)
{
	raft_index_t i;

	for (i = raft_log_last_index(&r->log); i > r->log.base_index; i--)
	{
		raft_entry	e;
		raft_config config;

		raft_log_entry(&r->log, i, &e);
		if (e.type == RAFT_ENTRY_CONFIG &&
			raft_config_decode(&e, &config, NULL, NULL) == RAFT_OK)
		{
			raft_config_apply(r, &config, i);
			return;
		}
	}
	raft_config_apply(r, &r->base_config, 0);
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

int
raft_config_decode(const raft_entry *e, raft_config *config,
				   const uint8_t **context, uint32_t *context_len)
{
	const uint8_t *p = e->data;
	size_t		left = e->len;
	uint32_t	n;
	uint32_t	i;
	uint32_t	ctx_len;

	if (e->type != RAFT_ENTRY_CONFIG || p == NULL || left < 5)
		return RAFT_ERR_INVALID_ARG;
	if (p[0] != CONFIG_ENTRY_VERSION)
		return RAFT_ERR_INVALID_ARG;
	n = get_u32(p + 1);
	p += 5;
	left -= 5;
	if (n > RAFT_MAX_MEMBERS || left < (size_t) n * 5 + 4)
		return RAFT_ERR_INVALID_ARG;
	memset(config, 0, sizeof(*config));
	config->n_members = n;
	for (i = 0; i < n; i++)
	{
		raft_id_t	id = get_u32(p);

		if (id == RAFT_NO_NODE || p[4] > 1 || raft_config_find(config, id) >= 0)
			return RAFT_ERR_INVALID_ARG;
		config->members[i].id = id;
		config->members[i].voter = p[4] == 1;
		p += 5;
		left -= 5;
	}
	ctx_len = get_u32(p);
	p += 4;
	left -= 4;
	if (ctx_len != left)
		return RAFT_ERR_INVALID_ARG;
	if (context != NULL)
		*context = ctx_len > 0 ? p : NULL;
	if (context_len != NULL)
		*context_len = ctx_len;
	return RAFT_OK;
}

int
raft_propose_conf_change(raft *r, raft_conf_change_type type, raft_id_t node,
						 const void *context, uint32_t context_len,
						 raft_index_t *index)
{
	raft_config config = r->config;
	uint8_t		buf[5 + RAFT_MAX_MEMBERS * 5 + 4 + RAFT_MAX_CONF_CONTEXT_BYTES];
	uint8_t    *p = buf;
	int			pos;
	uint32_t	i;
	int			rc;

	if (node == RAFT_NO_NODE || context_len > RAFT_MAX_CONF_CONTEXT_BYTES ||
		(context_len > 0 && context == NULL))
		return RAFT_ERR_INVALID_ARG;
	if (r->role != RAFT_LEADER)
		return RAFT_ERR_NOT_LEADER;
	if (r->transfer_target != RAFT_NO_NODE)
		return RAFT_ERR_TRANSFER_PENDING;
	if (r->config_index > r->commit)
		return RAFT_ERR_CONF_PENDING;
	/* the bug fix of thesis 4.1: no change before an entry of this term commits */
	if (raft_term_at(r, r->commit) != r->term)
		return RAFT_ERR_NOT_COMMITTED_IN_TERM;

	pos = raft_config_find(&config, node);
	switch (type)
	{
		case RAFT_CONF_ADD_LEARNER:
			if (pos >= 0)
				return RAFT_ERR_ALREADY_MEMBER;
			if (config.n_members >= RAFT_MAX_MEMBERS)
				return RAFT_ERR_TOO_MANY_MEMBERS;
			config.members[config.n_members].id = node;
			config.members[config.n_members].voter = false;
			config.n_members++;
			break;
		case RAFT_CONF_PROMOTE:
			{
				raft_progress *pr = raft_progress_find(r, node);

				if (pos < 0)
					return RAFT_ERR_UNKNOWN_NODE;
				if (config.members[pos].voter)
					return RAFT_ERR_ALREADY_MEMBER;
				if (pr == NULL || pr->match < r->commit)
					return RAFT_ERR_NOT_CAUGHT_UP;
				config.members[pos].voter = true;
				break;
			}
		case RAFT_CONF_REMOVE:
			if (pos < 0)
				return RAFT_ERR_UNKNOWN_NODE;
			if (config.members[pos].voter && raft_voter_count(r) == 1)
				return RAFT_ERR_LAST_VOTER;
			memmove(&config.members[pos], &config.members[pos + 1],
					(config.n_members - pos - 1) * sizeof(raft_member));
			config.n_members--;
			break;
		default:
			return RAFT_ERR_INVALID_ARG;
	}

	*p++ = CONFIG_ENTRY_VERSION;
	put_u32(p, config.n_members);
	p += 4;
	for (i = 0; i < config.n_members; i++)
	{
		put_u32(p, config.members[i].id);
		p[4] = config.members[i].voter ? 1 : 0;
		p += 5;
	}
	put_u32(p, context_len);
	p += 4;
	if (context_len > 0)
		memcpy(p, context, context_len);
	p += context_len;

	rc = raft_append_local(r, RAFT_ENTRY_CONFIG, buf, (uint32_t) (p - buf), index);
	if (rc != RAFT_OK)
		return rc;
	raft_broadcast_append(r);
	return RAFT_OK;
}
