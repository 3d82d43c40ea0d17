/*
 * api.c
 *		The outbound HTTP bridge as SQL sees it: its GUCs, the functions
 *		sql/bridge.sql declares, and the worker's registration.
 *
 * The bridge is a background worker that sends the requests queued in
 * eightms.http_request on a libcurl multi handle.
 *
 * Delivery is at least once.  A claimed request stays 'queued' in the table
 * until its outcome is recorded: the worker, the only one sending (an
 * advisory lock makes sure), keeps the ids it holds in memory and skips
 * them, and publishes them in shared memory for eightms.http_in_flight().  A
 * worker that dies leaves its requests queued, and the next one sends them
 * again.  Each attempt carries the request's Idempotency-Key, so the
 * receiving service can tell a resend.
 *
 * Two processes share the work: the worker claims and sends, and hands the
 * outcomes, a batch at a time, through a shared memory queue (handoff.c) to
 * the recorder, a background worker it starts, which records them (and runs
 * the callbacks) in the database.  The worker holds a request until the
 * recorder has committed its outcome; if the recorder stops before that,
 * the worker exits too, and the requests are sent again.  Without a
 * recorder (or with a batch too large for the queue) the worker records
 * outcomes itself.
 *
 * The worker sleeps on its latch.  http_enqueue() registers a transaction
 * callback that sets that latch when the enqueuing transaction commits, so
 * a request starts at once without polling; the timed wait only covers
 * retries whose backoff ends later.
 *
 * Safety: only http and https; redirects are followed by the worker itself,
 * only when the request asks and only to allowed hosts; every address curl
 * is about to connect to (including those of redirects) is checked against
 * the reserved ranges in bridge_address.c; proxies from the environment are
 * ignored; TLS verification stays on.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "postmaster/bgworker.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/uuid.h"

#include "auth/claims.h"
#include "bridge.h"
#include "bridge_address.h"
#include "bridge_internal.h"
#include "preload.h"

BridgeSettings bridge_settings = {
	.enabled = true,
	.database = NULL,
	.max_concurrency = 64,
	.per_host = 16,
	.allowed_hosts = NULL,
	.allow_private = false,
	.max_response = 1024 * 1024,
	.retry_base_ms = 1000,
	.retry_max_ms = 5 * 60 * 1000,
	.callback_timeout_ms = 10 * 1000,
};

/* Enqueuing backend: wake the worker when this transaction commits. */
static struct
{
	bool		pending;
	bool		registered;
}			wake;

static void
wake_worker_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (wake.pending)
			bridge_wake_worker();
		wake.pending = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		wake.pending = false;
}

PG_FUNCTION_INFO_V1(eightms_bridge_wake_at_commit);

Datum
eightms_bridge_wake_at_commit(PG_FUNCTION_ARGS)
{
	/* Without the worker a request would wait in the queue for ever. */
	eightms_require_preload("eightms.http_enqueue()");
	if (!wake.registered)
	{
		RegisterXactCallback(wake_worker_xact_callback, NULL);
		wake.registered = true;
	}
	wake.pending = true;
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(eightms_http_in_flight);

/* The ids of the requests the worker has in flight now, as bigint[]. */
Datum
eightms_http_in_flight(PG_FUNCTION_ARGS)
{
	int64	   *copy = palloc(sizeof(int64) * BRIDGE_MAX_PUBLISHED);
	Datum	   *ids;
	int			n;

	/* Not preloaded, the list would be empty whatever is in flight. */
	eightms_require_preload("eightms.http_in_flight()");
	n = bridge_read_inflight(copy);
	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(copy[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * The host or the origin of the URL argument, or NULL.  One parser,
 * libcurl's URL API, says what a URL's host and origin are: at enqueue (the
 * seal context of the secret headers), in the host column (generated from
 * the URL) and in the worker, which sends the very handle it parsed.  A
 * second parser could read a URL another way.
 */
static Datum
url_part(FunctionCallInfo fcinfo, bool want_origin)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *host;
	char	   *origin;
	CURLU	   *u = bridge_parse_url(url, &host, &origin);

	if (u == NULL)
		PG_RETURN_NULL();
	curl_url_cleanup(u);
	PG_RETURN_TEXT_P(cstring_to_text(want_origin ? origin : host));
}

PG_FUNCTION_INFO_V1(eightms_http_url_host);

Datum
eightms_http_url_host(PG_FUNCTION_ARGS)
{
	return url_part(fcinfo, false);
}

PG_FUNCTION_INFO_V1(eightms_http_origin);

Datum
eightms_http_origin(PG_FUNCTION_ARGS)
{
	return url_part(fcinfo, true);
}

#define ENQUEUE_NARGS 11
/* The enqueuer and the account in front of the caller's arguments. */
#define ENQUEUE_EXTRA 2

PG_FUNCTION_INFO_V1(eightms_http_enqueue);

/*
 * eightms.http_enqueue(): the one way a role queues a request.  The role
 * recorded as the enqueuer, whom the callback runs as, is the caller's
 * current user, taken here and never from an argument.  The checks and the
 * insert are eightms.http_enqueue_internal(), which runs as the extension's
 * owner and is granted to no role: it is called through fmgr, which checks
 * no EXECUTE privilege, so that no role can call it with another enqueuer.
 * The account is the one the pre-request hook verified for the caller
 * (NULL for a platform call): deleting that account cancels and removes the
 * request, and a data-subject export of the account includes it.
 */
Datum
eightms_http_enqueue(PG_FUNCTION_ARGS)
{
	FmgrInfo   *inner_flinfo = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(inner, ENQUEUE_NARGS + ENQUEUE_EXTRA);
	Datum		result;
	pg_uuid_t  *account = palloc(sizeof(pg_uuid_t));

	if (inner_flinfo == NULL)
	{
		Oid			argtypes[ENQUEUE_NARGS + ENQUEUE_EXTRA] = {REGROLEOID, UUIDOID, TEXTOID, TEXTOID,
			JSONBOID, BYTEAOID, JSONBOID, INTERVALOID, INT4OID, TEXTOID, REGPROCEDUREOID, JSONBOID, BOOLOID};
		List	   *name = list_make2(makeString("eightms"), makeString("http_enqueue_internal"));
		Oid			fn = LookupFuncName(name, ENQUEUE_NARGS + ENQUEUE_EXTRA, argtypes, false);

		inner_flinfo = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(fn, inner_flinfo, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = inner_flinfo;
	}
	Assert(PG_NARGS() == ENQUEUE_NARGS);

	InitFunctionCallInfoData(*inner, inner_flinfo, ENQUEUE_NARGS + ENQUEUE_EXTRA, fcinfo->fncollation, NULL, NULL);
	inner->args[0].value = ObjectIdGetDatum(GetUserId());
	inner->args[0].isnull = false;
	inner->args[1].isnull = !eightms_bound_account(account);
	inner->args[1].value = UUIDPGetDatum(account);
	for (int i = 0; i < ENQUEUE_NARGS; i++)
		inner->args[i + ENQUEUE_EXTRA] = fcinfo->args[i];
	result = FunctionCallInvoke(inner);
	if (inner->isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

PG_FUNCTION_INFO_V1(eightms_is_public_address);

Datum
eightms_is_public_address(PG_FUNCTION_ARGS)
{
	inet	   *addr = PG_GETARG_INET_PP(0);

	if (ip_family(addr) == PGSQL_AF_INET)
		PG_RETURN_BOOL(bridge_ipv4_is_public(ip_addr(addr)));
	PG_RETURN_BOOL(bridge_ipv6_is_public(ip_addr(addr)));
}

void
eightms_bridge_init(void)
{
	BackgroundWorker worker;

	/*
	 * The worker's own settings can only be set before the server starts:
	 * defined after startup (the library loaded by a backend), they would end
	 * the session with FATAL.
	 */
	if (process_shared_preload_libraries_in_progress)
	{
		DefineCustomBoolVariable("eightms.bridge_enabled",
								 "Start the HTTP bridge worker.",
								 NULL, &bridge_settings.enabled, true, PGC_POSTMASTER, 0,
								 NULL, NULL, NULL);
		DefineCustomStringVariable("eightms.bridge_database",
								   "Database whose eightms.http_request queue the bridge worker serves.",
								   NULL, &bridge_settings.database, "eightms", PGC_POSTMASTER, 0,
								   NULL, NULL, NULL);
	}
	DefineCustomIntVariable("eightms.bridge_max_concurrency",
							"Requests the bridge has in flight at once, in total.",
							NULL, &bridge_settings.max_concurrency, 64, 1, BRIDGE_MAX_INFLIGHT, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_per_host_concurrency",
							"Requests the bridge has in flight at once to one host.",
							NULL, &bridge_settings.per_host, 16, 1, 1024, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("eightms.bridge_allowed_hosts",
							   "Hosts the bridge may call (comma-separated; \"*.example.com\" matches subdomains); empty allows any public host.",
							   NULL, &bridge_settings.allowed_hosts, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("eightms.bridge_allow_private_addresses",
							 "Let the bridge connect to loopback, private and other reserved addresses.",
							 "Off in production: it is the guard against server-side request forgery. Tests turn it on to reach peers on 127.0.0.1.",
							 &bridge_settings.allow_private, false, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_max_response_bytes",
							"Largest response body the bridge accepts; larger responses fail.",
							NULL, &bridge_settings.max_response, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_retry_base",
							"First retry delay; each later one doubles, with jitter.",
							NULL, &bridge_settings.retry_base_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_retry_max",
							"Longest retry delay.",
							NULL, &bridge_settings.retry_max_ms, 5 * 60 * 1000, 10, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_callback_timeout",
							"Longest a request's callback may run; one that runs longer is canceled and its error recorded.",
							"Callbacks run in the transaction that records outcomes: one that never ends (a lock it waits for, a loop) would hold up every outcome after it. 0 turns the limit off.",
							&bridge_settings.callback_timeout_ms, 10 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	bridge_shmem_init();

	if (!bridge_settings.enabled)
		return;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "eightms");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "eightms_bridge_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "eightms bridge");
	snprintf(worker.bgw_type, BGW_MAXLEN, "eightms bridge");
	RegisterBackgroundWorker(&worker);
}
