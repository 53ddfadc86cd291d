/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  The durable Raft state under $PGDATA/pg_raft/: small state files and
 *	  the log.
 *
 * The consensus core does no I/O: after every event the raft worker
 * persists what the core asks for (hard state, log base, entries), makes it
 * durable, and only then sends the messages that depend on it.  This file
 * is that disk.  A vote granted or an append acknowledged is a promise
 * about durable state, so every fsync here matters, and so does every
 * check on the way back in: a log that is read back wrong would make this
 * node vote or acknowledge on state it does not have.
 *
 * NOTES
 *	  The raft worker owns the log and the Raft state files.  The apply
 *	  worker uses small files of its own (apply_progress, apply_spool_state),
 *	  and it and raft.join_cluster's backend use those of the copy
 *	  (copy_pending, copy_start), never at the same time (the copying flag
 *	  holds the apply worker back), so no lock is needed.  A PostgreSQL
 *	  process's current directory is the data directory, so every path
 *	  here is relative to it.
 *
 *	  Memory.  RaftLogOpen allocates the RaftLogStore, its segment array and
 *	  its write buffer in the CurrentMemoryContext of the call, which must
 *	  live as long as the store (the worker's long-lived context); the array
 *	  and buffer grow there later, whatever context is current then.  The
 *	  loaded entries and their data go to the same context; the caller
 *	  pfrees them once the core has copied them.  Everything else is
 *	  temporary and freed before returning.
 *
 *	  Errors.  Every failure is an ERROR (ERRCODE_DATA_CORRUPTED, naming the
 *	  file, when what is on disk is wrong), except a failed fsync, which
 *	  follows data_sync_retry like PostgreSQL's own files: PANIC by default,
 *	  because after a failed fsync the kernel may have dropped the dirty
 *	  pages and a retry could falsely succeed.  An ERROR in the middle of a
 *	  change leaves the RaftLogStore marked unusable (the worker restarts
 *	  and reopens the log, which repairs or rejects what is on disk).
 *
 *	  Wait events.  PostgreSQL 15 has no custom wait events; the closest
 *	  built-in ones are reported: WALRead/WALWrite/WALSync for the log (it
 *	  is the cluster's write-ahead log) and ControlFileRead/Write/Sync for
 *	  the small files (they play the part of pg_control).
 *
 *	  Layout.
 *
 *		pg_raft/				  RAFT_STORAGE_DIR, created on demand
 *		pg_raft/<name>			  small state files (identity, hard state, base)
 *		pg_raft/<name>.tmp		  a small file being replaced
 *		pg_raft/log/			  log segments
 *		pg_raft/log/000000000000002A  the segment whose first record is index 42
 *		pg_raft.removing/		  pg_raft/ while RaftStorageRemoveAll deletes it
 *
 *	  Every integer on disk is in the machine's native byte order, as in
 *	  PostgreSQL's own WAL and pg_control: the files are not portable
 *	  between architectures, and need not be (a new member copies data, not
 *	  files).  Checksums are CRC-32C (port/pg_crc32c.h).
 *
 *	  Small file (RaftStorageWriteFile, RaftStorageReadFile):
 *
 *		offset		bytes	field
 *		0			4		magic RAFT_FILE_MAGIC ("RAFS" on little-endian)
 *		4			4		format version, RAFT_FILE_VERSION
 *		8			4		payload length, len
 *		12			len		payload
 *		12 + len	4		CRC-32C of bytes [0, 12 + len)
 *
 *	  It is replaced atomically: written to <name>.tmp, fsynced, renamed over
 *	  <name> by durable_rename (which fsyncs the file and the directory).
 *	  A crash leaves either the old or the new file; a leftover .tmp is
 *	  overwritten by the next write.
 *
 *	  Log record (RAFT_LOG_RECORD_HEADER_BYTES = 25, no padding):
 *
 *		offset		bytes	field
 *		0			4		payload length, len (at most MaxAllocSize)
 *		4			4		CRC-32C of bytes [8, 25) and of the payload
 *		8			8		term
 *		16			8		index
 *		24			1		type (raft_entry_type)
 *		25			len		payload
 *
 *	  A segment is a sequence of records with consecutive indexes, the first
 *	  of which names the file (16 upper-case hex digits).  There is no
 *	  segment header.  A record header of zeros (no record has index 0)
 *	  marks the end of the records: the rest of the file is space made
 *	  ready for appends (below).  A torn region fails its CRC.  A record
 *	  that does not fit in the current segment (RAFT_LOG_SEGMENT_BYTES)
 *	  starts a new one, so a segment is at most RAFT_LOG_SEGMENT_BYTES long
 *	  unless it holds a single record larger than that.  The segments are
 *	  contiguous: each starts at the index after the last record of the one
 *	  before.  The log's base (the last compacted index) lives in a small
 *	  file of the caller's; entries at or before it are not loaded on
 *	  opening.
 *
 *	  The archive.  Whole segments of entries at or before the base are not
 *	  deleted by RaftLogCompact: they become the archive, from which the
 *	  leader sends a member that lags entries the consensus core no longer
 *	  holds (RaftLogArchiveRead), until RaftLogTrimArchive deletes the
 *	  oldest of them beyond the size the caller keeps.  The archive is
 *	  contiguous with the log: its last segment ends where the first
 *	  segment of the log begins.  Its segments are not read on opening (a
 *	  large archive would slow every start), so each read of one checks
 *	  the records it returns as opening does; a bad or missing record only
 *	  ends what the archive can give, with a WARNING, and never raises an
 *	  ERROR: the member is then sent the log's base instead.
 *
 *	  Space made ready.  Appending to the end of a file makes each sync
 *	  write the file's size and block map too, and costs about twice an
 *	  overwrite.  So, as PostgreSQL does with its WAL segments, the last
 *	  segment is extended with zeros RAFT_LOG_PREPARE_BYTES at a time
 *	  ahead of the records, and records overwrite the zeros: a sync is then
 *	  an fdatasync that writes data blocks alone.  The zeros after the last
 *	  record are where the log ends when it is read back.
 *
 *	  Durability and crash ordering.  Appends are made durable by
 *	  RaftLogSync: an fdatasync of the current segment and, if a segment was
 *	  created or removed since the last sync, an fsync of the directory.  A segment
 *	  is fsynced before the next one is created, so only the last segment
 *	  can hold a torn tail; RaftLogOpen cuts it off with a LOG line, and
 *	  treats a bad record anywhere else, or a gap between segments, as
 *	  corruption.  Overwriting a suffix (RaftLogAppend from an index already
 *	  stored) unlinks the later segments newest first, truncates, and makes
 *	  both durable before writing the new records: otherwise a crash could
 *	  resurrect old records behind new ones, a log that no leader ever had.
 *	  RaftLogReset is durable when it returns.  RaftLogCompact changes no
 *	  file, and RaftLogTrimArchive's unlinks become durable at the next
 *	  RaftLogSync: a segment that survives a crash holds only entries at or
 *	  before the base, and RaftLogOpen takes it into the archive, which the
 *	  next trim shortens again.  The caller must make a new base durable
 *	  before calling RaftLogCompact or RaftLogReset.
 *
 * IDENTIFICATION
 *	  src/storage.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "utils/memutils.h"
#include "utils/wait_event.h"

#include "storage.h"

/*
 * Largest log segment, in bytes.  The test build overrides it with
 * -DRAFT_LOG_SEGMENT_BYTES=4096 to exercise segment boundaries.
 */
#ifndef RAFT_LOG_SEGMENT_BYTES
#define RAFT_LOG_SEGMENT_BYTES (16 * 1024 * 1024)
#endif

#define RAFT_LOG_DIR RAFT_STORAGE_DIR "/log"
#define RAFT_STORAGE_TRASH_DIR RAFT_STORAGE_DIR ".removing"

/* Small files. */
#define RAFT_FILE_MAGIC 0x53464152	/* "RAFS" in little-endian byte order */
#define RAFT_FILE_VERSION 1
#define RAFT_FILE_HEADER_BYTES 12
#define RAFT_FILE_OVERHEAD_BYTES (RAFT_FILE_HEADER_BYTES + sizeof(pg_crc32c))
#define RAFT_FILE_MAX_PAYLOAD_BYTES (MaxAllocSize - RAFT_FILE_OVERHEAD_BYTES)

/* Log records: header field offsets, and the part the CRC covers. */
#define RAFT_LOG_RECORD_HEADER_BYTES 25
#define RAFT_LOG_REC_LEN 0
#define RAFT_LOG_REC_CRC 4
#define RAFT_LOG_REC_TERM 8
#define RAFT_LOG_REC_INDEX 16
#define RAFT_LOG_REC_TYPE 24
#define RAFT_LOG_REC_CRC_FROM RAFT_LOG_REC_TERM
#define RAFT_LOG_REC_CRC_HEADER_BYTES (RAFT_LOG_RECORD_HEADER_BYTES - RAFT_LOG_REC_CRC_FROM)
/* A payload must fit in one palloc when it is read back. */
#define RAFT_LOG_MAX_PAYLOAD_BYTES ((uint32) MaxAllocSize)

/* A segment file name: the first index as 16 upper-case hex digits. */
#define RAFT_LOG_SEGMENT_NAME_CHARS 16

/* Zeros written ahead of the records at a time (see "Space made ready"). */
#define RAFT_LOG_PREPARE_BYTES (1024 * 1024)

/* I/O buffers: one write() per append batch up to this size. */
#define RAFT_LOG_WRITE_BUFFER_BYTES (1024 * 1024)
#define RAFT_LOG_READ_BUFFER_BYTES (256 * 1024)

StaticAssertDecl(RAFT_LOG_SEGMENT_BYTES >= RAFT_LOG_RECORD_HEADER_BYTES,
				 "a log segment must hold at least one record header");
StaticAssertDecl(RAFT_LOG_SEGMENT_BYTES <= MaxAllocSize,
				 "log segments are limited to 1 GB");

/* Where reads of the archive left off, kept for the next append to a member. */
#define RAFT_LOG_ARCHIVE_CURSORS 8

/*
 * Small file: the index before which the archive is never read, because a
 * stored log was found that did not hold its base's entry (RaftLogOpen).
 */
#define RAFT_ARCHIVE_FLOOR_FILE "archive_floor"

/* What the store knows about one segment file. */
typedef struct RaftLogSegment
{
	raft_index_t first_index;	/* index of its first record: its name */
	uint64		n_records;		/* so its last index is first + n - 1 */
	uint64		size_bytes;		/* bytes of its records */
	uint64		ready_bytes;	/* bytes of the file: records, then zeros */
	raft_term_t last_term;		/* term of its last record; 0 if none */
} RaftLogSegment;

/*
 * Reads of the archive for one member (reader), from start_index on, of
 * which the last ended after record last_index, at offset in the segment
 * starting at seg_first; last_term is that record's term.  A member
 * catching up asks next for the entries after the last it was sent, so
 * most reads start where one ended.
 */
typedef struct ArchiveCursor
{
	uint32		reader;
	raft_index_t start_index;
	raft_index_t last_index;	/* 0: unused */
	raft_term_t last_term;
	raft_index_t seg_first;
	uint64		offset;
	uint64		last_used;
} ArchiveCursor;

/*
 * The open log.  Invariants (check_invariants): segments are sorted and
 * contiguous; fd is open on the last one exactly when there is one;
 * next_index follows the last record; the first segment starts at or
 * before base_index + 1, so every entry after the base is stored; the
 * archive's segments are contiguous and the last ends where the first
 * segment begins.
 */
struct RaftLogStore
{
	MemoryContext cxt;			/* where the store and its arrays live */
	RaftLogSegment *segs;
	int			n_segs;
	int			max_segs;
	int			fd;				/* the last segment, open for appending */
	raft_index_t base_index;	/* entries at or before it are compacted */
	raft_index_t next_index;	/* index the next append must have */
	raft_term_t last_term;		/* term of entry next_index - 1; 0 if unknown */
	uint64		total_bytes;	/* sum of the segments' size_bytes */
	bool		data_unsynced;	/* fd written or truncated since its fsync */
	bool		dir_unsynced;	/* segment created or removed since fsync */
	bool		busy;			/* a change is in progress (or was cut short) */
	char	   *buf;			/* records not yet written to fd */
	size_t		buf_used;
	size_t		buf_cap;
	/* the archive: segments of compacted entries kept, oldest first */
	RaftLogSegment *archive;
	int			n_archive;
	int			max_archive;
	uint64		archive_bytes;	/* sum of their size_bytes */
	raft_index_t archive_floor; /* no entry before it is read for members
								 * (RAFT_ARCHIVE_FLOOR_FILE) */
	ArchiveCursor cursors[RAFT_LOG_ARCHIVE_CURSORS];
	uint64		reads;			/* archive reads so far: the cursors' clock */
};

/* Records read back, growing as the segments are scanned. */
typedef struct RaftLoadArray
{
	raft_entry *entries;
	size_t		n;
	size_t		cap;
} RaftLoadArray;

/* A buffered sequential reader over one file. */
typedef struct SegmentReader
{
	int			fd;
	const char *path;
	char	   *buf;
	size_t		cap;
	off_t		buf_start;		/* file offset of buf[0] */
	size_t		buf_len;		/* valid bytes in buf */
	size_t		buf_pos;		/* next byte to hand out */
} SegmentReader;

/* The outcome of reading a segment from its start. */
typedef struct SegmentScan
{
	uint64		n_records;		/* valid records */
	uint64		valid_bytes;	/* their total size: where the bad part starts */
	char	   *bad_reason;		/* a detail sentence, or NULL if all valid */
	bool		zeros_follow;	/* the records end at a zero header */
	raft_term_t base_term;		/* term of the record of the base; 0: none */
} SegmentScan;

/* A segment file found in the directory. */
typedef struct SegmentFile
{
	raft_index_t first_index;
	uint64		size_bytes;
} SegmentFile;

static void check_file_name(const char *name);
static bool sound_record_after(int fd, const char *path, uint64 from,
							   uint64 size, raft_index_t bad_index);
static void write_file(const char *name, const void *data, size_t len,
					   bool durable);
static void ensure_directory(const char *dir, const char *parent);
static void write_fully(int fd, const char *path, const void *buf, size_t len,
						off_t offset, uint32 wait_event);
static void read_fully(int fd, const char *path, void *buf, size_t len,
					   off_t offset, uint32 wait_event);
static void sync_file(int fd, const char *path, uint32 wait_event,
					  bool data_only);
static void prepare_space(RaftLogStore *log, uint64 end);
static void truncate_file(int fd, const char *path, uint64 len);
static void unlink_file(const char *path);

static void segment_path(char *path, raft_index_t first_index);
static SegmentFile *list_segment_files(int *n_files);
static int	segment_file_cmp(const void *a, const void *b);
static void reader_init(SegmentReader *r, int fd, const char *path);
static void reader_read(SegmentReader *r, void *dst, size_t len, pg_crc32c *crc);
static void reader_skip(SegmentReader *r, size_t len);
static void scan_segment(int fd, const char *path, uint64 size,
						 raft_index_t first_index, raft_index_t base_index,
						 raft_term_t *last_term, RaftLoadArray *out,
						 SegmentScan *scan);
static bool all_zeros(const char *buf, size_t len);
static void load_array_push(RaftLoadArray *a, const raft_entry *e);

static void archive_push(RaftLogStore *log, const RaftLogSegment *seg);
static void archive_remove_oldest(RaftLogStore *log);
static const RaftLogSegment *archive_locate(const RaftLogStore *log,
											raft_index_t index);
static int	archive_open(const char *path);
static int	archive_walk(char *path, raft_index_t first, raft_index_t index,
						 raft_term_t *term, uint64 *offset);
static bool archive_read_record(int fd, const char *path, uint64 offset,
								raft_index_t index, bool want_data,
								raft_entry *e, uint64 *next_offset);
static void begin_change(RaftLogStore *log);
static void end_change(RaftLogStore *log);
static void check_invariants(const RaftLogStore *log);
static RaftLogSegment *last_segment(RaftLogStore *log);
static void add_segment(RaftLogStore *log, raft_index_t first_index, uint64 size_bytes);
static void open_last_segment(RaftLogStore *log, bool create);
static void close_last_segment(RaftLogStore *log);
static void remove_segments_from(RaftLogStore *log, int from);
static void truncate_log_from(RaftLogStore *log, const raft_entry *first);
static void check_term_order(const raft_entry *e, raft_term_t prev_term);
static uint64 record_offset(RaftLogStore *log, int seg, raft_index_t index,
							raft_term_t *prev_term);
static void append_record(RaftLogStore *log, const raft_entry *e);
static void flush_buffer(RaftLogStore *log);
static void encode_record_header(char *dst, const raft_entry *e);


/* ----------------------------------------------------------------
 *		Small files
 * ----------------------------------------------------------------
 */

/*
 * write_file
 *		Replaces pg_raft/<name> atomically with data, through a temporary
 *		file and a rename.
 *
 * When durable, the content is on disk on return, and after a crash at any
 * point the file holds either the old content or the new one.
 */
static void
write_file(const char *name, const void *data, size_t len, bool durable)
{
	char		path[MAXPGPATH];
	char		tmppath[MAXPGPATH];
	char	   *buf;
	size_t		total;
	uint32		word;
	pg_crc32c	crc;
	int			fd;

	check_file_name(name);
	Assert(data != NULL || len == 0);
	if (len > RAFT_FILE_MAX_PAYLOAD_BYTES)
		elog(ERROR, "raft state file \"%s\" would be too large: %zu bytes",
			 name, len);

	ensure_directory(RAFT_STORAGE_DIR, ".");
	snprintf(path, sizeof(path), "%s/%s", RAFT_STORAGE_DIR, name);
	snprintf(tmppath, sizeof(tmppath), "%s.tmp", path);

	total = RAFT_FILE_OVERHEAD_BYTES + len;
	buf = palloc(total);
	word = RAFT_FILE_MAGIC;
	memcpy(buf, &word, 4);
	word = RAFT_FILE_VERSION;
	memcpy(buf + 4, &word, 4);
	word = (uint32) len;
	memcpy(buf + 8, &word, 4);
	if (len > 0)
		memcpy(buf + RAFT_FILE_HEADER_BYTES, data, len);
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf, RAFT_FILE_HEADER_BYTES + len);
	FIN_CRC32C(crc);
	memcpy(buf + RAFT_FILE_HEADER_BYTES + len, &crc, sizeof(crc));

	fd = OpenTransientFile(tmppath, O_WRONLY | O_CREAT | O_TRUNC | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create file \"%s\": %m", tmppath)));
	write_fully(fd, tmppath, buf, total, 0, WAIT_EVENT_CONTROL_FILE_WRITE);
	if (durable)
		sync_file(fd, tmppath, WAIT_EVENT_CONTROL_FILE_SYNC, false);
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", tmppath)));
	pfree(buf);

	if (!durable)
	{
		if (rename(tmppath, path) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not rename file \"%s\" to \"%s\": %m",
							tmppath, path)));
		return;
	}
	/* fsyncs the file again (cheap now), renames, fsyncs the directory */
	(void) durable_rename(tmppath, path, ERROR);
}

/*
 * RaftStorageWriteFile
 *		Replaces pg_raft/<name> atomically and durably with data.
 */
void
RaftStorageWriteFile(const char *name, const void *data, size_t len)
{
	write_file(name, data, len, true);
}

/*
 * RaftStorageReadStruct
 *		Reads pg_raft/<name>, whose payload must be exactly size bytes, into
 *		dest.
 *
 * Returns false, leaving dest alone, if the file does not exist; a payload
 * of another size is an ERROR with ERRCODE_DATA_CORRUPTED, as is anything
 * RaftStorageReadFile refuses.
 */
bool
RaftStorageReadStruct(const char *name, void *dest, size_t size)
{
	void	   *data;
	size_t		len;

	if (!RaftStorageReadFile(name, &data, &len))
		return false;
	if (len != size)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s/%s\" has the wrong size", RAFT_STORAGE_DIR, name),
				 errdetail("It holds %zu bytes, not %zu.", len, size)));
	memcpy(dest, data, size);
	pfree(data);
	return true;
}

/*
 * RaftStorageFileExists
 *		Whether pg_raft/<name> exists, whatever it holds: for files whose
 *		presence is the message.
 */
bool
RaftStorageFileExists(const char *name)
{
	char		path[MAXPGPATH];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", RAFT_STORAGE_DIR, name);
	if (stat(path, &st) == 0)
		return true;
	if (errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	return false;
}

/*
 * RaftStorageRemoveFile
 *		Removes pg_raft/<name> durably; nothing to do if it does not exist.
 */
void
RaftStorageRemoveFile(const char *name)
{
	char		path[MAXPGPATH];

	snprintf(path, sizeof(path), "%s/%s", RAFT_STORAGE_DIR, name);
	if (unlink(path) != 0)
	{
		if (errno == ENOENT)
			return;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
	}
	fsync_fname(RAFT_STORAGE_DIR, true);
}

/*
 * RaftStorageWriteHint
 *		Replaces pg_raft/<name> with data, without waiting for the disk.
 *
 * For values that may be lost, only not garbled: the new content survives
 * a crash of PostgreSQL (it is in the kernel's page cache) but perhaps not
 * one of the operating system, after which the file may hold the old
 * content or be unreadable (see RaftStorageReadHint).
 */
void
RaftStorageWriteHint(const char *name, const void *data, size_t len)
{
	write_file(name, data, len, false);
}

/*
 * RaftStorageReadHint
 *		Reads a file written by RaftStorageWriteHint; false if it is absent
 *		or unreadable, with a LOG line saying why.
 */
bool
RaftStorageReadHint(const char *name, void **data, size_t *len)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool found = false;

	PG_TRY();
	{
		found = RaftStorageReadFile(name, data, len);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(LOG,
				(errmsg("ignoring raft hint file \"%s\": %s", name, edata->message)));
		FreeErrorData(edata);
		found = false;
	}
	PG_END_TRY();
	return found;
}

/*
 * RaftStorageReadFile
 *		Reads pg_raft/<name> into a palloc'd buffer.
 *
 * Returns false, leaving *data and *len alone, if the file does not exist.
 * A file that is short, has the wrong magic number or length, or fails its
 * checksum is an ERROR with ERRCODE_DATA_CORRUPTED naming it.
 */
bool
RaftStorageReadFile(const char *name, void **data, size_t *len)
{
	char		path[MAXPGPATH];
	struct stat st;
	char	   *buf;
	uint64		size;
	uint32		magic;
	uint32		version;
	uint32		payload_len;
	pg_crc32c	stored;
	pg_crc32c	crc;
	int			fd;

	check_file_name(name);
	snprintf(path, sizeof(path), "%s/%s", RAFT_STORAGE_DIR, name);

	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return false;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	if (fstat(fd, &st) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat file \"%s\": %m", path)));
	size = (uint64) st.st_size;

	if (size < RAFT_FILE_OVERHEAD_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s\" is corrupted", path),
				 errdetail("The file is %llu bytes long, shorter than the smallest valid file of %d bytes.",
						   (unsigned long long) size,
						   (int) RAFT_FILE_OVERHEAD_BYTES)));
	if (size > MaxAllocSize)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s\" is corrupted", path),
				 errdetail("The file is %llu bytes long, larger than the largest valid file of %llu bytes.",
						   (unsigned long long) size,
						   (unsigned long long) MaxAllocSize)));

	buf = palloc(size);
	read_fully(fd, path, buf, size, 0, WAIT_EVENT_CONTROL_FILE_READ);
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", path)));

	memcpy(&magic, buf, 4);
	memcpy(&version, buf + 4, 4);
	memcpy(&payload_len, buf + 8, 4);
	if (magic != RAFT_FILE_MAGIC)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s\" is corrupted", path),
				 errdetail("The file starts with 0x%08X instead of the magic number 0x%08X.",
						   magic, RAFT_FILE_MAGIC)));
	if (version != RAFT_FILE_VERSION)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("raft state file \"%s\" has unsupported format version %u",
						path, version),
				 errdetail("This build of pg_raft reads format version %d.",
						   RAFT_FILE_VERSION)));
	if ((uint64) payload_len != size - RAFT_FILE_OVERHEAD_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s\" is corrupted", path),
				 errdetail("The header gives a payload of %u bytes, but the file holds %llu.",
						   payload_len,
						   (unsigned long long) (size - RAFT_FILE_OVERHEAD_BYTES))));

	memcpy(&stored, buf + RAFT_FILE_HEADER_BYTES + payload_len, sizeof(stored));
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, buf, RAFT_FILE_HEADER_BYTES + payload_len);
	FIN_CRC32C(crc);
	if (!EQ_CRC32C(crc, stored))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft state file \"%s\" is corrupted", path),
				 errdetail("The stored CRC-32C 0x%08X does not match the computed 0x%08X.",
						   stored, crc)));

	*data = palloc(payload_len);
	if (payload_len > 0)
		memcpy(*data, buf + RAFT_FILE_HEADER_BYTES, payload_len);
	*len = payload_len;
	pfree(buf);
	return true;
}

/*
 * RaftStorageRemoveAll
 *		Deletes pg_raft/ and everything in it: the node has left its cluster.
 *
 * The directory is first renamed to pg_raft.removing, durably, so a crash
 * never leaves a half-deleted pg_raft/ (say, a log without its identity);
 * the next call finishes deleting a leftover pg_raft.removing.  Caller must
 * have closed the log.
 */
void
RaftStorageRemoveAll(void)
{
	struct stat st;

	if (stat(RAFT_STORAGE_TRASH_DIR, &st) == 0)
	{
		if (!rmtree(RAFT_STORAGE_TRASH_DIR, true))
			ereport(ERROR,
					(errcode(ERRCODE_IO_ERROR),
					 errmsg("could not remove directory \"%s\"",
							RAFT_STORAGE_TRASH_DIR)));
	}
	else if (errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat directory \"%s\": %m",
						RAFT_STORAGE_TRASH_DIR)));

	if (stat(RAFT_STORAGE_DIR, &st) != 0)
	{
		if (errno == ENOENT)
			return;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not stat directory \"%s\": %m", RAFT_STORAGE_DIR)));
	}

	if (rename(RAFT_STORAGE_DIR, RAFT_STORAGE_TRASH_DIR) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not rename directory \"%s\" to \"%s\": %m",
						RAFT_STORAGE_DIR, RAFT_STORAGE_TRASH_DIR)));
	fsync_fname(".", true);

	if (!rmtree(RAFT_STORAGE_TRASH_DIR, true))
		ereport(ERROR,
				(errcode(ERRCODE_IO_ERROR),
				 errmsg("could not remove directory \"%s\"",
						RAFT_STORAGE_TRASH_DIR)));
	fsync_fname(".", true);
}


/* ----------------------------------------------------------------
 *		The log
 * ----------------------------------------------------------------
 */

/*
 * RaftLogOpen
 *		Opens the log, checks every record, and returns the entries after
 *		base_index.
 *
 * base_index is the log base the caller persisted, base_term its term.
 * Segments that hold only entries at or before it become the archive,
 * unread, if the stored entry of base_index has base_term: the stored log
 * then holds the cluster's committed entries up to the base.  A crash
 * between a snapshot's new base and RaftLogReset can leave another
 * history there, which must never be sent: the archive is deleted then,
 * and no entry up to the base is ever read for a member, even once the
 * segments holding them are archived (the floor is kept in a small file).
 * Empty segment files are deleted.  Every other record is read
 * and checked (length, CRC-32C, consecutive index, non-decreasing term).
 * A bad record in the last segment is a torn write: the segment is cut
 * there (with a LOG line) and made durable.  A bad record in an earlier
 * segment, a gap between segments or between the base and the log, is an
 * ERROR with ERRCODE_DATA_CORRUPTED.  If every surviving entry is at or
 * before the base (a snapshot was installed and the crash came before the
 * old log was reset) the log is reset.
 *
 * The store, and the entries returned in *loaded, are allocated in the
 * CurrentMemoryContext, which must outlive the store.
 */
RaftLogStore *
RaftLogOpen(raft_index_t base_index, raft_term_t base_term,
			RaftLoadedLog *loaded)
{
	RaftLogStore *log;
	SegmentFile *files;
	int			n_files;
	int			n_kept;
	int			first_read;
	RaftLoadArray load = {0};
	raft_term_t last_term = 0;
	raft_index_t expected;
	char		path[MAXPGPATH];
	bool		removed_any = false;
	raft_term_t stored_base_term = 0;
	raft_index_t floor = 0;

	log = palloc0(sizeof(RaftLogStore));
	log->cxt = CurrentMemoryContext;
	log->fd = -1;
	log->base_index = base_index;
	log->max_segs = 8;
	log->segs = palloc(sizeof(RaftLogSegment) * log->max_segs);
	log->max_archive = 8;
	log->archive = palloc(sizeof(RaftLogSegment) * log->max_archive);

	ensure_directory(RAFT_STORAGE_DIR, ".");
	ensure_directory(RAFT_LOG_DIR, RAFT_STORAGE_DIR);

	/* Empty segment files hold nothing: a crash came right after creation. */
	files = list_segment_files(&n_files);
	n_kept = 0;
	for (int i = 0; i < n_files; i++)
	{
		if (files[i].size_bytes == 0)
		{
			segment_path(path, files[i].first_index);
			ereport(DEBUG1,
					(errmsg_internal("removing empty raft log file \"%s\"", path)));
			unlink_file(path);
			removed_any = true;
			continue;
		}
		files[n_kept++] = files[i];
	}
	n_files = n_kept;

	/*
	 * A segment followed by one that starts at or before base_index + 1
	 * holds only compacted entries: the archive.  Its number of records
	 * is what the next segment's name says; its records are checked when
	 * they are read.
	 */
	first_read = 0;
	while (first_read + 1 < n_files &&
		   files[first_read + 1].first_index <= base_index + 1)
	{
		RaftLogSegment seg = {0};

		seg.first_index = files[first_read].first_index;
		seg.n_records = files[first_read + 1].first_index - seg.first_index;
		seg.size_bytes = files[first_read].size_bytes;
		seg.ready_bytes = seg.size_bytes;
		archive_push(log, &seg);
		first_read++;
	}

	if (first_read < n_files && files[first_read].first_index > base_index + 1)
	{
		segment_path(path, files[first_read].first_index);
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft log is missing entries %llu to %llu",
						(unsigned long long) (base_index + 1),
						(unsigned long long) (files[first_read].first_index - 1)),
				 errdetail("The log base is index %llu, but the first log file, \"%s\", starts at index %llu.",
						   (unsigned long long) base_index, path,
						   (unsigned long long) files[first_read].first_index)));
	}

	expected = first_read < n_files ? files[first_read].first_index : 0;
	for (int i = first_read; i < n_files; i++)
	{
		bool		is_last = (i == n_files - 1);
		SegmentScan scan;
		int			fd;

		segment_path(path, files[i].first_index);
		if (files[i].first_index != expected)
		{
			char		prevpath[MAXPGPATH];

			segment_path(prevpath, files[i - 1].first_index);
			if (files[i].first_index > expected)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raft log is missing entries %llu to %llu",
								(unsigned long long) expected,
								(unsigned long long) (files[i].first_index - 1)),
						 errdetail("Log file \"%s\" ends at index %llu (offset %llu), but the next file, \"%s\", starts at index %llu.",
								   prevpath, (unsigned long long) (expected - 1),
								   (unsigned long long) files[i - 1].size_bytes,
								   path, (unsigned long long) files[i].first_index)));
			else
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raft log files \"%s\" and \"%s\" overlap",
								prevpath, path),
						 errdetail("Log file \"%s\" holds entries up to index %llu, but the next file starts at index %llu.",
								   prevpath, (unsigned long long) (expected - 1),
								   (unsigned long long) files[i].first_index)));
		}

		fd = OpenTransientFile(path, (is_last ? O_RDWR : O_RDONLY) | PG_BINARY);
		if (fd < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not open file \"%s\": %m", path)));

		scan_segment(fd, path, files[i].size_bytes, files[i].first_index,
					 base_index, &last_term, &load, &scan);
		if (scan.base_term != 0)
			stored_base_term = scan.base_term;

		/*
		 * Zeros after the last record of the last segment are space made
		 * ready for appends, unless sound records follow them: then they
		 * are damage in the middle of the log.
		 */
		if (scan.zeros_follow && is_last &&
			sound_record_after(fd, path, scan.valid_bytes, files[i].size_bytes,
							   files[i].first_index + scan.n_records))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raft log file \"%s\" is corrupted at offset %llu",
							path, (unsigned long long) scan.valid_bytes),
					 errdetail("A record header of zeros is followed by sound records."),
					 errhint("This node's log cannot be trusted.  Rebuild the node from a healthy member of the cluster.")));
		if (scan.bad_reason != NULL)
		{
			if (!is_last)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raft log file \"%s\" is corrupted at offset %llu",
								path, (unsigned long long) scan.valid_bytes),
						 errdetail_internal("%s", scan.bad_reason),
						 errhint("Only the end of the last log file can be torn by a crash; this node's log cannot be trusted.  Rebuild the node from a healthy member of the cluster.")));

			/*
			 * A crash tears only what was written last.  A sound record
			 * after the bad one means the damage is in the middle of the
			 * log, where acknowledged entries live: refuse to cut them.
			 */
			if (sound_record_after(fd, path, scan.valid_bytes,
								   files[i].size_bytes,
								   files[i].first_index + scan.n_records))
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("raft log file \"%s\" is corrupted at offset %llu",
								path, (unsigned long long) scan.valid_bytes),
						 errdetail("%s Sound records follow it, so this is not a torn end of the log.",
								   scan.bad_reason),
						 errhint("This node's log cannot be trusted.  Rebuild the node from a healthy member of the cluster.")));
			truncate_file(fd, path, scan.valid_bytes);
			sync_file(fd, path, WAIT_EVENT_WAL_SYNC, false);
			ereport(LOG,
					(errmsg("truncated torn tail of raft log file \"%s\" at offset %llu",
							path, (unsigned long long) scan.valid_bytes),
					 errdetail("%s The last %llu bytes of the file were dropped.",
							   scan.bad_reason,
							   (unsigned long long) (files[i].size_bytes - scan.valid_bytes))));
			files[i].size_bytes = scan.valid_bytes;
			pfree(scan.bad_reason);
		}
		if (CloseTransientFile(fd) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not close file \"%s\": %m", path)));

		if (scan.n_records == 0)
		{
			/* only the last segment can get here: it was torn at offset 0 */
			Assert(is_last);
			unlink_file(path);
			removed_any = true;
			continue;
		}
		add_segment(log, files[i].first_index, scan.valid_bytes);
		log->segs[log->n_segs - 1].ready_bytes = files[i].size_bytes;
		log->segs[log->n_segs - 1].n_records = scan.n_records;
		log->segs[log->n_segs - 1].last_term = last_term;
		expected = files[i].first_index + scan.n_records;
	}
	pfree(files);

	if (log->n_segs > 0 && expected - 1 < base_index)
	{
		/* everything stored is older than the base: the log is stale */
		ereport(LOG,
				(errmsg("removed raft log files ending at index %llu, before the log base %llu",
						(unsigned long long) (expected - 1),
						(unsigned long long) base_index)));
		Assert(load.n == 0);
		remove_segments_from(log, 0);
		while (log->n_archive > 0)
			archive_remove_oldest(log);
		removed_any = true;
	}

	/* an archive with no log after it (the last file was torn away) goes */
	if (log->n_segs == 0)
	{
		removed_any |= log->n_archive > 0;
		while (log->n_archive > 0)
			archive_remove_oldest(log);
	}

	/*
	 * The archive holds committed entries only if the stored log holds the
	 * base's entry (log matching).  It is the archive's last record when
	 * the log's first segment starts after the base.
	 */
	if (log->n_archive > 0 && stored_base_term == 0)
	{
		const RaftLogSegment *seg = &log->archive[log->n_archive - 1];
		raft_term_t term;
		uint64		offset;
		int			fd;

		fd = archive_walk(path, seg->first_index, base_index, &term, &offset);
		if (fd >= 0)
		{
			stored_base_term = term;
			CloseTransientFile(fd);
		}
	}
	RaftStorageReadStruct(RAFT_ARCHIVE_FLOOR_FILE, &floor, sizeof(floor));
	if (base_index > 0 && stored_base_term != base_term && floor <= base_index &&
		(log->n_archive > 0 ||
		 (log->n_segs > 0 && log->segs[0].first_index <= base_index)))
	{
		ereport(LOG,
				(errmsg("the raft log here does not hold the log base's entry %llu of term %llu, so no entry up to it is sent to members that lag",
						(unsigned long long) base_index,
						(unsigned long long) base_term),
				 errdetail("The stored entry %llu has term %llu: the log may hold entries the cluster never committed before its base.  The log's archive is removed.",
						   (unsigned long long) base_index,
						   (unsigned long long) stored_base_term)));
		floor = base_index + 1;
		RaftStorageWriteFile(RAFT_ARCHIVE_FLOOR_FILE, &floor, sizeof(floor));
		removed_any |= log->n_archive > 0;
		while (log->n_archive > 0)
			archive_remove_oldest(log);
	}
	log->archive_floor = floor;

	log->next_index = log->n_segs > 0 ? expected : base_index + 1;
	log->last_term = log->n_segs > 0 ? last_segment(log)->last_term : 0;
	if (log->n_segs > 0)
		open_last_segment(log, false);
	if (removed_any)
		fsync_fname(RAFT_LOG_DIR, true);
	log->dir_unsynced = false;
	log->data_unsynced = false;
	check_invariants(log);

	Assert(load.n == 0 || load.entries[0].index == base_index + 1);
	Assert(load.n == 0 || load.entries[load.n - 1].index == log->next_index - 1);
	loaded->entries = load.entries;
	loaded->n_entries = load.n;
	return log;
}

/*
 * RaftLogAppend
 *		Writes entries[0..n-1] to the log, after discarding every stored
 *		entry at or after entries[0].index.
 *
 * The entries must be consecutive with non-decreasing terms (from the
 * entry before them, when it is stored), and entries[0].index must be after
 * the base and at most the index after the last stored entry: anything
 * else is a programming error.  Discarding
 * stored entries (a leader overwrote a suffix) is made durable before the
 * new records are written; the new records become durable at the next
 * RaftLogSync.  Records are buffered: one write() per segment per call up
 * to RAFT_LOG_WRITE_BUFFER_BYTES.
 */
void
RaftLogAppend(RaftLogStore *log, const raft_entry *entries, size_t n)
{
	raft_index_t first;

	if (n == 0)
		return;

	first = entries[0].index;
	if (first <= log->base_index)
		elog(ERROR, "cannot append raft log entry %llu: entries up to %llu are compacted",
			 (unsigned long long) first, (unsigned long long) log->base_index);
	if (first > log->next_index)
		elog(ERROR, "cannot append raft log entry %llu: the next entry must be %llu",
			 (unsigned long long) first, (unsigned long long) log->next_index);
	for (size_t i = 0; i < n; i++)
	{
		if (entries[i].index != first + i)
			elog(ERROR, "raft log entries to append are not consecutive: index %llu follows %llu",
				 (unsigned long long) entries[i].index,
				 (unsigned long long) (first + i - 1));
		if (entries[i].len > RAFT_LOG_MAX_PAYLOAD_BYTES)
			elog(ERROR, "raft log entry %llu is too large: %u bytes",
				 (unsigned long long) entries[i].index, entries[i].len);
		if (entries[i].len > 0 && entries[i].data == NULL)
			elog(ERROR, "raft log entry %llu has no data",
				 (unsigned long long) entries[i].index);
		if (i > 0)
			check_term_order(&entries[i], entries[i - 1].term);
	}
	if (first == log->next_index)
		check_term_order(&entries[0], log->last_term);

	begin_change(log);
	if (first < log->next_index)
		truncate_log_from(log, &entries[0]);
	Assert(first == log->next_index);

	for (size_t i = 0; i < n; i++)
		append_record(log, &entries[i]);
	flush_buffer(log);
	end_change(log);
}

/*
 * RaftLogSync
 *		Makes every record appended so far durable.
 *
 * fsyncs the last segment (earlier ones were fsynced when the next one was
 * created) and, if a segment was created or removed since the last sync,
 * the log directory, so that a new segment's name is durable too.
 */
void
RaftLogSync(RaftLogStore *log)
{
	char		path[MAXPGPATH];

	begin_change(log);
	Assert(log->buf_used == 0);
	if (log->data_unsynced)
	{
		Assert(log->fd >= 0);
		segment_path(path, last_segment(log)->first_index);
		sync_file(log->fd, path, WAIT_EVENT_WAL_SYNC, true);
		log->data_unsynced = false;
	}
	if (log->dir_unsynced)
	{
		fsync_fname(RAFT_LOG_DIR, true);
		log->dir_unsynced = false;
	}
	end_change(log);
}

/*
 * RaftLogReset
 *		Drops every stored entry; the next append starts at base_index + 1.
 *
 * Used when a snapshot replaces the log.  The removal is durable on return.
 * Caller must have made the new base durable first: the other order could
 * leave, after a crash, an old base with no log after it.
 */
void
RaftLogReset(RaftLogStore *log, raft_index_t base_index)
{
	begin_change(log);
	log->buf_used = 0;
	if (log->n_segs > 0 || log->n_archive > 0)
	{
		remove_segments_from(log, 0);
		while (log->n_archive > 0)
			archive_remove_oldest(log);
		fsync_fname(RAFT_LOG_DIR, true);
		log->dir_unsynced = false;
	}
	log->data_unsynced = false;
	log->base_index = base_index;
	log->next_index = base_index + 1;
	log->last_term = 0;
	memset(log->cursors, 0, sizeof(log->cursors));
	end_change(log);
}

/*
 * RaftLogCompact
 *		Moves the segments that hold only entries at or before index to the
 *		archive.
 *
 * The last segment never moves: it is the one appends go to.  Caller
 * must have made a base of at least index durable first.  No file
 * changes; RaftLogTrimArchive deletes archived segments.
 */
void
RaftLogCompact(RaftLogStore *log, raft_index_t index)
{
	int			n_removed = 0;

	begin_change(log);
	while (log->n_segs - n_removed > 1 &&
		   log->segs[n_removed + 1].first_index - 1 <= index)
	{
		RaftLogSegment *seg = &log->segs[n_removed];

		archive_push(log, seg);
		log->total_bytes -= seg->size_bytes;
		n_removed++;
	}
	if (n_removed > 0)
	{
		log->n_segs -= n_removed;
		memmove(log->segs, log->segs + n_removed,
				sizeof(RaftLogSegment) * log->n_segs);
	}
	if (index > log->base_index)
		log->base_index = Min(index, log->next_index - 1);
	end_change(log);
}

/*
 * RaftLogTrimArchive
 *		Deletes the archive's oldest segments until it holds at most
 *		keep_bytes.
 *
 * The unlinks become durable at the next RaftLogSync; a segment that
 * survives a crash is archived again on opening, and trimmed again.
 */
void
RaftLogTrimArchive(RaftLogStore *log, uint64 keep_bytes)
{
	if (log->archive_bytes <= keep_bytes)
		return;
	begin_change(log);
	while (log->n_archive > 0 && log->archive_bytes > keep_bytes)
		archive_remove_oldest(log);
	end_change(log);
}

/*
 * RaftLogArchiveBytes
 *		Returns the bytes of the archive's segments.
 */
uint64
RaftLogArchiveBytes(RaftLogStore *log)
{
	return log->archive_bytes;
}

/*
 * RaftLogArchiveRead
 *		Reads compacted entries for a member that lags: the term of entry
 *		prev into *prev_term, and entries prev + 1 onwards into entries[],
 *		at most max_entries of them, none after last or after the base,
 *		and no more payload than max_bytes beyond the first.
 *
 * Returns how many entries it read: 0 when the log no longer holds entry
 * prev or prev + 1.  The entries' data is palloc'd in the
 * CurrentMemoryContext.  The entries come from the archive or from the
 * first segment of the log, which may begin before the base.  Every
 * record is checked (index, length, CRC-32C); a bad one, or a file that
 * cannot be read, ends the read with a WARNING, never an ERROR: the
 * caller runs inside the consensus core, and the member can still be sent
 * the log's base.
 */
uint32
RaftLogArchiveRead(RaftLogStore *log, uint32 reader, raft_index_t prev,
				   raft_index_t last, uint32 max_entries, uint64 max_bytes,
				   raft_term_t *prev_term, raft_entry *entries)
{
	const RaftLogSegment *seg;
	ArchiveCursor *cursor = NULL;
	char		path[MAXPGPATH];
	raft_index_t index;
	uint64		offset = 0;
	uint64		bytes = 0;
	uint32		n = 0;
	int			fd = -1;

	last = Min(last, log->base_index);
	if (prev == 0 || prev >= last || max_entries == 0 ||
		(seg = archive_locate(log, prev)) == NULL)
		return 0;
	log->reads++;

	/* the reader's cursor, or else the least recently used one */
	for (int i = 0; i < RAFT_LOG_ARCHIVE_CURSORS; i++)
		if (log->cursors[i].reader == reader)
			cursor = &log->cursors[i];
	if (cursor == NULL)
	{
		cursor = &log->cursors[0];
		for (int i = 1; i < RAFT_LOG_ARCHIVE_CURSORS; i++)
			if (log->cursors[i].last_used < cursor->last_used)
				cursor = &log->cursors[i];
		memset(cursor, 0, sizeof(*cursor));
		cursor->reader = reader;
	}
	if (cursor->last_index == prev && cursor->seg_first == seg->first_index)
	{
		*prev_term = cursor->last_term;
		offset = cursor->offset;
	}
	else
	{
		if ((fd = archive_walk(path, seg->first_index, prev, prev_term,
							   &offset)) < 0)
			return 0;

		/* entries sent again (lost, or the answer was) say nothing new */
		if (cursor->last_index == 0 || prev + 1 < cursor->start_index ||
			prev > cursor->last_index)
		{
			cursor->start_index = prev + 1;
			ereport(LOG,
					(errmsg("pg_raft reads raft log entries from index %llu on from the log's archive, for member %u, which lags",
							(unsigned long long) (prev + 1), reader)));
		}
	}

	for (index = prev + 1; n < max_entries && index <= last; index++)
	{
		const RaftLogSegment *next_seg = seg;
		uint64		next_offset;
		raft_entry *e = &entries[n];

		if (index >= seg->first_index + seg->n_records)
		{
			/* on to the next segment */
			next_seg = archive_locate(log, index);
			if (next_seg == NULL)
				break;
			if (fd >= 0)
				CloseTransientFile(fd);
			fd = -1;
			offset = 0;
		}
		if (fd < 0)
		{
			segment_path(path, next_seg->first_index);
			if ((fd = archive_open(path)) < 0)
				break;
		}
		if (!archive_read_record(fd, path, offset, index, true, e, &next_offset))
			break;
		if (n > 0 && bytes + e->len > max_bytes)
		{
			pfree(unconstify(uint8_t *, e->data));
			break;
		}
		seg = next_seg;
		offset = next_offset;
		bytes += e->len;
		n++;
	}
	if (fd >= 0)
		CloseTransientFile(fd);

	/* the reader's next read starts where this one ended */
	cursor->last_index = n > 0 ? prev + n : 0;
	cursor->last_term = n > 0 ? entries[n - 1].term : 0;
	cursor->seg_first = seg->first_index;
	cursor->offset = offset;
	cursor->last_used = log->reads;
	return n;
}

/*
 * RaftLogBytes
 *		Returns the bytes of the records in the log segments (the archive
 *		not included).
 */
uint64
RaftLogBytes(RaftLogStore *log)
{
	return log->total_bytes;
}

/*
 * RaftLogClose
 *		Closes the log and frees the store.
 *
 * Does not sync: call RaftLogSync first for anything that must survive.
 */
void
RaftLogClose(RaftLogStore *log)
{
	if (log->fd >= 0)
		close_last_segment(log);
	pfree(log->segs);
	pfree(log->archive);
	if (log->buf != NULL)
		pfree(log->buf);
	pfree(log);
}


/* ----------------------------------------------------------------
 *		The log: changes
 * ----------------------------------------------------------------
 */

/*
 * begin_change / end_change
 *		Bracket a change to the log files.
 *
 * An ERROR between the two leaves busy set: the files may no longer match
 * what the store believes, so the store refuses further use until the
 * worker reopens the log.
 */
static void
begin_change(RaftLogStore *log)
{
	if (log->busy)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("raft log cannot be used after an earlier failure"),
				 errdetail("An error interrupted a change to the raft log files."),
				 errhint("Restart the raft worker to reopen the log.")));
	log->busy = true;
}

static void
end_change(RaftLogStore *log)
{
	Assert(log->busy);
	Assert(log->buf_used == 0);
	check_invariants(log);
	log->busy = false;
}

static void
check_invariants(const RaftLogStore *log)
{
#ifdef USE_ASSERT_CHECKING
	uint64		total = 0;

	Assert((log->fd >= 0) == (log->n_segs > 0));
	Assert(log->next_index > log->base_index);
	for (int i = 0; i < log->n_segs; i++)
	{
		total += log->segs[i].size_bytes;
		if (i + 1 < log->n_segs)
		{
			Assert(log->segs[i].n_records > 0);
			Assert(log->segs[i + 1].first_index ==
				   log->segs[i].first_index + log->segs[i].n_records);
		}
	}
	Assert(total == log->total_bytes);
	total = 0;
	for (int i = 0; i < log->n_archive; i++)
	{
		raft_index_t next_first = i + 1 < log->n_archive ?
			log->archive[i + 1].first_index : log->segs[0].first_index;

		total += log->archive[i].size_bytes;
		Assert(log->n_segs > 0);
		Assert(next_first == log->archive[i].first_index + log->archive[i].n_records);
	}
	Assert(total == log->archive_bytes);
	if (log->n_segs > 0)
	{
		Assert(log->segs[0].first_index <= log->base_index + 1);
		Assert(log->next_index == log->segs[log->n_segs - 1].first_index +
			   log->segs[log->n_segs - 1].n_records);
	}
#endif
}

static RaftLogSegment *
last_segment(RaftLogStore *log)
{
	Assert(log->n_segs > 0);
	return &log->segs[log->n_segs - 1];
}

/* Adds a segment at the end of the archive; does not touch the disk. */
static void
archive_push(RaftLogStore *log, const RaftLogSegment *seg)
{
	if (log->n_archive == log->max_archive)
	{
		log->max_archive *= 2;
		log->archive = repalloc(log->archive,
								sizeof(RaftLogSegment) * log->max_archive);
	}
	log->archive[log->n_archive++] = *seg;
	log->archive_bytes += seg->size_bytes;
}

/*
 * Unlinks the archive's oldest segment.  The reads left off in it are
 * forgotten.  Caller decides when to fsync the directory.
 */
static void
archive_remove_oldest(RaftLogStore *log)
{
	char		path[MAXPGPATH];
	raft_index_t first = log->archive[0].first_index;

	segment_path(path, first);
	unlink_file(path);
	log->archive_bytes -= log->archive[0].size_bytes;
	log->n_archive--;
	memmove(log->archive, log->archive + 1,
			sizeof(RaftLogSegment) * log->n_archive);
	log->dir_unsynced = true;
	for (int i = 0; i < RAFT_LOG_ARCHIVE_CURSORS; i++)
		if (log->cursors[i].seg_first == first)
			log->cursors[i].last_index = 0;
}

/*
 * The segment holding index at or before the base, in the archive or the
 * log's first segment; NULL if no longer kept.
 */
static const RaftLogSegment *
archive_locate(const RaftLogStore *log, raft_index_t index)
{
	if (index > log->base_index || index < log->archive_floor ||
		log->n_segs == 0)
		return NULL;
	if (log->segs[0].first_index <= index)
		return &log->segs[0];
	for (int i = log->n_archive - 1; i >= 0; i--)
		if (log->archive[i].first_index <= index)
			return &log->archive[i];
	return NULL;
}

/* Opens a segment to read archived entries; -1 with a WARNING if it cannot. */
static int
archive_open(const char *path)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);

	if (fd < 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path),
				 errdetail("A member that needs entries from it is sent the log's base instead.")));
	return fd;
}

/*
 * archive_walk
 *		Opens the segment that starts at first (its path into path) and
 *		walks its records from the start to that of index, which is read
 *		whole: its term into *term, the offset after it into *offset.
 *
 * Returns the open descriptor, or -1: if the segment starts after index,
 * or (with a WARNING) if the file cannot be opened or a record on the way
 * is bad.  Never raises an ERROR (see RaftLogArchiveRead).
 */
static int
archive_walk(char *path, raft_index_t first, raft_index_t index,
			 raft_term_t *term, uint64 *offset)
{
	raft_entry	e;
	int			fd;

	if (index < first)
		return -1;
	segment_path(path, first);
	if ((fd = archive_open(path)) < 0)
		return -1;
	*offset = 0;
	for (raft_index_t i = first; i <= index; i++)
		if (!archive_read_record(fd, path, *offset, i, i == index, &e, offset))
		{
			CloseTransientFile(fd);
			return -1;
		}
	*term = e.term;
	pfree(unconstify(uint8_t *, e.data));
	return fd;
}

/*
 * archive_read_record
 *		Reads and checks the record of index at offset: its header always,
 *		its payload (into a palloc'd e->data) and CRC-32C with want_data.
 *
 * Returns false, with a WARNING, if the record is not there or is bad;
 * never raises an ERROR (see RaftLogArchiveRead).  *next_offset is where
 * the next record starts.
 */
static bool
archive_read_record(int fd, const char *path, uint64 offset,
					raft_index_t index, bool want_data, raft_entry *e,
					uint64 *next_offset)
{
	char		hdr[RAFT_LOG_RECORD_HEADER_BYTES];
	uint32		len;
	pg_crc32c	stored;
	pg_crc32c	crc;
	uint64		term;
	uint64		stored_index;
	ssize_t		nread;
	uint8	   *payload = NULL;
	const char *problem = NULL;

	pgstat_report_wait_start(WAIT_EVENT_WAL_READ);
	nread = pg_pread(fd, hdr, sizeof(hdr), offset);
	pgstat_report_wait_end();
	if (nread < 0)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("could not read file \"%s\": %m", path),
				 errdetail("A member that needs entries from it is sent the log's base instead.")));
		return false;
	}
	memcpy(&len, hdr + RAFT_LOG_REC_LEN, 4);
	memcpy(&stored, hdr + RAFT_LOG_REC_CRC, 4);
	memcpy(&term, hdr + RAFT_LOG_REC_TERM, 8);
	memcpy(&stored_index, hdr + RAFT_LOG_REC_INDEX, 8);
	if (nread < (ssize_t) sizeof(hdr))
		problem = "The file ends before the record's header.";
	else if (stored_index != index)
		problem = psprintf("The record there has index %llu.",
						   (unsigned long long) stored_index);
	else if (len > RAFT_LOG_MAX_PAYLOAD_BYTES)
		problem = psprintf("The record gives a payload length of %u bytes, more than the maximum of %u.",
						   len, RAFT_LOG_MAX_PAYLOAD_BYTES);
	else if (want_data)
	{
		/* always a chunk, even for an empty payload: callers pfree it */
		payload = palloc(len);
		pgstat_report_wait_start(WAIT_EVENT_WAL_READ);
		nread = len == 0 ? 0 : pg_pread(fd, payload, len,
										offset + RAFT_LOG_RECORD_HEADER_BYTES);
		pgstat_report_wait_end();
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, hdr + RAFT_LOG_REC_CRC_FROM, RAFT_LOG_REC_CRC_HEADER_BYTES);
		if (nread == (ssize_t) len)
			COMP_CRC32C(crc, payload, len);
		FIN_CRC32C(crc);
		if (nread < 0)
			problem = psprintf("Its payload could not be read: %m.");
		else if (nread < (ssize_t) len)
			problem = "The file ends before the record's payload.";
		else if (!EQ_CRC32C(crc, stored))
			problem = psprintf("The record's stored CRC-32C 0x%08X does not match the computed 0x%08X.",
							   stored, crc);
	}
	if (problem != NULL)
	{
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("raft log file \"%s\" holds no sound record of index %llu at offset %llu",
						path, (unsigned long long) index,
						(unsigned long long) offset),
				 errdetail("%s A member that needs it is sent the log's base instead.", problem)));
		if (payload != NULL)
			pfree(payload);
		return false;
	}
	e->term = term;
	e->index = index;
	e->type = (uint8) hdr[RAFT_LOG_REC_TYPE];
	e->len = len;
	e->data = payload;
	*next_offset = offset + RAFT_LOG_RECORD_HEADER_BYTES + len;
	return true;
}

/* Records a new segment at the end of the array; does not touch the disk. */
static void
add_segment(RaftLogStore *log, raft_index_t first_index, uint64 size_bytes)
{
	RaftLogSegment *seg;

	if (log->n_segs == log->max_segs)
	{
		log->max_segs *= 2;
		log->segs = repalloc(log->segs, sizeof(RaftLogSegment) * log->max_segs);
	}
	seg = &log->segs[log->n_segs++];
	seg->first_index = first_index;
	seg->n_records = 0;
	seg->size_bytes = size_bytes;
	seg->ready_bytes = size_bytes;
	seg->last_term = 0;
	log->total_bytes += size_bytes;
}

/*
 * open_last_segment
 *		Opens (or, with create, creates) the last segment for appending.
 *
 * The descriptor outlives any transaction the worker runs, so it comes
 * from BasicOpenFile, not OpenTransientFile (which closes its descriptors
 * at transaction end), and is counted with ReserveExternalFD.
 */
static void
open_last_segment(RaftLogStore *log, bool create)
{
	char		path[MAXPGPATH];
	int			flags = O_RDWR | PG_BINARY;

	Assert(log->fd < 0);
	segment_path(path, last_segment(log)->first_index);
	if (create)
		flags |= O_CREAT | O_EXCL;

	ReserveExternalFD();
	log->fd = BasicOpenFile(path, flags);
	if (log->fd < 0)
	{
		int			save_errno = errno;

		ReleaseExternalFD();
		errno = save_errno;
		if (create)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not create file \"%s\": %m", path)));
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	}
	if (create)
		log->dir_unsynced = true;
}

static void
close_last_segment(RaftLogStore *log)
{
	char		path[MAXPGPATH];

	Assert(log->fd >= 0);
	if (close(log->fd) != 0)
	{
		segment_path(path, last_segment(log)->first_index);
		log->fd = -1;
		ReleaseExternalFD();
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", path)));
	}
	log->fd = -1;
	ReleaseExternalFD();
}

/*
 * remove_segments_from
 *		Unlinks segments from..n_segs-1, newest first.
 *
 * Newest first, so that a crash part-way leaves a log without a hole.
 * Caller decides when to fsync the directory.
 */
static void
remove_segments_from(RaftLogStore *log, int from)
{
	char		path[MAXPGPATH];

	if (log->fd >= 0 && from < log->n_segs)
		close_last_segment(log);
	while (log->n_segs > from)
	{
		RaftLogSegment *seg = last_segment(log);

		segment_path(path, seg->first_index);
		unlink_file(path);
		log->total_bytes -= seg->size_bytes;
		log->n_segs--;
	}
	log->dir_unsynced = true;
}

/*
 * truncate_log_from
 *		Discards every stored entry at or after first->index, durably.
 *
 * first is the entry about to be appended in their place; its term is
 * checked against the entry kept before it, before anything changes.
 *
 * Later segments are unlinked and the one holding index is cut at that
 * record; both are made durable before any new record is written, so a
 * crash can never leave old records behind new ones.  Rare (only after a
 * change of leader), so the two fsyncs do not matter.
 */
static void
truncate_log_from(RaftLogStore *log, const raft_entry *first)
{
	raft_index_t index = first->index;
	char		path[MAXPGPATH];
	RaftLogSegment *seg;
	uint64		offset;
	raft_term_t prev_term = 0;
	int			k;
	bool		removed;

	Assert(log->buf_used == 0);
	Assert(index > log->base_index && index < log->next_index);

	/* the segment holding index: usually the last one or the one before */
	k = log->n_segs - 1;
	while (k > 0 && log->segs[k].first_index > index)
		k--;
	Assert(log->segs[k].first_index <= index);
	offset = record_offset(log, k, index, &prev_term);
	check_term_order(first, prev_term);

	removed = (k < log->n_segs - 1);
	if (removed)
	{
		remove_segments_from(log, k + 1);
		open_last_segment(log, false);
	}

	seg = last_segment(log);
	segment_path(path, seg->first_index);
	truncate_file(log->fd, path, offset);
	sync_file(log->fd, path, WAIT_EVENT_WAL_SYNC, false);
	log->data_unsynced = false;
	if (removed || log->dir_unsynced)
	{
		fsync_fname(RAFT_LOG_DIR, true);
		log->dir_unsynced = false;
	}

	log->total_bytes -= seg->size_bytes - offset;
	seg->size_bytes = offset;
	seg->ready_bytes = offset;
	seg->n_records = index - seg->first_index;
	seg->last_term = seg->n_records > 0 ? prev_term : 0;
	log->next_index = index;
	log->last_term = prev_term;
}

/*
 * check_term_order
 *		Rejects an entry whose term is lower than the one before it: terms
 *		never decrease along a Raft log.  prev_term 0 means unknown.
 */
static void
check_term_order(const raft_entry *e, raft_term_t prev_term)
{
	if (e->term < prev_term)
		elog(ERROR, "raft log entry %llu has term %llu, lower than the term %llu of the entry before it",
			 (unsigned long long) e->index, (unsigned long long) e->term,
			 (unsigned long long) prev_term);
}

/*
 * record_offset
 *		Returns the offset of record index in segment seg, and in *prev_term
 *		the term of the record before it (0 if unknown: it is the base).
 *
 * Walks the record headers from the start of the segment (at most
 * RAFT_LOG_SEGMENT_BYTES to read, since a segment over that size holds a
 * single record).  The records were checked when the log was opened or
 * written by this process, so a mismatch here is corruption of a file in
 * use.
 */
static uint64
record_offset(RaftLogStore *log, int seg, raft_index_t index,
			  raft_term_t *prev_term)
{
	RaftLogSegment *s = &log->segs[seg];
	char		path[MAXPGPATH];
	SegmentReader r;
	uint64		offset = 0;
	int			fd;

	Assert(index >= s->first_index && index < s->first_index + s->n_records);
	if (index == s->first_index)
	{
		*prev_term = seg > 0 ? log->segs[seg - 1].last_term : 0;
		return 0;
	}

	segment_path(path, s->first_index);
	fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	reader_init(&r, fd, path);

	for (raft_index_t i = s->first_index; i < index; i++)
	{
		char		hdr[RAFT_LOG_RECORD_HEADER_BYTES];
		uint32		len;
		uint64		stored_index;

		if (s->size_bytes - offset < RAFT_LOG_RECORD_HEADER_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raft log file \"%s\" is corrupted at offset %llu",
							path, (unsigned long long) offset),
					 errdetail("The file ends before the record of index %llu.",
							   (unsigned long long) i)));
		reader_read(&r, hdr, RAFT_LOG_RECORD_HEADER_BYTES, NULL);
		memcpy(&len, hdr + RAFT_LOG_REC_LEN, 4);
		memcpy(prev_term, hdr + RAFT_LOG_REC_TERM, 8);
		memcpy(&stored_index, hdr + RAFT_LOG_REC_INDEX, 8);
		if (stored_index != i ||
			len > s->size_bytes - offset - RAFT_LOG_RECORD_HEADER_BYTES)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raft log file \"%s\" is corrupted at offset %llu",
							path, (unsigned long long) offset),
					 errdetail("The record there has index %llu and length %u, where index %llu was expected.",
							   (unsigned long long) stored_index, len,
							   (unsigned long long) i)));
		reader_skip(&r, len);
		offset += RAFT_LOG_RECORD_HEADER_BYTES + len;
	}

	pfree(r.buf);
	if (CloseTransientFile(fd) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not close file \"%s\": %m", path)));
	return offset;
}

/*
 * append_record
 *		Adds one record to the write buffer, starting a new segment first if
 *		it does not fit in the current one.
 *
 * A record larger than the buffer is written directly.  The previous
 * segment is fsynced before the next is created: only the last segment
 * may ever be torn.
 */
static void
append_record(RaftLogStore *log, const raft_entry *e)
{
	uint64		rec_bytes = RAFT_LOG_RECORD_HEADER_BYTES + (uint64) e->len;
	RaftLogSegment *seg;
	char		path[MAXPGPATH];

	Assert(e->index == log->next_index);

	if (log->n_segs > 0)
	{
		uint64		used = last_segment(log)->size_bytes + log->buf_used;

		if (used > 0 && used + rec_bytes > RAFT_LOG_SEGMENT_BYTES)
		{
			flush_buffer(log);
			if (log->data_unsynced)
			{
				segment_path(path, last_segment(log)->first_index);
				sync_file(log->fd, path, WAIT_EVENT_WAL_SYNC, true);
				log->data_unsynced = false;
			}
			close_last_segment(log);
			add_segment(log, e->index, 0);
			open_last_segment(log, true);
		}
	}
	else
	{
		add_segment(log, e->index, 0);
		open_last_segment(log, true);
	}
	seg = last_segment(log);

	if (log->buf == NULL)
	{
		log->buf_cap = RAFT_LOG_WRITE_BUFFER_BYTES;
		log->buf = MemoryContextAlloc(log->cxt, log->buf_cap);
	}
	if (log->buf_used + rec_bytes > log->buf_cap)
		flush_buffer(log);

	if (rec_bytes > log->buf_cap)
	{
		char		hdr[RAFT_LOG_RECORD_HEADER_BYTES];

		Assert(log->buf_used == 0);
		segment_path(path, seg->first_index);
		prepare_space(log, seg->size_bytes + rec_bytes);
		encode_record_header(hdr, e);
		write_fully(log->fd, path, hdr, RAFT_LOG_RECORD_HEADER_BYTES,
					seg->size_bytes, WAIT_EVENT_WAL_WRITE);
		write_fully(log->fd, path, e->data, e->len,
					seg->size_bytes + RAFT_LOG_RECORD_HEADER_BYTES,
					WAIT_EVENT_WAL_WRITE);
		seg->size_bytes += rec_bytes;
		seg->ready_bytes = Max(seg->ready_bytes, seg->size_bytes);
		log->total_bytes += rec_bytes;
		log->data_unsynced = true;
	}
	else
	{
		encode_record_header(log->buf + log->buf_used, e);
		if (e->len > 0)
			memcpy(log->buf + log->buf_used + RAFT_LOG_RECORD_HEADER_BYTES,
				   e->data, e->len);
		log->buf_used += rec_bytes;
	}
	seg->n_records++;
	seg->last_term = e->term;
	log->next_index++;
	log->last_term = e->term;
}

/* Writes the buffered records at the end of the last segment. */
static void
flush_buffer(RaftLogStore *log)
{
	RaftLogSegment *seg;
	char		path[MAXPGPATH];

	if (log->buf_used == 0)
		return;
	seg = last_segment(log);
	segment_path(path, seg->first_index);
	prepare_space(log, seg->size_bytes + log->buf_used);
	write_fully(log->fd, path, log->buf, log->buf_used, seg->size_bytes,
				WAIT_EVENT_WAL_WRITE);
	seg->size_bytes += log->buf_used;
	seg->ready_bytes = Max(seg->ready_bytes, seg->size_bytes);
	log->total_bytes += log->buf_used;
	log->buf_used = 0;
	log->data_unsynced = true;
}

/*
 * prepare_space
 *		Extends the last segment with zeros, RAFT_LOG_PREPARE_BYTES at a
 *		time up to RAFT_LOG_SEGMENT_BYTES, so that the records about to be
 *		written up to offset end overwrite blocks the file already has.
 *
 * A record that reaches past the segment size is written as it comes.
 */
static void
prepare_space(RaftLogStore *log, uint64 end)
{
	static const PGAlignedBlock zeros;
	RaftLogSegment *seg = last_segment(log);
	char		path[MAXPGPATH];
	uint64		target;
	uint64		offset;

	if (end <= seg->ready_bytes)
		return;
	target = Min(Max(seg->ready_bytes, seg->size_bytes) + RAFT_LOG_PREPARE_BYTES,
				 (uint64) RAFT_LOG_SEGMENT_BYTES);
	if (target < end)
		return;
	segment_path(path, seg->first_index);
	for (offset = seg->ready_bytes; offset < target; offset += sizeof(zeros.data))
		write_fully(log->fd, path, zeros.data,
					Min(sizeof(zeros.data), target - offset), offset,
					WAIT_EVENT_WAL_INIT_WRITE);
	seg->ready_bytes = target;
	log->data_unsynced = true;
}

/* Fills the RAFT_LOG_RECORD_HEADER_BYTES header of e's record at dst. */
static void
encode_record_header(char *dst, const raft_entry *e)
{
	uint32		len = e->len;
	uint64		term = e->term;
	uint64		index = e->index;
	pg_crc32c	crc;

	memcpy(dst + RAFT_LOG_REC_TERM, &term, 8);
	memcpy(dst + RAFT_LOG_REC_INDEX, &index, 8);
	dst[RAFT_LOG_REC_TYPE] = (char) e->type;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, dst + RAFT_LOG_REC_CRC_FROM, RAFT_LOG_REC_CRC_HEADER_BYTES);
	if (len > 0)
		COMP_CRC32C(crc, e->data, len);
	FIN_CRC32C(crc);

	memcpy(dst + RAFT_LOG_REC_LEN, &len, 4);
	memcpy(dst + RAFT_LOG_REC_CRC, &crc, 4);
}


/* ----------------------------------------------------------------
 *		The log: reading
 * ----------------------------------------------------------------
 */

/*
 * scan_segment
 *		Reads and checks every record of a segment from its start.
 *
 * Entries after base_index are added to *out with palloc'd data (a chunk
 * of zero bytes for an empty payload, so callers may pfree every one).
 * Stops at the first bad record: one cut short by the end of the file,
 * with an impossible length, a wrong CRC-32C, an index other than the next
 * one, or a term lower than the record before it (*last_term, carried
 * across segments).  scan->bad_reason then says why, as a detail sentence.
 * A record header of zeros ends the records without a reason (zeros_follow):
 * the space after them was made ready for appends.
 */
static void
scan_segment(int fd, const char *path, uint64 size, raft_index_t first_index,
			 raft_index_t base_index, raft_term_t *last_term,
			 RaftLoadArray *out, SegmentScan *scan)
{
	SegmentReader r;
	raft_index_t expected = first_index;
	uint64		offset = 0;

	reader_init(&r, fd, path);
	scan->n_records = 0;
	scan->bad_reason = NULL;
	scan->zeros_follow = false;
	scan->base_term = 0;

	while (offset < size)
	{
		char		hdr[RAFT_LOG_RECORD_HEADER_BYTES];
		uint32		len;
		pg_crc32c	stored;
		pg_crc32c	crc;
		uint64		term;
		uint64		index;
		uint8		type;
		uint8	   *payload = NULL;

		size_t		hdr_len = Min(size - offset, RAFT_LOG_RECORD_HEADER_BYTES);

		memset(hdr, 0, sizeof(hdr));
		reader_read(&r, hdr, hdr_len, NULL);
		if (all_zeros(hdr, sizeof(hdr)))
		{
			scan->zeros_follow = true;
			break;
		}
		if (hdr_len < RAFT_LOG_RECORD_HEADER_BYTES)
		{
			scan->bad_reason =
				psprintf("The file ends %llu bytes into a record header of %d bytes.",
						 (unsigned long long) (size - offset),
						 RAFT_LOG_RECORD_HEADER_BYTES);
			break;
		}
		memcpy(&len, hdr + RAFT_LOG_REC_LEN, 4);
		memcpy(&stored, hdr + RAFT_LOG_REC_CRC, 4);
		memcpy(&term, hdr + RAFT_LOG_REC_TERM, 8);
		memcpy(&index, hdr + RAFT_LOG_REC_INDEX, 8);
		type = (uint8) hdr[RAFT_LOG_REC_TYPE];

		if (len > RAFT_LOG_MAX_PAYLOAD_BYTES)
		{
			scan->bad_reason =
				psprintf("The record gives a payload length of %u bytes, more than the maximum of %u.",
						 len, RAFT_LOG_MAX_PAYLOAD_BYTES);
			break;
		}
		if (size - offset - RAFT_LOG_RECORD_HEADER_BYTES < len)
		{
			scan->bad_reason =
				psprintf("The record gives a payload length of %u bytes, but only %llu bytes follow its header.",
						 len,
						 (unsigned long long) (size - offset - RAFT_LOG_RECORD_HEADER_BYTES));
			break;
		}

		INIT_CRC32C(crc);
		COMP_CRC32C(crc, hdr + RAFT_LOG_REC_CRC_FROM, RAFT_LOG_REC_CRC_HEADER_BYTES);
		/* always a chunk, even for an empty payload: callers pfree it */
		if (index > base_index)
			payload = palloc(len);
		reader_read(&r, payload, len, &crc);
		FIN_CRC32C(crc);

		if (!EQ_CRC32C(crc, stored))
			scan->bad_reason =
				psprintf("The record's stored CRC-32C 0x%08X does not match the computed 0x%08X.",
						 stored, crc);
		else if (index != expected)
			scan->bad_reason =
				psprintf("The record has index %llu where index %llu was expected.",
						 (unsigned long long) index,
						 (unsigned long long) expected);
		else if (term < *last_term)
			scan->bad_reason =
				psprintf("The record of index %llu has term %llu, lower than the term %llu of the record before it.",
						 (unsigned long long) index,
						 (unsigned long long) term,
						 (unsigned long long) *last_term);
		if (scan->bad_reason != NULL)
		{
			if (payload != NULL)
				pfree(payload);
			break;
		}

		if (index == base_index)
			scan->base_term = term;
		if (index > base_index)
		{
			raft_entry	e;

			e.term = term;
			e.index = index;
			e.type = type;
			e.len = len;
			e.data = payload;
			load_array_push(out, &e);
		}
		*last_term = term;
		expected++;
		offset += RAFT_LOG_RECORD_HEADER_BYTES + len;
		scan->n_records++;
	}

	scan->valid_bytes = offset;
	pfree(r.buf);
}

static bool
all_zeros(const char *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i] != 0)
			return false;
	return true;
}

static void
load_array_push(RaftLoadArray *a, const raft_entry *e)
{
	if (a->n == a->cap)
	{
		a->cap = a->cap == 0 ? 1024 : a->cap * 2;
		if (a->entries == NULL)
			a->entries = MemoryContextAllocHuge(CurrentMemoryContext,
												sizeof(raft_entry) * a->cap);
		else
			a->entries = repalloc_huge(a->entries, sizeof(raft_entry) * a->cap);
	}
	a->entries[a->n++] = *e;
}

/*
 * list_segment_files
 *		Returns the segment files of the log directory, sorted by first
 *		index, with their sizes.  Other names are ignored.
 */
static SegmentFile *
list_segment_files(int *n_files)
{
	DIR		   *dir;
	struct dirent *de;
	SegmentFile *files;
	int			n = 0;
	int			cap = 16;

	files = palloc(sizeof(SegmentFile) * cap);
	dir = AllocateDir(RAFT_LOG_DIR);
	while ((de = ReadDir(dir, RAFT_LOG_DIR)) != NULL)
	{
		char		path[MAXPGPATH];
		struct stat st;

		if (strlen(de->d_name) != RAFT_LOG_SEGMENT_NAME_CHARS ||
			strspn(de->d_name, "0123456789ABCDEF") != RAFT_LOG_SEGMENT_NAME_CHARS)
			continue;

		snprintf(path, sizeof(path), "%s/%s", RAFT_LOG_DIR, de->d_name);
		if (stat(path, &st) != 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not stat file \"%s\": %m", path)));
		if (!S_ISREG(st.st_mode))
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("raft log file \"%s\" is not a regular file", path)));

		if (n == cap)
		{
			cap *= 2;
			files = repalloc(files, sizeof(SegmentFile) * cap);
		}
		files[n].first_index = strtou64(de->d_name, NULL, 16);
		files[n].size_bytes = (uint64) st.st_size;
		n++;
	}
	FreeDir(dir);

	qsort(files, n, sizeof(SegmentFile), segment_file_cmp);
	*n_files = n;
	return files;
}

static int
segment_file_cmp(const void *a, const void *b)
{
	raft_index_t ia = ((const SegmentFile *) a)->first_index;
	raft_index_t ib = ((const SegmentFile *) b)->first_index;

	if (ia < ib)
		return -1;
	return ia > ib ? 1 : 0;
}

static void
segment_path(char *path, raft_index_t first_index)
{
	snprintf(path, MAXPGPATH, "%s/%016llX", RAFT_LOG_DIR,
			 (unsigned long long) first_index);
}

static void
reader_init(SegmentReader *r, int fd, const char *path)
{
	r->fd = fd;
	r->path = path;
	r->cap = RAFT_LOG_READ_BUFFER_BYTES;
	r->buf = palloc(r->cap);
	r->buf_start = 0;
	r->buf_len = 0;
	r->buf_pos = 0;
}

/*
 * reader_read
 *		Hands out the next len bytes: copied to dst unless it is NULL, added
 *		to *crc unless it is NULL.
 *
 * Caller has checked the file size, so the end of the file here means the
 * file shrank under us.
 */
static void
reader_read(SegmentReader *r, void *dst, size_t len, pg_crc32c *crc)
{
	char	   *out = dst;

	while (len > 0)
	{
		size_t		chunk;

		if (r->buf_pos == r->buf_len)
		{
			off_t		offset = r->buf_start + r->buf_len;
			ssize_t		nread;

			pgstat_report_wait_start(WAIT_EVENT_WAL_READ);
			nread = pg_pread(r->fd, r->buf, r->cap, offset);
			pgstat_report_wait_end();
			if (nread < 0)
				ereport(ERROR,
						(errcode_for_file_access(),
						 errmsg("could not read file \"%s\": %m", r->path)));
			if (nread == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATA_CORRUPTED),
						 errmsg("could not read file \"%s\": unexpected end of file at offset %llu",
								r->path, (unsigned long long) offset)));
			r->buf_start = offset;
			r->buf_len = nread;
			r->buf_pos = 0;
		}
		chunk = Min(r->buf_len - r->buf_pos, len);
		if (crc != NULL)
			COMP_CRC32C(*crc, r->buf + r->buf_pos, chunk);
		if (out != NULL)
		{
			memcpy(out, r->buf + r->buf_pos, chunk);
			out += chunk;
		}
		r->buf_pos += chunk;
		len -= chunk;
	}
}

/* Skips the next len bytes. */
static void
reader_skip(SegmentReader *r, size_t len)
{
	size_t		avail = r->buf_len - r->buf_pos;

	if (len <= avail)
		r->buf_pos += len;
	else
	{
		r->buf_start += r->buf_len + (len - avail);
		r->buf_len = 0;
		r->buf_pos = 0;
	}
}


/* ----------------------------------------------------------------
 *		File helpers
 * ----------------------------------------------------------------
 */

/* A state file name is one plain path component, not ours to misuse. */
static void
check_file_name(const char *name)
{
	size_t		len = strlen(name);

	if (len == 0 || strchr(name, '/') != NULL || strcmp(name, ".") == 0 ||
		strcmp(name, "..") == 0 || strcmp(name, "log") == 0 ||
		(len >= 4 && strcmp(name + len - 4, ".tmp") == 0) ||
		len + sizeof(RAFT_STORAGE_DIR "/.tmp") > MAXPGPATH)
		elog(ERROR, "invalid raft state file name \"%s\"", name);
}

/*
 * ensure_directory
 *		Creates dir if it does not exist, durably (dir and its parent are
 *		fsynced).
 */
static void
ensure_directory(const char *dir, const char *parent)
{
	if (MakePGDirectory(dir) == 0)
	{
		fsync_fname(dir, true);
		fsync_fname(parent, true);
	}
	else if (errno != EEXIST)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not create directory \"%s\": %m", dir)));
}

/* Writes len bytes at offset, retrying short writes. */
static void
write_fully(int fd, const char *path, const void *buf, size_t len,
			off_t offset, uint32 wait_event)
{
	const char *p = buf;

	while (len > 0)
	{
		ssize_t		written;

		errno = 0;
		pgstat_report_wait_start(wait_event);
		written = pg_pwrite(fd, p, len, offset);
		pgstat_report_wait_end();
		if (written <= 0)
		{
			if (written < 0 && errno == EINTR)
				continue;
			/* if write didn't set errno, assume problem is no disk space */
			if (errno == 0)
				errno = ENOSPC;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not write to file \"%s\": %m", path)));
		}
		p += written;
		len -= written;
		offset += written;
	}
}

/* Reads exactly len bytes at offset; a short read is corruption. */
static void
read_fully(int fd, const char *path, void *buf, size_t len, off_t offset,
		   uint32 wait_event)
{
	char	   *p = buf;
	size_t		done = 0;

	while (done < len)
	{
		ssize_t		nread;

		pgstat_report_wait_start(wait_event);
		nread = pg_pread(fd, p + done, len - done, offset + done);
		pgstat_report_wait_end();
		if (nread < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read file \"%s\": %m", path)));
		}
		if (nread == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("could not read file \"%s\": read %zu of %zu",
							path, done, len)));
		done += nread;
	}
}

/*
 * sync_file
 *		fsyncs fd, or with data_only fdatasyncs it (its blocks, and its size
 *		if it grew: what a log segment's records need); a failure is a PANIC
 *		unless data_sync_retry is on, as for PostgreSQL's own files.
 */
static void
sync_file(int fd, const char *path, uint32 wait_event, bool data_only)
{
	pgstat_report_wait_start(wait_event);
	if ((data_only ? pg_fdatasync(fd) : pg_fsync(fd)) != 0)
	{
		int			save_errno = errno;

		pgstat_report_wait_end();
		errno = save_errno;
		ereport(data_sync_elevel(ERROR),
				(errcode_for_file_access(),
				 data_only ?
				 errmsg("could not fdatasync file \"%s\": %m", path) :
				 errmsg("could not fsync file \"%s\": %m", path)));
	}
	pgstat_report_wait_end();
}

static void
truncate_file(int fd, const char *path, uint64 len)
{
	int			rc;

	do
	{
		rc = ftruncate(fd, (off_t) len);
	} while (rc != 0 && errno == EINTR);
	if (rc != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not truncate file \"%s\" to %llu bytes: %m",
						path, (unsigned long long) len)));
}

static void
unlink_file(const char *path)
{
	if (unlink(path) != 0 && errno != ENOENT)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not remove file \"%s\": %m", path)));
}

/*
 * sound_record_after
 *		Looks past a bad record at offset from for any record that is whole,
 *		passes its checksum and has a plausible index (at or after the bad
 *		record's, bad_index).
 */
static bool
sound_record_after(int fd, const char *path, uint64 from, uint64 size,
				   raft_index_t bad_index)
{
	uint64		rest = size > from + 1 ? size - from - 1 : 0;
	char	   *buf;
	uint64		p;
	bool		found = false;

	if (rest < RAFT_LOG_RECORD_HEADER_BYTES)
		return false;
	buf = palloc(rest);
	read_fully(fd, path, buf, rest, from + 1, WAIT_EVENT_WAL_READ);
	for (p = 0; p + RAFT_LOG_RECORD_HEADER_BYTES <= rest && !found; p++)
	{
		uint32		len;
		pg_crc32c	stored;
		pg_crc32c	crc;
		uint64		index;

		memcpy(&len, buf + p, 4);
		memcpy(&stored, buf + p + 4, 4);
		memcpy(&index, buf + p + 16, 8);
		if (len > rest - p - RAFT_LOG_RECORD_HEADER_BYTES ||
			index < bad_index || index - bad_index > (1 << 20))
			continue;
		INIT_CRC32C(crc);
		COMP_CRC32C(crc, buf + p + RAFT_LOG_REC_CRC_FROM,
					RAFT_LOG_REC_CRC_HEADER_BYTES + len);
		FIN_CRC32C(crc);
		found = EQ_CRC32C(crc, stored);
	}
	pfree(buf);
	return found;
}
