/*-------------------------------------------------------------------------
 *
 * decoder.c
 *	  The logical decoding output plugin: committed transactions, encoded
 *	  for the Raft log.
 *
 * NOTES
 *	  Built into pg_raft's library: a replication slot created with plugin
 *	  'pg_raft' uses it.  It writes the format of changes/changes.h, one
 *	  write per callback: the begin (with the version), each change (with
 *	  its relation's description the first time the relation appears in the
 *	  transaction), each truncate, the commit.  Values travel in their
 *	  type's binary send format when it has one, as text otherwise; old
 *	  rows carry what the table's replica identity says (the key columns,
 *	  or the whole row with REPLICA IDENTITY FULL).  A change that does not
 *	  say which row it changes is never skipped: capture stops at it with
 *	  an error (refuse_unidentified).
 *
 *	  Schema changes arrive as logical messages (ddl.c) and are passed on
 *	  where they stand among the transaction's changes.  Only tables'
 *	  rows travel: a materialized view is computed on each member.
 *
 *	  Changes that carry the apply worker's replication origin came from
 *	  the log and are filtered out, so nothing is shipped twice; so are
 *	  those an extension's script wrote.  Those of other origins (another
 *	  tool replicating into the leader) are shipped.
 *
 *	  Each callback works in a private memory context that is reset after
 *	  every change, so a transaction of any size decodes in bounded memory.
 *	  Row changes (with the relation descriptions before them) are written
 *	  in batches of about DECODER_BATCH_BYTES; every other message is a
 *	  write of its own, so that a reader (capture.c) finds a transaction's
 *	  begin and commit, and a stream's messages, at the start of a write.
 *
 *	  With the option "streaming", a transaction that outgrows
 *	  logical_decoding_work_mem comes while it runs, through the stream
 *	  callbacks: blocks of its changes (stream start ... stream stop), each
 *	  change after a mark of the subtransaction it belongs to whenever that
 *	  changes, then a stream commit or abort; a subtransaction's abort says
 *	  which.  Blocks of several transactions interleave with each other and
 *	  with whole transactions, so the relations described are kept per
 *	  streamed transaction, in a memory context of its own dropped at its
 *	  end, and forgotten when a subtransaction aborts (its changes may have
 *	  carried descriptions that the reader drops with them).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/bitmapset.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/walsender.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "changes/changes.h"
#include "pg_raft.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

PG_FUNCTION_INFO_V1(pg_raft_decode_changes);

/* A transaction streamed while it runs, from its first block to its end. */
typedef struct StreamedTxn
{
	TransactionId xid;
	MemoryContext cxt;			/* holds described; deleted at its end */
	List	   *described;		/* relids described in its blocks so far */
} StreamedTxn;

typedef struct DecoderState
{
	MemoryContext change_cxt;	/* reset after every callback */
	MemoryContext txn_cxt;		/* lives for one transaction */
	List	   *described;		/* relids described in this transaction */
	MemoryContext described_cxt;	/* ... allocated here */
	ReorderBufferTXN *pending_begin;	/* begin not written yet */
	bool		streaming;		/* the client asked for streaming */
	List	   *streamed;		/* StreamedTxn of transactions not ended */
	StreamedTxn *block;			/* the one whose block is being written */
	TransactionId block_subxid; /* the (sub)transaction its last change had */
	bool		batch_open;		/* ctx->out holds changes not written yet */
} DecoderState;

/*
 * Row changes are written in batches of about this many bytes: one write
 * per change cost a walsender a send() and a recv() per row, most of its
 * time in a large transaction (when capture decoded in one), and costs
 * the decoding worker a trip through the ring per row.
 */
#define DECODER_BATCH_BYTES (64 * 1024)

/* The append callback of a chg_writer that writes into a StringInfo. */
void
RaftAppendToStringInfo(void *arg, const void *data, size_t len)
{
	appendBinaryStringInfo((StringInfo) arg, data, (int) len);
}

static void
writer_for(LogicalDecodingContext *ctx, chg_writer *w)
{
	w->append = RaftAppendToStringInfo;
	w->arg = ctx->out;
}

static chg_str
make_str(const char *s)
{
	chg_str		str;

	str.data = s;
	str.len = (uint16_t) strlen(s);
	return str;
}

/*
 * Prepares a write of a message that goes alone (any but a row change),
 * once the batch of row changes before it is written.
 */
static void
prepare_alone(LogicalDecodingContext *ctx, bool last_write)
{
	DecoderState *state = ctx->output_plugin_private;

	if (state->batch_open)
	{
		OutputPluginWrite(ctx, false);
		state->batch_open = false;
	}
	OutputPluginPrepareWrite(ctx, last_write);
}

static void
decoder_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				bool is_init)
{
	DecoderState *state = palloc0(sizeof(DecoderState));
	ListCell   *lc;

	foreach(lc, ctx->output_plugin_options)
	{
		DefElem    *option = lfirst(lc);

		if (strcmp(option->defname, "streaming") == 0)
		{
			if (option->arg == NULL)
				state->streaming = true;
			else if (!parse_bool(strVal(option->arg), &state->streaming))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("could not parse value \"%s\" for parameter \"%s\"",
								strVal(option->arg), option->defname)));
			continue;
		}
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" is not recognized by output plugin pg_raft",
						option->defname),
				 errhint("The pg_raft output plugin takes one option, \"streaming\".")));
	}
	/*
	 * Streaming: transactions larger than logical_decoding_work_mem come
	 * in blocks while they run, through the stream callbacks.
	 */
	ctx->streaming &= state->streaming;
	state->change_cxt = AllocSetContextCreate(ctx->context,
											  "pg_raft decoder change",
											  ALLOCSET_DEFAULT_SIZES);
	state->txn_cxt = AllocSetContextCreate(ctx->context,
										   "pg_raft decoder transaction",
										   ALLOCSET_SMALL_SIZES);
	state->described_cxt = state->txn_cxt;
	ctx->output_plugin_private = state;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
}

static void
decoder_shutdown(LogicalDecodingContext *ctx)
{
	DecoderState *state = ctx->output_plugin_private;

	MemoryContextDelete(state->change_cxt);
	MemoryContextDelete(state->txn_cxt);
}

/*
 * Changes written by the apply worker (they came from the log) and by an
 * extension's script (each member's own CREATE EXTENSION writes them) are
 * never shipped.  Those of any other origin are: rows that arrive on the
 * leader through another tool's replication are the leader's data.  Until
 * the apply worker has said which origin is its own, every origin is
 * filtered.
 */
static bool
decoder_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	RepOriginId own = RaftShmem == NULL ? InvalidRepOriginId :
		(RepOriginId) pg_atomic_read_u32(&RaftShmem->apply_origin);

	if (origin_id == InvalidRepOriginId)
		return false;
	return origin_id == DoNotReplicateId || own == InvalidRepOriginId ||
		origin_id == own;
}

/*
 * The begin is written with the transaction's first change, so that
 * transactions that change no table (DDL, say) produce nothing.
 */
static void
decoder_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *state = ctx->output_plugin_private;

	MemoryContextReset(state->txn_cxt);
	state->described = NIL;
	state->pending_begin = txn;
}

/*
 * What goes before a change of txn (the subtransaction it belongs to): in
 * a streamed block, its id when it differs from the last change's;
 * otherwise the transaction's begin, if not written yet.
 */
static void
before_change(LogicalDecodingContext *ctx, DecoderState *state,
			  ReorderBufferTXN *txn)
{
	ReorderBufferTXN *begin = state->pending_begin;
	chg_writer	w;

	if (state->block != NULL)
	{
		if (txn->xid == state->block_subxid)
			return;
		state->block_subxid = txn->xid;
		prepare_alone(ctx, false);
		writer_for(ctx, &w);
		chg_write_subtransaction(&w, txn->xid);
		OutputPluginWrite(ctx, false);
		return;
	}
	if (begin == NULL)
		return;
	state->pending_begin = NULL;
	prepare_alone(ctx, false);
	writer_for(ctx, &w);
	chg_write_version(&w);
	chg_write_begin(&w, begin->xid, begin->final_lsn, begin->xact_time.commit_time);
	OutputPluginWrite(ctx, false);
}

static void
decoder_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   XLogRecPtr commit_lsn)
{
	DecoderState *state = ctx->output_plugin_private;
	chg_writer	w;

	if (state->pending_begin != NULL)
	{
		state->pending_begin = NULL;
		return;					/* nothing replicated: nothing to say */
	}
	prepare_alone(ctx, true);
	writer_for(ctx, &w);
	chg_write_commit(&w, commit_lsn, txn->end_lsn, txn->xact_time.commit_time);
	OutputPluginWrite(ctx, true);
}

/* Columns that replicate: not dropped, not generated (recomputed there). */
static bool
column_replicates(Form_pg_attribute att)
{
	return !att->attisdropped && !att->attgenerated;
}

/* Describes a relation the first time the transaction touches it. */
static void
describe_relation(LogicalDecodingContext *ctx, DecoderState *state,
				  Relation relation, chg_writer *w)
{
	TupleDesc	desc = RelationGetDescr(relation);
	Bitmapset  *key = RelationGetIdentityKeyBitmap(relation);
	chg_column *columns = palloc(sizeof(chg_column) * Max(desc->natts, 1));
	uint16		n = 0;
	int			i;
	MemoryContext old;

	if (list_member_oid(state->described, RelationGetRelid(relation)))
		return;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!column_replicates(att))
			continue;
		columns[n].name = make_str(NameStr(att->attname));
		columns[n].typid = att->atttypid;
		columns[n].typmod = att->atttypmod;
		columns[n].is_key = bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber,
										  key);
		n++;
	}
	chg_write_relation(w, RelationGetRelid(relation),
					   make_str(get_namespace_name(RelationGetNamespace(relation))),
					   make_str(RelationGetRelationName(relation)),
					   relation->rd_rel->relreplident, n, columns);

	old = MemoryContextSwitchTo(state->described_cxt);
	state->described = lappend_oid(state->described, RelationGetRelid(relation));
	MemoryContextSwitchTo(old);
}

/* Encodes the replicated columns of a tuple. */
static void
encode_tuple(Relation relation, HeapTuple tuple, chg_tuple *out)
{
	TupleDesc	desc = RelationGetDescr(relation);
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);
	int			i;

	heap_deform_tuple(tuple, desc, values, nulls);
	out->values = palloc(sizeof(chg_value) * Max(desc->natts, 1));
	out->natts = 0;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		chg_value  *v;
		Oid			func;
		bool		is_varlena;

		if (!column_replicates(att))
			continue;
		v = &out->values[out->natts++];
		v->data = NULL;
		v->len = 0;
		if (nulls[i])
		{
			v->kind = 'n';
			continue;
		}
		if (att->attlen == -1 && VARATT_IS_EXTERNAL_ONDISK(values[i]))
		{
			/* an UPDATE left this TOASTed value alone: so does the apply */
			v->kind = 'u';
			continue;
		}
		getTypeBinaryOutputInfo(att->atttypid, &func, &is_varlena);
		if (OidIsValid(func))
		{
			bytea	   *b = OidSendFunctionCall(func, values[i]);

			v->kind = 'b';
			v->len = VARSIZE(b) - VARHDRSZ;
			v->data = (const uint8_t *) VARDATA(b);
		}
		else
		{
			char	   *text;

			getTypeOutputInfo(att->atttypid, &func, &is_varlena);
			text = OidOutputFunctionCall(func, values[i]);
			v->kind = 't';
			v->len = strlen(text);
			v->data = (const uint8_t *) text;
		}
	}
}

/*
 * Whether the table's rows are found by a key (its replica identity
 * index, or its primary key) or by the whole old row (REPLICA IDENTITY
 * FULL): whether an update that logged no old key kept the key it has.
 */
static bool
has_replica_key(Relation relation)
{
	if (relation->rd_rel->relreplident == REPLICA_IDENTITY_FULL)
		return true;
	return relation->rd_rel->relreplident != REPLICA_IDENTITY_NOTHING &&
		OidIsValid(RelationGetReplicaIndex(relation));
}

/*
 * A change that does not say which row it changes (PostgreSQL logged no
 * key: the table had no replica identity) cannot be applied on the other
 * members, and must not be skipped either.  The leader refuses such
 * changes before they run (fence.c), so only a path around the executor
 * leads here.  Capture's decoding worker (decoding.c), and a walsender,
 * stop with this error, and the raft worker hands leadership to a member
 * that can capture (worker.c); the transaction never reaches the log.  A
 * slot read with SQL, as when this node looks for transactions that never
 * reached the log (repair.c), gets the change with no old row instead:
 * the repair then copies the whole table.
 */
static void
refuse_unidentified(Relation relation, ReorderBufferChangeType action)
{
	if (!am_walsender && !raft_am_decoding_worker)
		return;
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pg_raft cannot replicate %s table \"%s\" without a replica identity",
					action == REORDER_BUFFER_CHANGE_DELETE ? "a delete from" : "an update of",
					RelationGetRelationName(relation)),
			 errdetail("PostgreSQL logged no key for the row, so the other members cannot find it."),
			 errhint("Give the table a primary key or REPLICA IDENTITY FULL.  The transaction stays on this node only, and its tables are copied again from the next leader.")));
}

static void
decoder_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation relation, ReorderBufferChange *change)
{
	DecoderState *state = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(state->change_cxt);
	HeapTuple	oldtuple = change->data.tp.oldtuple ?
		&change->data.tp.oldtuple->tuple : NULL;
	HeapTuple	newtuple = change->data.tp.newtuple ?
		&change->data.tp.newtuple->tuple : NULL;
	uint8		old_kind = relation->rd_rel->relreplident == REPLICA_IDENTITY_FULL ?
		'O' : 'K';
	chg_tuple	oldt;
	chg_tuple	newt;
	chg_writer	w;

	/* a materialized view's rows are computed on each member (ddl.c) */
	if (relation->rd_rel->relkind != RELKIND_RELATION)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	if (oldtuple == NULL && (change->action == REORDER_BUFFER_CHANGE_DELETE ||
							 (change->action == REORDER_BUFFER_CHANGE_UPDATE &&
							  !has_replica_key(relation))))
		refuse_unidentified(relation, change->action);

	before_change(ctx, state, change->txn);
	if (!state->batch_open)
	{
		OutputPluginPrepareWrite(ctx, false);
		state->batch_open = true;
	}
	writer_for(ctx, &w);
	describe_relation(ctx, state, relation, &w);
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			encode_tuple(relation, newtuple, &newt);
			chg_write_insert(&w, RelationGetRelid(relation), &newt);
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			encode_tuple(relation, newtuple, &newt);
			if (oldtuple != NULL)
			{
				encode_tuple(relation, oldtuple, &oldt);
				chg_write_update(&w, RelationGetRelid(relation), old_kind,
								 &oldt, &newt);
			}
			else
				chg_write_update(&w, RelationGetRelid(relation), '-', NULL,
								 &newt);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			if (oldtuple == NULL)
			{
				chg_write_delete(&w, RelationGetRelid(relation), '-', NULL);
				break;
			}
			encode_tuple(relation, oldtuple, &oldt);
			chg_write_delete(&w, RelationGetRelid(relation), old_kind, &oldt);
			break;
		default:
			elog(ERROR, "unexpected change %d in the pg_raft output plugin",
				 (int) change->action);
	}
	if (ctx->out->len >= DECODER_BATCH_BYTES)
	{
		OutputPluginWrite(ctx, false);
		state->batch_open = false;
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}

/*
 * The (sub)transaction of a transactional message at lsn, of which the
 * callback names only the toplevel txn: the subtransaction whose first
 * change came last before it.  One that ended before the message by
 * aborting is gone from the list; one that ended by RELEASE SAVEPOINT
 * shares the fate of its parent, which the message belongs to, so a reader
 * that drops everything from an aborted subtransaction's first change on
 * drops the message exactly when it should.
 */
static ReorderBufferTXN *
message_txn(ReorderBufferTXN *txn, XLogRecPtr lsn)
{
	ReorderBufferTXN *found = txn;
	dlist_iter	iter;

	dlist_foreach(iter, &txn->subtxns)
	{
		ReorderBufferTXN *sub = dlist_container(ReorderBufferTXN, node, iter.cur);

		if (sub->first_lsn != InvalidXLogRecPtr && sub->first_lsn <= lsn &&
			(found == txn || sub->first_lsn > found->first_lsn))
			found = sub;
	}
	return found;
}

/*
 * pg_raft's logical messages.  A schema change (ddl.c) is transactional
 * and passed on where it stands in its transaction; the relations it
 * touched are described again before their next change, so that the
 * followers see the columns as they are after it.  So is a sequence's
 * position (sequences.c); one written outside a transaction (by hand,
 * with pg_logical_emit_message) travels alone, as a transaction of its
 * own at the message's position in the WAL.
 */
static void
decoder_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				XLogRecPtr message_lsn, bool transactional,
				const char *prefix, Size message_size, const char *message)
{
	DecoderState *state = ctx->output_plugin_private;
	chg_message m;
	size_t		consumed;
	chg_writer	w;

	if (strcmp(prefix, RAFT_MESSAGE_PREFIX) != 0)
		return;
	if (chg_read((const uint8 *) message, message_size, NULL, &m, &consumed) != CHG_OK ||
		consumed != message_size ||
		!(m.kind == CHG_SEQUENCE || (m.kind == CHG_DDL && transactional)))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("logical message \"%s\" at %X/%X does not hold one schema change or sequence position",
						prefix, LSN_FORMAT_ARGS(message_lsn))));
	if (!transactional)
	{
		TimestampTz now = GetCurrentTimestamp();

		prepare_alone(ctx, false);
		writer_for(ctx, &w);
		chg_write_version(&w);
		chg_write_begin(&w, InvalidTransactionId, message_lsn, now);
		OutputPluginWrite(ctx, false);
		prepare_alone(ctx, false);
		appendBinaryStringInfo(ctx->out, message, (int) message_size);
		OutputPluginWrite(ctx, false);
		prepare_alone(ctx, true);
		writer_for(ctx, &w);
		chg_write_commit(&w, message_lsn, message_lsn, now);
		OutputPluginWrite(ctx, true);
		return;
	}
	before_change(ctx, state, message_txn(txn, message_lsn));
	prepare_alone(ctx, true);
	appendBinaryStringInfo(ctx->out, message, (int) message_size);
	OutputPluginWrite(ctx, true);
	if (m.kind == CHG_DDL)
	{
		state->described = NIL;
		MemoryContextReset(state->described_cxt);
	}
}

static void
decoder_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				 int nrelations, Relation relations[],
				 ReorderBufferChange *change)
{
	DecoderState *state = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(state->change_cxt);
	uint32	   *relids = palloc(sizeof(uint32) * Max(nrelations, 1));
	uint8		flags = 0;
	chg_writer	w;
	int			i;

	before_change(ctx, state, change->txn);
	prepare_alone(ctx, true);
	writer_for(ctx, &w);
	for (i = 0; i < nrelations; i++)
	{
		describe_relation(ctx, state, relations[i], &w);
		relids[i] = RelationGetRelid(relations[i]);
	}
	if (change->data.truncate.cascade)
		flags |= 1;
	if (change->data.truncate.restart_seqs)
		flags |= 2;
	chg_write_truncate(&w, flags, (uint32) nrelations, relids);
	OutputPluginWrite(ctx, true);

	MemoryContextSwitchTo(old);
	MemoryContextReset(state->change_cxt);
}

/* ----------------------------------------------------------------
 * Streaming: a large transaction in blocks while it runs
 * ----------------------------------------------------------------
 */

/* The toplevel transaction of txn. */
static ReorderBufferTXN *
toplevel(ReorderBufferTXN *txn)
{
	return txn->toptxn != NULL ? txn->toptxn : txn;
}

static StreamedTxn *
find_streamed(DecoderState *state, TransactionId xid)
{
	ListCell   *lc;

	foreach(lc, state->streamed)
	{
		StreamedTxn *st = lfirst(lc);

		if (st->xid == xid)
			return st;
	}
	return NULL;
}

/* Forgets a streamed transaction that ended (committed or aborted). */
static void
forget_streamed(DecoderState *state, TransactionId xid)
{
	StreamedTxn *st = find_streamed(state, xid);

	if (st == NULL)
		return;
	state->streamed = list_delete_ptr(state->streamed, st);
	MemoryContextDelete(st->cxt);
	pfree(st);
}

/*
 * A block begins: the relations described in the transaction's earlier
 * blocks stand, those of other transactions do not.
 */
static void
decoder_stream_start(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *state = ctx->output_plugin_private;
	bool		first = !rbtxn_is_streamed(txn);
	StreamedTxn *st = find_streamed(state, txn->xid);
	chg_writer	w;

	Assert(state->block == NULL);
	if (st == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(ctx->context);

		st = palloc0(sizeof(StreamedTxn));
		st->xid = txn->xid;
		st->cxt = AllocSetContextCreate(ctx->context, "pg_raft decoder streamed transaction",
										ALLOCSET_SMALL_SIZES);
		state->streamed = lappend(state->streamed, st);
		MemoryContextSwitchTo(old);
	}
	else if (first)
	{
		/* decoding began again: the client drops what it kept of it */
		MemoryContextReset(st->cxt);
		st->described = NIL;
	}
	state->block = st;
	state->block_subxid = InvalidTransactionId;
	state->described = st->described;
	state->described_cxt = st->cxt;

	prepare_alone(ctx, false);
	writer_for(ctx, &w);
	chg_write_version(&w);
	chg_write_stream_start(&w, txn->xid, first);
	OutputPluginWrite(ctx, false);
}

static void
decoder_stream_stop(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecoderState *state = ctx->output_plugin_private;
	chg_writer	w;

	Assert(state->block != NULL);
	state->block->described = state->described;
	state->block = NULL;
	state->described = NIL;
	state->described_cxt = state->txn_cxt;

	prepare_alone(ctx, true);
	writer_for(ctx, &w);
	chg_write_stream_stop(&w);
	OutputPluginWrite(ctx, true);
}

/*
 * A streamed transaction, or one of its subtransactions, aborted.  A
 * subtransaction's changes may have held relation descriptions: describe
 * every relation again before its next change.
 */
static void
decoder_stream_abort(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					 XLogRecPtr abort_lsn)
{
	DecoderState *state = ctx->output_plugin_private;
	TransactionId xid = toplevel(txn)->xid;
	chg_writer	w;

	if (txn->xid == xid)
		forget_streamed(state, xid);
	else
	{
		StreamedTxn *st = find_streamed(state, xid);

		if (st != NULL)
		{
			MemoryContextReset(st->cxt);
			st->described = NIL;
		}
	}
	prepare_alone(ctx, true);
	writer_for(ctx, &w);
	chg_write_version(&w);
	chg_write_stream_abort(&w, xid, txn->xid);
	OutputPluginWrite(ctx, true);
}

static void
decoder_stream_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					  XLogRecPtr commit_lsn)
{
	DecoderState *state = ctx->output_plugin_private;
	chg_writer	w;

	forget_streamed(state, txn->xid);
	prepare_alone(ctx, true);
	writer_for(ctx, &w);
	chg_write_version(&w);
	chg_write_stream_commit(&w, txn->xid, commit_lsn, txn->end_lsn,
							txn->xact_time.commit_time);
	OutputPluginWrite(ctx, true);
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = decoder_startup;
	cb->begin_cb = decoder_begin;
	cb->change_cb = decoder_change;
	cb->truncate_cb = decoder_truncate;
	cb->message_cb = decoder_message;
	cb->commit_cb = decoder_commit;
	cb->filter_by_origin_cb = decoder_filter_by_origin;
	cb->shutdown_cb = decoder_shutdown;
	cb->stream_start_cb = decoder_stream_start;
	cb->stream_stop_cb = decoder_stream_stop;
	cb->stream_abort_cb = decoder_stream_abort;
	cb->stream_commit_cb = decoder_stream_commit;
	cb->stream_change_cb = decoder_change;
	cb->stream_message_cb = decoder_message;
	cb->stream_truncate_cb = decoder_truncate;
}

/* ----------------------------------------------------------------
 * Reading a stream, for raft.decode_changes() and apply.c
 * ----------------------------------------------------------------
 */

/* Allocates the arrays chg_read needs for the widest possible message. */
void
RaftChangeArraysInit(chg_arrays *arrays)
{
	arrays->cap = CHG_MAX_COLUMNS;
	arrays->columns = palloc(sizeof(chg_column) * CHG_MAX_COLUMNS);
	arrays->old_values = palloc(sizeof(chg_value) * CHG_MAX_COLUMNS);
	arrays->new_values = palloc(sizeof(chg_value) * CHG_MAX_COLUMNS);
}

/*
 * Reads the message at *offset into m and moves *offset past it; false at
 * the end of the stream.  A damaged stream is an error naming the byte.
 */
bool
RaftChangeRead(const uint8 *buf, size_t len, size_t *offset,
			   const chg_arrays *arrays, chg_message *m)
{
	size_t		consumed;
	int			rc;

	if (*offset >= len)
		return false;
	rc = chg_read(buf + *offset, len - *offset, arrays, m, &consumed);
	if (rc != CHG_OK)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("invalid change stream at byte %zu: %s",
						*offset, chg_strerror(rc))));
	*offset += consumed;
	return true;
}

/* ----------------------------------------------------------------
 * raft.decode_changes(): the stream as readable text
 * ----------------------------------------------------------------
 */

/* A relation description met earlier in the stream. */
typedef struct DescribedRelation
{
	uint32		relid;
	char	   *name;			/* schema.table */
	uint16		natts;
	char	  **colnames;
	Oid		   *typids;
	int32	   *typmods;
} DescribedRelation;

static DescribedRelation *
find_described(List *described, uint32 relid)
{
	ListCell   *lc;

	foreach(lc, described)
	{
		DescribedRelation *r = lfirst(lc);

		if (r->relid == relid)
			return r;
	}
	return NULL;
}

static char *
str_dup(chg_str s)
{
	return pnstrdup(s.data, s.len);
}

/* Renders one value as SQL would show it, through its type's functions. */
static void
append_value(StringInfo out, const chg_value *v, Oid typid, int32 typmod)
{
	Oid			func;
	Oid			ioparam;
	bool		is_varlena;
	char	   *text;

	if (v->kind == 'n')
	{
		appendStringInfoString(out, "NULL");
		return;
	}
	if (v->kind == 'u')
	{
		appendStringInfoString(out, "(unchanged)");
		return;
	}
	if (v->kind == 'b')
	{
		StringInfoData buf;
		Datum		d;

		initStringInfo(&buf);
		appendBinaryStringInfo(&buf, (const char *) v->data, (int) v->len);
		getTypeBinaryInputInfo(typid, &func, &ioparam);
		d = OidReceiveFunctionCall(func, &buf, ioparam, typmod);
		getTypeOutputInfo(typid, &func, &is_varlena);
		text = OidOutputFunctionCall(func, d);
	}
	else
		text = pnstrdup((const char *) v->data, v->len);
	appendStringInfoString(out, quote_literal_cstr(text));
}

static void
append_tuple(StringInfo out, const DescribedRelation *rel, const chg_tuple *t,
			 bool keys_only)
{
	uint16		i;

	for (i = 0; i < t->natts; i++)
	{
		if (keys_only && t->values[i].kind == 'n')
			continue;
		appendStringInfo(out, " %s=", i < rel->natts ? rel->colnames[i] : "?");
		if (i < rel->natts)
			append_value(out, &t->values[i], rel->typids[i], rel->typmods[i]);
		else
			appendStringInfoString(out, "?");
	}
}

/*
 * The number of a transaction id in the order ids were first seen in the
 * stream (1, 2, ...): ids vary from run to run, their order does not.
 */
static int
xid_number(List **xids, uint32 xid)
{
	int			n = list_length(*xids);
	int			i;

	for (i = 0; i < n; i++)
		if ((uint32) list_nth_oid(*xids, i) == xid)
			return i + 1;
	*xids = lappend_oid(*xids, (Oid) xid);
	return n + 1;
}

/*
 * raft.decode_changes(stream bytea): one line of text per message of a
 * change stream, values rendered through their types.  LSNs and times
 * are left out, and transaction ids numbered x1, x2, ... in the order they
 * come, so that the output is stable.
 */
Datum
pg_raft_decode_changes(PG_FUNCTION_ARGS)
{
	bytea	   *stream = PG_GETARG_BYTEA_PP(0);
	const uint8_t *buf = (const uint8_t *) VARDATA_ANY(stream);
	size_t		len = VARSIZE_ANY_EXHDR(stream);
	size_t		offset = 0;
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	chg_arrays	arrays;
	chg_message m;
	List	   *described = NIL;

	List	   *xids = NIL;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	RaftChangeArraysInit(&arrays);
	while (RaftChangeRead(buf, len, &offset, &arrays, &m))
	{
		StringInfoData line;
		DescribedRelation *rel = NULL;
		Datum		value;
		bool		isnull = false;
		uint32		i;

		initStringInfo(&line);
		if (m.kind == CHG_INSERT || m.kind == CHG_UPDATE || m.kind == CHG_DELETE)
		{
			rel = find_described(described, m.relid);
			if (rel == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("invalid change stream: change to relation %u before its description",
								m.relid)));
		}
		switch (m.kind)
		{
			case CHG_VERSION:
				appendStringInfo(&line, "version %u", m.version);
				break;
			case CHG_BEGIN:
				appendStringInfoString(&line, "BEGIN");
				break;
			case CHG_COMMIT:
				appendStringInfoString(&line, "COMMIT");
				break;
			case CHG_STREAM_START:
				appendStringInfo(&line, "STREAM START x%d%s", xid_number(&xids, m.xid),
								 m.first_block ? " FIRST" : "");
				break;
			case CHG_SUBTRANSACTION:
				appendStringInfo(&line, "SUBTRANSACTION x%d", xid_number(&xids, m.subxid));
				break;
			case CHG_STREAM_STOP:
				appendStringInfoString(&line, "STREAM STOP");
				break;
			case CHG_STREAM_ABORT:
				appendStringInfo(&line, "STREAM ABORT x%d", xid_number(&xids, m.xid));
				if (m.subxid != m.xid)
					appendStringInfo(&line, " SUBTRANSACTION x%d", xid_number(&xids, m.subxid));
				break;
			case CHG_STREAM_COMMIT:
				appendStringInfo(&line, "STREAM COMMIT x%d", xid_number(&xids, m.xid));
				break;
			case CHG_RELATION:
				{
					DescribedRelation *r = palloc0(sizeof(DescribedRelation));

					r->relid = m.relid;
					r->name = psprintf("%s.%s", quote_identifier(str_dup(m.nspname)),
									   quote_identifier(str_dup(m.relname)));
					r->natts = m.natts;
					r->colnames = palloc(sizeof(char *) * Max(m.natts, 1));
					r->typids = palloc(sizeof(Oid) * Max(m.natts, 1));
					r->typmods = palloc(sizeof(int32) * Max(m.natts, 1));
					appendStringInfo(&line, "RELATION %s REPLICA IDENTITY %s:",
									 r->name,
									 m.replident == 'd' ? "DEFAULT" :
									 m.replident == 'f' ? "FULL" :
									 m.replident == 'i' ? "INDEX" : "NOTHING");
					for (i = 0; i < m.natts; i++)
					{
						r->colnames[i] = str_dup(m.columns[i].name);
						r->typids[i] = m.columns[i].typid;
						r->typmods[i] = m.columns[i].typmod;
						appendStringInfo(&line, "%s %s %s%s", i > 0 ? "," : "",
										 quote_identifier(r->colnames[i]),
										 format_type_with_typemod(r->typids[i], r->typmods[i]),
										 m.columns[i].is_key ? " KEY" : "");
					}
					described = lappend(described, r);
					break;
				}
			case CHG_INSERT:
				appendStringInfo(&line, "INSERT %s:", rel->name);
				append_tuple(&line, rel, &m.new_tuple, false);
				break;
			case CHG_UPDATE:
				appendStringInfo(&line, "UPDATE %s", rel->name);
				if (m.old_kind != '-')
				{
					appendStringInfoString(&line, m.old_kind == 'K' ? " KEY:" : " OLD:");
					append_tuple(&line, rel, &m.old_tuple, m.old_kind == 'K');
				}
				appendStringInfoString(&line, " NEW:");
				append_tuple(&line, rel, &m.new_tuple, false);
				break;
			case CHG_DELETE:
				if (m.old_kind == '-')
				{
					appendStringInfo(&line, "DELETE %s (row not known)", rel->name);
					break;
				}
				appendStringInfo(&line, "DELETE %s %s", rel->name,
								 m.old_kind == 'K' ? "KEY:" : "OLD:");
				append_tuple(&line, rel, &m.old_tuple, m.old_kind == 'K');
				break;
			case CHG_DDL:
				appendStringInfo(&line, "DDL AS %s", quote_identifier(str_dup(m.role)));
				for (i = 0; i < m.nsettings; i++)
				{
					chg_setting setting = chg_ddl_setting(&m, (uint16) i);

					if (strcmp(str_dup(setting.name), "search_path") == 0)
						appendStringInfo(&line, " SET search_path = %s",
										 quote_literal_cstr(pnstrdup(setting.value.data,
																	 setting.value.len)));
				}
				appendStringInfo(&line, ": %s", pnstrdup(m.statement.data, m.statement.len));
				for (i = 0; i < m.nmissing; i++)
				{
					chg_missing v = chg_ddl_missing(&m, (uint16) i);

					appendStringInfo(&line, "; existing rows of %s.%s hold %s = %s",
									 quote_identifier(str_dup(v.nspname)),
									 quote_identifier(str_dup(v.relname)),
									 quote_identifier(str_dup(v.column)),
									 pnstrdup(v.value.data, v.value.len));
				}
				break;
			case CHG_SEQUENCE:
				appendStringInfo(&line, "SEQUENCE %s.%s %s " INT64_FORMAT "%s",
								 quote_identifier(str_dup(m.nspname)),
								 quote_identifier(str_dup(m.relname)),
								 (m.sequence_flags & CHG_SEQUENCE_EXACT) ? "SET" : "PAST",
								 m.value,
								 (m.sequence_flags & CHG_SEQUENCE_EXACT) &&
								 !(m.sequence_flags & CHG_SEQUENCE_IS_CALLED) ?
								 " NOT CALLED" : "");
				break;
			case CHG_TRUNCATE:
				appendStringInfoString(&line, "TRUNCATE");
				if (m.truncate_flags & 1)
					appendStringInfoString(&line, " CASCADE");
				if (m.truncate_flags & 2)
					appendStringInfoString(&line, " RESTART IDENTITY");
				appendStringInfoString(&line, ":");
				for (i = 0; i < m.nrels; i++)
				{
					DescribedRelation *r = find_described(described,
														  chg_truncate_relid(&m, i));

					appendStringInfo(&line, "%s %s", i > 0 ? "," : "",
									 r ? r->name : "(undescribed)");
				}
				break;
		}
		value = CStringGetTextDatum(line.data);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
