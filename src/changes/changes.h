/*-------------------------------------------------------------------------
 *
 * changes.h
 *	  The encoding of replicated transactions inside Raft entries.
 *
 * The leader's logical decoding output plugin (decoder.c) writes it; the
 * followers' apply worker reads it; raft.decode_changes() prints it.  Like
 * the consensus core, this code has no PostgreSQL includes, so that the
 * reader can be fuzzed on its own: everything it reads may be damaged.
 *
 * A stream is a sequence of messages.  Each starts with a one-byte kind
 * and is self-delimiting; integers are little-endian.
 *
 *	'V' version		u8 version (RAFT_CHANGES_VERSION); first in every entry
 *	'B' begin		u32 xid, u64 final_lsn, i64 commit_time
 *	'R' relation	u32 relid, str nspname, str relname, u8 replident,
 *					u16 natts, natts x (str name, u32 typid, i32 typmod,
 *					u8 flags: 1 = part of the replica identity key)
 *	'I' insert		u32 relid, tuple new
 *	'U' update		u32 relid, u8 old_kind ('-' none, 'K' key, 'O' whole
 *					old row), [tuple old], tuple new
 *	'D' delete		u32 relid, u8 old_kind ('K' key, 'O' whole old row, or
 *					'-' row not known), [tuple old]: '-' only where a
 *					slot is read with SQL, never in the log (decoder.c)
 *	'T' truncate	u8 flags (1 cascade, 2 restart identity), u32 nrels,
 *					nrels x u32 relid
 *	'C' commit		u64 commit_lsn, u64 end_lsn, i64 commit_time
 *	'X' ddl			str role, u16 nsettings, nsettings x (str name, text
 *					value), text statement, u16 nmissing, nmissing x (str
 *					nspname, str relname, str column, text value): a schema
 *					change to run where it stands in the transaction, as
 *					role, with those settings; then each column it added
 *					holds, in the rows that were there, the value (an array
 *					literal, as pg_attribute.attmissingval) that the leader
 *					computed (see ddl.c)
 *	'S' sequence	str nspname, str relname, i64 value, u8 flags (1 =
 *					is_called, 2 = exact): with exact, the sequence is set
 *					to value as setval() does; without, values up to value
 *					may have been handed out, so the next one must lie
 *					beyond it (see sequences.c)
 *
 *
 * A transaction too large for logical_decoding_work_mem may be streamed
 * while it runs, in blocks of its changes (and those of its
 * subtransactions), interleaved with other transactions' blocks and
 * commits; it commits or aborts later:
 *
 *	'b' stream start	u32 xid, u8 first (1 = its first block since decoding
 *					began: anything kept of xid before is dropped)
 *	'x' subtransaction	u32 subxid: the changes that follow in this block
 *					belong to subxid (xid itself, or a subtransaction)
 *	'e' stream stop		(no fields): the block ends
 *	'a' stream abort	u32 xid, u32 subxid: subxid == xid aborts the whole
 *					transaction; otherwise the subtransaction, with the
 *					changes from its first one on
 *	'c' stream commit	u32 xid, u64 commit_lsn, u64 end_lsn, i64
 *					commit_time: apply every block of xid kept, in order
 *
 * Transaction ids in these messages are never 0.
 *
 *	str				u16 length, bytes (no terminator)
 *	text			u32 length, bytes (no terminator, no NUL)
 *	tuple			u16 natts, natts x column
 *	column			u8 kind ('n' null, 'u' unchanged TOASTed value,
 *					't' text output, 'b' binary send output), and for 't'
 *					and 'b': u32 length, bytes
 *
 * Relations are described once per transaction, before their first
 * change; relid is the leader's OID and only names the description within
 * the stream.  Timestamps are PostgreSQL's (microseconds since 2000-01-01).
 *
 * In the Raft log, a transaction's stream travels in one or more data
 * entries (RAFT_ENTRY_NORMAL).  Each starts with a header
 *
 *	'E' entry		u8 flags (1 = first piece of the transaction, 2 = last,
 *					4 = streamed),
 *					u32 origin (the node id of the leader that decoded it),
 *					u64 final_lsn (the transaction's commit record there)
 *
 * and goes on with the next bytes of the stream.  Pieces are cut at any
 * byte, so a message may continue in the next entry; the reader joins
 * them.  A transaction's pieces are consecutive data entries of one term.
 *
 * A streamed transaction's entries carry flag 4 (streamed), and the u64
 * holds its xid instead of a final_lsn, which is not known before it
 * commits.  They interleave with other transactions' entries.  Flag 1
 * says that the piece begins with whole stream messages ('V', then 'b',
 * 'x', 'a' or 'c'): a block's start, a change of subtransaction, an abort
 * or the commit, each of which begins an entry.  The stream commit is an
 * entry of its own, flagged 1 and 2 (first and last): it stands for the
 * transaction, in commit order.  The other bytes of the blocks are cut as
 * above.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_CHANGES_H
#define PG_RAFT_CHANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_CHANGES_VERSION 1

/* Bounds the reader enforces (PostgreSQL's own limits). */
#define CHG_MAX_COLUMNS 1664
#define CHG_MAX_NAME_BYTES 63
#define CHG_MAX_TRUNCATE_RELS 65535
#define CHG_MAX_VALUE_BYTES (1024u * 1024u * 1024u)
#define CHG_MAX_SETTINGS 64
#define CHG_MAX_MISSING 1600

typedef enum chg_kind
{
	CHG_VERSION = 'V',
	CHG_BEGIN = 'B',
	CHG_RELATION = 'R',
	CHG_INSERT = 'I',
	CHG_UPDATE = 'U',
	CHG_DELETE = 'D',
	CHG_TRUNCATE = 'T',
	CHG_COMMIT = 'C',
	CHG_DDL = 'X',
	CHG_SEQUENCE = 'S',
	CHG_STREAM_START = 'b',
	CHG_SUBTRANSACTION = 'x',
	CHG_STREAM_STOP = 'e',
	CHG_STREAM_ABORT = 'a',
	CHG_STREAM_COMMIT = 'c'
} chg_kind;

/* Bits of a sequence message's flags byte. */
#define CHG_SEQUENCE_IS_CALLED	0x01
#define CHG_SEQUENCE_EXACT		0x02

typedef enum chg_rc
{
	CHG_OK = 0,
	CHG_ERR_TRUNCATED = -1,		/* the buffer ends inside a message */
	CHG_ERR_KIND = -2,			/* unknown message kind */
	CHG_ERR_VERSION = -3,		/* unsupported version */
	CHG_ERR_FIELD = -4,			/* a field has an impossible value */
	CHG_ERR_TOO_MANY = -5,		/* more columns, relations or settings than
								 * allowed */
	CHG_ERR_CAPACITY = -6		/* the caller's column array is too small */
} chg_rc;

extern const char *chg_strerror(int rc);

/* A string inside the buffer: not NUL-terminated. */
typedef struct chg_str
{
	const char *data;
	uint16_t	len;
} chg_str;

/* A long string inside the buffer (a statement, a setting's value). */
typedef struct chg_text
{
	const char *data;
	uint32_t	len;
} chg_text;

/* A setting a schema change runs with. */
typedef struct chg_setting
{
	chg_str		name;
	chg_text	value;
} chg_setting;

/* The value a column added by a schema change holds in existing rows. */
typedef struct chg_missing
{
	chg_str		nspname;
	chg_str		relname;
	chg_str		column;
	chg_text	value;
} chg_missing;

typedef struct chg_value
{
	uint8_t		kind;			/* 'n', 'u', 't' or 'b' */
	uint32_t	len;
	const uint8_t *data;		/* into the buffer; NULL for 'n' and 'u' */
} chg_value;

typedef struct chg_tuple
{
	uint16_t	natts;
	chg_value  *values;			/* caller's array when reading */
} chg_tuple;

typedef struct chg_column
{
	chg_str		name;
	uint32_t	typid;
	int32_t		typmod;
	bool		is_key;
} chg_column;

/* One decoded message; pointers refer to the buffer and caller arrays. */
typedef struct chg_message
{
	uint8_t		kind;
	uint8_t		version;
	uint32_t	xid;			/* begin and the stream messages */
	uint32_t	subxid;			/* subtransaction, stream abort */
	bool		first_block;	/* stream start */
	uint64_t	lsn;			/* final_lsn (begin) or commit_lsn (commits) */
	uint64_t	end_lsn;
	int64_t		commit_time;
	uint32_t	relid;
	chg_str		nspname;
	chg_str		relname;
	uint8_t		replident;
	uint16_t	natts;
	chg_column *columns;
	uint8_t		old_kind;		/* '-', 'K' or 'O' */
	chg_tuple	old_tuple;
	chg_tuple	new_tuple;
	uint8_t		truncate_flags;
	uint32_t	nrels;
	const uint8_t *relids;		/* nrels little-endian u32, in the buffer */
	chg_str		role;			/* ddl: who ran it */
	uint16_t	nsettings;
	const uint8_t *settings;	/* ddl: nsettings settings, in the buffer */
	chg_text	statement;		/* ddl: one SQL statement */
	uint16_t	nmissing;
	const uint8_t *missing;		/* ddl: nmissing values, in the buffer, */
	size_t		missing_bytes;	/* ... of this length */
	int64_t		value;			/* sequence */
	uint8_t		sequence_flags;
} chg_message;

/*
 * Space the reader may use for one message: columns of a relation, values
 * of the old and the new tuple.  Each array holds cap elements.
 */
typedef struct chg_arrays
{
	chg_column *columns;
	chg_value  *old_values;
	chg_value  *new_values;
	uint16_t	cap;
} chg_arrays;

/*
 * Reads the message at buf (len bytes available).  On success sets
 * *consumed to its size.  Never reads past buf + len, never crashes on bad
 * input, and returns a negative chg_rc for anything malformed.
 */
extern int	chg_read(const uint8_t *buf, size_t len, const chg_arrays *arrays,
					 chg_message *msg, size_t *consumed);

/* The header of a data entry. */
#define CHG_ENTRY_MAGIC 'E'
#define CHG_ENTRY_FIRST 0x01
#define CHG_ENTRY_LAST 0x02
#define CHG_ENTRY_STREAM 0x04
#define CHG_ENTRY_HEADER_BYTES 14

typedef struct chg_entry_header
{
	uint8_t		flags;
	uint32_t	origin;
	uint64_t	final_lsn;		/* 0 in a streamed transaction's entries */
	uint32_t	xid;			/* only in a streamed transaction's entries */
} chg_entry_header;

/*
 * Reads the header of a data entry of len bytes; on success the stream's
 * piece follows at buf + CHG_ENTRY_HEADER_BYTES.
 */
extern int	chg_entry_header_read(const uint8_t *buf, size_t len,
								  chg_entry_header *header);
/* Writes a header into buf, which has room for CHG_ENTRY_HEADER_BYTES. */
extern void chg_entry_header_write(uint8_t *buf, const chg_entry_header *header);

/* Reads the u32 relid number i of a truncate message. */
extern uint32_t chg_truncate_relid(const chg_message *msg, uint32_t i);

/* Read setting number i, and missing value number i, of a ddl message. */
extern chg_setting chg_ddl_setting(const chg_message *msg, uint16_t i);
extern chg_missing chg_ddl_missing(const chg_message *msg, uint16_t i);

/*
 * Writing: the caller supplies an append callback (a StringInfo in the
 * server).  The writer only formats; it checks nothing the server already
 * guarantees.
 */
typedef void (*chg_append_fn) (void *arg, const void *data, size_t len);

typedef struct chg_writer
{
	chg_append_fn append;
	void	   *arg;
} chg_writer;

extern void chg_write_version(chg_writer *w);
extern void chg_write_begin(chg_writer *w, uint32_t xid, uint64_t final_lsn,
							int64_t commit_time);
extern void chg_write_relation(chg_writer *w, uint32_t relid,
							   chg_str nspname, chg_str relname,
							   uint8_t replident, uint16_t natts,
							   const chg_column *columns);
extern void chg_write_insert(chg_writer *w, uint32_t relid,
							 const chg_tuple *new_tuple);
extern void chg_write_update(chg_writer *w, uint32_t relid, uint8_t old_kind,
							 const chg_tuple *old_tuple,
							 const chg_tuple *new_tuple);
extern void chg_write_delete(chg_writer *w, uint32_t relid, uint8_t old_kind,
							 const chg_tuple *old_tuple);
extern void chg_write_truncate(chg_writer *w, uint8_t flags, uint32_t nrels,
							   const uint32_t *relids);
extern void chg_write_commit(chg_writer *w, uint64_t commit_lsn,
							 uint64_t end_lsn, int64_t commit_time);
extern void chg_write_ddl(chg_writer *w, chg_str role, uint16_t nsettings,
						  const chg_setting *settings, chg_text statement,
						  uint16_t nmissing, const chg_missing *missing);
extern void chg_write_sequence(chg_writer *w, chg_str nspname, chg_str relname,
							   int64_t value, uint8_t flags);
extern void chg_write_stream_start(chg_writer *w, uint32_t xid, bool first_block);
extern void chg_write_subtransaction(chg_writer *w, uint32_t subxid);
extern void chg_write_stream_stop(chg_writer *w);
extern void chg_write_stream_abort(chg_writer *w, uint32_t xid, uint32_t subxid);
extern void chg_write_stream_commit(chg_writer *w, uint32_t xid, uint64_t commit_lsn,
									uint64_t end_lsn, int64_t commit_time);

#endif							/* PG_RAFT_CHANGES_H */
