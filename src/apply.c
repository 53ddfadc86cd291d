/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applies a change stream (changes/changes.h) to local tables.
 *
 * NOTES
 *	  Two callers: raft.apply_changes(), in the current transaction, and
 *	  the apply worker at the end of this file.  Rows go through the executor's
 *	  replication entry points (ExecSimpleRelationInsert and friends), as
 *	  PostgreSQL's own logical replication worker does: no SQL text per row.
 *	  Consecutive changes to one table share one executor state, so a bulk
 *	  load opens the table and its indexes once, not once per row, and
 *	  consecutive inserts into it are written a batch at a time, as COPY
 *	  writes them (flush_inserts).
 *
 *	  Relations are matched by schema and name, columns by name; a value
 *	  arrives in its type's binary send format or as text and is read with
 *	  the local column type's receive or input function.  An update or a
 *	  delete finds its row through the replica identity index (or the
 *	  primary key) with the key the stream carries, or, for a table with
 *	  REPLICA IDENTITY FULL, by comparing whole rows.  A value marked
 *	  unchanged keeps the local row's.
 *
 *	  Sequences travel as announcements of how far they went (sequences.c).
 *	  Besides, so that a member that becomes leader does not hand out
 *	  identifiers its tables already hold, the values written into a column
 *	  whose default draws from a sequence (serial, identity, nextval())
 *	  move that sequence forward here, at the end of each transaction.
 *
 *	  Each message is applied in a memory context reset after it, so a
 *	  transaction of any size applies in bounded memory.  A transaction's
 *	  stream may arrive in pieces cut at any byte (RaftApplyPiece).
 *
 *	  The apply worker (one per instance, in raft.database) applies the
 *	  committed entries that the raft worker hands it through the apply
 *	  queue, in log order.  A transaction's entries apply in one local
 *	  transaction, under the replication origin pg_raft whose progress is
 *	  set to the index of its last entry: that commits atomically with the
 *	  data, so after a crash the worker resumes exactly after the last
 *	  transaction it applied.  Entries decoded on this very node (its own
 *	  leadership) are skipped: their data is here already.  A transaction
 *	  whose leader lost its leadership before sending all of it is
 *	  discarded when the next term's entries come.  A transaction streamed
 *	  while it ran is kept aside in a file until its commit, then applied
 *	  in one local transaction (see "Streamed transactions").
 *
 *	  When this node's data parts from the log's, the apply worker repairs
 *	  it (repair.c): a former leader that committed transactions which
 *	  never reached the log replaces the rows they touched with the
 *	  leader's, and applies the log up to the leader's commit index in the
 *	  same transaction (apply_in_repair); a member that was away while the
 *	  entries it needed were compacted replaces every table's rows in one
 *	  transaction.  Neither empties anything first.  Only an instance where
 *	  the copy of raft.join_cluster did not finish, which holds nothing
 *	  but part of that copy, empties the database and copies it again
 *	  (copy_again, join.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type_d.h"
#include "commands/tablecmds.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/origin.h"
#include "replication/slot.h"
#include "rewrite/rewriteHandler.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "changes/changes.h"
#include "pg_raft.h"
#include "repair.h"
#include "sql.h"
#include "storage.h"

PG_FUNCTION_INFO_V1(pg_raft_apply_changes);

/*
 * How a value of one column is read: the local type's receive function
 * for the binary format, its input function for text.  Each is looked up
 * at the column's first value of that format (fn_oid invalid until then).
 */
typedef struct ValueReader
{
	FmgrInfo	recv;
	Oid			recv_ioparam;
	FmgrInfo	input;
	Oid			input_ioparam;
} ValueReader;

/* A relation described in the stream, matched to a local table. */
typedef struct ApplyRelation
{
	uint32		remote_relid;
	Oid			localid;
	char	   *name;			/* schema.table, for messages */
	uint16		natts;			/* remote columns */
	AttrNumber *attnums;		/* remote column i -> local attnum, 0 if none */
	int			nseqs;			/* integer columns with a sequence default: */
	AttrNumber *seq_attnums;	/* ... the column */
	Oid		   *seq_oids;		/* ... and its sequence */
	/* per remote column, its local type's reading function, looked up once */
	ValueReader *readers;
	MemoryContext cxt;			/* where the readers keep their lookups */
} ApplyRelation;

/* The values this transaction wrote into a sequence's column. */
typedef struct SequenceMark
{
	Oid			seqoid;
	int64		lowest;
	int64		highest;
} SequenceMark;

/*
 * The executor state for changes to one relation.  It stays open while
 * consecutive changes go to the same relation, so that a bulk load opens
 * the table and its indexes once, not once per row.
 */
typedef struct ApplyTarget
{
	ApplyRelation *relation;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	TupleTableSlot *newslot;	/* the row as the change leaves it */
	TupleTableSlot *keyslot;	/* the identity of the row it changes */
	TupleTableSlot *local;		/* that row, found here */
	TupleTableSlot *new_key;	/* the identity an update leaves (repair) */
	int			changes;		/* applied since it opened */
	/* inserts written a batch at a time, when the table allows it */
	bool		batch_inserts;
	TupleTableSlot **batch;		/* rows not yet written, BATCH_ROWS of room */
	int			batch_slots;	/* slots made so far */
	int			batched;		/* rows waiting in them */
	Size		batched_bytes;	/* their values' size in the stream */
	BulkInsertState bistate;
} ApplyTarget;

/*
 * A target closes after this many changes even when more follow for its
 * relation: AFTER triggers queued by the changes fire when it closes, and
 * their queue must not grow with the transaction.
 */
#define TARGET_MAX_CHANGES 10000

/* inserts written together, at most (COPY's own bounds) */
#define BATCH_ROWS 1000
#define BATCH_BYTES 65535

typedef struct ApplyState
{
	List	   *relations;
	List	   *sequence_marks; /* SequenceMark */
	ApplyTarget *target;		/* open for the last change's relation, or NULL */
	MemoryContext stream_cxt;	/* relation descriptions */
	MemoryContext change_cxt;	/* reset after every message */
	bool		collect;		/* only collect the rows touched (repair.c) */
} ApplyState;

/* The description of a relation of the stream, or NULL. */
static ApplyRelation *
find_description(ApplyState *state, uint32 remote_relid)
{
	ListCell   *lc;

	foreach(lc, state->relations)
	{
		ApplyRelation *r = lfirst(lc);

		if (r->remote_relid == remote_relid)
			return r;
	}
	return NULL;
}

static ApplyRelation *
find_relation(ApplyState *state, uint32 remote_relid)
{
	ApplyRelation *r = find_description(state, remote_relid);

	if (r != NULL)
		return r;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("change stream refers to relation %u before describing it",
					remote_relid)));
	return NULL;				/* keep compiler quiet */
}

/*
 * RaftColumnSequence
 *		The sequence the default of an integer column draws from: an
 *		identity column's, or the one of a default that is nextval('...')
 *		under implicit casts (serial columns; on a partition or an
 *		inheritance child the default was copied from the parent, whose
 *		column owns the sequence).  InvalidOid if none.
 */
Oid
RaftColumnSequence(Relation rel, Form_pg_attribute att)
{
	Node	   *def;

	if (att->attisdropped ||
		(att->atttypid != INT2OID && att->atttypid != INT4OID &&
		 att->atttypid != INT8OID) ||
		(!att->atthasdef && !att->attidentity))
		return InvalidOid;
	def = build_column_default(rel, att->attnum);
	while (def != NULL && IsA(def, FuncExpr) &&
		   ((FuncExpr *) def)->funcformat == COERCE_IMPLICIT_CAST &&
		   list_length(((FuncExpr *) def)->args) == 1)
		def = linitial(((FuncExpr *) def)->args);
	if (def == NULL)
		return InvalidOid;
	if (IsA(def, NextValueExpr))
		return ((NextValueExpr *) def)->seqid;
	if (IsA(def, FuncExpr) && ((FuncExpr *) def)->funcid == F_NEXTVAL &&
		list_length(((FuncExpr *) def)->args) == 1 &&
		IsA(linitial(((FuncExpr *) def)->args), Const))
	{
		Const	   *arg = linitial(((FuncExpr *) def)->args);

		if (!arg->constisnull && arg->consttype == REGCLASSOID)
			return DatumGetObjectId(arg->constvalue);
	}
	return InvalidOid;
}

/*
 * Finds the integer columns of r's table whose default draws from a
 * sequence (serial and identity columns, and any nextval() default).
 */
static void
find_column_sequences(ApplyRelation *r, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			k;

	r->seq_attnums = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	r->seq_oids = palloc(sizeof(Oid) * Max(desc->natts, 1));
	for (k = 0; k < desc->natts; k++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, k);
		Oid			seqoid = RaftColumnSequence(rel, att);

		if (!OidIsValid(seqoid))
			continue;
		r->seq_attnums[r->nseqs] = att->attnum;
		r->seq_oids[r->nseqs] = seqoid;
		r->nseqs++;
	}
}

/* This transaction's mark for sequence seqoid, or NULL. */
static SequenceMark *
find_mark(ApplyState *state, Oid seqoid)
{
	ListCell   *lc;

	foreach(lc, state->sequence_marks)
	{
		SequenceMark *mark = lfirst(lc);

		if (mark->seqoid == seqoid)
			return mark;
	}
	return NULL;
}

/* Remembers the values a new row holds in columns with a sequence default. */
static void
mark_sequences(ApplyState *state, const ApplyRelation *r, TupleTableSlot *slot)
{
	int			i;

	for (i = 0; i < r->nseqs; i++)
	{
		AttrNumber	attnum = r->seq_attnums[i];
		bool		isnull;
		Datum		d = slot_getattr(slot, attnum, &isnull);
		Oid			type = TupleDescAttr(slot->tts_tupleDescriptor, attnum - 1)->atttypid;
		int64		value;
		SequenceMark *mark;

		if (isnull)
			continue;
		value = type == INT8OID ? DatumGetInt64(d) :
			type == INT4OID ? (int64) DatumGetInt32(d) : (int64) DatumGetInt16(d);
		mark = find_mark(state, r->seq_oids[i]);
		if (mark == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(state->stream_cxt);

			mark = palloc(sizeof(SequenceMark));
			mark->seqoid = r->seq_oids[i];
			mark->lowest = mark->highest = value;
			state->sequence_marks = lappend(state->sequence_marks, mark);
			MemoryContextSwitchTo(old);
		}
		else
		{
			mark->lowest = Min(mark->lowest, value);
			mark->highest = Max(mark->highest, value);
		}
	}
}

/*
 * A column's type in the stream must be the local column's: a value is
 * never read as another type.  Built-in types have the same OID on every
 * member, and their modifiers must agree too (numeric(10,2) against
 * numeric(10,3) would round silently).  A type created by a schema change
 * has an OID of each member's own, so only its being such a type is
 * checked.
 */
static void
check_column_type(const ApplyRelation *r, const char *colname,
				  const chg_column *remote, Form_pg_attribute att)
{
	bool		remote_builtin = remote->typid < FirstNormalObjectId;
	bool		local_builtin = att->atttypid < FirstNormalObjectId;

	if (remote_builtin != local_builtin ||
		(remote_builtin && (remote->typid != att->atttypid ||
							remote->typmod != att->atttypmod)))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of replicated table %s is of type %s here, but of type %s on the leader",
						colname, r->name,
						format_type_with_typemod(att->atttypid, att->atttypmod),
						remote_builtin ?
						format_type_with_typemod(remote->typid, remote->typmod) :
						"a user-defined type"),
				 errhint("The members' schemas differ: run raft.recopy() on this member to copy the leader's schema and data.")));
}

/* Matches a relation message to a local table and its columns. */
static void
describe(ApplyState *state, const chg_message *m)
{
	MemoryContext old = MemoryContextSwitchTo(state->stream_cxt);
	ApplyRelation *r = palloc0(sizeof(ApplyRelation));
	char	   *nspname = pnstrdup(m->nspname.data, m->nspname.len);
	char	   *relname = pnstrdup(m->relname.data, m->relname.len);
	Relation	rel;
	TupleDesc	desc;
	uint16		i;

	/* a schema change in the transaction makes the leader describe it again */
	state->relations = list_delete_ptr(state->relations,
									   find_description(state, m->relid));
	r->remote_relid = m->relid;
	r->name = psprintf("%s.%s", quote_identifier(nspname), quote_identifier(relname));
	r->localid = RangeVarGetRelid(makeRangeVar(nspname, relname, -1),
								  RowExclusiveLock, true);
	if (!OidIsValid(r->localid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("replicated table %s does not exist here", r->name)));
	rel = table_open(r->localid, NoLock);
	desc = RelationGetDescr(rel);
	r->natts = m->natts;
	r->attnums = palloc0(sizeof(AttrNumber) * Max(m->natts, 1));
	r->readers = palloc0(sizeof(ValueReader) * Max(m->natts, 1));
	r->cxt = state->stream_cxt;
	for (i = 0; i < m->natts; i++)
	{
		char	   *colname = pnstrdup(m->columns[i].name.data, m->columns[i].name.len);
		int			k;

		for (k = 0; k < desc->natts; k++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, k);

			if (!att->attisdropped && strcmp(NameStr(att->attname), colname) == 0)
			{
				if (att->attgenerated)
					ereport(ERROR,
							(errcode(ERRCODE_DATATYPE_MISMATCH),
							 errmsg("column \"%s\" of replicated table %s is generated here",
									colname, r->name)));
				check_column_type(r, colname, &m->columns[i], att);
				r->attnums[i] = att->attnum;
			}
		}
		if (r->attnums[i] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("replicated table %s has no column \"%s\" here",
							r->name, colname)));
	}
	find_column_sequences(r, rel);
	table_close(rel, NoLock);
	state->relations = lappend(state->relations, r);
	MemoryContextSwitchTo(old);
}

/*
 * Fills slot (cleared first) from a tuple of the stream; a value marked
 * unchanged is taken from base, the local row, when given.  A slot built
 * only to search by key (for_key) leaves unchanged values empty: they are
 * never key columns.
 */
static void
fill_slot(TupleTableSlot *slot, const ApplyRelation *r, const chg_tuple *t,
		  TupleTableSlot *base, bool for_key)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	uint16		i;

	ExecClearTuple(slot);
	if (base != NULL)
	{
		slot_getallattrs(base);
		memcpy(slot->tts_values, base->tts_values, sizeof(Datum) * desc->natts);
		memcpy(slot->tts_isnull, base->tts_isnull, sizeof(bool) * desc->natts);
	}
	else
	{
		memset(slot->tts_values, 0, sizeof(Datum) * desc->natts);
		memset(slot->tts_isnull, true, sizeof(bool) * desc->natts);
	}
	if (t->natts != r->natts)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("change stream has %u values for %s, which has %u columns",
						t->natts, r->name, r->natts)));
	for (i = 0; i < t->natts; i++)
	{
		const chg_value *v = &t->values[i];
		int			k = r->attnums[i] - 1;
		Form_pg_attribute att = TupleDescAttr(desc, k);
		ValueReader *reader = &r->readers[i];
		Oid			func;

		switch (v->kind)
		{
			case 'n':
				slot->tts_isnull[k] = true;
				break;
			case 'u':
				if (for_key)
					break;
				if (base == NULL)
					ereport(ERROR,
							(errcode(ERRCODE_DATA_CORRUPTED),
							 errmsg("change stream marks a value of %s unchanged where there is no old row",
									r->name)));
				break;
			case 'b':
				{
					StringInfoData buf;

					if (!OidIsValid(reader->recv.fn_oid))
					{
						getTypeBinaryInputInfo(att->atttypid, &func, &reader->recv_ioparam);
						fmgr_info_cxt(func, &reader->recv, r->cxt);
					}
					initStringInfo(&buf);
					appendBinaryStringInfo(&buf, (const char *) v->data, (int) v->len);
					slot->tts_values[k] = ReceiveFunctionCall(&reader->recv, &buf,
															  reader->recv_ioparam,
															  att->atttypmod);
					slot->tts_isnull[k] = false;
					break;
				}
			default:
				if (!OidIsValid(reader->input.fn_oid))
				{
					getTypeInputInfo(att->atttypid, &func, &reader->input_ioparam);
					fmgr_info_cxt(func, &reader->input, r->cxt);
				}
				slot->tts_values[k] =
					InputFunctionCall(&reader->input,
									  pnstrdup((const char *) v->data, v->len),
									  reader->input_ioparam, att->atttypmod);
				slot->tts_isnull[k] = false;
				break;
		}
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * Opens the target for r's table, in its own executor state under the
 * stream's context.
 */
static ApplyTarget *
target_open(ApplyState *state, ApplyRelation *r)
{
	MemoryContext old = MemoryContextSwitchTo(state->stream_cxt);
	EState	   *estate = CreateExecutorState();
	ApplyTarget *t;
	RangeTblEntry *rte;

	MemoryContextSwitchTo(estate->es_query_cxt);
	t = palloc0(sizeof(ApplyTarget));
	t->relation = r;
	t->estate = estate;
	t->rel = table_open(r->localid, RowExclusiveLock);
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = r->localid;
	rte->relkind = t->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(estate, list_make1(rte));
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	t->newslot = table_slot_create(t->rel, &estate->es_tupleTable);
	t->keyslot = table_slot_create(t->rel, &estate->es_tupleTable);
	t->local = table_slot_create(t->rel, &estate->es_tupleTable);
	t->new_key = table_slot_create(t->rel, &estate->es_tupleTable);
	/*
	 * Rows go in batches unless a BEFORE or INSTEAD OF trigger may change
	 * or drop each one as it comes, or a repair decides row by row.
	 */
	t->batch_inserts = t->rel->rd_rel->relkind == RELKIND_RELATION &&
		!(t->rri->ri_TrigDesc &&
		  (t->rri->ri_TrigDesc->trig_insert_before_row ||
		   t->rri->ri_TrigDesc->trig_insert_instead_row)) &&
		!state->collect && !RaftRepairInWindow();
	if (t->batch_inserts)
		t->batch = palloc0(sizeof(TupleTableSlot *) * BATCH_ROWS);
	AfterTriggerBeginQuery();
	MemoryContextSwitchTo(old);
	return t;
}

/* Says, in an error's context, which table a batch of inserts was for. */
static void
batch_error_callback(void *arg)
{
	const ApplyTarget *t = arg;

	errcontext("inserting %d rows into table %s", t->batched, t->relation->name);
}

/*
 * Writes the inserts waiting in the target's batch: the rows in one go
 * (a WAL record per page rather than per row), then each row's index
 * entries and AFTER triggers, as ExecSimpleRelationInsert does for one.
 */
static void
flush_inserts(ApplyTarget *t)
{
	ErrorContextCallback errcallback;
	MemoryContext old;
	int			i;

	if (t == NULL || t->batched == 0)
		return;
	errcallback.callback = batch_error_callback;
	errcallback.arg = t;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	PushActiveSnapshot(GetTransactionSnapshot());
	/* a bulk load writes through a ring of buffers; a row or two do not */
	if (t->bistate == NULL && t->batched > 1)
	{
		old = MemoryContextSwitchTo(t->estate->es_query_cxt);
		t->bistate = GetBulkInsertState();
		MemoryContextSwitchTo(old);
	}
	/* what it allocates (the tuples as stored) goes with the first row below */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(t->estate));
	table_multi_insert(t->rel, t->batch, t->batched, t->estate->es_output_cid,
					   0, t->bistate);
	MemoryContextSwitchTo(old);
	for (i = 0; i < t->batched; i++)
	{
		List	   *recheck = NIL;

		if (t->rri->ri_NumIndices > 0)
			recheck = ExecInsertIndexTuples(t->rri, t->batch[i], t->estate,
											false, false, NULL, NIL);
		ExecARInsertTriggers(t->estate, t->rri, t->batch[i], recheck, NULL);
		list_free(recheck);
		ExecClearTuple(t->batch[i]);
		ResetPerTupleExprContext(t->estate);
	}
	PopActiveSnapshot();
	error_context_stack = errcallback.previous;
	t->batched = 0;
	t->batched_bytes = 0;
}

/*
 * Checks a new row and adds it to the target's batch, which is written
 * once full.  The checks are those ExecSimpleRelationInsert makes before
 * it writes a row.
 */
static void
batch_insert(ApplyTarget *t, TupleTableSlot *slot, Size bytes)
{
	Relation	rel = t->rel;

	if (rel->rd_att->constr && rel->rd_att->constr->has_generated_stored)
		ExecComputeStoredGenerated(t->rri, t->estate, slot, CMD_INSERT);
	if (rel->rd_att->constr)
		ExecConstraints(t->rri, slot, t->estate);
	if (rel->rd_rel->relispartition)
		ExecPartitionCheck(t->rri, slot, t->estate, true);
	ExecMaterializeSlot(slot);
	t->batched++;
	t->batched_bytes += bytes;
	if (t->batched == BATCH_ROWS || t->batched_bytes >= BATCH_BYTES)
		flush_inserts(t);
}

/* The next free slot of the target's batch. */
static TupleTableSlot *
batch_slot(ApplyTarget *t)
{
	if (t->batched == t->batch_slots)
	{
		MemoryContext old = MemoryContextSwitchTo(t->estate->es_query_cxt);

		t->batch[t->batch_slots++] = table_slot_create(t->rel, &t->estate->es_tupleTable);
		MemoryContextSwitchTo(old);
	}
	return t->batch[t->batched];
}

/* Closes the open target, if any: its AFTER triggers fire now. */
static void
target_close(ApplyState *state)
{
	ApplyTarget *t = state->target;

	if (t == NULL)
		return;
	flush_inserts(t);
	state->target = NULL;
	if (t->bistate != NULL)
		FreeBulkInsertState(t->bistate);
	AfterTriggerEndQuery(t->estate);
	ExecCloseIndices(t->rri);
	ExecResetTupleTable(t->estate->es_tupleTable, false);
	table_close(t->rel, NoLock);
	FreeExecutorState(t->estate);
}

/*
 * The target for a change to r: the open one if it is r's, else a new one.
 * Each change runs under a command id of its own, as the leader's
 * statements did not see their own changes either.  Rows waiting in the
 * batch share the command id of the insert that wrote the batch; before
 * an update or a delete, which may look for them, they are written under
 * the id of the change before it, which this one sees.
 */
static ApplyTarget *
target_for(ApplyState *state, ApplyRelation *r, bool inserting)
{
	if (state->target != NULL &&
		(state->target->relation != r ||
		 state->target->changes >= TARGET_MAX_CHANGES))
		target_close(state);
	if (state->target == NULL)
		state->target = target_open(state, r);
	else if (!inserting)
		flush_inserts(state->target);
	state->target->changes++;
	state->target->estate->es_output_cid = GetCurrentCommandId(true);
	return state->target;
}

/*
 * Finds the local row that key (a slot of the relation with the identity
 * columns, or all columns for REPLICA IDENTITY FULL) designates, locked.
 */
static bool
find_row(ApplyTarget *t, const ApplyRelation *r, TupleTableSlot *key,
		 TupleTableSlot *found)
{
	Oid			idx = RelationGetReplicaIndex(t->rel);

	if (!OidIsValid(idx))
		idx = RelationGetPrimaryKeyIndex(t->rel);
	if (OidIsValid(idx))
		return RelationFindReplTupleByIndex(t->rel, idx, LockTupleExclusive,
											key, found);
	if (t->rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL)
		return RelationFindReplTupleSeq(t->rel, LockTupleExclusive, key, found);
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("cannot find rows of %s: it has no replica identity here",
					r->name),
			 errhint("Give the table a primary key or REPLICA IDENTITY FULL on every member.")));
	return false;
}

/*
 * A delete that does not say which row it removed comes only from a slot
 * read with SQL (decoder.c): a transaction that never reached the log
 * deleted from a table without a replica identity.  Its repair copies the
 * whole table.  Anywhere else it is an error.
 */
static void
unidentified_delete(ApplyState *state, ApplyRelation *r)
{
	Relation	rel;

	if (!state->collect)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("cannot apply a delete from %s that does not say which row it removes",
						r->name),
				 errdetail("Capture never ships such a delete into the raft log.")));
	rel = table_open(r->localid, RowExclusiveLock);
	RaftRepairCollectRow(rel, NULL, NULL);
	table_close(rel, NoLock);
}

/* The bytes of a row's values in the stream. */
static Size
tuple_bytes(const chg_tuple *t)
{
	Size		bytes = 0;
	uint16		i;

	for (i = 0; i < t->natts; i++)
		bytes += t->values[i].len;
	return bytes;
}

static void
apply_row_change(ApplyState *state, const chg_message *m, ApplyRelation *r)
{
	ApplyTarget *t;
	TupleTableSlot *row = NULL;

	if (m->kind == CHG_DELETE && m->old_kind == '-')
	{
		unidentified_delete(state, r);
		return;
	}
	t = target_for(state, r, m->kind == CHG_INSERT);
	if (m->kind == CHG_INSERT)
	{
		row = t->batch_inserts ? batch_slot(t) : t->newslot;
		fill_slot(row, r, &m->new_tuple, NULL, false);
	}
	else
	{
		/* without an old key the new row carries it (key unchanged) */
		fill_slot(t->keyslot, r, m->old_kind == '-' ? &m->new_tuple : &m->old_tuple,
				  NULL, true);
	}
	if (state->collect || RaftRepairInWindow())
	{
		TupleTableSlot *old_key = m->kind == CHG_INSERT ? NULL : t->keyslot;
		TupleTableSlot *new_key = NULL;

		if (m->kind == CHG_INSERT)
			new_key = row;
		else if (m->kind == CHG_UPDATE && m->old_kind == '-')
			new_key = t->keyslot;
		else if (m->kind == CHG_UPDATE)
		{
			new_key = t->new_key;
			fill_slot(new_key, r, &m->new_tuple, NULL, true);
		}
		if (state->collect)
			RaftRepairCollectRow(t->rel, old_key, new_key);
		if (state->collect || RaftRepairCoversRow(t->rel, old_key, new_key))
			return;
	}

	if (m->kind == CHG_INSERT && t->batch_inserts)
	{
		/* before the batch is written, which empties the slot */
		mark_sequences(state, r, row);
		batch_insert(t, row, tuple_bytes(&m->new_tuple));
	}
	else if (m->kind == CHG_INSERT)
	{
		ExecSimpleRelationInsert(t->rri, t->estate, row);
		mark_sequences(state, r, row);
	}
	else
	{
		EPQState	epq;

		if (!find_row(t, r, t->keyslot, t->local))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the row to %s in %s is missing here",
							m->kind == CHG_UPDATE ? "update" : "delete", r->name),
					 errdetail("The members' copies of the table differ.")));
		EvalPlanQualInit(&epq, t->estate, NULL, NIL, -1);
		if (m->kind == CHG_UPDATE)
		{
			fill_slot(t->newslot, r, &m->new_tuple, t->local, false);
			ExecSimpleRelationUpdate(t->rri, t->estate, &epq, t->local, t->newslot);
			mark_sequences(state, r, t->newslot);
		}
		else
			ExecSimpleRelationDelete(t->rri, t->estate, &epq, t->local);
		EvalPlanQualEnd(&epq);
		/* the found row's buffer stays pinned no longer than the change */
		ExecClearTuple(t->local);
	}
	ResetPerTupleExprContext(t->estate);
}

static void
apply_truncate(ApplyState *state, const chg_message *m)
{
	List	   *rels = NIL;
	List	   *relids = NIL;
	List	   *relids_logged = NIL;
	ListCell   *lc;
	uint32		i;

	for (i = 0; i < m->nrels; i++)
	{
		ApplyRelation *r = find_relation(state, chg_truncate_relid(m, i));
		Relation	rel = table_open(r->localid, AccessExclusiveLock);

		if (state->collect)
			RaftRepairCollectTable(rel);
		if (state->collect || RaftRepairCoversTable(rel))
		{
			table_close(rel, NoLock);
			continue;
		}
		rels = lappend(rels, rel);
		relids = lappend_oid(relids, r->localid);
		if (RelationIsLogicallyLogged(rel))
			relids_logged = lappend_oid(relids_logged, r->localid);
		/* RESTART IDENTITY: what was written before no longer counts */
		if (m->truncate_flags & 2)
		{
			int			k;

			for (k = 0; k < r->nseqs; k++)
				state->sequence_marks = list_delete_ptr(state->sequence_marks,
														find_mark(state, r->seq_oids[k]));
		}
	}
	if (rels == NIL)
		return;
	ExecuteTruncateGuts(rels, relids, relids_logged,
						(m->truncate_flags & 1) ? DROP_CASCADE : DROP_RESTRICT,
						(m->truncate_flags & 2) != 0);
	foreach(lc, rels)
		table_close(lfirst(lc), NoLock);
}

/* ----------------------------------------------------------------
 * Applying a transaction's stream, piece by piece
 * ----------------------------------------------------------------
 */

struct RaftApplyState
{
	ApplyState	apply;
	chg_arrays	arrays;
	StringInfo	carry;			/* a message begun in an earlier piece */
	TimestampTz commit_time;	/* of the commit message, once seen */
};

/*
 * Starts applying one transaction's stream in the current transaction.
 * Everything lives in a context under parent: TopTransactionContext frees
 * it whether the transaction commits or aborts.
 */
RaftApplyState *
RaftApplyBegin(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "pg_raft apply",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	RaftApplyState *state = palloc0(sizeof(RaftApplyState));

	state->apply.stream_cxt = cxt;
	state->apply.change_cxt = AllocSetContextCreate(cxt, "pg_raft apply change",
													ALLOCSET_DEFAULT_SIZES);
	state->carry = makeStringInfo();
	RaftChangeArraysInit(&state->arrays);
	MemoryContextSwitchTo(old);
	return state;
}

/* Says, in an error's context, which table a change was for. */
static void
change_error_callback(void *arg)
{
	const ApplyRelation *r = arg;

	errcontext("a change to table %s", r->name);
}

static void
apply_message(RaftApplyState *state, const chg_message *m)
{
	MemoryContext old;
	ErrorContextCallback errcallback;

	CHECK_FOR_INTERRUPTS();
	old = MemoryContextSwitchTo(state->apply.change_cxt);
	/* constraints and index expressions may run queries: give them a snapshot */
	PushActiveSnapshot(GetTransactionSnapshot());
	if (m->kind != CHG_INSERT && m->kind != CHG_UPDATE && m->kind != CHG_DELETE)
		target_close(&state->apply);
	switch (m->kind)
	{
		case CHG_RELATION:
			describe(&state->apply, m);
			break;
		case CHG_INSERT:
		case CHG_UPDATE:
		case CHG_DELETE:
			errcallback.callback = change_error_callback;
			errcallback.arg = find_relation(&state->apply, m->relid);
			errcallback.previous = error_context_stack;
			error_context_stack = &errcallback;
			apply_row_change(&state->apply, m, errcallback.arg);
			error_context_stack = errcallback.previous;
			break;
		case CHG_TRUNCATE:
			apply_truncate(&state->apply, m);
			break;
		case CHG_DDL:
			if (state->apply.collect)
				ereport(WARNING,
						(errmsg("a transaction that never reached the raft log changed the schema here"),
						 errdetail("The statement was: %.*s", (int) m->statement.len,
								   m->statement.data),
						 errhint("A repair replaces rows, not the schema: if the schema differs from the leader's, run raft.recopy() on this member.")));
			else
				RaftDdlReplay(m);
			break;
		case CHG_SEQUENCE:
			if (!state->apply.collect)
				RaftSequenceApply(m);
			break;
		case CHG_COMMIT:
			state->commit_time = m->commit_time;
			break;
		default:
			break;				/* version, begin: delimiters */
	}
	PopActiveSnapshot();
	MemoryContextSwitchTo(old);
	MemoryContextReset(state->apply.change_cxt);
	CommandCounterIncrement();
}

/*
 * Applies the messages of the next piece of the stream.  A message that
 * goes on in the next piece waits for it.
 */
void
RaftApplyPiece(RaftApplyState *state, const uint8 *buf, size_t len)
{
	size_t		offset = 0;

	if (state->carry->len > 0)
	{
		MemoryContext old = MemoryContextSwitchTo(state->apply.stream_cxt);

		appendBinaryStringInfo(state->carry, (const char *) buf, (int) len);
		MemoryContextSwitchTo(old);
		buf = (const uint8 *) state->carry->data;
		len = state->carry->len;
	}
	while (offset < len)
	{
		chg_message m;
		size_t		consumed;
		int			rc = chg_read(buf + offset, len - offset, &state->arrays,
								  &m, &consumed);

		if (rc == CHG_ERR_TRUNCATED)
			break;
		if (rc != CHG_OK)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid change stream at byte %zu: %s",
							offset, chg_strerror(rc))));
		apply_message(state, &m);
		offset += consumed;
	}
	/*
	 * What the caller does between pieces finds every row in its table, and
	 * no page pinned: a stream applied as it comes may wait long for its next
	 * piece.
	 */
	flush_inserts(state->apply.target);
	if (state->apply.target != NULL && state->apply.target->bistate != NULL)
		ReleaseBulkInsertStatePin(state->apply.target->bistate);
	if (offset == len)
		resetStringInfo(state->carry);
	else if (buf == (const uint8 *) state->carry->data)
	{
		/*
		 * The unfinished message is in carry already: drop what was
		 * applied in place.  Copying carry on every piece made a value of
		 * n bytes cost O(n^2) bytes copied.
		 */
		if (offset > 0)
		{
			memmove(state->carry->data, state->carry->data + offset, len - offset);
			state->carry->len = (int) (len - offset);
			state->carry->data[state->carry->len] = '\0';
		}
	}
	else
	{
		MemoryContext old = MemoryContextSwitchTo(state->apply.stream_cxt);

		appendBinaryStringInfo(state->carry, (const char *) buf + offset,
							   (int) (len - offset));
		MemoryContextSwitchTo(old);
	}
}

/* Ends the stream: it must not stop inside a message. */
void
RaftApplyEnd(RaftApplyState *state)
{
	ListCell   *lc;

	if (state->carry->len > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("change stream ends inside a message")));
	if (state->apply.target != NULL)
	{
		/* its AFTER triggers may run queries */
		PushActiveSnapshot(GetTransactionSnapshot());
		target_close(&state->apply);
		PopActiveSnapshot();
	}
	foreach(lc, state->apply.sequence_marks)
	{
		SequenceMark *mark = lfirst(lc);

		RaftAdvanceSequence(mark->seqoid, mark->lowest, mark->highest);
	}
	MemoryContextDelete(state->apply.stream_cxt);
}

/*
 * RaftApplyCollect
 *		Reads a change stream without applying it, handing the rows and
 *		tables it touches to the repair set (repair.c).  Caller is in a
 *		transaction.
 */
void
RaftApplyCollect(const uint8 *stream, size_t len)
{
	RaftApplyState *state = RaftApplyBegin(CurrentMemoryContext);

	state->apply.collect = true;
	RaftApplyPiece(state, stream, len);
	RaftApplyEnd(state);
}

/*
 * raft.apply_changes(stream bytea): applies a stream of the output plugin
 * in the current transaction.  Superusers only: it writes any table.
 */
Datum
pg_raft_apply_changes(PG_FUNCTION_ARGS)
{
	bytea	   *stream = PG_GETARG_BYTEA_PP(0);
	RaftApplyState *state = RaftApplyBegin(CurrentMemoryContext);

	RaftApplyPiece(state, (const uint8 *) VARDATA_ANY(stream),
				   VARSIZE_ANY_EXHDR(stream));
	RaftApplyEnd(state);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * The apply worker
 * ----------------------------------------------------------------
 */

/* Where the apply worker is in the log. */
typedef struct ApplyWorker
{
	raft_id_t	self;			/* entries of this origin are here already */
	RaftCopyStart copy;			/* join_cluster's copy holds these too */

	/*
	 * Every entry of a transaction the copy holds is at or before this
	 * index; a stream of copy.origin that begins there may be one of them
	 * (sent again from its first block by a new decoding process), which
	 * only its commit's LSN tells.  0 if unknown.
	 */
	uint64		copy_confirmed_index;
	uint64		next_index;		/* the entry expected next */
	uint64		done_index;		/* every entry up to here is applied */
	TimestampTz done_commit_time;
	/* the transaction being applied, if any */
	RaftApplyState *txn;
	uint64		txn_term;
	uint64		txn_first_index;
	uint64		durable_index;	/* every entry up to here survives a crash */
	uint64		last_term;		/* term of the last entry taken */
	/* this node's last own transaction seen committed in the log */
	uint64		own_committed_lsn;
	bool		own_committed_unsaved;
	TimestampTz durable_written;	/* when the progress file was last written */
	/* its pieces so far, when it spans entries (see "The spool") */
	int			spool_fd;
	uint64		spool_bytes;
	bool		spool_unsynced;
	uint64		spooled_to;		/* last index whose piece is durable there */
	/* applying inside a repair's transaction (apply_in_repair) */
	bool		in_repair;
	/* room for one entry of the apply queue */
	uint8	   *buf;
	uint32		cap;
} ApplyWorker;

/* What the spool holds; replaced atomically after the spool is fsynced. */
typedef struct SpoolState
{
	uint64		first_index;	/* the transaction's first entry */
	uint64		term;			/* its term */
	uint64		spooled_to;		/* last entry whose piece is in the spool */
	uint64		bytes;			/* the spool's valid length */
} SpoolState;

#define SPOOL_FILE RAFT_STORAGE_DIR "/apply_spool"
/* entries skipped (this node's own, or in the join's copy) up to an index */
#define PROGRESS_FILE "apply_progress"
#define PROGRESS_EVERY_ENTRIES 1024

typedef struct ApplyProgress
{
	uint64		index;
	uint64		own_committed_lsn;
} ApplyProgress;
#define PROGRESS_EVERY_MS 1000
/*
 * The least time between two attempts to copy the leader's data after one
 * failed: for every table, and for the rows a repair needs.
 */
#define RESYNC_RETRY_MS 5000
#define REPAIR_RETRY_MS 1000
/* how long the old slot's settling waits for its holder to let it go */
#define SETTLE_WAIT_MS 5000
#define SPOOL_STATE_FILE "apply_spool_state"

static ApplyWorker AW;

static void make_progress_durable(bool force);
static void apply_worker_run(void) pg_attribute_noreturn();
static void copy_again(const char *why);
static void resync(const char *why);
static bool repair(void);
static void log_resynchronised(void);
static void clear_apply_error(void);
static void streams_sync(void);

static void
apply_worker_detach(int code, Datum arg)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.apply_pid = 0;
	RaftShmem->apply.apply_latch = NULL;
	LWLockRelease(RaftShmem->lock);
}

/*
 * Tells the raft worker as whom to open its replication connection to this
 * server (capture.c): the bootstrap superuser, which exists on every
 * instance.  Only a backend connected to a database can look it up.
 */
static void
publish_superuser_name(void)
{
	char	   *name;

	StartTransactionCommand();
	name = GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false);
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	strlcpy(RaftShmem->superuser_name, name, NAMEDATALEN);
	LWLockRelease(RaftShmem->lock);
	CommitTransactionCommand();
}

/*
 * Waits for the latch or a second, whichever comes first; reloads the
 * configuration if asked to.
 */
static void
wait_a_second(void)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 1000L, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/*
 * Waits until the node belongs to a cluster and no copy of raft.join_cluster
 * runs; returns its node id.
 */
static raft_id_t
wait_for_cluster(void)
{
	for (;;)
	{
		raft_id_t	self;
		bool		copying;

		LWLockAcquire(RaftShmem->lock, LW_SHARED);
		self = RaftShmem->cluster_id != 0 ? RaftShmem->node_id : 0;
		copying = RaftShmem->copying;
		LWLockRelease(RaftShmem->lock);
		if (self != 0 && !copying)
			return self;
		wait_a_second();
	}
}

/* Whether this instance belongs to a cluster (pg_raft/identity). */
static bool
is_member(void)
{
	bool		member;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	member = RaftShmem->member;
	LWLockRelease(RaftShmem->lock);
	return member;
}

/*
 * An instance that no longer belongs to a cluster (its pg_raft/ directory
 * was removed after raft.remove_node) would wait forever at every COMMIT
 * while synchronous_standby_names names pg_raft, as create_cluster and
 * join_cluster set it with ALTER SYSTEM: this resets it.  Only a backend
 * connected to a database, as a superuser, can.  A create_cluster or
 * join_cluster that runs meanwhile makes the instance a member before it
 * sets the value: then it is set back.
 */
static void
forget_synchronous_standby(void)
{
	const char *current = GetConfigOption("synchronous_standby_names", false, false);
	char	   *source = NULL;

	if (is_member() || current == NULL ||
		strcmp(current, RAFT_CAPTURE_APPLICATION_NAME) != 0)
		return;
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute("SELECT sourcefile FROM pg_settings WHERE name = 'synchronous_standby_names'",
					true, 1) == SPI_OK_SELECT && SPI_processed == 1)
	{
		char	   *file = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (file != NULL)
			source = MemoryContextStrdup(TopTransactionContext, file);
	}
	SPI_finish();
	PopActiveSnapshot();
	if (source == NULL || strstr(source, PG_AUTOCONF_FILENAME) == NULL)
	{
		ereport(WARNING,
				(errmsg("\"synchronous_standby_names\" names pg_raft, but this instance does not belong to a raft cluster"),
				 errdetail("Every commit here waits for a standby that will not come."),
				 errhint("Remove the setting from \"%s\".", source ? source : "postgresql.conf")));
		CommitTransactionCommand();
		return;
	}
	RaftSetSynchronousStandbyNames(NULL);
	CommitTransactionCommand();
	if (is_member())
	{
		StartTransactionCommand();
		RaftSetSynchronousStandbyNames(RAFT_CAPTURE_APPLICATION_NAME);
		CommitTransactionCommand();
		return;
	}
	ereport(LOG,
			(errmsg("pg_raft reset \"synchronous_standby_names\""),
			 errdetail("This instance no longer belongs to a raft cluster; its commits need not wait for the pg_raft standby.")));
}

/* ----------------------------------------------------------------
 * The spool
 *
 * A transaction that spans several entries is applied piece by piece in
 * one local transaction that commits at its last entry.  Meanwhile its
 * pieces are also written to pg_raft/apply_spool, and once they are durable
 * the raft worker may compact the entries away: the log never has to hold
 * a whole transaction, however large.  After a crash the open local
 * transaction is gone; the apply worker applies the spool again and goes
 * on after the last entry spooled.  The spool is dropped when the
 * transaction commits or is discarded.
 * ----------------------------------------------------------------
 */

static void
spool_remove(void)
{
	if (AW.spool_fd >= 0)
		close(AW.spool_fd);
	AW.spool_fd = -1;
	AW.spool_bytes = 0;
	AW.spool_unsynced = false;
	AW.spooled_to = 0;
	RaftStorageRemoveFile(SPOOL_STATE_FILE);
	if (unlink(SPOOL_FILE) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", SPOOL_FILE)));
}

/* Appends a piece to the spool (durable at the next spool_sync). */
static void
spool_append(const uint8 *piece, uint32 len)
{
	if (AW.spool_fd < 0)
	{
		AW.spool_fd = BasicOpenFile(SPOOL_FILE, O_RDWR | O_CREAT | O_TRUNC | PG_BINARY);
		if (AW.spool_fd < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create file \"%s\": %m", SPOOL_FILE)));
		AW.spool_bytes = 0;
	}
	if (pg_pwrite(AW.spool_fd, &len, sizeof(len), AW.spool_bytes) != sizeof(len) ||
		pg_pwrite(AW.spool_fd, piece, len, AW.spool_bytes + sizeof(len)) != len)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write to file \"%s\": %m", SPOOL_FILE)));
	AW.spool_bytes += sizeof(len) + len;
	AW.spool_unsynced = true;
}

/* Makes the spool durable up to the entry before next_index. */
static void
spool_sync(void)
{
	SpoolState state;

	if (!AW.spool_unsynced)
		return;
	/* a restart goes on after the spool: the streams' entries before it too */
	streams_sync();
	if (pg_fsync(AW.spool_fd) != 0)
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", SPOOL_FILE)));
	state.first_index = AW.txn_first_index;
	state.term = AW.txn_term;
	state.spooled_to = AW.next_index - 1;
	state.bytes = AW.spool_bytes;
	RaftStorageWriteFile(SPOOL_STATE_FILE, &state, sizeof(state));
	AW.spooled_to = state.spooled_to;
	AW.spool_unsynced = false;
}

/*
 * After a restart: applies again the spooled pieces of a transaction that
 * did not commit, in a new local transaction, and returns the index to
 * go on from; progress is the index of the last transaction committed.
 * Returns 0 when there is nothing to resume.
 */
static uint64
spool_resume(uint64 progress)
{
	SpoolState	state;
	uint64		at = 0;

	if (!RaftStorageReadStruct(SPOOL_STATE_FILE, &state, sizeof(state)))
		return 0;
	if (state.first_index <= progress)
	{
		/* the transaction committed after all: the spool is old */
		spool_remove();
		return 0;
	}
	AW.spool_fd = BasicOpenFile(SPOOL_FILE, O_RDWR | PG_BINARY);
	if (AW.spool_fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", SPOOL_FILE)));
	StartTransactionCommand();
	AW.txn = RaftApplyBegin(TopTransactionContext);
	AW.txn_term = state.term;
	AW.txn_first_index = state.first_index;
	RaftRepairResumeTransaction(state.first_index);
	while (at < state.bytes)
	{
		uint32		piece_len;
		uint8	   *piece;

		if (pg_pread(AW.spool_fd, &piece_len, sizeof(piece_len), at) != sizeof(piece_len) ||
			piece_len > RAFT_MAX_ENTRY_BYTES ||
			at + sizeof(piece_len) + piece_len > state.bytes)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("pg_raft file \"%s\" is corrupted at offset %llu",
							SPOOL_FILE, (unsigned long long) at)));
		piece = palloc(Max(piece_len, 1));
		if (pg_pread(AW.spool_fd, piece, piece_len, at + sizeof(piece_len)) != piece_len)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", SPOOL_FILE)));
		RaftApplyPiece(AW.txn, piece, piece_len);
		pfree(piece);
		at += sizeof(piece_len) + piece_len;
	}
	AW.spool_bytes = state.bytes;
	AW.spooled_to = state.spooled_to;
	ereport(LOG,
			(errmsg("pg_raft apply worker resumes the transaction that began at raft index %llu from its spool",
					(unsigned long long) state.first_index)));
	return state.spooled_to + 1;
}

/* ----------------------------------------------------------------
 * Streamed transactions
 *
 * A transaction the leader streamed while it ran (changes/changes.h)
 * arrives in blocks, interleaved with other transactions, long before its
 * commit.  Its blocks are kept aside in a file of its own,
 * pg_raft/stream_<xid>, with the offsets at which its subtransactions
 * begin; nothing of it touches the tables.  An abort of a subtransaction
 * cuts the file there, an abort of the whole transaction drops it, and so
 * does a first block of it coming again (the leader's capture began
 * again) or an entry of a later term (its leader lost the leadership
 * before committing it).  Its commit, an entry of its own, applies the
 * file in one local transaction at the commit's place in the log, under
 * the origin's progress: in commit order.
 *
 * Once its piece is in the file, an entry of a stream counts as applied:
 * the log may be compacted past it.  So the files are made durable, with
 * their state in pg_raft/stream_<xid>.state, before any later local
 * commit or progress can be: after a crash the worker goes on after the
 * last entry applied, passes over the entries each file already holds,
 * and cuts each file back to the length its state says.
 * ----------------------------------------------------------------
 */

/* Where a subtransaction's changes begin in its stream's file. */
typedef struct SubxactStart
{
	uint32		subxid;
	uint32		padding;
	uint64		offset;
} SubxactStart;

/* The state file of a kept stream, before its SubxactStart array. */
typedef struct StreamFileState
{
	uint32		xid;
	uint32		origin;
	uint64		term;
	uint64		bytes;			/* the file's valid length */
	uint64		kept_to;		/* the last entry whose piece it holds */
	uint64		committing_at;	/* its commit's entry, while that applies */
	uint32		nsubxacts;
	uint32		padding;
} StreamFileState;

/* A streamed transaction kept aside until it commits or aborts. */
typedef struct KeptStream
{
	StreamFileState st;
	SubxactStart *subxacts;		/* st.nsubxacts of them ... */
	uint32		subxacts_room;	/* ... in room for this many */
	bool		whole;			/* its first block was kept: so is the rest */
	bool		dirty;			/* written to since it was last synced */
	bool		applied_in_repair;	/* removed once the repair commits */
	File		file;			/* when whole */
} KeptStream;

#define STREAM_READ_BYTES (1024 * 1024)

static List *kept_streams = NIL;
static MemoryContext streams_cxt = NULL;

/*
 * The stream applied while it runs, in the open local transaction: one
 * whose first block came while nothing else was open.  Anything else that
 * needs a local transaction first abandons it; it is then applied from its
 * file at its commit.
 */
static KeptStream *eager_stream = NULL;
static RaftApplyState *eager_apply = NULL;

/* Rolls back what was applied of the eager stream; its file stays. */
static void
eager_abandon(const char *why)
{
	if (eager_stream == NULL)
		return;
	ereport(DEBUG1,
			(errmsg_internal("pg_raft stops applying streamed transaction %u while it runs: %s",
							 eager_stream->st.xid, why)));
	AbortCurrentTransaction();
	eager_stream = NULL;
	eager_apply = NULL;
}

/*
 * Starts applying a stream as its blocks come (its first at entry index),
 * when no other transaction is open here, no repair could need its changes
 * judged at its commit, and this node's copy cannot hold it already
 * (ApplyWorker.copy_confirmed_index).
 */
static void
eager_begin(KeptStream *s, uint64 index)
{
	if (eager_stream != NULL || AW.txn != NULL || AW.in_repair ||
		RaftRepairPending() || RaftRepairInWindow() ||
		(s->st.origin == AW.copy.origin && index <= AW.copy_confirmed_index))
		return;
	StartTransactionCommand();
	eager_apply = RaftApplyBegin(TopTransactionContext);
	eager_stream = s;
}

/*
 * Opens the local transaction a transaction of the log applies in (a
 * subtransaction of a repair's), once the eager stream gave way (why).
 * The origin's progress is about to move past entries of this node's own:
 * what they said is recorded first (see check_divergence); inside a
 * repair nothing is recorded before the repair commits.
 */
static RaftApplyState *
begin_local_transaction(const char *why)
{
	eager_abandon(why);
	if (AW.in_repair)
		BeginInternalSubTransaction(NULL);
	else
	{
		if (AW.own_committed_unsaved)
			make_progress_durable(true);
		StartTransactionCommand();
	}
	return RaftApplyBegin(TopTransactionContext);
}

static void
stream_file_names(uint32 xid, char *spool, char *state)
{
	snprintf(spool, MAXPGPATH, "%s/stream_%u", RAFT_STORAGE_DIR, xid);
	snprintf(state, MAXPGPATH, "stream_%u.state", xid);
}

static KeptStream *
stream_find(uint32 xid)
{
	ListCell   *lc;

	foreach(lc, kept_streams)
	{
		KeptStream *s = lfirst(lc);

		if (s->st.xid == xid)
			return s;
	}
	return NULL;
}

/* Opens a stream's file; O_TRUNC for a new one. */
static void
stream_open(KeptStream *s, int flags)
{
	char		spool[MAXPGPATH];
	char		state[MAXPGPATH];

	stream_file_names(s->st.xid, spool, state);
	s->file = PathNameOpenFile(spool, O_RDWR | PG_BINARY | flags);
	if (s->file < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", spool)));
}

/*
 * Starts keeping a stream.  One whose first block was not seen here (this
 * node copied the data meanwhile) is only noted: its commit must find the
 * transaction in the copy, or have the data copied again.
 */
static KeptStream *
stream_create(uint32 xid, uint64 term, raft_id_t origin, bool whole)
{
	MemoryContext old;
	KeptStream *s;

	if (streams_cxt == NULL)
		streams_cxt = AllocSetContextCreate(TopMemoryContext, "pg_raft kept streams",
											ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(streams_cxt);
	s = palloc0(sizeof(KeptStream));
	s->st.xid = xid;
	s->st.origin = origin;
	s->st.term = term;
	s->whole = whole;
	s->file = -1;
	kept_streams = lappend(kept_streams, s);
	MemoryContextSwitchTo(old);
	if (whole)
	{
		stream_open(s, O_CREAT | O_TRUNC);
		s->dirty = true;
	}
	return s;
}

/* Forgets a stream, leaving its files. */
static void
stream_forget(KeptStream *s)
{
	if (s->file >= 0)
		FileClose(s->file);
	kept_streams = list_delete_ptr(kept_streams, s);
	if (s->subxacts != NULL)
		pfree(s->subxacts);
	pfree(s);
}

/* Forgets a stream and removes its files. */
static void
stream_drop(KeptStream *s)
{
	char		spool[MAXPGPATH];
	char		state[MAXPGPATH];

	if (s == eager_stream)
		eager_abandon("it is dropped");
	stream_file_names(s->st.xid, spool, state);
	stream_forget(s);
	/* the data first: a state without its data is a drop cut short */
	if (unlink(spool) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", spool)));
	RaftStorageRemoveFile(state);
}

/* Drops every kept stream: the data was copied, or their leader lost. */
static void
streams_drop_all(const char *why)
{
	if (kept_streams != NIL)
		ereport(LOG,
				(errmsg("pg_raft drops %d streamed transactions kept aside: %s",
						list_length(kept_streams), why)));
	while (kept_streams != NIL)
		stream_drop(linitial(kept_streams));
}

/* Drops the streams of terms before term: their leader lost them. */
static void
streams_drop_before(uint64 term)
{
	List	   *streams;
	ListCell   *lc;

	if (kept_streams == NIL)
		return;
	/* stream_drop changes the list: go through a copy */
	streams = list_copy(kept_streams);
	foreach(lc, streams)
	{
		KeptStream *s = lfirst(lc);

		if (s->st.term >= term || s->applied_in_repair)
			continue;
		ereport(LOG,
				(errmsg("pg_raft drops streamed transaction %u of term %llu: its leader lost the leadership before it committed",
						s->st.xid, (unsigned long long) s->st.term)));
		stream_drop(s);
	}
	list_free(streams);
}

static void
stream_write(KeptStream *s, const uint8 *data, uint32 len)
{
	if (len == 0)
		return;
	errno = 0;
	if (FileWrite(s->file, (char *) data, len, s->st.bytes, PG_WAIT_EXTENSION) != (int) len)
	{
		/* a short write sets no errno: the disk is full */
		if (errno == 0)
			errno = ENOSPC;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not write to file \"%s\": %m", FilePathName(s->file))));
	}
	s->st.bytes += len;
	s->dirty = true;
	if (s == eager_stream)
		RaftApplyPiece(eager_apply, data, len);
}

/* Notes where a subtransaction's changes begin, the first time. */
static void
stream_subxact_starts(KeptStream *s, uint32 subxid)
{
	uint32		i;

	if (subxid == s->st.xid)
		return;
	for (i = 0; i < s->st.nsubxacts; i++)
		if (s->subxacts[i].subxid == subxid)
			return;
	if (s->st.nsubxacts == s->subxacts_room)
	{
		s->subxacts_room = Max(16, s->subxacts_room * 2);
		s->subxacts = s->subxacts == NULL ?
			MemoryContextAlloc(streams_cxt, s->subxacts_room * sizeof(SubxactStart)) :
			repalloc(s->subxacts, s->subxacts_room * sizeof(SubxactStart));
	}
	s->subxacts[s->st.nsubxacts].subxid = subxid;
	s->subxacts[s->st.nsubxacts].padding = 0;
	s->subxacts[s->st.nsubxacts].offset = s->st.bytes;
	s->st.nsubxacts++;
	s->dirty = true;
}

/*
 * A subtransaction aborted: its changes, and those of its own
 * subtransactions, are everything from its first change on (a session
 * runs one subtransaction at a time), so the file is cut there.
 */
static void
stream_subxact_aborts(KeptStream *s, uint32 subxid)
{
	uint32		i;

	for (i = 0; i < s->st.nsubxacts; i++)
		if (s->subxacts[i].subxid == subxid)
			break;
	if (i == s->st.nsubxacts)
		return;					/* none of its changes were streamed */
	if (s == eager_stream)
		eager_abandon("a subtransaction of it aborted");
	s->st.bytes = s->subxacts[i].offset;
	s->st.nsubxacts = i;
	s->dirty = true;
	if (FileTruncate(s->file, s->st.bytes, PG_WAIT_EXTENSION) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not truncate file \"%s\": %m", FilePathName(s->file))));
}

/* Makes a stream's file and its state durable. */
static void
stream_sync(KeptStream *s)
{
	char		spool[MAXPGPATH];
	char		state[MAXPGPATH];
	Size		len = sizeof(StreamFileState) + s->st.nsubxacts * sizeof(SubxactStart);
	char	   *buf;

	if (!s->dirty || !s->whole)
		return;
	stream_file_names(s->st.xid, spool, state);
	if (FileSync(s->file, PG_WAIT_EXTENSION) != 0)
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 errmsg("could not fsync file \"%s\": %m", FilePathName(s->file))));
	buf = palloc(len);
	memcpy(buf, &s->st, sizeof(StreamFileState));
	if (s->st.nsubxacts > 0)
		memcpy(buf + sizeof(StreamFileState), s->subxacts,
			   s->st.nsubxacts * sizeof(SubxactStart));
	RaftStorageWriteFile(state, buf, len);
	pfree(buf);
	s->dirty = false;
}

/*
 * Makes every kept stream durable: before anything that lets the worker
 * start after their entries (a local commit, the progress file).
 */
static void
streams_sync(void)
{
	ListCell   *lc;

	foreach(lc, kept_streams)
		stream_sync(lfirst(lc));
}

/*
 * After a restart: takes up the streams kept before, up to what their
 * state files say.  One whose commit was applying when the worker stopped
 * is removed if that commit is in progress, kept otherwise.  A file
 * without a state was never synced (its entries all come again), and a
 * state without its file is a drop cut short: both go.
 */
static void
streams_load(uint64 progress)
{
	DIR		   *dir;
	struct dirent *de;
	List	   *states = NIL;
	List	   *spools = NIL;
	ListCell   *lc;

	while (kept_streams != NIL)
		stream_forget(linitial(kept_streams));
	dir = AllocateDir(RAFT_STORAGE_DIR);
	while ((de = ReadDir(dir, RAFT_STORAGE_DIR)) != NULL)
	{
		uint32		xid;
		int			end = 0;

		if (sscanf(de->d_name, "stream_%u%n", &xid, &end) != 1)
			continue;
		if (end == (int) strlen(de->d_name))
			spools = lappend_oid(spools, xid);
		else if (strcmp(de->d_name + end, ".state") == 0)
			states = lappend_oid(states, xid);
	}
	FreeDir(dir);

	foreach(lc, spools)
	{
		char		spool[MAXPGPATH];
		char		state[MAXPGPATH];

		stream_file_names(lfirst_oid(lc), spool, state);
		if (!list_member_oid(states, lfirst_oid(lc)) && unlink(spool) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not remove file \"%s\": %m", spool)));
	}
	foreach(lc, states)
	{
		char		spool[MAXPGPATH];
		char		state[MAXPGPATH];
		void	   *data;
		size_t		len;
		StreamFileState st;
		KeptStream *s;

		stream_file_names(lfirst_oid(lc), spool, state);
		if (!list_member_oid(spools, lfirst_oid(lc)))
		{
			RaftStorageRemoveFile(state);
			continue;
		}
		if (!RaftStorageReadFile(state, &data, &len))
			continue;
		memcpy(&st, data, Min(len, sizeof(st)));
		if (len < sizeof(st) ||
			len != sizeof(st) + (Size) st.nsubxacts * sizeof(SubxactStart) ||
			st.xid != lfirst_oid(lc))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raft state file \"%s/%s\" is corrupted", RAFT_STORAGE_DIR, state)));
		s = stream_create(st.xid, st.term, st.origin, false);
		s->st = st;
		s->whole = true;
		if (st.committing_at != 0 && st.committing_at <= progress)
		{
			/* it committed: only the files were left */
			pfree(data);
			stream_drop(s);
			continue;
		}
		s->st.committing_at = 0;
		if (st.nsubxacts > 0)
		{
			s->subxacts_room = st.nsubxacts;
			s->subxacts = MemoryContextAlloc(streams_cxt, st.nsubxacts * sizeof(SubxactStart));
			memcpy(s->subxacts, (char *) data + sizeof(st), st.nsubxacts * sizeof(SubxactStart));
		}
		pfree(data);
		stream_open(s, 0);
		/* what was written after the last sync is written again */
		if (FileTruncate(s->file, st.bytes, PG_WAIT_EXTENSION) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not truncate file \"%s\": %m", spool)));
		ereport(LOG,
				(errmsg("pg_raft apply worker takes up streamed transaction %u from its file: %llu bytes, up to raft index %llu",
						st.xid, (unsigned long long) st.bytes,
						(unsigned long long) st.kept_to)));
	}
	list_free(states);
	list_free(spools);
}

/*
 * Applies a streamed transaction at its commit: its kept file, in one
 * local transaction (a subtransaction of a repair's) that moves the
 * origin's progress to the commit's entry.  The files go once the commit
 * is on disk; until then their state names the commit's entry, so that a
 * restart knows whether it happened.
 */
static void
stream_apply_commit(const RaftQueuedEntry *e, KeptStream *s, const chg_message *commit)
{
	RaftApplyState *txn;
	uint8	   *buf;
	uint64		at = 0;

	if (s == eager_stream)
	{
		/* applied already, in the open transaction */
		txn = eager_apply;
		eager_stream = NULL;
		eager_apply = NULL;
		at = s->st.bytes;
		if (AW.own_committed_unsaved)
			make_progress_durable(true);
	}
	else
		txn = begin_local_transaction("another transaction commits first");
	buf = palloc(STREAM_READ_BYTES);
	while (at < s->st.bytes)
	{
		int			want = (int) Min(STREAM_READ_BYTES, s->st.bytes - at);
		int			got = FileRead(s->file, (char *) buf, want, at, PG_WAIT_EXTENSION);

		if (got < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read the file of streamed transaction %u: %m",
							s->st.xid)));
		if (got != want)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the file of streamed transaction %u ends at byte %llu, before the %llu bytes its state says",
							s->st.xid, (unsigned long long) (at + got),
							(unsigned long long) s->st.bytes)));
		RaftApplyPiece(txn, buf, want);
		at += want;
	}
	pfree(buf);
	txn->commit_time = commit->commit_time;
	AW.done_commit_time = commit->commit_time;
	RaftApplyEnd(txn);
	s->st.committing_at = e->index;
	s->dirty = true;
	if (AW.in_repair)
	{
		/* its files go when the repair commits */
		ReleaseCurrentSubTransaction();
		s->applied_in_repair = true;
		return;
	}
	streams_sync();
	replorigin_session_origin_lsn = e->index;
	replorigin_session_origin_timestamp = commit->commit_time;
	CommitTransactionCommand();
	pgstat_report_stat(false);
	XLogFlush(XactLastCommitEnd);
	stream_drop(s);
}

/* Removes the files of the streams a repair applied, once it committed. */
static void
streams_drop_applied_in_repair(void)
{
	List	   *streams = list_copy(kept_streams);
	ListCell   *lc;

	/* stream_drop changes the list: go through a copy */
	foreach(lc, streams)
	{
		KeptStream *s = lfirst(lc);

		if (s->applied_in_repair)
			stream_drop(s);
	}
	list_free(streams);
}

/* The entry that commits a streamed transaction. */
static void
stream_commit_entry(const RaftQueuedEntry *e, const chg_entry_header *header,
					const uint8 *piece, uint32 len)
{
	chg_message m;
	size_t		version_len;
	size_t		commit_len;
	KeptStream *s = stream_find(header->xid);

	if (chg_read(piece, len, NULL, &m, &version_len) != CHG_OK ||
		m.kind != CHG_VERSION ||
		chg_read(piece + version_len, len - version_len, NULL, &m, &commit_len) != CHG_OK ||
		m.kind != CHG_STREAM_COMMIT || m.xid != header->xid ||
		version_len + commit_len != len)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft entry %llu is not a valid commit of a streamed transaction",
						(unsigned long long) e->index)));
	/* it stands for the transaction, as a whole transaction's first entry */
	RaftRepairSeeEntry(e->index, e->term, true, header->origin, m.lsn);
	if (header->origin == AW.self)
	{
		if (m.lsn > AW.own_committed_lsn)
		{
			AW.own_committed_lsn = m.lsn;
			AW.own_committed_unsaved = true;
		}
		return;
	}
	if (header->origin == AW.copy.origin && m.lsn < AW.copy.lsn)
	{
		/* committed before the copy's snapshot */
		if (s != NULL)
			stream_drop(s);
		return;
	}
	/*
	 * A copy's snapshot waits for the transactions running on the leader
	 * (RaftLeaderSnapshot), so a stream that began before the copy
	 * committed before it: only lost files bring a commit without them.
	 */
	if (s == NULL || !s->whole)
	{
		if (s != NULL)
			stream_drop(s);
		if (!AW.in_repair)
			RaftRepairEverything();
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("streamed transaction %u commits at raft index %llu, but this node did not keep its first changes",
						header->xid, (unsigned long long) e->index),
				 errdetail("This node holds no file of the transaction's earlier blocks, so it cannot apply it."),
				 errhint("The apply worker copies the leader's data again.")));
	}
	stream_apply_commit(e, s, &m);
}

/*
 * Takes an entry of a streamed transaction: a piece of a block, an abort
 * or the commit.
 */
static void
apply_stream_entry(const RaftQueuedEntry *e, const chg_entry_header *header,
				   const uint8 *piece, uint32 len)
{
	KeptStream *s;
	size_t		offset = 0;

	if (header->flags & CHG_ENTRY_LAST)
	{
		stream_commit_entry(e, header, piece, len);
		return;
	}
	if (header->origin == AW.self)
		return;					/* decoded here: the data is here */
	s = stream_find(header->xid);
	if (s != NULL && s->whole && e->index <= s->st.kept_to)
		return;					/* in its file already: taken before a restart */

	/* an entry that begins at a message: the stream's own messages first */
	while ((header->flags & CHG_ENTRY_FIRST) && offset < len &&
		   (piece[offset] == CHG_VERSION || piece[offset] == CHG_STREAM_START ||
			piece[offset] == CHG_SUBTRANSACTION || piece[offset] == CHG_STREAM_ABORT))
	{
		chg_message m;
		size_t		consumed;
		int			rc = chg_read(piece + offset, len - offset, NULL, &m, &consumed);

		if (rc == CHG_OK && m.kind != CHG_VERSION && m.kind != CHG_SUBTRANSACTION &&
			m.xid != header->xid)
			rc = CHG_ERR_FIELD;
		if (rc != CHG_OK)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raft entry %llu holds an invalid stream message at byte %zu: %s",
							(unsigned long long) e->index, offset, chg_strerror(rc))));
		offset += consumed;
		switch (m.kind)
		{
			case CHG_STREAM_START:
				if (m.first_block && s != NULL)
					stream_drop(s);
				if (m.first_block || s == NULL)
					s = stream_create(header->xid, e->term, header->origin, m.first_block);
				if (m.first_block)
					eager_begin(s, e->index);
				break;
			case CHG_SUBTRANSACTION:
				if (s == NULL)
					s = stream_create(header->xid, e->term, header->origin, false);
				if (s->whole)
					stream_subxact_starts(s, m.subxid);
				break;
			case CHG_STREAM_ABORT:
				if (s != NULL && m.subxid == m.xid)
				{
					stream_drop(s);
					s = NULL;
				}
				else if (s != NULL && s->whole)
					stream_subxact_aborts(s, m.subxid);
				break;
			default:
				break;			/* the version */
		}
	}
	if (offset < len)
	{
		/* a block's changes, perhaps without its start here */
		if (s == NULL)
			s = stream_create(header->xid, e->term, header->origin, false);
		if (s->whole)
			stream_write(s, piece + offset, len - offset);
	}
	if (s != NULL && s->whole)
	{
		s->st.kept_to = e->index;
		s->dirty = true;
	}
}

/*
 * Reads where the last copy of the leader's data left off.  Returns false
 * when a copy did not finish: the tables hold part of the data.
 */
static bool
read_copy_start(void)
{
	RaftCopyStartFile file;
	void	   *data;
	size_t		len;

	memset(&AW.copy, 0, sizeof(AW.copy));
	AW.copy_confirmed_index = 0;
	if (RaftStorageFileExists(RAFT_COPY_PENDING_FILE))
		return false;
	if (!RaftStorageReadFile(RAFT_COPY_START_FILE, &data, &len))
		return true;
	/* a file of an earlier version holds the RaftCopyStart alone */
	if (len != sizeof(file) && len != sizeof(file.start))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s/%s\" has the wrong size",
						RAFT_STORAGE_DIR, RAFT_COPY_START_FILE),
				 errdetail("It holds %zu bytes, not %zu (or %zu, as written by earlier versions).",
						   len, sizeof(file), sizeof(file.start))));
	memset(&file, 0, sizeof(file));
	memcpy(&file, data, len);
	pfree(data);
	AW.copy = file.start;
	AW.copy_confirmed_index = file.confirmed_index;
	return true;
}

/*
 * The index up to which skipped entries were recorded (0 if none), and the
 * commit LSN of the last transaction of this node's own found committed in
 * the log by then.
 */
static uint64
read_progress_file(void)
{
	ApplyProgress progress;

	if (!RaftStorageReadStruct(PROGRESS_FILE, &progress, sizeof(progress)))
		return 0;
	AW.own_committed_lsn = progress.own_committed_lsn;
	return progress.index;
}

/* Sets up the replication origin, whose progress is the index applied. */
static void
attach_origin(void)
{
	RepOriginId origin;

	StartTransactionCommand();
	origin = replorigin_by_name(RAFT_ORIGIN_NAME, true);
	if (origin == InvalidRepOriginId)
		origin = replorigin_create(RAFT_ORIGIN_NAME);
	CommitTransactionCommand();
	replorigin_session_setup(origin);
	replorigin_session_origin = origin;
	/* the output plugin ships what other origins write, not this one's */
	pg_atomic_write_u32(&RaftShmem->apply_origin, origin);
}

/*
 * Asks the raft worker to serve the apply queue again from AW.next_index:
 * the entries taken before are dropped.
 */
static void
request_entries(void)
{
	Latch	   *raft_latch;

	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.from_index = AW.next_index;
	RaftShmem->apply.generation++;
	raft_latch = RaftShmem->worker_latch;
	LWLockRelease(RaftShmem->lock);
	if (raft_latch != NULL)
		SetLatch(raft_latch);
}

/*
 * Finds where to go on from (the origin's progress, the copy's index, the
 * entries skipped, a spooled transaction) and asks the raft worker for the
 * entries after it.  Returns false, asking for nothing, when a copy of the
 * data did not finish.
 */
static bool
start_from_progress(void)
{
	XLogRecPtr	progress;
	uint64		resume_at;

	if (!read_copy_start())
		return false;
	progress = replorigin_session_get_progress(false);
	progress = Max(progress, AW.copy.index);
	progress = Max(progress, read_progress_file());

	AW.next_index = progress + 1;
	AW.done_index = progress;
	AW.durable_index = progress;
	streams_load(progress);
	resume_at = spool_resume(progress);
	if (resume_at != 0)
		AW.next_index = resume_at;
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.apply_pid = MyProcPid;
	RaftShmem->apply.apply_latch = MyLatch;
	RaftShmem->apply.done_index = AW.done_index;
	RaftShmem->apply.kept_index = Max(AW.durable_index, AW.spooled_to);
	RaftShmem->apply.resyncing = false;
	LWLockRelease(RaftShmem->lock);
	request_entries();
	ereport(LOG,
			(errmsg("pg_raft apply worker starts after raft index %llu",
					(unsigned long long) progress)));
	return true;
}

/* Drops a transaction whose remaining entries will never come. */
static void
abandon_transaction(const char *why)
{
	ereport(LOG,
			(errmsg("pg_raft discards the incomplete transaction that began at raft index %llu: %s",
					(unsigned long long) AW.txn_first_index, why)));
	if (AW.in_repair)
		RollbackAndReleaseCurrentSubTransaction();
	else
		AbortCurrentTransaction();
	AW.txn = NULL;
	spool_remove();
}

/* Applies (or skips) one committed entry. */
static void
apply_entry(const RaftQueuedEntry *e, const uint8 *data, uint32 len)
{
	chg_entry_header header;
	int			rc;

	if (AW.txn != NULL && e->term != AW.txn_term)
		abandon_transaction("the leader that sent it lost its leadership");
	streams_drop_before(e->term);
	if (e->type != RAFT_ENTRY_NORMAL)
	{
		RaftRepairSeeEntry(e->index, e->term, false, RAFT_NO_NODE, InvalidXLogRecPtr);
		return;
	}

	rc = chg_entry_header_read(data, len, &header);
	if (rc != CHG_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft entry %llu has an invalid data header: %s",
						(unsigned long long) e->index, chg_strerror(rc))));
	if (header.flags & CHG_ENTRY_STREAM)
	{
		/*
		 * The leader's capture broke off in the middle of a transaction
		 * and told the streams open then to abort: it sends that
		 * transaction again from its first entry.
		 */
		if (AW.txn != NULL)
			abandon_transaction("its leader began to send it again");
		apply_stream_entry(e, &header, data + CHG_ENTRY_HEADER_BYTES,
						   len - CHG_ENTRY_HEADER_BYTES);
		return;
	}
	RaftRepairSeeEntry(e->index, e->term, (header.flags & CHG_ENTRY_FIRST) != 0,
					   header.origin, header.final_lsn);
	if (AW.txn != NULL && (header.flags & CHG_ENTRY_FIRST))
		abandon_transaction("its leader began to send it again");
	if (header.origin == AW.self)
	{
		/* decoded here: the data is here, and it reached the log */
		if ((header.flags & CHG_ENTRY_LAST) && header.final_lsn > AW.own_committed_lsn)
		{
			AW.own_committed_lsn = header.final_lsn;
			AW.own_committed_unsaved = true;
		}
		return;
	}
	if (header.origin == AW.copy.origin && header.final_lsn < AW.copy.lsn)
		return;					/* committed before the copy's snapshot */

	if (header.flags & CHG_ENTRY_FIRST)
	{
		AW.txn = begin_local_transaction("another transaction comes before its commit");
		AW.txn_term = e->term;
		AW.txn_first_index = e->index;
	}
	else if (AW.txn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft entry %llu continues a transaction whose beginning is missing",
						(unsigned long long) e->index)));
	RaftApplyPiece(AW.txn, data + CHG_ENTRY_HEADER_BYTES,
				   len - CHG_ENTRY_HEADER_BYTES);
	if (header.flags & CHG_ENTRY_LAST)
	{
		AW.done_commit_time = AW.txn->commit_time;
		RaftApplyEnd(AW.txn);
		AW.txn = NULL;
		if (AW.in_repair)
		{
			ReleaseCurrentSubTransaction();
			return;
		}
		/* the origin's progress commits with the transaction */
		streams_sync();
		replorigin_session_origin_lsn = e->index;
		replorigin_session_origin_timestamp = AW.done_commit_time;
		CommitTransactionCommand();
		pgstat_report_stat(false);
		if (AW.spool_fd >= 0)
		{
			/* the spool goes only once the commit is on disk */
			XLogFlush(XactLastCommitEnd);
			spool_remove();
		}
	}
	else if (!AW.in_repair)
		spool_append(data + CHG_ENTRY_HEADER_BYTES, len - CHG_ENTRY_HEADER_BYTES);
}

/*
 * Takes the next entry of the apply queue into buf.  Returns false when
 * there is none yet; *compacted_to is then nonzero if the entry this node
 * needs next was compacted away: the log here begins after that index.
 */
static bool
next_entry(uint8 *buf, uint32 cap, uint32 *len, uint64 *compacted_to)
{
	RaftApplyQueue *q = &RaftShmem->apply;
	bool		found = false;

	*compacted_to = 0;
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (q->served_generation == q->generation)
	{
		if (q->compacted)
			*compacted_to = Max(q->log_base, 1);
		else
			found = RaftRingPop(&q->ring, buf, cap, len);
	}
	LWLockRelease(RaftShmem->lock);
	return found;
}

/*
 * Takes the entry the apply worker needs next (AW.next_index) from the
 * apply queue: its header into *e, its len bytes of data into AW.buf after
 * the header.  Entries served again after the raft worker restarted are
 * passed over.  Returns false when there is none yet; *compacted_to is
 * then as next_entry says.
 */
static bool
take_next_entry(RaftQueuedEntry *e, uint32 *len, uint64 *compacted_to)
{
	while (next_entry(AW.buf, AW.cap, len, compacted_to))
	{
		if (*len < sizeof(*e))
			elog(ERROR, "pg_raft apply queue holds a record of %u bytes", *len);
		memcpy(e, AW.buf, sizeof(*e));
		if (e->index < AW.next_index)
			continue;
		if (e->index > AW.next_index)
			elog(ERROR, "pg_raft apply queue skipped from index %llu to %llu",
				 (unsigned long long) AW.next_index,
				 (unsigned long long) e->index);
		*len -= sizeof(*e);
		return true;
	}
	return false;
}

/* Says, in an error's context, which entry was being applied. */
static void
entry_error_callback(void *arg)
{
	const RaftQueuedEntry *e = arg;

	if (AW.txn != NULL && AW.txn_first_index != e->index)
		errcontext("applying raft entry %llu of term %llu (a transaction that began at entry %llu)",
				   (unsigned long long) e->index, (unsigned long long) e->term,
				   (unsigned long long) AW.txn_first_index);
	else
		errcontext("applying raft entry %llu of term %llu",
				   (unsigned long long) e->index, (unsigned long long) e->term);
}

/* Applies the entry take_next_entry took, and moves past it. */
static void
apply_next_entry(const RaftQueuedEntry *e, uint32 len)
{
	ErrorContextCallback errcallback;

	errcallback.callback = entry_error_callback;
	errcallback.arg = (void *) e;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	apply_entry(e, AW.buf + sizeof(*e), len);
	error_context_stack = errcallback.previous;
	AW.next_index = e->index + 1;
	AW.last_term = e->term;
	if (AW.txn == NULL)
		AW.done_index = e->index;
}

/*
 * Makes progress durable before the raft worker may compact the entries
 * behind it.  Applied transactions commit with synchronous_commit = off:
 * their commit records are flushed here.  Skipped entries leave no trace
 * in the tables or in the replication origin, so how far they go is
 * written to a small file, now and then (a crash skips them again).
 */
static void
make_progress_durable(bool force)
{
	TimestampTz now;

	ApplyProgress progress;

	if (AW.durable_index >= AW.done_index && !AW.own_committed_unsaved)
		return;
	now = GetCurrentTimestamp();
	if (!force && AW.done_index - AW.durable_index < PROGRESS_EVERY_ENTRIES &&
		now - AW.durable_written < PROGRESS_EVERY_MS * 1000)
		return;
	XLogFlush(XactLastCommitEnd);
	streams_sync();
	progress.index = AW.done_index;
	progress.own_committed_lsn = AW.own_committed_lsn;
	RaftStorageWriteFile(PROGRESS_FILE, &progress, sizeof(progress));
	AW.durable_index = AW.done_index;
	AW.own_committed_unsaved = false;
	AW.durable_written = now;
	RaftRepairProgressDurable(AW.durable_index);
}

/*
 * Whether, once an entry of term is applied (or about to be), every entry
 * of this node's last leadership that will ever commit is behind it: the
 * node does not lead, and term is later than that leadership's (terms
 * never decrease along the log).  Without pg_raft/led_term, only the term
 * of another member's current leadership is known to be.
 */
static bool
past_own_leadership(uint64 term)
{
	uint64		led_term;
	bool		past;

	if (!RaftStorageReadStruct(RAFT_LED_TERM_FILE, &led_term, sizeof(led_term)))
		led_term = 0;
	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	past = RaftShmem->view.configured && RaftShmem->view.role != RAFT_LEADER &&
		(led_term != 0 ? term > led_term :
		 RaftShmem->view.leader_id != RAFT_NO_NODE &&
		 RaftShmem->view.leader_id != RaftShmem->view.node_id &&
		 RaftShmem->view.term == term);
	LWLockRelease(RaftShmem->lock);
	return past;
}

/*
 * Settles the old slot, waiting up to SETTLE_WAIT_MS while a process still
 * holds it: the decoding worker of the leadership that just ended is on
 * its way out.  Applying the new leader's entries first would report them
 * applied (raft.wait_for_index) before the repair of the rows this node's
 * diverged transactions touched.
 */
static int64
settle_when_released(void)
{
	int64		settled = RaftSettleOldSlot(AW.own_committed_lsn, true, false);
	int			waited_ms = 0;

	while (settled < 0 && waited_ms < SETTLE_WAIT_MS && RaftOldSlotHeld())
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 10L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		waited_ms += 10;
		settled = RaftSettleOldSlot(AW.own_committed_lsn, true, false);
	}
	return settled;
}

/*
 * Settles the old slot once this node is about to apply (before) or has
 * applied (after) an entry past its last leadership, and repairs the rows
 * that its diverged transactions touched, if any.  Returns true if it
 * did: the entries taken from the apply queue before are stale.
 */
static bool
settle_old_slot(uint64 term)
{
	if (!past_own_leadership(term))
		return false;
	if (AW.txn != NULL)
	{
		/* resumed from the spool: entries of this term were taken before */
		if (AW.txn_term == term)
			return false;
		abandon_transaction("the leader that sent it lost its leadership");
	}
	if (eager_stream != NULL)
	{
		if (eager_stream->st.term == term)
			return false;
		eager_abandon("the leader that sent it lost its leadership");
	}
	if (settle_when_released() <= 0)
		return false;
	(void) repair();
	return true;
}

/* Whether this node is the only voter of its cluster. */
static bool
only_voter(void)
{
	uint32		voters = 0;
	uint32		i;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	for (i = 0; i < RaftShmem->view.n_members; i++)
		voters += RaftShmem->view.members[i].voter ? 1 : 0;
	LWLockRelease(RaftShmem->lock);
	return voters <= 1;
}

/*
 * A leader that finds the slot of an earlier leadership of its own (it
 * was elected again, or restarted) settles it once it has applied every
 * entry before its new leadership, before capture may drop it.  If it
 * diverged, it hands its leadership over (resyncing) and repairs as a
 * follower.
 */
static void
settle_slot_as_leader(void)
{
	uint64		term;
	uint64		before;
	int64		diverged;

	LWLockAcquire(RaftShmem->lock, LW_SHARED);
	term = RaftShmem->apply.settle_term;
	before = RaftShmem->apply.settle_before;
	LWLockRelease(RaftShmem->lock);
	if (term == 0 || AW.txn != NULL || eager_stream != NULL || AW.done_index < before)
		return;
	diverged = RaftSettleOldSlot(AW.own_committed_lsn, true, true);
	if (diverged < 0)
		return;					/* not now: tried again a second later */
	if (diverged > 0 && only_voter())
	{
		/* no member holds the log's version of those rows but this one */
		RaftRepairForget();
		ereport(WARNING,
				(errmsg("pg_raft keeps the %lld transactions that never reached the raft log in this node's data",
						(long long) diverged),
				 errdetail("This node is the cluster's only voter: no other member can repair its rows.")));
		diverged = 0;
	}
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (diverged > 0)
		RaftShmem->apply.resyncing = true;
	RaftShmem->apply.settled_term = term;
	RaftShmem->apply.settle_term = 0;
	if (RaftShmem->worker_latch != NULL)
		SetLatch(RaftShmem->worker_latch);
	LWLockRelease(RaftShmem->lock);
	if (diverged > 0)
		(void) repair();
}

/* ----------------------------------------------------------------
 * Re-synchronisation
 * ----------------------------------------------------------------
 */

/*
 * Records that the data must be copied again: durably (the worker starts
 * over with the copy if it stops before it is whole) and in raft.status,
 * until start_from_progress() finds the copy whole.  Meanwhile nothing
 * counts as applied here (raft.wait_for_index waits, a learner is not
 * promoted, a leader takes no writes).
 */
static void
mark_resync_needed(void)
{
	RaftStorageWriteFile(RAFT_COPY_PENDING_FILE, "", 0);
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.resyncing = true;
	RaftShmem->apply.done_index = 0;
	LWLockRelease(RaftShmem->lock);
}

/*
 * Waits until another member leads, and at least retry_ms after the last
 * attempt began (a copy that fails is not retried in a tight loop);
 * returns the leader's conninfo (palloc'd).
 */
static char *
wait_for_other_leader(int retry_ms)
{
	for (;;)
	{
		char		conninfo[RAFT_CONNINFO_BYTES];
		TimestampTz now = GetCurrentTimestamp();

		conninfo[0] = '\0';
		LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
		if (TimestampDifferenceExceeds(RaftShmem->apply.resync_started, now,
									   retry_ms) &&
			RaftShmem->view.configured &&
			RaftShmem->view.leader_id != RAFT_NO_NODE &&
			RaftShmem->view.leader_id != RaftShmem->view.node_id &&
			RaftShmem->view.leader_conninfo[0] != '\0')
		{
			strlcpy(conninfo, RaftShmem->view.leader_conninfo, sizeof(conninfo));
			RaftShmem->apply.resync_started = now;
		}
		LWLockRelease(RaftShmem->lock);
		if (conninfo[0] != '\0')
			return pstrdup(conninfo);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 100L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Copies the leader's data again onto an instance where the copy of
 * raft.join_cluster did not finish (pg_raft/copy_pending): its tables hold
 * part of a copy and nothing else, so the database is emptied first.  The
 * file stays until the copy is whole: a worker that stops on the way (an
 * error, a crash, a leader that stops leading) starts over when it is
 * back.  Meanwhile raft.status says resyncing, and the raft worker hands
 * over a leadership this node wins (worker.c): a node without its data
 * cannot lead.
 */
static void
copy_again(const char *why)
{
	char	   *leader_conninfo;

	eager_abandon("this node copies the leader's data again");
	if (AW.txn != NULL)
	{
		AbortCurrentTransaction();
		AW.txn = NULL;
	}
	spool_remove();
	streams_drop_all("this node copies the leader's data again");
	mark_resync_needed();
	ereport(LOG,
			(errmsg("pg_raft copies the leader's data again: %s", why),
			 errdetail("The tables of database \"%s\" are emptied, and schema and data are copied from the leader.",
					   raft_database)));
	/* what an earlier leadership of this node left is kept first */
	(void) RaftSettleOldSlot(AW.own_committed_lsn, false, false);
	leader_conninfo = wait_for_other_leader(RESYNC_RETRY_MS);

	RaftEmptyDatabase();
	StartTransactionCommand();
	RaftCopyData(leader_conninfo);
	CommitTransactionCommand();

	/* the copy holds every row: a repair under way is moot */
	RaftRepairForget();
	if (!start_from_progress())
		elog(ERROR, "pg_raft copy of the leader's data left no starting point");
	log_resynchronised();
}

/*
 * Replaces this node's data with the leader's when it no longer follows
 * from the log here (the entries it needs were compacted away): every
 * table's rows are replaced in one transaction (repair.c), which also
 * moves the apply worker's progress to the copy's index.  Nothing is
 * emptied first: until that transaction commits, readers see the old
 * rows, and a copy that fails leaves them.
 */
static void
resync(const char *why)
{
	eager_abandon("this node copies the leader's data again");
	if (AW.txn != NULL)
	{
		AbortCurrentTransaction();
		AW.txn = NULL;
	}
	spool_remove();
	ereport(LOG,
			(errmsg("pg_raft re-synchronises this node's data from the leader: %s", why),
			 errdetail("Every table of database \"%s\" is copied again from the leader in one transaction; readers see the old rows until it commits.",
					   raft_database)));
	/* what an earlier leadership of this node left is kept first */
	(void) RaftSettleOldSlot(AW.own_committed_lsn, false, false);
	RaftRepairEverything();
	if (repair() && !start_from_progress())
		elog(ERROR, "pg_raft copy of the leader's data left no starting point");
	log_resynchronised();
}

/* Says that a copy of the leader's data is done: the worker goes on. */
static void
log_resynchronised(void)
{
	clear_apply_error();
	ereport(LOG,
			(errmsg("pg_raft re-synchronised this node's data: it holds the log up to raft index %llu",
					(unsigned long long) AW.done_index)));
}

/*
 * Applies the log from AW.next_index to apply_to, and to the end of the
 * transaction there, inside the repair's transaction: each transaction a
 * subtransaction, the window's changes to repaired rows skipped
 * (repair.c).  Nothing of it is durable before RaftRepairFinish commits.
 *
 * Returns false if the log here no longer holds an entry it needs: the
 * leader compacted it while this node was away, and sent a snapshot of its
 * log instead.  A repair of rows cannot go on then, and would fail the
 * same way at every attempt; the caller repairs every table instead.
 */
static bool
apply_in_repair(uint64 apply_to)
{
	request_entries();
	AW.in_repair = true;
	while (AW.next_index <= apply_to || AW.txn != NULL)
	{
		uint32		len;
		uint64		compacted_to;
		RaftQueuedEntry e;

		CHECK_FOR_INTERRUPTS();
		if (!take_next_entry(&e, &len, &compacted_to))
		{
			if (compacted_to != 0)
			{
				ereport(LOG,
						(errmsg("pg_raft repairs every table instead of the rows it set out to: the raft log here begins after index %llu, and the repair of rows needs index %llu",
								(unsigned long long) compacted_to,
								(unsigned long long) AW.next_index)));
				if (AW.txn != NULL)
					abandon_transaction("this node repairs every table instead");
				AW.in_repair = false;
				return false;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 100L, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			continue;
		}
		apply_next_entry(&e, len);
	}
	AW.in_repair = false;
	return true;
}

/*
 * Copies the rows of the repair set from the leader (repair.c), once
 * another member leads.  A repair of rows also applies the log up to the
 * leader's commit index in the same transaction (apply_in_repair); if the
 * log here no longer holds those entries, it repairs every table instead.
 * Returns true if it replaced every table and moved the progress instead:
 * the caller then starts again from it.
 * Meanwhile raft.status says resyncing and the raft worker hands over a
 * leadership this node wins: the rows of the set are not as the log says.
 * A repair that succeeds lets the next one begin at once; one that fails
 * is retried after REPAIR_RETRY_MS, or RESYNC_RETRY_MS for every table
 * (wait_for_other_leader).
 */
static bool
repair(void)
{
	char	   *leader_conninfo;
	bool		everything;
	uint64		apply_to;

	eager_abandon("this node repairs its data first");
	if (AW.txn != NULL)
	{
		AW.next_index = AW.txn_first_index;
		abandon_transaction("this node repairs its data first");
	}
	/* nothing counts as applied here meanwhile (see mark_resync_needed) */
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.resyncing = true;
	RaftShmem->apply.done_index = 0;
	LWLockRelease(RaftShmem->lock);
	for (;;)
	{
		leader_conninfo = wait_for_other_leader(RaftRepairOfEverything() ?
												RESYNC_RETRY_MS : REPAIR_RETRY_MS);
		everything = RaftRepairRun(leader_conninfo, &apply_to);
		if (everything || apply_in_repair(apply_to))
			break;
		/* the rows copied and the entries applied go with the transaction */
		AbortCurrentTransaction();
		RaftRepairEverything();
	}
	if (everything)
		streams_drop_all("this node replaced its data with the leader's");
	else
	{
		apply_in_repair(apply_to);
		streams_sync();
		RaftRepairFinish(AW.done_index);
		streams_drop_applied_in_repair();
		AW.durable_index = AW.done_index;
	}
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.resyncing = false;
	RaftShmem->apply.done_index = AW.done_index;
	if (!everything)
		RaftShmem->apply.resync_started = 0;
	LWLockRelease(RaftShmem->lock);
	return everything;
}

/*
 * Records why the apply worker failed, for raft.status and for the raft
 * worker (a member that keeps failing does not lead).  Runs in the error's
 * handling, just before the worker exits and the postmaster starts it
 * again.
 */
static void
record_apply_error(ErrorData *edata)
{
	char		text[RAFT_ERROR_BYTES];

	if (edata->context != NULL)
		snprintf(text, sizeof(text), "%s (%s)", edata->message, edata->context);
	else
		strlcpy(text, edata->message, sizeof(text));
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	if (RaftShmem->apply.apply_failures == 0)
		RaftShmem->apply.apply_error_since = GetCurrentTimestamp();
	RaftShmem->apply.apply_failures++;
	strlcpy(RaftShmem->apply.apply_error, text, RAFT_ERROR_BYTES);
	LWLockRelease(RaftShmem->lock);
	RaftCount(&RaftShmem->counters.apply_errors, 1);
}

/* The apply worker goes on again: a failure before is over. */
static void
clear_apply_error(void)
{
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.apply_failures = 0;
	RaftShmem->apply.apply_error[0] = '\0';
	LWLockRelease(RaftShmem->lock);
}

/* Publishes progress for the raft worker and the views. */
static void
publish_progress(void)
{
	make_progress_durable(false);
	LWLockAcquire(RaftShmem->lock, LW_EXCLUSIVE);
	RaftShmem->apply.done_index = AW.done_index;
	RaftShmem->apply.kept_index = Max(AW.durable_index, AW.spooled_to);
	RaftShmem->apply.done_commit_time = AW.done_commit_time;
	RaftShmem->apply.from_index = AW.next_index;
	LWLockRelease(RaftShmem->lock);
}

void
RaftApplyWorkerMain(Datum main_arg)
{

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	memset(&AW, 0, sizeof(AW));
	AW.spool_fd = -1;
	AW.cap = sizeof(RaftQueuedEntry) + RAFT_MAX_ENTRY_BYTES;
	AW.buf = MemoryContextAllocHuge(TopMemoryContext, AW.cap);
	BackgroundWorkerInitializeConnection(raft_database, NULL, 0);
	publish_superuser_name();
	forget_synchronous_standby();
	AW.self = wait_for_cluster();

	/*
	 * The Raft log is the durable copy: a commit here need not wait for
	 * the disk, and must not wait for synchronous replication.  Triggers
	 * and foreign keys behave as for PostgreSQL's own replication.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("session_replication_role", "replica", PGC_SUSET,
					PGC_S_OVERRIDE);
	before_shmem_exit(apply_worker_detach, (Datum) 0);
	attach_origin();
	PG_TRY();
	{
		apply_worker_run();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* the worker exits: what it holds goes anyway */
		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		LWLockReleaseAll();
		record_apply_error(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * The apply worker's work, from its start: a copy of the leader's data
 * first if one is due, then the log, entry by entry, for ever.
 */
static void
apply_worker_run(void)
{
	if (RaftStorageFileExists(RAFT_RECOPY_FILE))
	{
		mark_resync_needed();
		RaftStorageRemoveFile(RAFT_RECOPY_FILE);
		copy_again("an operator asked for it with raft.recopy()");
	}
	else if (RaftStorageFileExists(RAFT_COPY_PENDING_FILE))
		copy_again("a copy of the leader's data did not finish here");
	else
	{
		/* before the spool's pieces, which may be in a repair's window */
		RaftRepairLoad();
		if (!start_from_progress())
			elog(ERROR, "pg_raft copy of the leader's data left no starting point");
		if (RaftRepairPending() && repair())
		{
			if (!start_from_progress())
				elog(ERROR, "pg_raft copy of the leader's data left no starting point");
			log_resynchronised();
		}
	}

	for (;;)
	{
		uint32		len;
		uint64		compacted_to;
		bool		progressed = false;
		RaftQueuedEntry e;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		while (take_next_entry(&e, &len, &compacted_to))
		{
			/* before the new leader's entries can meet diverged rows */
			if (e.term != AW.last_term && settle_old_slot(e.term))
				break;
			apply_next_entry(&e, len);
			progressed = true;
			/* let the others see progress inside a long run of entries */
			if (e.index % 64 == 0)
			{
				spool_sync();
				publish_progress();
			}
		}
		if (compacted_to != 0 && !progressed)
		{
			resync(psprintf("the log here begins after raft index %llu, and this node needs index %llu",
							(unsigned long long) compacted_to,
							(unsigned long long) AW.next_index));
			continue;
		}
		if (progressed)
		{
			Latch	   *raft_latch;

			clear_apply_error();
			spool_sync();
			publish_progress();
			LWLockAcquire(RaftShmem->lock, LW_SHARED);
			raft_latch = RaftShmem->worker_latch;
			LWLockRelease(RaftShmem->lock);
			if (raft_latch != NULL)
				SetLatch(raft_latch);
			continue;
		}
		settle_slot_as_leader();
		wait_a_second();
		/* idle: let skipped entries become durable, tidy up */
		publish_progress();
		if (AW.txn == NULL)
			(void) settle_old_slot(AW.last_term);
	}
}
