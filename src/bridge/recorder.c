/*
 * recorder.c
 *		Recording outcomes: the statement that writes a batch of them, the
 *		callbacks of the requests that ended, and the recorder, the
 *		background worker that does this beside the worker's HTTP.
 *
 * The worker records outcomes itself (the same functions) when it has no
 * recorder or a batch is too large to hand over (handoff.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/wait_event.h"

#include "bridge_internal.h"

PGDLLEXPORT void eightms_bridge_recorder_main(Datum arg);

/* The record statement's plan, kept for the process's life. */
static SPIPlanPtr record_plan = NULL;

/*
 * An attempt is recorded only for a request the UPDATE found: the UPDATE
 * waits for a deletion of the request (an account's deletion) and skips the
 * row once it is gone, so that no attempt outlives its request.
 */
static const char *record_sql =
"WITH u AS ("
"  SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::timestamptz[], $5::int[],"
"                       $6::text[], $7::bytea[], $8::text[], $9::timestamptz[], $10::float8[])"
"    AS u(id, state, attempt, next_at, status, headers, body, error, started, duration)),"
" r AS ("
"  UPDATE eightms.http_request r SET"
"   state = u.state, attempts = u.attempt,"
"   next_attempt_at = coalesce(u.next_at, r.next_attempt_at),"
"   finished_at = CASE WHEN u.state IN ('done', 'dead') THEN now() END,"
"   response_status = nullif(u.status, 0),"
"   response_headers = u.headers::jsonb,"
"   response_body = u.body,"
"   error = u.error"
"  FROM u WHERE r.id = u.id"
"  RETURNING r.id, r.account_id, r.callback, r.callback_context, r.enqueued_by, u.state, u.attempt,"
"   u.started, u.duration, u.status, u.error),"
" att AS ("
"  INSERT INTO eightms.http_attempt (request_id, attempt, started_at, duration_ms, status, error, account_id)"
"  SELECT r.id, r.attempt, r.started, r.duration, nullif(r.status, 0), r.error, r.account_id FROM r"
"  ON CONFLICT (request_id, attempt) DO UPDATE SET started_at = EXCLUDED.started_at,"
"     duration_ms = EXCLUDED.duration_ms, status = EXCLUDED.status, error = EXCLUDED.error)"
" SELECT r.id, r.callback IS NOT NULL AND r.state IN ('done', 'dead'),"
"   CASE WHEN r.callback IS NOT NULL THEN"
"     (SELECT p.oid FROM pg_proc p"
"        JOIN pg_namespace n ON n.oid = p.pronamespace"
"       WHERE n.nspname = r.callback[1] AND p.proname = r.callback[2] AND p.pronargs = 2"
"         AND p.proargtypes[0] = 'bigint'::regtype AND p.proargtypes[1] = 'jsonb'::regtype) END,"
"   r.callback_context, r.enqueued_by::oid, array_to_string(r.callback, '.')"
"  FROM r";

/*
 * Disarm the callback's timeout.  Had it fired after the callback returned
 * (before this), its cancel would land on the recording that follows and
 * lose the whole batch of outcomes: the callback finished, so it is dropped.
 */
static void
callback_timeout_off(void)
{
	disable_timeout(STATEMENT_TIMEOUT, false);
	if (get_timeout_indicator(STATEMENT_TIMEOUT, true))
		QueryCancelPending = false;
}

/* The callback's outcome: its error, or NULL when it succeeded. */
static void
record_callback_error(int64 id, const char *failure)
{
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2] = {Int64GetDatum(id), failure ? CStringGetTextDatum(failure) : (Datum) 0};
	char		nulls[2] = {' ', failure ? ' ' : 'n'};

	bridge_spi_exec("UPDATE eightms.http_request SET callback_error = $2 WHERE id = $1",
			 2, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * Whether role may execute fn, from pg_proc as a new snapshot has it rather
 * than from the caches.  A REVOKE committed in the transaction that queued
 * the request is visible with the request; the caches may not have taken
 * it in yet, since a committing session sends its cache invalidations
 * after its commit is visible, and the worker, woken at that commit, can
 * send the request and hand its outcome over in between.
 */
static bool
callback_executable(Oid fn, Oid role)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(fn)};
	bool		isnull;
	Datum		acl_datum;
	Oid			owner;
	Acl		   *acl;

	if (superuser_arg(role))
		return true;
	bridge_spi_exec("SELECT p.proacl, p.proowner FROM pg_catalog.pg_proc p WHERE p.oid = $1",
					1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed != 1)
		return false;			/* dropped since the statement above */
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	acl_datum = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	acl = isnull ? acldefault(OBJECT_FUNCTION, owner) : DatumGetAclPCopy(acl_datum);
	return aclmask(acl, role, owner, ACL_EXECUTE, ACLMASK_ANY) != 0;
}

/*
 * Why a request's callback may not run, or NULL if it may: fn is the
 * function pg_proc has under the stored names now (InvalidOid: none), role
 * the enqueuer.  It was checked at enqueue; this checks again what may have
 * changed since (and what a row not written by http_enqueue never had).
 */
static char *
callback_refusal(Oid fn, Oid role, const char *name)
{
	if (!OidIsValid(fn))
		return psprintf("the callback function %s(bigint, jsonb) does not exist", name);
	if (isAnyTempNamespace(get_func_namespace(fn)))
		return psprintf("the callback function %s(bigint, jsonb) is in a temporary schema and was not called", name);
	if (!SearchSysCacheExists1(AUTHOID, ObjectIdGetDatum(role)))
		return psprintf("the role that enqueued the request no longer exists; the callback %s(bigint, jsonb) was not called", name);
	if (!callback_executable(fn, role))
		return psprintf("the role that enqueued the request may not execute the callback %s(bigint, jsonb); it was not called", name);
	return NULL;
}

/*
 * Run a request's callback in its own subtransaction, as the enqueuer and
 * with no more than the enqueuer's rights: fn is the function pg_proc has
 * under the stored names (checked by callback_refusal()), called by its
 * quoted name, never by stored text.
 *
 * The recorder's session outlives the callback and runs the next ones as
 * other roles: a security-restricted operation (no SET ROLE, no temporary
 * objects that a later callback could resolve) whose settings are undone
 * when it returns, as PostgreSQL does for code it runs on a user's behalf
 * in maintenance commands.
 */
static void
run_callback(int64 id, Oid fn, Datum context, bool context_null, Oid role)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	int			guc_level;
	char	   *sql = psprintf("SELECT %s($1::bigint, $2::jsonb)",
							   quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
														  get_func_name(fn)));
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum(id), context};
	char		nulls[2] = {' ', context_null ? 'n' : ' '};
	char	   *failure = NULL;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE
							   | SECURITY_RESTRICTED_OPERATION);
		/* The callback gets the search path a session of its own would. */
		guc_level = NewGUCNestLevel();
		(void) set_config_option("search_path", GetConfigOptionResetString("search_path"),
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
		/* Background workers get no statement_timeout: arm it here. */
		if (bridge_settings.callback_timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, bridge_settings.callback_timeout_ms);
		SPI_execute_with_args(sql, 2, types, values, nulls, false, 0);
		callback_timeout_off();
		AtEOXact_GUC(false, guc_level);
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		callback_timeout_off();
		SetUserIdAndSecContext(save_userid, save_sec);
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		failure = edata->message ? edata->message : "callback failed";
	}
	PG_END_TRY();
	record_callback_error(id, failure);
}

/*
 * Record outcomes and attempts, then run callbacks, in the caller's
 * transaction.
 */
void
bridge_record_results(List *results)
{
	int			n = list_length(results);
	Datum	   *v[10];
	bool	   *nl[10];
	Oid			elemtypes[10] = {INT8OID, TEXTOID, INT4OID, TIMESTAMPTZOID, INT4OID,
	TEXTOID, BYTEAOID, TEXTOID, TIMESTAMPTZOID, FLOAT8OID};
	Oid			argtypes[10] = {INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
		INT4ARRAYOID, TEXTARRAYOID, BYTEAARRAYOID, TEXTARRAYOID, TIMESTAMPTZARRAYOID,
	FLOAT8ARRAYOID};
	Datum		args[10];
	int			i = 0;
	ListCell   *lc;
	uint64		nrows;
	SPITupleTable *tuptable;
	int			guards;

	if (n == 0)
		return;
	for (int c = 0; c < 10; c++)
	{
		v[c] = palloc0(sizeof(Datum) * n);
		nl[c] = palloc0(sizeof(bool) * n);
	}
	foreach(lc, results)
	{
		BridgeResult	   *r = (BridgeResult *) lfirst(lc);

		v[0][i] = Int64GetDatum(r->id);
		v[1][i] = CStringGetTextDatum(r->state);
		v[2][i] = Int32GetDatum(r->attempt);
		v[3][i] = TimestampTzGetDatum(r->next_at);
		nl[3][i] = (strcmp(r->state, "queued") != 0);
		v[4][i] = Int32GetDatum(r->status);
		v[5][i] = r->headers ? CStringGetTextDatum(r->headers) : (Datum) 0;
		nl[5][i] = (r->headers == NULL);
		v[6][i] = PointerGetDatum(r->body);
		nl[6][i] = (r->body == NULL);
		v[7][i] = r->error ? CStringGetTextDatum(r->error) : (Datum) 0;
		nl[7][i] = (r->error == NULL);
		v[8][i] = TimestampTzGetDatum(r->started);
		v[9][i] = Float8GetDatum(r->duration_ms);
		i++;
	}

	for (int c = 0; c < 10; c++)
		args[c] = PointerGetDatum(bridge_make_array(v[c], nl[c], n, elemtypes[c]));
	guards = bridge_plan_guards_begin(true);
	bridge_spi_exec_plan(&record_plan, record_sql, 10, argtypes, args, SPI_OK_SELECT, 0);
	bridge_plan_guards_end(guards);

	/* Keep the rows: callbacks run more SPI statements. */
	nrows = SPI_processed;
	tuptable = SPI_tuptable;
	for (uint64 row = 0; row < nrows; row++)
	{
		HeapTuple	tup = tuptable->vals[row];
		TupleDesc	desc = tuptable->tupdesc;
		bool		isnull;
		bool		ctx_null;
		Datum		ctx;
		int64		id;
		Oid			fn;
		Oid			role;
		char	   *refusal;

		if (!DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)) || isnull)
			continue;
		id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		fn = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		if (isnull)
			fn = InvalidOid;	/* dropped or renamed since it was queued */
		role = DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull));
		refusal = callback_refusal(fn, role, SPI_getvalue(tup, desc, 6));
		if (refusal != NULL)
		{
			record_callback_error(id, refusal);
			continue;
		}
		ctx = SPI_getbinval(tup, desc, 4, &ctx_null);
		run_callback(id, fn, ctx, ctx_null, role);
	}
}

/*
 * The recorder: takes the batches of outcomes the worker hands over, records
 * them (and runs their callbacks) in one transaction for all that have
 * arrived, and tells the worker which batches are committed.  It stops with
 * the worker that started it, once it has recorded what that worker sent.
 */
void
eightms_bridge_recorder_main(Datum arg)
{
	MemoryContext recorder_cxt;
	MemoryContext batch_cxt;

	bridge_process_start("eightms bridge recorder");
	recorder_cxt = AllocSetContextCreate(TopMemoryContext, "eightms bridge recorder", ALLOCSET_DEFAULT_SIZES);
	batch_cxt = AllocSetContextCreate(recorder_cxt, "eightms bridge recorder batch", ALLOCSET_DEFAULT_SIZES);

	MemoryContextSwitchTo(recorder_cxt);
	if (!bridge_recorder_attach(arg))
		proc_exit(0);
	/* The worker checked before starting it; checked again all the same. */
	bridge_wait_for_schema("eightms bridge recorder");

	for (;;)
	{
		uint64		last_seq = 0;
		List	   *results = NIL;
		bool		worker_there;

		MemoryContextReset(batch_cxt);
		MemoryContextSwitchTo(batch_cxt);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* Take every batch handed over so far. */
		worker_there = bridge_recorder_take(&results, &last_seq);

		/* A new worker started: what this one holds is sent again. */
		if (!bridge_recorder_current())
			proc_exit(0);
		if (results == NIL)
		{
			if (!worker_there)
				proc_exit(0);
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L,
							 PG_WAIT_EXTENSION);
			continue;
		}

		bridge_begin_tx("eightms bridge recorder: recording outcomes");
		bridge_record_results(results);
		bridge_end_tx();
		bridge_recorder_committed(last_seq);
	}
}
