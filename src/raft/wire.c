/*-------------------------------------------------------------------------
 *
 * wire.c
 *	  Encoding and decoding of raft_msg: the pg_raft wire format.
 *
 * Every message a node sends to a peer travels as one self-contained,
 * checksummed frame.  The transport (the PostgreSQL side) moves frames as
 * opaque bytes; this file alone knows what is inside them.
 *
 * NOTES
 *
 *	  Layout.  All integers are unsigned and little-endian; nothing is
 *	  aligned or padded.  A frame is a fixed 72-byte header, an optional
 *	  configuration block, zero or more entries and a 4-byte CRC:
 *
 *	  offset  size  field
 *	  ------  ----  ----------------------------------------------------
 *	     0     4  magic: the bytes 'P' 'G' 'R' 'F'
 *	     4     1  version: RAFT_WIRE_VERSION
 *	     5     1  type: raft_msg_type, 1 .. RAFT_MSG_TYPE_MAX
 *	     6     1  flags: RAFT_MSG_FLAG_* bits allowed for the type
 *	     7     1  reject: 0 or 1
 *	     8     8  cluster_id
 *	    16     4  length: the whole frame, header and CRC included
 *	    20     4  from
 *	    24     4  to
 *	    28     8  term
 *	    36     8  log_term
 *	    44     8  index
 *	    52     8  commit
 *	    60     8  context
 *	    68     4  n_entries
 *	    72        (end of the fixed header)
 *
 *	  then, for RAFT_MSG_SNAPSHOT only, the configuration block:
 *
 *	     0     4  n_members: 0 .. RAFT_MAX_MEMBERS
 *	     4   5*n  per member: id (4, non-zero, unique), voter (1, 0 or 1)
 *
 *	  then n_entries entries (RAFT_MSG_APPEND only), each:
 *
 *	     0     8  term
 *	     8     1  type: raft_entry_type, 1 .. 3
 *	     9     4  len
 *	    13   len  data
 *
 *	  and last the CRC-32C (Castagnoli) of every byte before it (4).
 *
 *	  An entry's index is not sent: entries[i].index is m->index + 1 + i,
 *	  since APPEND carries a contiguous run after the entry at m->index.
 *
 *	  The encoding is canonical: every field has exactly one valid byte
 *	  representation (booleans are 0 or 1, absent blocks are absent, no
 *	  slack bytes), so a frame that decodes re-encodes to the same bytes.
 *	  The fuzz target in test/sim/fuzz_wire.c checks exactly that.
 *
 *	  Decoding checks, in this order, and stops at the first failure:
 *
 *	  1. framing, before any field is trusted:
 *	     buffer shorter than header + CRC           RAFT_ERR_MSG_TRUNCATED
 *	     magic                                      RAFT_ERR_MSG_MAGIC
 *	     version                                    RAFT_ERR_MSG_VERSION
 *	     declared length < header + CRC, or
 *	     > RAFT_WIRE_MAX_MSG_BYTES                  RAFT_ERR_MSG_LENGTH
 *	     declared length > buffer (frame was cut)   RAFT_ERR_MSG_TRUNCATED
 *	     declared length < buffer (stray bytes)     RAFT_ERR_MSG_LENGTH
 *	     CRC                                        RAFT_ERR_MSG_CHECKSUM
 *	  2. cluster_id                                 RAFT_ERR_MSG_CLUSTER
 *	  3. type                                       RAFT_ERR_MSG_TYPE
 *	  4. header fields: a flag or reject not defined for the type,
 *	     reject byte other than 0/1, from or to 0, from == to,
 *	     log_term > term, entries on a type other
 *	     than APPEND, index + n_entries wrapping    RAFT_ERR_MSG_FIELD
 *	     n_entries > RAFT_MAX_ENTRIES_PER_MSG or
 *	     > entries_cap                              RAFT_ERR_MSG_TOO_LARGE
 *	  5. configuration block and entries, one by one: a block that runs
 *	     past the CRC gives RAFT_ERR_MSG_TRUNCATED, a bad value
 *	     RAFT_ERR_MSG_FIELD
 *	  6. bytes left between the last entry and the CRC: RAFT_ERR_MSG_LENGTH
 *
 *	  So TRUNCATED means "a frame, or a part of one, is missing bytes" and
 *	  LENGTH means "the length field disagrees with what is there".  Since
 *	  the CRC is checked before the cluster id, the type and the body, any
 *	  corruption of those shows up as RAFT_ERR_MSG_CHECKSUM; a CRC-32
 *	  detects every error burst of up to 32 bits, so every single corrupted
 *	  byte of a frame is caught by one of the framing checks.
 *
 *	  Beyond the structure, decoding rejects (RAFT_ERR_MSG_FIELD) messages
 *	  that no correct Raft node sends, so that the core never sees them:
 *	  from or to equal to RAFT_NO_NODE, from == to, log_term > term, and
 *	  APPEND entries whose terms are not non-decreasing within
 *	  [log_term, term] (Log Matching: no entry has a term below the one
 *	  before it, and no leader sends an entry from a term after its own).
 *	  Encoding applies the same checks and refuses with
 *	  RAFT_ERR_INVALID_ARG what decoding would refuse (and an entry whose
 *	  index is not the implied one, which could not round-trip), so a frame
 *	  the encoder produces always decodes.  Too many entries, a frame above
 *	  RAFT_WIRE_MAX_MSG_BYTES or a buffer too small give RAFT_ERR_TOO_LARGE.
 *
 *	  This file is part of the core: pure C99, no allocation, no I/O, no
 *	  global mutable state.  The CRC uses a plain byte-wise table; it is
 *	  not the fastest CRC-32C, but it is portable and small.
 *
 * IDENTIFICATION
 *	  src/raft/wire.c
 *
 *-------------------------------------------------------------------------
 */
#include "raft.h"

#include <string.h>

/* Fixed header: field offsets and size (see the table above). */
#define WIRE_OFF_MAGIC		0
#define WIRE_OFF_VERSION	4
#define WIRE_OFF_TYPE		5
#define WIRE_OFF_FLAGS		6
#define WIRE_OFF_REJECT		7
#define WIRE_OFF_CLUSTER	8
#define WIRE_OFF_LENGTH		16
#define WIRE_OFF_FROM		20
#define WIRE_OFF_TO			24
#define WIRE_OFF_TERM		28
#define WIRE_OFF_LOG_TERM	36
#define WIRE_OFF_INDEX		44
#define WIRE_OFF_COMMIT		52
#define WIRE_OFF_CONTEXT	60
#define WIRE_OFF_N_ENTRIES	68
#define WIRE_HEADER_BYTES	72

#define WIRE_CONFIG_HEADER_BYTES	4	/* n_members */
#define WIRE_MEMBER_BYTES			5	/* id, voter */
#define WIRE_ENTRY_HEADER_BYTES		13	/* term, type, len */
#define WIRE_CRC_BYTES				4

/* The smallest possible frame: a header and a CRC. */
#define WIRE_MIN_MSG_BYTES	(WIRE_HEADER_BYTES + WIRE_CRC_BYTES)

static const uint8_t wire_magic[4] = {'P', 'G', 'R', 'F'};

/*
 * CRC-32C lookup table for the reflected polynomial 0x82F63B78:
 * crc32c_table[i] is the CRC register after shifting byte i through it.
 */
static const uint32_t crc32c_table[256] = {
	0x00000000, 0xF26B8303, 0xE13B70F7, 0x1350F3F4,
	0xC79A971F, 0x35F1141C, 0x26A1E7E8, 0xD4CA64EB,
	0x8AD958CF, 0x78B2DBCC, 0x6BE22838, 0x9989AB3B,
	0x4D43CFD0, 0xBF284CD3, 0xAC78BF27, 0x5E133C24,
	0x105EC76F, 0xE235446C, 0xF165B798, 0x030E349B,
	0xD7C45070, 0x25AFD373, 0x36FF2087, 0xC494A384,
	0x9A879FA0, 0x68EC1CA3, 0x7BBCEF57, 0x89D76C54,
	0x5D1D08BF, 0xAF768BBC, 0xBC267848, 0x4E4DFB4B,
	0x20BD8EDE, 0xD2D60DDD, 0xC186FE29, 0x33ED7D2A,
	0xE72719C1, 0x154C9AC2, 0x061C6936, 0xF477EA35,
	0xAA64D611, 0x580F5512, 0x4B5FA6E6, 0xB93425E5,
	0x6DFE410E, 0x9F95C20D, 0x8CC531F9, 0x7EAEB2FA,
	0x30E349B1, 0xC288CAB2, 0xD1D83946, 0x23B3BA45,
	0xF779DEAE, 0x05125DAD, 0x1642AE59, 0xE4292D5A,
	0xBA3A117E, 0x4851927D, 0x5B016189, 0xA96AE28A,
	0x7DA08661, 0x8FCB0562, 0x9C9BF696, 0x6EF07595,
	0x417B1DBC, 0xB3109EBF, 0xA0406D4B, 0x522BEE48,
	0x86E18AA3, 0x748A09A0, 0x67DAFA54, 0x95B17957,
	0xCBA24573, 0x39C9C670, 0x2A993584, 0xD8F2B687,
	0x0C38D26C, 0xFE53516F, 0xED03A29B, 0x1F682198,
	0x5125DAD3, 0xA34E59D0, 0xB01EAA24, 0x42752927,
	0x96BF4DCC, 0x64D4CECF, 0x77843D3B, 0x85EFBE38,
	0xDBFC821C, 0x2997011F, 0x3AC7F2EB, 0xC8AC71E8,
	0x1C661503, 0xEE0D9600, 0xFD5D65F4, 0x0F36E6F7,
	0x61C69362, 0x93AD1061, 0x80FDE395, 0x72966096,
	0xA65C047D, 0x5437877E, 0x4767748A, 0xB50CF789,
	0xEB1FCBAD, 0x197448AE, 0x0A24BB5A, 0xF84F3859,
	0x2C855CB2, 0xDEEEDFB1, 0xCDBE2C45, 0x3FD5AF46,
	0x7198540D, 0x83F3D70E, 0x90A324FA, 0x62C8A7F9,
	0xB602C312, 0x44694011, 0x5739B3E5, 0xA55230E6,
	0xFB410CC2, 0x092A8FC1, 0x1A7A7C35, 0xE811FF36,
	0x3CDB9BDD, 0xCEB018DE, 0xDDE0EB2A, 0x2F8B6829,
	0x82F63B78, 0x709DB87B, 0x63CD4B8F, 0x91A6C88C,
	0x456CAC67, 0xB7072F64, 0xA457DC90, 0x563C5F93,
	0x082F63B7, 0xFA44E0B4, 0xE9141340, 0x1B7F9043,
	0xCFB5F4A8, 0x3DDE77AB, 0x2E8E845F, 0xDCE5075C,
	0x92A8FC17, 0x60C37F14, 0x73938CE0, 0x81F80FE3,
	0x55326B08, 0xA759E80B, 0xB4091BFF, 0x466298FC,
	0x1871A4D8, 0xEA1A27DB, 0xF94AD42F, 0x0B21572C,
	0xDFEB33C7, 0x2D80B0C4, 0x3ED04330, 0xCCBBC033,
	0xA24BB5A6, 0x502036A5, 0x4370C551, 0xB11B4652,
	0x65D122B9, 0x97BAA1BA, 0x84EA524E, 0x7681D14D,
	0x2892ED69, 0xDAF96E6A, 0xC9A99D9E, 0x3BC21E9D,
	0xEF087A76, 0x1D63F975, 0x0E330A81, 0xFC588982,
	0xB21572C9, 0x407EF1CA, 0x532E023E, 0xA145813D,
	0x758FE5D6, 0x87E466D5, 0x94B49521, 0x66DF1622,
	0x38CC2A06, 0xCAA7A905, 0xD9F75AF1, 0x2B9CD9F2,
	0xFF56BD19, 0x0D3D3E1A, 0x1E6DCDEE, 0xEC064EED,
	0xC38D26C4, 0x31E6A5C7, 0x22B65633, 0xD0DDD530,
	0x0417B1DB, 0xF67C32D8, 0xE52CC12C, 0x1747422F,
	0x49547E0B, 0xBB3FFD08, 0xA86F0EFC, 0x5A048DFF,
	0x8ECEE914, 0x7CA56A17, 0x6FF599E3, 0x9D9E1AE0,
	0xD3D3E1AB, 0x21B862A8, 0x32E8915C, 0xC083125F,
	0x144976B4, 0xE622F5B7, 0xF5720643, 0x07198540,
	0x590AB964, 0xAB613A67, 0xB831C993, 0x4A5A4A90,
	0x9E902E7B, 0x6CFBAD78, 0x7FAB5E8C, 0x8DC0DD8F,
	0xE330A81A, 0x115B2B19, 0x020BD8ED, 0xF0605BEE,
	0x24AA3F05, 0xD6C1BC06, 0xC5914FF2, 0x37FACCF1,
	0x69E9F0D5, 0x9B8273D6, 0x88D28022, 0x7AB90321,
	0xAE7367CA, 0x5C18E4C9, 0x4F48173D, 0xBD23943E,
	0xF36E6F75, 0x0105EC76, 0x12551F82, 0xE03E9C81,
	0x34F4F86A, 0xC69F7B69, 0xD5CF889D, 0x27A40B9E,
	0x79B737BA, 0x8BDCB4B9, 0x988C474D, 0x6AE7C44E,
	0xBE2DA0A5, 0x4C4623A6, 0x5F16D052, 0xAD7D5351
};

/*
 * crc32c_slices[k][i] is the CRC register after shifting byte i and then
 * k zero bytes through it.  With them the CRC takes eight bytes at a time
 * ("slicing by 8"), several times faster than a byte at a time: an append
 * of a large transaction checksums megabytes.  Filled from crc32c_table at
 * the first checksum.
 */
static uint32_t crc32c_slices[8][256];
static bool crc32c_slices_filled = false;

static void
crc32c_fill_slices(void)
{
	int			i;
	int			k;

	for (i = 0; i < 256; i++)
	{
		uint32_t	crc = crc32c_table[i];

		crc32c_slices[0][i] = crc;
		for (k = 1; k < 8; k++)
		{
			crc = crc32c_table[crc & 0xFF] ^ (crc >> 8);
			crc32c_slices[k][i] = crc;
		}
	}
	crc32c_slices_filled = true;
}

/* The little-endian 32-bit value at p. */
static inline uint32_t
crc32c_le32(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 |
		(uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

/*
 * CRC-32C (Castagnoli), the checksum of iSCSI, ext4 and PostgreSQL's WAL.
 *
 * crc is the value returned for the preceding bytes (0 to start), so a
 * checksum can be computed in pieces:
 * raft_crc32c(raft_crc32c(0, a, n), b, m) equals the CRC of a then b.
 */
uint32_t
raft_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	if (!crc32c_slices_filled)
		crc32c_fill_slices();
	crc = ~crc;
	for (; len >= 8; p += 8, len -= 8)
	{
		uint32_t	lo = crc ^ crc32c_le32(p);
		uint32_t	hi = crc32c_le32(p + 4);

		crc = crc32c_slices[7][lo & 0xFF] ^
			crc32c_slices[6][(lo >> 8) & 0xFF] ^
			crc32c_slices[5][(lo >> 16) & 0xFF] ^
			crc32c_slices[4][lo >> 24] ^
			crc32c_slices[3][hi & 0xFF] ^
			crc32c_slices[2][(hi >> 8) & 0xFF] ^
			crc32c_slices[1][(hi >> 16) & 0xFF] ^
			crc32c_slices[0][hi >> 24];
	}
	while (len-- > 0)
		crc = crc32c_table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
	return ~crc;
}

const char *
raft_msg_type_name(int type)
{
	switch (type)
	{
		case RAFT_MSG_APPEND:
			return "append";
		case RAFT_MSG_APPEND_RESP:
			return "append_resp";
		case RAFT_MSG_VOTE:
			return "vote";
		case RAFT_MSG_VOTE_RESP:
			return "vote_resp";
		case RAFT_MSG_PRE_VOTE:
			return "pre_vote";
		case RAFT_MSG_PRE_VOTE_RESP:
			return "pre_vote_resp";
		case RAFT_MSG_HEARTBEAT:
			return "heartbeat";
		case RAFT_MSG_HEARTBEAT_RESP:
			return "heartbeat_resp";
		case RAFT_MSG_TIMEOUT_NOW:
			return "timeout_now";
		case RAFT_MSG_SNAPSHOT:
			return "snapshot";
	}
	return "unknown";
}

/*
 * Little-endian accessors.  Each byte is moved on its own, so the code
 * neither depends on the host's byte order nor reads unaligned words.
 */
static void
wire_put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
	p[2] = (uint8_t) (v >> 16);
	p[3] = (uint8_t) (v >> 24);
}

static void
wire_put_u64(uint8_t *p, uint64_t v)
{
	wire_put_u32(p, (uint32_t) v);
	wire_put_u32(p + 4, (uint32_t) (v >> 32));
}

static uint32_t
wire_get_u32(const uint8_t *p)
{
	return (uint32_t) p[0] |
		((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) |
		((uint32_t) p[3] << 24);
}

static uint64_t
wire_get_u64(const uint8_t *p)
{
	return (uint64_t) wire_get_u32(p) |
		((uint64_t) wire_get_u32(p + 4) << 32);
}

/*
 * The flag bits a message type may carry.  A leadership transfer skips or
 * marks the election it forces, so only vote requests are flagged; the
 * pre-vote is allowed too, so that the core may keep the pre-vote phase
 * for transfers if it chooses.
 */
static unsigned int
wire_allowed_flags(uint8_t type)
{
	switch (type)
	{
		case RAFT_MSG_VOTE:
		case RAFT_MSG_PRE_VOTE:
			return RAFT_MSG_FLAG_TRANSFER;
	}
	return 0;
}

/* Only responses to a request that can be refused carry reject = 1. */
static bool
wire_may_reject(uint8_t type)
{
	return type == RAFT_MSG_APPEND_RESP ||
		type == RAFT_MSG_VOTE_RESP ||
		type == RAFT_MSG_PRE_VOTE_RESP;
}

/*
 * Checks the header fields of a message, shared by encode and decode so
 * that both accept exactly the same messages.  Returns RAFT_OK or a
 * RAFT_ERR_MSG_* code; the encoder translates the code.
 */
static int
wire_check_header(const raft_msg *m)
{
	if (m->type < 1 || m->type > RAFT_MSG_TYPE_MAX)
		return RAFT_ERR_MSG_TYPE;
	if (((unsigned int) m->flags & ~wire_allowed_flags(m->type)) != 0)
		return RAFT_ERR_MSG_FIELD;
	if (m->reject && !wire_may_reject(m->type))
		return RAFT_ERR_MSG_FIELD;
	if (m->from == RAFT_NO_NODE || m->to == RAFT_NO_NODE || m->from == m->to)
		return RAFT_ERR_MSG_FIELD;
	/* a node's log never holds a term above its current term */
	if (m->log_term > m->term)
		return RAFT_ERR_MSG_FIELD;
	if (m->n_entries > 0 && m->type != RAFT_MSG_APPEND)
		return RAFT_ERR_MSG_FIELD;
	if (m->n_entries > RAFT_MAX_ENTRIES_PER_MSG)
		return RAFT_ERR_MSG_TOO_LARGE;
	/* the last entry's index, m->index + n_entries, must not wrap */
	if (m->index > UINT64_MAX - m->n_entries)
		return RAFT_ERR_MSG_FIELD;
	return RAFT_OK;
}

/* Checks a SNAPSHOT's configuration: bounded, ids non-zero and unique. */
static int
wire_check_config(const raft_config *c)
{
	uint32_t	i,
				j;

	if (c->n_members > RAFT_MAX_MEMBERS)
		return RAFT_ERR_MSG_FIELD;
	for (i = 0; i < c->n_members; i++)
	{
		if (c->members[i].id == RAFT_NO_NODE)
			return RAFT_ERR_MSG_FIELD;
		for (j = 0; j < i; j++)
			if (c->members[j].id == c->members[i].id)
				return RAFT_ERR_MSG_FIELD;
	}
	return RAFT_OK;
}

/*
 * Checks one APPEND entry; prev_term is the term of the entry before it
 * (m->log_term for the first).  See NOTES for why terms are bounded.
 */
static int
wire_check_entry(const raft_msg *m, const raft_entry *e, raft_term_t prev_term)
{
	if (e->type < RAFT_ENTRY_NORMAL || e->type > RAFT_ENTRY_CONFIG)
		return RAFT_ERR_MSG_FIELD;
	if (e->term < prev_term || e->term > m->term)
		return RAFT_ERR_MSG_FIELD;
	return RAFT_OK;
}

/*
 * Validates m for encoding and computes its encoded size.  Returns
 * RAFT_OK, RAFT_ERR_INVALID_ARG for a message decoding would refuse (or
 * that could not round-trip: an entry whose index is not the implied one,
 * missing data), or RAFT_ERR_TOO_LARGE for too many entries or a frame
 * above RAFT_WIRE_MAX_MSG_BYTES.
 */
static int
wire_measure(const raft_msg *m, size_t *size)
{
	uint64_t	total;
	raft_term_t prev_term;
	uint32_t	i;
	int			rc;

	if (m == NULL)
		return RAFT_ERR_INVALID_ARG;
	rc = wire_check_header(m);
	if (rc == RAFT_ERR_MSG_TOO_LARGE)
		return RAFT_ERR_TOO_LARGE;
	if (rc != RAFT_OK)
		return RAFT_ERR_INVALID_ARG;

	total = WIRE_MIN_MSG_BYTES;
	if (m->type == RAFT_MSG_SNAPSHOT)
	{
		if (wire_check_config(&m->config) != RAFT_OK)
			return RAFT_ERR_INVALID_ARG;
		total += WIRE_CONFIG_HEADER_BYTES +
			(uint64_t) m->config.n_members * WIRE_MEMBER_BYTES;
	}

	if (m->n_entries > 0 && m->entries == NULL)
		return RAFT_ERR_INVALID_ARG;
	prev_term = m->log_term;
	for (i = 0; i < m->n_entries; i++)
	{
		const raft_entry *e = &m->entries[i];

		if (wire_check_entry(m, e, prev_term) != RAFT_OK)
			return RAFT_ERR_INVALID_ARG;
		/* cannot wrap: wire_check_header bounded index + n_entries */
		if (e->index != m->index + 1 + i)
			return RAFT_ERR_INVALID_ARG;
		if (e->len > 0 && e->data == NULL)
			return RAFT_ERR_INVALID_ARG;
		/* at most 256 * (13 + 2^32) bytes: no overflow in 64 bits */
		total += WIRE_ENTRY_HEADER_BYTES + (uint64_t) e->len;
		prev_term = e->term;
	}

	if (total > RAFT_WIRE_MAX_MSG_BYTES)
		return RAFT_ERR_TOO_LARGE;
	*size = (size_t) total;
	return RAFT_OK;
}

/*
 * Returns the exact number of bytes raft_msg_encode() writes for m, or 0
 * when m cannot be encoded (raft_msg_encode would fail with
 * RAFT_ERR_INVALID_ARG or RAFT_ERR_TOO_LARGE whatever the buffer).
 */
size_t
raft_msg_encoded_size(const raft_msg *m)
{
	size_t		size;

	if (wire_measure(m, &size) != RAFT_OK)
		return 0;
	return size;
}

/*
 * Encodes m into buf (cap bytes) and sets *len to the frame's size.
 *
 * Nothing is written to buf unless the whole frame fits.  When the only
 * problem is that cap is too small, the result is RAFT_ERR_TOO_LARGE and
 * *len is still set to the size needed, so a caller may pass buf = NULL
 * and cap = 0 to learn it; on every other error *len is 0.  Entry data may
 * overlap buf (re-encoding a frame decoded in place is fine).
 */
int
raft_msg_encode(const raft_msg *m, uint64_t cluster_id,
				uint8_t *buf, size_t cap, size_t *len)
{
	size_t		size;
	size_t		p;
	uint32_t	i;
	int			rc;

	if (len != NULL)
		*len = 0;
	rc = wire_measure(m, &size);
	if (rc != RAFT_OK)
		return rc;
	if (cap < size)
	{
		if (len != NULL)
			*len = size;
		return RAFT_ERR_TOO_LARGE;
	}
	if (buf == NULL)
		return RAFT_ERR_INVALID_ARG;

	buf[WIRE_OFF_MAGIC + 0] = wire_magic[0];
	buf[WIRE_OFF_MAGIC + 1] = wire_magic[1];
	buf[WIRE_OFF_MAGIC + 2] = wire_magic[2];
	buf[WIRE_OFF_MAGIC + 3] = wire_magic[3];
	buf[WIRE_OFF_VERSION] = RAFT_WIRE_VERSION;
	buf[WIRE_OFF_TYPE] = m->type;
	buf[WIRE_OFF_FLAGS] = m->flags;
	buf[WIRE_OFF_REJECT] = m->reject ? 1 : 0;
	wire_put_u64(buf + WIRE_OFF_CLUSTER, cluster_id);
	wire_put_u32(buf + WIRE_OFF_LENGTH, (uint32_t) size);
	wire_put_u32(buf + WIRE_OFF_FROM, m->from);
	wire_put_u32(buf + WIRE_OFF_TO, m->to);
	wire_put_u64(buf + WIRE_OFF_TERM, m->term);
	wire_put_u64(buf + WIRE_OFF_LOG_TERM, m->log_term);
	wire_put_u64(buf + WIRE_OFF_INDEX, m->index);
	wire_put_u64(buf + WIRE_OFF_COMMIT, m->commit);
	wire_put_u64(buf + WIRE_OFF_CONTEXT, m->context);
	wire_put_u32(buf + WIRE_OFF_N_ENTRIES, m->n_entries);
	p = WIRE_HEADER_BYTES;

	if (m->type == RAFT_MSG_SNAPSHOT)
	{
		wire_put_u32(buf + p, m->config.n_members);
		p += WIRE_CONFIG_HEADER_BYTES;
		for (i = 0; i < m->config.n_members; i++)
		{
			wire_put_u32(buf + p, m->config.members[i].id);
			buf[p + 4] = m->config.members[i].voter ? 1 : 0;
			p += WIRE_MEMBER_BYTES;
		}
	}

	for (i = 0; i < m->n_entries; i++)
	{
		const raft_entry *e = &m->entries[i];

		wire_put_u64(buf + p, e->term);
		buf[p + 8] = e->type;
		wire_put_u32(buf + p + 9, e->len);
		p += WIRE_ENTRY_HEADER_BYTES;
		if (e->len > 0)
			memmove(buf + p, e->data, e->len);
		p += e->len;
	}

	wire_put_u32(buf + p, raft_crc32c(0, buf, p));
	p += WIRE_CRC_BYTES;

	if (len != NULL)
		*len = size;
	return RAFT_OK;
}

/*
 * Decodes one frame; see NOTES for the checks and their order.
 *
 * On success *m holds the message; m->entries is entries, whose data
 * pointers point into buf.  On failure *m is left untouched, though the
 * first elements of entries may have been overwritten.
 */
int
raft_msg_decode(const uint8_t *buf, size_t len, uint64_t cluster_id,
				raft_msg *m, raft_entry *entries, size_t entries_cap)
{
	raft_msg	msg;
	size_t		declared;
	size_t		end;			/* offset of the CRC */
	size_t		p;
	raft_term_t prev_term;
	uint32_t	i;
	int			rc;

	if (m == NULL || (buf == NULL && len > 0) ||
		(entries == NULL && entries_cap > 0))
		return RAFT_ERR_INVALID_ARG;

	/* 1. framing */
	if (len < WIRE_MIN_MSG_BYTES)
		return RAFT_ERR_MSG_TRUNCATED;
	if (buf[WIRE_OFF_MAGIC + 0] != wire_magic[0] ||
		buf[WIRE_OFF_MAGIC + 1] != wire_magic[1] ||
		buf[WIRE_OFF_MAGIC + 2] != wire_magic[2] ||
		buf[WIRE_OFF_MAGIC + 3] != wire_magic[3])
		return RAFT_ERR_MSG_MAGIC;
	if (buf[WIRE_OFF_VERSION] != RAFT_WIRE_VERSION)
		return RAFT_ERR_MSG_VERSION;
	declared = wire_get_u32(buf + WIRE_OFF_LENGTH);
	if (declared < WIRE_MIN_MSG_BYTES || declared > RAFT_WIRE_MAX_MSG_BYTES)
		return RAFT_ERR_MSG_LENGTH;
	if (declared > len)
		return RAFT_ERR_MSG_TRUNCATED;
	if (declared < len)
		return RAFT_ERR_MSG_LENGTH;
	end = len - WIRE_CRC_BYTES;
	if (raft_crc32c(0, buf, end) != wire_get_u32(buf + end))
		return RAFT_ERR_MSG_CHECKSUM;

	/* 2. cluster */
	if (wire_get_u64(buf + WIRE_OFF_CLUSTER) != cluster_id)
		return RAFT_ERR_MSG_CLUSTER;

	/* 3 and 4. header fields */
	memset(&msg, 0, sizeof(msg));
	msg.type = buf[WIRE_OFF_TYPE];
	msg.flags = buf[WIRE_OFF_FLAGS];
	msg.reject = buf[WIRE_OFF_REJECT] != 0;
	msg.from = wire_get_u32(buf + WIRE_OFF_FROM);
	msg.to = wire_get_u32(buf + WIRE_OFF_TO);
	msg.term = wire_get_u64(buf + WIRE_OFF_TERM);
	msg.log_term = wire_get_u64(buf + WIRE_OFF_LOG_TERM);
	msg.index = wire_get_u64(buf + WIRE_OFF_INDEX);
	msg.commit = wire_get_u64(buf + WIRE_OFF_COMMIT);
	msg.context = wire_get_u64(buf + WIRE_OFF_CONTEXT);
	msg.n_entries = wire_get_u32(buf + WIRE_OFF_N_ENTRIES);
	msg.entries = entries;

	rc = wire_check_header(&msg);
	if (rc != RAFT_OK)
		return rc;
	/* only 0 and 1 are canonical; anything else would not round-trip */
	if (buf[WIRE_OFF_REJECT] > 1)
		return RAFT_ERR_MSG_FIELD;
	if (msg.n_entries > entries_cap)
		return RAFT_ERR_MSG_TOO_LARGE;
	p = WIRE_HEADER_BYTES;

	/* 5. configuration block */
	if (msg.type == RAFT_MSG_SNAPSHOT)
	{
		if (end - p < WIRE_CONFIG_HEADER_BYTES)
			return RAFT_ERR_MSG_TRUNCATED;
		msg.config.n_members = wire_get_u32(buf + p);
		p += WIRE_CONFIG_HEADER_BYTES;
		if (msg.config.n_members > RAFT_MAX_MEMBERS)
			return RAFT_ERR_MSG_FIELD;
		if ((end - p) / WIRE_MEMBER_BYTES < msg.config.n_members)
			return RAFT_ERR_MSG_TRUNCATED;
		for (i = 0; i < msg.config.n_members; i++)
		{
			if (buf[p + 4] > 1)
				return RAFT_ERR_MSG_FIELD;
			msg.config.members[i].id = wire_get_u32(buf + p);
			msg.config.members[i].voter = buf[p + 4] != 0;
			p += WIRE_MEMBER_BYTES;
		}
		rc = wire_check_config(&msg.config);
		if (rc != RAFT_OK)
			return rc;
	}

	/* 5. entries */
	prev_term = msg.log_term;
	for (i = 0; i < msg.n_entries; i++)
	{
		raft_entry *e = &entries[i];

		if (end - p < WIRE_ENTRY_HEADER_BYTES)
			return RAFT_ERR_MSG_TRUNCATED;
		e->term = wire_get_u64(buf + p);
		e->type = buf[p + 8];
		e->len = wire_get_u32(buf + p + 9);
		p += WIRE_ENTRY_HEADER_BYTES;
		if ((size_t) e->len > end - p)
			return RAFT_ERR_MSG_TRUNCATED;
		e->data = buf + p;
		e->index = msg.index + 1 + i;
		p += e->len;
		rc = wire_check_entry(&msg, e, prev_term);
		if (rc != RAFT_OK)
			return rc;
		prev_term = e->term;
	}

	/* 6. nothing may remain before the CRC */
	if (p != end)
		return RAFT_ERR_MSG_LENGTH;

	*m = msg;
	return RAFT_OK;
}
