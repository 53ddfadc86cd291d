/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  Schema changes travel through the Raft log, in order with the rows.
 *
 * NOTES
 *	  On the leader, a ProcessUtility hook sees every utility statement run
 *	  in raft.database: at top level, inside functions and DO blocks, each
 *	  statement of a multi-statement string on its own.  A schema change
 *	  is written to the WAL as a transactional logical message (prefix
 *	  RAFT_MESSAGE_PREFIX) holding a 'X' message of changes/changes.h:
 *	  the statement's text, the role that ran it, and the settings that
 *	  change how it parses or folds its constants.  The output plugin
 *	  (decoder.c) passes it on where it stands among the transaction's
 *	  rows, and it vanishes with the transaction if that aborts.
 *
 *	  What is a schema change: every utility statement but those that act
 *	  on this instance only or travel otherwise (transaction control, DO
 *	  and CALL, whose statements travel on their own, COPY and TRUNCATE,
 *	  which travel as rows, cursors, prepared statements, SET, LISTEN and
 *	  NOTIFY, LOCK, VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, ALTER
 *	  SYSTEM, databases), and statements on temporary objects.  Statements
 *	  that PostgreSQL runs on behalf of another (the parts of CREATE
 *	  SCHEMA, the sequence of a serial column, an extension's script) are
 *	  not shipped: the statement that caused them is.
 *
 *	  The message is written once the statement succeeded, so that it is
 *	  known whether it created a temporary object, and so that CREATE
 *	  INDEX CONCURRENTLY, which commits on its way, writes it in its last
 *	  transaction, once the index is valid.  CREATE TABLE AS and SELECT
 *	  INTO write it before they run, because the rows they insert travel
 *	  as rows and must find the table there.
 *
 *	  Rows written by CREATE EXTENSION's script (an extension's
 *	  configuration tables) are written under the origin that is never
 *	  replicated: the followers' own CREATE EXTENSION writes them there.
 *
 *	  Refused on the leader, with an error saying what to do instead, are
 *	  the forms whose result would differ on the followers: a column added
 *	  with a volatile default (or an identity) to a table that has rows, a
 *	  column type changed USING an expression that is not immutable, ALTER
 *	  TABLE SET
 *	  LOGGED of a table that has rows (an unlogged table's rows never
 *	  travel), DETACH PARTITION CONCURRENTLY (its second transaction adds
 *	  a constraint), CREATE TABLE AS with parameters or AS EXECUTE, tablespaces
 *	  (a directory on each instance) and subscriptions (each member would
 *	  subscribe on its own).
 *	  Creating or dropping a large object is refused on every member: it
 *	  lives in catalogs, which the log does not carry (ddl_object_access).
 *
 *	  A password given to CREATE ROLE or ALTER ROLE travels as the hash
 *	  that pg_authid stores, never in clear: the statement's password
 *	  literal is replaced before the message is written.
 *
 *	  A column added with a default that is not volatile gets, in the rows
 *	  already there, the value the leader computed once (attmissingval):
 *	  it travels with the statement, so that a default such as now() gives
 *	  the same value on every member.
 *
 *	  On the followers, the apply worker runs the statement
 *	  (RaftDdlReplay) inside the transaction it applies, as the same role,
 *	  with the same settings and check_function_bodies off, and restores
 *	  them afterwards.  CREATE TABLE AS and SELECT INTO run WITH NO DATA
 *	  (the rows follow as inserts); CONCURRENTLY is dropped from CREATE
 *	  INDEX and DROP INDEX, which cannot run concurrently inside a
 *	  transaction and need not: nothing else writes on a follower.  Event triggers do not fire there
 *	  (session_replication_role is replica), as in PostgreSQL's own
 *	  logical replication; the statements they run on the leader travel on
 *	  their own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/heap.h"
#include "catalog/namespace.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_largeobject_d.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/gramparse.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "replication/message.h"
#include "replication/origin.h"
#include "rewrite/rewriteHandler.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "changes/changes.h"
#include "pg_raft.h"

/*
 * The settings a schema change runs with on the followers: those that
 * decide which objects its names resolve to, how its literals are read
 * and folded, and where and how what it creates is stored.
 */
static const char *const ddl_settings[] = {
	"search_path",
	"DateStyle",
	"IntervalStyle",
	"TimeZone",
	"timezone_abbreviations",
	"standard_conforming_strings",
	"backslash_quote",
	"array_nulls",
	"transform_null_equals",
	"xmloption",
	"xmlbinary",
	"default_tablespace",
	"default_table_access_method",
	"default_toast_compression",
};

#define DDL_NSETTINGS lengthof(ddl_settings)

static ProcessUtility_hook_type prev_process_utility = NULL;
static object_access_hook_type prev_object_access = NULL;

/* What becomes of a utility statement on the leader. */
typedef enum DdlAction
{
	DDL_LOCAL,					/* runs here only */
	DDL_SHIP_AFTER,				/* shipped once it succeeded */
	DDL_SHIP_BEFORE				/* shipped before it runs (CREATE TABLE AS) */
} DdlAction;

/* ----------------------------------------------------------------
 * The leader: which statements travel
 * ----------------------------------------------------------------
 */

static void
refuse(const char *what, const char *detail, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("pg_raft cannot replicate %s", what),
			 errdetail_internal("%s", detail),
			 hint ? errhint("%s", hint) : 0));
}

/* Whether rv names a temporary relation (or will create one). */
static bool
relation_is_temp(const RangeVar *rv)
{
	Oid			relid;

	if (rv == NULL)
		return false;
	if (rv->relpersistence == RELPERSISTENCE_TEMP)
		return true;
	if (rv->schemaname != NULL && strcmp(rv->schemaname, "pg_temp") == 0)
		return true;
	relid = RangeVarGetRelid(rv, NoLock, true);
	return OidIsValid(relid) && get_rel_persistence(relid) == RELPERSISTENCE_TEMP;
}

/*
 * Whether an object named by a qualified name (in DROP, COMMENT) is a
 * temporary relation.
 */
static bool
named_relation_is_temp(ObjectType type, Node *object)
{
	if (type != OBJECT_TABLE && type != OBJECT_INDEX && type != OBJECT_VIEW &&
		type != OBJECT_SEQUENCE && type != OBJECT_MATVIEW &&
		type != OBJECT_FOREIGN_TABLE)
		return false;
	return relation_is_temp(makeRangeVarFromNameList(castNode(List, object)));
}

/*
 * The relation a statement on an existing relation acts on, for the
 * statements that may act on temporary ones; NULL for the others.
 */
static RangeVar *
target_relation(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_AlterTableStmt:
			return ((AlterTableStmt *) stmt)->relation;
		case T_IndexStmt:
			return ((IndexStmt *) stmt)->relation;
		case T_RenameStmt:
			return ((RenameStmt *) stmt)->relation;
		case T_AlterObjectSchemaStmt:
			return ((AlterObjectSchemaStmt *) stmt)->relation;
		case T_CreateTrigStmt:
			return ((CreateTrigStmt *) stmt)->relation;
		case T_RuleStmt:
			return ((RuleStmt *) stmt)->relation;
		case T_CreatePolicyStmt:
			return ((CreatePolicyStmt *) stmt)->table;
		case T_AlterPolicyStmt:
			return ((AlterPolicyStmt *) stmt)->table;
		case T_AlterSeqStmt:
			return ((AlterSeqStmt *) stmt)->sequence;
		case T_CreateStmt:
			return ((CreateStmt *) stmt)->relation;
		case T_CreateSeqStmt:
			return ((CreateSeqStmt *) stmt)->sequence;
		case T_ViewStmt:
			return ((ViewStmt *) stmt)->view;
		default:
			return NULL;
	}
}

/* Whether a statement acts on temporary objects only: they stay here. */
static bool
on_temporary_objects(Node *stmt)
{
	ListCell   *lc;

	if (IsA(stmt, DropStmt))
	{
		DropStmt   *drop = (DropStmt *) stmt;
		int			temp = 0;

		foreach(lc, drop->objects)
			if (named_relation_is_temp(drop->removeType, lfirst(lc)))
				temp++;
		if (temp > 0 && temp < list_length(drop->objects))
			refuse("a DROP of temporary and permanent objects together",
				   "Temporary objects exist on this member only.",
				   "Drop the temporary objects in a statement of their own.");
		return temp > 0;
	}
	if (IsA(stmt, CreateTableAsStmt))
		return relation_is_temp(((CreateTableAsStmt *) stmt)->into->rel);
	if (IsA(stmt, GrantStmt) &&
		((GrantStmt *) stmt)->targtype == ACL_TARGET_OBJECT &&
		(((GrantStmt *) stmt)->objtype == OBJECT_TABLE ||
		 ((GrantStmt *) stmt)->objtype == OBJECT_SEQUENCE))
	{
		foreach(lc, ((GrantStmt *) stmt)->objects)
			if (relation_is_temp(lfirst_node(RangeVar, lc)))
				return true;
		return false;
	}
	if (IsA(stmt, CommentStmt))
		return named_relation_is_temp(((CommentStmt *) stmt)->objtype,
										((CommentStmt *) stmt)->object);
	return relation_is_temp(target_relation(stmt));
}

/* Whether a query tree refers to parameters ($1, PL/pgSQL variables). */
static bool
has_parameters_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXTERN)
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, has_parameters_walker, context, 0);
	return expression_tree_walker(node, has_parameters_walker, context);
}

static void
check_create_table_as(CreateTableAsStmt *stmt)
{
	Query	   *query = castNode(Query, stmt->query);

	if (query->commandType == CMD_UTILITY && IsA(query->utilityStmt, ExecuteStmt))
		refuse("CREATE TABLE AS EXECUTE",
			   "The other members do not have this session's prepared statements.",
			   "Write the query itself in CREATE TABLE AS.");
	if (has_parameters_walker((Node *) query, NULL))
		refuse("CREATE TABLE AS with parameters",
			   "The other members create the table from the statement's text, which has no values for its parameters or variables.",
			   "Create the table with CREATE TABLE, then fill it with INSERT ... SELECT.");
}

/* Whether a relation (with its partitions or children) holds a row. */
static bool
relation_has_rows(Oid relid)
{
	char	   *query;
	bool		found;

	query = psprintf("SELECT 1 FROM %s LIMIT 1",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));
	/* not read-only: a fresh snapshot sees the rows a rewrite just wrote */
	SPI_connect();
	if (SPI_execute(query, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read relation %u", relid);
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * Refuses, before it runs, an ALTER COLUMN TYPE whose USING expression is
 * not immutable, on a table that has rows: each member would compute its
 * own values (now() at its own time, say).
 */
static void
check_alter_table_before(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, AccessShareLock, true);
	ListCell   *lc;

	if (!OidIsValid(relid))
		return;					/* PostgreSQL says so itself */
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);

		if (cmd->subtype == AT_AlterColumnType &&
			((ColumnDef *) cmd->def)->raw_default != NULL)
		{
			Relation	rel = table_open(relid, AccessShareLock);
			ParseState *pstate = make_parsestate(NULL);
			ParseNamespaceItem *nsitem;
			Node	   *expr;

			nsitem = addRangeTableEntryForRelation(pstate, rel, AccessShareLock,
												   NULL, false, true);
			addNSItemToQuery(pstate, nsitem, false, true, true);
			expr = transformExpr(pstate,
								 copyObject(((ColumnDef *) cmd->def)->raw_default),
								 EXPR_KIND_ALTER_COL_TRANSFORM);
			table_close(rel, AccessShareLock);
			if (contain_mutable_functions(expr) && relation_has_rows(relid))
				refuse("a column type change with a USING expression that is not immutable",
					   "Each member would compute its own values for the table's rows.",
					   "Add a new column, fill it with UPDATE, then drop the old column and rename the new one.");
		}
		if (cmd->subtype == AT_DetachPartition &&
			((PartitionCmd *) cmd->def)->concurrent)
			refuse("DETACH PARTITION CONCURRENTLY",
				   "Its second transaction adds a constraint to the partition, which the other members could not add in the same order.",
				   "Detach the partition without CONCURRENTLY.");
		if (cmd->subtype == AT_SetLogged && relation_has_rows(relid))
			refuse("ALTER TABLE SET LOGGED of a table that has rows",
				   "The rows of an unlogged table never travel, so the other members' copies are empty.",
				   "Create a logged table and copy the rows with INSERT ... SELECT.");
	}
}

/*
 * Refuses, once it ran, a column added with a volatile default (or an
 * identity) to a table that has rows: each member would compute its own
 * values for the rows already there.
 */
static void
check_alter_table_after(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	ListCell   *lc;

	if (!OidIsValid(relid))
		return;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		AttrNumber	attnum;
		Relation	rel;
		Node	   *def;

		if (cmd->subtype != AT_AddColumn)
			continue;
		attnum = get_attnum(relid, ((ColumnDef *) cmd->def)->colname);
		if (attnum == InvalidAttrNumber)
			continue;
		rel = table_open(relid, NoLock);
		def = build_column_default(rel, attnum);
		table_close(rel, NoLock);
		if (def != NULL && contain_volatile_functions(def) &&
			relation_has_rows(relid))
			refuse("a column added with a volatile default to a table that has rows",
				   "Each member would compute its own values for the rows already there.",
				   "Add the column without a default, fill it with UPDATE, then set the default with ALTER COLUMN SET DEFAULT.");
	}
}

/*
 * The values that the columns an ALTER TABLE added hold in the rows that
 * were there (pg_attribute.attmissingval), in the table and in every
 * partition or child: a default that is not immutable (now(), say) was
 * computed here, once, and the followers must not compute their own.
 */
static List *
added_column_values(AlterTableStmt *stmt)
{
	Oid			relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	List	   *values = NIL;
	ListCell   *lc;

	if (!OidIsValid(relid))
		return NIL;
	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);
		char	   *colname;
		ListCell   *child;

		if (cmd->subtype != AT_AddColumn)
			continue;
		colname = ((ColumnDef *) cmd->def)->colname;
		foreach(child, find_all_inheritors(relid, NoLock, NULL))
		{
			Oid			childid = lfirst_oid(child);
			HeapTuple	tuple = SearchSysCacheAttName(childid, colname);
			Datum		datum;
			bool		isnull = true;

			if (!HeapTupleIsValid(tuple))
				continue;
			if (((Form_pg_attribute) GETSTRUCT(tuple))->atthasmissing)
				datum = SysCacheGetAttr(ATTNAME, tuple, Anum_pg_attribute_attmissingval,
										&isnull);
			if (!isnull)
			{
				chg_missing *v = palloc(sizeof(chg_missing));
				char	   *nspname = get_namespace_name(get_rel_namespace(childid));
				char	   *relname = get_rel_name(childid);
				char	   *text = OidOutputFunctionCall(F_ARRAY_OUT, datum);

				v->nspname = (chg_str) {nspname, strlen(nspname)};
				v->relname = (chg_str) {relname, strlen(relname)};
				v->column = (chg_str) {colname, strlen(colname)};
				v->value = (chg_text) {text, strlen(text)};
				values = lappend(values, v);
			}
			ReleaseSysCache(tuple);
		}
	}
	return values;
}

/* What becomes of statement stmt; refuses what cannot be replicated. */
static DdlAction
classify(Node *stmt)
{
	switch (nodeTag(stmt))
	{
			/* act on this instance, or travel otherwise */
		case T_TransactionStmt:
		case T_DoStmt:
		case T_CallStmt:
		case T_CopyStmt:
		case T_TruncateStmt:
		case T_VariableSetStmt:
		case T_VariableShowStmt:
		case T_DiscardStmt:
		case T_PrepareStmt:
		case T_ExecuteStmt:
		case T_DeallocateStmt:
		case T_DeclareCursorStmt:
		case T_ClosePortalStmt:
		case T_FetchStmt:
		case T_NotifyStmt:
		case T_ListenStmt:
		case T_UnlistenStmt:
		case T_LoadStmt:
		case T_LockStmt:
		case T_ConstraintsSetStmt:
		case T_CheckPointStmt:
		case T_VacuumStmt:
		case T_ClusterStmt:
		case T_ReindexStmt:
		case T_AlterSystemStmt:
		case T_CreatedbStmt:
		case T_DropdbStmt:
		case T_AlterDatabaseStmt:
		case T_AlterDatabaseSetStmt:
		case T_AlterDatabaseRefreshCollStmt:
		case T_DropSubscriptionStmt:
		case T_AlterSubscriptionStmt:
		case T_DropTableSpaceStmt:
		case T_AlterTableSpaceOptionsStmt:
			return DDL_LOCAL;
		case T_ExplainStmt:
			{
				Query	   *query = castNode(Query, ((ExplainStmt *) stmt)->query);

				if (query->commandType == CMD_UTILITY &&
					IsA(query->utilityStmt, CreateTableAsStmt))
					refuse("EXPLAIN of CREATE TABLE AS",
						   "EXPLAIN ANALYZE would create the table on this member only.",
						   "Run CREATE TABLE AS without EXPLAIN.");
				return DDL_LOCAL;
			}
		case T_CreateTableSpaceStmt:
			refuse("tablespaces",
				   "A tablespace is a directory of each instance.",
				   "Keep the tables of a pg_raft cluster in the default tablespace.");
			break;
		case T_CreateSubscriptionStmt:
			refuse("a subscription",
				   "A subscription is one instance's connection to a publisher: replayed on every member, each would subscribe on its own, and a new leader would not go on from where the old one stopped.",
				   "Load data with INSERT or COPY on the leader.  Rows that another tool replicates into the leader travel through the log.");
			break;
		case T_CreateTableAsStmt:
			check_create_table_as((CreateTableAsStmt *) stmt);
			return ((CreateTableAsStmt *) stmt)->objtype == OBJECT_TABLE ?
				DDL_SHIP_BEFORE : DDL_SHIP_AFTER;
		case T_AlterTableStmt:
			check_alter_table_before((AlterTableStmt *) stmt);
			return DDL_SHIP_AFTER;
		default:
			break;
	}
	return DDL_SHIP_AFTER;
}

/* ----------------------------------------------------------------
 * The leader: the message
 * ----------------------------------------------------------------
 */

/* The text of the one statement pstmt is, within the string it came in. */
static char *
statement_text(PlannedStmt *pstmt, const char *query_string)
{
	int			location = pstmt->stmt_location;
	int			len = pstmt->stmt_len;

	if (location < 0 || location > (int) strlen(query_string))
		location = 0;
	if (len <= 0)
		len = strlen(query_string + location);
	return pnstrdup(query_string + location, len);
}

/* The role a password clause of stmt (CREATE or ALTER ROLE) sets, if any. */
static Oid
role_given_password(Node *stmt)
{
	List	   *options;
	ListCell   *lc;
	bool		found = false;

	if (IsA(stmt, CreateRoleStmt))
		options = ((CreateRoleStmt *) stmt)->options;
	else if (IsA(stmt, AlterRoleStmt))
		options = ((AlterRoleStmt *) stmt)->options;
	else
		return InvalidOid;
	foreach(lc, options)
	{
		DefElem    *option = lfirst(lc);

		if (strcmp(option->defname, "password") == 0 && option->arg != NULL)
			found = true;
	}
	if (!found)
		return InvalidOid;
	if (IsA(stmt, CreateRoleStmt))
		return get_role_oid(((CreateRoleStmt *) stmt)->role, false);
	return get_rolespec_oid(((AlterRoleStmt *) stmt)->role, false);
}

/* The password pg_authid holds for a role (a hash), NULL if none. */
static char *
stored_password(Oid roleid)
{
	HeapTuple	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(roleid));
	Datum		datum;
	bool		isnull;
	char	   *password = NULL;

	if (!HeapTupleIsValid(tuple))
		return NULL;
	datum = SysCacheGetAttr(AUTHOID, tuple, Anum_pg_authid_rolpassword, &isnull);
	if (!isnull)
		password = TextDatumGetCString(datum);
	ReleaseSysCache(tuple);
	return password;
}

/*
 * Replaces the string literal after PASSWORD in a role statement's text
 * with replacement (a quoted literal), so that a password given in clear
 * travels only as the hash that was stored.  The statement is read with
 * PostgreSQL's own scanner, so quotes, comments and escapes are where
 * they really are.
 */
static char *
replace_password_literal(const char *text, const char *replacement)
{
	core_yy_extra_type extra;
	core_yyscan_t scanner;
	core_YYSTYPE value;
	YYLTYPE		location;
	bool		after_password = false;
	int			start = -1;
	int			end = -1;
	int			token;
	StringInfoData out;

	scanner = scanner_init(text, &extra, &ScanKeywords, ScanKeywordTokens);
	while ((token = core_yylex(&value, &location, scanner)) != 0)
	{
		if (start >= 0)
		{
			end = location;
			break;
		}
		if (after_password && (token == SCONST || token == USCONST))
			start = location;
		after_password = token == PASSWORD;
	}
	if (start >= 0 && end < 0)
		end = strlen(text);
	scanner_finish(scanner);
	if (start < 0)
		return pstrdup(text);
	initStringInfo(&out);
	appendBinaryStringInfo(&out, text, start);
	appendStringInfo(&out, "%s ", replacement);
	appendStringInfoString(&out, text + end);
	return out.data;
}

/*
 * Writes the message that ships a statement, as a transactional message,
 * with the values its added columns hold in existing rows (chg_missing).
 */
static void
ship(const char *text, List *missing)
{
	chg_setting settings[DDL_NSETTINGS];
	chg_missing *values = palloc(sizeof(chg_missing) * (list_length(missing) + 1));
	StringInfoData message;
	chg_writer	w;
	char	   *role = GetUserNameFromId(GetUserId(), false);
	ListCell   *lc;
	int			i;

	for (i = 0; i < (int) DDL_NSETTINGS; i++)
	{
		const char *value = GetConfigOption(ddl_settings[i], false, false);

		settings[i].name.data = ddl_settings[i];
		settings[i].name.len = strlen(ddl_settings[i]);
		settings[i].value.data = value ? value : "";
		settings[i].value.len = strlen(settings[i].value.data);
	}
	initStringInfo(&message);
	w.append = RaftAppendToStringInfo;
	w.arg = &message;
	i = 0;
	foreach(lc, missing)
		values[i++] = *(chg_missing *) lfirst(lc);
	if (list_length(missing) > CHG_MAX_MISSING)
		refuse("a schema change that adds columns to this many tables",
			   "The other members learn the value of each added column in each table.",
			   "Add the column to fewer partitions at a time.");
	chg_write_ddl(&w, (chg_str) {role, strlen(role)}, DDL_NSETTINGS, settings,
				  (chg_text) {text, strlen(text)}, (uint16) list_length(missing), values);
	LogLogicalMessage(RAFT_MESSAGE_PREFIX, message.data, message.len, true);
	pfree(message.data);
}

/*
 * Whether statements run here travel: on a member, in raft.database, in
 * a session of its own (not the apply worker, whose statements came from
 * the log and carry its origin), and not while a copy of the leader's
 * data is restored here.
 */
static bool
ships_here(ProcessUtilityContext context)
{
	static Oid	replicated_db = InvalidOid;

	if (RaftShmem == NULL || !RaftShmem->member || RaftShmem->copying ||
		context == PROCESS_UTILITY_SUBCOMMAND || creating_extension ||
		replorigin_session_origin != InvalidRepOriginId || raft_database == NULL)
		return false;
	if (!OidIsValid(replicated_db))
		replicated_db = get_database_oid(raft_database, true);
	return OidIsValid(replicated_db) && MyDatabaseId == replicated_db;
}

/* Runs the statement, the next hook's way. */
static void
run_next(PlannedStmt *pstmt, const char *query_string, bool read_only_tree,
		 ProcessUtilityContext context, ParamListInfo params,
		 QueryEnvironment *query_env, DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_process_utility)
		prev_process_utility(pstmt, query_string, read_only_tree, context,
							 params, query_env, dest, qc);
	else
		standard_ProcessUtility(pstmt, query_string, read_only_tree, context,
								params, query_env, dest, qc);
}

/* Runs an extension's script without shipping the rows it writes. */
static void
run_unshipped(PlannedStmt *pstmt, const char *query_string, bool read_only_tree,
			  ProcessUtilityContext context, ParamListInfo params,
			  QueryEnvironment *query_env, DestReceiver *dest, QueryCompletion *qc)
{
	RepOriginId saved = replorigin_session_origin;

	replorigin_session_origin = DoNotReplicateId;
	PG_TRY();
	{
		run_next(pstmt, query_string, read_only_tree, context, params,
				 query_env, dest, qc);
	}
	PG_FINALLY();
	{
		replorigin_session_origin = saved;
	}
	PG_END_TRY();
}

static void
ddl_process_utility(PlannedStmt *pstmt, const char *query_string,
					bool read_only_tree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *query_env,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *stmt = pstmt->utilityStmt;
	DdlAction	action = DDL_LOCAL;
	char	   *text;
	Oid			password_role;
	List	   *missing = NIL;

	if (ships_here(context))
		action = classify(stmt);
	if (action == DDL_LOCAL || on_temporary_objects(stmt))
	{
		run_next(pstmt, query_string, read_only_tree, context, params,
				 query_env, dest, qc);
		/* it travels as a truncate, but moves sequences back too */
		if (IsA(stmt, TruncateStmt) && ((TruncateStmt *) stmt)->restart_seqs &&
			ships_here(context))
			RaftSequencesChanged();
		return;
	}

	text = statement_text(pstmt, query_string);
	if (action == DDL_SHIP_BEFORE)
		ship(text, NIL);
	if (IsA(stmt, CreateExtensionStmt) || IsA(stmt, AlterExtensionStmt))
		run_unshipped(pstmt, query_string, read_only_tree, context, params,
					  query_env, dest, qc);
	else
		run_next(pstmt, query_string, read_only_tree, context, params,
				 query_env, dest, qc);
	if (action == DDL_SHIP_BEFORE)
		return;

	/* a view over a temporary table became temporary itself */
	if (IsA(stmt, ViewStmt) && relation_is_temp(((ViewStmt *) stmt)->view))
		return;
	if (IsA(stmt, AlterTableStmt))
	{
		check_alter_table_after((AlterTableStmt *) stmt);
		missing = added_column_values((AlterTableStmt *) stmt);
	}
	if (IsA(stmt, AlterSeqStmt))
		RaftSequencesChanged();
	password_role = role_given_password(stmt);
	if (OidIsValid(password_role))
	{
		char	   *hash = stored_password(password_role);

		text = replace_password_literal(text, hash ? quote_literal_cstr(hash) : "NULL");
	}
	ship(text, missing);
}

/*
 * Large objects live in catalogs, which logical decoding does not carry:
 * one created on the leader would be on no other member, and gone after
 * a failover.  Creating or dropping one in raft.database is refused on
 * every member, whichever way the call comes (SQL, or libpq's large
 * object functions through the fast-path protocol, which no statement
 * hook sees).
 */
static void
ddl_object_access(ObjectAccessType access, Oid class_id, Oid object_id,
				  int sub_id, void *arg)
{
	if (prev_object_access)
		prev_object_access(access, class_id, object_id, sub_id, arg);
	if (class_id != LargeObjectRelationId ||
		(access != OAT_POST_CREATE && access != OAT_DROP) ||
		!ships_here(PROCESS_UTILITY_TOPLEVEL))
		return;
	refuse("large objects",
		   "Large objects are stored in catalogs, which the raft log does not carry: the other members would not have them.",
		   "Store the data in a bytea column instead.");
}

void
RaftDdlInit(void)
{
	prev_process_utility = ProcessUtility_hook;
	ProcessUtility_hook = ddl_process_utility;
	prev_object_access = object_access_hook;
	object_access_hook = ddl_object_access;
}

/* ----------------------------------------------------------------
 * The followers: replaying a statement
 * ----------------------------------------------------------------
 */

/*
 * Adapts a statement to a follower: rows of CREATE TABLE AS follow as
 * inserts, and what runs concurrently on the leader runs inside the
 * apply transaction here.
 */
static void
adapt_for_replay(Node *stmt)
{
	if (IsA(stmt, CreateTableAsStmt) &&
		((CreateTableAsStmt *) stmt)->objtype == OBJECT_TABLE)
		((CreateTableAsStmt *) stmt)->into->skipData = true;
	else if (IsA(stmt, IndexStmt))
		((IndexStmt *) stmt)->concurrent = false;
	else if (IsA(stmt, DropStmt))
		((DropStmt *) stmt)->concurrent = false;
}

/* Says, in an error's context, which statement was replayed. */
static void
replay_error_callback(void *arg)
{
	errcontext("replicated schema change: %s", (const char *) arg);
}

/*
 * RaftDdlReplay
 *		Runs the schema change of a 'X' message in the current transaction,
 *		as its role and with its settings, which are restored afterwards.
 *		(When it fails, the transaction's abort restores them.)
 */
void
RaftDdlReplay(const chg_message *m)
{
	char	   *role = pnstrdup(m->role.data, m->role.len);
	char	   *text = pnstrdup(m->statement.data, m->statement.len);
	Oid			roleid = get_role_oid(role, true);
	Oid			saved_user;
	int			saved_sec_context;
	int			nest_level;
	List	   *raw;
	ListCell   *lc;
	uint16		i;
	ErrorContextCallback errcallback;

	if (!OidIsValid(roleid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" of a replicated schema change does not exist here", role),
				 errdetail("The statement is: %s", text)));

	errcallback.callback = replay_error_callback;
	errcallback.arg = text;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	GetUserIdAndSecContext(&saved_user, &saved_sec_context);
	nest_level = NewGUCNestLevel();
	for (i = 0; i < m->nsettings; i++)
	{
		chg_setting s = chg_ddl_setting(m, i);

		(void) set_config_option(pnstrdup(s.name.data, s.name.len),
								 pnstrdup(s.value.data, s.value.len),
								 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	}
	(void) set_config_option("check_function_bodies", "off", PGC_SUSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	SetUserIdAndSecContext(roleid, saved_sec_context | SECURITY_LOCAL_USERID_CHANGE);

	raw = pg_parse_query(text);
	if (list_length(raw) != 1)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("a replicated schema change holds %d statements instead of one",
						list_length(raw))));
	foreach(lc, pg_plan_queries(pg_analyze_and_rewrite_fixedparams(linitial_node(RawStmt, raw),
																   text, NULL, 0, NULL),
								text, CURSOR_OPT_PARALLEL_OK, NULL))
	{
		PlannedStmt *pstmt = lfirst_node(PlannedStmt, lc);
		QueryCompletion qc;

		if (pstmt->commandType != CMD_UTILITY)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("a replicated schema change is not a utility statement")));
		adapt_for_replay(pstmt->utilityStmt);
		InitializeQueryCompletion(&qc);
		ProcessUtility(pstmt, text, false, PROCESS_UTILITY_QUERY, NULL, NULL,
					   None_Receiver, &qc);
		CommandCounterIncrement();
	}
	/* existing rows hold in added columns what the leader computed */
	for (i = 0; i < m->nmissing; i++)
	{
		chg_missing v = chg_ddl_missing(m, i);
		Oid			relid;

		relid = RangeVarGetRelid(makeRangeVar(pnstrdup(v.nspname.data, v.nspname.len),
											  pnstrdup(v.relname.data, v.relname.len), -1),
								 AccessExclusiveLock, false);
		SetAttrMissing(relid, pnstrdup(v.column.data, v.column.len),
					   pnstrdup(v.value.data, v.value.len));
		CommandCounterIncrement();
	}

	SetUserIdAndSecContext(saved_user, saved_sec_context);
	AtEOXact_GUC(true, nest_level);
	error_context_stack = errcallback.previous;
}
