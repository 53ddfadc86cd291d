/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  The durable Raft state under $PGDATA/pg_raft/.
 *
 * NOTES
 *	  The raft worker owns the log and the files it writes; the join and the
 *	  apply worker keep small files of their own here.  Small state (the node's
 *	  identity, the hard state, the log base) lives in files replaced
 *	  atomically; the log lives in segment files of CRC-32C-checked records.
 *	  Every failure is reported with ereport(ERROR): a worker that cannot
 *	  trust its disk must stop rather than vote or acknowledge.  A failed
 *	  fsync follows data_sync_retry (PANIC by default), as for PostgreSQL's
 *	  own files.  The on-disk formats are described in storage.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PG_RAFT_STORAGE_H
#define PG_RAFT_STORAGE_H

#include "raft/raft.h"

/* Directory under the data directory, and its log subdirectory. */
#define RAFT_STORAGE_DIR "pg_raft"

typedef struct RaftLogStore RaftLogStore;

/*
 * Entries read back at start-up, in log order.  The array (NULL when there
 * are none) and each entry's data (never NULL, even when len is 0) are
 * palloc'd in the CurrentMemoryContext of RaftLogOpen.
 */
typedef struct RaftLoadedLog
{
	raft_entry *entries;
	size_t		n_entries;
} RaftLoadedLog;

/*
 * Small files, each replaced atomically (write a temporary file, fsync it,
 * rename it over the old one, fsync the directory) and guarded by a
 * CRC-32C.  Reading a file that does not exist returns false; a file whose
 * checksum or length is wrong is an ERROR with ERRCODE_DATA_CORRUPTED that
 * names it.
 */
extern void RaftStorageWriteFile(const char *name, const void *data, size_t len);
extern bool RaftStorageReadFile(const char *name, void **data, size_t *len);
extern bool RaftStorageReadStruct(const char *name, void *dest, size_t size);
extern bool RaftStorageFileExists(const char *name);
extern void RaftStorageRemoveFile(const char *name);
/* Deletes pg_raft/ entirely (the node left its cluster); close the log first. */
extern void RaftStorageRemoveAll(void);

/*
 * Hints: small files written the same way but without fsync.  They survive
 * a crash of PostgreSQL, maybe not of the operating system; reading one
 * that is unreadable returns false with a LOG line instead of an ERROR.
 */
extern void RaftStorageWriteHint(const char *name, const void *data, size_t len);
extern bool RaftStorageReadHint(const char *name, void **data, size_t *len);

/*
 * The log.  RaftLogOpen checks every segment: a torn or corrupt record at
 * the end of the last segment is cut off with a LOG line; anything wrong
 * elsewhere is an ERROR with ERRCODE_DATA_CORRUPTED naming the file.  The
 * entries after base_index are returned in *loaded (contiguous from
 * base_index + 1; older segments are the archive, read on demand, if the
 * stored entry of base_index has base_term).  The
 * store lives in the CurrentMemoryContext, which must outlive it.
 */
extern RaftLogStore *RaftLogOpen(raft_index_t base_index, raft_term_t base_term,
								 RaftLoadedLog *loaded);

/*
 * Appends entries; first discards every stored entry at or after e[0].index
 * (durably, before writing).  The new entries are durable after RaftLogSync.
 */
extern void RaftLogAppend(RaftLogStore *log, const raft_entry *entries, size_t n);

/* Makes everything appended so far durable. */
extern void RaftLogSync(RaftLogStore *log);

/*
 * Drops every stored entry (a snapshot replaced the log) and restarts at
 * base_index + 1; durable on return.  Persist the new base first.
 */
extern void RaftLogReset(RaftLogStore *log, raft_index_t base_index);

/*
 * Moves segments that hold only entries at or before index to the archive.
 * Persist the base first.
 */
extern void RaftLogCompact(RaftLogStore *log, raft_index_t index);

/*
 * The archive: compacted segments kept for members that lag.  Trimming
 * deletes the oldest beyond keep_bytes.  Reading, for reader (a member's
 * id: each continues where its last read ended), returns entries prev + 1
 * onwards (at most max_entries, none after last or the base, max_bytes of
 * payload beyond the first) and the term of prev, as the consensus core's
 * raft_archive_read_fn does; their data is palloc'd in the
 * CurrentMemoryContext.  It never raises an ERROR: what cannot be read is
 * reported with a WARNING and ends the entries returned.
 */
extern void RaftLogTrimArchive(RaftLogStore *log, uint64 keep_bytes);
extern uint32 RaftLogArchiveRead(RaftLogStore *log, uint32 reader,
								 raft_index_t prev,
								 raft_index_t last, uint32 max_entries,
								 uint64 max_bytes, raft_term_t *prev_term,
								 raft_entry *entries);

/* Bytes of the log's segments, and of the archive's, for monitoring. */
extern uint64 RaftLogBytes(RaftLogStore *log);
extern uint64 RaftLogArchiveBytes(RaftLogStore *log);

extern void RaftLogClose(RaftLogStore *log);

#endif							/* PG_RAFT_STORAGE_H */
