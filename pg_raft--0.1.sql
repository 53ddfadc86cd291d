/* pg_raft--0.1.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pg_raft" to load this file. \quit

-- The extension's version, as compiled into the loaded library.
CREATE FUNCTION raft.version()
RETURNS text
AS 'MODULE_PATHNAME', 'pg_raft_version'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

COMMENT ON FUNCTION raft.version() IS
'version of the pg_raft library loaded in this server';

-- Members of raft_peer may deliver Raft messages to this node: the other
-- members' raft workers connect as such a role (see docs/operations.md).
DO $$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'raft_peer') THEN
		CREATE ROLE raft_peer NOLOGIN;
	END IF;
END
$$;
-- Each function and view below says who may use it.
GRANT USAGE ON SCHEMA raft TO PUBLIC;

-- Receives one framed Raft message from a peer's raft worker.
CREATE FUNCTION raft.deliver(message bytea)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_raft_deliver'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.deliver(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION raft.deliver(bytea) TO raft_peer;

CREATE FUNCTION raft.create_cluster(node_name text, conninfo text)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_raft_create_cluster'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.create_cluster(text, text) FROM PUBLIC;
COMMENT ON FUNCTION raft.create_cluster(text, text) IS
'bootstrap a one-node raft cluster on this instance; conninfo is how the other members will reach it';

CREATE FUNCTION raft.join_cluster(node_name text, conninfo text, peer_conninfo text,
								  copy_data boolean DEFAULT true)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_raft_join_cluster'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.join_cluster(text, text, text, boolean) FROM PUBLIC;
COMMENT ON FUNCTION raft.join_cluster(text, text, text, boolean) IS
'join the cluster that peer_conninfo belongs to: enter as a learner, copy the leader''s data (onto an empty database, unless copy_data is false), catch up, become a voter';

-- Called by join_cluster() on the leader, through libpq.
CREATE FUNCTION raft.add_node(node_name text, conninfo text,
							  OUT cluster_id text, OUT node_id integer,
							  OUT leader_id integer, OUT leader_name text)
RETURNS record
AS 'MODULE_PATHNAME', 'pg_raft_add_node'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.add_node(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION raft.add_node(text, text) TO raft_peer;

CREATE FUNCTION raft.remove_node(node_name text)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_raft_remove_node'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.remove_node(text) FROM PUBLIC;
COMMENT ON FUNCTION raft.remove_node(text) IS
'remove a member from the cluster (run on the leader)';

CREATE FUNCTION raft.transfer_leadership(node_name text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'pg_raft_transfer_leadership'
LANGUAGE C CALLED ON NULL INPUT VOLATILE;
REVOKE ALL ON FUNCTION raft.transfer_leadership(text) FROM PUBLIC;
COMMENT ON FUNCTION raft.transfer_leadership(text) IS
'hand leadership to node_name, or to the most up-to-date voter when null; returns the new leader';

CREATE FUNCTION raft.barrier(timeout interval DEFAULT '5s')
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_raft_barrier'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.barrier(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION raft.barrier(interval) TO raft_peer;
COMMENT ON FUNCTION raft.barrier(interval) IS
'commit a no-op through the leader and return its index: proves a working majority';

CREATE FUNCTION raft.status_info(
	OUT node_name text, OUT node_id integer, OUT role text, OUT term bigint,
	OUT leader_name text, OUT commit_index bigint, OUT applied_index bigint,
	OUT last_index bigint, OUT first_index bigint, OUT voting boolean,
	OUT log_bytes bigint, OUT cluster_id text, OUT leader_conninfo text,
	OUT worker_pid integer, OUT writable boolean,
	OUT diverged_transactions bigint, OUT diverged_file text,
	OUT resyncing boolean, OUT serves_copies boolean,
	OUT apply_failures integer, OUT apply_error text,
	OUT apply_error_since timestamptz, OUT not_writable_reason text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_raft_status_info'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW raft.status AS SELECT * FROM raft.status_info();
COMMENT ON VIEW raft.status IS
'this node''s view of the raft cluster (no row when it is not a member)';

CREATE FUNCTION raft.nodes_info(
	OUT node_name text, OUT node_id integer, OUT conninfo text,
	OUT voting boolean, OUT is_leader boolean, OUT reachable boolean,
	OUT last_contact timestamptz, OUT match_index bigint,
	OUT applied_index bigint, OUT lag_entries bigint, OUT lag_bytes bigint,
	OUT replay_lag interval)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_raft_nodes_info'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW raft.nodes AS SELECT * FROM raft.nodes_info();
COMMENT ON VIEW raft.nodes IS
'one row per member; match, lag and replay_lag are measured by the leader';

CREATE FUNCTION raft.metrics_info(
	OUT metric text, OUT member text, OUT le double precision,
	OUT value double precision, OUT type text, OUT help text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'pg_raft_metrics_info'
LANGUAGE C STRICT VOLATILE;

CREATE VIEW raft.metrics AS SELECT * FROM raft.metrics_info();
COMMENT ON VIEW raft.metrics IS
'one row per sample of the Prometheus metrics that the health API''s /metrics serves, with the same names';

REVOKE ALL ON FUNCTION raft.status_info() FROM PUBLIC;
REVOKE ALL ON FUNCTION raft.nodes_info() FROM PUBLIC;
REVOKE ALL ON FUNCTION raft.metrics_info() FROM PUBLIC;
-- a view's functions run with the privileges of whoever reads the view
GRANT EXECUTE ON FUNCTION raft.status_info(), raft.nodes_info(), raft.metrics_info()
	TO raft_peer, pg_monitor;
GRANT SELECT ON raft.status, raft.nodes, raft.metrics TO raft_peer, pg_monitor;

-- Renders a stream of the pg_raft output plugin (decoder.c) as text, one
-- line per message; for example
--   SELECT raft.decode_changes(string_agg(data, '' ORDER BY n))
--     FROM pg_logical_slot_get_binary_changes('slot', NULL, NULL)
--          WITH ORDINALITY AS c(lsn, xid, data, n);
CREATE FUNCTION raft.decode_changes(stream bytea)
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'pg_raft_decode_changes'
LANGUAGE C STRICT IMMUTABLE;

CREATE FUNCTION raft.wait_for_index(index bigint, timeout interval DEFAULT '5s')
RETURNS boolean
AS 'MODULE_PATHNAME', 'pg_raft_wait_for_index'
LANGUAGE C STRICT VOLATILE;
COMMENT ON FUNCTION raft.wait_for_index(bigint, interval) IS
'wait until this node has applied index; false if the timeout passes first (read-your-writes on a follower)';

CREATE FUNCTION raft.table_checksum(tbl regclass)
RETURNS text
AS 'MODULE_PATHNAME', 'pg_raft_table_checksum'
LANGUAGE C STRICT STABLE;
COMMENT ON FUNCTION raft.table_checksum(regclass) IS
'order-independent SHA-256 digest of a table''s rows, equal on members that hold the same data';

-- Applies a stream of the output plugin in the current transaction.
CREATE FUNCTION raft.apply_changes(stream bytea)
RETURNS void
AS 'MODULE_PATHNAME', 'pg_raft_apply_changes'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.apply_changes(bytea) FROM PUBLIC;
COMMENT ON FUNCTION raft.apply_changes(bytea) IS
'apply a change stream of the pg_raft output plugin to local tables (superusers)';

-- Stand-ins for nextval() and setval(): on a member, the planner calls
-- them instead, so that sequences never go back after a failover.
CREATE FUNCTION raft.nextval(regclass)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_raft_nextval'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION raft.setval(regclass, bigint)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_raft_setval'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION raft.setval(regclass, bigint, boolean)
RETURNS bigint
AS 'MODULE_PATHNAME', 'pg_raft_setval'
LANGUAGE C STRICT VOLATILE PARALLEL UNSAFE;

CREATE FUNCTION raft.recopy()
RETURNS void
AS 'MODULE_PATHNAME', 'pg_raft_recopy'
LANGUAGE C STRICT VOLATILE;
REVOKE ALL ON FUNCTION raft.recopy() FROM PUBLIC;
COMMENT ON FUNCTION raft.recopy() IS
'empty raft.database on this member and copy the leader''s schema and data again';
