--
-- output_plugin_streaming: with the option "streaming", the pg_raft output
-- plugin sends a transaction larger than logical_decoding_work_mem in
-- blocks while it runs (STREAM START ... STREAM STOP), marks which
-- subtransaction each change belongs to, and ends it with STREAM COMMIT or
-- STREAM ABORT.  A follower that keeps every block and drops what an abort
-- names ends up with exactly the committed rows: the query below does what
-- it would.
--
CREATE EXTENSION pg_raft;
CREATE TABLE big (id int PRIMARY KEY, pad text);
SELECT 'init' FROM pg_create_logical_replication_slot('dec_stream', 'pg_raft');

-- The decoded stream, one numbered line per message (a temporary table:
-- the slot does not decode its own rows).
CREATE TEMP TABLE decoded (n bigint, line text);
CREATE FUNCTION decode_slot(streaming text) RETURNS void LANGUAGE sql AS $$
	DELETE FROM decoded;
	INSERT INTO decoded
	SELECT d.n, d.line
	  FROM raft.decode_changes((SELECT string_agg(data, '' ORDER BY n)
								  FROM pg_logical_slot_get_binary_changes('dec_stream', NULL, NULL,
																		  'streaming', streaming)
									   WITH ORDINALITY AS c(lsn, xid, data, n)))
		   WITH ORDINALITY AS d(line, n);
$$;

-- What a follower would keep: an insert of a streamed block belongs to the
-- subtransaction named last before it; those an abort names are dropped.
-- An insert after BEGIN belongs to a transaction that came whole.
CREATE TEMP VIEW kept_inserts AS
WITH marked AS (
	SELECT n, line,
		   max(CASE WHEN line LIKE 'SUBTRANSACTION %' OR line = 'BEGIN' THEN n END)
			   OVER (ORDER BY n) AS mark_n
	  FROM decoded),
tagged AS (
	SELECT m.line,
		   CASE WHEN s.line = 'BEGIN' THEN 'whole'
				ELSE substring(s.line FROM 'SUBTRANSACTION (x[0-9]+)') END AS sub
	  FROM marked m LEFT JOIN decoded s ON s.n = m.mark_n
	 WHERE m.line LIKE 'INSERT %')
SELECT line FROM tagged
 WHERE sub IS NOT NULL
   AND sub NOT IN (SELECT substring(line FROM 'SUBTRANSACTION (x[0-9]+)') FROM decoded
					WHERE line LIKE 'STREAM ABORT % SUBTRANSACTION %')
   AND sub NOT IN (SELECT substring(line FROM '^STREAM ABORT (x[0-9]+)$') FROM decoded
					WHERE line ~ '^STREAM ABORT x[0-9]+$');

-- The stream's shape: its kinds of lines, how many of each.
CREATE TEMP VIEW shape AS
SELECT regexp_replace(line, '^(STREAM [A-Z]+|SUBTRANSACTION|[A-Z]+).*$', '\1') AS kind,
	   count(*) AS lines
  FROM decoded GROUP BY 1 ORDER BY 1;

SET logical_decoding_work_mem = '64kB';

-- A large transaction with a subtransaction rolled back in the middle.
BEGIN;
INSERT INTO big SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;
SAVEPOINT s;
INSERT INTO big SELECT g, repeat('y', 100) FROM generate_series(2001, 3000) g;
ROLLBACK TO SAVEPOINT s;
INSERT INTO big SELECT g, repeat('z', 100) FROM generate_series(3001, 3500) g;
COMMIT;
SELECT decode_slot('on');
SELECT line FROM decoded WHERE n = 1;
SELECT line FROM decoded WHERE n = 2;
SELECT line FROM decoded WHERE n = (SELECT max(n) FROM decoded);
SELECT (SELECT count(*) FROM decoded WHERE line LIKE 'STREAM START x1%') =
	   (SELECT count(*) FROM decoded WHERE line = 'STREAM STOP') AS blocks_closed,
	   (SELECT count(*) FROM decoded WHERE line LIKE 'STREAM START x1%') > 1 AS several_blocks,
	   (SELECT count(*) FROM decoded WHERE line = 'STREAM START x1 FIRST') AS first_blocks,
	   (SELECT count(*) FROM decoded WHERE line LIKE 'STREAM ABORT x1 SUBTRANSACTION x%') AS subtransactions_aborted;
-- every row committed, and only those
SELECT count(*) AS kept, count(*) FILTER (WHERE line LIKE '%''z%') AS after_rollback,
	   count(*) FILTER (WHERE line LIKE '%''y%') AS rolled_back
  FROM kept_inserts;
SELECT count(*) AS rows_committed FROM big;

-- Two large transactions at once, from two other sessions, decoded while
-- they run (from the WAL flushed so far): both come in blocks.  Then the
-- second commits and the first rolls back.  Decoding starts again from the
-- slot's position: PostgreSQL sends the second whole at its commit (its
-- changes all lie before that position, where it streams nothing), and
-- nothing of the first: PostgreSQL sends a stream abort only for a
-- transaction it streamed in the same decoding.
CREATE EXTENSION dblink;
SELECT format('dbname=%s host=%s port=%s', current_database(),
			  split_part(current_setting('unix_socket_directories'), ',', 1),
			  current_setting('port')) AS here \gset
SELECT dblink_connect('a', :'here'), dblink_connect('b', :'here');
SELECT dblink_exec('a', 'BEGIN'), dblink_exec('b', 'BEGIN');
SELECT dblink_exec('a', 'INSERT INTO big SELECT g, repeat(''a'', 100) FROM generate_series(5001, 7000) g');
SELECT dblink_exec('b', 'INSERT INTO big SELECT g, repeat(''b'', 100) FROM generate_series(7001, 9000) g');
-- decoding reads flushed WAL only
SELECT pg_switch_wal() IS NOT NULL AS flushed;
SELECT decode_slot('on');
SELECT line FROM decoded WHERE line LIKE 'STREAM START % FIRST' ORDER BY n;
SELECT * FROM shape WHERE kind IN ('BEGIN', 'COMMIT', 'STREAM ABORT', 'STREAM COMMIT');
SELECT (SELECT lines FROM shape WHERE kind = 'STREAM START') =
	   (SELECT lines FROM shape WHERE kind = 'STREAM STOP') AS blocks_closed;
SELECT count(*) > 0 AS kept_so_far FROM kept_inserts;
SELECT dblink_exec('b', 'COMMIT');
SELECT dblink_exec('a', 'ROLLBACK');
SELECT pg_switch_wal() IS NOT NULL AS flushed;
SELECT decode_slot('on');
SELECT * FROM shape WHERE kind IN ('BEGIN', 'COMMIT', 'STREAM ABORT', 'STREAM COMMIT');
-- the committed one's rows, and only those
SELECT count(*) AS kept, count(*) FILTER (WHERE line LIKE '%''b%') AS committed,
	   count(*) FILTER (WHERE line LIKE '%''a%') AS rolled_back
  FROM kept_inserts;
SELECT dblink_disconnect('a'), dblink_disconnect('b');
DROP EXTENSION dblink;

-- Without the option, the same transaction comes whole at its commit.
BEGIN;
INSERT INTO big SELECT g, repeat('v', 100) FROM generate_series(10001, 12000) g;
COMMIT;
SELECT decode_slot('off');
SELECT * FROM shape;

-- A value the option does not take.
SELECT * FROM pg_logical_slot_get_binary_changes('dec_stream', NULL, NULL, 'streaming', 'maybe');

RESET logical_decoding_work_mem;
SELECT pg_drop_replication_slot('dec_stream');
DROP FUNCTION decode_slot(text);
DROP VIEW kept_inserts, shape;
DROP TABLE big;
DROP EXTENSION pg_raft;
