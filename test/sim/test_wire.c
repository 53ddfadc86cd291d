/*-------------------------------------------------------------------------
 *
 * test_wire.c
 *	  Unit tests of the wire format (src/raft/wire.c).
 *
 * Prints TAP ("ok N - ...", "not ok N - ...", then the plan "1..N") and
 * exits non-zero if any test failed.  Only the functions of wire.c are
 * called, so this program also builds against wire.c alone:
 *
 *	  cc -std=c99 -I../../src/raft test_wire.c ../../src/raft/wire.c
 *
 * With "--write-corpus DIR" it instead writes every sample message, one
 * encoded frame per file, into DIR: that is how the seed corpus of the
 * fuzz target (corpus_wire/) is made.
 *
 * NOTES
 *	  The offsets below restate the layout table at the top of wire.c; the
 *	  layout tests compare encoder output against them byte by byte, so an
 *	  accidental change of the format fails here.
 *
 * IDENTIFICATION
 *	  test/sim/test_wire.c
 *
 *-------------------------------------------------------------------------
 */
#include "raft.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tap.h"

/* Must match CLUSTER_ID in fuzz_wire.c: the corpus is encoded with it. */
#define TEST_CLUSTER_ID UINT64_C(0x7067726166740001)

#define OFF_MAGIC		0
#define OFF_VERSION		4
#define OFF_TYPE		5
#define OFF_FLAGS		6
#define OFF_REJECT		7
#define OFF_CLUSTER		8
#define OFF_LENGTH		16
#define OFF_FROM		20
#define OFF_TO			24
#define OFF_TERM		28
#define OFF_LOG_TERM	36
#define OFF_INDEX		44
#define OFF_COMMIT		52
#define OFF_CONTEXT		60
#define OFF_N_ENTRIES	68
#define HEADER_BYTES	72
#define ENTRY_HEADER_BYTES 13
#define MEMBER_BYTES	5
#define CRC_BYTES		4
#define MIN_MSG_BYTES	(HEADER_BYTES + CRC_BYTES)

#define MAX_SAMPLES		32
#define BUF_BYTES		(256 * 1024)

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static void
put_u64(uint8_t *p, uint64_t v)
{
	put_u32(p, (uint32_t) v);
	put_u32(p + 4, (uint32_t) (v >> 32));
}

static uint32_t
get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static uint64_t
get_u64(const uint8_t *p)
{
	return (uint64_t) get_u32(p) | ((uint64_t) get_u32(p + 4) << 32);
}

/* Rewrites the length field and the trailing CRC of a crafted frame. */
static void
seal(uint8_t *buf, size_t len)
{
	put_u32(buf + OFF_LENGTH, (uint32_t) len);
	put_u32(buf + len - CRC_BYTES, raft_crc32c(0, buf, len - CRC_BYTES));
}

/* Decodes a copy of buf in a heap block of exactly len bytes, so that
 * AddressSanitizer catches any read past the end. */
static int
decode_exact(const uint8_t *buf, size_t len, uint64_t cluster_id,
			 raft_msg *m, raft_entry *entries, size_t cap)
{
	uint8_t    *copy = malloc(len > 0 ? len : 1);
	int			rc;

	if (copy == NULL)
	{
		perror("malloc");
		exit(2);
	}
	if (len > 0)
		memcpy(copy, buf, len);
	rc = raft_msg_decode(copy, len, cluster_id, m, entries, cap);
	free(copy);
	return rc;
}

/*
 * Sample messages: one or more of every type, with every field set to
 * something recognisable, and extremes of every integer.
 */
typedef struct sample
{
	const char *name;
	raft_msg	m;
	raft_entry	entries[RAFT_MAX_ENTRIES_PER_MSG];
} sample;

static sample samples[MAX_SAMPLES];
static int	n_samples;
static int	snap_sample;		/* index of "snapshot with a config" */

static uint8_t payload_small[5] = {'h', 'e', 'l', 'l', 'o'};
static uint8_t payload_conf[300];
static uint8_t payload_big[70000];
static uint8_t payload_one[1] = {0xFF};

static raft_msg *
add_sample(const char *name, uint8_t type)
{
	sample	   *s;

	if (n_samples >= MAX_SAMPLES)
		abort();
	s = &samples[n_samples++];
	memset(s, 0, sizeof(*s));
	s->name = name;
	s->m.type = type;
	s->m.from = 1;
	s->m.to = 2;
	s->m.term = 7;
	s->m.entries = s->entries;
	return &s->m;
}

static void
add_entry(raft_msg *m, raft_term_t term, uint8_t type, const uint8_t *data,
		  uint32_t len)
{
	raft_entry *e = (raft_entry *) &m->entries[m->n_entries];

	e->term = term;
	e->index = m->index + 1 + m->n_entries;
	e->type = type;
	e->len = len;
	e->data = data;
	m->n_entries++;
}

static void
build_samples(void)
{
	raft_msg   *m;
	size_t		i;

	for (i = 0; i < sizeof(payload_conf); i++)
		payload_conf[i] = (uint8_t) (i * 7 + 3);
	for (i = 0; i < sizeof(payload_big); i++)
		payload_big[i] = (uint8_t) (i ^ (i >> 8));

	m = add_sample("append with mixed entries", RAFT_MSG_APPEND);
	m->from = 3;
	m->to = 5;
	m->term = 9;
	m->log_term = 4;
	m->index = 41;
	m->commit = 40;
	add_entry(m, 4, RAFT_ENTRY_NORMAL, payload_small, sizeof(payload_small));
	add_entry(m, 5, RAFT_ENTRY_NOOP, NULL, 0);
	add_entry(m, 5, RAFT_ENTRY_NORMAL, payload_one, 0);	/* zero-length */
	add_entry(m, 8, RAFT_ENTRY_CONFIG, payload_conf, sizeof(payload_conf));
	add_entry(m, 9, RAFT_ENTRY_NORMAL, payload_one, 1);

	m = add_sample("append without entries", RAFT_MSG_APPEND);
	m->log_term = 6;
	m->index = 100;
	m->commit = 99;

	m = add_sample("append from index 0", RAFT_MSG_APPEND);
	m->term = 1;
	add_entry(m, 1, RAFT_ENTRY_NOOP, NULL, 0);

	m = add_sample("append with a 70000-byte entry", RAFT_MSG_APPEND);
	m->term = 3;
	m->log_term = 3;
	m->index = 5;
	add_entry(m, 3, RAFT_ENTRY_NORMAL, payload_big, sizeof(payload_big));

	m = add_sample("append with RAFT_MAX_ENTRIES_PER_MSG entries",
				   RAFT_MSG_APPEND);
	m->term = 300;
	m->index = 1000;
	for (i = 0; i < RAFT_MAX_ENTRIES_PER_MSG; i++)
		add_entry(m, 1 + i, (uint8_t) (1 + i % 3), payload_conf,
				  (uint32_t) (i % 4));

	m = add_sample("append at the top of the index space", RAFT_MSG_APPEND);
	m->term = UINT64_MAX;
	m->log_term = UINT64_MAX - 1;
	m->index = UINT64_MAX - 2;
	m->commit = UINT64_MAX;
	m->context = UINT64_MAX;
	m->from = UINT32_MAX;
	m->to = UINT32_MAX - 1;
	add_entry(m, UINT64_MAX - 1, RAFT_ENTRY_NORMAL, payload_small, 2);
	add_entry(m, UINT64_MAX, RAFT_ENTRY_NORMAL, payload_small, 3);

	m = add_sample("append_resp", RAFT_MSG_APPEND_RESP);
	m->index = 46;

	m = add_sample("append_resp rejected with hint", RAFT_MSG_APPEND_RESP);
	m->reject = true;
	m->index = 30;
	m->log_term = 6;

	m = add_sample("vote", RAFT_MSG_VOTE);
	m->index = 0x0102030405060708;
	m->log_term = 6;

	m = add_sample("vote for a leadership transfer", RAFT_MSG_VOTE);
	m->flags = RAFT_MSG_FLAG_TRANSFER;
	m->index = 12;
	m->log_term = 7;

	m = add_sample("vote_resp granted", RAFT_MSG_VOTE_RESP);
	m = add_sample("vote_resp rejected", RAFT_MSG_VOTE_RESP);
	m->reject = true;

	m = add_sample("pre_vote", RAFT_MSG_PRE_VOTE);
	m->term = 8;
	m->index = 77;
	m->log_term = 7;

	m = add_sample("pre_vote with transfer flag", RAFT_MSG_PRE_VOTE);
	m->flags = RAFT_MSG_FLAG_TRANSFER;

	m = add_sample("pre_vote_resp granted", RAFT_MSG_PRE_VOTE_RESP);
	m = add_sample("pre_vote_resp rejected", RAFT_MSG_PRE_VOTE_RESP);
	m->reject = true;
	m->term = 0;

	m = add_sample("heartbeat", RAFT_MSG_HEARTBEAT);
	m->commit = 1234;
	m->context = 0xDEADBEEFCAFEF00D;

	m = add_sample("heartbeat_resp", RAFT_MSG_HEARTBEAT_RESP);
	m->context = 0xDEADBEEFCAFEF00D;

	m = add_sample("timeout_now", RAFT_MSG_TIMEOUT_NOW);

	snap_sample = n_samples;
	m = add_sample("snapshot with a config", RAFT_MSG_SNAPSHOT);
	m->index = 500;
	m->log_term = 6;
	m->config.n_members = 4;
	m->config.members[0].id = 1;
	m->config.members[0].voter = true;
	m->config.members[1].id = 2;
	m->config.members[1].voter = true;
	m->config.members[2].id = 9;
	m->config.members[2].voter = false;
	m->config.members[3].id = UINT32_MAX;
	m->config.members[3].voter = true;

	m = add_sample("snapshot with RAFT_MAX_MEMBERS members", RAFT_MSG_SNAPSHOT);
	m->index = 1;
	m->log_term = 1;
	m->config.n_members = RAFT_MAX_MEMBERS;
	for (i = 0; i < RAFT_MAX_MEMBERS; i++)
	{
		m->config.members[i].id = (raft_id_t) (100 - i);
		m->config.members[i].voter = (i % 3) != 0;
	}

	m = add_sample("snapshot with an empty config", RAFT_MSG_SNAPSHOT);
	m->index = 3;
	m->log_term = 2;
}

static bool
msg_equal(const raft_msg *a, const raft_msg *b, const char **why)
{
	uint32_t	i;

#define FIELD(f) if (a->f != b->f) { *why = #f; return false; }
	FIELD(type);
	FIELD(flags);
	FIELD(reject);
	FIELD(from);
	FIELD(to);
	FIELD(term);
	FIELD(log_term);
	FIELD(index);
	FIELD(commit);
	FIELD(context);
	FIELD(n_entries);
	for (i = 0; i < a->n_entries; i++)
	{
		FIELD(entries[i].term);
		FIELD(entries[i].index);
		FIELD(entries[i].type);
		FIELD(entries[i].len);
		if (a->entries[i].len > 0 &&
			memcmp(a->entries[i].data, b->entries[i].data,
				   a->entries[i].len) != 0)
		{
			*why = "entry data";
			return false;
		}
	}
	if (a->type == RAFT_MSG_SNAPSHOT)
	{
		FIELD(config.n_members);
		for (i = 0; i < a->config.n_members; i++)
		{
			FIELD(config.members[i].id);
			FIELD(config.members[i].voter);
		}
	}
#undef FIELD
	*why = "";
	return true;
}

static const char *
rc_name(int rc)
{
	switch (rc)
	{
		case RAFT_OK:
			return "OK";
		case RAFT_ERR_INVALID_ARG:
			return "INVALID_ARG";
		case RAFT_ERR_TOO_LARGE:
			return "TOO_LARGE";
		case RAFT_ERR_MSG_TRUNCATED:
			return "MSG_TRUNCATED";
		case RAFT_ERR_MSG_MAGIC:
			return "MSG_MAGIC";
		case RAFT_ERR_MSG_VERSION:
			return "MSG_VERSION";
		case RAFT_ERR_MSG_CHECKSUM:
			return "MSG_CHECKSUM";
		case RAFT_ERR_MSG_CLUSTER:
			return "MSG_CLUSTER";
		case RAFT_ERR_MSG_TYPE:
			return "MSG_TYPE";
		case RAFT_ERR_MSG_LENGTH:
			return "MSG_LENGTH";
		case RAFT_ERR_MSG_FIELD:
			return "MSG_FIELD";
		case RAFT_ERR_MSG_TOO_LARGE:
			return "MSG_TOO_LARGE";
	}
	return "?";
}

static void
check_rc(int got, int want, const char *what)
{
	if (!check(got == want, "%s gives %s", what, rc_name(want)))
		diag("got %d (%s)", got, rc_name(got));
}

/* Encodes a sample into buf; aborts the run if that fails. */
static size_t
encode_or_die(const raft_msg *m, uint8_t *buf, size_t cap)
{
	size_t		len;
	int			rc = raft_msg_encode(m, TEST_CLUSTER_ID, buf, cap, &len);

	if (rc != RAFT_OK)
	{
		printf("Bail out! cannot encode a sample: rc %d\n", rc);
		exit(1);
	}
	return len;
}

static uint8_t buf_a[BUF_BYTES];
static uint8_t buf_b[BUF_BYTES];
static raft_entry dec_entries[RAFT_MAX_ENTRIES_PER_MSG + 8];

/* ---------------------------------------------------------------------- */

/* CRC-32C by its definition: reflected polynomial 0x82F63B78, bit by bit. */
static uint32_t
crc32c_bitwise(const uint8_t *p, size_t len)
{
	uint32_t	crc = 0xFFFFFFFF;
	int			bit;

	while (len-- > 0)
	{
		crc ^= *p++;
		for (bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (0x82F63B78 & (0 - (crc & 1)));
	}
	return ~crc;
}

static void
test_crc(void)
{
	static const uint8_t check_str[] = "123456789";
	uint8_t		v[32];
	int			i;

	/* check value of the CRC catalogue and the vectors of RFC 3720 B.4 */
	check(raft_crc32c(0, check_str, 9) == 0xE3069283,
		  "crc32c(\"123456789\") == 0xE3069283");
	check(raft_crc32c(0, NULL, 0) == 0, "crc32c of nothing is 0");
	memset(v, 0, sizeof(v));
	check(raft_crc32c(0, v, 32) == 0x8A9136AA, "crc32c of 32 zero bytes");
	memset(v, 0xFF, sizeof(v));
	check(raft_crc32c(0, v, 32) == 0x62A8AB43, "crc32c of 32 0xFF bytes");
	for (i = 0; i < 32; i++)
		v[i] = (uint8_t) i;
	check(raft_crc32c(0, v, 32) == 0x46DD794E, "crc32c of bytes 0..31");
	for (i = 0; i < 32; i++)
		v[i] = (uint8_t) (31 - i);
	check(raft_crc32c(0, v, 32) == 0x113FDB5C, "crc32c of bytes 31..0");
	check(raft_crc32c(0, "a", 1) == 0xC1D04330, "crc32c(\"a\") == 0xC1D04330");

	{
		bool		ok = true;
		size_t		cut;

		for (cut = 0; cut <= 9; cut++)
			ok &= raft_crc32c(raft_crc32c(0, check_str, cut),
							  check_str + cut, 9 - cut) == 0xE3069283;
		check(ok, "crc32c computed in two pieces equals one pass");
	}

	/*
	 * Eight bytes at a time against the definition, a bit at a time: every
	 * length to 100 at every alignment, and cut anywhere.
	 */
	{
		uint8_t		data[108];
		bool		ok = true;
		size_t		start;
		size_t		len;

		for (i = 0; i < (int) sizeof(data); i++)
			data[i] = (uint8_t) (i * 167 + 13);
		for (start = 0; start < 8; start++)
			for (len = 0; len <= 100; len++)
			{
				size_t		cut = (len * 7) % (len + 1);

				ok &= raft_crc32c(0, data + start, len) ==
					crc32c_bitwise(data + start, len);
				ok &= raft_crc32c(raft_crc32c(0, data + start, cut),
								  data + start + cut, len - cut) ==
					crc32c_bitwise(data + start, len);
			}
		check(ok, "crc32c of every length and alignment equals the bitwise definition");
	}
}

static void
test_type_names(void)
{
	static const char *const names[] = {
		"append", "append_resp", "vote", "vote_resp", "pre_vote",
		"pre_vote_resp", "heartbeat", "heartbeat_resp", "timeout_now",
		"snapshot"
	};
	bool		ok = true;
	int			t;

	for (t = 1; t <= RAFT_MSG_TYPE_MAX; t++)
		ok &= strcmp(raft_msg_type_name(t), names[t - 1]) == 0;
	check(ok, "raft_msg_type_name names every type");
	check(strcmp(raft_msg_type_name(0), "unknown") == 0 &&
		  strcmp(raft_msg_type_name(RAFT_MSG_TYPE_MAX + 1), "unknown") == 0 &&
		  strcmp(raft_msg_type_name(-1), "unknown") == 0 &&
		  strcmp(raft_msg_type_name(255), "unknown") == 0,
		  "raft_msg_type_name of an unknown type is \"unknown\"");
}

/* Pins the layout: fields at the documented offsets, little-endian. */
static void
test_layout(void)
{
	raft_msg	m;
	raft_entry	e[2];
	uint8_t		data[3] = {0xAA, 0xBB, 0xCC};
	size_t		len;
	int			rc;

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 0x11223344;
	m.to = 0x55667788;
	m.term = 0x0102030405060708;
	m.log_term = 0x0102030405060700;
	m.index = 0x1112131415161718;
	m.commit = 0x2122232425262728;
	m.context = 0x3132333435363738;
	m.n_entries = 2;
	m.entries = e;
	e[0].term = 0x0102030405060701;
	e[0].index = m.index + 1;
	e[0].type = RAFT_ENTRY_NORMAL;
	e[0].len = 3;
	e[0].data = data;
	e[1].term = 0x0102030405060708;
	e[1].index = m.index + 2;
	e[1].type = RAFT_ENTRY_CONFIG;
	e[1].len = 0;
	e[1].data = NULL;

	rc = raft_msg_encode(&m, 0x4142434445464748, buf_a, sizeof(buf_a), &len);
	check(rc == RAFT_OK, "layout: encode an append");
	check(len == HEADER_BYTES + 2 * ENTRY_HEADER_BYTES + 3 + CRC_BYTES &&
		  raft_msg_encoded_size(&m) == len,
		  "layout: append size is header + entries + crc");
	check(memcmp(buf_a, "PGRF", 4) == 0 && buf_a[OFF_VERSION] == 1 &&
		  RAFT_WIRE_VERSION == 1 &&
		  buf_a[OFF_TYPE] == RAFT_MSG_APPEND && buf_a[OFF_FLAGS] == 0 &&
		  buf_a[OFF_REJECT] == 0,
		  "layout: magic, version, type, flags, reject");
	check(buf_a[OFF_CLUSTER] == 0x48 && buf_a[OFF_CLUSTER + 7] == 0x41 &&
		  get_u64(buf_a + OFF_CLUSTER) == 0x4142434445464748,
		  "layout: cluster id little-endian at 8");
	check(get_u32(buf_a + OFF_LENGTH) == len, "layout: total length at 16");
	check(buf_a[OFF_FROM] == 0x44 && get_u32(buf_a + OFF_FROM) == m.from &&
		  get_u32(buf_a + OFF_TO) == m.to &&
		  get_u64(buf_a + OFF_TERM) == m.term &&
		  get_u64(buf_a + OFF_LOG_TERM) == m.log_term &&
		  get_u64(buf_a + OFF_INDEX) == m.index &&
		  get_u64(buf_a + OFF_COMMIT) == m.commit &&
		  get_u64(buf_a + OFF_CONTEXT) == m.context &&
		  get_u32(buf_a + OFF_N_ENTRIES) == 2,
		  "layout: from, to, term, log_term, index, commit, context, n_entries");
	check(get_u64(buf_a + 72) == e[0].term && buf_a[80] == RAFT_ENTRY_NORMAL &&
		  get_u32(buf_a + 81) == 3 && memcmp(buf_a + 85, data, 3) == 0 &&
		  get_u64(buf_a + 88) == e[1].term && buf_a[96] == RAFT_ENTRY_CONFIG &&
		  get_u32(buf_a + 97) == 0,
		  "layout: entries as term, type, len, data");
	check(get_u32(buf_a + len - 4) == raft_crc32c(0, buf_a, len - 4),
		  "layout: trailing CRC-32C over every preceding byte");

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_SNAPSHOT;
	m.from = 1;
	m.to = 2;
	m.term = 3;
	m.config.n_members = 2;
	m.config.members[0].id = 0x01020304;
	m.config.members[0].voter = true;
	m.config.members[1].id = 7;
	m.config.members[1].voter = false;
	rc = raft_msg_encode(&m, 0, buf_a, sizeof(buf_a), &len);
	check(rc == RAFT_OK && len == HEADER_BYTES + 4 + 2 * MEMBER_BYTES + 4 &&
		  get_u32(buf_a + 72) == 2 &&
		  get_u32(buf_a + 76) == 0x01020304 && buf_a[80] == 1 &&
		  get_u32(buf_a + 81) == 7 && buf_a[85] == 0,
		  "layout: snapshot config block as n_members, (id, voter)...");

	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_HEARTBEAT;
	m.from = 1;
	m.to = 2;
	rc = raft_msg_encode(&m, 0, buf_a, sizeof(buf_a), &len);
	check(rc == RAFT_OK && len == MIN_MSG_BYTES,
		  "layout: a heartbeat is header + crc (%d bytes)", MIN_MSG_BYTES);
}

/* Every sample encodes, decodes to the same message, re-encodes the same. */
static void
test_round_trip(void)
{
	int			i;

	for (i = 0; i < n_samples; i++)
	{
		const raft_msg *m = &samples[i].m;
		raft_msg	d;
		size_t		len,
					len2;
		const char *why;
		int			rc;
		bool		ptrs_ok = true;
		uint32_t	k;

		uint8_t    *exact;

		len = encode_or_die(m, buf_a, sizeof(buf_a));
		check(raft_msg_encoded_size(m) == len,
			  "%s: raft_msg_encoded_size matches encode (%zu)",
			  samples[i].name, len);

		/* from a block of exactly len bytes, so ASan sees any overrun */
		exact = malloc(len);
		if (exact == NULL)
			abort();
		memcpy(exact, buf_a, len);
		rc = raft_msg_decode(exact, len, TEST_CLUSTER_ID, &d, dec_entries,
							 RAFT_MAX_ENTRIES_PER_MSG);
		check_rc(rc, RAFT_OK, samples[i].name);
		if (rc != RAFT_OK)
		{
			free(exact);
			continue;
		}
		if (!check(msg_equal(m, &d, &why), "%s: decodes to the same message",
				   samples[i].name))
			diag("first difference: %s", why);
		free(exact);

		/* decode in place: data must point into the buffer itself */
		rc = raft_msg_decode(buf_a, len, TEST_CLUSTER_ID, &d, dec_entries,
							 RAFT_MAX_ENTRIES_PER_MSG);
		for (k = 0; rc == RAFT_OK && k < d.n_entries; k++)
			ptrs_ok &= d.entries == dec_entries &&
				d.entries[k].data >= buf_a &&
				d.entries[k].data + d.entries[k].len <= buf_a + len - 4;
		check(rc == RAFT_OK && ptrs_ok, "%s: entry data points into buf",
			  samples[i].name);

		rc = raft_msg_encode(&d, TEST_CLUSTER_ID, buf_b, sizeof(buf_b), &len2);
		check(rc == RAFT_OK && len2 == len && memcmp(buf_a, buf_b, len) == 0,
			  "%s: re-encodes byte for byte", samples[i].name);

		/* exactly the needed number of entry slots is enough */
		rc = raft_msg_decode(buf_a, len, TEST_CLUSTER_ID, &d,
							 m->n_entries > 0 ? dec_entries : NULL,
							 m->n_entries);
		check_rc(rc, RAFT_OK, "decode with entries_cap == n_entries");
	}
}

/*
 * Cut frames: any prefix of a frame is TRUNCATED; a frame cut inside its
 * body and re-sealed (length and CRC fixed up) is still TRUNCATED; a frame
 * with bytes appended is LENGTH, re-sealed or not.
 */
static void
test_truncation(void)
{
	int			i;

	for (i = 0; i < n_samples; i++)
	{
		const raft_msg *m = &samples[i].m;
		size_t		len = encode_or_die(m, buf_a, sizeof(buf_a));
		size_t		cut,
					step = len > 1024 ? 97 : 1;
		bool		ok = true;
		raft_msg	d;
		int			rc;

		for (cut = 0; cut < len; cut += step)
		{
			rc = decode_exact(buf_a, cut, TEST_CLUSTER_ID, &d, dec_entries,
							  RAFT_MAX_ENTRIES_PER_MSG);
			if (rc != RAFT_ERR_MSG_TRUNCATED)
			{
				diag("prefix of %zu bytes: rc %d", cut, rc);
				ok = false;
			}
		}
		check(ok, "%s: every prefix gives MSG_TRUNCATED", samples[i].name);

		ok = true;
		for (cut = HEADER_BYTES; cut < len - CRC_BYTES; cut += step)
		{
			memcpy(buf_b, buf_a, cut);
			seal(buf_b, cut + CRC_BYTES);
			rc = decode_exact(buf_b, cut + CRC_BYTES, TEST_CLUSTER_ID, &d,
							  dec_entries, RAFT_MAX_ENTRIES_PER_MSG);
			if (rc != RAFT_ERR_MSG_TRUNCATED)
			{
				diag("body cut at %zu, resealed: rc %d", cut, rc);
				ok = false;
			}
		}
		check(ok, "%s: body cut anywhere and resealed gives MSG_TRUNCATED",
			  samples[i].name);

		memcpy(buf_b, buf_a, len);
		buf_b[len] = 0;
		rc = decode_exact(buf_b, len + 1, TEST_CLUSTER_ID, &d, dec_entries,
						  RAFT_MAX_ENTRIES_PER_MSG);
		check_rc(rc, RAFT_ERR_MSG_LENGTH,
				 "a trailing byte after the frame");

		/* slack between the body and the CRC, length and CRC consistent */
		memcpy(buf_b, buf_a, len - CRC_BYTES);
		buf_b[len - CRC_BYTES] = 0;
		seal(buf_b, len + 1);
		rc = decode_exact(buf_b, len + 1, TEST_CLUSTER_ID, &d, dec_entries,
						  RAFT_MAX_ENTRIES_PER_MSG);
		check_rc(rc, RAFT_ERR_MSG_LENGTH, "a slack byte before the CRC");
	}
}

/*
 * Corruption: any single byte changed (to any other value) is caught by
 * the framing checks, magic, version and length first and the CRC for all
 * the rest.  That holds for every byte because a CRC-32 detects all error
 * bursts up to 32 bits long.
 */
static void
test_corruption(void)
{
	int			i;

	for (i = 0; i < n_samples; i++)
	{
		const raft_msg *m = &samples[i].m;
		size_t		len = encode_or_die(m, buf_a, sizeof(buf_a));
		size_t		pos,
					step = len > 1024 ? 61 : 1;
		bool		ok = true;
		raft_msg	d;
		raft_msg	before;

		/*
		 * Each decode of a big frame CRCs all of it: there, corrupt the
		 * header and every 61st byte, with three patterns only.
		 */
		if (len > 1024)
			diag("%s: corrupting the header and every 61st byte only",
				 samples[i].name);
		memset(&d, 0xA5, sizeof(d));
		memcpy(&before, &d, sizeof(d));
		for (pos = 0; pos < len; pos++)
		{
			static const uint8_t few[] = {0x01, 0x80, 0xFF};
			unsigned int n_x = step == 1 ? 255 : 3;
			unsigned int xi;

			if (pos >= HEADER_BYTES && pos < len - CRC_BYTES &&
				pos % step != 0)
				continue;
			for (xi = 0; xi < n_x; xi++)
			{
				uint8_t		x = step == 1 ? (uint8_t) (xi + 1) : few[xi];
				int			rc,
							want;

				memcpy(buf_b, buf_a, len);
				buf_b[pos] ^= x;
				rc = raft_msg_decode(buf_b, len, TEST_CLUSTER_ID, &d,
									 dec_entries, RAFT_MAX_ENTRIES_PER_MSG);
				if (pos < OFF_VERSION)
					want = RAFT_ERR_MSG_MAGIC;
				else if (pos == OFF_VERSION)
					want = RAFT_ERR_MSG_VERSION;
				else if (pos >= OFF_LENGTH && pos < OFF_LENGTH + 4)
				{
					uint32_t	dl = get_u32(buf_b + OFF_LENGTH);

					want = (dl < MIN_MSG_BYTES || dl > RAFT_WIRE_MAX_MSG_BYTES ||
							dl < len) ? RAFT_ERR_MSG_LENGTH :
						RAFT_ERR_MSG_TRUNCATED;
				}
				else
					want = RAFT_ERR_MSG_CHECKSUM;
				if (rc != want)
				{
					if (ok)
						diag("byte %zu ^ 0x%02x: rc %d, want %d", pos, x, rc,
							 want);
					ok = false;
				}
			}
		}
		check(ok, "%s: %s corrupted byte is caught", samples[i].name,
			  step == 1 ? "every" : "every sampled");
		check(memcmp(&d, &before, sizeof(d)) == 0,
			  "%s: a failed decode leaves the message untouched",
			  samples[i].name);
	}
}

/*
 * Mutations that keep the frame sealed (CRC recomputed): whatever the
 * change, decode either refuses it or accepts something that re-encodes
 * to exactly the mutated bytes (the encoding is canonical).
 */
static void
test_sealed_mutations(void)
{
	int			i;

	for (i = 0; i < n_samples; i++)
	{
		const raft_msg *m = &samples[i].m;
		size_t		len = encode_or_die(m, buf_a, sizeof(buf_a));
		size_t		pos;
		bool		ok = true;
		long		accepted = 0;

		if (len > 1024)
			continue;
		for (pos = OFF_TYPE; pos < len - CRC_BYTES; pos++)
		{
			unsigned int x;

			if (pos >= OFF_LENGTH && pos < OFF_LENGTH + 4)
				continue;
			for (x = 1; x < 256; x++)
			{
				raft_msg	d;
				size_t		len2;
				int			rc;

				memcpy(buf_b, buf_a, len);
				buf_b[pos] ^= (uint8_t) x;
				seal(buf_b, len);
				rc = raft_msg_decode(buf_b, len, TEST_CLUSTER_ID, &d,
									 dec_entries, RAFT_MAX_ENTRIES_PER_MSG);
				if (rc != RAFT_OK)
					continue;
				accepted++;
				rc = raft_msg_encode(&d, TEST_CLUSTER_ID, buf_a + len,
									 sizeof(buf_a) - len, &len2);
				if (rc != RAFT_OK || len2 != len ||
					memcmp(buf_b, buf_a + len, len) != 0)
				{
					if (ok)
						diag("byte %zu ^ 0x%02x: accepted, re-encode rc %d",
							 pos, x, rc);
					ok = false;
				}
			}
		}
		check(ok, "%s: resealed mutations are refused or canonical (%ld accepted)",
			  samples[i].name, accepted);
	}
}

/* Each decode error code from a crafted frame. */
static void
test_decode_errors(void)
{
	raft_msg	d;
	size_t		len,
				app_len,
				snap_len,
				vote_len;
	uint8_t		app[4096];
	uint8_t		snap[4096];
	uint8_t		vote[4096];
	const raft_msg *app_m = &samples[0].m;	/* append with 5 entries */
	const raft_msg *snap_m = &samples[snap_sample].m;
	const raft_msg *vote_m = NULL;
	size_t		e1;				/* offset of the second entry of app */
	int			i;

	for (i = 0; i < n_samples; i++)
	{
		if (vote_m == NULL && samples[i].m.type == RAFT_MSG_VOTE)
			vote_m = &samples[i].m;
	}
	app_len = encode_or_die(app_m, app, sizeof(app));
	snap_len = encode_or_die(snap_m, snap, sizeof(snap));
	vote_len = encode_or_die(vote_m, vote, sizeof(vote));
	e1 = HEADER_BYTES + ENTRY_HEADER_BYTES + app_m->entries[0].len;

#define DECODE(b, l) \
	raft_msg_decode((b), (l), TEST_CLUSTER_ID, &d, dec_entries, \
					RAFT_MAX_ENTRIES_PER_MSG)
#define CRAFT(src, src_len, stmt) \
	(memcpy(buf_b, (src), (src_len)), len = (src_len), (stmt), \
	 seal(buf_b, len), DECODE(buf_b, len))

	/* framing */
	check_rc(raft_msg_decode(NULL, 0, TEST_CLUSTER_ID, &d, NULL, 0),
			 RAFT_ERR_MSG_TRUNCATED, "an empty buffer");
	check_rc(DECODE(vote, MIN_MSG_BYTES - 1), RAFT_ERR_MSG_TRUNCATED,
			 "a buffer shorter than header + crc");
	memcpy(buf_b, vote, vote_len);
	buf_b[1] = 'X';
	check_rc(DECODE(buf_b, vote_len), RAFT_ERR_MSG_MAGIC, "a wrong magic");
	memcpy(buf_b, "\0\0\0\0", 4);
	check_rc(DECODE(buf_b, vote_len), RAFT_ERR_MSG_MAGIC, "a zero magic");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_VERSION] = 2),
			 RAFT_ERR_MSG_VERSION, "version 2");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_VERSION] = 0),
			 RAFT_ERR_MSG_VERSION, "version 0");

	memcpy(buf_b, app, app_len);
	put_u32(buf_b + OFF_LENGTH, (uint32_t) app_len + 1);
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_TRUNCATED,
			 "declared length > buffer");
	put_u32(buf_b + OFF_LENGTH, (uint32_t) app_len - 1);
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_LENGTH,
			 "declared length < buffer");
	put_u32(buf_b + OFF_LENGTH, MIN_MSG_BYTES - 1);
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_LENGTH,
			 "declared length < header + crc");
	put_u32(buf_b + OFF_LENGTH, 0);
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_LENGTH,
			 "declared length 0");
	put_u32(buf_b + OFF_LENGTH, RAFT_WIRE_MAX_MSG_BYTES + 1);
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_LENGTH,
			 "declared length > RAFT_WIRE_MAX_MSG_BYTES");
	put_u32(buf_b + OFF_LENGTH, UINT32_MAX);
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_LENGTH,
			 "declared length 0xFFFFFFFF");

	memcpy(buf_b, app, app_len);
	buf_b[app_len - 1] ^= 0x01;
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_CHECKSUM,
			 "a corrupted CRC");
	memcpy(buf_b, app, app_len);
	buf_b[e1 + 20] ^= 0x01;
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_CHECKSUM,
			 "a corrupted body byte");
	memcpy(buf_b, app, app_len);
	buf_b[OFF_CLUSTER] ^= 0x01;
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_CHECKSUM,
			 "a corrupted cluster id (CRC checked first)");
	memcpy(buf_b, app, app_len);
	buf_b[OFF_TYPE] = 0;
	check_rc(DECODE(buf_b, app_len), RAFT_ERR_MSG_CHECKSUM,
			 "a corrupted type (CRC checked first)");

	/* cluster */
	check_rc(raft_msg_decode(app, app_len, TEST_CLUSTER_ID + 1, &d,
							 dec_entries, RAFT_MAX_ENTRIES_PER_MSG),
			 RAFT_ERR_MSG_CLUSTER, "another cluster id");
	check_rc(raft_msg_decode(vote, vote_len, 0, &d, dec_entries,
							 RAFT_MAX_ENTRIES_PER_MSG),
			 RAFT_ERR_MSG_CLUSTER, "cluster id 0 expected");
	check_rc(CRAFT(vote, vote_len, put_u64(buf_b + OFF_CLUSTER, 0)),
			 RAFT_ERR_MSG_CLUSTER, "a sealed frame of cluster 0");

	/* type */
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_TYPE] = 0), RAFT_ERR_MSG_TYPE,
			 "type 0");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_TYPE] = RAFT_MSG_TYPE_MAX + 1),
			 RAFT_ERR_MSG_TYPE, "type RAFT_MSG_TYPE_MAX + 1");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_TYPE] = 255), RAFT_ERR_MSG_TYPE,
			 "type 255");

	/* too many entries */
	check_rc(raft_msg_decode(app, app_len, TEST_CLUSTER_ID, &d, dec_entries,
							 app_m->n_entries - 1),
			 RAFT_ERR_MSG_TOO_LARGE, "n_entries > entries_cap");
	check_rc(raft_msg_decode(app, app_len, TEST_CLUSTER_ID, &d, NULL, 0),
			 RAFT_ERR_MSG_TOO_LARGE, "entries on a decode with no room");
	{
		/* 257 empty entries: valid in every other respect */
		uint32_t	n = RAFT_MAX_ENTRIES_PER_MSG + 1;
		uint32_t	k;

		memset(buf_b, 0, HEADER_BYTES);
		memcpy(buf_b, app, HEADER_BYTES);
		put_u64(buf_b + OFF_LOG_TERM, 1);
		put_u64(buf_b + OFF_TERM, 1);
		put_u32(buf_b + OFF_N_ENTRIES, n);
		len = HEADER_BYTES;
		for (k = 0; k < n; k++)
		{
			put_u64(buf_b + len, 1);
			buf_b[len + 8] = RAFT_ENTRY_NOOP;
			put_u32(buf_b + len + 9, 0);
			len += ENTRY_HEADER_BYTES;
		}
		len += CRC_BYTES;
		seal(buf_b, len);
		check_rc(raft_msg_decode(buf_b, len, TEST_CLUSTER_ID, &d, dec_entries,
								 RAFT_MAX_ENTRIES_PER_MSG + 8),
				 RAFT_ERR_MSG_TOO_LARGE,
				 "RAFT_MAX_ENTRIES_PER_MSG + 1 entries, room for them");
		put_u32(buf_b + OFF_N_ENTRIES, n - 1);
		len -= ENTRY_HEADER_BYTES;
		seal(buf_b, len);
		check_rc(raft_msg_decode(buf_b, len, TEST_CLUSTER_ID, &d, dec_entries,
								 RAFT_MAX_ENTRIES_PER_MSG + 8),
				 RAFT_OK, "RAFT_MAX_ENTRIES_PER_MSG entries");
	}

	/* header fields */
	check_rc(CRAFT(app, app_len, buf_b[OFF_TYPE] = RAFT_MSG_VOTE),
			 RAFT_ERR_MSG_FIELD, "entries on a vote");
	check_rc(CRAFT(app, app_len, buf_b[OFF_TYPE] = RAFT_MSG_HEARTBEAT),
			 RAFT_ERR_MSG_FIELD, "entries on a heartbeat");
	check_rc(CRAFT(snap, snap_len,
				   put_u32(buf_b + OFF_N_ENTRIES, 1)),
			 RAFT_ERR_MSG_FIELD, "entries on a snapshot");
	check_rc(CRAFT(vote, vote_len, put_u32(buf_b + OFF_N_ENTRIES, 1)),
			 RAFT_ERR_MSG_FIELD, "n_entries 1 on a vote");
	check_rc(CRAFT(vote, vote_len, put_u32(buf_b + OFF_FROM, 0)),
			 RAFT_ERR_MSG_FIELD, "from 0");
	check_rc(CRAFT(vote, vote_len, put_u32(buf_b + OFF_TO, 0)),
			 RAFT_ERR_MSG_FIELD, "to 0");
	check_rc(CRAFT(vote, vote_len,
				   put_u32(buf_b + OFF_TO, get_u32(buf_b + OFF_FROM))),
			 RAFT_ERR_MSG_FIELD, "from == to");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_REJECT] = 1),
			 RAFT_ERR_MSG_FIELD, "reject on a vote");
	check_rc(CRAFT(app, app_len, buf_b[OFF_REJECT] = 1),
			 RAFT_ERR_MSG_FIELD, "reject on an append");
	{
		uint8_t		resp[256];
		size_t		resp_len;
		raft_msg	r;

		memset(&r, 0, sizeof(r));
		r.type = RAFT_MSG_APPEND_RESP;
		r.from = 2;
		r.to = 1;
		r.term = 5;
		resp_len = encode_or_die(&r, resp, sizeof(resp));
		check_rc(CRAFT(resp, resp_len, buf_b[OFF_REJECT] = 1), RAFT_OK,
				 "reject 1 on an append_resp");
		check_rc(CRAFT(resp, resp_len, buf_b[OFF_REJECT] = 2),
				 RAFT_ERR_MSG_FIELD, "reject byte 2 on an append_resp");
		check_rc(CRAFT(resp, resp_len, buf_b[OFF_REJECT] = 0xFF),
				 RAFT_ERR_MSG_FIELD, "reject byte 0xFF on an append_resp");
		check_rc(CRAFT(resp, resp_len, buf_b[OFF_FLAGS] = RAFT_MSG_FLAG_TRANSFER),
				 RAFT_ERR_MSG_FIELD, "transfer flag on an append_resp");
	}
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_FLAGS] = RAFT_MSG_FLAG_TRANSFER),
			 RAFT_OK, "transfer flag on a vote");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_FLAGS] = 0x02),
			 RAFT_ERR_MSG_FIELD, "undefined flag 0x02 on a vote");
	check_rc(CRAFT(vote, vote_len, buf_b[OFF_FLAGS] = 0x80),
			 RAFT_ERR_MSG_FIELD, "undefined flag 0x80 on a vote");
	check_rc(CRAFT(app, app_len, buf_b[OFF_FLAGS] = RAFT_MSG_FLAG_TRANSFER),
			 RAFT_ERR_MSG_FIELD, "transfer flag on an append");
	check_rc(CRAFT(vote, vote_len,
				   put_u64(buf_b + OFF_LOG_TERM, get_u64(buf_b + OFF_TERM) + 1)),
			 RAFT_ERR_MSG_FIELD, "log_term > term");
	check_rc(CRAFT(app, app_len, put_u64(buf_b + OFF_INDEX, UINT64_MAX)),
			 RAFT_ERR_MSG_FIELD, "index + n_entries wrapping");
	check_rc(CRAFT(app, app_len,
				   put_u64(buf_b + OFF_INDEX, UINT64_MAX - app_m->n_entries)),
			 RAFT_OK, "index + n_entries == UINT64_MAX");
	check_rc(CRAFT(app, app_len,
				   put_u64(buf_b + OFF_INDEX,
						   UINT64_MAX - app_m->n_entries + 1)),
			 RAFT_ERR_MSG_FIELD, "index + n_entries == UINT64_MAX + 1");

	/* entries */
	check_rc(CRAFT(app, app_len, buf_b[e1 + 8] = 0), RAFT_ERR_MSG_FIELD,
			 "entry type 0");
	check_rc(CRAFT(app, app_len, buf_b[e1 + 8] = RAFT_ENTRY_CONFIG + 1),
			 RAFT_ERR_MSG_FIELD, "entry type 4");
	check_rc(CRAFT(app, app_len, buf_b[e1 + 8] = 0xFF), RAFT_ERR_MSG_FIELD,
			 "entry type 255");
	check_rc(CRAFT(app, app_len,
				   put_u64(buf_b + e1, get_u64(buf_b + OFF_TERM) + 1)),
			 RAFT_ERR_MSG_FIELD, "entry term > message term");
	check_rc(CRAFT(app, app_len,
				   put_u64(buf_b + e1, app_m->entries[0].term - 1)),
			 RAFT_ERR_MSG_FIELD, "entry term below the previous entry's");
	check_rc(CRAFT(app, app_len,
				   put_u64(buf_b + HEADER_BYTES, app_m->log_term - 1)),
			 RAFT_ERR_MSG_FIELD, "first entry term below log_term");
	check_rc(CRAFT(app, app_len, put_u32(buf_b + e1 + 9, 1000)),
			 RAFT_ERR_MSG_TRUNCATED, "an entry longer than the frame");
	check_rc(CRAFT(app, app_len, put_u32(buf_b + e1 + 9, UINT32_MAX)),
			 RAFT_ERR_MSG_TRUNCATED, "an entry of length 0xFFFFFFFF");
	check_rc(CRAFT(app, app_len,
				   put_u32(buf_b + OFF_N_ENTRIES, app_m->n_entries + 1)),
			 RAFT_ERR_MSG_TRUNCATED, "one entry more than present");
	check_rc(CRAFT(app, app_len,
				   put_u32(buf_b + OFF_N_ENTRIES, app_m->n_entries - 1)),
			 RAFT_ERR_MSG_LENGTH, "one entry less than present");
	check_rc(CRAFT(app, app_len,
				   put_u32(buf_b + HEADER_BYTES + 9,
						   app_m->entries[0].len - 1)),
			 RAFT_ERR_MSG_FIELD,
			 "an entry shorter than sent (next entry misparsed)");

	/* snapshot config */
	check_rc(CRAFT(snap, snap_len,
				   put_u32(buf_b + HEADER_BYTES, RAFT_MAX_MEMBERS + 1)),
			 RAFT_ERR_MSG_FIELD, "n_members > RAFT_MAX_MEMBERS");
	check_rc(CRAFT(snap, snap_len, put_u32(buf_b + HEADER_BYTES, UINT32_MAX)),
			 RAFT_ERR_MSG_FIELD, "n_members 0xFFFFFFFF");
	check_rc(CRAFT(snap, snap_len,
				   put_u32(buf_b + HEADER_BYTES, snap_m->config.n_members + 1)),
			 RAFT_ERR_MSG_TRUNCATED, "config running past the end");
	check_rc(CRAFT(snap, snap_len,
				   put_u32(buf_b + HEADER_BYTES, snap_m->config.n_members - 1)),
			 RAFT_ERR_MSG_LENGTH, "a member left over after the config");
	check_rc(CRAFT(snap, snap_len, put_u32(buf_b + HEADER_BYTES + 4, 0)),
			 RAFT_ERR_MSG_FIELD, "member id 0");
	check_rc(CRAFT(snap, snap_len,
				   put_u32(buf_b + HEADER_BYTES + 4 + 2 * MEMBER_BYTES,
						   snap_m->config.members[0].id)),
			 RAFT_ERR_MSG_FIELD, "a duplicated member id");
	check_rc(CRAFT(snap, snap_len, buf_b[HEADER_BYTES + 4 + 4] = 2),
			 RAFT_ERR_MSG_FIELD, "voter byte 2");
	{
		/* a snapshot frame with no config block at all */
		memcpy(buf_b, snap, HEADER_BYTES);
		len = MIN_MSG_BYTES;
		seal(buf_b, len);
		check_rc(DECODE(buf_b, len), RAFT_ERR_MSG_TRUNCATED,
				 "a snapshot without its config block");
		/* a vote frame with a config block: slack */
		memcpy(buf_b, vote, HEADER_BYTES);
		put_u32(buf_b + HEADER_BYTES, 0);
		len = MIN_MSG_BYTES + 4;
		seal(buf_b, len);
		check_rc(DECODE(buf_b, len), RAFT_ERR_MSG_LENGTH,
				 "a config block on a vote");
	}

	/* arguments */
	check_rc(raft_msg_decode(app, app_len, TEST_CLUSTER_ID, NULL, dec_entries,
							 RAFT_MAX_ENTRIES_PER_MSG),
			 RAFT_ERR_INVALID_ARG, "decode into a NULL message");
	check_rc(raft_msg_decode(NULL, 100, TEST_CLUSTER_ID, &d, dec_entries,
							 RAFT_MAX_ENTRIES_PER_MSG),
			 RAFT_ERR_INVALID_ARG, "decode a NULL buffer of length 100");
	check_rc(raft_msg_decode(app, app_len, TEST_CLUSTER_ID, &d, NULL, 5),
			 RAFT_ERR_INVALID_ARG, "decode with NULL entries but a capacity");

#undef CRAFT
#undef DECODE
}

/* Encoding: sizes, short buffers, messages decoding would refuse. */
static void
test_encode_errors(void)
{
	const raft_msg *app_m = &samples[0].m;
	size_t		need = raft_msg_encoded_size(app_m);
	size_t		cap,
				len;
	bool		ok = true;
	raft_msg	m;
	raft_entry	e[RAFT_MAX_ENTRIES_PER_MSG + 1];
	int			rc;

	for (cap = 0; cap < need; cap++)
	{
		memset(buf_a, 0x5A, need + 16);
		len = 12345;
		rc = raft_msg_encode(app_m, TEST_CLUSTER_ID, buf_a, cap, &len);
		if (rc != RAFT_ERR_TOO_LARGE || len != need)
			ok = false;
		for (size_t k = 0; k < need + 16; k++)
			if (buf_a[k] != 0x5A)
				ok = false;
	}
	check(ok, "encode into any buffer smaller than the frame gives TOO_LARGE, "
		  "the size needed, and writes nothing");
	len = 0;
	rc = raft_msg_encode(app_m, TEST_CLUSTER_ID, NULL, 0, &len);
	check(rc == RAFT_ERR_TOO_LARGE && len == need,
		  "encode with a NULL buffer and cap 0 reports the size needed");
	rc = raft_msg_encode(app_m, TEST_CLUSTER_ID, buf_a, need, &len);
	check(rc == RAFT_OK && len == need, "encode into exactly enough room");
	rc = raft_msg_encode(app_m, TEST_CLUSTER_ID, NULL, need, &len);
	check(rc == RAFT_ERR_INVALID_ARG && len == 0,
		  "encode into a NULL buffer with a capacity");
	rc = raft_msg_encode(NULL, TEST_CLUSTER_ID, buf_a, sizeof(buf_a), &len);
	check(rc == RAFT_ERR_INVALID_ARG && raft_msg_encoded_size(NULL) == 0,
		  "encode a NULL message");
	rc = raft_msg_encode(app_m, TEST_CLUSTER_ID, buf_a, sizeof(buf_a), NULL);
	check(rc == RAFT_OK, "encode with len == NULL");

#define BAD(stmt, want, what) \
	do { \
		m = samples[0].m; \
		memcpy(e, samples[0].entries, sizeof(samples[0].entries)); \
		m.entries = e; \
		stmt; \
		len = 1; \
		rc = raft_msg_encode(&m, TEST_CLUSTER_ID, buf_a, sizeof(buf_a), &len); \
		if (!check(rc == (want) && len == 0 && \
				   raft_msg_encoded_size(&m) == 0, \
				   "encode refuses %s with %s", what, rc_name(want))) \
			diag("got %d, len %zu", rc, len); \
	} while (0)

	BAD(m.type = 0, RAFT_ERR_INVALID_ARG, "type 0");
	BAD(m.type = RAFT_MSG_TYPE_MAX + 1, RAFT_ERR_INVALID_ARG, "type 11");
	BAD(m.from = 0, RAFT_ERR_INVALID_ARG, "from 0");
	BAD(m.to = 0, RAFT_ERR_INVALID_ARG, "to 0");
	BAD(m.to = m.from, RAFT_ERR_INVALID_ARG, "from == to");
	BAD(m.reject = true, RAFT_ERR_INVALID_ARG, "reject on an append");
	BAD(m.flags = RAFT_MSG_FLAG_TRANSFER, RAFT_ERR_INVALID_ARG,
		"a transfer flag on an append");
	BAD(m.type = RAFT_MSG_VOTE, RAFT_ERR_INVALID_ARG, "entries on a vote");
	BAD(m.type = RAFT_MSG_SNAPSHOT, RAFT_ERR_INVALID_ARG,
		"entries on a snapshot");
	BAD(m.log_term = m.term + 1, RAFT_ERR_INVALID_ARG, "log_term > term");
	BAD(m.index = UINT64_MAX - 1, RAFT_ERR_INVALID_ARG,
		"an index that wraps");
	BAD(e[2].type = 0, RAFT_ERR_INVALID_ARG, "entry type 0");
	BAD(e[2].type = 4, RAFT_ERR_INVALID_ARG, "entry type 4");
	BAD(e[2].index++, RAFT_ERR_INVALID_ARG, "an entry with the wrong index");
	BAD(e[4].term = m.term + 1, RAFT_ERR_INVALID_ARG,
		"an entry term above the message term");
	BAD(e[1].term = e[0].term - 1, RAFT_ERR_INVALID_ARG,
		"decreasing entry terms");
	BAD(e[0].data = NULL, RAFT_ERR_INVALID_ARG, "entry data NULL with len 5");
	BAD(m.entries = NULL, RAFT_ERR_INVALID_ARG, "entries NULL");
	BAD((m.n_entries = RAFT_MAX_ENTRIES_PER_MSG + 1,
		 m.term = 1, m.log_term = 0, m.index = 0, m.entries = e,
		 memset(e, 0, sizeof(e))), RAFT_ERR_TOO_LARGE,
		"RAFT_MAX_ENTRIES_PER_MSG + 1 entries");
	BAD((e[0].len = RAFT_WIRE_MAX_MSG_BYTES), RAFT_ERR_TOO_LARGE,
		"an entry of RAFT_WIRE_MAX_MSG_BYTES");
	BAD((e[0].len = UINT32_MAX, e[1].len = UINT32_MAX, e[1].data = e[0].data),
		RAFT_ERR_TOO_LARGE, "entries of 4 GiB each");
	BAD((m = samples[snap_sample].m,
		 m.config.members[2].id = m.config.members[0].id),
		RAFT_ERR_INVALID_ARG, "a snapshot config with a duplicate id");
	BAD((m = samples[snap_sample].m, m.config.members[1].id = 0),
		RAFT_ERR_INVALID_ARG, "a snapshot config with member id 0");
	BAD((m = samples[snap_sample].m,
		 m.config.n_members = RAFT_MAX_MEMBERS + 1),
		RAFT_ERR_INVALID_ARG, "a snapshot config of 17 members");
#undef BAD

	/* a non-snapshot message ignores its config, whatever it holds */
	m = samples[0].m;
	m.config.n_members = 1000;
	rc = raft_msg_encode(&m, TEST_CLUSTER_ID, buf_a, sizeof(buf_a), &len);
	check(rc == RAFT_OK && len == need,
		  "an append ignores garbage in its config field");
}

/* The size limit is exact: a frame of RAFT_WIRE_MAX_MSG_BYTES is fine. */
static void
test_max_size(void)
{
	size_t		fixed = HEADER_BYTES + ENTRY_HEADER_BYTES + CRC_BYTES;
	size_t		max = RAFT_WIRE_MAX_MSG_BYTES;
	uint8_t    *data = calloc(1, max);
	uint8_t    *out = malloc(max + 1);
	raft_msg	m,
				d;
	raft_entry	e;
	size_t		len;
	int			rc;

	if (data == NULL || out == NULL)
	{
		printf("Bail out! out of memory\n");
		exit(1);
	}
	data[0] = 1;
	data[max - fixed - 1] = 2;
	memset(&m, 0, sizeof(m));
	m.type = RAFT_MSG_APPEND;
	m.from = 1;
	m.to = 2;
	m.term = 1;
	m.n_entries = 1;
	m.entries = &e;
	e.term = 1;
	e.index = 1;
	e.type = RAFT_ENTRY_NORMAL;
	e.len = (uint32_t) (max - fixed);
	e.data = data;

	rc = raft_msg_encode(&m, TEST_CLUSTER_ID, out, max + 1, &len);
	check(rc == RAFT_OK && len == max,
		  "a frame of exactly RAFT_WIRE_MAX_MSG_BYTES encodes");
	rc = raft_msg_decode(out, len, TEST_CLUSTER_ID, &d, dec_entries, 1);
	check(rc == RAFT_OK && d.n_entries == 1 && d.entries[0].len == e.len &&
		  d.entries[0].data[0] == 1 && d.entries[0].data[e.len - 1] == 2,
		  "a frame of exactly RAFT_WIRE_MAX_MSG_BYTES decodes");

	e.len++;
	rc = raft_msg_encode(&m, TEST_CLUSTER_ID, out, max + 1, &len);
	check(rc == RAFT_ERR_TOO_LARGE && len == 0 &&
		  raft_msg_encoded_size(&m) == 0,
		  "one byte more gives TOO_LARGE");

	/* hand-made frame one byte over the limit */
	e.len--;
	rc = raft_msg_encode(&m, TEST_CLUSTER_ID, out, max + 1, &len);
	check(rc == RAFT_OK, "re-encode the largest frame");
	out[max] = 0;
	put_u32(out + max - CRC_BYTES, 0);
	seal(out, max + 1);
	rc = raft_msg_decode(out, max + 1, TEST_CLUSTER_ID, &d, dec_entries, 1);
	check_rc(rc, RAFT_ERR_MSG_LENGTH,
			 "a sealed frame of RAFT_WIRE_MAX_MSG_BYTES + 1");

	free(data);
	free(out);
}

/*
 * --write-corpus DIR: one file per sample, for the fuzz target's seeds.
 * Frames above 4 kB are left out: libFuzzer sizes its inputs after the
 * largest seed, and small inputs keep the fuzzer fast.
 */
static int
write_corpus(const char *dir)
{
	int			i;

	for (i = 0; i < n_samples; i++)
	{
		char		path[4096];
		size_t		len = encode_or_die(&samples[i].m, buf_a, sizeof(buf_a));
		FILE	   *f;
		int			j;
		char		slug[64];
		size_t		k = 0;

		for (j = 0; samples[i].name[j] != '\0' && k + 1 < sizeof(slug); j++)
		{
			char		c = samples[i].name[j];

			if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				(c >= '0' && c <= '9'))
				slug[k++] = (char) (c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
			else if (k > 0 && slug[k - 1] != '_')
				slug[k++] = '_';
		}
		slug[k] = '\0';
		if (len > 4096)
			continue;
		snprintf(path, sizeof(path), "%s/%02d_%s.bin", dir, i + 1, slug);
		f = fopen(path, "wb");
		if (f == NULL || fwrite(buf_a, 1, len, f) != len || fclose(f) != 0)
		{
			perror(path);
			return 1;
		}
		printf("wrote %s (%zu bytes)\n", path, len);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	build_samples();

	if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
		return write_corpus(argv[2]);
	if (argc != 1)
	{
		fprintf(stderr, "usage: %s [--write-corpus DIR]\n", argv[0]);
		return 2;
	}

	test_crc();
	test_type_names();
	test_layout();
	test_round_trip();
	test_truncation();
	test_corruption();
	test_sealed_mutations();
	test_decode_errors();
	test_encode_errors();
	test_max_size();

	printf("1..%d\n", n_tests);
	if (n_failed > 0)
		fprintf(stderr, "%d of %d wire tests failed\n", n_failed, n_tests);
	return n_failed > 0 ? 1 : 0;
}
