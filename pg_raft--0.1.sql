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
