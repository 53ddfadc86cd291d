/*-------------------------------------------------------------------------
 *
 * ring.c
 *	  A ring of bytes in shared memory carrying length-prefixed records.
 *
 * NOTES
 *	  Three rings use it: the inbox, where backends running raft.deliver()
 *	  queue messages for the raft worker; the apply queue, where the raft
 *	  worker hands committed entries to the apply worker; and the capture
 *	  queue, where the decoding worker hands what it decoded to the raft
 *	  worker.  A record is a u32 length and that many bytes, written in up
 *	  to two parts so that a caller can put a header before data without
 *	  copying them together.
 *	  head and tail count every byte ever written and read; the ring holds
 *	  head - tail bytes.  Callers hold RaftShmem->lock exclusively.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "pg_raft.h"

static void
ring_copy_in(RaftRing *ring, uint64 pos, const void *src, uint32 len)
{
	uint32		done = 0;

	while (done < len)
	{
		uint32		at = (uint32) (pos % ring->size);
		uint32		chunk = Min(len - done, (uint32) (ring->size - at));

		memcpy(ring->data + at, (const char *) src + done, chunk);
		done += chunk;
		pos += chunk;
	}
}

static void
ring_copy_out(const RaftRing *ring, uint64 pos, void *dst, uint32 len)
{
	uint32		done = 0;

	while (done < len)
	{
		uint32		at = (uint32) (pos % ring->size);
		uint32		chunk = Min(len - done, (uint32) (ring->size - at));

		memcpy((char *) dst + done, ring->data + at, chunk);
		done += chunk;
		pos += chunk;
	}
}

void
RaftRingInit(RaftRing *ring, char *data, uint32 size)
{
	ring->head = 0;
	ring->tail = 0;
	ring->size = size;
	ring->data = data;
}

/* Bytes a record of len bytes takes in the ring. */
uint64
RaftRingRecordBytes(uint32 len)
{
	return sizeof(uint32) + (uint64) len;
}

/*
 * Appends one record made of part a (a_len bytes) and part b (b_len
 * bytes).  Returns false, writing nothing, when it does not fit.
 */
bool
RaftRingPush(RaftRing *ring, const void *a, uint32 a_len,
			 const void *b, uint32 b_len)
{
	uint32		len = a_len + b_len;
	uint64		pos = ring->head;

	if (ring->head - ring->tail + RaftRingRecordBytes(len) > ring->size)
		return false;
	ring_copy_in(ring, pos, &len, sizeof(len));
	pos += sizeof(len);
	ring_copy_in(ring, pos, a, a_len);
	pos += a_len;
	ring_copy_in(ring, pos, b, b_len);
	pos += b_len;
	ring->head = pos;
	return true;
}

/*
 * Takes the oldest record into buf (cap bytes) and sets *len.  Returns
 * false when the ring is empty.  A record larger than cap cannot have been
 * pushed by our callers; it is skipped rather than trusted.
 */
bool
RaftRingPop(RaftRing *ring, void *buf, uint32 cap, uint32 *len)
{
	while (ring->head != ring->tail)
	{
		uint32		rec_len;

		ring_copy_out(ring, ring->tail, &rec_len, sizeof(rec_len));
		ring->tail += sizeof(rec_len);
		if (rec_len > cap)
		{
			ring->tail += rec_len;
			continue;
		}
		ring_copy_out(ring, ring->tail, buf, rec_len);
		ring->tail += rec_len;
		*len = rec_len;
		return true;
	}
	return false;
}

/* Forgets every record. */
void
RaftRingClear(RaftRing *ring)
{
	ring->tail = ring->head;
}
