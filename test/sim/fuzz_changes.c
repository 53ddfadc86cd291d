/*-------------------------------------------------------------------------
 *
 * fuzz_changes.c
 *	  libFuzzer target for the change stream reader (src/changes/changes.c).
 *
 * Every input is read as a data entry's header (one that reads must
 * re-encode to the same bytes), then as a stream, message after message, with chg_read
 * and arrays of CHG_MAX_COLUMNS elements, until an error or the end.  For
 * each message read the target checks that the writer re-encodes it to
 * exactly the bytes consumed (the format is canonical), that its pointers
 * and counts stay in bounds and its fields within the sets changes.h
 * allows, that every strict prefix of it would have given
 * CHG_ERR_TRUNCATED, and that arrays one element too small give
 * CHG_ERR_CAPACITY; it abort()s if one fails.  libFuzzer hands the input
 * over in a heap block of exactly its size, so AddressSanitizer catches a
 * read past the end.
 *
 * Each check was seen to fail on a planted reader bug (a bounds check off
 * by one, undefined flag bits accepted, the column limit dropped), with
 * the writer's assertions compiled out so that the target alone noticed.
 *
 *	  clang -std=c99 -O1 -g -fsanitize=fuzzer,address,undefined \
 *		  -I../../src/changes -o build/fuzz_changes fuzz_changes.c \
 *		  ../../src/changes/changes.c
 *	  ./build/fuzz_changes -max_total_time=60 NEW_CORPUS_DIR corpus_changes
 *
 * The seeds in corpus_changes/ come from "test_changes --write-corpus DIR".
 *
 * IDENTIFICATION
 *	  test/sim/fuzz_changes.c
 *
 *-------------------------------------------------------------------------
 */
#include "changes.h"

#include <stdlib.h>
#include <string.h>

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static chg_column columns[CHG_MAX_COLUMNS];
static chg_value old_values[CHG_MAX_COLUMNS];
static chg_value new_values[CHG_MAX_COLUMNS];
static const chg_arrays arrays = {
	columns, old_values, new_values, CHG_MAX_COLUMNS
};
static uint32_t relids[CHG_MAX_TRUNCATE_RELS];
static chg_setting settings[CHG_MAX_SETTINGS];
static chg_missing missing[CHG_MAX_MISSING];

/* The re-encoding: grows as needed and is kept from input to input. */
static uint8_t *out;
static size_t out_len;
static size_t out_cap;

static void
require(int cond)
{
	if (!cond)
		abort();
}

static void
out_append(void *arg, const void *data, size_t len)
{
	if (out_cap - out_len < len)
	{
		size_t		cap = out_cap > 0 ? out_cap : 4096;

		while (cap - out_len < len)
			cap *= 2;
		out = realloc(out, cap);
		require(out != NULL);
		out_cap = cap;
	}
	memcpy(out + out_len, data, len);
	out_len += len;
}

static int
within(const void *p, size_t n, const uint8_t *buf, size_t len)
{
	const uint8_t *q = p;

	return q >= buf && q <= buf + len && n <= (size_t) (buf + len - q);
}

static void
check_tuple(const chg_tuple *t, const chg_value *array,
			const uint8_t *buf, size_t len)
{
	uint16_t	i;

	require(t->natts <= CHG_MAX_COLUMNS);
	require(t->values == array);
	for (i = 0; i < t->natts; i++)
	{
		const chg_value *v = &t->values[i];

		if (v->kind == 'n' || v->kind == 'u')
			require(v->len == 0 && v->data == NULL);
		else
		{
			require(v->kind == 't' || v->kind == 'b');
			require(v->len <= CHG_MAX_VALUE_BYTES);
			require(within(v->data, v->len, buf, len));
			if (v->kind == 't')
				require(memchr(v->data, '\0', v->len) == NULL);
		}
	}
}

static void
check_name(chg_str s, const uint8_t *buf, size_t len)
{
	require(s.len <= CHG_MAX_NAME_BYTES);
	require(within(s.data, s.len, buf, len));
	require(memchr(s.data, '\0', s.len) == NULL);
}

static void
check_text(chg_text t, const uint8_t *buf, size_t len)
{
	require(t.len <= CHG_MAX_VALUE_BYTES);
	require(within(t.data, t.len, buf, len));
	require(memchr(t.data, '\0', t.len) == NULL);
}

/*
 * Checks one message the reader accepted from buf, where it took the
 * first len bytes.
 */
static void
check_message(const chg_message *m, const uint8_t *buf, size_t len)
{
	chg_writer	w;
	chg_message m2;
	chg_arrays	small;
	size_t		consumed;
	size_t		cut;
	uint16_t	widest;
	uint32_t	i;

	/* in bounds */
	switch (m->kind)
	{
		case CHG_VERSION:
			require(m->version == RAFT_CHANGES_VERSION);
			break;
		case CHG_RELATION:
			check_name(m->nspname, buf, len);
			check_name(m->relname, buf, len);
			require(m->replident == 'd' || m->replident == 'n' ||
					m->replident == 'f' || m->replident == 'i');
			require(m->natts <= CHG_MAX_COLUMNS);
			require(m->columns == columns);
			for (i = 0; i < m->natts; i++)
				check_name(m->columns[i].name, buf, len);
			break;
		case CHG_INSERT:
			check_tuple(&m->new_tuple, new_values, buf, len);
			break;
		case CHG_UPDATE:
			require(m->old_kind == '-' || m->old_kind == 'K' ||
					m->old_kind == 'O');
			if (m->old_kind != '-')
				check_tuple(&m->old_tuple, old_values, buf, len);
			check_tuple(&m->new_tuple, new_values, buf, len);
			break;
		case CHG_DELETE:
			require(m->old_kind == '-' || m->old_kind == 'K' ||
					m->old_kind == 'O');
			if (m->old_kind != '-')
				check_tuple(&m->old_tuple, old_values, buf, len);
			break;
		case CHG_TRUNCATE:
			/* 1 cascade, 2 restart identity */
			require((m->truncate_flags & ~3) == 0);
			require(m->nrels <= CHG_MAX_TRUNCATE_RELS);
			require(within(m->relids, (size_t) m->nrels * 4, buf, len));
			break;
		case CHG_DDL:
			check_name(m->role, buf, len);
			require(m->nsettings <= CHG_MAX_SETTINGS);
			for (i = 0; i < m->nsettings; i++)
			{
				settings[i] = chg_ddl_setting(m, (uint16_t) i);
				check_name(settings[i].name, buf, len);
				check_text(settings[i].value, buf, len);
			}
			check_text(m->statement, buf, len);
			require(m->nmissing <= CHG_MAX_MISSING);
			for (i = 0; i < m->nmissing; i++)
			{
				missing[i] = chg_ddl_missing(m, (uint16_t) i);
				check_name(missing[i].nspname, buf, len);
				check_name(missing[i].relname, buf, len);
				check_name(missing[i].column, buf, len);
				check_text(missing[i].value, buf, len);
			}
			break;
		case CHG_SEQUENCE:
			check_name(m->nspname, buf, len);
			check_name(m->relname, buf, len);
			require((m->sequence_flags & ~3) == 0);
			break;
		case CHG_BEGIN:
		case CHG_COMMIT:
		case CHG_STREAM_STOP:
			break;
		case CHG_STREAM_START:
		case CHG_STREAM_COMMIT:
			require(m->xid != 0);
			break;
		case CHG_SUBTRANSACTION:
			require(m->subxid != 0);
			break;
		case CHG_STREAM_ABORT:
			require(m->xid != 0 && m->subxid != 0);
			break;
		default:
			abort();
	}

	/* canonical: the writer gives back the very bytes consumed */
	w.append = out_append;
	w.arg = NULL;
	out_len = 0;
	switch (m->kind)
	{
		case CHG_VERSION:
			chg_write_version(&w);
			break;
		case CHG_BEGIN:
			chg_write_begin(&w, m->xid, m->lsn, m->commit_time);
			break;
		case CHG_RELATION:
			chg_write_relation(&w, m->relid, m->nspname, m->relname,
							   m->replident, m->natts, m->columns);
			break;
		case CHG_INSERT:
			chg_write_insert(&w, m->relid, &m->new_tuple);
			break;
		case CHG_UPDATE:
			chg_write_update(&w, m->relid, m->old_kind, &m->old_tuple,
							 &m->new_tuple);
			break;
		case CHG_DELETE:
			chg_write_delete(&w, m->relid, m->old_kind, &m->old_tuple);
			break;
		case CHG_TRUNCATE:
			for (i = 0; i < m->nrels; i++)
				relids[i] = chg_truncate_relid(m, i);
			chg_write_truncate(&w, m->truncate_flags, m->nrels, relids);
			break;
		case CHG_COMMIT:
			chg_write_commit(&w, m->lsn, m->end_lsn, m->commit_time);
			break;
		case CHG_DDL:
			chg_write_ddl(&w, m->role, m->nsettings, settings, m->statement,
						  m->nmissing, missing);
			break;
		case CHG_SEQUENCE:
			chg_write_sequence(&w, m->nspname, m->relname, m->value,
							   m->sequence_flags);
			break;
		case CHG_STREAM_START:
			chg_write_stream_start(&w, m->xid, m->first_block);
			break;
		case CHG_SUBTRANSACTION:
			chg_write_subtransaction(&w, m->subxid);
			break;
		case CHG_STREAM_STOP:
			chg_write_stream_stop(&w);
			break;
		case CHG_STREAM_ABORT:
			chg_write_stream_abort(&w, m->xid, m->subxid);
			break;
		case CHG_STREAM_COMMIT:
			chg_write_stream_commit(&w, m->xid, m->lsn, m->end_lsn, m->commit_time);
			break;
	}
	require(out_len == len && memcmp(out, buf, len) == 0);

	/*
	 * Cut short, the message is CHG_ERR_TRUNCATED: at its last byte, its
	 * middle and its first.  (Every cut would make the target quadratic.)
	 */
	for (cut = len - 1;; cut /= 2)
	{
		require(chg_read(buf, cut, &arrays, &m2, &consumed) ==
				CHG_ERR_TRUNCATED && consumed == 0);
		if (cut == 0)
			break;
	}

	/* arrays one element short of the widest tuple or relation */
	widest = m->natts;
	if (m->old_tuple.natts > widest)
		widest = m->old_tuple.natts;
	if (m->new_tuple.natts > widest)
		widest = m->new_tuple.natts;
	if (widest > 0)
	{
		small = arrays;
		small.cap = (uint16_t) (widest - 1);
		require(chg_read(buf, len, &small, &m2, &consumed) == CHG_ERR_CAPACITY);
		small.cap = widest;
		require(chg_read(buf, len, &small, &m2, &consumed) == CHG_OK &&
				consumed == len);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		off = 0;
	chg_entry_header header;

	/* the input read as a data entry: a header that is read re-encodes */
	if (chg_entry_header_read(data, size, &header) == CHG_OK)
	{
		uint8_t		again[CHG_ENTRY_HEADER_BYTES];

		require(size >= CHG_ENTRY_HEADER_BYTES);
		chg_entry_header_write(again, &header);
		require(memcmp(again, data, CHG_ENTRY_HEADER_BYTES) == 0);
	}

	while (off < size)
	{
		chg_message m;
		size_t		consumed = 0;
		int			rc;

		rc = chg_read(data + off, size - off, &arrays, &m, &consumed);
		require(rc <= CHG_OK && rc >= CHG_ERR_CAPACITY);
		if (rc != CHG_OK)
		{
			require(consumed == 0);
			/* arrays of the format's limit are never too small */
			require(rc != CHG_ERR_CAPACITY);
			break;
		}
		require(consumed > 0 && consumed <= size - off);
		check_message(&m, data + off, consumed);
		off += consumed;
	}
	return 0;
}
