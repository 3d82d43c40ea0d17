/*
 * bridge.c
 *		The outbound HTTP bridge: a background worker that sends the requests
 *		queued in eightms.http_request on a libcurl multi handle.
 *
 * Delivery is at least once.  A request is marked running when claimed and
 * gets its outcome when the response (or the failure) is known; a worker
 * that dies in between leaves it running, and the next worker puts every
 * running request back in the queue before it starts.  Each attempt carries
 * the request's Idempotency-Key, so the receiving service can tell a resend.
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

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <curl/curl.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/pmsignal.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bridge_address.h"
#include "eightms.h"

PGDLLEXPORT void eightms_bridge_main(Datum arg);

/* GUCs */
static bool bridge_enabled = true;
static char *bridge_database = NULL;
static int	bridge_max_concurrency = 64;
static int	bridge_per_host = 16;
static char *bridge_allowed_hosts = NULL;
static bool bridge_allow_private = false;
static int	bridge_max_response = 1024 * 1024;
static int	bridge_retry_base_ms = 1000;
static int	bridge_retry_max_ms = 5 * 60 * 1000;

#define BRIDGE_MAX_REDIRECTS 5
#define BRIDGE_MAX_RETRY_AFTER_S 3600

/* Where enqueuing backends find the worker's latch. */
typedef struct BridgeShared
{
	slock_t		mutex;
	Latch	   *latch;
} BridgeShared;

static BridgeShared *bridge_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Enqueuing backend: wake the worker when this transaction commits. */
static bool wake_pending = false;
static bool wake_callback_registered = false;

static void
bridge_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BridgeShared)));
}

static void
bridge_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bridge_shared = ShmemInitStruct("eightms bridge", sizeof(BridgeShared), &found);
	if (!found)
	{
		SpinLockInit(&bridge_shared->mutex);
		bridge_shared->latch = NULL;
	}
	LWLockRelease(AddinShmemInitLock);
}

static void
wake_worker_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (wake_pending && bridge_shared != NULL)
		{
			Latch	   *latch;

			SpinLockAcquire(&bridge_shared->mutex);
			latch = bridge_shared->latch;
			SpinLockRelease(&bridge_shared->mutex);
			if (latch != NULL)
				SetLatch(latch);
		}
		wake_pending = false;
	}
	else if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		wake_pending = false;
}

PG_FUNCTION_INFO_V1(eightms_bridge_wake_at_commit);

Datum
eightms_bridge_wake_at_commit(PG_FUNCTION_ARGS)
{
	if (!wake_callback_registered)
	{
		RegisterXactCallback(wake_worker_xact_callback, NULL);
		wake_callback_registered = true;
	}
	wake_pending = true;
	PG_RETURN_VOID();
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

	DefineCustomBoolVariable("eightms.bridge_enabled",
							 "Start the HTTP bridge worker.",
							 NULL, &bridge_enabled, true, PGC_POSTMASTER, 0,
							 NULL, NULL, NULL);
	DefineCustomStringVariable("eightms.bridge_database",
							   "Database whose eightms.http_request queue the bridge worker serves.",
							   NULL, &bridge_database, "eightms", PGC_POSTMASTER, 0,
							   NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_max_concurrency",
							"Requests the bridge has in flight at once, in total.",
							NULL, &bridge_max_concurrency, 64, 1, 1024, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_per_host_concurrency",
							"Requests the bridge has in flight at once to one host.",
							NULL, &bridge_per_host, 16, 1, 1024, PGC_SIGHUP, 0,
							NULL, NULL, NULL);
	DefineCustomStringVariable("eightms.bridge_allowed_hosts",
							   "Hosts the bridge may call (comma-separated; \"*.example.com\" matches subdomains); empty allows any public host.",
							   NULL, &bridge_allowed_hosts, "", PGC_SIGHUP, 0,
							   NULL, NULL, NULL);
	DefineCustomBoolVariable("eightms.bridge_allow_private_addresses",
							 "Let the bridge connect to loopback, private and other reserved addresses.",
							 "Off in production: it is the guard against server-side request forgery. Tests turn it on to reach peers on 127.0.0.1.",
							 &bridge_allow_private, false, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_max_response_bytes",
							"Largest response body the bridge accepts; larger responses fail.",
							NULL, &bridge_max_response, 1024 * 1024, 1024, 64 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_retry_base",
							"First retry delay; each later one doubles, with jitter.",
							NULL, &bridge_retry_base_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.bridge_retry_max",
							"Longest retry delay.",
							NULL, &bridge_retry_max_ms, 5 * 60 * 1000, 10, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = bridge_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bridge_shmem_startup;

	if (!bridge_enabled)
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

/* ---------------------------------------------------------------------
 * The worker
 * --------------------------------------------------------------------- */

typedef struct Transfer
{
	MemoryContext cxt;			/* everything below lives here */
	CURL	   *easy;
	struct curl_slist *headers;
	int64		id;
	int			attempt;		/* this attempt's number, from 1 */
	int			max_attempts;
	char	   *method;
	char	   *host;
	bool		follow;
	int			redirects;
	bytea	   *body;
	long		timeout_ms;
	TimestampTz started;
	StringInfoData response;
	StringInfoData response_headers;
	bool		too_large;
	bool		refused;		/* an address check refused the connection */
	char		refused_why[128];
} Transfer;

typedef struct BridgeResult
{
	int64		id;
	int			attempt;
	TimestampTz started;
	double		duration_ms;
	int			status;			/* 0: no HTTP response */
	char	   *error;
	const char *state;			/* done, dead or queued (retry) */
	TimestampTz next_at;
	char	   *headers;		/* the final response's headers as a JSON object */
	bytea	   *body;
} BridgeResult;

static CURLM *multi = NULL;

/*
 * Connections are reused across requests, and the address check runs when a
 * connection is opened.  After a configuration reload the cached connections
 * were checked under the old rules: new transfers then open fresh ones, and
 * the multi handle (with its connection cache) is replaced once idle.
 */
static bool fresh_connections = false;

/* Finished requests waiting to be recorded, and when the claim looks again. */
static List *pending = NIL;
static TimestampTz pending_since = 0;
static TimestampTz next_due = 0;
static bool claim_was_full = false;
static Transfer **inflight = NULL;
static int	ninflight = 0;
static MemoryContext bridge_cxt = NULL;	/* the worker's lifetime */
static MemoryContext iter_cxt = NULL;	/* one turn of the main loop */
static MemoryContext pending_cxt = NULL;	/* results not yet recorded */
static MemoryContext tx_caller_cxt = NULL;

static void
bridge_exit(int code, Datum arg)
{
	if (bridge_shared != NULL)
	{
		SpinLockAcquire(&bridge_shared->mutex);
		bridge_shared->latch = NULL;
		SpinLockRelease(&bridge_shared->mutex);
	}
}

/* Is host on eightms.bridge_allowed_hosts (empty: every host)? */
static bool
host_allowed(const char *host)
{
	char	   *list;
	char	   *tok;
	char	   *save = NULL;
	bool		ok = false;
	size_t		hlen = strlen(host);

	if (bridge_allowed_hosts == NULL || bridge_allowed_hosts[0] == '\0')
		return true;
	list = pstrdup(bridge_allowed_hosts);
	for (tok = strtok_r(list, ", \t", &save); tok != NULL && !ok; tok = strtok_r(NULL, ", \t", &save))
	{
		if (strncmp(tok, "*.", 2) == 0)
		{
			size_t		slen = strlen(tok + 1);	/* ".example.com" */

			ok = hlen > slen && pg_strcasecmp(host + hlen - slen, tok + 1) == 0;
		}
		else
			ok = pg_strcasecmp(host, tok) == 0;
	}
	pfree(list);
	return ok;
}

/*
 * libcurl asks for a socket for each address it is about to connect to:
 * this is where resolved (and redirected) addresses are checked.
 */
static curl_socket_t
open_socket_checked(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	Transfer   *t = (Transfer *) clientp;
	bool		public_addr = false;
	char		text[INET6_ADDRSTRLEN] = "?";

	if (address->family == AF_INET)
	{
		struct sockaddr_in *in = (struct sockaddr_in *) &address->addr;

		public_addr = bridge_ipv4_is_public((const uint8_t *) &in->sin_addr);
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
	}
	else if (address->family == AF_INET6)
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &address->addr;

		public_addr = bridge_ipv6_is_public((const uint8_t *) &in6->sin6_addr);
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
	}
	if (!public_addr && !bridge_allow_private)
	{
		t->refused = true;
		snprintf(t->refused_why, sizeof(t->refused_why),
				 "refused to connect to non-public address %s", text);
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	Transfer   *t = (Transfer *) arg;
	size_t		len = size * n;

	if ((size_t) t->response.len + len > (size_t) bridge_max_response)
	{
		t->too_large = true;
		return 0;				/* aborts the transfer */
	}
	appendBinaryStringInfo(&t->response, data, (int) len);
	return len;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	Transfer   *t = (Transfer *) arg;
	size_t		len = size * n;

	/* Keep only the last response's headers (after 100 Continue etc.). */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
		resetStringInfo(&t->response_headers);
	if (t->response_headers.len + len <= 64 * 1024)
		appendBinaryStringInfo(&t->response_headers, data, (int) len);
	return len;
}

/* Point the transfer's easy handle at url with its method and body. */
static void
setup_easy(Transfer *t, const char *url)
{
	CURL	   *e = t->easy;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "eightms-bridge/0.1");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_checked);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
	if (fresh_connections)
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) bridge_max_response);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, t->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, Min(t->timeout_ms, 10000L));

	if (strcmp(t->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(t->method, "GET") != 0)
	{
		if (strcmp(t->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t->method);
		if (t->body != NULL)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) VARSIZE_ANY_EXHDR(t->body));
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, VARDATA_ANY(t->body));
		}
		else if (strcmp(t->method, "POST") == 0)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		}
	}
	resetStringInfo(&t->response);
	resetStringInfo(&t->response_headers);
	t->too_large = false;
	t->refused = false;
}

static void
free_transfer(Transfer *t)
{
	if (t->easy)
	{
		curl_multi_remove_handle(multi, t->easy);
		curl_easy_cleanup(t->easy);
	}
	curl_slist_free_all(t->headers);
	MemoryContextDelete(t->cxt);
}

/* Run one statement through SPI, raising on failure. */
static void
spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "eightms bridge: SPI_execute_with_args failed (%d): %s", rc, sql);
}

/*
 * Run a hot statement from a plan prepared once and kept for the worker's
 * life: planning the claim and record statements on every turn cost more
 * than running them.
 */
static void
spi_exec_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "eightms bridge: could not prepare: %s", sql);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, NULL, false, 0);
	if (rc != expect)
		elog(ERROR, "eightms bridge: statement failed (%d): %s", rc, sql);
}

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr record_plan = NULL;

static void
begin_tx(const char *activity)
{
	tx_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

static void
end_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(tx_caller_cxt);
}

/* Requests left running by a worker that died go back in the queue. */
static void
recover_running(void)
{
	begin_tx("eightms bridge: recovering requests in flight at the last stop");
	if (SPI_execute("UPDATE eightms.http_request SET state = 'queued', next_attempt_at = now() "
					"WHERE state = 'running'", false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "eightms bridge: could not requeue running requests");
	if (SPI_processed > 0)
		ereport(LOG,
				(errmsg("eightms bridge: %llu requests in flight at the last stop are queued again",
						(unsigned long long) SPI_processed)));
	end_tx();
}

static ArrayType *make_array(Datum *values, bool *nulls, int n, Oid elemtype);

static const char *claim_sql =
"WITH running AS ("
"  SELECT host, count(*) AS n FROM unnest($3::text[]) AS f(host) GROUP BY host),"
" due AS ("
"  SELECT id, host, next_attempt_at FROM eightms.http_request"
"   WHERE state = 'queued' AND next_attempt_at <= now()"
"   ORDER BY next_attempt_at, id LIMIT $1 * 4 FOR UPDATE SKIP LOCKED),"
" ranked AS ("
"  SELECT d.id, row_number() OVER (PARTITION BY d.host ORDER BY d.next_attempt_at, d.id)"
"         + coalesce(r.n, 0) AS slot, d.next_attempt_at"
"    FROM due d LEFT JOIN running r USING (host)),"
" picked AS (SELECT id FROM ranked WHERE slot <= $2 ORDER BY next_attempt_at, id LIMIT $1)"
" UPDATE eightms.http_request q SET state = 'running' FROM picked WHERE q.id = picked.id"
" RETURNING q.id, q.method, q.url, q.host,"
"   CASE WHEN q.headers <> '{}' THEN"
"     ARRAY(SELECT k || ': ' || v FROM jsonb_each_text(q.headers) AS h(k, v)) END,"
"   CASE WHEN q.secret_headers IS NOT NULL"
"        THEN eightms.http_secret_header_lines(q.secret_headers, q.idempotency_key) END,"
"   q.secret_headers IS NOT NULL,"
"   q.body, q.timeout_ms, q.follow_redirects, q.idempotency_key, q.attempts, q.max_attempts";

/* Append the lines of a text[] to a curl header list. */
static struct curl_slist *
append_lines(struct curl_slist *list, Datum arr)
{
	ArrayType  *a = DatumGetArrayTypeP(arr);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			list = curl_slist_append(list, TextDatumGetCString(elems[i]));
	return list;
}

/* Results wait in pending_cxt until recorded; so do the lists of them. */
static List *
lappend_pending(List *list, void *item)
{
	MemoryContext old = MemoryContextSwitchTo(pending_cxt);

	list = lappend(list, item);
	MemoryContextSwitchTo(old);
	return list;
}

/* A request that ends without being sent (it is recorded as dead). */
static BridgeResult *
unsent(int64 id, int attempt, char *why)
{
	BridgeResult *r = MemoryContextAllocZero(pending_cxt, sizeof(BridgeResult));

	r->id = id;
	r->attempt = attempt;
	r->started = GetCurrentTimestamp();
	r->state = "dead";
	r->error = MemoryContextStrdup(pending_cxt, why);
	return r;
}

static void
start_transfer(Transfer *t, const char *url)
{
	t->started = GetCurrentTimestamp();
	setup_easy(t, url);
	if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
		elog(ERROR, "eightms bridge: curl_multi_add_handle failed");
}

/*
 * Claim due requests up to the concurrency limits and start them.  Requests
 * that cannot be sent at all (host not allowed, secret headers that do not
 * open) are appended to *failed, to be recorded as dead.
 */
static int
claim_and_start(List **failed)
{
	int			room = bridge_max_concurrency - ninflight;
	Oid			types[3] = {INT4OID, INT4OID, TEXTARRAYOID};
	Datum		values[3];
	Datum	   *hosts;
	int			claimed;

	if (room <= 0)
		return 0;
	values[0] = Int32GetDatum(room);
	values[1] = Int32GetDatum(bridge_per_host);

	/*
	 * The hosts of the requests in flight, for the per-host limit: this
	 * worker is the only one sending, so its own list is the whole truth and
	 * the claim need not keep an index on the running requests.
	 */
	hosts = palloc(sizeof(Datum) * Max(ninflight, 1));
	for (int i = 0; i < ninflight; i++)
		hosts[i] = CStringGetTextDatum(inflight[i]->host);
	values[2] = PointerGetDatum(make_array(hosts, NULL, ninflight, TEXTOID));

	spi_exec_plan(&claim_plan, claim_sql, 3, types, values, SPI_OK_UPDATE_RETURNING);
	claimed = (int) SPI_processed;
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		secret_null;
		MemoryContext cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge transfer",
												  ALLOCSET_SMALL_SIZES);
		MemoryContext old = MemoryContextSwitchTo(cxt);
		Transfer   *t = palloc0(sizeof(Transfer));
		char	   *url;
		Datum		headers;
		Datum		secret_lines;
		Datum		body;

		t->cxt = cxt;
		t->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		t->method = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		url = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		t->host = TextDatumGetCString(SPI_getbinval(tup, desc, 4, &isnull));
		headers = SPI_getbinval(tup, desc, 5, &isnull);
		t->headers = isnull ? NULL : append_lines(NULL, headers);
		secret_lines = SPI_getbinval(tup, desc, 6, &secret_null);
		body = SPI_getbinval(tup, desc, 8, &isnull);
		t->body = isnull ? NULL : DatumGetByteaPCopy(body);
		t->timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
		t->follow = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
		t->headers = curl_slist_append(t->headers,
									   psprintf("Idempotency-Key: %s",
												TextDatumGetCString(SPI_getbinval(tup, desc, 11, &isnull))));
		/* No "Expect: 100-continue" round trip before bodies. */
		t->headers = curl_slist_append(t->headers, "Expect:");
		t->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull)) + 1;
		t->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
		initStringInfo(&t->response);
		initStringInfo(&t->response_headers);

		if (!secret_null)
			t->headers = append_lines(t->headers, secret_lines);
		MemoryContextSwitchTo(old);

		if (secret_null && DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull)))
		{
			*failed = lappend_pending(*failed, unsent(t->id, t->attempt,
													  "could not unseal the secret headers (is the key that sealed them in EIGHTMS_SEAL_KEYS?)"));
			free_transfer(t);
			continue;
		}
		if (!host_allowed(t->host))
		{
			*failed = lappend_pending(*failed, unsent(t->id, t->attempt,
													  psprintf("host %s is not in eightms.bridge_allowed_hosts", t->host)));
			free_transfer(t);
			continue;
		}
		t->easy = curl_easy_init();
		if (t->easy == NULL)
			elog(ERROR, "eightms bridge: curl_easy_init failed");
		inflight = repalloc(inflight, sizeof(Transfer *) * (ninflight + 1));
		inflight[ninflight++] = t;
		old = MemoryContextSwitchTo(cxt);
		start_transfer(t, url);
		MemoryContextSwitchTo(old);
	}
	return claimed;
}

/* Seconds a Retry-After header asks for (delta-seconds or HTTP date), or -1. */
static int
retry_after_seconds(const char *headers)
{
	const char *p = headers;

	while (p && *p)
	{
		const char *eol = strchr(p, '\n');
		size_t		len = eol ? (size_t) (eol - p) : strlen(p);

		if (len > 12 && pg_strncasecmp(p, "retry-after:", 12) == 0)
		{
			char		value[128];
			size_t		vlen = Min(len - 12, sizeof(value) - 1);
			char	   *v = value;
			char	   *end;
			long		secs;
			time_t		when;
			struct tm	tm;

			memcpy(value, p + 12, vlen);
			value[vlen] = '\0';
			while (*v == ' ' || *v == '\t')
				v++;
			for (end = v + strlen(v); end > v && (end[-1] == '\r' || end[-1] == ' '); end--)
				end[-1] = '\0';
			secs = strtol(v, &end, 10);
			if (end != v && *end == '\0')
				return (int) Max(0, Min(secs, BRIDGE_MAX_RETRY_AFTER_S));
			memset(&tm, 0, sizeof(tm));
			if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm) != NULL)
			{
				when = timegm(&tm);
				return (int) Max(0, Min((long) (when - time(NULL)), BRIDGE_MAX_RETRY_AFTER_S));
			}
			return -1;
		}
		p = eol ? eol + 1 : NULL;
	}
	return -1;
}

/* Exponential backoff with jitter: half the delay fixed, half random. */
static TimestampTz
retry_time(int attempt, int retry_after)
{
	double		delay = (double) bridge_retry_base_ms * pow(2.0, Min(attempt - 1, 30));
	uint32		r;

	delay = Min(delay, (double) bridge_retry_max_ms);
	if (!pg_strong_random(&r, sizeof(r)))
		r = (uint32) random();
	delay = delay / 2 + (delay / 2) * ((double) r / (double) PG_UINT32_MAX);
	if (retry_after >= 0)
		delay = Max(delay, retry_after * 1000.0);
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) delay);
}

/*
 * The header block of a response as a JSON object: names lower-cased,
 * repeated headers joined with ", " (as HTTP allows), the status line and
 * lines without a colon left out.
 */
static char *
headers_to_json(const char *raw, int len)
{
	StringInfoData out;
	char	  **names = palloc(sizeof(char *) * (len / 2 + 1));
	char	  **values = palloc(sizeof(char *) * (len / 2 + 1));
	int			n = 0;
	const char *p = raw;
	const char *end = raw + len;

	while (p < end)
	{
		const char *eol = memchr(p, '\n', end - p);
		const char *line_end = eol ? eol : end;
		const char *colon = memchr(p, ':', line_end - p);

		if (colon != NULL && colon > p && strncmp(p, "HTTP/", 5) != 0)
		{
			char	   *name = pnstrdup(p, colon - p);
			const char *v = colon + 1;
			const char *ve = line_end;
			int			i;

			for (char *c = name; *c; c++)
				*c = pg_tolower((unsigned char) *c);
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			for (i = 0; i < n; i++)
				if (strcmp(names[i], name) == 0)
					break;
			if (i < n)
				values[i] = psprintf("%s, %.*s", values[i], (int) (ve - v), v);
			else
			{
				names[n] = name;
				values[n++] = pnstrdup(v, ve - v);
			}
		}
		p = eol ? eol + 1 : end;
	}
	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&out, ',');
		escape_json(&out, names[i]);
		appendStringInfoChar(&out, ':');
		escape_json(&out, values[i]);
	}
	appendStringInfoChar(&out, '}');
	return out.data;
}

/*
 * A transfer finished.  Either it follows a redirect (and stays in flight),
 * or it yields a BridgeResult.
 */
static BridgeResult *
finish_transfer(Transfer *t, CURLcode rc)
{
	BridgeResult *r = MemoryContextAllocZero(pending_cxt, sizeof(BridgeResult));
	long		status = 0;
	bool		retry = false;
	char	   *error = NULL;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);

	if (rc == CURLE_OK && t->follow && status >= 300 && status < 400 && status != 304)
	{
		char	   *location = NULL;

		curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &location);
		if (location != NULL)
		{
			CURLU	   *u = curl_url();
			char	   *scheme = NULL;
			char	   *host = NULL;

			/* Any scheme parses here, so that others can be named and refused. */
			if (curl_url_set(u, CURLUPART_URL, location, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK
				&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
				&& pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0)
				error = psprintf("refused to follow a redirect to a %s URL", scheme);
			else if (scheme != NULL && curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
			{
				if (!host_allowed(host))
					error = psprintf("refused to follow a redirect to host %s, which is not in eightms.bridge_allowed_hosts", host);
				else if (t->redirects >= BRIDGE_MAX_REDIRECTS)
					error = psprintf("more than %d redirects", BRIDGE_MAX_REDIRECTS);
				else
				{
					MemoryContext old = MemoryContextSwitchTo(t->cxt);
					char	   *next = pstrdup(location);

					curl_free(scheme);
					curl_free(host);
					curl_url_cleanup(u);
					t->redirects++;
					/* 301/302/303 turn a POST into a GET, as browsers do. */
					if (status == 303 || ((status == 301 || status == 302) && strcmp(t->method, "POST") == 0))
					{
						t->method = "GET";
						t->body = NULL;
					}
					curl_multi_remove_handle(multi, t->easy);
					start_transfer(t, next);
					MemoryContextSwitchTo(old);
					return NULL;
				}
			}
			else
				error = pstrdup("the redirect Location is not a valid URL");
			curl_free(scheme);
			curl_free(host);
			curl_url_cleanup(u);
		}
	}

	r->id = t->id;
	r->attempt = t->attempt;
	r->started = t->started;
	r->duration_ms = (double) (GetCurrentTimestamp() - t->started) / 1000.0;
	r->status = (rc == CURLE_OK) ? (int) status : 0;
	if (rc == CURLE_OK)
	{
		MemoryContext old = MemoryContextSwitchTo(pending_cxt);

		r->headers = headers_to_json(t->response_headers.data, t->response_headers.len);
		r->body = (bytea *) palloc(VARHDRSZ + t->response.len);
		SET_VARSIZE(r->body, VARHDRSZ + t->response.len);
		memcpy(VARDATA(r->body), t->response.data, t->response.len);
		MemoryContextSwitchTo(old);
	}

	if (error != NULL)
		;						/* a refused redirect: final */
	else if (t->refused)
		error = pstrdup(t->refused_why);
	else if (t->too_large || rc == CURLE_FILESIZE_EXCEEDED)
		error = psprintf("response larger than eightms.bridge_max_response_bytes (%d bytes)", bridge_max_response);
	else if (rc == CURLE_UNSUPPORTED_PROTOCOL)
		error = pstrdup("only http and https URLs can be requested");
	else if (rc != CURLE_OK)
	{
		error = pstrdup(curl_easy_strerror(rc));
		retry = true;
	}
	else if (status == 429 || status >= 500)
	{
		error = psprintf("HTTP %ld", status);
		retry = true;
	}
	else if (status >= 400)
		error = psprintf("HTTP %ld", status);

	if (error == NULL)
		r->state = "done";
	else if (retry && t->attempt < t->max_attempts)
	{
		r->state = "queued";
		r->next_at = retry_time(t->attempt,
								rc == CURLE_OK ? retry_after_seconds(t->response_headers.data) : -1);
	}
	else
	{
		r->state = "dead";
		if (retry)
			error = psprintf("gave up after %d attempts: %s", t->attempt, error);
	}
	r->error = error ? MemoryContextStrdup(pending_cxt, error) : NULL;
	return r;
}

/* Collect the transfers curl has finished, adding their results to results. */
static List *
collect_done(List *results)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		Transfer   *t = NULL;
		BridgeResult	   *r;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		r = finish_transfer(t, msg->data.result);
		if (r == NULL)
			continue;			/* following a redirect */
		results = lappend_pending(results, r);
		for (int i = 0; i < ninflight; i++)
			if (inflight[i] == t)
			{
				inflight[i] = inflight[--ninflight];
				break;
			}
		free_transfer(t);
	}
	return results;
}

static ArrayType *
make_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	if (n == 0)
		return construct_empty_array(elemtype);
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype, typlen, typbyval, typalign);
}

static const char *record_sql =
"WITH u AS ("
"  SELECT * FROM unnest($1::bigint[], $2::text[], $3::int[], $4::timestamptz[], $5::int[],"
"                       $6::text[], $7::bytea[], $8::text[], $9::timestamptz[], $10::float8[])"
"    AS u(id, state, attempt, next_at, status, headers, body, error, started, duration)),"
" att AS ("
"  INSERT INTO eightms.http_attempt (request_id, attempt, started_at, duration_ms, status, error)"
"  SELECT id, attempt, started, duration, nullif(status, 0), error FROM u"
"  ON CONFLICT (request_id, attempt) DO UPDATE SET started_at = EXCLUDED.started_at,"
"     duration_ms = EXCLUDED.duration_ms, status = EXCLUDED.status, error = EXCLUDED.error)"
" UPDATE eightms.http_request r SET"
"   state = u.state, attempts = u.attempt,"
"   next_attempt_at = coalesce(u.next_at, r.next_attempt_at),"
"   finished_at = CASE WHEN u.state IN ('done', 'dead') THEN now() END,"
"   response_status = nullif(u.status, 0),"
"   response_headers = u.headers::jsonb,"
"   response_body = u.body,"
"   error = u.error"
"  FROM u WHERE r.id = u.id"
" RETURNING r.id, r.callback IS NOT NULL AND u.state IN ('done', 'dead'),"
"   CASE WHEN r.callback IS NOT NULL THEN"
"     (SELECT format('%I.%I', n.nspname, p.proname) FROM pg_proc p"
"        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.oid = r.callback) END,"
"   r.callback_context, r.enqueued_by::oid";

/* Run a request's callback in its own subtransaction, as the enqueuer. */
static void
run_callback(int64 id, const char *fn, Datum context, bool context_null, Oid role)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec;
	char	   *sql = psprintf("SELECT %s($1::bigint, $2::jsonb)", fn);
	Oid			types[2] = {INT8OID, JSONBOID};
	Datum		values[2] = {Int64GetDatum(id), context};
	char		nulls[2] = {' ', context_null ? 'n' : ' '};
	char	   *failure = NULL;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		SPI_execute_with_args(sql, 2, types, values, nulls, false, 0);
		SetUserIdAndSecContext(save_userid, save_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

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

	{
		Oid			t2[2] = {INT8OID, TEXTOID};
		Datum		v2[2] = {Int64GetDatum(id), failure ? CStringGetTextDatum(failure) : (Datum) 0};
		char		n2[2] = {' ', failure ? ' ' : 'n'};

		spi_exec("UPDATE eightms.http_request SET callback_error = $2 WHERE id = $1",
				 2, t2, v2, n2, SPI_OK_UPDATE);
	}
}

/* Record outcomes and attempts in one transaction, then run callbacks. */
static void
record_results(List *results)
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
		args[c] = PointerGetDatum(make_array(v[c], nl[c], n, elemtypes[c]));
	spi_exec_plan(&record_plan, record_sql, 10, argtypes, args, SPI_OK_UPDATE_RETURNING);

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

		if (!DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull)) || isnull)
			continue;
		ctx = SPI_getbinval(tup, desc, 4, &ctx_null);
		run_callback(DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull)),
					 SPI_getvalue(tup, desc, 3), ctx, ctx_null,
					 DatumGetObjectId(SPI_getbinval(tup, desc, 5, &isnull)));
	}
}

/* Milliseconds until the next queued request is due (capped), for sleeping. */
static long
ms_until_next_due(void)
{
	long		ms = 60000;
	bool		isnull;

	begin_tx("eightms bridge: idle");
	if (SPI_execute("SELECT ceil(extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint"
					" FROM eightms.http_request WHERE state = 'queued'", true, 1) == SPI_OK_SELECT
		&& SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			ms = (long) Max(0, Min(DatumGetInt64(d), 60000));
	}
	end_tx();
	return ms;
}

static CURLM *
new_multi(void)
{
	CURLM	   *m = curl_multi_init();

	if (m == NULL)
		elog(ERROR, "eightms bridge: could not initialise a libcurl multi handle");
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) bridge_max_concurrency);
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long) bridge_per_host);
	return m;
}

void
eightms_bridge_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(bridge_database, NULL, 0);
	pgstat_report_appname("eightms bridge");

	/*
	 * The worker's own commits need not wait for the WAL flush: a crash that
	 * loses one only makes a request look unsent or unfinished, and it is
	 * sent again (at least once), which the Idempotency-Key covers.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);

	bridge_cxt = AllocSetContextCreate(TopMemoryContext, "eightms bridge", ALLOCSET_DEFAULT_SIZES);
	iter_cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge loop", ALLOCSET_DEFAULT_SIZES);
	pending_cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge results", ALLOCSET_DEFAULT_SIZES);
	inflight = MemoryContextAlloc(bridge_cxt, sizeof(Transfer *));

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "eightms bridge: could not initialise libcurl");
	multi = new_multi();

	/* The extension may not be installed yet in a new cluster: wait for it. */
	for (;;)
	{
		bool		ready;

		begin_tx("eightms bridge: waiting for the extension");
		ready = SPI_execute("SELECT 1 FROM pg_extension WHERE extname = 'eightms'", true, 1) == SPI_OK_SELECT
			&& SPI_processed == 1;
		end_tx();
		if (ready)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	recover_running();

	SpinLockAcquire(&bridge_shared->mutex);
	bridge_shared->latch = MyLatch;
	SpinLockRelease(&bridge_shared->mutex);
	on_shmem_exit(bridge_exit, (Datum) 0);
	ereport(LOG, (errmsg("eightms bridge started on database \"%s\"", bridge_database)));

	/*
	 * The loop records finished requests and claims new ones in batches: a
	 * transaction per completion would cost more than the HTTP itself.  A
	 * batch is a quarter of the concurrency limit, or whatever has waited
	 * 2 ms, or everything once nothing is in flight.
	 */
	for (;;)
	{
		List	   *failed = NIL;
		int			running = 0;
		int			batch = Max(1, bridge_max_concurrency / 4);
		int			room;
		bool		woken;
		bool		do_claim;
		bool		do_record;
		TimestampTz now;

		MemoryContextReset(iter_cxt);
		MemoryContextSwitchTo(iter_cxt);
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) bridge_max_concurrency);
			curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) bridge_per_host);
			fresh_connections = true;
			next_due = 0;
		}
		if (fresh_connections && ninflight == 0)
		{
			curl_multi_cleanup(multi);
			multi = new_multi();
			fresh_connections = false;
		}

		woken = MyLatch->is_set;
		ResetLatch(MyLatch);
		curl_multi_perform(multi, &running);
		if (pending == NIL)
			pending_since = GetCurrentTimestamp();
		pending = collect_done(pending);

		now = GetCurrentTimestamp();
		room = bridge_max_concurrency - ninflight;
		do_claim = (woken || claim_was_full || now >= next_due)
			&& (room >= batch || (ninflight == 0 && room > 0));
		do_record = pending != NIL
			&& (list_length(pending) >= batch || ninflight == 0 || do_claim
				|| now - pending_since >= 2000);

		if (do_claim || do_record)
		{
			ListCell   *lc;

			begin_tx("eightms bridge: recording results and claiming requests");
			if (do_record)
				record_results(pending);
			if (do_claim)
			{
				int			claimed = claim_and_start(&failed);

				claim_was_full = (claimed >= room);
				if (failed != NIL)
					record_results(failed);
				/* Look again within a second for retries coming due. */
				next_due = TimestampTzPlusMilliseconds(now, 1000);
			}
			end_tx();
			if (do_record)
			{
				foreach(lc, pending)
				{
					BridgeResult *r = (BridgeResult *) lfirst(lc);

					if (strcmp(r->state, "queued") == 0 && r->next_at < next_due)
						next_due = r->next_at;
				}
				pending = NIL;
				MemoryContextReset(pending_cxt);
			}
			continue;
		}

		if (ninflight > 0)
			curl_multi_poll(multi, NULL, 0, pending != NIL ? 2 : 10, NULL);
		else if (pending == NIL)
		{
			long		ms = ms_until_next_due();

			next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
			if (ms > 0)
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
								 PG_WAIT_EXTENSION);
		}
	}
}
