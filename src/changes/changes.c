/*-------------------------------------------------------------------------
 *
 * changes.c
 *	  Writing and reading the change stream carried in Raft entries.
 *
 * The byte format is specified in changes.h.  The writer formats messages
 * through the caller's append callback; the reader checks one message at a
 * time and hands out pointers into the caller's buffer and arrays.
 *
 * NOTES
 *
 *	  Who runs this.  The writer runs in whichever process decodes a
 *	  'pg_raft' replication slot on the leader (the output plugin in
 *	  decoder.c); the reader runs in the followers' apply worker, and in
 *	  any backend that calls raft.decode_changes().  There is no shared
 *	  state, no allocation and no global mutable state, so no lock is
 *	  involved.  Like src/raft/, the file includes no PostgreSQL header, so
 *	  that test/sim can test and fuzz it alone (test_changes.c,
 *	  fuzz_changes.c).
 *
 *	  Trust.  The reader trusts nothing: a Raft entry may come from a
 *	  buggy or older leader, or be damaged on disk.  Every length is
 *	  checked against the bytes that remain before it is used, offsets
 *	  are size_t and only ever advance by at most the remaining count (so
 *	  "len - off" never underflows and "off + n" never overflows), and
 *	  every value is checked against the set the format allows.  The
 *	  writer trusts its caller, the server, which already guarantees what
 *	  the reader checks (names fit in NAMEDATALEN, at most
 *	  MaxTupleAttributeNumber columns, values below 1 GB); it only asserts
 *	  those rules, so that a bug in decoder.c shows up in testing rather
 *	  than as entries every follower refuses.
 *
 *	  Error order.  The reader checks fields in byte order and stops at
 *	  the first problem.  A field that announces what follows (a string
 *	  or value length, a count) is judged on its own before the bytes it
 *	  announces are looked for: a string length of 64 is CHG_ERR_FIELD
 *	  even when the buffer ends right after it.  Hence every strict prefix
 *	  of a valid message gives exactly CHG_ERR_TRUNCATED, and a caller
 *	  reading a stream cut short learns just that.  Counts: above the
 *	  format's limit (CHG_MAX_COLUMNS, CHG_MAX_TRUNCATE_RELS) is
 *	  CHG_ERR_TOO_MANY, within it but above the caller's arrays->cap is
 *	  CHG_ERR_CAPACITY.
 *
 *	  Canonical form.  Every message has exactly one valid byte
 *	  representation: there is no padding or slack, flags bytes may carry
 *	  only defined bits, 'n' and 'u' columns carry no length, and an
 *	  update with old_kind '-' carries no old tuple.  So a message that
 *	  reads successfully re-encodes, through the writer, to exactly the
 *	  bytes consumed; fuzz_changes.c checks that on every input.
 *
 *	  Beyond the structure, the reader refuses (CHG_ERR_FIELD) NUL bytes
 *	  inside a name and inside a 't' (text output) value.  Neither can
 *	  come from PostgreSQL, and the apply side turns both into C strings,
 *	  where a NUL would silently cut the name or the value short.
 *
 *	  The reader is stateless: it does not know which relations were
 *	  described, nor whether 'V' came first.  Those rules concern the
 *	  stream, and are the apply worker's to check.
 *
 * IDENTIFICATION
 *	  src/changes/changes.c
 *
 *-------------------------------------------------------------------------
 */
#include "changes.h"

#include <string.h>

#ifdef NDEBUG
#define CHG_ASSERT(cond) ((void) 0)
#else
#include <assert.h>
#define CHG_ASSERT(cond) assert(cond)
#endif

/* Bits of a relation column's flags byte. */
#define CHG_COLUMN_KEY			0x01
#define CHG_COLUMN_FLAGS_ALL	CHG_COLUMN_KEY

#define CHG_SEQUENCE_FLAGS_ALL	(CHG_SEQUENCE_IS_CALLED | CHG_SEQUENCE_EXACT)

/* Bits of a truncate message's flags byte. */
#define CHG_TRUNCATE_CASCADE			0x01
#define CHG_TRUNCATE_RESTART_IDENTITY	0x02
#define CHG_TRUNCATE_FLAGS_ALL	(CHG_TRUNCATE_CASCADE | CHG_TRUNCATE_RESTART_IDENTITY)

/* Size of one relid in a truncate message. */
#define CHG_RELID_BYTES			4

/*
 * Position of the reader inside the caller's buffer.  Invariant:
 * off <= len, so len - off is the number of bytes that remain.
 */
typedef struct chg_cursor
{
	const uint8_t *buf;
	size_t		len;
	size_t		off;
} chg_cursor;

const char *
chg_strerror(int rc)
{
	switch (rc)
	{
		case CHG_OK:
			return "success";
		case CHG_ERR_TRUNCATED:
			return "change message is truncated";
		case CHG_ERR_KIND:
			return "unknown change message kind";
		case CHG_ERR_VERSION:
			return "unsupported change stream version";
		case CHG_ERR_FIELD:
			return "change message has an invalid field";
		case CHG_ERR_TOO_MANY:
			return "change message has too many columns or relations";
		case CHG_ERR_CAPACITY:
			return "change message has more columns than the reader has room for";
	}
	return "unknown change stream error";
}

/* ----------------------------------------------------------------------
 * Validity of single fields, shared by the reader and the writer's
 * assertions so that both agree on what is valid.
 * ----------------------------------------------------------------------
 */

static bool
chg_value_kind_valid(uint8_t kind)
{
	return kind == 'n' || kind == 'u' || kind == 't' || kind == 'b';
}

/* 'd' default, 'n' nothing, 'f' full, 'i' index: pg_class.relreplident */
static bool
chg_replident_valid(uint8_t replident)
{
	return replident == 'd' || replident == 'n' ||
		replident == 'f' || replident == 'i';
}

static bool
chg_update_old_kind_valid(uint8_t old_kind)
{
	return old_kind == '-' || old_kind == 'K' || old_kind == 'O';
}

/*
 * A delete identifies the row it removes, except one of a table without
 * a replica identity, read from a slot outside capture.
 */
static bool
chg_delete_old_kind_valid(uint8_t old_kind)
{
	return old_kind == '-' || old_kind == 'K' || old_kind == 'O';
}

/* ----------------------------------------------------------------------
 * Writer
 *
 * Each integer is formatted byte by byte into a small local array, so the
 * output depends neither on the host's byte order nor on struct layout.
 * ----------------------------------------------------------------------
 */

static void
chg_put_bytes(chg_writer *w, const void *data, size_t len)
{
	/* an empty string or value may come with data == NULL */
	if (len > 0)
		w->append(w->arg, data, len);
}

static void
chg_put_u8(chg_writer *w, uint8_t v)
{
	w->append(w->arg, &v, 1);
}

static void
chg_put_u16(chg_writer *w, uint16_t v)
{
	uint8_t		b[2];

	b[0] = (uint8_t) v;
	b[1] = (uint8_t) (v >> 8);
	w->append(w->arg, b, sizeof(b));
}

static void
chg_put_u32(chg_writer *w, uint32_t v)
{
	uint8_t		b[4];

	b[0] = (uint8_t) v;
	b[1] = (uint8_t) (v >> 8);
	b[2] = (uint8_t) (v >> 16);
	b[3] = (uint8_t) (v >> 24);
	w->append(w->arg, b, sizeof(b));
}

static void
chg_put_u64(chg_writer *w, uint64_t v)
{
	uint8_t		b[8];
	int			i;

	for (i = 0; i < 8; i++)
		b[i] = (uint8_t) (v >> (8 * i));
	w->append(w->arg, b, sizeof(b));
}

/* Signed integers travel as their two's complement bit pattern. */
static void
chg_put_i32(chg_writer *w, int32_t v)
{
	chg_put_u32(w, (uint32_t) v);
}

static void
chg_put_i64(chg_writer *w, int64_t v)
{
	chg_put_u64(w, (uint64_t) v);
}

static void
chg_put_text(chg_writer *w, chg_text t)
{
	CHG_ASSERT(t.len <= CHG_MAX_VALUE_BYTES);
	CHG_ASSERT(t.len == 0 || t.data != NULL);
	CHG_ASSERT(t.len == 0 || memchr(t.data, '\0', t.len) == NULL);
	chg_put_u32(w, t.len);
	chg_put_bytes(w, t.data, t.len);
}

static void
chg_put_str(chg_writer *w, chg_str s)
{
	CHG_ASSERT(s.len <= CHG_MAX_NAME_BYTES);
	CHG_ASSERT(s.len == 0 || s.data != NULL);
	CHG_ASSERT(s.len == 0 || memchr(s.data, '\0', s.len) == NULL);
	chg_put_u16(w, s.len);
	chg_put_bytes(w, s.data, s.len);
}

/*
 * Writes a tuple.  'n' and 'u' columns are the kind byte alone, whatever
 * their len and data say: that keeps the encoding canonical.
 */
static void
chg_put_tuple(chg_writer *w, const chg_tuple *t)
{
	uint16_t	i;

	CHG_ASSERT(t != NULL);
	CHG_ASSERT(t->natts <= CHG_MAX_COLUMNS);
	CHG_ASSERT(t->natts == 0 || t->values != NULL);
	chg_put_u16(w, t->natts);
	for (i = 0; i < t->natts; i++)
	{
		const chg_value *v = &t->values[i];

		CHG_ASSERT(chg_value_kind_valid(v->kind));
		chg_put_u8(w, v->kind);
		if (v->kind == 't' || v->kind == 'b')
		{
			CHG_ASSERT(v->len <= CHG_MAX_VALUE_BYTES);
			CHG_ASSERT(v->len == 0 || v->data != NULL);
			chg_put_u32(w, v->len);
			chg_put_bytes(w, v->data, v->len);
		}
	}
}

/* Writes the 'V' message that starts every entry. */
void
chg_write_version(chg_writer *w)
{
	chg_put_u8(w, CHG_VERSION);
	chg_put_u8(w, RAFT_CHANGES_VERSION);
}

void
chg_write_begin(chg_writer *w, uint32_t xid, uint64_t final_lsn,
				int64_t commit_time)
{
	chg_put_u8(w, CHG_BEGIN);
	chg_put_u32(w, xid);
	chg_put_u64(w, final_lsn);
	chg_put_i64(w, commit_time);
}

/*
 * Writes the description of a relation.  Only is_key of each column's
 * flags is defined; the other bits are written as zero.
 */
void
chg_write_relation(chg_writer *w, uint32_t relid,
				   chg_str nspname, chg_str relname,
				   uint8_t replident, uint16_t natts,
				   const chg_column *columns)
{
	uint16_t	i;

	CHG_ASSERT(chg_replident_valid(replident));
	CHG_ASSERT(natts <= CHG_MAX_COLUMNS);
	CHG_ASSERT(natts == 0 || columns != NULL);

	chg_put_u8(w, CHG_RELATION);
	chg_put_u32(w, relid);
	chg_put_str(w, nspname);
	chg_put_str(w, relname);
	chg_put_u8(w, replident);
	chg_put_u16(w, natts);
	for (i = 0; i < natts; i++)
	{
		chg_put_str(w, columns[i].name);
		chg_put_u32(w, columns[i].typid);
		chg_put_i32(w, columns[i].typmod);
		chg_put_u8(w, columns[i].is_key ? CHG_COLUMN_KEY : 0);
	}
}

void
chg_write_insert(chg_writer *w, uint32_t relid, const chg_tuple *new_tuple)
{
	chg_put_u8(w, CHG_INSERT);
	chg_put_u32(w, relid);
	chg_put_tuple(w, new_tuple);
}

/* Writes an update; old_tuple is not looked at when old_kind is '-'. */
void
chg_write_update(chg_writer *w, uint32_t relid, uint8_t old_kind,
				 const chg_tuple *old_tuple, const chg_tuple *new_tuple)
{
	CHG_ASSERT(chg_update_old_kind_valid(old_kind));

	chg_put_u8(w, CHG_UPDATE);
	chg_put_u32(w, relid);
	chg_put_u8(w, old_kind);
	if (old_kind != '-')
		chg_put_tuple(w, old_tuple);
	chg_put_tuple(w, new_tuple);
}

void
chg_write_delete(chg_writer *w, uint32_t relid, uint8_t old_kind,
				 const chg_tuple *old_tuple)
{
	CHG_ASSERT(chg_delete_old_kind_valid(old_kind));

	chg_put_u8(w, CHG_DELETE);
	chg_put_u32(w, relid);
	chg_put_u8(w, old_kind);
	if (old_kind != '-')
		chg_put_tuple(w, old_tuple);
}

void
chg_write_truncate(chg_writer *w, uint8_t flags, uint32_t nrels,
				   const uint32_t *relids)
{
	uint32_t	i;

	CHG_ASSERT((flags & ~CHG_TRUNCATE_FLAGS_ALL) == 0);
	CHG_ASSERT(nrels <= CHG_MAX_TRUNCATE_RELS);
	CHG_ASSERT(nrels == 0 || relids != NULL);

	chg_put_u8(w, CHG_TRUNCATE);
	chg_put_u8(w, flags);
	chg_put_u32(w, nrels);
	for (i = 0; i < nrels; i++)
		chg_put_u32(w, relids[i]);
}

void
chg_write_commit(chg_writer *w, uint64_t commit_lsn, uint64_t end_lsn,
				 int64_t commit_time)
{
	chg_put_u8(w, CHG_COMMIT);
	chg_put_u64(w, commit_lsn);
	chg_put_u64(w, end_lsn);
	chg_put_i64(w, commit_time);
}

/* Writes a schema change: one statement, who ran it, and its settings. */
void
chg_write_ddl(chg_writer *w, chg_str role, uint16_t nsettings,
			  const chg_setting *settings, chg_text statement,
			  uint16_t nmissing, const chg_missing *missing)
{
	uint16_t	i;

	CHG_ASSERT(nsettings <= CHG_MAX_SETTINGS);
	CHG_ASSERT(nsettings == 0 || settings != NULL);
	CHG_ASSERT(nmissing <= CHG_MAX_MISSING);
	CHG_ASSERT(nmissing == 0 || missing != NULL);

	chg_put_u8(w, CHG_DDL);
	chg_put_str(w, role);
	chg_put_u16(w, nsettings);
	for (i = 0; i < nsettings; i++)
	{
		chg_put_str(w, settings[i].name);
		chg_put_text(w, settings[i].value);
	}
	chg_put_text(w, statement);
	chg_put_u16(w, nmissing);
	for (i = 0; i < nmissing; i++)
	{
		chg_put_str(w, missing[i].nspname);
		chg_put_str(w, missing[i].relname);
		chg_put_str(w, missing[i].column);
		chg_put_text(w, missing[i].value);
	}
}

/* Writes a sequence's position (see changes.h for what flags mean). */
void
chg_write_sequence(chg_writer *w, chg_str nspname, chg_str relname,
				   int64_t value, uint8_t flags)
{
	CHG_ASSERT((flags & ~CHG_SEQUENCE_FLAGS_ALL) == 0);

	chg_put_u8(w, CHG_SEQUENCE);
	chg_put_str(w, nspname);
	chg_put_str(w, relname);
	chg_put_i64(w, value);
	chg_put_u8(w, flags);
}

void
chg_write_stream_start(chg_writer *w, uint32_t xid, bool first_block)
{
	chg_put_u8(w, CHG_STREAM_START);
	chg_put_u32(w, xid);
	chg_put_u8(w, first_block ? 1 : 0);
}

void
chg_write_subtransaction(chg_writer *w, uint32_t subxid)
{
	chg_put_u8(w, CHG_SUBTRANSACTION);
	chg_put_u32(w, subxid);
}

void
chg_write_stream_stop(chg_writer *w)
{
	chg_put_u8(w, CHG_STREAM_STOP);
}

void
chg_write_stream_abort(chg_writer *w, uint32_t xid, uint32_t subxid)
{
	chg_put_u8(w, CHG_STREAM_ABORT);
	chg_put_u32(w, xid);
	chg_put_u32(w, subxid);
}

void
chg_write_stream_commit(chg_writer *w, uint32_t xid, uint64_t commit_lsn,
						uint64_t end_lsn, int64_t commit_time)
{
	chg_put_u8(w, CHG_STREAM_COMMIT);
	chg_put_u32(w, xid);
	chg_put_u64(w, commit_lsn);
	chg_put_u64(w, end_lsn);
	chg_put_i64(w, commit_time);
}

/* ----------------------------------------------------------------------
 * Reader
 *
 * Each chg_get_* function checks that its bytes remain, then reads them
 * and advances the cursor; on CHG_ERR_TRUNCATED the cursor is unchanged.
 * ----------------------------------------------------------------------
 */

static uint32_t
chg_load_u32(const uint8_t *p)
{
	return (uint32_t) p[0] |
		((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) |
		((uint32_t) p[3] << 24);
}

static size_t
chg_remaining(const chg_cursor *c)
{
	return c->len - c->off;
}

/* Hands out a pointer to the next n bytes. */
static int
chg_get_bytes(chg_cursor *c, size_t n, const uint8_t **p)
{
	if (n > chg_remaining(c))
		return CHG_ERR_TRUNCATED;
	*p = c->buf + c->off;
	c->off += n;
	return CHG_OK;
}

static int
chg_get_u8(chg_cursor *c, uint8_t *v)
{
	if (chg_remaining(c) < 1)
		return CHG_ERR_TRUNCATED;
	*v = c->buf[c->off];
	c->off += 1;
	return CHG_OK;
}

static int
chg_get_u16(chg_cursor *c, uint16_t *v)
{
	const uint8_t *p;

	if (chg_remaining(c) < 2)
		return CHG_ERR_TRUNCATED;
	p = c->buf + c->off;
	*v = (uint16_t) (p[0] | (p[1] << 8));
	c->off += 2;
	return CHG_OK;
}

static int
chg_get_u32(chg_cursor *c, uint32_t *v)
{
	if (chg_remaining(c) < 4)
		return CHG_ERR_TRUNCATED;
	*v = chg_load_u32(c->buf + c->off);
	c->off += 4;
	return CHG_OK;
}

static int
chg_get_u64(chg_cursor *c, uint64_t *v)
{
	const uint8_t *p;

	if (chg_remaining(c) < 8)
		return CHG_ERR_TRUNCATED;
	p = c->buf + c->off;
	*v = (uint64_t) chg_load_u32(p) | ((uint64_t) chg_load_u32(p + 4) << 32);
	c->off += 8;
	return CHG_OK;
}

/*
 * Signed integers: converting an out-of-range unsigned value to a signed
 * type is implementation-defined in C99, so the two's complement pattern
 * is turned back into a negative number by hand.
 */
static int
chg_get_i32(chg_cursor *c, int32_t *v)
{
	uint32_t	u;
	int			rc;

	rc = chg_get_u32(c, &u);
	if (rc != CHG_OK)
		return rc;
	if (u <= (uint32_t) INT32_MAX)
		*v = (int32_t) u;
	else
		*v = -(int32_t) (UINT32_MAX - u) - 1;
	return CHG_OK;
}

static int
chg_get_i64(chg_cursor *c, int64_t *v)
{
	uint64_t	u;
	int			rc;

	rc = chg_get_u64(c, &u);
	if (rc != CHG_OK)
		return rc;
	if (u <= (uint64_t) INT64_MAX)
		*v = (int64_t) u;
	else
		*v = -(int64_t) (UINT64_MAX - u) - 1;
	return CHG_OK;
}

/* Reads the len characters of a string, at most max, with no NUL inside. */
static int
chg_get_chars(chg_cursor *c, uint32_t len, uint32_t max, const char **data)
{
	const uint8_t *p;
	int			rc;

	if (len > max)
		return CHG_ERR_FIELD;
	rc = chg_get_bytes(c, len, &p);
	if (rc != CHG_OK)
		return rc;
	if (memchr(p, '\0', len) != NULL)
		return CHG_ERR_FIELD;
	*data = (const char *) p;
	return CHG_OK;
}

/* Reads a name: at most CHG_MAX_NAME_BYTES, no NUL inside. */
static int
chg_get_str(chg_cursor *c, chg_str *s)
{
	uint16_t	len;
	int			rc;

	rc = chg_get_u16(c, &len);
	if (rc == CHG_OK)
		rc = chg_get_chars(c, len, CHG_MAX_NAME_BYTES, &s->data);
	if (rc == CHG_OK)
		s->len = len;
	return rc;
}

/* Reads a long string: at most CHG_MAX_VALUE_BYTES, no NUL inside. */
static int
chg_get_text(chg_cursor *c, chg_text *t)
{
	uint32_t	len;
	int			rc;

	rc = chg_get_u32(c, &len);
	if (rc == CHG_OK)
		rc = chg_get_chars(c, len, CHG_MAX_VALUE_BYTES, &t->data);
	if (rc == CHG_OK)
		t->len = len;
	return rc;
}

/*
 * Reads a tuple into values, an array of cap elements (NULL holds none).
 * On success t->values is values, even for a tuple of no columns.
 */
static int
chg_get_tuple(chg_cursor *c, chg_value *values, uint16_t cap, chg_tuple *t)
{
	uint16_t	natts;
	uint16_t	i;
	int			rc;

	rc = chg_get_u16(c, &natts);
	if (rc != CHG_OK)
		return rc;
	if (natts > CHG_MAX_COLUMNS)
		return CHG_ERR_TOO_MANY;
	if (values == NULL)
		cap = 0;
	if (natts > cap)
		return CHG_ERR_CAPACITY;

	for (i = 0; i < natts; i++)
	{
		chg_value  *v = &values[i];
		uint32_t	len;
		const uint8_t *p;

		rc = chg_get_u8(c, &v->kind);
		if (rc != CHG_OK)
			return rc;
		if (!chg_value_kind_valid(v->kind))
			return CHG_ERR_FIELD;
		v->len = 0;
		v->data = NULL;
		if (v->kind == 'n' || v->kind == 'u')
			continue;

		rc = chg_get_u32(c, &len);
		if (rc != CHG_OK)
			return rc;
		if (len > CHG_MAX_VALUE_BYTES)
			return CHG_ERR_FIELD;
		rc = chg_get_bytes(c, len, &p);
		if (rc != CHG_OK)
			return rc;
		/* a type's text output is a C string: see NOTES */
		if (v->kind == 't' && memchr(p, '\0', len) != NULL)
			return CHG_ERR_FIELD;
		v->len = len;
		v->data = p;
	}
	t->natts = natts;
	t->values = values;
	return CHG_OK;
}

static int
chg_read_version(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u8(c, &m->version);
	if (rc != CHG_OK)
		return rc;
	if (m->version != RAFT_CHANGES_VERSION)
		return CHG_ERR_VERSION;
	return CHG_OK;
}

static int
chg_read_begin(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->xid);
	if (rc == CHG_OK)
		rc = chg_get_u64(c, &m->lsn);
	if (rc == CHG_OK)
		rc = chg_get_i64(c, &m->commit_time);
	return rc;
}

static int
chg_read_commit(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u64(c, &m->lsn);
	if (rc == CHG_OK)
		rc = chg_get_u64(c, &m->end_lsn);
	if (rc == CHG_OK)
		rc = chg_get_i64(c, &m->commit_time);
	return rc;
}

static int
chg_read_relation(chg_cursor *c, const chg_arrays *arrays, chg_message *m)
{
	chg_column *columns = arrays != NULL ? arrays->columns : NULL;
	uint16_t	cap = columns != NULL ? arrays->cap : 0;
	uint16_t	i;
	int			rc;

	rc = chg_get_u32(c, &m->relid);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_str(c, &m->nspname);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_str(c, &m->relname);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_u8(c, &m->replident);
	if (rc != CHG_OK)
		return rc;
	if (!chg_replident_valid(m->replident))
		return CHG_ERR_FIELD;

	rc = chg_get_u16(c, &m->natts);
	if (rc != CHG_OK)
		return rc;
	if (m->natts > CHG_MAX_COLUMNS)
		return CHG_ERR_TOO_MANY;
	if (m->natts > cap)
		return CHG_ERR_CAPACITY;

	for (i = 0; i < m->natts; i++)
	{
		chg_column *col = &columns[i];
		uint8_t		flags;

		rc = chg_get_str(c, &col->name);
		if (rc != CHG_OK)
			return rc;
		rc = chg_get_u32(c, &col->typid);
		if (rc != CHG_OK)
			return rc;
		rc = chg_get_i32(c, &col->typmod);
		if (rc != CHG_OK)
			return rc;
		rc = chg_get_u8(c, &flags);
		if (rc != CHG_OK)
			return rc;
		/* undefined bits would not survive a re-encoding */
		if ((flags & ~CHG_COLUMN_FLAGS_ALL) != 0)
			return CHG_ERR_FIELD;
		col->is_key = (flags & CHG_COLUMN_KEY) != 0;
	}
	m->columns = columns;
	return CHG_OK;
}

static int
chg_read_insert(chg_cursor *c, const chg_arrays *arrays, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->relid);
	if (rc != CHG_OK)
		return rc;
	return chg_get_tuple(c, arrays != NULL ? arrays->new_values : NULL,
						 arrays != NULL ? arrays->cap : 0, &m->new_tuple);
}

static int
chg_read_update(chg_cursor *c, const chg_arrays *arrays, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->relid);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_u8(c, &m->old_kind);
	if (rc != CHG_OK)
		return rc;
	if (!chg_update_old_kind_valid(m->old_kind))
		return CHG_ERR_FIELD;
	if (m->old_kind != '-')
	{
		rc = chg_get_tuple(c, arrays != NULL ? arrays->old_values : NULL,
						   arrays != NULL ? arrays->cap : 0, &m->old_tuple);
		if (rc != CHG_OK)
			return rc;
	}
	return chg_get_tuple(c, arrays != NULL ? arrays->new_values : NULL,
						 arrays != NULL ? arrays->cap : 0, &m->new_tuple);
}

static int
chg_read_delete(chg_cursor *c, const chg_arrays *arrays, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->relid);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_u8(c, &m->old_kind);
	if (rc != CHG_OK)
		return rc;
	if (!chg_delete_old_kind_valid(m->old_kind))
		return CHG_ERR_FIELD;
	if (m->old_kind == '-')
		return CHG_OK;
	return chg_get_tuple(c, arrays != NULL ? arrays->old_values : NULL,
						 arrays != NULL ? arrays->cap : 0, &m->old_tuple);
}

static int
chg_read_truncate(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u8(c, &m->truncate_flags);
	if (rc != CHG_OK)
		return rc;
	if ((m->truncate_flags & ~CHG_TRUNCATE_FLAGS_ALL) != 0)
		return CHG_ERR_FIELD;
	rc = chg_get_u32(c, &m->nrels);
	if (rc != CHG_OK)
		return rc;
	if (m->nrels > CHG_MAX_TRUNCATE_RELS)
		return CHG_ERR_TOO_MANY;
	/* cannot overflow: nrels is at most CHG_MAX_TRUNCATE_RELS */
	return chg_get_bytes(c, (size_t) m->nrels * CHG_RELID_BYTES, &m->relids);
}

/*
 * Reads a ddl message.  The settings and missing values stay in the
 * buffer, read through chg_ddl_setting() and chg_ddl_missing(), so that
 * their number needs no array of the caller's.
 */
static int
chg_read_ddl(chg_cursor *c, chg_message *m)
{
	uint16_t	i;
	size_t		start;
	int			rc;

	rc = chg_get_str(c, &m->role);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_u16(c, &m->nsettings);
	if (rc != CHG_OK)
		return rc;
	if (m->nsettings > CHG_MAX_SETTINGS)
		return CHG_ERR_TOO_MANY;
	m->settings = c->buf + c->off;
	for (i = 0; i < m->nsettings; i++)
	{
		chg_setting s;

		rc = chg_get_str(c, &s.name);
		if (rc != CHG_OK)
			return rc;
		rc = chg_get_text(c, &s.value);
		if (rc != CHG_OK)
			return rc;
	}
	rc = chg_get_text(c, &m->statement);
	if (rc != CHG_OK)
		return rc;
	rc = chg_get_u16(c, &m->nmissing);
	if (rc != CHG_OK)
		return rc;
	if (m->nmissing > CHG_MAX_MISSING)
		return CHG_ERR_TOO_MANY;
	m->missing = c->buf + c->off;
	start = c->off;
	for (i = 0; i < m->nmissing; i++)
	{
		chg_missing v;

		rc = chg_get_str(c, &v.nspname);
		if (rc == CHG_OK)
			rc = chg_get_str(c, &v.relname);
		if (rc == CHG_OK)
			rc = chg_get_str(c, &v.column);
		if (rc == CHG_OK)
			rc = chg_get_text(c, &v.value);
		if (rc != CHG_OK)
			return rc;
	}
	m->missing_bytes = c->off - start;
	return CHG_OK;
}

static int
chg_read_sequence(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_str(c, &m->nspname);
	if (rc == CHG_OK)
		rc = chg_get_str(c, &m->relname);
	if (rc == CHG_OK)
		rc = chg_get_i64(c, &m->value);
	if (rc == CHG_OK)
		rc = chg_get_u8(c, &m->sequence_flags);
	if (rc == CHG_OK && (m->sequence_flags & ~CHG_SEQUENCE_FLAGS_ALL) != 0)
		rc = CHG_ERR_FIELD;
	return rc;
}

static int
chg_read_stream_start(chg_cursor *c, chg_message *m)
{
	uint8_t		first;
	int			rc;

	rc = chg_get_u32(c, &m->xid);
	if (rc == CHG_OK)
		rc = chg_get_u8(c, &first);
	if (rc == CHG_OK && (first > 1 || m->xid == 0))
		rc = CHG_ERR_FIELD;
	if (rc == CHG_OK)
		m->first_block = first == 1;
	return rc;
}

static int
chg_read_stream_abort(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->xid);
	if (rc == CHG_OK)
		rc = chg_get_u32(c, &m->subxid);
	if (rc == CHG_OK && (m->xid == 0 || m->subxid == 0))
		rc = CHG_ERR_FIELD;
	return rc;
}

static int
chg_read_subtransaction(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->subxid);
	if (rc == CHG_OK && m->subxid == 0)
		rc = CHG_ERR_FIELD;
	return rc;
}

static int
chg_read_stream_commit(chg_cursor *c, chg_message *m)
{
	int			rc;

	rc = chg_get_u32(c, &m->xid);
	if (rc == CHG_OK && m->xid == 0)
		rc = CHG_ERR_FIELD;
	if (rc == CHG_OK)
		rc = chg_read_commit(c, m);
	return rc;
}

/*
 * Reads the message at buf; see NOTES for the checks and their order.
 *
 * On success *msg describes the message: fields that its kind does not
 * carry are zero, and its pointers refer to buf and to the arrays (a
 * relation's columns to arrays->columns, an old tuple's values to
 * arrays->old_values, a new tuple's to arrays->new_values).  On failure
 * *msg is left untouched, though the arrays may have been written, and
 * *consumed is 0.  arrays may be NULL to read messages without columns.
 */
int
chg_read(const uint8_t *buf, size_t len, const chg_arrays *arrays,
		 chg_message *msg, size_t *consumed)
{
	chg_cursor	c;
	chg_message m;
	int			rc;

	CHG_ASSERT(buf != NULL || len == 0);
	CHG_ASSERT(msg != NULL && consumed != NULL);

	*consumed = 0;
	c.buf = buf;
	c.len = len;
	c.off = 0;
	memset(&m, 0, sizeof(m));

	rc = chg_get_u8(&c, &m.kind);
	if (rc != CHG_OK)
		return rc;
	switch (m.kind)
	{
		case CHG_VERSION:
			rc = chg_read_version(&c, &m);
			break;
		case CHG_BEGIN:
			rc = chg_read_begin(&c, &m);
			break;
		case CHG_RELATION:
			rc = chg_read_relation(&c, arrays, &m);
			break;
		case CHG_INSERT:
			rc = chg_read_insert(&c, arrays, &m);
			break;
		case CHG_UPDATE:
			rc = chg_read_update(&c, arrays, &m);
			break;
		case CHG_DELETE:
			rc = chg_read_delete(&c, arrays, &m);
			break;
		case CHG_TRUNCATE:
			rc = chg_read_truncate(&c, &m);
			break;
		case CHG_COMMIT:
			rc = chg_read_commit(&c, &m);
			break;
		case CHG_DDL:
			rc = chg_read_ddl(&c, &m);
			break;
		case CHG_SEQUENCE:
			rc = chg_read_sequence(&c, &m);
			break;
		case CHG_STREAM_START:
			rc = chg_read_stream_start(&c, &m);
			break;
		case CHG_SUBTRANSACTION:
			rc = chg_read_subtransaction(&c, &m);
			break;
		case CHG_STREAM_STOP:
			break;
		case CHG_STREAM_ABORT:
			rc = chg_read_stream_abort(&c, &m);
			break;
		case CHG_STREAM_COMMIT:
			rc = chg_read_stream_commit(&c, &m);
			break;
		default:
			return CHG_ERR_KIND;
	}
	if (rc != CHG_OK)
		return rc;

	CHG_ASSERT(c.off > 0 && c.off <= len);
	*msg = m;
	*consumed = c.off;
	return CHG_OK;
}

/*
 * Returns relid number i of a truncate message.  The caller must pass
 * i < msg->nrels; the relids stay in the buffer because they need not be
 * aligned.
 */
uint32_t
chg_truncate_relid(const chg_message *msg, uint32_t i)
{
	CHG_ASSERT(msg->kind == CHG_TRUNCATE);
	CHG_ASSERT(i < msg->nrels);
	return chg_load_u32(msg->relids + (size_t) i * CHG_RELID_BYTES);
}

/*
 * Returns setting number i of a ddl message.  The caller must pass
 * i < msg->nsettings; the reader checked every setting, so walking over
 * the ones before it stays within the message.
 */
chg_setting
chg_ddl_setting(const chg_message *msg, uint16_t i)
{
	chg_cursor	c;
	chg_setting s;
	uint16_t	k;

	CHG_ASSERT(msg->kind == CHG_DDL);
	CHG_ASSERT(i < msg->nsettings);
	c.buf = msg->settings;
	c.len = (size_t) ((const uint8_t *) msg->statement.data - msg->settings);
	c.off = 0;
	for (k = 0; k <= i; k++)
	{
		int			rc = chg_get_str(&c, &s.name);

		if (rc == CHG_OK)
			rc = chg_get_text(&c, &s.value);
		CHG_ASSERT(rc == CHG_OK);
		(void) rc;
	}
	return s;
}

/*
 * Returns missing value number i of a ddl message (i < msg->nmissing);
 * like chg_ddl_setting, it walks over entries the reader checked.
 */
chg_missing
chg_ddl_missing(const chg_message *msg, uint16_t i)
{
	chg_cursor	c;
	chg_missing v;
	uint16_t	k;

	CHG_ASSERT(msg->kind == CHG_DDL);
	CHG_ASSERT(i < msg->nmissing);
	c.buf = msg->missing;
	c.len = msg->missing_bytes;
	c.off = 0;
	for (k = 0; k <= i; k++)
	{
		int			rc = chg_get_str(&c, &v.nspname);

		if (rc == CHG_OK)
			rc = chg_get_str(&c, &v.relname);
		if (rc == CHG_OK)
			rc = chg_get_str(&c, &v.column);
		if (rc == CHG_OK)
			rc = chg_get_text(&c, &v.value);
		CHG_ASSERT(rc == CHG_OK);
		(void) rc;
	}
	return v;
}

/* ----------------------------------------------------------------------
 * The header of a data entry
 * ----------------------------------------------------------------------
 */

#define CHG_ENTRY_FLAGS_ALL (CHG_ENTRY_FIRST | CHG_ENTRY_LAST | CHG_ENTRY_STREAM)

int
chg_entry_header_read(const uint8_t *buf, size_t len, chg_entry_header *header)
{
	chg_cursor	c;
	uint8_t		magic;
	chg_entry_header h;
	int			rc;

	CHG_ASSERT(buf != NULL || len == 0);
	c.buf = buf;
	c.len = len;
	c.off = 0;
	rc = chg_get_u8(&c, &magic);
	if (rc != CHG_OK)
		return rc;
	if (magic != CHG_ENTRY_MAGIC)
		return CHG_ERR_KIND;
	rc = chg_get_u8(&c, &h.flags);
	if (rc == CHG_OK)
		rc = chg_get_u32(&c, &h.origin);
	if (rc == CHG_OK)
		rc = chg_get_u64(&c, &h.final_lsn);
	if (rc != CHG_OK)
		return rc;
	if ((h.flags & ~CHG_ENTRY_FLAGS_ALL) != 0 || h.origin == 0)
		return CHG_ERR_FIELD;
	h.xid = 0;
	if (h.flags & CHG_ENTRY_STREAM)
	{
		/* the u64 names the transaction; its commit is its last entry */
		if (h.final_lsn == 0 || h.final_lsn > UINT32_MAX ||
			((h.flags & CHG_ENTRY_LAST) && !(h.flags & CHG_ENTRY_FIRST)))
			return CHG_ERR_FIELD;
		h.xid = (uint32_t) h.final_lsn;
		h.final_lsn = 0;
	}
	CHG_ASSERT(c.off == CHG_ENTRY_HEADER_BYTES);
	*header = h;
	return CHG_OK;
}

/* The header goes into a fixed buffer: append to it at a running offset. */
typedef struct chg_fixed_buffer
{
	uint8_t    *buf;
	size_t		off;
} chg_fixed_buffer;

static void
chg_append_fixed(void *arg, const void *data, size_t len)
{
	chg_fixed_buffer *fb = arg;

	memcpy(fb->buf + fb->off, data, len);
	fb->off += len;
}

void
chg_entry_header_write(uint8_t *buf, const chg_entry_header *header)
{
	chg_fixed_buffer fb;
	chg_writer	w;

	CHG_ASSERT((header->flags & ~CHG_ENTRY_FLAGS_ALL) == 0);
	CHG_ASSERT(header->origin != 0);
	CHG_ASSERT(!(header->flags & CHG_ENTRY_STREAM) || header->xid != 0);
	fb.buf = buf;
	fb.off = 0;
	w.append = chg_append_fixed;
	w.arg = &fb;
	chg_put_u8(&w, CHG_ENTRY_MAGIC);
	chg_put_u8(&w, header->flags);
	chg_put_u32(&w, header->origin);
	chg_put_u64(&w, (header->flags & CHG_ENTRY_STREAM) ? header->xid : header->final_lsn);
	CHG_ASSERT(fb.off == CHG_ENTRY_HEADER_BYTES);
}
