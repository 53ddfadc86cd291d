/*-------------------------------------------------------------------------
 *
 * repair.c
 *	  Divergence and repair: a former leader finds the transactions it
 *	  committed that never reached the Raft log, and repairs the rows they
 *	  touched from the leader, without emptying anything first.
 *
 * NOTES
 *	  Runs in the apply worker.  The words used here:
 *
 *	  - diverged transactions: those that committed on this node while it
 *		led and never reached the log.  The replication slot of that
 *		leadership still holds them (check_divergence); they are kept in
 *		pg_raft/diverged-*.changes for an operator.
 *	  - the repair set: the rows they touched, per table: the keys of the
 *		rows (the values of the columns of the replica identity index, or
 *		of the primary key), or the whole table when it has no such index,
 *		when a diverged transaction truncated it, or past REPAIR_MAX_KEYS.
 *	  - the repair's snapshot: a snapshot of the leader's data that holds
 *		exactly the log up to a known point (RaftLeaderSnapshot, join.c).
 *	  - the window: the entries of the log that the snapshot holds and this
 *		node had not applied yet.
 *
 *	  A repair of rows deletes the set's rows here and copies the leader's
 *	  version of them (those that exist there) as of the snapshot, then, in
 *	  the same local transaction, applies the log up to the leader's commit
 *	  index (apply.c, apply_in_repair): the window's changes to rows of the
 *	  set are skipped, since those rows hold them already, and every other
 *	  change applies as always.  Every other row followed the log all
 *	  along, so when that transaction commits, every row is as the log
 *	  says, and readers go from the old data to that state at once: they
 *	  never see a table missing, nor a mix of states the log never held.
 *	  A repair that fails leaves the data as it was.
 *
 *	  A change in the window that moves a row between a key of the set and
 *	  a key outside it (an update of the key), or a truncate of a table of
 *	  which only some rows are in the set, would need a row this node does
 *	  not have.  The set then grows by that key (or the whole table) and
 *	  the repair runs again, at a newer snapshot.  That is always safe: a
 *	  repair may be redone at any snapshot at or after this node's place in
 *	  the log, and a snapshot of the leader always is.
 *
 *	  A repair of every table (a re-synchronisation, RaftRepairEverything)
 *	  commits the copy at once, with the replication origin's progress set
 *	  to the snapshot's index; the entries after it that the snapshot holds
 *	  are then skipped as they come, whole.
 *
 *	  pg_raft/repair holds the set and says whether its rows are still to
 *	  copy.  A repair of rows removes it when it commits; a crash before
 *	  repairs again.  A repair of every table rewrites it once its commit is
 *	  durable, and removes it once the apply worker's progress past the
 *	  window is durable: until then a restart applies entries of the window
 *	  again and must still skip them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type_d.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "replication/walsender_private.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "changes/changes.h"
#include "pg_raft.h"
#include "repair.h"
#include "sql.h"
#include "storage.h"

#define REPAIR_FILE "repair"
#define REPAIR_FILE_VERSION 1
/* past this many keys in a table, the whole table is repaired */
#define REPAIR_MAX_KEYS 10000

/* The rows of one table to repair. */
typedef struct RepairTable
{
	char	   *name;			/* schema.table, quoted */
	Oid			relid;
	bool		whole;			/* every row */
	int			nkeys;
	int			maxkeys;
	char	  **keys;			/* sorted; each a text[] literal */
} RepairTable;

/* The repair under way, if any. */
typedef struct Repair
{
	List	   *tables;			/* RepairTable */
	bool		everything;		/* every table, whole: a re-synchronisation */
	bool		copied;			/* the rows hold the snapshot's version */
	RaftCopyStart snapshot;		/* the snapshot's point in the log ... */
	uint64		snapshot_term;	/* ... taken while this term led */
	bool		in_window;		/* the entry being applied is in the window */
	uint64		entry_index;	/* ... and is this one */
	uint64		closed_at;		/* the window ended before this entry, if not 0 */
} Repair;

static Repair *repair = NULL;
static MemoryContext repair_cxt = NULL;

/* What the repair under way did, for its LOG line. */
static TimestampTz repair_started;
static uint64 repair_deleted;
static uint64 repair_copied;

static void log_repair(uint64 applied_to);

/* Where the rows of a COPY from the leader come from (read_copy_data). */
static PGconn *copy_source;
static char *copy_chunk;
static int	copy_chunk_len;
static int	copy_chunk_off;
static bool copy_done;
static uint64 copy_bytes;

/* ----------------------------------------------------------------
 * The repair set
 * ----------------------------------------------------------------
 */

static void
new_repair(void)
{
	if (repair_cxt == NULL)
		repair_cxt = AllocSetContextCreate(TopMemoryContext, "pg_raft repair",
										   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(repair_cxt);
	repair = MemoryContextAllocZero(repair_cxt, sizeof(Repair));
}

static RepairTable *
find_table(Oid relid)
{
	ListCell   *lc;

	if (repair == NULL)
		return NULL;
	foreach(lc, repair->tables)
	{
		RepairTable *t = lfirst(lc);

		if (t->relid == relid)
			return t;
	}
	return NULL;
}

static RepairTable *
add_table(Oid relid, const char *name)
{
	RepairTable *t = find_table(relid);
	MemoryContext old;

	if (t != NULL)
		return t;
	old = MemoryContextSwitchTo(repair_cxt);
	t = palloc0(sizeof(RepairTable));
	t->relid = relid;
	t->name = pstrdup(name);
	repair->tables = lappend(repair->tables, t);
	MemoryContextSwitchTo(old);
	return t;
}

static char *
relation_name(Relation rel)
{
	return quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
}

static int
compare_keys(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

static bool
has_key(const RepairTable *t, const char *key)
{
	return t->nkeys > 0 &&
		bsearch(&key, t->keys, t->nkeys, sizeof(char *), compare_keys) != NULL;
}

/* Adds key to t's sorted keys; past REPAIR_MAX_KEYS the table goes whole. */
static void
add_key(RepairTable *t, const char *key)
{
	int			lo = 0;
	int			hi = t->nkeys;

	if (t->whole || has_key(t, key))
		return;
	if (t->nkeys >= REPAIR_MAX_KEYS)
	{
		t->whole = true;
		return;
	}
	if (t->nkeys == t->maxkeys)
	{
		t->maxkeys = Max(16, t->maxkeys * 2);
		t->keys = t->keys == NULL ?
			MemoryContextAlloc(repair_cxt, sizeof(char *) * t->maxkeys) :
			repalloc(t->keys, sizeof(char *) * t->maxkeys);
	}
	while (lo < hi)
	{
		int			mid = (lo + hi) / 2;

		if (strcmp(t->keys[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	memmove(&t->keys[lo + 1], &t->keys[lo], sizeof(char *) * (t->nkeys - lo));
	t->keys[lo] = MemoryContextStrdup(repair_cxt, key);
	t->nkeys++;
}

/*
 * The columns that identify a row of rel (of the replica identity index,
 * else of the primary key), in the index's order; returns how many, 0 if
 * rows cannot be told apart by key (no such index, or an expression in
 * it).  attnums has room for INDEX_MAX_KEYS.
 */
static int
key_columns(Relation rel, AttrNumber *attnums)
{
	Oid			idx = RelationGetReplicaIndex(rel);
	Relation	irel;
	int			n;
	int			i;

	if (!OidIsValid(idx))
		idx = RelationGetPrimaryKeyIndex(rel);
	if (!OidIsValid(idx))
		return 0;
	irel = index_open(idx, AccessShareLock);
	n = irel->rd_index->indnkeyatts;
	for (i = 0; i < n; i++)
	{
		attnums[i] = irel->rd_index->indkey.values[i];
		if (attnums[i] == 0)
			n = 0;
	}
	index_close(irel, AccessShareLock);
	return n;
}

/* The literal of a text[] of n texts. */
static char *
text_array_literal(Datum *texts, int n)
{
	return OidOutputFunctionCall(F_ARRAY_OUT,
								 PointerGetDatum(construct_array(texts, n, TEXTOID, -1,
																 false, TYPALIGN_INT)));
}

/*
 * The key of the row in slot, as a text[] literal of its key columns'
 * text forms: the same on every member for the same row.  NULL if a key
 * column is null.
 */
static char *
row_key(TupleTableSlot *slot, const AttrNumber *attnums, int n)
{
	Datum	   *texts = palloc(sizeof(Datum) * n);
	int			i;

	for (i = 0; i < n; i++)
	{
		bool		isnull;
		Datum		value = slot_getattr(slot, attnums[i], &isnull);
		Oid			output;
		bool		varlena;

		if (isnull)
			return NULL;
		getTypeOutputInfo(TupleDescAttr(slot->tts_tupleDescriptor, attnums[i] - 1)->atttypid,
						  &output, &varlena);
		texts[i] = CStringGetTextDatum(OidOutputFunctionCall(output, value));
	}
	return text_array_literal(texts, n);
}

/*
 * RaftRepairCollectRow
 *		Adds the rows a change of a diverged transaction touched to the
 *		repair set: its old key and its new row's key (either may be NULL;
 *		both, for a delete that does not say which row: the whole table).
 */
void
RaftRepairCollectRow(Relation rel, TupleTableSlot *old_key, TupleTableSlot *new_key)
{
	AttrNumber	attnums[INDEX_MAX_KEYS];
	int			n = key_columns(rel, attnums);
	RepairTable *t = add_table(RelationGetRelid(rel), relation_name(rel));
	TupleTableSlot *slots[2] = {old_key, new_key};
	size_t		i;

	if (n == 0 || (old_key == NULL && new_key == NULL))
	{
		t->whole = true;
		return;
	}
	for (i = 0; i < lengthof(slots); i++)
	{
		char	   *key;

		if (slots[i] == NULL)
			continue;
		key = row_key(slots[i], attnums, n);
		if (key == NULL)
			t->whole = true;
		else
			add_key(t, key);
	}
}

/* Adds the whole of rel to the repair set (a diverged truncate). */
void
RaftRepairCollectTable(Relation rel)
{
	add_table(RelationGetRelid(rel), relation_name(rel))->whole = true;
}

/* ----------------------------------------------------------------
 * pg_raft/repair
 * ----------------------------------------------------------------
 */

typedef struct RepairFileHeader
{
	uint32		version;
	uint32		ntables;
	RaftCopyStart snapshot;
	uint64		snapshot_term;
	uint64		closed_at;
	bool		copied;
	bool		everything;
} RepairFileHeader;

static void
put_string(StringInfo buf, const char *s)
{
	uint32		len = strlen(s);

	appendBinaryStringInfo(buf, (const char *) &len, sizeof(len));
	appendBinaryStringInfo(buf, s, len);
}

static void
save_repair(void)
{
	StringInfoData buf;
	RepairFileHeader header;
	ListCell   *lc;

	memset(&header, 0, sizeof(header));
	header.version = REPAIR_FILE_VERSION;
	header.ntables = list_length(repair->tables);
	header.snapshot = repair->snapshot;
	header.snapshot_term = repair->snapshot_term;
	header.copied = repair->copied;
	header.everything = repair->everything;
	header.closed_at = repair->closed_at;
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, (const char *) &header, sizeof(header));
	foreach(lc, repair->tables)
	{
		RepairTable *t = lfirst(lc);
		uint32		nkeys = t->whole ? 0 : t->nkeys;
		uint32		i;

		put_string(&buf, t->name);
		appendStringInfoChar(&buf, t->whole ? 1 : 0);
		appendBinaryStringInfo(&buf, (const char *) &nkeys, sizeof(nkeys));
		for (i = 0; i < nkeys; i++)
			put_string(&buf, t->keys[i]);
	}
	RaftStorageWriteFile(REPAIR_FILE, buf.data, buf.len);
	pfree(buf.data);
}

static void
corrupted_repair_file(size_t at)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("pg_raft file \"%s/%s\" is corrupted at offset %zu",
					RAFT_STORAGE_DIR, REPAIR_FILE, at),
			 errhint("Remove this member with raft.remove_node() and join it again.")));
}

/* Reads a length-prefixed string at *at of data (len bytes), palloc'd. */
static char *
get_string(const char *data, size_t len, size_t *at)
{
	uint32		n;
	char	   *s;

	if (len - *at < sizeof(n))
		corrupted_repair_file(*at);
	memcpy(&n, data + *at, sizeof(n));
	if (len - *at - sizeof(n) < n)
		corrupted_repair_file(*at);
	s = pnstrdup(data + *at + sizeof(n), n);
	*at += sizeof(n) + n;
	return s;
}

/*
 * RaftRepairLoad
 *		Takes up the repair a restart interrupted, if there is one.  Tables
 *		that no longer exist here are dropped from the set.  Called in the
 *		apply worker, outside a transaction.
 */
void
RaftRepairLoad(void)
{
	char	   *data;
	size_t		len;
	size_t		at;
	RepairFileHeader header;
	uint32		i;

	repair = NULL;
	if (!RaftStorageReadFile(REPAIR_FILE, (void **) &data, &len))
		return;
	if (len < sizeof(header))
		corrupted_repair_file(0);
	memcpy(&header, data, sizeof(header));
	if (header.version != REPAIR_FILE_VERSION)
		corrupted_repair_file(0);
	new_repair();
	repair->snapshot = header.snapshot;
	repair->snapshot_term = header.snapshot_term;
	repair->copied = header.copied;
	repair->everything = header.everything;
	repair->closed_at = header.closed_at;
	/* a restart applies from before the window's end again */
	repair->in_window = repair->copied && repair->closed_at == 0;
	at = sizeof(header);
	StartTransactionCommand();
	for (i = 0; i < header.ntables; i++)
	{
		char	   *name = get_string(data, len, &at);
		bool		whole;
		uint32		nkeys;
		uint32		k;
		Oid			relid;
		RepairTable *t = NULL;

		if (len - at < 1 + sizeof(nkeys))
			corrupted_repair_file(at);
		whole = data[at] != 0;
		memcpy(&nkeys, data + at + 1, sizeof(nkeys));
		at += 1 + sizeof(nkeys);
		relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(name)),
								 NoLock, true);
		if (OidIsValid(relid))
		{
			t = add_table(relid, name);
			t->whole = whole;
		}
		for (k = 0; k < nkeys; k++)
		{
			char	   *key = get_string(data, len, &at);

			if (t != NULL)
				add_key(t, key);
		}
	}
	CommitTransactionCommand();
	if (repair->copied)
		ereport(LOG,
				(errmsg("pg_raft takes up the repair of %d tables: their rows hold node %u's data as of raft index %llu",
						list_length(repair->tables), repair->snapshot.origin,
						(unsigned long long) repair->snapshot.index)));
	else
		ereport(LOG,
				(errmsg("pg_raft takes up the repair of %d tables: their rows are still to copy from the leader",
						list_length(repair->tables))));
}

/*
 * Makes the set collected so far durable, its rows still to copy.  Forgets
 * an empty set.
 */
static void
save_collected(void)
{
	if (repair == NULL)
		return;
	if (repair->tables == NIL)
	{
		RaftRepairForget();
		return;
	}
	repair->copied = false;
	repair->in_window = false;
	repair->closed_at = 0;
	save_repair();
}

/*
 * The query that lists the user tables of this database, as the same
 * query on the leader must: every table (partitions, not their parents)
 * outside pg_raft's schema and the catalogues, quoted, in name order.
 */
#define USER_TABLES_QUERY \
	"SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c" \
	" JOIN pg_namespace n ON n.oid = c.relnamespace" \
	" WHERE c.relkind = 'r' AND c.relpersistence = 'p' AND" USER_SCHEMA("n.nspname") \
	" AND n.oid IS DISTINCT FROM (SELECT extnamespace FROM pg_extension WHERE extname = 'pg_raft')" \
	" ORDER BY 1"

/*
 * RaftRepairEverything
 *		Starts a repair of every table, whole: a re-synchronisation that
 *		replaces the data in place, in one transaction, rather than
 *		emptying the database first.  It also moves the apply worker's
 *		progress to the snapshot's index.  Called outside a transaction.
 */
void
RaftRepairEverything(void)
{
	uint64		i;

	new_repair();
	repair->everything = true;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(USER_TABLES_QUERY, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the tables of this database");
	for (i = 0; i < SPI_processed; i++)
	{
		char	   *name = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		Oid			relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(name)),
											 NoLock, false);

		add_table(relid, name)->whole = true;
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	repair->copied = false;
	save_repair();
}

/*
 * Checks that this member has every table the leader has before a whole
 * repair replaces their rows: schema changes do not travel through the
 * log yet, and a table missing here would be left out of the copy.
 * Tables only this member has are not the log's: they are left alone.
 */
static void
check_leader_tables(PGconn *conn)
{
	PGresult   *res;
	StringInfoData missing;
	int			nmissing = 0;
	int			i;

	res = PQexec(conn, USER_TABLES_QUERY);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *msg = pchomp(PQresultErrorMessage(res));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not list the leader's tables"),
				 errdetail_internal("%s", msg)));
	}
	initStringInfo(&missing);
	for (i = 0; i < PQntuples(res); i++)
	{
		const char *name = PQgetvalue(res, i, 0);
		ListCell   *lc;
		bool		found = false;

		foreach(lc, repair->tables)
			if (strcmp(((RepairTable *) lfirst(lc))->name, name) == 0)
				found = true;
		if (!found)
			appendStringInfo(&missing, "%s%s", nmissing++ > 0 ? ", " : "", name);
	}
	PQclear(res);
	if (nmissing > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the leader has %d tables that this member lacks: %s",
						nmissing, missing.data),
				 errdetail("This member keeps its data; the copy is tried again every few seconds."),
				 errhint("Schema changes do not travel through the raft log yet: give every member the same tables.")));
}

/* RaftRepairForget: drops the repair set (a whole copy replaced the data). */
void
RaftRepairForget(void)
{
	repair = NULL;
	RaftStorageRemoveFile(REPAIR_FILE);
}

/* RaftRepairOfEverything: whether the repair under way copies every table. */
bool
RaftRepairOfEverything(void)
{
	return repair != NULL && repair->everything;
}

/* RaftRepairPending: whether the set's rows are still to copy. */
bool
RaftRepairPending(void)
{
	return repair != NULL && !repair->copied;
}

/* ----------------------------------------------------------------
 * Copying the rows
 * ----------------------------------------------------------------
 */

/* Waits for conn's socket, the latch or a second; answers interrupts. */
static void
wait_for_source(PGconn *conn)
{
	(void) WaitLatchOrSocket(MyLatch,
							 WL_LATCH_SET | WL_SOCKET_READABLE | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 PQsocket(conn), 1000L, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (!PQconsumeInput(conn))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read from the leader: %s",
						pchomp(PQerrorMessage(conn)))));
}

/* Runs a command on the leader that returns no rows. */
static void
leader_command(PGconn *conn, const char *command)
{
	PGresult   *res;
	bool		ok = true;
	char	   *msg = NULL;

	if (!PQsendQuery(conn, command))
		ok = false;
	while (ok)
	{
		while (PQisBusy(conn))
			wait_for_source(conn);
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			ok = false;
			msg = pchomp(PQresultErrorMessage(res));
		}
		PQclear(res);
	}
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the leader's data: %s",
						msg ? msg : pchomp(PQerrorMessage(conn)))));
}

/*
 * The data source of COPY FROM: the COPY TO STDOUT that runs on the
 * leader's connection copy_source.  Returns at least minread bytes but at
 * the end of the data.
 */
static int
read_copy_data(void *outbuf, int minread, int maxread)
{
	int			filled = 0;

	minread = Max(minread, 1);
	while (filled < minread)
	{
		int			rc;

		if (copy_chunk != NULL && copy_chunk_off < copy_chunk_len)
		{
			int			n = Min(maxread - filled, copy_chunk_len - copy_chunk_off);

			memcpy((char *) outbuf + filled, copy_chunk + copy_chunk_off, n);
			copy_chunk_off += n;
			filled += n;
			continue;
		}
		if (copy_chunk != NULL)
		{
			PQfreemem(copy_chunk);
			copy_chunk = NULL;
		}
		if (copy_done)
			break;
		rc = PQgetCopyData(copy_source, &copy_chunk, 1);
		if (rc > 0)
		{
			copy_chunk_len = rc;
			copy_chunk_off = 0;
			copy_bytes += rc;
		}
		else if (rc == -1)
			copy_done = true;
		else if (rc == -2)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read rows from the leader: %s",
							pchomp(PQerrorMessage(copy_source)))));
		else
			wait_for_source(copy_source);
	}
	return filled;
}

/* The SQL condition that selects the set's rows of t, or "" for all. */
static char *
rows_condition(Relation rel, const RepairTable *t)
{
	AttrNumber	attnums[INDEX_MAX_KEYS];
	int			n = key_columns(rel, attnums);
	StringInfoData cond;
	Datum	   *keys;
	int			i;

	if (t->whole)
		return "";
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table %s has no key here to repair its rows by", t->name)));
	initStringInfo(&cond);
	appendStringInfoString(&cond, " WHERE (");
	for (i = 0; i < n; i++)
		appendStringInfo(&cond, "%s%s", i > 0 ? ", " : "",
						 quote_identifier(NameStr(TupleDescAttr(RelationGetDescr(rel),
																attnums[i] - 1)->attname)));
	appendStringInfoString(&cond, ") IN (SELECT ");
	for (i = 0; i < n; i++)
		appendStringInfo(&cond, "%s(k::text[])[%d]::%s", i > 0 ? ", " : "", i + 1,
						 format_type_be(TupleDescAttr(RelationGetDescr(rel),
													  attnums[i] - 1)->atttypid));
	keys = palloc(sizeof(Datum) * Max(t->nkeys, 1));
	for (i = 0; i < t->nkeys; i++)
		keys[i] = CStringGetTextDatum(t->keys[i]);
	appendStringInfo(&cond, " FROM unnest(%s::text[]) AS k)",
					 quote_literal_cstr(text_array_literal(keys, t->nkeys)));
	return cond.data;
}

/*
 * Moves the sequences that rel's integer columns draw from past the
 * values the repaired rows hold, as applying them would have.
 */
static void
advance_sequences(Relation rel, const char *name, const char *cond)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			k;

	for (k = 0; k < desc->natts; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, k);
		Oid			seqoid = RaftColumnSequence(rel, att);
		bool		isnull;
		int64		value = 0;

		if (!OidIsValid(seqoid))
			continue;
		SPI_connect();
		if (SPI_execute(psprintf("SELECT max(%s)::int8 FROM ONLY %s%s",
								 quote_identifier(NameStr(att->attname)), name, cond),
						true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "could not read the largest value of %s.%s",
				 name, NameStr(att->attname));
		value = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											SPI_tuptable->tupdesc, 1, &isnull));
		SPI_finish();
		if (!isnull)
			RaftAdvanceSequence(seqoid, value, value);
	}
}

/*
 * Makes sure the leader's table, as of the snapshot, has the columns
 * (a list of quoted names) that t has here.  The window may hold schema
 * changes this node has not applied yet (a member that diverged while a
 * migration ran, say): its rows cannot then be copied into the old
 * columns, nor the window applied to rows copied with the new ones.  The
 * node then copies its whole data again, schema and rows, from the
 * leader (pg_raft/recopy, as raft.recopy() asks): the apply worker does
 * that when it starts again, after this ERROR.
 */
static void
check_same_columns(PGconn *conn, const RepairTable *t, const char *columns)
{
	PGresult   *res = PQexec(conn,
							 psprintf("SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)"
									  " FROM pg_attribute WHERE attrelid = to_regclass(%s)"
									  " AND attnum > 0 AND NOT attisdropped AND attgenerated = ''",
									  quote_literal_cstr(t->name)));
	char	   *theirs;

	/*
	 * A query that failed (the leader died, the link broke) says nothing of
	 * the schema: taken for a change, it made a member empty its database
	 * to copy it again.  The repair fails instead, and is tried again.
	 */
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		char	   *msg = pchomp(PQerrorMessage(conn));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the leader's columns of table %s", t->name),
				 errdetail_internal("%s", msg)));
	}
	theirs = PQgetisnull(res, 0, 0) ? NULL : pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (theirs != NULL && strcmp(theirs, columns) == 0)
		return;
	RaftStorageWriteFile(RAFT_RECOPY_FILE, "", 0);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("the columns of table %s changed in the log since this node last applied it",
					t->name),
			 errdetail("Here: %s; on the leader: %s.", columns,
					   theirs ? theirs : "no such table"),
			 errhint("Rows of a transaction that never reached the log cannot be repaired across a schema change: this node copies its data again from the leader, schema and rows.")));
}

/*
 * Replaces the set's rows of t here with the leader's, read through conn
 * in the snapshot's transaction.  Adds what it did to *deleted, *copied.
 * Caller is in a transaction and has an active snapshot.
 */
static void
repair_table(PGconn *conn, const RepairTable *t, uint64 *deleted, uint64 *copied)
{
	Relation	rel = table_open(t->relid, RowExclusiveLock);
	TupleDesc	desc = RelationGetDescr(rel);
	char	   *cond = rows_condition(rel, t);
	StringInfoData columns;
	List	   *attnames = NIL;
	ParseState *pstate;
	CopyFromState cstate;
	PGresult   *res;
	int			k;

	initStringInfo(&columns);
	for (k = 0; k < desc->natts; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, k);

		if (att->attisdropped || att->attgenerated)
			continue;
		appendStringInfo(&columns, "%s%s", columns.len > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
		attnames = lappend(attnames, makeString(pstrdup(NameStr(att->attname))));
	}
	check_same_columns(conn, t, columns.data);

	SPI_connect();
	if (SPI_execute(psprintf("DELETE FROM ONLY %s%s", t->name, cond), false, 0) != SPI_OK_DELETE)
		elog(ERROR, "could not delete the rows to repair of %s", t->name);
	*deleted += SPI_processed;
	SPI_finish();

	if (!PQsendQuery(conn, psprintf("COPY (SELECT %s FROM ONLY %s%s) TO STDOUT",
									columns.data, t->name, cond)))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the leader's rows of %s: %s", t->name,
						pchomp(PQerrorMessage(conn)))));
	while (PQisBusy(conn))
		wait_for_source(conn);
	res = PQgetResult(conn);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
	{
		char	   *msg = pchomp(PQresultErrorMessage(res));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not read the leader's rows of %s", t->name),
				 errdetail_internal("%s", msg),
				 errhint("The leader's table must have the same columns as this member's.")));
	}
	PQclear(res);

	copy_source = conn;
	copy_chunk = NULL;
	copy_done = false;
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										 false, false);
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, read_copy_data,
						   attnames, NIL);
	*copied += CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	while ((res = PQgetResult(conn)) != NULL)
	{
		bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

		PQclear(res);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not read the leader's rows of %s: %s", t->name,
							pchomp(PQerrorMessage(conn)))));
	}
	advance_sequences(rel, t->name, cond);
	table_close(rel, NoLock);
	CommandCounterIncrement();
}

/*
 * Copies every table's rows from the leader, at the snapshot conn reads,
 * in the current transaction.
 */
static void
copy_rows(PGconn *conn)
{
	ListCell   *lc;

	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, repair->tables)
	{
		RepairTable *t = lfirst(lc);

		if (OidIsValid(get_rel_relkind(t->relid)))
			repair_table(conn, t, &repair_deleted, &repair_copied);
	}
	PopActiveSnapshot();
}

/*
 * RaftRepairRun
 *		Copies the repair set's rows from the leader, which member_conninfo
 *		reaches, in a local transaction.  On an error (the leader changes,
 *		the connection breaks) the rows are as they were, and the file says
 *		they are still to copy.
 *
 * A repair of every table commits at once, moving the apply worker's
 * progress to the snapshot's index; the window's entries are then skipped
 * as they come.  Returns true.
 *
 * A repair of rows leaves the transaction open and sets *apply_to: the
 * caller applies the log up to that index (and to the end of the
 * transaction there) inside it, skipping the window's changes to the
 * set's rows, then calls RaftRepairFinish.  Readers thus go at once from
 * the old data to the data as of that index: a mix of repaired rows and
 * rows not yet brought forward would be a state the log never held (a
 * bank's total would be wrong).  Returns false.
 */
bool
RaftRepairRun(const char *member_conninfo, uint64 *apply_to)
{
	char	   *leader_conninfo = RaftConninfoForDatabase(member_conninfo);
	PGconn	   *volatile conn = NULL;
	PGconn	   *volatile repl = NULL;

	Assert(repair != NULL);
	repair_started = GetCurrentTimestamp();
	repair_deleted = 0;
	repair_copied = 0;
	copy_bytes = 0;
	*apply_to = 0;
	PG_TRY();
	{
		char	   *snapshot;

		conn = RaftConnect(leader_conninfo, "the leader");
		repl = RaftConnectReplication(leader_conninfo, "the leader for replication");
		snapshot = RaftLeaderSnapshot(conn, repl, &repair->snapshot,
									  &repair->snapshot_term, apply_to);
		leader_command(conn, psprintf("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;"
									  " SET TRANSACTION SNAPSHOT %s",
									  quote_literal_cstr(snapshot)));
		if (repair->everything)
			check_leader_tables(conn);
		repair->copied = false;
		repair->closed_at = 0;
		save_repair();
		StartTransactionCommand();
		copy_rows(conn);
	}
	PG_FINALLY();
	{
		if (copy_chunk != NULL)
			PQfreemem(copy_chunk);
		copy_chunk = NULL;
		if (repl != NULL)
			PQfinish(repl);
		if (conn != NULL)
			PQfinish(conn);
	}
	PG_END_TRY();

	/* from here on, RaftRepairSeeEntry tells which entries the copy holds */
	repair->copied = true;
	repair->in_window = true;
	if (!repair->everything)
		return false;

	/* the data now holds the log up to the snapshot: so does the progress */
	replorigin_session_origin_lsn = repair->snapshot.index;
	replorigin_session_origin_timestamp = GetCurrentTimestamp();
	CommitTransactionCommand();
	/* the apply worker commits asynchronously; the file must not say copied first */
	XLogFlush(XactLastCommitEnd);
	save_repair();
	log_repair(repair->snapshot.index);
	*apply_to = 0;
	return true;
}

/*
 * RaftRepairFinish
 *		Commits a repair of rows once the caller has applied the log up to
 *		applied_to inside its transaction: the replication origin's
 *		progress moves there with the data.  The repair is then over.
 */
void
RaftRepairFinish(uint64 applied_to)
{
	Assert(repair != NULL && !repair->everything);
	replorigin_session_origin_lsn = applied_to;
	replorigin_session_origin_timestamp = GetCurrentTimestamp();
	CommitTransactionCommand();
	XLogFlush(XactLastCommitEnd);
	log_repair(applied_to);
	RaftRepairForget();
}

static void
log_repair(uint64 applied_to)
{
	long		secs;
	int			usecs;

	TimestampDifference(repair_started, GetCurrentTimestamp(), &secs, &usecs);
	ereport(LOG,
			(errmsg("pg_raft repaired %d tables from node %u's data as of raft index %llu: %llu rows replaced by %llu, %llu bytes copied in %ld.%03d s",
					list_length(repair->tables), repair->snapshot.origin,
					(unsigned long long) repair->snapshot.index,
					(unsigned long long) repair_deleted, (unsigned long long) repair_copied,
					(unsigned long long) copy_bytes, secs, usecs / 1000),
			 repair->everything ?
			 errdetail("Every table was replaced in one transaction; readers saw the old rows until it committed.") :
			 errdetail("Only the rows that this node's diverged transactions touched were copied, and the log applied up to raft index %llu in the same transaction; the rest of its data stays.",
					   (unsigned long long) applied_to)));
}

/* ----------------------------------------------------------------
 * The window
 * ----------------------------------------------------------------
 */

/*
 * RaftRepairSeeEntry
 *		Tells the repair which entry the apply worker takes next, so that
 *		it knows whether the snapshot holds it.  first: the entry begins a
 *		transaction of origin that committed at final_lsn; continuation
 *		entries and entries without data (first false) keep the answer of
 *		the transaction's first entry, but end the window when of a later
 *		term.
 *
 * The snapshot holds every entry of an earlier term than its own (the
 * leader had applied them before it took writes), and the entries of its
 * term that committed on the leader before the snapshot's LSN.
 */
void
RaftRepairSeeEntry(uint64 index, uint64 term, bool first, raft_id_t origin,
				   XLogRecPtr final_lsn)
{
	bool		held;

	if (repair == NULL || !repair->copied)
		return;
	repair->entry_index = index;
	/* taken again after a restart: the window ended where it did */
	if (repair->closed_at != 0)
	{
		repair->in_window = index < repair->closed_at;
		return;
	}
	if (first)
		held = term < repair->snapshot_term ||
			(term == repair->snapshot_term && origin == repair->snapshot.origin &&
			 final_lsn < repair->snapshot.lsn);
	else
		held = term <= repair->snapshot_term;
	if (held)
		return;
	repair->in_window = false;
	repair->closed_at = index;
	/* after a whole repair, before any piece of this entry can be spooled */
	if (repair->everything)
		save_repair();
	ereport(LOG,
			(errmsg("pg_raft applies past the repair's snapshot from raft index %llu on",
					(unsigned long long) index)));
}

/*
 * RaftRepairResumeTransaction
 *		Tells the repair that the apply worker applies again the spooled
 *		pieces of the transaction that began at first_index.  The window
 *		holds it unless the window ended at or before its first entry:
 *		along the log, the snapshot holds a prefix of the transactions.
 */
void
RaftRepairResumeTransaction(uint64 first_index)
{
	if (repair == NULL || !repair->copied)
		return;
	repair->entry_index = first_index;
	repair->in_window = repair->closed_at == 0 || first_index < repair->closed_at;
}

/* RaftRepairInWindow: whether the entry being applied is in the window. */
bool
RaftRepairInWindow(void)
{
	return repair != NULL && repair->in_window;
}

/*
 * Grows the set by what a change of the window needs and has the repair
 * run again: raises an error, after which the apply worker restarts and
 * copies the set's rows at a newer snapshot before it applies on.
 */
static void
repair_again(RepairTable *t, const char *why)
{
	repair->copied = false;
	repair->in_window = false;
	save_repair();
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("raft entry %llu %s of %s that this node is repairing",
					(unsigned long long) repair->entry_index, why, t->name),
			 errdetail("The apply worker repairs those rows again from the leader, then applies on.")));
}

/*
 * The repair set's entry for rel if the entry being applied is in the
 * window, else NULL.
 */
static RepairTable *
window_table(Relation rel)
{
	if (repair == NULL || !repair->in_window)
		return NULL;
	return find_table(RelationGetRelid(rel));
}

/*
 * RaftRepairCoversRow
 *		Whether a change of the entry being applied to rel can be skipped:
 *		the snapshot holds it, and the rows it touches (old_key, the row it
 *		changes; new_key, the row it writes; either may be NULL) were
 *		copied from it.
 */
bool
RaftRepairCoversRow(Relation rel, TupleTableSlot *old_key, TupleTableSlot *new_key)
{
	RepairTable *t;
	AttrNumber	attnums[INDEX_MAX_KEYS];
	int			n;
	char	   *old_k = NULL;
	char	   *new_k = NULL;
	bool		old_in;
	bool		new_in;

	t = window_table(rel);
	if (t == NULL)
		return false;
	if (t->whole)
		return true;
	n = key_columns(rel, attnums);
	if (n == 0)
	{
		t->whole = true;
		repair_again(t, "changes rows without a key");
	}
	if (old_key != NULL)
		old_k = row_key(old_key, attnums, n);
	if (new_key != NULL)
		new_k = row_key(new_key, attnums, n);
	old_in = old_k != NULL && has_key(t, old_k);
	new_in = new_k != NULL && has_key(t, new_k);
	if ((old_key == NULL || old_in) && (new_key == NULL || new_in))
		return true;
	if (!old_in && !new_in)
		return false;
	/* a row moves between a repaired key and another one */
	if (old_k != NULL)
		add_key(t, old_k);
	if (new_k != NULL)
		add_key(t, new_k);
	if (old_k == NULL || new_k == NULL)
		t->whole = true;
	repair_again(t, "moves a row into or out of the rows");
	return false;				/* keep compiler quiet */
}

/*
 * RaftRepairCoversTable
 *		Whether a truncate of rel in the entry being applied is to be
 *		skipped: the snapshot holds it and the whole table was copied.
 */
bool
RaftRepairCoversTable(Relation rel)
{
	RepairTable *t = window_table(rel);

	if (t == NULL)
		return false;
	if (t->whole)
		return true;
	t->whole = true;
	repair_again(t, "truncates the table");
	return false;				/* keep compiler quiet */
}

/*
 * RaftRepairProgressDurable
 *		Ends the repair once the apply worker's durable progress is past
 *		the window: no restart can apply an entry of it again.
 */
void
RaftRepairProgressDurable(uint64 durable_index)
{
	if (repair == NULL || repair->closed_at == 0 || durable_index < repair->closed_at)
		return;
	RaftRepairForget();
	ereport(LOG,
			(errmsg("pg_raft finished the repair: every row follows the log again")));
}

/* ----------------------------------------------------------------
 * Divergence
 * ----------------------------------------------------------------
 */

/*
 * Looks for transactions that committed here while this node led but never
 * reached the Raft log (their COMMIT was waiting when the node died, or did
 * not wait: synchronous_commit = local).  They are the changes the slot of
 * that leadership still holds whose commit LSN is past own_committed_lsn,
 * the last of this node's transactions found committed in the log.  They
 * are written, as a change stream, to a file that raft.decode_changes()
 * reads, counted in raft.status, and collected into a new repair set.
 * Returns how many there are.  Unless certain (every entry of earlier
 * terms that will ever commit is applied), some of them may have reached
 * the log after all: their entries were compacted before this node could
 * see them.
 */
static uint64
check_divergence(XLogRecPtr own_committed_lsn, bool certain)
{
	StringInfoData kept;
	uint64		count = 0;
	bool		in_diverged = false;
	int			txn_start = 0;
	bool		txn_changes = false;
	uint64		i;
	chg_arrays	arrays;

	initStringInfo(&kept);
	RaftChangeArraysInit(&arrays);
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SELECT data FROM pg_logical_slot_peek_binary_changes('" RAFT_SLOT_NAME "', NULL, NULL)",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the replication slot \"%s\"", RAFT_SLOT_NAME);
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		bytea	   *data = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[i],
														 SPI_tuptable->tupdesc, 1, &isnull));
		const uint8 *buf = (const uint8 *) VARDATA_ANY(data);
		size_t		len = VARSIZE_ANY_EXHDR(data);
		chg_message m;
		size_t		consumed;

		if (len > 0 && buf[0] == CHG_VERSION &&
			chg_read(buf, len, &arrays, &m, &consumed) == CHG_OK &&
			chg_read(buf + consumed, len - consumed, &arrays, &m, &consumed) == CHG_OK &&
			m.kind == CHG_BEGIN)
		{
			in_diverged = m.lsn > own_committed_lsn;
			txn_start = kept.len;
			txn_changes = false;
		}
		if (!in_diverged)
			continue;
		appendBinaryStringInfo(&kept, (const char *) buf, (int) len);
		if (len > 0 && buf[0] != CHG_VERSION && buf[0] != CHG_SEQUENCE &&
			buf[0] != CHG_COMMIT)
			txn_changes = true;
		if (len > 0 && buf[0] == CHG_COMMIT)
		{
			/*
			 * A sequence's announcement alone changes no data: a value it
			 * covered was never acknowledged in a commit (sequences.c).
			 */
			if (txn_changes)
				count++;
			else
				kept.len = txn_start;
		}
	}
	SPI_finish();
	if (count > 0)
	{
		new_repair();
		RaftApplyCollect((const uint8 *) kept.data, kept.len);
	}
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (count > 0)
	{
		char		path[MAXPGPATH];
		int			fd;

		snprintf(path, sizeof(path), "%s/diverged-%ld.changes", RAFT_STORAGE_DIR,
				 (long) time(NULL));
		fd = BasicOpenFile(path, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
		if (fd < 0 || write(fd, kept.data, kept.len) != kept.len ||
			pg_fsync(fd) != 0 || close(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write file \"%s\": %m", path)));
		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		RaftShmem->apply.diverged_transactions = count;
		strlcpy(RaftShmem->apply.diverged_file, path, MAXPGPATH);
		LWLockRelease(RaftShmem->lock);
		if (certain)
			ereport(LOG,
					(errmsg("pg_raft found %llu transactions that committed on this node while it led but never reached the raft log; they are kept in \"%s\"",
							(unsigned long long) count, path),
					 errdetail("The other members do not have them; the %d tables' rows they touched are copied again from the leader.",
							   list_length(repair->tables)),
					 errhint("Read them with SELECT raft.decode_changes(pg_read_binary_file('%s')).",
							 path)));
		else
			ereport(LOG,
					(errmsg("pg_raft found %llu transactions that committed on this node while it led and that it cannot match against the raft log; they are kept in \"%s\"",
							(unsigned long long) count, path),
					 errdetail("The log entries they would match were compacted while this node was away: some or all of them may be on the other members."),
					 errhint("Read them with SELECT raft.decode_changes(pg_read_binary_file('%s')), and compare with the leader's data before applying any again.",
							 path)));
	}
	pfree(kept.data);
	return count;
}

/*
 * Ends the walsender that still holds the slot of an earlier leadership
 * of this node.  The capture of that leadership is over, and no other
 * capture starts before the slot is settled (worker.c), so such a
 * walsender is a leftover: its client is gone, and it would keep the slot
 * from being settled and the next leadership from capturing.  It gets a
 * second to leave by itself.  Anything else holding the slot (someone
 * reading it with SQL) is waited for.
 */
static void
end_slot_holder(pid_t holder)
{
	static pid_t seen_holder = 0;
	static TimestampTz seen_since = 0;
	TimestampTz now = GetCurrentTimestamp();
	bool		walsender = false;
	int			i;

	if (holder != seen_holder)
	{
		seen_holder = holder;
		seen_since = now;
		return;
	}
	if (!TimestampDifferenceExceeds(seen_since, now, 1000))
		return;
	for (i = 0; i < max_wal_senders; i++)
	{
		WalSnd	   *sender = &WalSndCtl->walsnds[i];

		SpinLockAcquire(&sender->mutex);
		if (sender->pid == holder)
			walsender = true;
		SpinLockRelease(&sender->mutex);
	}
	if (!walsender)
		return;
	ereport(LOG,
			(errmsg("pg_raft ends process %d, which still holds the replication slot \"%s\" of this node's earlier leadership",
					(int) holder, RAFT_SLOT_NAME),
			 errdetail("The capture of that leadership is over; the slot is settled once it is released.")));
	if (kill(holder, SIGTERM) != 0 && errno != ESRCH)
		ereport(WARNING,
				(errmsg("could not send a signal to process %d: %m", (int) holder)));
	seen_since = now;
}

/*
 * RaftOldSlotHeld
 *		Whether the slot pg_raft exists and a process holds it: on a node
 *		that does not lead, the decoding worker of its last leadership on
 *		its way out, or a leftover that end_slot_holder ends.
 */
bool
RaftOldSlotHeld(void)
{
	pid_t		holder;

	return RaftSlotState(&holder, NULL, NULL) && holder != 0;
}

/*
 * RaftSettleOldSlot
 *		Settles the slot a leadership of this node left, if there is one
 *		and the node does not lead (unless leading, when a new leadership
 *		of the node waits for it, worker.c): keeps the transactions that never
 *		reached the log (check_divergence) and makes the set of rows they
 *		touched durable, then drops the slot, which would hold back WAL and
 *		vacuum here (the next leadership creates its own).  Returns how
 *		many diverged: RaftRepairRun must then copy the set's rows before
 *		the apply worker applies on.  Returns -1 when the slot cannot be
 *		settled now: the node's role is not the one expected, or another
 *		process still holds the slot; the caller tries again later.
 *		own_committed_lsn and certain: as for check_divergence.
 */
int64
RaftSettleOldSlot(XLogRecPtr own_committed_lsn, bool certain, bool leading)
{
	pid_t		holder = 0;
	bool		leads;
	uint64		diverged;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	leads = RaftShmem->view.role == RAFT_LEADER;
	LWLockRelease(RaftShmem->lock);
	if (!RaftSlotState(&holder, NULL, NULL))
		return 0;
	if (leads != leading)
		return -1;
	if (holder != 0)
	{
		end_slot_holder(holder);
		return -1;
	}
	diverged = check_divergence(own_committed_lsn, certain);
	/* from here on, a crash still repairs (RaftRepairLoad) */
	if (diverged > 0)
		save_collected();
	ReplicationSlotDrop(RAFT_SLOT_NAME, true);
	ereport(LOG,
			(errmsg("pg_raft dropped the replication slot \"%s\" of this node's earlier leadership",
					RAFT_SLOT_NAME)));
	return (int64) diverged;
}
