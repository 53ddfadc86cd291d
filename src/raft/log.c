/*-------------------------------------------------------------------------
 *
 * log.c
 *	  The in-memory Raft log: a ring of entry slots and a payload arena.
 *
 * NOTES
 *	  The log holds entries (base_index, base_index + count].  Entries at or
 *	  before base_index were compacted or came with a snapshot; only the
 *	  term of base_index is remembered (thesis 5.1).  Both the slot ring and
 *	  the arena have a capacity fixed at initialisation; appending past it
 *	  fails with RAFT_ERR_LOG_FULL and the caller must compact.
 *
 *	  Payloads of non-empty entries are laid out in log order.  A payload
 *	  never straddles the end of the arena: when it does not fit at the tail
 *	  it starts again at offset 0, and the unused end is skipped.  Empty
 *	  entries take no arena space and do not move its bounds.
 *
 *-------------------------------------------------------------------------
 */
#include <string.h>

#include "raft_int.h"

void
raft_log_init(raft_log *log, raft_slot *slots, uint32_t slots_cap,
			  uint8_t *arena, uint32_t arena_cap)
{
	memset(log, 0, sizeof(*log));
	log->slots = slots;
	log->slots_cap = slots_cap;
	log->arena = arena;
	log->arena_cap = arena_cap;
}

/* Drops every entry; the log now starts after base_index. */
void
raft_log_reset(raft_log *log, raft_index_t base_index, raft_term_t base_term)
{
	log->base_index = base_index;
	log->base_term = base_term;
	log->head = 0;
	log->count = 0;
	log->arena_start = 0;
	log->arena_tail = 0;
	log->arena_wrapped = false;
}

static raft_slot *
slot_at(const raft_log *log, raft_index_t index)
{
	uint64_t	pos = index - log->base_index - 1;

	RAFT_ASSERT(index > log->base_index && pos < log->count);
	return &log->slots[(log->head + pos) % log->slots_cap];
}

raft_index_t
raft_log_last_index(const raft_log *log)
{
	return log->base_index + log->count;
}

raft_term_t
raft_log_last_term(const raft_log *log)
{
	if (log->count == 0)
		return log->base_term;
	return slot_at(log, raft_log_last_index(log))->term;
}

/*
 * Sets *term to the term of the entry at index.  Returns false when the
 * index is compacted away or beyond the last entry.
 */
bool
raft_log_term(const raft_log *log, raft_index_t index, raft_term_t *term)
{
	if (index == log->base_index)
	{
		*term = log->base_term;
		return true;
	}
	if (index < log->base_index || index > raft_log_last_index(log))
		return false;
	*term = slot_at(log, index)->term;
	return true;
}

bool
raft_log_entry(const raft_log *log, raft_index_t index, raft_entry *e)
{
	const raft_slot *s;

	if (index <= log->base_index || index > raft_log_last_index(log))
		return false;
	s = slot_at(log, index);
	e->term = s->term;
	e->index = index;
	e->type = s->type;
	e->len = s->len;
	e->data = s->len > 0 ? log->arena + s->offset : NULL;
	return true;
}

/*
 * Finds room for len contiguous payload bytes.  Returns false when the
 * arena cannot hold them without overwriting live payloads.
 */
static bool
arena_reserve(const raft_log *log, uint32_t len, uint32_t *offset,
			  bool *wraps)
{
	*wraps = false;
	if (len == 0)
	{
		*offset = 0;
		return true;
	}
	if (log->arena_start == log->arena_tail && !log->arena_wrapped)
	{
		/* no live payload: start from the beginning */
		if (len > log->arena_cap)
			return false;
		*offset = 0;
		return true;
	}
	if (!log->arena_wrapped)
	{
		if (log->arena_cap - log->arena_tail >= len)
		{
			*offset = log->arena_tail;
			return true;
		}
		if (log->arena_start >= len)
		{
			*offset = 0;
			*wraps = true;
			return true;
		}
		return false;
	}
	if (log->arena_start - log->arena_tail >= len)
	{
		*offset = log->arena_tail;
		return true;
	}
	return false;
}

/*
 * Slots kept free for the no-op a new leader must append (thesis 6.4):
 * without it a leader elected with a full log could never commit, so never
 * let the caller compact, so never make room.
 */
static uint32_t
reserved_slots(const raft_log *log)
{
	uint32_t	reserve = log->slots_cap / 8;

	return reserve < 1 ? 1 : (reserve > 8 ? 8 : reserve);
}

/*
 * Appends an entry.  Only a new leader's no-op (and entries read back from
 * disk, which fit before) may use the reserved slots.
 */
int
raft_log_append(raft_log *log, raft_term_t term, uint8_t type,
				const void *data, uint32_t len, bool use_reserve)
{
	uint32_t	offset;
	bool		wraps;
	bool		empty_arena;
	raft_slot  *s;

	RAFT_ASSERT(term >= raft_log_last_term(log));
	if (log->count >= log->slots_cap -
		(use_reserve ? 0 : reserved_slots(log)))
		return RAFT_ERR_LOG_FULL;
	empty_arena = log->arena_start == log->arena_tail && !log->arena_wrapped;
	if (!arena_reserve(log, len, &offset, &wraps))
		return RAFT_ERR_LOG_FULL;

	if (len > 0)
	{
		memcpy(log->arena + offset, data, len);
		if (empty_arena)
			log->arena_start = offset;
		if (wraps)
			log->arena_wrapped = true;
		log->arena_tail = offset + len;
	}
	log->count++;
	s = slot_at(log, raft_log_last_index(log));
	s->term = term;
	s->type = type;
	s->len = len;
	s->offset = offset;
	return RAFT_OK;
}

/*
 * Recomputes the arena bounds from the first and last non-empty entries;
 * called after entries leave either end of the log.
 */
static void
arena_recompute(raft_log *log)
{
	raft_index_t first = 0;
	raft_index_t last = 0;
	raft_index_t i;
	const raft_slot *f;
	const raft_slot *l;

	for (i = log->base_index + 1; i <= raft_log_last_index(log); i++)
		if (slot_at(log, i)->len > 0)
		{
			first = i;
			break;
		}
	if (first == 0)
	{
		log->arena_start = 0;
		log->arena_tail = 0;
		log->arena_wrapped = false;
		return;
	}
	for (i = raft_log_last_index(log); i >= first; i--)
		if (slot_at(log, i)->len > 0)
		{
			last = i;
			break;
		}
	f = slot_at(log, first);
	l = slot_at(log, last);
	log->arena_start = f->offset;
	log->arena_tail = l->offset + l->len;
	log->arena_wrapped = l->offset < f->offset;
}

/* Drops every entry after index (a leader overwrote them). */
void
raft_log_truncate_after(raft_log *log, raft_index_t index)
{
	RAFT_ASSERT(index >= log->base_index);
	if (index >= raft_log_last_index(log))
		return;
	log->count = (uint32_t) (index - log->base_index);
	arena_recompute(log);
}

/* Drops every entry up to and including index; index becomes the base. */
void
raft_log_compact(raft_log *log, raft_index_t index)
{
	raft_term_t term = 0;
	uint32_t	dropped;

	RAFT_ASSERT(index >= log->base_index && index <= raft_log_last_index(log));
	if (index == log->base_index)
		return;
	raft_log_term(log, index, &term);
	dropped = (uint32_t) (index - log->base_index);
	log->head = (log->head + dropped) % log->slots_cap;
	log->count -= dropped;
	log->base_index = index;
	log->base_term = term;
	arena_recompute(log);
}
