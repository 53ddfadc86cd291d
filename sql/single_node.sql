--
-- single_node: a one-node cluster on the regression instance.  create_cluster,
-- the views' shape and values, and every bad argument the SQL functions
-- must refuse with a clear error, leaving the state unchanged.
--
CREATE EXTENSION pg_raft;

-- Outside a cluster: no status row, and nothing to do.
SELECT count(*) AS status_rows FROM raft.status;
SELECT count(*) AS node_rows FROM raft.nodes;
SELECT value AS in_cluster FROM raft.metrics WHERE metric = 'pg_raft_in_cluster';
SELECT count(*) AS leader_samples FROM raft.metrics WHERE metric = 'pg_raft_leader';
SELECT raft.barrier('1s');
SELECT raft.remove_node('n1');
SELECT raft.transfer_leadership();

-- Bad arguments to create_cluster.
SELECT raft.create_cluster('', 'dbname=postgres');
SELECT raft.create_cluster('bad name!', 'dbname=postgres');
SELECT raft.create_cluster(repeat('n', 64), 'dbname=postgres');
SELECT raft.create_cluster('n1', 'nonsense=1');
SELECT raft.create_cluster('n1', repeat('x', 1100));
SELECT raft.create_cluster('n1', 'host=127.0.0.1 port=1 connect_timeout=2');
SELECT count(*) AS still_no_status FROM raft.status;

-- A conninfo that reaches this instance.
SELECT format('host=%s port=%s dbname=%s',
			  split_part(current_setting('unix_socket_directories'), ',', 1),
			  current_setting('port'), current_database()) AS conninfo \gset

SELECT raft.create_cluster('n1', :'conninfo');

-- The views: one row about this node, one row per member.
SELECT node_name, node_id, role, term >= 1 AS has_term, leader_name,
	   commit_index >= 1 AS committed, applied_index = commit_index AS applied,
	   last_index >= commit_index AS last_ok, first_index, voting,
	   length(cluster_id) AS cluster_id_length, leader_conninfo = :'conninfo' AS leader_conninfo_ok
  FROM raft.status;
SELECT raft.barrier() > 0 AS barrier_committed;
SELECT raft.barrier('10s') AS first_barrier \gset
SELECT raft.barrier('10s') AS last_barrier \gset
SELECT :last_barrier > :first_barrier AS barriers_advance;
-- The apply worker marks the last barrier applied a moment after it commits.
SELECT raft.wait_for_index(:last_barrier, '10s') AS barrier_applied;
SELECT node_name, node_id, conninfo = :'conninfo' AS conninfo_ok, voting,
	   is_leader, reachable, last_contact IS NOT NULL AS contacted,
	   match_index = (SELECT last_index FROM raft.status) AS matched,
	   lag_entries, lag_bytes, replay_lag IS NOT NULL AS has_replay_lag
  FROM raft.nodes;
-- raft.metrics: what /metrics shows, with the same names and values.
SELECT m.metric, m.value
  FROM raft.metrics m
 WHERE m.member IS NULL AND m.metric IN ('pg_raft_in_cluster', 'pg_raft_leader',
		'pg_raft_voter', 'pg_raft_leader_known', 'pg_raft_members', 'pg_raft_elections_won_total')
 ORDER BY m.metric;
SELECT (SELECT value FROM raft.metrics WHERE metric = 'pg_raft_term') =
	   (SELECT term FROM raft.status) AS term_matches;
SELECT member, value AS reachable FROM raft.metrics WHERE metric = 'pg_raft_member_reachable';
-- Every histogram: buckets that never go down, the last one (+Inf) equal to
-- the count, and log syncs counted.
SELECT h.metric, count(*) AS buckets,
	   bool_and(b.value >= coalesce(b.before, 0)) AS cumulative,
	   max(b.value) FILTER (WHERE b.le = 'Infinity') =
	   (SELECT value FROM raft.metrics WHERE metric = h.metric || '_count') AS inf_is_count
  FROM (VALUES ('pg_raft_log_sync_seconds'), ('pg_raft_commit_seconds')) h(metric),
	   LATERAL (SELECT le, value, lag(value) OVER (ORDER BY le) AS before
				  FROM raft.metrics WHERE metric = h.metric || '_bucket') b
 GROUP BY h.metric ORDER BY h.metric;
SELECT value > 0 AS log_synced FROM raft.metrics WHERE metric = 'pg_raft_log_sync_seconds_count';
SELECT DISTINCT type FROM raft.metrics ORDER BY type;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'raft.status'::regclass AND attnum > 0
 ORDER BY attnum;
SELECT attname, format_type(atttypid, atttypmod)
  FROM pg_attribute WHERE attrelid = 'raft.nodes'::regclass AND attnum > 0
 ORDER BY attnum;

-- Refusals on a member.
SELECT raft.create_cluster('n1', :'conninfo');
SELECT raft.join_cluster('n2', :'conninfo', :'conninfo');
SELECT raft.add_node('n1', :'conninfo');
SELECT raft.add_node('n2', 'nonsense=1');
SELECT raft.remove_node('nope');
SELECT raft.remove_node('n1');
SELECT raft.transfer_leadership('nope');
SELECT raft.transfer_leadership('n1');
SELECT raft.transfer_leadership();
SELECT raft.barrier('0s');
SELECT raft.barrier('-1s');
SELECT raft.barrier(NULL);

-- raft.deliver refuses whatever is not a sound frame from a member.
SELECT raft.deliver(''::bytea);
SELECT raft.deliver(decode(repeat('00', 100), 'hex'));
SELECT raft.deliver(decode('5246524d' || repeat('00', 96), 'hex'));
SELECT raft.deliver(decode('5246524d03000000' || repeat('00', 92), 'hex'));
SELECT raft.deliver(decode('5246524d02000000' || repeat('00', 92), 'hex'));
SELECT raft.deliver(decode('5246524d01000000' || repeat('00', 70000000), 'hex'));

-- Only raft_peer members may deliver.
CREATE ROLE raft_outsider;
SET ROLE raft_outsider;
SELECT raft.deliver('\x00'::bytea);
-- ... and only they and the members of pg_monitor read the views.
SELECT count(*) FROM raft.metrics;
RESET ROLE;
CREATE ROLE raft_monitor IN ROLE pg_monitor;
SET ROLE raft_monitor;
SELECT count(*) AS status_rows FROM raft.status;
SELECT count(*) AS node_rows FROM raft.nodes;
SELECT count(*) > 0 AS has_metrics FROM raft.metrics;
RESET ROLE;
DROP ROLE raft_monitor;
SET ROLE raft_outsider;
SELECT raft.create_cluster('n2', 'dbname=postgres');
SELECT raft.barrier();
SELECT count(*) FROM raft.status;
RESET ROLE;
DROP ROLE raft_outsider;

-- raft.wait_for_index: read-your-writes.
SELECT raft.barrier() AS idx \gset
SELECT raft.wait_for_index(:idx, '1s') AS reached;
SELECT raft.wait_for_index(:idx + 1000000, '200ms') AS reached_far_ahead;
SELECT raft.wait_for_index(-1, '1s');
SELECT raft.wait_for_index(1, '0s');

-- raft.table_checksum: independent of row order and of output settings,
-- sensitive to every value and to duplicated rows.
-- (a column named r, like the query's alias, must not confuse it)
CREATE TABLE sum_a (id int, t timestamptz, f float8, b bytea, r text);
CREATE TABLE sum_b (id int, t timestamptz, f float8, b bytea, r text);
INSERT INTO sum_a VALUES (1, '2026-01-01 00:00:00+00', 0.1, '\x00', 'r'),
						 (2, NULL, 1e100, '\xff', NULL), (3, now(), -0.0, NULL, '');
INSERT INTO sum_b SELECT * FROM sum_a ORDER BY id DESC;
SELECT raft.table_checksum('sum_a') = raft.table_checksum('sum_b') AS same_rows_same_sum;
SET TimeZone = 'Asia/Tokyo';
SET extra_float_digits = -3;
SELECT raft.table_checksum('sum_a') = raft.table_checksum('sum_b') AS settings_do_not_matter;
RESET TimeZone;
RESET extra_float_digits;
SHOW extra_float_digits;
UPDATE sum_b SET f = 0.1000000001 WHERE id = 1;
SELECT raft.table_checksum('sum_a') = raft.table_checksum('sum_b') AS one_value_differs;
UPDATE sum_b SET f = 0.1 WHERE id = 1;
INSERT INTO sum_a SELECT * FROM sum_a WHERE id = 2;
INSERT INTO sum_b SELECT * FROM sum_b WHERE id = 3;
SELECT raft.table_checksum('sum_a') = raft.table_checksum('sum_b') AS duplicates_count;
SELECT length(raft.table_checksum('sum_a')) AS hex_length;
TRUNCATE sum_a;
SELECT raft.table_checksum('sum_a') AS empty_table;
CREATE VIEW sum_view AS SELECT 1 AS x;
SELECT raft.table_checksum('sum_view');
SELECT raft.table_checksum(0);
CREATE ROLE raft_reader;
SET ROLE raft_reader;
SELECT raft.table_checksum('sum_b');
RESET ROLE;
DROP ROLE raft_reader;
DROP VIEW sum_view;
DROP TABLE sum_a, sum_b;

-- Nothing above changed the cluster.  Every write above went through
-- the raft log (synchronous mode), and the apply worker went past it.
SELECT node_name, role, voting, writable FROM raft.status;
SELECT raft.wait_for_index(commit_index, '10s') AS applied_everything FROM raft.status;
SELECT count(*) AS members FROM raft.nodes;
