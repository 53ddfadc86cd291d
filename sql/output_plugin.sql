--
-- output_plugin: the pg_raft output plugin's encoding of committed transactions,
-- decoded back to text by raft.decode_changes().  Every change kind, every
-- replica identity, NULLs, unchanged TOASTed values, TRUNCATE with its
-- options, generated and dropped columns, and the errors.
--
CREATE EXTENSION pg_raft;
CREATE TABLE dec_pk (id int PRIMARY KEY, label text, amount numeric(10,2),
					 seen timestamptz, tags text[], doc jsonb);
CREATE TABLE dec_full (a int, b text);
ALTER TABLE dec_full REPLICA IDENTITY FULL;
CREATE TABLE dec_nokey (a int, b text);
CREATE TABLE dec_toast (id int PRIMARY KEY, big text, small int);
ALTER TABLE dec_toast ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE dec_gen (id int PRIMARY KEY, x int,
					  twice int GENERATED ALWAYS AS (x * 2) STORED, gone int);
ALTER TABLE dec_gen DROP COLUMN gone;

SELECT 'init' FROM pg_create_logical_replication_slot('dec', 'pg_raft');

CREATE FUNCTION dec_show() RETURNS SETOF text LANGUAGE sql AS $$
	SELECT raft.decode_changes(string_agg(data, '' ORDER BY n))
	  FROM pg_logical_slot_get_binary_changes('dec', NULL, NULL)
		   WITH ORDINALITY AS c(lsn, xid, data, n)
$$;

-- Inserts of many types, with NULLs.
INSERT INTO dec_pk VALUES
	(1, 'one', 12.50, '2026-01-02 03:04:05+00', '{a,b}', '{"k": [1, 2]}'),
	(2, NULL, NULL, NULL, NULL, NULL);
SELECT * FROM dec_show();

-- Updates and deletes send the key (DEFAULT) or the whole old row (FULL).
UPDATE dec_pk SET label = 'uno' WHERE id = 1;
UPDATE dec_pk SET id = 3 WHERE id = 2;
DELETE FROM dec_pk WHERE id = 3;
INSERT INTO dec_full VALUES (1, 'x');
UPDATE dec_full SET b = 'y';
DELETE FROM dec_full;
SELECT * FROM dec_show();

-- Several statements in one transaction describe each table once.
BEGIN;
INSERT INTO dec_pk VALUES (10, 'ten', 1, NULL, NULL, NULL);
INSERT INTO dec_full VALUES (10, 'ten');
INSERT INTO dec_pk VALUES (11, 'eleven', 1, NULL, NULL, NULL);
COMMIT;
SELECT * FROM dec_show();

-- A table without a replica identity (the leader refuses its updates and
-- deletes): read with SQL, a delete says that it does not know its row;
-- capture, through a walsender, stops at it with an error instead.
INSERT INTO dec_nokey VALUES (1, 'a');
UPDATE dec_nokey SET b = 'b';
DELETE FROM dec_nokey;
SELECT * FROM dec_show();

-- An UPDATE that does not touch a TOASTed value leaves it out.
INSERT INTO dec_toast VALUES (1, repeat('x', 10000), 1);
UPDATE dec_toast SET small = 2;
SELECT replace(line, repeat('x', 10000), '<10000 x>') FROM dec_show() AS line;

-- Generated and dropped columns are not replicated.
INSERT INTO dec_gen (id, x) VALUES (1, 21);
SELECT * FROM dec_show();

-- TRUNCATE, with its options.
TRUNCATE dec_full;
TRUNCATE dec_pk, dec_toast RESTART IDENTITY CASCADE;
SELECT * FROM dec_show();

-- Rolled-back transactions produce nothing.
BEGIN;
INSERT INTO dec_pk VALUES (99, 'never', 0, NULL, NULL, NULL);
ROLLBACK;
SELECT count(*) AS nothing FROM dec_show();

-- Errors: options the plugin does not know, and broken streams.
SELECT * FROM pg_logical_slot_get_binary_changes('dec', NULL, NULL, 'foo', 'bar');
SELECT raft.decode_changes('\x56'::bytea);
SELECT raft.decode_changes('\x5602'::bytea);
SELECT raft.decode_changes('\x5a'::bytea);
SELECT raft.decode_changes('\x4900000001'::bytea);
SELECT raft.decode_changes('\x49010000000100'::bytea);
SELECT raft.decode_changes(''::bytea);

SELECT pg_drop_replication_slot('dec');
DROP FUNCTION dec_show();
DROP TABLE dec_pk, dec_full, dec_nokey, dec_toast, dec_gen;
DROP EXTENSION pg_raft;
