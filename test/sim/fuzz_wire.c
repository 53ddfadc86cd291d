/*-------------------------------------------------------------------------
 *
 * fuzz_wire.c
 *	  libFuzzer target for the wire decoder (src/raft/wire.c).
 *
 * Every input is decoded three ways: as it is; with its last 4 bytes
 * replaced by the right CRC; and "sealed", with magic, version, length and
 * CRC all fixed up, so that the fuzzer spends its time on the body rather
 * than on guessing checksums.  Whenever a decode succeeds the target checks
 * that the message re-encodes to exactly the input (the format is
 * canonical) and a few other properties, and abort()s if one fails.
 *
 *	  clang -std=c99 -O1 -g -fsanitize=fuzzer,address,undefined \
 *		  -I../../src/raft -o build/fuzz_wire fuzz_wire.c ../../src/raft/wire.c
 *	  ./build/fuzz_wire -max_total_time=60 NEW_CORPUS_DIR corpus_wire
 *
 * The seeds in corpus_wire/ come from "test_wire --write-corpus DIR" and
 * are encoded with CLUSTER_ID below.
 *
 * IDENTIFICATION
 *	  test/sim/fuzz_wire.c
 *
 *-------------------------------------------------------------------------
 */
#include "raft.h"

#include <stdlib.h>
#include <string.h>

/* Must match TEST_CLUSTER_ID in test_wire.c. */
#define CLUSTER_ID UINT64_C(0x7067726166740001)

#define OFF_VERSION		4
#define OFF_LENGTH		16
#define MIN_MSG_BYTES	76

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static raft_entry entries[RAFT_MAX_ENTRIES_PER_MSG];

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static void
require(int cond)
{
	if (!cond)
		abort();
}

/* Decodes buf and, on success, checks everything a valid frame implies. */
static void
check_frame(const uint8_t *buf, size_t len)
{
	raft_msg	m,
				m2;
	uint8_t    *out;
	size_t		out_len;
	uint32_t	i;
	int			rc;

	rc = raft_msg_decode(buf, len, CLUSTER_ID, &m, entries,
						 RAFT_MAX_ENTRIES_PER_MSG);
	/* only wire errors for valid arguments */
	require(rc == RAFT_OK ||
			(rc <= RAFT_ERR_MSG_TRUNCATED && rc >= RAFT_ERR_MSG_TOO_LARGE));
	if (rc != RAFT_OK)
		return;

	require(m.type >= 1 && m.type <= RAFT_MSG_TYPE_MAX);
	require(m.from != RAFT_NO_NODE && m.to != RAFT_NO_NODE && m.from != m.to);
	require(m.n_entries <= RAFT_MAX_ENTRIES_PER_MSG);
	require(m.n_entries == 0 || m.type == RAFT_MSG_APPEND);
	require(m.config.n_members <= RAFT_MAX_MEMBERS);
	for (i = 0; i < m.n_entries; i++)
	{
		const raft_entry *e = &m.entries[i];

		require(e->index == m.index + 1 + i);
		require(e->data >= buf && e->data <= buf + len &&
				e->len <= (size_t) (buf + len - e->data));
		require(e->type >= RAFT_ENTRY_NORMAL && e->type <= RAFT_ENTRY_CONFIG);
	}

	/* canonical: re-encoding gives back the very same bytes */
	require(raft_msg_encoded_size(&m) == len);
	out = malloc(len);
	require(out != NULL);
	rc = raft_msg_encode(&m, CLUSTER_ID, out, len, &out_len);
	require(rc == RAFT_OK && out_len == len && memcmp(out, buf, len) == 0);
	rc = raft_msg_encode(&m, CLUSTER_ID, out, len - 1, &out_len);
	require(rc == RAFT_ERR_TOO_LARGE && out_len == len);
	free(out);

	/* the same frame in another cluster, or with too little room */
	rc = raft_msg_decode(buf, len, CLUSTER_ID ^ 1, &m2, entries,
						 RAFT_MAX_ENTRIES_PER_MSG);
	require(rc == RAFT_ERR_MSG_CLUSTER);
	if (m.n_entries > 0)
	{
		rc = raft_msg_decode(buf, len, CLUSTER_ID, &m2, entries,
							 m.n_entries - 1);
		require(rc == RAFT_ERR_MSG_TOO_LARGE);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *copy;

	check_frame(data, size);
	if (size < 4)
		return 0;

	/* an exact-size copy keeps AddressSanitizer's bounds checks tight */
	copy = malloc(size);
	require(copy != NULL);

	/* the input with a correct CRC */
	memcpy(copy, data, size);
	put_u32(copy + size - 4, raft_crc32c(0, copy, size - 4));
	check_frame(copy, size);

	/* sealed: magic, version and length right as well */
	if (size >= MIN_MSG_BYTES && size <= RAFT_WIRE_MAX_MSG_BYTES)
	{
		memcpy(copy, "PGRF", 4);
		copy[OFF_VERSION] = RAFT_WIRE_VERSION;
		put_u32(copy + OFF_LENGTH, (uint32_t) size);
		put_u32(copy + size - 4, raft_crc32c(0, copy, size - 4));
		check_frame(copy, size);
	}

	free(copy);
	return 0;
}
