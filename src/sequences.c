/*-------------------------------------------------------------------------
 *
 * sequences.c
 *	  Sequences never go back: a new leader hands out no value that an
 *	  earlier one handed out.
 *
 * NOTES
 *	  PostgreSQL 15 does not decode sequences, so their positions travel
 *	  as 'S' messages of changes/changes.h, written on the leader as
 *	  logical messages (prefix RAFT_MESSAGE_PREFIX) that the output plugin
 *	  passes on in WAL order.
 *
 *	  Calls of nextval() and setval() go through raft.nextval() and
 *	  raft.setval(): in raft.database on a member, a planner hook puts
 *	  them in place of PostgreSQL's functions in every query it plans,
 *	  column defaults included (the rewriter has expanded them by then).
 *	  raft.nextval() calls nextval(), and when the value lies outside the
 *	  range this session last announced for the sequence, it announces a
 *	  new one: that values up to SHIP_AHEAD steps further may be handed
 *	  out.  The announcement is a transactional message, and the
 *	  transaction is given an id, so that its COMMIT waits until the
 *	  announcement is in the Raft log: every value a session returns after
 *	  an acknowledged COMMIT of its own is covered by an announcement in
 *	  the log.  A rollback takes the announcements with it, and the session
 *	  announces again at its next value.  A value handed out in a
 *	  transaction that rolled back, and never followed by an acknowledged
 *	  commit, may be handed out again after a failover, as PostgreSQL's
 *	  own crash recovery may.  On a follower, the apply worker moves the
 *	  sequence past the announced value, as crash recovery moves it past
 *	  the last value it logged; a new leader skips at most SHIP_AHEAD
 *	  values per session.
 *
 *	  raft.setval() calls setval() and sends the new position exactly.
 *	  Because that may move a sequence back into a range a session
 *	  announced before, every setval(), ALTER SEQUENCE and TRUNCATE ...
 *	  RESTART IDENTITY bumps a counter in shared memory, and a session
 *	  announces again when it changed.
 *
 *	  Temporary sequences stay here.  nextval() reached without the
 *	  planner (identity columns, COPY's defaults) leaves its values in
 *	  rows, which move the sequences of their columns forward on the
 *	  followers (apply.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "commands/dbcommands.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/parse_func.h"
#include "replication/message.h"
#include "replication/origin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "changes/changes.h"
#include "pg_raft.h"

PG_FUNCTION_INFO_V1(pg_raft_nextval);
PG_FUNCTION_INFO_V1(pg_raft_setval);

/* How many steps past a value an announcement covers. */
#define SHIP_AHEAD 100

/* What this session last announced for a sequence. */
typedef struct Announced
{
	Oid			seqoid;			/* hash key */
	int64		from;			/* values from here ... */
	int64		to;				/* ... to here (in the sequence's order) */
	uint64		generation;		/* RaftShmem->sequence_generation then */
} Announced;

static HTAB *announced = NULL;
static planner_hook_type prev_planner = NULL;

/* ----------------------------------------------------------------
 * The leader
 * ----------------------------------------------------------------
 */

/*
 * Whether sequences used here are announced: on a member, in
 * raft.database, outside the apply worker, and not while a copy of the
 * leader's data is restored here.
 */
static bool
announces_here(void)
{
	static Oid	replicated_db = InvalidOid;

	if (RaftShmem == NULL || !RaftShmem->member || RaftShmem->copying ||
		replorigin_session_origin != InvalidRepOriginId || raft_database == NULL)
		return false;
	if (!OidIsValid(replicated_db))
		replicated_db = get_database_oid(raft_database, true);
	return OidIsValid(replicated_db) && MyDatabaseId == replicated_db;
}

/*
 * The functions that stand in for nextval() and setval(), looked up the
 * first time a query calls one.
 */
typedef struct Replacements
{
	bool		looked_up;
	Oid			nextval;
	Oid			setval2;
	Oid			setval3;
} Replacements;

static Oid
raft_function(const char *name, int nargs)
{
	Oid			argtypes[3] = {REGCLASSOID, INT8OID, BOOLOID};

	return LookupFuncName(list_make2(makeString("raft"), makeString(pstrdup(name))),
						  nargs, argtypes, true);
}

static bool
replace_walker(Node *node, Replacements *r)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) &&
		(((FuncExpr *) node)->funcid == F_NEXTVAL ||
		 ((FuncExpr *) node)->funcid == F_SETVAL_REGCLASS_INT8 ||
		 ((FuncExpr *) node)->funcid == F_SETVAL_REGCLASS_INT8_BOOL))
	{
		FuncExpr   *f = (FuncExpr *) node;

		if (!r->looked_up)
		{
			r->nextval = raft_function("nextval", 1);
			r->setval2 = raft_function("setval", 2);
			r->setval3 = raft_function("setval", 3);
			r->looked_up = true;
		}
		if (f->funcid == F_NEXTVAL && OidIsValid(r->nextval))
			f->funcid = r->nextval;
		else if (f->funcid == F_SETVAL_REGCLASS_INT8 && OidIsValid(r->setval2))
			f->funcid = r->setval2;
		else if (f->funcid == F_SETVAL_REGCLASS_INT8_BOOL && OidIsValid(r->setval3))
			f->funcid = r->setval3;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, replace_walker, r, 0);
	return expression_tree_walker(node, replace_walker, r);
}

static PlannedStmt *
sequences_planner(Query *parse, const char *query_string, int cursor_options,
				  ParamListInfo bound_params)
{
	if (parse->commandType != CMD_UTILITY && announces_here())
	{
		Replacements r = {0};

		(void) replace_walker((Node *) parse, &r);
	}
	if (prev_planner)
		return prev_planner(parse, query_string, cursor_options, bound_params);
	return standard_planner(parse, query_string, cursor_options, bound_params);
}

/*
 * Writes an 'S' message for a sequence, in the transaction: it reaches the
 * followers with the transaction, in the same Raft entry, and the
 * transaction gets an id, so that its COMMIT waits until it is in the log.
 */
static void
announce(Relation seq, int64 value, uint8 flags)
{
	StringInfoData message;
	chg_writer	w;
	char	   *nspname = get_namespace_name(RelationGetNamespace(seq));
	char	   *relname = RelationGetRelationName(seq);

	initStringInfo(&message);
	w.append = RaftAppendToStringInfo;
	w.arg = &message;
	chg_write_sequence(&w, (chg_str) {nspname, strlen(nspname)},
					   (chg_str) {relname, strlen(relname)}, value, flags);
	(void) GetTopTransactionId();
	LogLogicalMessage(RAFT_MESSAGE_PREFIX, message.data, message.len, true);
	pfree(message.data);
}

/*
 * A transaction or subtransaction that rolls back takes its announcements
 * with it: the session announces again at its next value.
 */
static void
forget_announcements(void)
{
	if (announced != NULL)
	{
		hash_destroy(announced);
		announced = NULL;
	}
}

static void
sequences_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		forget_announcements();
}

static void
sequences_subxact_callback(SubXactEvent event, SubTransactionId subid,
						   SubTransactionId parent_subid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		forget_announcements();
}

/* Whether value lies between a and b, in either order. */
static bool
between(int64 value, int64 a, int64 b)
{
	return a <= b ? (value >= a && value <= b) : (value <= a && value >= b);
}

/* value moved by steps increments, stopped at limit (the range's end) */
static int64
steps_ahead(int64 value, int64 increment, int64 steps, int64 limit)
{
	int64		result;

	if (pg_mul_s64_overflow(increment, steps, &result) ||
		pg_add_s64_overflow(value, result, &result))
		return limit;
	return increment > 0 ? Min(result, limit) : Max(result, limit);
}

/*
 * Announces that values up to SHIP_AHEAD steps past value may be handed
 * out, unless this session's last announcement covers value still.
 */
static void
cover_value(Oid seqoid, int64 value)
{
	uint64		generation = pg_atomic_read_u64(&RaftShmem->sequence_generation);
	Announced  *entry;
	bool		found;
	HeapTuple	tuple;
	Form_pg_sequence form;
	int64		to;
	Relation	seq;

	if (announced == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(Announced);
		announced = hash_create("pg_raft announced sequences", 64, &ctl,
								HASH_ELEM | HASH_BLOBS);
	}
	entry = hash_search(announced, &seqoid, HASH_ENTER, &found);
	if (found && entry->generation == generation &&
		between(value, entry->from, entry->to))
		return;

	tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqoid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for sequence %u", seqoid);
	form = (Form_pg_sequence) GETSTRUCT(tuple);
	/* the session's cache was taken in one go: cover it too */
	to = steps_ahead(value, form->seqincrement, SHIP_AHEAD + form->seqcache,
					 form->seqincrement > 0 ? form->seqmax : form->seqmin);
	ReleaseSysCache(tuple);

	seq = relation_open(seqoid, AccessShareLock);
	if (seq->rd_rel->relpersistence != RELPERSISTENCE_TEMP)
		announce(seq, to, 0);
	relation_close(seq, AccessShareLock);
	entry->from = value;
	entry->to = to;
	entry->generation = generation;
}

/* raft.nextval(regclass): nextval(), announced to the followers. */
Datum
pg_raft_nextval(PG_FUNCTION_ARGS)
{
	Oid			seqoid = PG_GETARG_OID(0);
	int64		value = nextval_internal(seqoid, true);

	if (announces_here())
		cover_value(seqoid, value);
	PG_RETURN_INT64(value);
}

/*
 * raft.setval(regclass, bigint [, boolean]): setval(), sent to the
 * followers exactly.
 */
Datum
pg_raft_setval(PG_FUNCTION_ARGS)
{
	Oid			seqoid = PG_GETARG_OID(0);
	int64		value = PG_GETARG_INT64(1);
	bool		is_called = PG_NARGS() < 3 || PG_GETARG_BOOL(2);
	Relation	seq;

	DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seqoid),
						Int64GetDatum(value), BoolGetDatum(is_called));
	if (announces_here())
	{
		RaftSequencesChanged();
		seq = relation_open(seqoid, AccessShareLock);
		if (seq->rd_rel->relpersistence != RELPERSISTENCE_TEMP)
			announce(seq, value,
					 CHG_SEQUENCE_EXACT | (is_called ? CHG_SEQUENCE_IS_CALLED : 0));
		relation_close(seq, AccessShareLock);
	}
	PG_RETURN_INT64(value);
}

/*
 * RaftSequencesChanged
 *		A sequence may have moved back (setval, ALTER SEQUENCE): every
 *		session announces its next value again.
 */
void
RaftSequencesChanged(void)
{
	pg_atomic_fetch_add_u64(&RaftShmem->sequence_generation, 1);
}

void
RaftSequencesInit(void)
{
	prev_planner = planner_hook;
	planner_hook = sequences_planner;
	RegisterXactCallback(sequences_xact_callback, NULL);
	RegisterSubXactCallback(sequences_subxact_callback, NULL);
}

/* ----------------------------------------------------------------
 * The followers
 * ----------------------------------------------------------------
 */

/*
 * RaftAdvanceSequence
 *		Moves a sequence past the values from lowest to highest that were
 *		handed out elsewhere: past highest if it counts upwards, past
 *		lowest if downwards, when that value lies in its range and the
 *		sequence would hand it out (or one before it) next.  The lock keeps
 *		a concurrent nextval() out between the reading and the setting.
 */
void
RaftAdvanceSequence(Oid seqoid, int64 lowest, int64 highest)
{
	HeapTuple	tuple;
	Form_pg_sequence form;
	bool		ascending;
	int64		value;
	bool		behind;
	bool		isnull;
	char	   *query;

	LockRelationOid(seqoid, ShareRowExclusiveLock);
	tuple = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seqoid));
	if (!HeapTupleIsValid(tuple))
		return;					/* dropped meanwhile */
	form = (Form_pg_sequence) GETSTRUCT(tuple);
	ascending = form->seqincrement > 0;
	value = ascending ? highest : lowest;
	if (value < form->seqmin || value > form->seqmax)
	{
		ReleaseSysCache(tuple);
		return;
	}
	ReleaseSysCache(tuple);

	/* next is last_value, or the one after it once it was handed out */
	query = psprintf("SELECT CASE WHEN is_called THEN last_value %s %lld ELSE last_value %s %lld END FROM %s",
					 ascending ? "<" : ">", (long long) value,
					 ascending ? "<=" : ">=", (long long) value,
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(seqoid)),
												get_rel_name(seqoid)));
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	if (SPI_execute(query, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read sequence %u", seqoid);
	behind = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										&isnull));
	SPI_finish();
	PopActiveSnapshot();
	if (behind)
		DirectFunctionCall2(setval_oid, ObjectIdGetDatum(seqoid), Int64GetDatum(value));
}

/*
 * RaftSequenceApply
 *		Applies an 'S' message: sets the sequence, or moves it past the
 *		announced value.
 */
void
RaftSequenceApply(const chg_message *m)
{
	char	   *nspname = pnstrdup(m->nspname.data, m->nspname.len);
	char	   *relname = pnstrdup(m->relname.data, m->relname.len);
	Oid			seqoid = RangeVarGetRelid(makeRangeVar(nspname, relname, -1),
										  RowExclusiveLock, true);

	if (!OidIsValid(seqoid) || get_rel_relkind(seqoid) != RELKIND_SEQUENCE)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("replicated sequence %s does not exist here",
						quote_qualified_identifier(nspname, relname)),
				 errhint("The members' schemas differ: run raft.recopy() on this member to copy the leader's schema and data.")));
	if (m->sequence_flags & CHG_SEQUENCE_EXACT)
		DirectFunctionCall3(setval3_oid, ObjectIdGetDatum(seqoid),
							Int64GetDatum(m->value),
							BoolGetDatum((m->sequence_flags & CHG_SEQUENCE_IS_CALLED) != 0));
	else
		RaftAdvanceSequence(seqoid, m->value, m->value);
}
