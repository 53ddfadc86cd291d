--
-- create_extension: the extension installs into a server that preloads it
-- (test/regress.conf), lives in schema "raft", and reports its version.
--
SHOW shared_preload_libraries;

-- The settings, with their defaults (test/regress.conf sets
-- raft.local_databases).  Large transactions are decoded by a worker of
-- pg_raft's own once they outgrow the walsender (raft.decoding = auto).
SELECT name, setting, unit, context FROM pg_settings
 WHERE name LIKE 'raft.%' ORDER BY name;

CREATE EXTENSION pg_raft;

SELECT raft.version();

-- The library and the installed SQL objects agree on the version.
SELECT raft.version() = extversion AS versions_match
  FROM pg_extension WHERE extname = 'pg_raft';

-- What \dx shows, without its description column.
SELECT e.extname, e.extversion, n.nspname AS schema, e.extrelocatable
  FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
 WHERE e.extname = 'pg_raft';

-- Every function of the extension is in schema raft.
SELECT p.oid::regprocedure AS function
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.classid = 'pg_proc'::regclass
   AND d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_raft')
   AND d.deptype = 'e'
 ORDER BY p.oid::regprocedure::text;

-- The "raft." settings prefix is reserved: a misspelt setting is an error.
SET raft.no_such_setting = 'on';

-- Installing twice is an error.
CREATE EXTENSION pg_raft;

-- Dropping removes the functions.  The schema stays: CREATE EXTENSION made
-- it from the control file before the extension existed, so it is not a
-- member of the extension.
DROP EXTENSION pg_raft;
SELECT to_regprocedure('raft.version()') IS NULL AS version_gone;
SELECT count(*) AS raft_schemas FROM pg_namespace WHERE nspname = 'raft';
