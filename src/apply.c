/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applies a change stream (changes/changes.h) to local tables.
 *
 * NOTES
 *	  Runs in the current transaction of whoever calls it: today
 *	  raft.apply_changes(), and the follower's apply worker once changes
 *	  travel through the Raft log.  Rows go through the executor's
 *	  replication entry points (ExecSimpleRelationInsert and friends), as
 *	  PostgreSQL's own logical replication worker does: no SQL text per row.
 *
 *	  Relations are matched by schema and name, columns by name; a value
 *	  arrives in its type's binary send format or as text and is read with
 *	  the local column type's receive or input function.  An update or a
 *	  delete finds its row through the replica identity index (or the
 *	  primary key) with the key the stream carries, or, for a table with
 *	  REPLICA IDENTITY FULL, by comparing whole rows.  A value marked
 *	  unchanged keeps the local row's.
 *
 *	  Each message is applied in a memory context reset after it, so a
 *	  transaction of any size applies in bounded memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "commands/tablecmds.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "changes/changes.h"
#include "pg_raft.h"

PG_FUNCTION_INFO_V1(pg_raft_apply_changes);

/* A relation described in the stream, matched to a local table. */
typedef struct ApplyRelation
{
	uint32		remote_relid;
	Oid			localid;
	char	   *name;			/* schema.table, for messages */
	uint16		natts;			/* remote columns */
	AttrNumber *attnums;		/* remote column i -> local attnum, 0 if none */
} ApplyRelation;

typedef struct ApplyState
{
	List	   *relations;
	MemoryContext stream_cxt;	/* relation descriptions */
	MemoryContext change_cxt;	/* reset after every message */
} ApplyState;

static ApplyRelation *
find_relation(ApplyState *state, uint32 remote_relid)
{
	ListCell   *lc;

	foreach(lc, state->relations)
	{
		ApplyRelation *r = lfirst(lc);

		if (r->remote_relid == remote_relid)
			return r;
	}
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("change stream refers to relation %u before describing it",
					remote_relid)));
	return NULL;				/* keep compiler quiet */
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
				r->attnums[i] = att->attnum;
			}
		}
		if (r->attnums[i] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("replicated table %s has no column \"%s\" here",
							r->name, colname)));
	}
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
		Oid			func;
		Oid			ioparam;

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

					initStringInfo(&buf);
					appendBinaryStringInfo(&buf, (const char *) v->data, (int) v->len);
					getTypeBinaryInputInfo(att->atttypid, &func, &ioparam);
					slot->tts_values[k] = OidReceiveFunctionCall(func, &buf, ioparam,
																 att->atttypmod);
					slot->tts_isnull[k] = false;
					break;
				}
			default:
				getTypeInputInfo(att->atttypid, &func, &ioparam);
				slot->tts_values[k] =
					OidInputFunctionCall(func, pnstrdup((const char *) v->data, v->len),
										 ioparam, att->atttypmod);
				slot->tts_isnull[k] = false;
				break;
		}
	}
	ExecStoreVirtualTuple(slot);
}

/* The executor state for one change to one relation. */
typedef struct ApplyTarget
{
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
} ApplyTarget;

static void
target_open(ApplyTarget *t, Oid relid)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	t->rel = table_open(relid, RowExclusiveLock);
	t->estate = CreateExecutorState();
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = t->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(t->estate, list_make1(rte));
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	t->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(t->rri, false);
	AfterTriggerBeginQuery();
}

static void
target_close(ApplyTarget *t)
{
	AfterTriggerEndQuery(t->estate);
	ExecCloseIndices(t->rri);
	ExecResetTupleTable(t->estate->es_tupleTable, false);
	FreeExecutorState(t->estate);
	table_close(t->rel, NoLock);
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

static void
apply_row_change(const chg_message *m, ApplyRelation *r)
{
	ApplyTarget t;
	TupleTableSlot *newslot;
	TupleTableSlot *keyslot;
	TupleTableSlot *local;

	target_open(&t, r->localid);
	newslot = table_slot_create(t.rel, &t.estate->es_tupleTable);
	keyslot = table_slot_create(t.rel, &t.estate->es_tupleTable);
	local = table_slot_create(t.rel, &t.estate->es_tupleTable);

	if (m->kind == CHG_INSERT)
	{
		fill_slot(newslot, r, &m->new_tuple, NULL, false);
		ExecSimpleRelationInsert(t.rri, t.estate, newslot);
	}
	else
	{
		/* without an old key the new row carries it (key unchanged) */
		const chg_tuple *key = m->old_kind == '-' ? &m->new_tuple : &m->old_tuple;

		fill_slot(keyslot, r, key, NULL, true);
		if (!find_row(&t, r, keyslot, local))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("the row to %s in %s is missing here",
							m->kind == CHG_UPDATE ? "update" : "delete", r->name),
					 errdetail("The members' copies of the table differ.")));
		if (m->kind == CHG_UPDATE)
		{
			EPQState	epq;

			fill_slot(newslot, r, &m->new_tuple, local, false);
			EvalPlanQualInit(&epq, t.estate, NULL, NIL, -1);
			ExecSimpleRelationUpdate(t.rri, t.estate, &epq, local, newslot);
			EvalPlanQualEnd(&epq);
		}
		else
		{
			EPQState	epq;

			EvalPlanQualInit(&epq, t.estate, NULL, NIL, -1);
			ExecSimpleRelationDelete(t.rri, t.estate, &epq, local);
			EvalPlanQualEnd(&epq);
		}
	}
	target_close(&t);
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

		rels = lappend(rels, rel);
		relids = lappend_oid(relids, r->localid);
		if (RelationIsLogicallyLogged(rel))
			relids_logged = lappend_oid(relids_logged, r->localid);
	}
	ExecuteTruncateGuts(rels, relids, relids_logged,
						(m->truncate_flags & 1) ? DROP_CASCADE : DROP_RESTRICT,
						(m->truncate_flags & 2) != 0);
	foreach(lc, rels)
		table_close(lfirst(lc), NoLock);
}

/*
 * Applies every message of a change stream in the current transaction.
 * Begin and commit markers only delimit: the caller owns the transaction.
 */
void
RaftApplyStream(const uint8 *buf, size_t len)
{
	ApplyState	state;
	chg_arrays	arrays;
	chg_message m;
	size_t		offset = 0;

	memset(&state, 0, sizeof(state));
	state.stream_cxt = AllocSetContextCreate(CurrentMemoryContext,
											 "pg_raft apply stream",
											 ALLOCSET_DEFAULT_SIZES);
	state.change_cxt = AllocSetContextCreate(CurrentMemoryContext,
											 "pg_raft apply change",
											 ALLOCSET_DEFAULT_SIZES);
	RaftChangeArraysInit(&arrays);
	while (RaftChangeRead(buf, len, &offset, &arrays, &m))
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		old = MemoryContextSwitchTo(state.change_cxt);
		switch (m.kind)
		{
			case CHG_RELATION:
				describe(&state, &m);
				break;
			case CHG_INSERT:
			case CHG_UPDATE:
			case CHG_DELETE:
				apply_row_change(&m, find_relation(&state, m.relid));
				break;
			case CHG_TRUNCATE:
				apply_truncate(&state, &m);
				break;
			default:
				break;			/* version, begin, commit: delimiters */
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(state.change_cxt);
		CommandCounterIncrement();
	}
	MemoryContextDelete(state.change_cxt);
	MemoryContextDelete(state.stream_cxt);
}

/*
 * raft.apply_changes(stream bytea): applies a stream of the output plugin
 * in the current transaction.  Superusers only: it writes any table.
 */
Datum
pg_raft_apply_changes(PG_FUNCTION_ARGS)
{
	bytea	   *stream = PG_GETARG_BYTEA_PP(0);

	RaftApplyStream((const uint8 *) VARDATA_ANY(stream),
					VARSIZE_ANY_EXHDR(stream));
	PG_RETURN_VOID();
}
