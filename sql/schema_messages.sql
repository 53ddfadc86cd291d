--
-- schema_messages: pg_raft's logical messages (schema changes and sequence
-- positions) through the output plugin and raft.decode_changes(), and their
-- replay by raft.apply_changes(), with the errors.  On a member, ddl.c and
-- sequences.c write these messages; here they are written by hand.
--
CREATE EXTENSION pg_raft;
SELECT 'init' FROM pg_create_logical_replication_slot('msg', 'pg_raft');

-- The message format of changes/changes.h, little-endian.
CREATE FUNCTION le(n bigint, width int) RETURNS bytea LANGUAGE sql AS $$
	SELECT decode(string_agg(lpad(to_hex(get_byte(int8send(n), 7 - i)), 2, '0'), '' ORDER BY i), 'hex')
	  FROM generate_series(0, width - 1) i
$$;
CREATE FUNCTION str(s text) RETURNS bytea LANGUAGE sql AS $$
	SELECT le(octet_length(convert_to(s, 'UTF8')), 2) || convert_to(s, 'UTF8')
$$;
CREATE FUNCTION txt(s text) RETURNS bytea LANGUAGE sql AS $$
	SELECT le(octet_length(convert_to(s, 'UTF8')), 4) || convert_to(s, 'UTF8')
$$;
CREATE FUNCTION ddl(role text, statement text) RETURNS bytea LANGUAGE sql AS $$
	SELECT '\x58'::bytea || str(role) || le(1, 2) || str('search_path')
		   || txt('msg_schema, public') || txt(statement) || le(0, 2)
$$;
-- ... with the value a column it adds holds in the existing rows
CREATE FUNCTION ddl_adding(statement text, rel text, col text, value text) RETURNS bytea LANGUAGE sql AS $$
	SELECT '\x58'::bytea || str(current_user::text) || le(0, 2) || txt(statement)
		   || le(1, 2) || str('public') || str(rel) || str(col) || txt(value)
$$;
CREATE FUNCTION seq(nsp text, rel text, value bigint, flags int) RETURNS bytea LANGUAGE sql AS $$
	SELECT '\x53'::bytea || str(nsp) || str(rel) || le(value, 8) || le(flags, 1)
$$;
-- a transaction's stream around the given messages, for raft.apply_changes()
CREATE FUNCTION txn(messages bytea) RETURNS bytea LANGUAGE sql AS $$
	SELECT '\x5601'::bytea || '\x42'::bytea || le(0, 4) || le(0, 8) || le(0, 8)
		   || messages || '\x43'::bytea || le(0, 8) || le(0, 8) || le(0, 8)
$$;

CREATE FUNCTION msg_show() RETURNS SETOF text LANGUAGE sql AS $$
	SELECT raft.decode_changes(string_agg(data, '' ORDER BY n))
	  FROM pg_logical_slot_get_binary_changes('msg', NULL, NULL)
		   WITH ORDINALITY AS c(lsn, xid, data, n)
$$;

-- A schema change travels where it stands in its transaction; a sequence's
-- position, not transactional, as a transaction of its own.  Messages of
-- other prefixes are not pg_raft's.
CREATE TABLE msg_t (id int PRIMARY KEY);
BEGIN;
INSERT INTO msg_t VALUES (1);
SELECT 'ddl' FROM pg_logical_emit_message(true, 'pg_raft',
	ddl(current_user, 'ALTER TABLE msg_t ADD COLUMN note text'));
INSERT INTO msg_t VALUES (2);
COMMIT;
SELECT 'seq' FROM pg_logical_emit_message(false, 'pg_raft', seq('public', 'orders_id_seq', 1000, 0));
SELECT 'seq' FROM pg_logical_emit_message(true, 'pg_raft', seq('s', 'set', -5, 2));
SELECT 'other' FROM pg_logical_emit_message(true, 'not_pg_raft', 'anything');
SELECT 'other' FROM pg_logical_emit_message(false, 'not_pg_raft', 'anything');
SELECT regexp_replace(line, 'DDL AS [^ ]+', 'DDL AS <user>') FROM msg_show() AS line;

-- A rolled-back schema change reaches nobody.
BEGIN;
SELECT 'ddl' FROM pg_logical_emit_message(true, 'pg_raft', ddl(current_user, 'DROP TABLE msg_t'));
ROLLBACK;
SELECT count(*) AS nothing FROM msg_show();

-- Replay: as the role, with the settings, which are restored afterwards.
CREATE SCHEMA msg_schema;
CREATE ROLE msg_owner;
GRANT USAGE, CREATE ON SCHEMA msg_schema TO msg_owner;
SET search_path = public;
SELECT raft.apply_changes(txn(ddl('msg_owner', 'CREATE TABLE made (id int)')));
SELECT relname, relnamespace::regnamespace, relowner::regrole FROM pg_class WHERE relname = 'made';
SHOW search_path;
SELECT current_user = session_user AS user_restored;
-- CREATE TABLE AS: the rows follow as inserts, the statement makes none;
-- CONCURRENTLY runs inside the transaction
SELECT raft.apply_changes(txn(ddl(current_user, 'CREATE TABLE msg_schema.copied AS SELECT g FROM generate_series(1, 5) g')));
SELECT count(*) AS no_rows FROM msg_schema.copied;
SELECT raft.apply_changes(txn(ddl(current_user, 'CREATE INDEX CONCURRENTLY ON msg_schema.copied (g)')));
SELECT indexrelid::regclass, indisvalid FROM pg_index WHERE indrelid = 'msg_schema.copied'::regclass;

-- A column added with a default that is not immutable holds, in the rows
-- already there, the value the leader computed.
CREATE TABLE msg_fast (id int);
INSERT INTO msg_fast VALUES (1), (2);
SELECT raft.apply_changes(txn(ddl_adding('ALTER TABLE public.msg_fast ADD COLUMN at timestamptz DEFAULT now()',
										 'msg_fast', 'at', '{"2000-01-01 00:00:00+00"}')));
SELECT id, at = '2000-01-01 00:00:00+00' AS leaders_value FROM msg_fast ORDER BY id;
SELECT regexp_replace(line, 'DDL AS [^:]+', 'DDL AS <user>')
  FROM raft.decode_changes(ddl_adding('ALTER TABLE msg_fast ADD COLUMN at timestamptz DEFAULT now()',
									  'msg_fast', 'at', '{"2000-01-01 00:00:00+00"}')) AS line;

-- Sequences: moved past an announced value, or set exactly.
CREATE SEQUENCE msg_s;
CREATE SEQUENCE msg_down INCREMENT -1 MAXVALUE 0 START 0;
SELECT raft.apply_changes(txn(seq('public', 'msg_s', 1000, 0)));
SELECT nextval('msg_s');
SELECT raft.apply_changes(txn(seq('public', 'msg_s', 10, 0)));
SELECT nextval('msg_s') AS never_back;
SELECT raft.apply_changes(txn(seq('public', 'msg_s', 5, 2)));
SELECT nextval('msg_s') AS set_not_called;
SELECT raft.apply_changes(txn(seq('public', 'msg_s', 7, 3)));
SELECT nextval('msg_s') AS set_called;
SELECT raft.apply_changes(txn(seq('public', 'msg_down', -50, 0)));
SELECT nextval('msg_down') AS descending;

-- A column's type in the stream must be the local one, modifier included.
CREATE TABLE msg_types (id bigint, amount numeric(10,2));
CREATE FUNCTION rel(col text, typid int, typmod int) RETURNS bytea LANGUAGE sql AS $$
	SELECT '\x52'::bytea || le(1, 4) || str('public') || str('msg_types') || '\x64'::bytea
		   || le(1, 2) || str(col) || le(typid, 4) || le(typmod, 4) || '\x00'::bytea
$$;
CREATE FUNCTION ins(value text) RETURNS bytea LANGUAGE sql AS $$
	SELECT '\x49'::bytea || le(1, 4) || le(1, 2) || '\x74'::bytea || txt(value)
$$;
SELECT raft.apply_changes(txn(rel('id', 20, -1) || ins('7')));
SELECT raft.apply_changes(txn(rel('amount', 1700, 655366) || ins('1.5')));
SELECT * FROM msg_types ORDER BY id NULLS FIRST;
SELECT raft.apply_changes(txn(rel('id', 23, -1) || ins('8')));
SELECT raft.apply_changes(txn(rel('amount', 1700, 655367) || ins('1.5')));

-- Errors.
SELECT raft.apply_changes(txn(ddl('no_such_role', 'CREATE TABLE x (id int)')));
SELECT raft.apply_changes(txn(ddl(current_user, 'CREATE TABLE x (id int); CREATE TABLE y (id int)')));
SELECT raft.apply_changes(txn(ddl(current_user, 'SELECT 1')));
SELECT raft.apply_changes(txn(ddl(current_user, 'CREATE TABLE public.msg_t (id int)')));
SELECT raft.apply_changes(txn(seq('public', 'no_such_sequence', 1, 0)));
SELECT raft.apply_changes(txn(seq('public', 'msg_t', 1, 0)));
SELECT raft.decode_changes('\x5800'::bytea);
SELECT raft.decode_changes('\x5300000000000000000000000004'::bytea);
-- a damaged message stops decoding with an error (each on a slot of its own)
SELECT 'init' FROM pg_create_logical_replication_slot('msg_bad', 'pg_raft');
SELECT 'bad' FROM pg_logical_emit_message(true, 'pg_raft', '\x58'::bytea);
DO $$
BEGIN
	PERFORM count(*) FROM pg_logical_slot_get_binary_changes('msg_bad', NULL, NULL);
EXCEPTION WHEN data_corrupted THEN
	RAISE NOTICE '%', regexp_replace(SQLERRM, '[0-9A-F]+/[0-9A-F]+', 'X/X');
END $$;
SELECT pg_drop_replication_slot('msg_bad');
SELECT 'init' FROM pg_create_logical_replication_slot('msg_bad', 'pg_raft');
SELECT 'bad' FROM pg_logical_emit_message(false, 'pg_raft', ddl(current_user, 'CREATE TABLE x (id int)'));
INSERT INTO msg_t VALUES (3);	-- flushes the WAL up to the message
DO $$
BEGIN
	PERFORM count(*) FROM pg_logical_slot_get_binary_changes('msg_bad', NULL, NULL);
EXCEPTION WHEN data_corrupted THEN
	RAISE NOTICE '%', regexp_replace(SQLERRM, '[0-9A-F]+/[0-9A-F]+', 'X/X');
END $$;
SELECT pg_drop_replication_slot('msg_bad');

SELECT pg_drop_replication_slot('msg');
DROP TABLE msg_t, msg_types, msg_fast;
DROP SCHEMA msg_schema CASCADE;
DROP ROLE msg_owner;
DROP SEQUENCE msg_s, msg_down;
DROP FUNCTION msg_show(), txn(bytea), seq(text, text, bigint, int), ddl(text, text),
	ddl_adding(text, text, text, text),
	rel(text, int, int), ins(text), txt(text), str(text), le(bigint, int);
DROP EXTENSION pg_raft;
