/*-------------------------------------------------------------------------
 *
 * repair.h
 *	  Divergence and repair (repair.c), as the apply worker drives them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_REPAIR_H
#define PG_RAFT_REPAIR_H

#include "access/xlogdefs.h"
#include "catalog/pg_attribute.h"
#include "executor/tuptable.h"
#include "utils/relcache.h"

#include "pg_raft.h"

/* finding diverged transactions and what they touched */
extern bool RaftOldSlotHeld(void);
extern int64 RaftSettleOldSlot(XLogRecPtr own_committed_lsn, bool certain,
								bool leading);
extern void RaftRepairCollectRow(Relation rel, TupleTableSlot *old_key,
								 TupleTableSlot *new_key);
extern void RaftRepairCollectTable(Relation rel);

/* copying the rows, and taking up a repair after a restart */
extern void RaftRepairLoad(void);
extern bool RaftRepairPending(void);
extern bool RaftRepairOfEverything(void);
extern bool RaftRepairRun(const char *member_conninfo, uint64 *apply_to);
extern void RaftRepairFinish(uint64 applied_to);
extern void RaftRepairForget(void);
extern void RaftRepairEverything(void);

/* applying the window */
extern void RaftRepairSeeEntry(uint64 index, uint64 term, bool first,
							   raft_id_t origin, XLogRecPtr final_lsn);
extern void RaftRepairResumeTransaction(uint64 first_index);
extern bool RaftRepairInWindow(void);
extern bool RaftRepairCoversRow(Relation rel, TupleTableSlot *old_key,
								TupleTableSlot *new_key);
extern bool RaftRepairCoversTable(Relation rel);
extern void RaftRepairProgressDurable(uint64 durable_index);

/* apply.c: what the repair borrows from applying */
extern void RaftApplyCollect(const uint8 *stream, size_t len);
extern Oid	RaftColumnSequence(Relation rel, Form_pg_attribute att);

#endif							/* PG_RAFT_REPAIR_H */
