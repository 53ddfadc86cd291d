/*-------------------------------------------------------------------------
 *
 * test_changes.c
 *	  Unit tests of the change stream format (src/changes/changes.c).
 *
 * Prints TAP ("ok N - ...", "not ok N - ...", then the plan "1..N") and
 * exits non-zero if any test failed.  Only changes.c is needed:
 *
 *	  gcc -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -g -Wall -Wextra -Werror \
 *		  -Wno-unused-parameter -fsanitize=address,undefined \
 *		  -fno-sanitize-recover=all -I../../src/changes \
 *		  -o build/test_changes test_changes.c ../../src/changes/changes.c
 *
 * With "--write-corpus DIR" it instead writes a few valid streams, one per
 * file, into DIR: that is how the seed corpus of the fuzz target
 * (corpus_changes/) is made.
 *
 * NOTES
 *	  The promises checked: every message kind survives writer and reader
 *	  with every field intact; the bytes are the ones changes.h specifies
 *	  (layout tests compare byte by byte, so an accidental format change
 *	  fails here); each error code comes out of the input it names; a
 *	  stream cut anywhere gives CHG_ERR_TRUNCATED for the message it cuts
 *	  and never a read past the end; and a corrupted byte either gives an
 *	  error or a message that re-encodes to the very bytes it was read
 *	  from.  The reader always gets a heap copy of exactly the bytes under
 *	  test, so AddressSanitizer catches a read one byte too far.
 *
 * IDENTIFICATION
 *	  test/sim/test_changes.c
 *
 *-------------------------------------------------------------------------
 */
#include "changes.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

#define S(lit)	{ (lit), (uint16_t) (sizeof(lit) - 1) }
#define T(lit)	{ (lit), (uint32_t) (sizeof(lit) - 1) }
#define DDL_STATEMENT "ALTER TABLE t ADD COLUMN c text DEFAULT 'x'"

#define BIG_TEXT_BYTES	70000			/* longer than a u16 could say */
#define BIG_BINARY_BYTES (1024 * 1024)	/* a megabyte, every byte value */

/* Arrays the reader fills: as large as the format allows. */
static chg_column columns[CHG_MAX_COLUMNS];
static chg_value old_values[CHG_MAX_COLUMNS];
static chg_value new_values[CHG_MAX_COLUMNS];
static const chg_arrays full_arrays = {
	columns, old_values, new_values, CHG_MAX_COLUMNS
};

static void *
xmalloc(size_t len)
{
	void	   *p = malloc(len > 0 ? len : 1);

	if (p == NULL)
	{
		perror("malloc");
		exit(2);
	}
	return p;
}

/* ----------------------------------------------------------------------
 * A growable byte buffer, the writer's append target.
 * ----------------------------------------------------------------------
 */
typedef struct buffer
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
} buffer;

static void
buffer_append(void *arg, const void *data, size_t len)
{
	buffer	   *b = arg;

	if (b->cap - b->len < len)
	{
		size_t		cap = b->cap > 0 ? b->cap : 64;

		while (cap - b->len < len)
			cap *= 2;
		b->data = realloc(b->data, cap);
		if (b->data == NULL)
		{
			perror("realloc");
			exit(2);
		}
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

static chg_writer
writer_for(buffer *b)
{
	chg_writer	w;

	w.append = buffer_append;
	w.arg = b;
	return w;
}

static void
buffer_free(buffer *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

/* Crafting raw bytes, for input the writer would never produce. */
static void
put_u8(buffer *b, uint8_t v)
{
	buffer_append(b, &v, 1);
}

static void
put_u16(buffer *b, uint16_t v)
{
	put_u8(b, (uint8_t) v);
	put_u8(b, (uint8_t) (v >> 8));
}

static void
put_u32(buffer *b, uint32_t v)
{
	put_u16(b, (uint16_t) v);
	put_u16(b, (uint16_t) (v >> 16));
}

static void
put_raw(buffer *b, const char *s, size_t len)
{
	buffer_append(b, s, len);
}

static void
put_name(buffer *b, const char *s)
{
	put_u16(b, (uint16_t) strlen(s));
	put_raw(b, s, strlen(s));
}

/* ----------------------------------------------------------------------
 * Sample messages.  A sample is a chg_message as the reader should return
 * it, plus the relids of a truncate as an array (the reader leaves them in
 * the buffer).
 * ----------------------------------------------------------------------
 */
typedef struct sample
{
	const char *name;
	chg_message m;
	const uint32_t *relids;
} sample;

static char name63[CHG_MAX_NAME_BYTES + 1];
static uint8_t big_text[BIG_TEXT_BYTES];
static uint8_t big_binary[BIG_BINARY_BYTES];
static const uint8_t binary3[3] = {0x00, 0xFF, 0x01};

static chg_column accounts_columns[5] = {
	{S("id"), 23, -1, true},
	{S("owner"), 25, -1, false},
	{S("balance"), 1700, 655366, false},
	{S("photo"), 17, -1, false},
	{S("branch"), 1043, 104, true},
};

/* n/u/t/b values, including an empty text and an empty binary value */
static chg_value small_values[6] = {
	{'n', 0, NULL},
	{'u', 0, NULL},
	{'t', 0, (const uint8_t *) ""},
	{'b', 0, NULL},
	{'t', 5, (const uint8_t *) "hello"},
	{'b', 3, binary3},
};

static chg_value key_values[5] = {
	{'t', 2, (const uint8_t *) "42"},
	{'n', 0, NULL},
	{'n', 0, NULL},
	{'n', 0, NULL},
	{'t', 5, (const uint8_t *) "north"},
};

static chg_value full_values[5] = {
	{'t', 2, (const uint8_t *) "42"},
	{'t', 5, (const uint8_t *) "alice"},
	{'t', 6, (const uint8_t *) "100.25"},
	{'u', 0, NULL},
	{'t', 5, (const uint8_t *) "north"},
};

static chg_value new_row_values[5] = {
	{'t', 2, (const uint8_t *) "42"},
	{'t', 3, (const uint8_t *) "bob"},
	{'t', 1, (const uint8_t *) "0"},
	{'u', 0, NULL},
	{'t', 5, (const uint8_t *) "south"},
};

/* pointers to the big arrays are filled in by init_samples() */
static chg_value big_values[4] = {
	{'t', BIG_TEXT_BYTES, NULL},
	{'b', BIG_BINARY_BYTES, NULL},
	{'n', 0, NULL},
	{'b', 0, NULL},
};

static const uint32_t three_relids[3] = {16384, 16385, UINT32_MAX};
static const uint32_t one_relid[1] = {0};

#define MAX_SAMPLES 32

static sample small_stream[MAX_SAMPLES];
static int	n_small;
static sample big_stream[MAX_SAMPLES];
static int	n_big;
static sample streamed[MAX_SAMPLES];
static int	n_streamed;

static chg_message *
add(sample *stream, int *n, const char *name, uint8_t kind)
{
	sample	   *s;

	if (*n >= MAX_SAMPLES)
		abort();
	s = &stream[(*n)++];
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->m.kind = kind;
	return &s->m;
}

static chg_tuple
tuple(uint16_t natts, chg_value *values)
{
	chg_tuple	t;

	t.natts = natts;
	t.values = values;
	return t;
}

static void
init_samples(void)
{
	chg_message *m;
	size_t		i;

	memset(name63, 'x', CHG_MAX_NAME_BYTES);
	name63[0] = 'N';
	for (i = 0; i < BIG_TEXT_BYTES; i++)
		big_text[i] = (uint8_t) ('a' + i % 26);
	/* every byte value, zeros included, in a pattern that does not repeat
	 * at any short period */
	for (i = 0; i < BIG_BINARY_BYTES; i++)
		big_binary[i] = (uint8_t) (i * 7 + (i >> 8) + (i >> 16));
	big_values[0].data = big_text;
	big_values[1].data = big_binary;

	/* A transaction exercising every kind and every variant. */
	n_small = 0;
	m = add(small_stream, &n_small, "version", CHG_VERSION);
	m->version = RAFT_CHANGES_VERSION;
	m = add(small_stream, &n_small, "begin", CHG_BEGIN);
	m->xid = 0xDEADBEEF;
	m->lsn = UINT64_C(0x0123456789ABCDEF);
	m->commit_time = -INT64_C(1234567890123);
	m = add(small_stream, &n_small, "relation with key columns", CHG_RELATION);
	m->relid = 16384;
	m->nspname = (chg_str) S("public");
	m->relname = (chg_str) S("accounts");
	m->replident = 'i';
	m->natts = 5;
	m->columns = accounts_columns;
	m = add(small_stream, &n_small, "relation with no columns, longest name",
			CHG_RELATION);
	m->relid = UINT32_MAX;
	m->nspname.data = name63;
	m->nspname.len = CHG_MAX_NAME_BYTES;
	m->relname.data = name63;
	m->relname.len = CHG_MAX_NAME_BYTES;
	m->replident = 'f';
	m = add(small_stream, &n_small, "relation replident default", CHG_RELATION);
	m->relid = 0;
	m->nspname = (chg_str) S("s");
	m->relname = (chg_str) S("");
	m->replident = 'd';
	m->natts = 1;
	m->columns = accounts_columns + 2;
	m = add(small_stream, &n_small, "relation replident nothing", CHG_RELATION);
	m->relid = 7;
	m->nspname = (chg_str) S("");
	m->relname = (chg_str) S("log");
	m->replident = 'n';
	m->natts = 2;
	m->columns = accounts_columns + 3;
	m = add(small_stream, &n_small, "insert of n/u/t/b values", CHG_INSERT);
	m->relid = 16384;
	m->new_tuple = tuple(6, small_values);
	m = add(small_stream, &n_small, "insert of no columns", CHG_INSERT);
	m->relid = UINT32_MAX;
	m->new_tuple = tuple(0, NULL);
	m = add(small_stream, &n_small, "update without old tuple", CHG_UPDATE);
	m->relid = 16384;
	m->old_kind = '-';
	m->new_tuple = tuple(5, new_row_values);
	m = add(small_stream, &n_small, "update with old key", CHG_UPDATE);
	m->relid = 16384;
	m->old_kind = 'K';
	m->old_tuple = tuple(5, key_values);
	m->new_tuple = tuple(5, new_row_values);
	m = add(small_stream, &n_small, "update with old row", CHG_UPDATE);
	m->relid = 16384;
	m->old_kind = 'O';
	m->old_tuple = tuple(5, full_values);
	m->new_tuple = tuple(6, small_values);
	m = add(small_stream, &n_small, "delete by key", CHG_DELETE);
	m->relid = 16384;
	m->old_kind = 'K';
	m->old_tuple = tuple(5, key_values);
	m = add(small_stream, &n_small, "delete by old row", CHG_DELETE);
	m->relid = 16384;
	m->old_kind = 'O';
	m->old_tuple = tuple(5, full_values);
	m = add(small_stream, &n_small, "truncate cascade restart identity",
			CHG_TRUNCATE);
	m->truncate_flags = 3;
	m->nrels = 3;
	small_stream[n_small - 1].relids = three_relids;
	m = add(small_stream, &n_small, "truncate plain", CHG_TRUNCATE);
	m->truncate_flags = 0;
	m->nrels = 1;
	small_stream[n_small - 1].relids = one_relid;
	m = add(small_stream, &n_small, "truncate cascade", CHG_TRUNCATE);
	m->truncate_flags = 1;
	m->nrels = 3;
	small_stream[n_small - 1].relids = three_relids;
	m = add(small_stream, &n_small, "truncate restart identity", CHG_TRUNCATE);
	m->truncate_flags = 2;
	m->nrels = 1;
	small_stream[n_small - 1].relids = one_relid;
	m = add(small_stream, &n_small, "sequence moved past a value", CHG_SEQUENCE);
	m->nspname = (chg_str) S("public");
	m->relname = (chg_str) S("orders_id_seq");
	m->value = INT64_MAX;
	m = add(small_stream, &n_small, "sequence set exactly", CHG_SEQUENCE);
	m->nspname = (chg_str) S("s");
	m->relname = (chg_str) S("");
	m->value = INT64_MIN;
	m->sequence_flags = CHG_SEQUENCE_IS_CALLED | CHG_SEQUENCE_EXACT;
	m = add(small_stream, &n_small, "commit", CHG_COMMIT);
	m->lsn = UINT64_C(0x0123456789ABCDF0);
	m->end_lsn = UINT64_MAX;
	m->commit_time = INT64_MIN;

	/* A transaction with large values. */
	n_big = 0;
	m = add(big_stream, &n_big, "version", CHG_VERSION);
	m->version = RAFT_CHANGES_VERSION;
	m = add(big_stream, &n_big, "begin", CHG_BEGIN);
	m->xid = 0;
	m->lsn = 0;
	m->commit_time = INT64_MAX;
	m = add(big_stream, &n_big, "relation", CHG_RELATION);
	m->relid = 16384;
	m->nspname = (chg_str) S("public");
	m->relname = (chg_str) S("blobs");
	m->replident = 'f';
	m->natts = 5;
	m->columns = accounts_columns;
	m = add(big_stream, &n_big, "insert of large values", CHG_INSERT);
	m->relid = 16384;
	m->new_tuple = tuple(4, big_values);
	m = add(big_stream, &n_big, "update of large values", CHG_UPDATE);
	m->relid = 16384;
	m->old_kind = 'O';
	m->old_tuple = tuple(4, big_values);
	m->new_tuple = tuple(2, big_values + 2);
	m = add(big_stream, &n_big, "delete of large values", CHG_DELETE);
	m->relid = 16384;
	m->old_kind = 'O';
	m->old_tuple = tuple(4, big_values);
	m = add(big_stream, &n_big, "delete of a row not known", CHG_DELETE);
	m->relid = 16384;
	m->old_kind = '-';
	m = add(big_stream, &n_big, "commit", CHG_COMMIT);
	m->lsn = 1;
	m->end_lsn = 2;
	m->commit_time = 0;

	/* Two transactions streamed while they run, blocks interleaved. */
	n_streamed = 0;
	m = add(streamed, &n_streamed, "version", CHG_VERSION);
	m->version = RAFT_CHANGES_VERSION;
	m = add(streamed, &n_streamed, "stream start, first block", CHG_STREAM_START);
	m->xid = 1000;
	m->first_block = true;
	m = add(streamed, &n_streamed, "subtransaction (the top one)", CHG_SUBTRANSACTION);
	m->subxid = 1000;
	m = add(streamed, &n_streamed, "relation", CHG_RELATION);
	m->relid = 16384;
	m->nspname = (chg_str) S("public");
	m->relname = (chg_str) S("accounts");
	m->replident = 'i';
	m->natts = 5;
	m->columns = accounts_columns;
	m = add(streamed, &n_streamed, "insert", CHG_INSERT);
	m->relid = 16384;
	m->new_tuple = tuple(5, new_row_values);
	m = add(streamed, &n_streamed, "subtransaction", CHG_SUBTRANSACTION);
	m->subxid = UINT32_MAX;
	m = add(streamed, &n_streamed, "delete in the subtransaction", CHG_DELETE);
	m->relid = 16384;
	m->old_kind = 'K';
	m->old_tuple = tuple(5, key_values);
	m = add(streamed, &n_streamed, "stream stop", CHG_STREAM_STOP);
	m = add(streamed, &n_streamed, "another transaction's first block", CHG_STREAM_START);
	m->xid = UINT32_MAX - 1;
	m->first_block = true;
	m = add(streamed, &n_streamed, "stream stop", CHG_STREAM_STOP);
	m = add(streamed, &n_streamed, "a later block", CHG_STREAM_START);
	m->xid = 1000;
	m->first_block = false;
	m = add(streamed, &n_streamed, "stream stop", CHG_STREAM_STOP);
	m = add(streamed, &n_streamed, "subtransaction aborted", CHG_STREAM_ABORT);
	m->xid = 1000;
	m->subxid = UINT32_MAX;
	m = add(streamed, &n_streamed, "transaction aborted", CHG_STREAM_ABORT);
	m->xid = UINT32_MAX - 1;
	m->subxid = UINT32_MAX - 1;
	m = add(streamed, &n_streamed, "stream commit", CHG_STREAM_COMMIT);
	m->xid = 1000;
	m->lsn = UINT64_C(0x0123456789ABCDF0);
	m->end_lsn = UINT64_MAX;
	m->commit_time = INT64_MIN;
}

/* Writes a message through the writer, whichever its kind. */
static void
write_message(chg_writer *w, const chg_message *m, const uint32_t *relids)
{
	switch (m->kind)
	{
		case CHG_VERSION:
			chg_write_version(w);
			break;
		case CHG_BEGIN:
			chg_write_begin(w, m->xid, m->lsn, m->commit_time);
			break;
		case CHG_RELATION:
			chg_write_relation(w, m->relid, m->nspname, m->relname,
							   m->replident, m->natts, m->columns);
			break;
		case CHG_INSERT:
			chg_write_insert(w, m->relid, &m->new_tuple);
			break;
		case CHG_UPDATE:
			chg_write_update(w, m->relid, m->old_kind, &m->old_tuple,
							 &m->new_tuple);
			break;
		case CHG_DELETE:
			chg_write_delete(w, m->relid, m->old_kind, &m->old_tuple);
			break;
		case CHG_TRUNCATE:
			chg_write_truncate(w, m->truncate_flags, m->nrels, relids);
			break;
		case CHG_COMMIT:
			chg_write_commit(w, m->lsn, m->end_lsn, m->commit_time);
			break;
		case CHG_SEQUENCE:
			chg_write_sequence(w, m->nspname, m->relname, m->value,
							   m->sequence_flags);
			break;
		case CHG_STREAM_START:
			chg_write_stream_start(w, m->xid, m->first_block);
			break;
		case CHG_SUBTRANSACTION:
			chg_write_subtransaction(w, m->subxid);
			break;
		case CHG_STREAM_STOP:
			chg_write_stream_stop(w);
			break;
		case CHG_STREAM_ABORT:
			chg_write_stream_abort(w, m->xid, m->subxid);
			break;
		case CHG_STREAM_COMMIT:
			chg_write_stream_commit(w, m->xid, m->lsn, m->end_lsn, m->commit_time);
			break;
		default:
			abort();
	}
}

/* Re-encodes a message the reader returned (its relids are in a buffer). */
static void
rewrite_message(chg_writer *w, const chg_message *m)
{
	uint32_t   *relids = NULL;
	uint32_t	i;

	if (m->kind == CHG_DDL)
	{
		chg_setting *settings = xmalloc(sizeof(chg_setting) * (m->nsettings + 1));

		for (i = 0; i < m->nsettings; i++)
			settings[i] = chg_ddl_setting(m, (uint16_t) i);
		chg_missing *missing = xmalloc(sizeof(chg_missing) * (m->nmissing + 1));

		for (i = 0; i < m->nmissing; i++)
			missing[i] = chg_ddl_missing(m, (uint16_t) i);
		chg_write_ddl(w, m->role, m->nsettings, settings, m->statement,
					  m->nmissing, missing);
		free(settings);
		free(missing);
		return;
	}
	if (m->kind == CHG_TRUNCATE)
	{
		relids = xmalloc((size_t) m->nrels * sizeof(uint32_t));
		for (i = 0; i < m->nrels; i++)
			relids[i] = chg_truncate_relid(m, i);
	}
	write_message(w, m, relids);
	free(relids);
}

static void
write_stream(buffer *b, const sample *stream, int n)
{
	chg_writer	w = writer_for(b);
	int			i;

	for (i = 0; i < n; i++)
		write_message(&w, &stream[i].m, stream[i].relids);
}

static bool
str_equal(chg_str a, chg_str b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0);
}

static bool
within(const void *p, size_t n, const uint8_t *buf, size_t len)
{
	const uint8_t *q = p;

	return q >= buf && q <= buf + len && n <= (size_t) (buf + len - q);
}

/*
 * Compares a tuple the reader returned with the expected one; values read
 * must point into buf and into the given reader array.
 */
static bool
tuple_equal(const chg_tuple *want, const chg_tuple *got,
			const chg_value *array, const uint8_t *buf, size_t len)
{
	uint16_t	i;

	if (want->natts != got->natts || got->values != array)
		return false;
	for (i = 0; i < want->natts; i++)
	{
		const chg_value *a = &want->values[i];
		const chg_value *b = &got->values[i];

		if (a->kind != b->kind)
			return false;
		if (a->kind == 'n' || a->kind == 'u')
		{
			if (b->len != 0 || b->data != NULL)
				return false;
			continue;
		}
		if (a->len != b->len || !within(b->data, b->len, buf, len))
			return false;
		if (a->len > 0 && memcmp(a->data, b->data, a->len) != 0)
			return false;
	}
	return true;
}

static bool
tuple_empty(const chg_tuple *t)
{
	return t->natts == 0 && t->values == NULL;
}

/*
 * Checks every field of a message read from buf against the sample,
 * including that fields its kind does not carry are zero.
 */
static bool
message_equal(const sample *s, const chg_message *got,
			  const uint8_t *buf, size_t len)
{
	const chg_message *want = &s->m;
	uint16_t	i;
	uint32_t	r;
	bool		is_rel = want->kind == CHG_RELATION;
	bool		has_old = (want->kind == CHG_DELETE || want->kind == CHG_UPDATE) &&
		want->old_kind != '-';
	bool		has_new = want->kind == CHG_INSERT || want->kind == CHG_UPDATE;

	if (got->kind != want->kind ||
		got->version != want->version ||
		got->xid != want->xid ||
		got->subxid != want->subxid ||
		got->first_block != want->first_block ||
		got->lsn != want->lsn ||
		got->end_lsn != want->end_lsn ||
		got->commit_time != want->commit_time ||
		got->relid != want->relid ||
		got->replident != want->replident ||
		got->natts != want->natts ||
		got->old_kind != want->old_kind ||
		got->truncate_flags != want->truncate_flags ||
		got->nrels != want->nrels ||
		got->value != want->value ||
		got->sequence_flags != want->sequence_flags)
		return false;

	if (!str_equal(want->nspname, got->nspname) ||
		!str_equal(want->relname, got->relname))
		return false;
	if (is_rel)
	{
		if (got->columns != columns ||
			!within(got->nspname.data, got->nspname.len, buf, len) ||
			!within(got->relname.data, got->relname.len, buf, len))
			return false;
		for (i = 0; i < want->natts; i++)
		{
			const chg_column *a = &want->columns[i];
			const chg_column *b = &got->columns[i];

			if (!str_equal(a->name, b->name) ||
				!within(b->name.data, b->name.len, buf, len) ||
				a->typid != b->typid || a->typmod != b->typmod ||
				a->is_key != b->is_key)
				return false;
		}
	}
	else if (want->kind == CHG_SEQUENCE)
	{
		if (got->columns != NULL ||
			!within(got->nspname.data, got->nspname.len, buf, len) ||
			!within(got->relname.data, got->relname.len, buf, len))
			return false;
	}
	else if (got->columns != NULL || got->nspname.data != NULL ||
			 got->relname.data != NULL)
		return false;

	if (has_old ? !tuple_equal(&want->old_tuple, &got->old_tuple, old_values,
							   buf, len)
		: !tuple_empty(&got->old_tuple))
		return false;
	if (has_new ? !tuple_equal(&want->new_tuple, &got->new_tuple, new_values,
							   buf, len)
		: !tuple_empty(&got->new_tuple))
		return false;

	if (want->kind == CHG_TRUNCATE)
	{
		if (!within(got->relids, (size_t) got->nrels * 4, buf, len))
			return false;
		for (r = 0; r < want->nrels; r++)
			if (chg_truncate_relid(got, r) != s->relids[r])
				return false;
	}
	else if (got->relids != NULL)
		return false;
	return true;
}

/* Reads one message from an exact-size heap copy of bytes. */
static int
read_exact(const uint8_t *bytes, size_t len, const chg_arrays *arrays,
		   chg_message *m, size_t *consumed)
{
	uint8_t    *copy = xmalloc(len);
	int			rc;

	if (len > 0)
		memcpy(copy, bytes, len);
	rc = chg_read(len > 0 ? copy : NULL, len, arrays, m, consumed);
	free(copy);
	return rc;
}

/*
 * Checks a message the reader accepted from buf for consistency: its
 * pointers stay inside the consumed bytes and the arrays, its counts stay
 * within the limits, and the writer gives back exactly the bytes consumed.
 */
static bool
consistent(const uint8_t *buf, size_t consumed, const chg_message *m)
{
	buffer		out = {NULL, 0, 0};
	chg_writer	w = writer_for(&out);
	bool		ok;

	if (consumed == 0)
		return false;
	if (m->natts > CHG_MAX_COLUMNS || m->old_tuple.natts > CHG_MAX_COLUMNS ||
		m->new_tuple.natts > CHG_MAX_COLUMNS ||
		m->nrels > CHG_MAX_TRUNCATE_RELS)
		return false;
	if (m->kind == CHG_TRUNCATE &&
		!within(m->relids, (size_t) m->nrels * 4, buf, consumed))
		return false;
	rewrite_message(&w, m);
	ok = out.len == consumed && memcmp(out.data, buf, consumed) == 0;
	buffer_free(&out);
	return ok;
}

/* ----------------------------------------------------------------------
 * Tests
 * ----------------------------------------------------------------------
 */

static void
test_strerror(void)
{
	static const int codes[] = {
		CHG_OK, CHG_ERR_TRUNCATED, CHG_ERR_KIND, CHG_ERR_VERSION,
		CHG_ERR_FIELD, CHG_ERR_TOO_MANY, CHG_ERR_CAPACITY
	};
	const char *unknown = chg_strerror(-100);
	size_t		i,
				j;
	bool		distinct = true;

	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		for (j = 0; j < i; j++)
			if (strcmp(chg_strerror(codes[i]), chg_strerror(codes[j])) == 0)
				distinct = false;
	check(distinct, "chg_strerror gives a distinct text for every code");
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (strcmp(chg_strerror(codes[i]), unknown) == 0)
			distinct = false;
	check(distinct && strcmp(unknown, chg_strerror(1)) == 0,
		  "chg_strerror names unknown codes as unknown (\"%s\")", unknown);
}

/*
 * The bytes of changes.h, spelled out.  If one of these fails, the format
 * changed: followers running the previous version would refuse or, worse,
 * misread the new entries.
 */
static void
check_layout(const char *name, const chg_message *m, const uint32_t *relids,
			 const uint8_t *want, size_t want_len)
{
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	uint8_t    *copy = xmalloc(want_len);
	chg_message got;
	size_t		consumed;

	write_message(&w, m, relids);
	check(b.len == want_len && memcmp(b.data, want, want_len) == 0,
		  "layout: %s is written as specified (%zu bytes)", name, want_len);

	/* and the specified bytes read back as the same message */
	memcpy(copy, want, want_len);
	check(chg_read(copy, want_len, &full_arrays, &got, &consumed) == CHG_OK &&
		  consumed == want_len && consistent(copy, consumed, &got),
		  "layout: %s reads back and re-encodes to the same bytes", name);
	free(copy);
	buffer_free(&b);
}

static void
test_layout(void)
{
	static const uint8_t version[] = {'V', 0x01};
	static const uint8_t begin[] = {
		'B', 0x44, 0x33, 0x22, 0x11,
		0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
		0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
	};
	static const uint8_t commit[] = {
		'C', 0x11, 0x10, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F
	};
	static const uint8_t relation[] = {
		'R', 0x00, 0x40, 0x00, 0x00,
		0x02, 0x00, 'n', 's',
		0x01, 0x00, 't',
		'd',
		0x02, 0x00,
		0x01, 0x00, 'a', 0x17, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0x01,
		0x02, 0x00, 'b', 'c', 0x13, 0x04, 0x00, 0x00, 0x24, 0x00, 0x00, 0x00,
		0x00
	};
	static const uint8_t insert[] = {
		'I', 0x01, 0x00, 0x00, 0x00,
		0x04, 0x00,
		'n',
		'u',
		't', 0x02, 0x00, 0x00, 0x00, 'h', 'i',
		'b', 0x00, 0x00, 0x00, 0x00
	};
	static const uint8_t update_none[] = {
		'U', 0x02, 0x00, 0x00, 0x00, '-', 0x01, 0x00, 'n'
	};
	static const uint8_t update_key[] = {
		'U', 0x02, 0x00, 0x00, 0x00, 'K',
		0x01, 0x00, 't', 0x01, 0x00, 0x00, 0x00, 'k',
		0x00, 0x00
	};
	static const uint8_t delete_row[] = {
		'D', 0x03, 0x00, 0x00, 0x00, 'O', 0x01, 0x00, 'b', 0x01, 0x00, 0x00,
		0x00, 0xFF
	};
	static const uint8_t truncate[] = {
		'T', 0x03, 0x02, 0x00, 0x00, 0x00,
		0x01, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF
	};
	static const uint8_t stream_start[] = {'b', 0x04, 0x03, 0x02, 0x01, 0x01};
	static const uint8_t subtransaction[] = {'x', 0xFF, 0xFF, 0xFF, 0xFF};
	static const uint8_t stream_stop[] = {'e'};
	static const uint8_t stream_abort[] = {
		'a', 0x01, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00
	};
	static const uint8_t stream_commit[] = {
		'c', 0x05, 0x00, 0x00, 0x00,
		0x11, 0x10, 0x0F, 0x0E, 0x0D, 0x0C, 0x0B, 0x0A,
		0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
		0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF
	};
	static const uint32_t relids[2] = {1, UINT32_MAX};
	static const uint8_t ff = 0xFF;
	chg_column	cols[2] = {{S("a"), 23, -1, true}, {S("bc"), 1043, 36, false}};

	/* 'n' and 'u' carry no length, whatever len and data say */
	chg_value	vals[4] = {
		{'n', 5, (const uint8_t *) "junk!"},
		{'u', 1, (const uint8_t *) "j"},
		{'t', 2, (const uint8_t *) "hi"},
		{'b', 0, NULL}
	};
	chg_value	one_n = {'n', 0, NULL};
	chg_value	one_k = {'t', 1, (const uint8_t *) "k"};
	chg_value	one_b = {'b', 1, &ff};
	chg_message m;

	memset(&m, 0, sizeof(m));
	m.kind = CHG_VERSION;
	check_layout("version", &m, NULL, version, sizeof(version));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_BEGIN;
	m.xid = 0x11223344;
	m.lsn = UINT64_C(0x0102030405060708);
	m.commit_time = -2;
	check_layout("begin (negative commit_time)", &m, NULL, begin, sizeof(begin));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_COMMIT;
	m.lsn = UINT64_C(0x0A0B0C0D0E0F1011);
	m.end_lsn = UINT64_MAX;
	m.commit_time = INT64_MAX;
	check_layout("commit", &m, NULL, commit, sizeof(commit));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_RELATION;
	m.relid = 16384;
	m.nspname = (chg_str) S("ns");
	m.relname = (chg_str) S("t");
	m.replident = 'd';
	m.natts = 2;
	m.columns = cols;
	check_layout("relation (typmod -1, key flag)", &m, NULL, relation,
				 sizeof(relation));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_INSERT;
	m.relid = 1;
	m.new_tuple = tuple(4, vals);
	check_layout("insert ('n' and 'u' without length)", &m, NULL, insert,
				 sizeof(insert));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_UPDATE;
	m.relid = 2;
	m.old_kind = '-';
	m.old_tuple = tuple(1, &one_k);	/* ignored: no old tuple for '-' */
	m.new_tuple = tuple(1, &one_n);
	check_layout("update '-' (no old tuple)", &m, NULL, update_none,
				 sizeof(update_none));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_UPDATE;
	m.relid = 2;
	m.old_kind = 'K';
	m.old_tuple = tuple(1, &one_k);
	m.new_tuple = tuple(0, NULL);
	check_layout("update 'K'", &m, NULL, update_key, sizeof(update_key));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_DELETE;
	m.relid = 3;
	m.old_kind = 'O';
	m.old_tuple = tuple(1, &one_b);
	check_layout("delete 'O'", &m, NULL, delete_row, sizeof(delete_row));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_TRUNCATE;
	m.truncate_flags = 3;
	m.nrels = 2;
	check_layout("truncate", &m, relids, truncate, sizeof(truncate));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_STREAM_START;
	m.xid = 0x01020304;
	m.first_block = true;
	check_layout("stream start", &m, NULL, stream_start, sizeof(stream_start));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_SUBTRANSACTION;
	m.subxid = UINT32_MAX;
	check_layout("subtransaction", &m, NULL, subtransaction, sizeof(subtransaction));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_STREAM_STOP;
	check_layout("stream stop", &m, NULL, stream_stop, sizeof(stream_stop));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_STREAM_ABORT;
	m.xid = 1;
	m.subxid = 2;
	check_layout("stream abort", &m, NULL, stream_abort, sizeof(stream_abort));

	memset(&m, 0, sizeof(m));
	m.kind = CHG_STREAM_COMMIT;
	m.xid = 5;
	m.lsn = UINT64_C(0x0A0B0C0D0E0F1011);
	m.end_lsn = UINT64_MAX;
	m.commit_time = -2;
	check_layout("stream commit", &m, NULL, stream_commit, sizeof(stream_commit));
}

/*
 * Writes a stream and reads it back message by message from one
 * exact-size buffer, comparing every field.
 */
static void
check_round_trip(const char *what, const sample *stream, int n)
{
	buffer		b = {NULL, 0, 0};
	uint8_t    *copy;
	size_t		off = 0;
	int			i;

	write_stream(&b, stream, n);
	copy = xmalloc(b.len);
	memcpy(copy, b.data, b.len);

	for (i = 0; i < n; i++)
	{
		chg_message m;
		size_t		consumed = 12345;
		int			rc;

		rc = chg_read(copy + off, b.len - off, &full_arrays, &m, &consumed);
		if (!check(rc == CHG_OK && consumed > 0 && consumed <= b.len - off &&
				   message_equal(&stream[i], &m, copy + off, consumed),
				   "round trip (%s): %s", what, stream[i].name))
		{
			diag("rc %d (%s), consumed %zu", rc, chg_strerror(rc), consumed);
			break;
		}
		off += consumed;
	}
	check(i == n && off == b.len,
		  "round trip (%s): the %d messages use up all %zu bytes",
		  what, n, b.len);
	free(copy);
	buffer_free(&b);
}

static void
test_round_trip(void)
{
	check_round_trip("transaction", small_stream, n_small);
	check_round_trip("large values", big_stream, n_big);
	check_round_trip("streamed transactions", streamed, n_streamed);
}

/*
 * Reading a message alone, from a buffer that ends where it ends, gives
 * the same fields and re-encodes to the same bytes.
 */
static void
check_read_alone(const char *what, const sample *stream, int n)
{
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	int			i;
	bool		ok = true;

	for (i = 0; i < n && ok; i++)
	{
		chg_message m;
		size_t		consumed;
		uint8_t    *copy;

		b.len = 0;
		write_message(&w, &stream[i].m, stream[i].relids);
		copy = xmalloc(b.len);
		memcpy(copy, b.data, b.len);
		ok = chg_read(copy, b.len, &full_arrays, &m, &consumed) == CHG_OK &&
			consumed == b.len &&
			message_equal(&stream[i], &m, copy, b.len) &&
			consistent(copy, consumed, &m);
		if (!ok)
			diag("message %d (%s) failed", i, stream[i].name);
		free(copy);
	}
	check(ok, "each message of the %s reads alone and re-encodes to its bytes", what);
	buffer_free(&b);
}

static void
test_read_alone(void)
{
	check_read_alone("transaction", small_stream, n_small);
	check_read_alone("streamed transactions", streamed, n_streamed);
}

/*
 * Reads bytes from an exact-size copy and compares the message with the
 * sample while the copy is still alive.
 */
static bool
read_check(const sample *s, const uint8_t *bytes, size_t len,
		   const chg_arrays *arrays)
{
	uint8_t    *copy = xmalloc(len);
	chg_message m;
	size_t		consumed;
	bool		ok;

	memcpy(copy, bytes, len);
	ok = chg_read(copy, len, arrays, &m, &consumed) == CHG_OK &&
		consumed == len &&
		message_equal(s, &m, copy, len) &&
		consistent(copy, len, &m);
	free(copy);
	return ok;
}

/* The largest counts the format allows, and names of the longest length. */
static void
test_limits(void)
{
	static char names[CHG_MAX_COLUMNS][16];
	static chg_column cols[CHG_MAX_COLUMNS];
	static chg_value vals[CHG_MAX_COLUMNS];
	static uint32_t relids[CHG_MAX_TRUNCATE_RELS];
	sample		s;
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	chg_message m;
	size_t		consumed;
	chg_arrays	exact;
	int			i;
	int			rc;

	for (i = 0; i < CHG_MAX_COLUMNS; i++)
	{
		snprintf(names[i], sizeof(names[i]), "c%d", i);
		cols[i].name.data = names[i];
		cols[i].name.len = (uint16_t) strlen(names[i]);
		cols[i].typid = (uint32_t) i;
		cols[i].typmod = i - 1;
		cols[i].is_key = i % 3 == 0;
		vals[i].kind = "nutb"[i % 4];
		vals[i].len = i % 4 >= 2 ? 4 : 0;
		vals[i].data = vals[i].len > 0 ? (const uint8_t *) "t\xFFx!" : NULL;
	}
	/* the longest name in the last column */
	cols[CHG_MAX_COLUMNS - 1].name.data = name63;
	cols[CHG_MAX_COLUMNS - 1].name.len = CHG_MAX_NAME_BYTES;

	memset(&s, 0, sizeof(s));
	s.name = "widest relation";
	s.m.kind = CHG_RELATION;
	s.m.relid = 1;
	s.m.nspname = (chg_str) S("public");
	s.m.relname = (chg_str) S("wide");
	s.m.replident = 'd';
	s.m.natts = CHG_MAX_COLUMNS;
	s.m.columns = cols;
	write_message(&w, &s.m, NULL);
	check(read_check(&s, b.data, b.len, &full_arrays),
		  "a relation of CHG_MAX_COLUMNS (%d) columns reads back",
		  CHG_MAX_COLUMNS);

	/* arrays of exactly natts elements are enough */
	exact = full_arrays;
	exact.cap = CHG_MAX_COLUMNS - 1;
	rc = read_exact(b.data, b.len, &exact, &m, &consumed);
	check(rc == CHG_ERR_CAPACITY,
		  "arrays of CHG_MAX_COLUMNS - 1 are too small for it");

	b.len = 0;
	memset(&s, 0, sizeof(s));
	s.name = "widest update";
	s.m.kind = CHG_UPDATE;
	s.m.relid = 1;
	s.m.old_kind = 'O';
	s.m.old_tuple = tuple(CHG_MAX_COLUMNS, vals);
	s.m.new_tuple = tuple(CHG_MAX_COLUMNS, vals);
	write_message(&w, &s.m, NULL);
	check(read_check(&s, b.data, b.len, &full_arrays),
		  "an update of two tuples of CHG_MAX_COLUMNS values reads back");

	for (i = 0; i < CHG_MAX_TRUNCATE_RELS; i++)
		relids[i] = UINT32_C(0x9E3779B9) * (uint32_t) i;
	b.len = 0;
	memset(&s, 0, sizeof(s));
	s.name = "largest truncate";
	s.m.kind = CHG_TRUNCATE;
	s.m.truncate_flags = 1;
	s.m.nrels = CHG_MAX_TRUNCATE_RELS;
	s.relids = relids;
	write_message(&w, &s.m, relids);
	check(read_check(&s, b.data, b.len, NULL),
		  "a truncate of CHG_MAX_TRUNCATE_RELS (%d) relations reads back",
		  CHG_MAX_TRUNCATE_RELS);

	buffer_free(&b);
}

static const char *
rc_name(int rc)
{
	switch (rc)
	{
		case CHG_OK:
			return "CHG_OK";
		case CHG_ERR_TRUNCATED:
			return "CHG_ERR_TRUNCATED";
		case CHG_ERR_KIND:
			return "CHG_ERR_KIND";
		case CHG_ERR_VERSION:
			return "CHG_ERR_VERSION";
		case CHG_ERR_FIELD:
			return "CHG_ERR_FIELD";
		case CHG_ERR_TOO_MANY:
			return "CHG_ERR_TOO_MANY";
		case CHG_ERR_CAPACITY:
			return "CHG_ERR_CAPACITY";
	}
	return "(unknown code)";
}

/*
 * Reads crafted bytes from an exact-size copy and checks the result code.
 * On success the message must fill the bytes exactly and re-encode to
 * them; on failure *msg must be untouched and *consumed 0.
 */
static void
expect_rc(const char *name, const buffer *b, const chg_arrays *arrays,
		  int want)
{
	uint8_t    *copy = xmalloc(b->len);
	chg_message m,
				before;
	size_t		consumed = 99;
	bool		ok;
	int			rc;

	if (b->len > 0)
		memcpy(copy, b->data, b->len);
	memset(&m, 0x5A, sizeof(m));
	before = m;
	rc = chg_read(b->len > 0 ? copy : NULL, b->len, arrays, &m, &consumed);
	if (want == CHG_OK)
		ok = rc == CHG_OK && consumed == b->len &&
			consistent(copy, consumed, &m);
	else
		ok = rc == want && consumed == 0 &&
			memcmp(&m, &before, sizeof(m)) == 0;
	if (!check(ok, "%s: %s", name, rc_name(want)))
		diag("got %s, consumed %zu of %zu", rc_name(rc), consumed, b->len);
	free(copy);
}

/* Crafted prefixes: the start of a relation message, up to its natts. */
static void
relation_head(buffer *b, const char *nsp, const char *rel, uint8_t replident)
{
	b->len = 0;
	put_u8(b, 'R');
	put_u32(b, 16384);
	put_name(b, nsp);
	put_name(b, rel);
	put_u8(b, replident);
}

static void
column(buffer *b, const char *name, uint8_t flags)
{
	put_name(b, name);
	put_u32(b, 23);
	put_u32(b, UINT32_MAX);
	put_u8(b, flags);
}

static void
insert_head(buffer *b, uint16_t natts)
{
	b->len = 0;
	put_u8(b, 'I');
	put_u32(b, 1);
	put_u16(b, natts);
}

static void
test_errors(void)
{
	buffer		b = {NULL, 0, 0};
	chg_column	small_columns[2];
	chg_value	small_old[2];
	chg_value	small_new[2];
	chg_arrays	small = {small_columns, small_old, small_new, 2};
	chg_arrays	no_old = {columns, NULL, new_values, CHG_MAX_COLUMNS};
	static const uint8_t bad_kinds[] = {0x00, 'Z', 'v', 'q', 'r', 0xFF, 0x80};
	static const uint8_t good_kinds[] = "VBRIUDTCXSbxac";
	size_t		i;
	char		name[64];

	/* CHG_ERR_TRUNCATED */
	b.len = 0;
	expect_rc("empty buffer", &b, &full_arrays, CHG_ERR_TRUNCATED);
	for (i = 0; i < sizeof(good_kinds) - 1; i++)
	{
		b.len = 0;
		put_u8(&b, good_kinds[i]);
		snprintf(name, sizeof(name), "kind '%c' alone", good_kinds[i]);
		expect_rc(name, &b, &full_arrays, CHG_ERR_TRUNCATED);
	}
	relation_head(&b, "public", "t", 'd');
	b.len -= 3;					/* inside relname */
	expect_rc("relation cut inside a name", &b, &full_arrays,
			  CHG_ERR_TRUNCATED);
	insert_head(&b, 1);
	put_u8(&b, 't');
	put_u32(&b, 10);
	put_raw(&b, "123456789", 9);
	expect_rc("text value one byte short", &b, &full_arrays,
			  CHG_ERR_TRUNCATED);
	insert_head(&b, 1);
	put_u8(&b, 'b');
	put_u32(&b, CHG_MAX_VALUE_BYTES);
	put_raw(&b, "abc", 3);
	expect_rc("value of CHG_MAX_VALUE_BYTES announced, 3 present", &b,
			  &full_arrays, CHG_ERR_TRUNCATED);
	insert_head(&b, 3);
	put_u8(&b, 'n');
	put_u8(&b, 'u');
	expect_rc("tuple with fewer columns than natts", &b, &full_arrays,
			  CHG_ERR_TRUNCATED);
	b.len = 0;
	put_u8(&b, 'T');
	put_u8(&b, 0);
	put_u32(&b, 2);
	put_u32(&b, 1);
	put_u16(&b, 0);
	expect_rc("truncate with half of its last relid", &b, NULL,
			  CHG_ERR_TRUNCATED);

	/* CHG_ERR_KIND */
	for (i = 0; i < sizeof(bad_kinds); i++)
	{
		b.len = 0;
		put_u8(&b, bad_kinds[i]);
		put_raw(&b, "\x01\x00\x00\x00\x00\x00\x00\x00", 8);
		snprintf(name, sizeof(name), "kind byte 0x%02X", bad_kinds[i]);
		expect_rc(name, &b, &full_arrays, CHG_ERR_KIND);
	}

	/* CHG_ERR_VERSION */
	b.len = 0;
	put_u8(&b, 'V');
	put_u8(&b, 0);
	expect_rc("version 0", &b, &full_arrays, CHG_ERR_VERSION);
	b.data[1] = RAFT_CHANGES_VERSION + 1;
	expect_rc("version RAFT_CHANGES_VERSION + 1", &b, &full_arrays,
			  CHG_ERR_VERSION);
	b.data[1] = 0xFF;
	expect_rc("version 255", &b, &full_arrays, CHG_ERR_VERSION);
	b.data[1] = RAFT_CHANGES_VERSION;
	expect_rc("version RAFT_CHANGES_VERSION", &b, &full_arrays, CHG_OK);

	/* CHG_ERR_FIELD: streamed transactions' ids and flags */
	b.len = 0;
	put_u8(&b, 'b');
	put_u32(&b, 7);
	put_u8(&b, 2);
	expect_rc("stream start with first = 2", &b, &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'b');
	put_u32(&b, 0);
	put_u8(&b, 1);
	expect_rc("stream start of xid 0", &b, &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'x');
	put_u32(&b, 0);
	expect_rc("subtransaction 0", &b, &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'a');
	put_u32(&b, 7);
	put_u32(&b, 0);
	expect_rc("stream abort of subxid 0", &b, &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'a');
	put_u32(&b, 0);
	put_u32(&b, 7);
	expect_rc("stream abort of xid 0", &b, &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'c');
	put_u32(&b, 0);
	put_raw(&b, "0123456789abcdef01234567", 24);
	expect_rc("stream commit of xid 0", &b, &full_arrays, CHG_ERR_FIELD);

	/* CHG_ERR_FIELD: names */
	relation_head(&b, name63, name63, 'd');
	put_u16(&b, 0);
	expect_rc("names of CHG_MAX_NAME_BYTES", &b, &full_arrays, CHG_OK);
	b.len = 0;
	put_u8(&b, 'R');
	put_u32(&b, 1);
	put_u16(&b, CHG_MAX_NAME_BYTES + 1);
	expect_rc("nspname length CHG_MAX_NAME_BYTES + 1 (bytes absent)", &b,
			  &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'R');
	put_u32(&b, 1);
	put_name(&b, "public");
	put_u16(&b, UINT16_MAX);
	expect_rc("relname length 65535", &b, &full_arrays, CHG_ERR_FIELD);
	b.len = 0;
	put_u8(&b, 'R');
	put_u32(&b, 1);
	put_u16(&b, 3);
	put_raw(&b, "p\0b", 3);
	put_name(&b, "t");
	put_u8(&b, 'd');
	put_u16(&b, 0);
	expect_rc("NUL inside nspname", &b, &full_arrays, CHG_ERR_FIELD);
	relation_head(&b, "public", "", 'd');
	b.len -= 3;
	put_u16(&b, 1);
	put_raw(&b, "\0", 1);
	put_u8(&b, 'd');
	put_u16(&b, 0);
	expect_rc("relname of one NUL", &b, &full_arrays, CHG_ERR_FIELD);
	relation_head(&b, "public", "t", 'd');
	put_u16(&b, 1);
	put_u16(&b, 2);
	put_raw(&b, "a\0", 2);
	put_u32(&b, 23);
	put_u32(&b, 0);
	put_u8(&b, 0);
	expect_rc("NUL at the end of a column name", &b, &full_arrays,
			  CHG_ERR_FIELD);
	relation_head(&b, "public", "t", 'd');
	put_u16(&b, 1);
	put_u16(&b, CHG_MAX_NAME_BYTES + 1);
	put_raw(&b, name63, CHG_MAX_NAME_BYTES);
	put_raw(&b, "x", 1);
	expect_rc("column name of CHG_MAX_NAME_BYTES + 1", &b, &full_arrays,
			  CHG_ERR_FIELD);

	/* CHG_ERR_FIELD: replident and column flags */
	relation_head(&b, "public", "t", 'x');
	put_u16(&b, 0);
	expect_rc("replident 'x'", &b, &full_arrays, CHG_ERR_FIELD);
	relation_head(&b, "public", "t", 'D');
	put_u16(&b, 0);
	expect_rc("replident 'D'", &b, &full_arrays, CHG_ERR_FIELD);
	relation_head(&b, "public", "t", 0);
	put_u16(&b, 0);
	expect_rc("replident 0", &b, &full_arrays, CHG_ERR_FIELD);
	relation_head(&b, "public", "t", 'n');
	put_u16(&b, 2);
	column(&b, "a", 1);
	column(&b, "b", 2);
	expect_rc("column flags 2 (undefined bit)", &b, &full_arrays,
			  CHG_ERR_FIELD);
	relation_head(&b, "public", "t", 'n');
	put_u16(&b, 1);
	column(&b, "a", 0x81);
	expect_rc("column flags 0x81", &b, &full_arrays, CHG_ERR_FIELD);

	/* CHG_ERR_FIELD: values */
	insert_head(&b, 2);
	put_u8(&b, 'n');
	put_u8(&b, 'x');
	expect_rc("column kind 'x'", &b, &full_arrays, CHG_ERR_FIELD);
	insert_head(&b, 1);
	put_u8(&b, 'N');
	expect_rc("column kind 'N'", &b, &full_arrays, CHG_ERR_FIELD);
	insert_head(&b, 1);
	put_u8(&b, 0);
	expect_rc("column kind 0", &b, &full_arrays, CHG_ERR_FIELD);
	insert_head(&b, 1);
	put_u8(&b, 'b');
	put_u32(&b, CHG_MAX_VALUE_BYTES + 1);
	expect_rc("value length CHG_MAX_VALUE_BYTES + 1", &b, &full_arrays,
			  CHG_ERR_FIELD);
	insert_head(&b, 1);
	put_u8(&b, 't');
	put_u32(&b, UINT32_MAX);
	put_raw(&b, "abcdefgh", 8);
	expect_rc("value length 2^32 - 1", &b, &full_arrays, CHG_ERR_FIELD);
	insert_head(&b, 1);
	put_u8(&b, 't');
	put_u32(&b, 3);
	put_raw(&b, "a\0b", 3);
	expect_rc("NUL inside a text value", &b, &full_arrays, CHG_ERR_FIELD);
	insert_head(&b, 1);
	put_u8(&b, 'b');
	put_u32(&b, 3);
	put_raw(&b, "a\0b", 3);
	expect_rc("NUL inside a binary value is data", &b, &full_arrays, CHG_OK);

	/* CHG_ERR_FIELD: old_kind */
	b.len = 0;
	put_u8(&b, 'U');
	put_u32(&b, 1);
	put_u8(&b, 'X');
	put_u16(&b, 0);
	put_u16(&b, 0);
	expect_rc("update old_kind 'X'", &b, &full_arrays, CHG_ERR_FIELD);
	b.data[5] = 'k';
	expect_rc("update old_kind 'k'", &b, &full_arrays, CHG_ERR_FIELD);
	b.data[5] = 0;
	expect_rc("update old_kind 0", &b, &full_arrays, CHG_ERR_FIELD);
	b.data[5] = 'K';
	expect_rc("update old_kind 'K'", &b, &full_arrays, CHG_OK);
	b.data[5] = 'O';
	expect_rc("update old_kind 'O'", &b, &full_arrays, CHG_OK);
	b.data[5] = '-';
	b.len = 8;
	expect_rc("update old_kind '-' (no old tuple)", &b, &full_arrays, CHG_OK);
	b.len = 0;
	put_u8(&b, 'D');
	put_u32(&b, 1);
	put_u8(&b, 'X');
	put_u16(&b, 0);
	expect_rc("delete old_kind 'X'", &b, &full_arrays, CHG_ERR_FIELD);
	b.data[5] = 'K';
	expect_rc("delete old_kind 'K'", &b, &full_arrays, CHG_OK);
	b.data[5] = '-';
	b.len = 6;
	expect_rc("delete old_kind '-' (no old tuple)", &b, &full_arrays, CHG_OK);

	/* CHG_ERR_FIELD: truncate flags */
	b.len = 0;
	put_u8(&b, 'T');
	put_u8(&b, 4);
	put_u32(&b, 1);
	put_u32(&b, 16384);
	expect_rc("truncate flags 4", &b, NULL, CHG_ERR_FIELD);
	b.data[1] = 0x80;
	expect_rc("truncate flags 0x80", &b, NULL, CHG_ERR_FIELD);
	b.data[1] = 0xFF;
	expect_rc("truncate flags 0xFF", &b, NULL, CHG_ERR_FIELD);
	b.data[1] = 3;
	expect_rc("truncate flags 3", &b, NULL, CHG_OK);

	/* CHG_ERR_TOO_MANY */
	relation_head(&b, "public", "t", 'd');
	put_u16(&b, CHG_MAX_COLUMNS + 1);
	expect_rc("relation natts CHG_MAX_COLUMNS + 1", &b, &full_arrays,
			  CHG_ERR_TOO_MANY);
	relation_head(&b, "public", "t", 'd');
	put_u16(&b, UINT16_MAX);
	expect_rc("relation natts 65535 with small arrays (the limit comes "
			  "before the capacity)", &b, &small, CHG_ERR_TOO_MANY);
	insert_head(&b, CHG_MAX_COLUMNS + 1);
	expect_rc("insert natts CHG_MAX_COLUMNS + 1", &b, &full_arrays,
			  CHG_ERR_TOO_MANY);
	b.len = 0;
	put_u8(&b, 'U');
	put_u32(&b, 1);
	put_u8(&b, 'O');
	put_u16(&b, CHG_MAX_COLUMNS + 1);
	expect_rc("update old tuple natts CHG_MAX_COLUMNS + 1", &b, &full_arrays,
			  CHG_ERR_TOO_MANY);
	b.len = 0;
	put_u8(&b, 'U');
	put_u32(&b, 1);
	put_u8(&b, '-');
	put_u16(&b, UINT16_MAX);
	expect_rc("update new tuple natts 65535", &b, &full_arrays,
			  CHG_ERR_TOO_MANY);
	b.len = 0;
	put_u8(&b, 'D');
	put_u32(&b, 1);
	put_u8(&b, 'K');
	put_u16(&b, CHG_MAX_COLUMNS + 1);
	expect_rc("delete natts CHG_MAX_COLUMNS + 1", &b, &full_arrays,
			  CHG_ERR_TOO_MANY);
	b.len = 0;
	put_u8(&b, 'T');
	put_u8(&b, 0);
	put_u32(&b, CHG_MAX_TRUNCATE_RELS + 1);
	expect_rc("truncate nrels CHG_MAX_TRUNCATE_RELS + 1 (relids absent)", &b,
			  NULL, CHG_ERR_TOO_MANY);
	b.len = 0;
	put_u8(&b, 'T');
	put_u8(&b, 0);
	put_u32(&b, UINT32_MAX);
	expect_rc("truncate nrels 2^32 - 1 (no overflow in nrels * 4)", &b, NULL,
			  CHG_ERR_TOO_MANY);

	/* CHG_ERR_CAPACITY */
	relation_head(&b, "public", "t", 'd');
	put_u16(&b, 3);
	column(&b, "a", 1);
	column(&b, "b", 0);
	column(&b, "c", 0);
	expect_rc("relation of 3 columns into arrays of 2", &b, &small,
			  CHG_ERR_CAPACITY);
	expect_rc("relation of 3 columns into no arrays", &b, NULL,
			  CHG_ERR_CAPACITY);
	/* each column is 12 bytes; natts comes right before them */
	b.data[b.len - 12 * 3 - 2] = 2;
	b.len -= 12;
	expect_rc("relation of 2 columns into arrays of 2", &b, &small, CHG_OK);
	relation_head(&b, "public", "t", 'd');
	put_u16(&b, 0);
	expect_rc("relation of no columns into no arrays", &b, NULL, CHG_OK);
	insert_head(&b, 3);
	put_u8(&b, 'n');
	put_u8(&b, 'n');
	put_u8(&b, 'n');
	expect_rc("insert of 3 values into arrays of 2", &b, &small,
			  CHG_ERR_CAPACITY);
	b.len = 0;
	put_u8(&b, 'U');
	put_u32(&b, 1);
	put_u8(&b, 'K');
	put_u16(&b, 1);
	put_u8(&b, 'n');
	put_u16(&b, 1);
	put_u8(&b, 'n');
	expect_rc("update with an old tuple and no old_values array", &b,
			  &no_old, CHG_ERR_CAPACITY);
	b.data[5] = '-';
	b.len = 6;
	put_u16(&b, 1);
	put_u8(&b, 'n');
	expect_rc("update without old tuple needs no old_values array", &b,
			  &no_old, CHG_OK);
	b.len = 0;
	put_u8(&b, 'U');
	put_u32(&b, 1);
	put_u8(&b, 'O');
	put_u16(&b, 2);
	put_u8(&b, 'u');
	put_u8(&b, 'u');
	put_u16(&b, 3);
	put_u8(&b, 'n');
	put_u8(&b, 'n');
	put_u8(&b, 'n');
	expect_rc("update whose new tuple alone is too wide", &b, &small,
			  CHG_ERR_CAPACITY);

	buffer_free(&b);
}

/*
 * The writer followed by the reader: every message of the round-trip
 * streams, read into arrays one element too small, gives CHG_ERR_CAPACITY.
 */
static void
test_capacity_of_samples(void)
{
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	int			i;
	bool		ok = true;
	int			n_checked = 0;

	for (i = 0; i < n_small; i++)
	{
		const chg_message *s = &small_stream[i].m;
		uint16_t	widest = s->natts;
		chg_arrays	a = full_arrays;
		chg_message m;
		size_t		consumed;
		int			rc;

		if (s->old_tuple.natts > widest)
			widest = s->old_tuple.natts;
		if (s->new_tuple.natts > widest)
			widest = s->new_tuple.natts;
		if (widest == 0)
			continue;
		b.len = 0;
		write_message(&w, s, small_stream[i].relids);
		a.cap = (uint16_t) (widest - 1);
		rc = read_exact(b.data, b.len, &a, &m, &consumed);
		if (rc != CHG_ERR_CAPACITY)
		{
			diag("%s: rc %d", small_stream[i].name, rc);
			ok = false;
		}
		a.cap = widest;
		rc = read_exact(b.data, b.len, &a, &m, &consumed);
		if (rc != CHG_OK)
			ok = false;
		n_checked++;
	}
	check(ok, "each of %d sample messages needs arrays of exactly its widest "
		  "tuple or relation", n_checked);
	buffer_free(&b);
}

/*
 * Reads a stream from buf (len bytes) in a loop.  Returns the last result:
 * CHG_OK if the stream ended exactly at a message boundary.  *n_read gets
 * the number of messages read, each also checked with consistent().
 */
static int
read_stream(const uint8_t *buf, size_t len, int *n_read, bool *all_consistent)
{
	size_t		off = 0;

	*n_read = 0;
	*all_consistent = true;
	while (off < len)
	{
		chg_message m;
		size_t		consumed;
		int			rc;

		rc = chg_read(buf + off, len - off, &full_arrays, &m, &consumed);
		if (rc != CHG_OK)
			return rc;
		if (consumed == 0 || consumed > len - off ||
			!consistent(buf + off, consumed, &m))
			*all_consistent = false;
		off += consumed;
		(*n_read)++;
	}
	return CHG_OK;
}

/*
 * Cuts a stream at every given length: the messages wholly before the cut
 * read as before, and the one the cut falls into gives exactly
 * CHG_ERR_TRUNCATED.  The reader sees a buffer that ends at the cut.
 */
static bool
check_cut(const buffer *stream, const size_t *ends, int n_msgs, size_t cut)
{
	uint8_t    *copy = xmalloc(cut);
	int			n_read;
	int			n_whole = 0;
	bool		all_consistent;
	int			rc;

	memcpy(copy, stream->data, cut);
	while (n_whole < n_msgs && ends[n_whole] <= cut)
		n_whole++;
	rc = read_stream(copy, cut, &n_read, &all_consistent);
	free(copy);
	if (n_whole > 0 && ends[n_whole - 1] == cut)
		return rc == CHG_OK && n_read == n_whole && all_consistent;
	if (cut == 0)
		return rc == CHG_OK && n_read == 0;
	return rc == CHG_ERR_TRUNCATED && n_read == n_whole && all_consistent;
}

/* Offsets where each message of a written stream ends. */
static void
message_ends(const sample *stream, int n, size_t *ends)
{
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	int			i;

	for (i = 0; i < n; i++)
	{
		write_message(&w, &stream[i].m, stream[i].relids);
		ends[i] = b.len;
	}
	buffer_free(&b);
}

/* Cuts a stream at every length. */
static void
check_every_cut(const char *what, const sample *stream, int n)
{
	buffer		b = {NULL, 0, 0};
	size_t		ends[MAX_SAMPLES];
	size_t		cut;
	size_t		n_cuts = 0;
	bool		ok = true;

	write_stream(&b, stream, n);
	message_ends(stream, n, ends);
	for (cut = 0; cut <= b.len; cut++)
	{
		if (!check_cut(&b, ends, n, cut))
		{
			diag("cut at %zu of %zu fails", cut, b.len);
			ok = false;
		}
		n_cuts++;
	}
	check(ok, "the %s cut at each of its %zu lengths reads up to "
		  "the cut, then gives CHG_ERR_TRUNCATED", what, n_cuts);
	buffer_free(&b);
}

static void
test_truncation(void)
{
	buffer		b = {NULL, 0, 0};
	size_t		ends[MAX_SAMPLES];
	size_t		n_cuts = 0;
	bool		ok = true;
	int			i;

	check_every_cut("transaction", small_stream, n_small);
	check_every_cut("streamed transactions", streamed, n_streamed);

	/*
	 * The large one: every cut near the start and end of each message and
	 * a few hundred inside the big values (cutting it at all of its 4 MB
	 * would take hours).
	 */
	write_stream(&b, big_stream, n_big);
	message_ends(big_stream, n_big, ends);
	ok = true;
	n_cuts = 0;
	for (i = 0; i < n_big; i++)
	{
		size_t		start = i > 0 ? ends[i - 1] : 0;
		size_t		k;

		for (k = 0; k < 24 && start + k <= ends[i]; k++)
		{
			ok = check_cut(&b, ends, n_big, start + k) && ok;
			n_cuts++;
		}
		for (k = 1; k <= 24 && k <= ends[i] - start; k++)
		{
			ok = check_cut(&b, ends, n_big, ends[i] - k) && ok;
			n_cuts++;
		}
		for (k = 1; k < 20; k++)
		{
			ok = check_cut(&b, ends, n_big,
						   start + (ends[i] - start) * k / 20) && ok;
			n_cuts++;
		}
	}
	check(ok, "the large transaction cut at %zu lengths reads up to the cut, "
		  "then gives CHG_ERR_TRUNCATED", n_cuts);
	buffer_free(&b);
}

/*
 * Corrupts each byte of the transaction in nine ways (each single bit,
 * and all bits): the reader must either refuse or return messages that
 * re-encode to the very bytes they came from, and never read past the
 * buffer.
 */
static void
check_corruption(const char *what, const sample *stream, int n)
{
	static const uint8_t masks[] = {1, 2, 4, 8, 16, 32, 64, 128, 0xFF};
	buffer		b = {NULL, 0, 0};
	uint8_t    *copy;
	size_t		i,
				j;
	bool		ok = true;
	int			n_errors = 0;
	int			n_accepted = 0;

	write_stream(&b, stream, n);
	copy = xmalloc(b.len);
	for (i = 0; i < b.len; i++)
	{
		for (j = 0; j < sizeof(masks); j++)
		{
			int			n_read;
			bool		all_consistent;
			int			rc;

			memcpy(copy, b.data, b.len);
			copy[i] ^= masks[j];
			rc = read_stream(copy, b.len, &n_read, &all_consistent);
			if (!all_consistent ||
				!(rc == CHG_OK ||
				  (rc <= CHG_ERR_TRUNCATED && rc >= CHG_ERR_CAPACITY)))
			{
				diag("byte %zu ^ 0x%02X: rc %d, consistent %d", i, masks[j],
					 rc, all_consistent);
				ok = false;
			}
			if (rc == CHG_OK)
				n_accepted++;
			else
				n_errors++;
		}
	}
	free(copy);
	diag("%s: %d corrupted streams refused, %d read as other valid changes",
		 what, n_errors, n_accepted);
	check(ok, "each of %zu single-byte corruptions of the %s errors or decodes "
		  "consistently", b.len * sizeof(masks), what);
	buffer_free(&b);
}

static void
test_corruption(void)
{
	check_corruption("transaction", small_stream, n_small);
	check_corruption("streamed transactions", streamed, n_streamed);
}

/* The settings of the sample schema change. */
static const chg_setting ddl_settings[3] = {
	{S("search_path"), T("app, public")},
	{S("DateStyle"), T("ISO, MDY")},
	{S("standard_conforming_strings"), T("")},
};

/* The values the sample's added column holds in existing rows. */
static const chg_missing ddl_missing[2] = {
	{S("public"), S("t"), S("c"), T("{x}")},
	{S("public"), S("t_part_1"), S("c"), T("{x}")},
};

static void
write_sample_ddl(chg_writer *w)
{
	chg_write_ddl(w, (chg_str) S("app_owner"), 3, ddl_settings,
				  (chg_text) T(DDL_STATEMENT), 2, ddl_missing);
}

/*
 * --write-corpus DIR: a few valid streams, one per file, for the fuzz
 * target's seeds.  The large values are left out: libFuzzer sizes its
 * inputs after the largest seed, and small inputs keep it fast.
 */
static bool
write_file(const char *dir, const char *name, const buffer *b)
{
	char		path[4096];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0)
	{
		perror(path);
		return false;
	}
	return true;
}

static int
write_corpus(const char *dir)
{
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	bool		ok = true;
	int			i;

	/* the whole transaction */
	write_stream(&b, small_stream, n_small);
	ok = write_file(dir, "01_transaction.bin", &b) && ok;

	/* one small transaction per kind of change */
	b.len = 0;
	for (i = 0; i < 3; i++)
		write_message(&w, &small_stream[i].m, NULL);
	write_message(&w, &small_stream[6].m, NULL);
	write_message(&w, &small_stream[n_small - 1].m, NULL);
	ok = write_file(dir, "02_insert.bin", &b) && ok;

	b.len = 0;
	for (i = 0; i < 3; i++)
		write_message(&w, &small_stream[i].m, NULL);
	for (i = 8; i <= 10; i++)
		write_message(&w, &small_stream[i].m, NULL);
	write_message(&w, &small_stream[n_small - 1].m, NULL);
	ok = write_file(dir, "03_updates.bin", &b) && ok;

	b.len = 0;
	for (i = 0; i < 3; i++)
		write_message(&w, &small_stream[i].m, NULL);
	for (i = 11; i <= 12; i++)
		write_message(&w, &small_stream[i].m, NULL);
	chg_write_delete(&w, 16384, '-', NULL);
	write_message(&w, &small_stream[n_small - 1].m, NULL);
	ok = write_file(dir, "04_deletes.bin", &b) && ok;

	b.len = 0;
	for (i = 0; i < 2; i++)
		write_message(&w, &small_stream[i].m, NULL);
	for (i = 13; i <= 16; i++)
		write_message(&w, &small_stream[i].m, small_stream[i].relids);
	write_message(&w, &small_stream[n_small - 1].m, NULL);
	ok = write_file(dir, "05_truncates.bin", &b) && ok;

	b.len = 0;
	for (i = 0; i < n_small; i++)
		if (small_stream[i].m.kind == CHG_RELATION)
			write_message(&w, &small_stream[i].m, NULL);
	ok = write_file(dir, "06_relations.bin", &b) && ok;

	b.len = 0;
	for (i = 0; i < 2; i++)
		write_message(&w, &small_stream[i].m, NULL);
	write_sample_ddl(&w);
	write_message(&w, &small_stream[n_small - 1].m, NULL);
	ok = write_file(dir, "07_ddl.bin", &b) && ok;

	b.len = 0;
	write_stream(&b, streamed, n_streamed);
	ok = write_file(dir, "08_streamed.bin", &b) && ok;

	buffer_free(&b);
	return ok ? 0 : 1;
}

/*
 * Schema changes: the fields come back, the settings through
 * chg_ddl_setting(), every prefix is truncated, and the limits hold.
 */
static void
test_ddl(void)
{
	buffer		b = {NULL, 0, 0};
	chg_writer	w = writer_for(&b);
	static chg_setting many[CHG_MAX_SETTINGS + 1];
	static char long_statement[BIG_TEXT_BYTES + 1];
	chg_message m;
	size_t		consumed;
	size_t		cut;
	bool		ok;
	uint16_t	i;

	write_sample_ddl(&w);
	ok = chg_read(b.data, b.len, NULL, &m, &consumed) == CHG_OK &&
		consumed == b.len && m.kind == CHG_DDL &&
		m.role.len == 9 && memcmp(m.role.data, "app_owner", 9) == 0 &&
		m.nsettings == 3 && m.statement.len == strlen(DDL_STATEMENT) &&
		memcmp(m.statement.data, DDL_STATEMENT, m.statement.len) == 0 &&
		consistent(b.data, consumed, &m);
	for (i = 0; ok && i < 3; i++)
	{
		chg_setting got = chg_ddl_setting(&m, i);

		ok = str_equal(got.name, ddl_settings[i].name) &&
			got.value.len == ddl_settings[i].value.len &&
			memcmp(got.value.data, ddl_settings[i].value.data, got.value.len) == 0 &&
			within(got.value.data, got.value.len, b.data, b.len);
	}
	ok = ok && m.nmissing == 2 &&
		str_equal(chg_ddl_missing(&m, 1).relname, ddl_missing[1].relname) &&
		str_equal(chg_ddl_missing(&m, 1).column, ddl_missing[1].column) &&
		chg_ddl_missing(&m, 1).value.len == 3 &&
		memcmp(chg_ddl_missing(&m, 1).value.data, "{x}", 3) == 0;
	check(ok, "a schema change reads back with its role, settings, statement and missing values");

	ok = true;
	for (cut = 0; cut < b.len; cut++)
		ok = ok && chg_read(b.data, cut, NULL, &m, &consumed) == CHG_ERR_TRUNCATED;
	check(ok, "every prefix of a schema change is CHG_ERR_TRUNCATED");

	/* a statement longer than a u16 could say, and no settings */
	memset(long_statement, 'x', BIG_TEXT_BYTES);
	b.len = 0;
	chg_write_ddl(&w, (chg_str) S(""), 0, NULL,
				  (chg_text) {long_statement, BIG_TEXT_BYTES}, 0, NULL);
	ok = chg_read(b.data, b.len, NULL, &m, &consumed) == CHG_OK &&
		consumed == b.len && m.nsettings == 0 &&
		m.statement.len == BIG_TEXT_BYTES && consistent(b.data, consumed, &m);
	check(ok, "a schema change of %d bytes and no settings reads back",
		  BIG_TEXT_BYTES);

	for (i = 0; i <= CHG_MAX_SETTINGS; i++)
		many[i] = ddl_settings[i % 3];
	b.len = 0;
	chg_write_ddl(&w, (chg_str) S("r"), CHG_MAX_SETTINGS, many,
				  (chg_text) T("SELECT 1"), 0, NULL);
	ok = chg_read(b.data, b.len, NULL, &m, &consumed) == CHG_OK &&
		consumed == b.len && m.nsettings == CHG_MAX_SETTINGS &&
		str_equal(chg_ddl_setting(&m, CHG_MAX_SETTINGS - 1).name,
				  many[CHG_MAX_SETTINGS - 1].name);
	check(ok, "a schema change of CHG_MAX_SETTINGS (%d) settings reads back",
		  CHG_MAX_SETTINGS);

	b.len = 0;
	put_u8(&b, 'X');
	put_name(&b, "r");
	put_u16(&b, CHG_MAX_SETTINGS + 1);
	expect_rc("ddl of CHG_MAX_SETTINGS + 1 settings", &b, NULL,
			  CHG_ERR_TOO_MANY);

	b.len = 0;
	put_u8(&b, 'X');
	put_name(&b, "r");
	put_u16(&b, 0);
	put_u32(&b, 3);
	put_raw(&b, "a\0b", 3);
	expect_rc("ddl statement with a NUL byte", &b, NULL, CHG_ERR_FIELD);

	b.len = 0;
	put_u8(&b, 'X');
	put_name(&b, "r");
	put_u16(&b, 0);
	put_u32(&b, 1);
	put_raw(&b, "x", 1);
	put_u16(&b, CHG_MAX_MISSING + 1);
	expect_rc("ddl of CHG_MAX_MISSING + 1 missing values", &b, NULL,
			  CHG_ERR_TOO_MANY);

	b.len = 0;
	put_u8(&b, 'X');
	put_name(&b, "r");
	put_u16(&b, 1);
	put_name(&b, "search_path");
	put_u32(&b, CHG_MAX_VALUE_BYTES + 1);
	expect_rc("ddl setting value longer than CHG_MAX_VALUE_BYTES", &b, NULL,
			  CHG_ERR_FIELD);

	/* a sequence message, byte by byte */
	b.len = 0;
	chg_write_sequence(&w, (chg_str) S("ns"), (chg_str) S("q"), -2,
					   CHG_SEQUENCE_EXACT);
	check(b.len == 1 + 4 + 3 + 8 + 1 &&
		  memcmp(b.data, "S\x02\x00ns\x01\x00q\xfe\xff\xff\xff\xff\xff\xff\xff\x02", b.len) == 0,
		  "a sequence message is laid out as changes.h says");
	b.len = 0;
	put_u8(&b, 'S');
	put_name(&b, "ns");
	put_name(&b, "q");
	put_u32(&b, 0);
	put_u32(&b, 0);
	put_u8(&b, 4);
	expect_rc("sequence with an undefined flag", &b, NULL, CHG_ERR_FIELD);

	b.len = 0;
	put_u8(&b, 'X');
	put_u16(&b, CHG_MAX_NAME_BYTES + 1);
	expect_rc("ddl role longer than CHG_MAX_NAME_BYTES", &b, NULL,
			  CHG_ERR_FIELD);

	buffer_free(&b);
}

/* The data entry header: round trip, every truncation, every bad field. */
static void
test_entry_header(void)
{
	chg_entry_header h = {CHG_ENTRY_FIRST | CHG_ENTRY_LAST, 7, 0x0102030405060708ULL, 0};
	chg_entry_header back;
	uint8_t		buf[CHG_ENTRY_HEADER_BYTES];
	uint8_t		bad[CHG_ENTRY_HEADER_BYTES];
	size_t		cut;
	bool		all_truncated = true;

	memset(&back, 0, sizeof(back));
	chg_entry_header_write(buf, &h);
	check(buf[0] == 'E' && buf[1] == 3 && buf[2] == 7 && buf[6] == 0x08 &&
		  buf[13] == 0x01, "entry header layout: magic, flags, little-endian origin and LSN");
	check(chg_entry_header_read(buf, sizeof(buf), &back) == CHG_OK &&
		  back.flags == h.flags && back.origin == h.origin &&
		  back.final_lsn == h.final_lsn, "entry header round trip");
	for (cut = 0; cut < sizeof(buf); cut++)
		if (chg_entry_header_read(buf, cut, &back) != CHG_ERR_TRUNCATED)
			all_truncated = false;
	check(all_truncated, "every strict prefix of an entry header is truncated");

	memcpy(bad, buf, sizeof(bad));
	bad[0] = 'V';
	check(chg_entry_header_read(bad, sizeof(bad), &back) == CHG_ERR_KIND,
		  "entry header with the wrong magic is refused");
	memcpy(bad, buf, sizeof(bad));
	bad[1] = 0x08;
	check(chg_entry_header_read(bad, sizeof(bad), &back) == CHG_ERR_FIELD,
		  "entry header with an undefined flag is refused");
	memcpy(bad, buf, sizeof(bad));
	memset(bad + 2, 0, 4);
	check(chg_entry_header_read(bad, sizeof(bad), &back) == CHG_ERR_FIELD,
		  "entry header without an origin is refused");
}

/*
 * A streamed transaction's entry header: the u64 is its xid, which must be
 * a 32-bit transaction id, not 0; its commit (last) also begins at a
 * message (first).
 */
static void
test_stream_entry_header(void)
{
	chg_entry_header h = {CHG_ENTRY_STREAM | CHG_ENTRY_FIRST, 9, 0, 0xfedcba98u};
	chg_entry_header back;
	uint8_t		buf[CHG_ENTRY_HEADER_BYTES];
	uint8_t		bad[CHG_ENTRY_HEADER_BYTES];

	chg_entry_header_write(buf, &h);
	check(buf[1] == 5 && buf[6] == 0x98 && buf[9] == 0xfe && buf[10] == 0 && buf[13] == 0,
		  "streamed entry header layout: flags, the xid in the u64");
	memset(&back, 0xff, sizeof(back));
	check(chg_entry_header_read(buf, sizeof(buf), &back) == CHG_OK &&
		  back.flags == h.flags && back.origin == 9 && back.xid == 0xfedcba98u &&
		  back.final_lsn == 0, "streamed entry header round trip: xid set, final_lsn 0");

	h.flags = CHG_ENTRY_STREAM | CHG_ENTRY_FIRST | CHG_ENTRY_LAST;
	chg_entry_header_write(buf, &h);
	check(chg_entry_header_read(buf, sizeof(buf), &back) == CHG_OK &&
		  back.flags == h.flags, "a stream's commit entry (first and last) is read");

	h.flags = CHG_ENTRY_FIRST | CHG_ENTRY_LAST;
	h.final_lsn = 0x1234;
	chg_entry_header_write(buf, &h);
	check(chg_entry_header_read(buf, sizeof(buf), &back) == CHG_OK &&
		  back.xid == 0 && back.final_lsn == 0x1234,
		  "a whole transaction's entry has no xid");

	h.flags = CHG_ENTRY_STREAM;
	h.final_lsn = 0;
	chg_entry_header_write(buf, &h);
	memcpy(bad, buf, sizeof(bad));
	memset(bad + 6, 0, 8);
	check(chg_entry_header_read(bad, sizeof(bad), &back) == CHG_ERR_FIELD,
		  "streamed entry header with xid 0 is refused");
	memcpy(bad, buf, sizeof(bad));
	bad[10] = 1;
	check(chg_entry_header_read(bad, sizeof(bad), &back) == CHG_ERR_FIELD,
		  "streamed entry header with an xid beyond 32 bits is refused");
	memcpy(bad, buf, sizeof(bad));
	bad[1] = CHG_ENTRY_STREAM | CHG_ENTRY_LAST;
	check(chg_entry_header_read(bad, sizeof(bad), &back) == CHG_ERR_FIELD,
		  "streamed entry header that is last but not first is refused");
}

int
main(int argc, char **argv)
{
	/* line by line, so that the TAP lines before a crash are not lost */
	setvbuf(stdout, NULL, _IOLBF, 0);
	init_samples();

	if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
		return write_corpus(argv[2]);
	if (argc != 1)
	{
		fprintf(stderr, "usage: %s [--write-corpus DIR]\n", argv[0]);
		return 2;
	}

	test_strerror();
	test_layout();
	test_round_trip();
	test_read_alone();
	test_limits();
	test_errors();
	test_capacity_of_samples();
	test_truncation();
	test_corruption();
	test_entry_header();
	test_stream_entry_header();
	test_ddl();

	printf("1..%d\n", n_tests);
	if (n_failed > 0)
		fprintf(stderr, "%d of %d change stream tests failed\n", n_failed,
				n_tests);
	return n_failed > 0 ? 1 : 0;
}
