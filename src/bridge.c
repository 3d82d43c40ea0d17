/*
 * bridge.c
 *		The outbound HTTP bridge: a background worker that sends the requests
 *		queued in eightms.http_request on a libcurl multi handle.
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
 * outcomes, a batch at a time, through a ring in shared memory to the
 * recorder, a background worker it starts, which records them (and runs the
 * callbacks) in the database.  The worker holds a request until the recorder
 * has committed its outcome; if the recorder stops before that, the worker
 * exits too, and the requests are sent again.  Without a recorder (or with a
 * batch too large for the ring) the worker records outcomes itself.
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
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
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
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bridge_address.h"
#include "eightms.h"

PGDLLEXPORT void eightms_bridge_main(Datum arg);
PGDLLEXPORT void eightms_bridge_recorder_main(Datum arg);

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
static int	bridge_callback_timeout_ms = 10 * 1000;

#define BRIDGE_MAX_REDIRECTS 5
#define BRIDGE_MAX_RETRY_AFTER_S 3600

/* Most requests the worker can have in flight (the concurrency GUC's limit). */
#define BRIDGE_MAX_INFLIGHT 1024
/* In flight, or finished and not recorded yet (at most as many again). */
#define BRIDGE_MAX_PUBLISHED (2 * BRIDGE_MAX_INFLIGHT)

/*
 * Where enqueuing backends find the worker's latch, and where the worker
 * publishes the ids of the requests it has in flight: a request in flight
 * stays 'queued' in the table (see the claim below), so this list is what
 * eightms.http_in_flight() and the stats view read.
 */
typedef struct BridgeShared
{
	slock_t		mutex;
	Latch	   *latch;
	int			ninflight;
	int64		inflight_ids[BRIDGE_MAX_PUBLISHED];

	/*
	 * The worker hands finished requests' outcomes to the recorder through
	 * this ring, a batch per message, so that recording them in the database
	 * (the larger part of the cost of a request) runs in another process,
	 * beside the HTTP.  head and tail count bytes written and consumed;
	 * sent_seq and recorded_seq number the batches handed over and
	 * committed.  Only the worker writes head and sent_seq, only the recorder
	 * tail and recorded_seq, all under mutex.
	 */
	uint32		generation;		/* bumped by each worker start */
	bool		worker_alive;
	pid_t		recorder_pid;	/* 0: no recorder */
	Latch	   *recorder_latch;
	uint64		head;
	uint64		tail;
	uint64		sent_seq;
	uint64		recorded_seq;
	char		ring[FLEXIBLE_ARRAY_MEMBER];
} BridgeShared;

#define BRIDGE_RING_SIZE (4 * 1024 * 1024)
#define BRIDGE_SHARED_SIZE (offsetof(BridgeShared, ring) + BRIDGE_RING_SIZE)

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
	RequestAddinShmemSpace(MAXALIGN(BRIDGE_SHARED_SIZE));
}

static void
bridge_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	bridge_shared = ShmemInitStruct("eightms bridge", BRIDGE_SHARED_SIZE, &found);
	if (!found)
	{
		SpinLockInit(&bridge_shared->mutex);
		bridge_shared->latch = NULL;
		bridge_shared->ninflight = 0;
		bridge_shared->generation = 0;
		bridge_shared->worker_alive = false;
		bridge_shared->recorder_pid = 0;
		bridge_shared->recorder_latch = NULL;
		bridge_shared->head = bridge_shared->tail = 0;
		bridge_shared->sent_seq = bridge_shared->recorded_seq = 0;
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

PG_FUNCTION_INFO_V1(eightms_http_in_flight);

/* The ids of the requests the worker has in flight now, as bigint[]. */
Datum
eightms_http_in_flight(PG_FUNCTION_ARGS)
{
	int64	   *copy = palloc(sizeof(int64) * BRIDGE_MAX_PUBLISHED);
	Datum	   *ids;
	int			n = 0;

	if (bridge_shared != NULL)
	{
		SpinLockAcquire(&bridge_shared->mutex);
		n = bridge_shared->ninflight;
		memcpy(copy, bridge_shared->inflight_ids, sizeof(int64) * n);
		SpinLockRelease(&bridge_shared->mutex);
	}
	ids = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
		ids[i] = Int64GetDatum(copy[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(ids, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* ---------------------------------------------------------------------
 * URLs, as the worker sends them
 *
 * One parser, libcurl's URL API, says what a URL's host and origin are:
 * at enqueue (the seal context of the secret headers), in the host column
 * (generated from the URL) and in the worker, which sends the very handle
 * it parsed.  A second parser could read a URL another way.
 * --------------------------------------------------------------------- */

/* ASCII lower case in place: host names and schemes compare that way. */
static void
ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s += 'a' - 'A';
}

/*
 * Parse an http or https URL.  On success returns the libcurl handle (the
 * caller frees it with curl_url_cleanup) and sets *host (lower case, an
 * IPv6 address without brackets) and *origin (scheme://host:port, lower
 * case, the default port explicit), both palloc'd; NULL when the URL does
 * not parse or is not http or https.  Nothing here raises, so the handle
 * never leaks.
 */
static CURLU *
bridge_parse_url(const char *url, char **host, char **origin)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *h = NULL;
	char	   *zone = NULL;
	char	   *port = NULL;
	bool		ok;

	ok = u != NULL
		&& curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
		&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
		&& curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK
		&& curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK
		&& h[0] != '\0'
		&& (pg_strcasecmp(scheme, "http") == 0 || pg_strcasecmp(scheme, "https") == 0);
	if (ok)
	{
		size_t		hlen = strlen(h);
		char	   *bare;

		if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) != CURLUE_OK)
			zone = NULL;
		/* "[::1]": the brackets belong to the URL, not to the address. */
		if (h[0] == '[' && hlen > 2 && h[hlen - 1] == ']')
			bare = pnstrdup(h + 1, hlen - 2);
		else
			bare = pstrdup(h);
		if (zone != NULL)
			bare = psprintf("%s%%%s", bare, zone);
		ascii_lower(bare);
		*host = bare;
		*origin = psprintf(strchr(bare, ':') ? "%s://[%s]:%s" : "%s://%s:%s", scheme, bare, port);
		ascii_lower(*origin);
	}
	curl_free(scheme);
	curl_free(h);
	curl_free(zone);
	curl_free(port);
	if (!ok && u != NULL)
	{
		curl_url_cleanup(u);
		u = NULL;
	}
	return u;
}

/* The host or the origin of the URL argument, or NULL. */
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

/* ---------------------------------------------------------------------
 * Enqueuing
 * --------------------------------------------------------------------- */

#define ENQUEUE_NARGS 11

PG_FUNCTION_INFO_V1(eightms_http_enqueue);

/*
 * eightms.http_enqueue(): the one way a role queues a request.  The role
 * recorded as the enqueuer, whom the callback runs as, is the caller's
 * current user, taken here and never from an argument.  The checks and the
 * insert are eightms.http_enqueue_internal(), which runs as the extension's
 * owner and is granted to no role: it is called through fmgr, which checks
 * no EXECUTE privilege, so that no role can call it with another enqueuer.
 */
Datum
eightms_http_enqueue(PG_FUNCTION_ARGS)
{
	FmgrInfo   *inner_flinfo = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(inner, ENQUEUE_NARGS + 1);
	Datum		result;

	if (inner_flinfo == NULL)
	{
		Oid			argtypes[ENQUEUE_NARGS + 1] = {REGROLEOID, TEXTOID, TEXTOID, JSONBOID, BYTEAOID,
			JSONBOID, INTERVALOID, INT4OID, TEXTOID, REGPROCEDUREOID, JSONBOID, BOOLOID};
		List	   *name = list_make2(makeString("eightms"), makeString("http_enqueue_internal"));
		Oid			fn = LookupFuncName(name, ENQUEUE_NARGS + 1, argtypes, false);

		inner_flinfo = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(FmgrInfo));
		fmgr_info_cxt(fn, inner_flinfo, fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = inner_flinfo;
	}
	Assert(PG_NARGS() == ENQUEUE_NARGS);

	InitFunctionCallInfoData(*inner, inner_flinfo, ENQUEUE_NARGS + 1, fcinfo->fncollation, NULL, NULL);
	inner->args[0].value = ObjectIdGetDatum(GetUserId());
	inner->args[0].isnull = false;
	for (int i = 0; i < ENQUEUE_NARGS; i++)
		inner->args[i + 1] = fcinfo->args[i];
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
	DefineCustomIntVariable("eightms.bridge_callback_timeout",
							"Longest a request's callback may run; one that runs longer is canceled and its error recorded.",
							"Callbacks run in the transaction that records outcomes: one that never ends (a lock it waits for, a loop) would hold up every outcome after it. 0 turns the limit off.",
							&bridge_callback_timeout_ms, 10 * 1000, 0, INT_MAX,
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
	CURLU	   *curlu;			/* the URL being sent, as parsed */
	char	   *host;			/* its host and origin, from that parse */
	char	   *origin;
	struct curl_slist *headers;
	int			nplain;			/* how many of headers' lines are not secret */
	bool		secret;			/* headers hold secret values: wiped when freed */
	int64		id;
	int			attempt;		/* this attempt's number, from 1 */
	int			max_attempts;
	char	   *method;
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

static bool inflight_changed = false;

/* Outcomes handed to the recorder and not yet committed by it: still held. */
typedef struct Unrecorded
{
	int64		id;
	uint64		seq;
} Unrecorded;

static Unrecorded *unrecorded = NULL;
static int	nunrecorded = 0;
static int	maxunrecorded = 0;
static uint32 my_generation = 0;

static void
bridge_exit(int code, Datum arg)
{
	if (bridge_shared != NULL)
	{
		Latch	   *recorder = NULL;

		SpinLockAcquire(&bridge_shared->mutex);
		bridge_shared->latch = NULL;
		bridge_shared->ninflight = 0;
		if (bridge_shared->generation == my_generation)
		{
			/* The recorder commits what it has, then stops. */
			bridge_shared->worker_alive = false;
			recorder = bridge_shared->recorder_latch;
		}
		SpinLockRelease(&bridge_shared->mutex);
		if (recorder != NULL)
			SetLatch(recorder);
	}
}

/*
 * Show eightms.http_in_flight() the requests sent or being sent whose
 * outcome is not recorded yet: the transfers in flight, the finished ones
 * waiting to be handed over, and those handed to the recorder.
 */
static void
publish_inflight(void)
{
	int			n = 0;
	ListCell   *lc;

	SpinLockAcquire(&bridge_shared->mutex);
	for (int i = 0; i < ninflight && n < BRIDGE_MAX_PUBLISHED; i++)
		bridge_shared->inflight_ids[n++] = inflight[i]->id;
	foreach(lc, pending)
	{
		if (n >= BRIDGE_MAX_PUBLISHED)
			break;
		bridge_shared->inflight_ids[n++] = ((BridgeResult *) lfirst(lc))->id;
	}
	for (int i = 0; i < nunrecorded && n < BRIDGE_MAX_PUBLISHED; i++)
		bridge_shared->inflight_ids[n++] = unrecorded[i].id;
	bridge_shared->ninflight = n;
	SpinLockRelease(&bridge_shared->mutex);
	inflight_changed = false;
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

/* Point the transfer's easy handle at its URL with its method and body. */
static void
setup_easy(Transfer *t)
{
	CURL	   *e = t->easy;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_CURLU, t->curlu);
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

/*
 * Easy handles are kept for the next transfers rather than created and
 * destroyed for each request; setup_easy() resets every option.
 */
static CURL *easy_pool[BRIDGE_MAX_INFLIGHT];
static int	neasy_pool = 0;

static CURL *
get_easy(void)
{
	CURL	   *e = neasy_pool > 0 ? easy_pool[--neasy_pool] : curl_easy_init();

	if (e == NULL)
		elog(ERROR, "eightms bridge: curl_easy_init failed");
	return e;
}

/* Free a curl header list, wiping it first if it holds secret values. */
static void
free_header_list(struct curl_slist *list, bool secret)
{
	if (secret)
		for (struct curl_slist *l = list; l != NULL; l = l->next)
			explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

/*
 * Headers that carry credentials although the caller did not seal them:
 * they do not follow a redirect to another origin either.
 */
static bool
is_credential_header(const char *line)
{
	static const char *const names[] = {"authorization:", "proxy-authorization:", "cookie:"};

	for (int i = 0; i < lengthof(names); i++)
		if (pg_strncasecmp(line, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/*
 * The transfer is about to follow a redirect to another origin: keep only
 * the headers that are neither secret nor credentials.  What is dropped is
 * gone for the rest of this attempt, whatever origin the redirects reach
 * later (curl too drops its own credentials across hosts; the bridge is the
 * one that set these, so it is the one to drop them).
 */
static void
drop_credentials(Transfer *t)
{
	struct curl_slist *kept = NULL;
	int			i = 0;
	int			nkept = 0;

	for (struct curl_slist *l = t->headers; l != NULL && i < t->nplain; l = l->next, i++)
		if (!is_credential_header(l->data))
		{
			kept = curl_slist_append(kept, l->data);
			nkept++;
		}
	free_header_list(t->headers, true);
	t->headers = kept;
	t->nplain = nkept;
	t->secret = false;
}

static void
free_transfer(Transfer *t)
{
	if (t->easy)
	{
		curl_multi_remove_handle(multi, t->easy);
		if (neasy_pool < BRIDGE_MAX_INFLIGHT)
			easy_pool[neasy_pool++] = t->easy;
		else
			curl_easy_cleanup(t->easy);
	}
	free_header_list(t->headers, t->secret);
	if (t->curlu)
		curl_url_cleanup(t->curlu);
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
spi_exec_plan_n(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
				int expect, long tcount)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "eightms bridge: could not prepare: %s", sql);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, NULL, false, tcount);
	if (rc != expect)
		elog(ERROR, "eightms bridge: statement failed (%d): %s", rc, sql);
}

static void
spi_exec_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values, int expect)
{
	spi_exec_plan_n(plan, sql, nargs, types, values, expect, 0);
}

/*
 * Keep the planner on the indexes for the claim and the record statements,
 * whatever the statistics say: the queue fills in bursts, and statistics
 * taken when it was nearly empty once led to sorting (or scanning) all of
 * it on every claim.  Like a function's SET clause, until plan_guards_end().
 */
static int
plan_guards_begin(bool joins)
{
	int			level = NewGUCNestLevel();

	(void) set_config_option("enable_seqscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_bitmapscan", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_sort", "off", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	if (joins)
	{
		(void) set_config_option("enable_hashjoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("enable_mergejoin", "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	}
	return level;
}

static void
plan_guards_end(int level)
{
	AtEOXact_GUC(true, level);
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

/*
 * Only one worker may send the queue: the claim below leaves requests
 * 'queued' while they are in flight, and relies on the worker's own list to
 * skip them.  The postmaster runs one bridge worker; this session-level
 * advisory lock (released when the process exits, however it exits) makes
 * sure a second one, however started, waits instead of sending twice.
 */
#define BRIDGE_LOCK_SQL "SELECT pg_catalog.pg_try_advisory_lock(3697011, 1)"	/* 0x386d73: "8ms" */

static bool
take_worker_lock(void)
{
	bool		got = false;
	bool		isnull;

	begin_tx("eightms bridge: taking the worker lock");
	if (SPI_execute(BRIDGE_LOCK_SQL, false, 1) == SPI_OK_SELECT
		&& SPI_processed == 1)
		got = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	end_tx();
	return got;
}

static ArrayType *make_array(Datum *values, bool *nulls, int n, Oid elemtype);

/*
 * The claim reads due requests without writing them: they stay 'queued'
 * while in flight, and the worker skips the ones it holds ($4, its in-flight
 * and not yet recorded ids).  A worker that dies leaves nothing to undo; its
 * requests are still queued and are sent again (at least once).  Writing a
 * 'running' state here cost a non-HOT update, with its index entries, for
 * every request.
 */
#define CLAIM_COLUMNS \
"SELECT q.id, q.method, q.url, NULL," \
"   CASE WHEN q.headers <> '{}' THEN" \
"     ARRAY(SELECT k || ': ' || v FROM jsonb_each_text(q.headers) AS h(k, v)) END," \
"   CASE WHEN q.secret_headers IS NOT NULL" \
"        THEN eightms.http_secret_header_lines(q.secret_headers, q.id, q.idempotency_key, q.url) END," \
"   q.secret_headers IS NOT NULL," \
"   q.body, q.timeout_ms, q.follow_redirects, q.idempotency_key, q.attempts, q.max_attempts," \
"   q.next_attempt_at"
#define CLAIM_DUE \
" WHERE q.state = 'queued' AND q.next_attempt_at <= now() AND q.id <> ALL ($1::bigint[])"

/*
 * Due requests in order, skipping those this worker holds ($1) and, among
 * the first $3 (four times the room), those of hosts at their limit ($2;
 * the host column is generated from the URL by the parser the worker uses,
 * and is NULL for a URL that does not parse, which the worker then refuses):
 * a host at its limit with a long queue is not walked to its end.  The
 * executor stops after the room there is (SPI's row count).
 */
static const char *claim_sql =
CLAIM_COLUMNS
"  FROM (SELECT * FROM eightms.http_request q" CLAIM_DUE
"         ORDER BY q.next_attempt_at, q.id LIMIT $3) q"
" WHERE coalesce(q.host, '') <> ALL ($2::text[])"
" ORDER BY q.next_attempt_at, q.id";

/*
 * The same from where the last claim stopped, when no host is at its
 * limit: it does not walk again past the requests this worker holds.  It
 * misses what committed late with an earlier next_attempt_at, so the full
 * claim runs too (see claim_and_start).
 */
static const char *claim_after_sql =
CLAIM_COLUMNS
"  FROM eightms.http_request q" CLAIM_DUE
"   AND (q.next_attempt_at, q.id) > ($2, $3)"
" ORDER BY q.next_attempt_at, q.id LIMIT $4";

static SPIPlanPtr claim_after_plan = NULL;

/* Where the last claim stopped, and when the last full claim ran. */
static TimestampTz cursor_at = 0;
static int64 cursor_id = 0;
static bool cursor_valid = false;
static TimestampTz last_full_claim = 0;

#define BRIDGE_FULL_CLAIM_MS 200

/*
 * Why a header line ("Name: value") may not be sent, or NULL if it may: its
 * name must be a token and its value what RFC 9110 lets a sender send in a
 * field value, visible US-ASCII with spaces and tabs only between.
 * http_check_headers() refuses the same at enqueue, but rows queued before
 * 0.2.0 were checked by a looser rule.  The message names the header only
 * by its name, and only once that is known to be a token.
 */
static char *
header_line_problem(const char *line, const char *what)
{
	const char *p = line;
	const char *v;
	const char *end;

	while (*p && (isalnum((unsigned char) *p) || strchr("!#$%&'*+-.^_`|~", *p) != NULL))
		p++;
	if (p == line || *p != ':')
		return psprintf("a header name in %s is not a valid HTTP header name", what);
	v = p + 1;
	if (*v == ' ')
		v++;
	end = v + strlen(v);
	for (const char *c = v; c < end; c++)
		if (!((*c >= 0x21 && *c <= 0x7e) || ((*c == ' ' || *c == '\t') && c > v && c < end - 1)))
			return psprintf("header %.*s in %s has a value HTTP does not allow (control or non-ASCII characters, or leading or trailing whitespace)",
							(int) Min(p - line, 64), line, what);
	return NULL;
}

/*
 * Append the lines of a text[] to a curl header list; false (and *problem
 * set) at the first line that may not be sent.
 */
static bool
append_lines(struct curl_slist **list, Datum arr, const char *what, char **problem)
{
	ArrayType  *a = DatumGetArrayTypeP(arr);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *line;

		if (nulls[i])
			continue;
		line = TextDatumGetCString(elems[i]);
		*problem = header_line_problem(line, what);
		if (*problem == NULL)
			*list = curl_slist_append(*list, line);
		explicit_bzero(line, strlen(line));
		if (*problem != NULL)
			return false;
	}
	return true;
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
start_transfer(Transfer *t)
{
	t->started = GetCurrentTimestamp();
	setup_easy(t);
	if (curl_multi_add_handle(multi, t->easy) != CURLM_OK)
		elog(ERROR, "eightms bridge: curl_multi_add_handle failed");
}

/*
 * Count one more request to host in the parallel arrays hosts/host_n (n
 * entries); returns the host's count before.
 */
static int
count_host(char **hosts, int *host_n, int *n, const char *host)
{
	for (int i = 0; i < *n; i++)
		if (strcmp(hosts[i], host) == 0)
			return host_n[i]++;
	hosts[*n] = (char *) host;
	host_n[(*n)++] = 1;
	return 0;
}

/* Undo the last count_host() for host. */
static void
uncount_host(char **hosts, int *host_n, int n, const char *host)
{
	for (int i = 0; i < n; i++)
		if (strcmp(hosts[i], host) == 0)
		{
			host_n[i]--;
			return;
		}
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
	Oid			full_types[3] = {INT8ARRAYOID, TEXTARRAYOID, INT4OID};
	Oid			after_types[4] = {INT8ARRAYOID, TIMESTAMPTZOID, INT8OID, INT4OID};
	Datum		values[4];
	bool		after;
	TimestampTz now = GetCurrentTimestamp();
	bool		skipped = false;
	int			guards;
	Datum	   *held;
	int			nheld = 0;
	Datum	   *full;
	int			nfull = 0;
	char	  **hosts;
	int		   *host_n;
	int			nhosts = 0;
	ListCell   *lc;
	int			claimed;

	if (room <= 0)
		return 0;

	/*
	 * The requests this worker holds and the table still shows queued: those
	 * in flight, and finished ones whose outcome is not recorded yet (not
	 * handed over, or handed to the recorder and not committed by it).
	 */
	held = palloc(sizeof(Datum) * (ninflight + list_length(pending) + nunrecorded + 1));
	for (int i = 0; i < ninflight; i++)
		held[nheld++] = Int64GetDatum(inflight[i]->id);
	foreach(lc, pending)
		held[nheld++] = Int64GetDatum(((BridgeResult *) lfirst(lc))->id);
	for (int i = 0; i < nunrecorded; i++)
		held[nheld++] = Int64GetDatum(unrecorded[i].id);
	values[0] = PointerGetDatum(make_array(held, NULL, nheld, INT8OID));

	/*
	 * Requests in flight by host, for the per-host limit: this worker is the
	 * only one sending, so its own list is the whole truth.  Hosts at their
	 * limit are left out of the claim; a host that fills up while the
	 * claimed rows are started keeps the rest queued for a later claim.
	 */
	hosts = palloc(sizeof(char *) * (ninflight + room));
	host_n = palloc(sizeof(int) * (ninflight + room));
	for (int i = 0; i < ninflight; i++)
		(void) count_host(hosts, host_n, &nhosts, inflight[i]->host);
	full = palloc(sizeof(Datum) * Max(nhosts, 1));
	for (int i = 0; i < nhosts; i++)
		if (host_n[i] >= bridge_per_host)
			full[nfull++] = CStringGetTextDatum(hosts[i]);
	values[1] = PointerGetDatum(make_array(full, NULL, nfull, TEXTOID));

	/*
	 * Claim from where the last one stopped while that is safe: no host was
	 * at its limit (rows behind the cursor may wait for it) and a full claim
	 * ran lately (for rows that committed late, behind the cursor).
	 */
	after = cursor_valid && nfull == 0 && now - last_full_claim < BRIDGE_FULL_CLAIM_MS * 1000;
	guards = plan_guards_begin(false);
	if (after)
	{
		values[1] = TimestampTzGetDatum(cursor_at);
		values[2] = Int64GetDatum(cursor_id);
		values[3] = Int32GetDatum(room);
		spi_exec_plan_n(&claim_after_plan, claim_after_sql, 4, after_types, values, SPI_OK_SELECT, room);
	}
	else
	{
		values[2] = Int32GetDatum(room * 4);
		spi_exec_plan_n(&claim_plan, claim_sql, 3, full_types, values, SPI_OK_SELECT, room);
		last_full_claim = now;
	}
	plan_guards_end(guards);
	claimed = (int) SPI_processed;
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		secret_null;
		char	   *host;
		MemoryContext cxt;
		MemoryContext old;
		Transfer   *t;
		char	   *url;
		char	   *key_line;
		Datum		headers;
		Datum		secret_lines;
		Datum		body;
		char	   *why = NULL;

		cursor_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 14, &isnull));
		cursor_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));

		/*
		 * Default sizes: a transfer's allocations (two 1 kB buffers among
		 * them) fit in the first block, and contexts of the standard sizes
		 * are recycled, so a transfer costs no malloc of its own.
		 */
		cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge transfer", ALLOCSET_DEFAULT_SIZES);
		old = MemoryContextSwitchTo(cxt);
		t = palloc0(sizeof(Transfer));
		t->cxt = cxt;
		t->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		t->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull)) + 1;
		url = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		/* The host and origin are those of the URL sent, never a column's. */
		t->curlu = bridge_parse_url(url, &t->host, &t->origin);
		MemoryContextSwitchTo(old);
		if (t->curlu == NULL)
		{
			*failed = lappend_pending(*failed, unsent(t->id, t->attempt,
													  "the URL is not a valid http or https URL"));
			free_transfer(t);
			continue;
		}
		host = pstrdup(t->host);	/* outlives the transfer in hosts[] */
		if (count_host(hosts, host_n, &nhosts, host) >= bridge_per_host)
		{
			/* The host filled up during this claim: the request stays queued. */
			uncount_host(hosts, host_n, nhosts, host);
			skipped = true;
			free_transfer(t);
			continue;
		}
		old = MemoryContextSwitchTo(cxt);
		t->method = TextDatumGetCString(SPI_getbinval(tup, desc, 2, &isnull));
		body = SPI_getbinval(tup, desc, 8, &isnull);
		t->body = isnull ? NULL : DatumGetByteaPCopy(body);
		t->timeout_ms = DatumGetInt32(SPI_getbinval(tup, desc, 9, &isnull));
		t->follow = DatumGetBool(SPI_getbinval(tup, desc, 10, &isnull));
		t->max_attempts = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
		initStringInfo(&t->response);
		initStringInfo(&t->response_headers);

		headers = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
			(void) append_lines(&t->headers, headers, "headers", &why);
		key_line = psprintf("Idempotency-Key: %s",
							TextDatumGetCString(SPI_getbinval(tup, desc, 11, &isnull)));
		if (why == NULL && (why = header_line_problem(key_line, "the request")) == NULL)
			t->headers = curl_slist_append(t->headers, key_line);
		/* No "Expect: 100-continue" round trip before bodies. */
		t->headers = curl_slist_append(t->headers, "Expect:");
		for (struct curl_slist *l = t->headers; l != NULL; l = l->next)
			t->nplain++;
		secret_lines = SPI_getbinval(tup, desc, 6, &secret_null);
		if (why == NULL && !secret_null)
		{
			t->secret = true;
			(void) append_lines(&t->headers, secret_lines, "secret_headers", &why);
		}
		MemoryContextSwitchTo(old);

		/*
		 * The secret headers are sealed to this request's id, idempotency
		 * key and origin: a sealed value copied from another row or with
		 * another URL does not open, and the request is not sent at all.
		 */
		if (why == NULL && secret_null && DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull)))
			why = "could not open the secret headers: they were sealed for another request or URL, "
				"or with a key not in EIGHTMS_SEAL_KEYS";
		if (why == NULL && !host_allowed(t->host))
			why = psprintf("host %s is not in eightms.bridge_allowed_hosts", t->host);
		if (why != NULL)
		{
			*failed = lappend_pending(*failed, unsent(t->id, t->attempt, why));
			free_transfer(t);
			uncount_host(hosts, host_n, nhosts, host);
			continue;
		}
		t->easy = get_easy();
		inflight[ninflight++] = t;
		inflight_changed = true;
		old = MemoryContextSwitchTo(cxt);
		start_transfer(t);
		MemoryContextSwitchTo(old);
	}

	/*
	 * A claim that came up short has seen the whole due queue: the next one
	 * starts from the beginning again.  So does one after a request was left
	 * behind the cursor for its host's limit.
	 */
	cursor_valid = claimed >= room && !skipped;
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
			CURLU	   *next;
			char	   *host;
			char	   *origin;

			/* Any scheme parses here, so that others can be named and refused. */
			if (curl_url_set(u, CURLUPART_URL, location, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK
				&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
				&& pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0)
				error = psprintf("refused to follow a redirect to a %s URL", scheme);
			curl_free(scheme);
			curl_url_cleanup(u);
			if (error == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(t->cxt);

				/* The next URL is checked and sent as this one parse says. */
				next = bridge_parse_url(location, &host, &origin);
				MemoryContextSwitchTo(old);
				if (next == NULL)
					error = pstrdup("the redirect Location is not a valid URL");
				else if (!host_allowed(host))
					error = psprintf("refused to follow a redirect to host %s, which is not in eightms.bridge_allowed_hosts", host);
				else if (t->redirects >= BRIDGE_MAX_REDIRECTS)
					error = psprintf("more than %d redirects", BRIDGE_MAX_REDIRECTS);
				if (error != NULL)
				{
					if (next != NULL)
						curl_url_cleanup(next);
				}
				else
				{
					old = MemoryContextSwitchTo(t->cxt);
					/* Credentials are for the origin they were given for. */
					if (strcmp(origin, t->origin) != 0)
						drop_credentials(t);
					curl_url_cleanup(t->curlu);
					t->curlu = next;
					t->host = host;
					t->origin = origin;
					t->redirects++;
					/* 301/302/303 turn a POST into a GET, as browsers do. */
					if (status == 303 || ((status == 301 || status == 302) && strcmp(t->method, "POST") == 0))
					{
						t->method = "GET";
						t->body = NULL;
					}
					curl_multi_remove_handle(multi, t->easy);
					start_transfer(t);
					MemoryContextSwitchTo(old);
					return NULL;
				}
			}
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
				inflight_changed = true;
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
"     (SELECT p.oid FROM pg_proc p"
"        JOIN pg_namespace n ON n.oid = p.pronamespace"
"       WHERE n.nspname = r.callback[1] AND p.proname = r.callback[2] AND p.pronargs = 2"
"         AND p.proargtypes[0] = 'bigint'::regtype AND p.proargtypes[1] = 'jsonb'::regtype) END,"
"   r.callback_context, r.enqueued_by::oid, array_to_string(r.callback, '.')";

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

	spi_exec("UPDATE eightms.http_request SET callback_error = $2 WHERE id = $1",
			 2, types, values, nulls, SPI_OK_UPDATE);
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
	if (pg_proc_aclcheck(fn, role, ACL_EXECUTE) != ACLCHECK_OK)
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
		if (bridge_callback_timeout_ms > 0)
			enable_timeout_after(STATEMENT_TIMEOUT, bridge_callback_timeout_ms);
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
		args[c] = PointerGetDatum(make_array(v[c], nl[c], n, elemtypes[c]));
	guards = plan_guards_begin(true);
	spi_exec_plan(&record_plan, record_sql, 10, argtypes, args, SPI_OK_UPDATE_RETURNING);
	plan_guards_end(guards);

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

/* ---------------------------------------------------------------------
 * Handing outcomes to the recorder
 * --------------------------------------------------------------------- */


static void
ring_copy_in(uint64 pos, const char *data, Size len)
{
	Size		off = pos % BRIDGE_RING_SIZE;
	Size		first = Min(len, BRIDGE_RING_SIZE - off);

	memcpy(bridge_shared->ring + off, data, first);
	if (first < len)
		memcpy(bridge_shared->ring, data + first, len - first);
}

static void
ring_copy_out(uint64 pos, char *data, Size len)
{
	Size		off = pos % BRIDGE_RING_SIZE;
	Size		first = Min(len, BRIDGE_RING_SIZE - off);

	memcpy(data, bridge_shared->ring + off, first);
	if (first < len)
		memcpy(data + first, bridge_shared->ring, len - first);
}

static void
put_bytes(StringInfo buf, const char *p, int32 len)
{
	appendBinaryStringInfo(buf, (const char *) &len, sizeof(len));
	if (len > 0)
		appendBinaryStringInfo(buf, p, len);
}

/*
 * One message: length (uint32, of the whole message), batch number (uint64),
 * number of outcomes (uint32), then each outcome's fields.
 */
static void
serialize_results(StringInfo buf, List *results, uint64 seq)
{
	uint32		len = 0;
	uint32		n = list_length(results);
	ListCell   *lc;

	appendBinaryStringInfo(buf, (const char *) &len, sizeof(len));
	appendBinaryStringInfo(buf, (const char *) &seq, sizeof(seq));
	appendBinaryStringInfo(buf, (const char *) &n, sizeof(n));
	foreach(lc, results)
	{
		BridgeResult *r = (BridgeResult *) lfirst(lc);
		char		state = r->state[0];	/* d(one), (d)e(ad), q(ueued) */

		if (strcmp(r->state, "dead") == 0)
			state = 'x';
		appendBinaryStringInfo(buf, (const char *) &r->id, sizeof(r->id));
		appendBinaryStringInfo(buf, (const char *) &r->attempt, sizeof(r->attempt));
		appendBinaryStringInfo(buf, (const char *) &r->started, sizeof(r->started));
		appendBinaryStringInfo(buf, (const char *) &r->duration_ms, sizeof(r->duration_ms));
		appendBinaryStringInfo(buf, (const char *) &r->status, sizeof(r->status));
		appendBinaryStringInfo(buf, (const char *) &r->next_at, sizeof(r->next_at));
		appendBinaryStringInfo(buf, &state, 1);
		put_bytes(buf, r->error, r->error ? (int32) strlen(r->error) : -1);
		put_bytes(buf, r->headers, r->headers ? (int32) strlen(r->headers) : -1);
		put_bytes(buf, r->body ? VARDATA(r->body) : NULL, r->body ? (int32) VARSIZE(r->body) - VARHDRSZ : -1);
	}
	len = buf->len;
	memcpy(buf->data, &len, sizeof(len));
}

static const char *
get_fixed(const char *p, void *dst, Size len)
{
	memcpy(dst, p, len);
	return p + len;
}

static const char *
get_string(const char *p, char **dst)
{
	int32		len;

	p = get_fixed(p, &len, sizeof(len));
	*dst = len < 0 ? NULL : pnstrdup(p, len);
	return p + Max(len, 0);
}

/* The outcomes of one message (palloc'd in the current context). */
static List *
deserialize_results(const char *msg, List *results)
{
	const char *p = msg + sizeof(uint32) + sizeof(uint64);
	uint32		n;

	p = get_fixed(p, &n, sizeof(n));
	for (uint32 i = 0; i < n; i++)
	{
		BridgeResult *r = palloc0(sizeof(BridgeResult));
		char		state;
		int32		blen;

		p = get_fixed(p, &r->id, sizeof(r->id));
		p = get_fixed(p, &r->attempt, sizeof(r->attempt));
		p = get_fixed(p, &r->started, sizeof(r->started));
		p = get_fixed(p, &r->duration_ms, sizeof(r->duration_ms));
		p = get_fixed(p, &r->status, sizeof(r->status));
		p = get_fixed(p, &r->next_at, sizeof(r->next_at));
		p = get_fixed(p, &state, 1);
		r->state = state == 'd' ? "done" : state == 'x' ? "dead" : "queued";
		p = get_string(p, &r->error);
		p = get_string(p, &r->headers);
		p = get_fixed(p, &blen, sizeof(blen));
		if (blen >= 0)
		{
			r->body = (bytea *) palloc(VARHDRSZ + blen);
			SET_VARSIZE(r->body, VARHDRSZ + blen);
			memcpy(VARDATA(r->body), p, blen);
			p += blen;
		}
		results = lappend(results, r);
	}
	return results;
}

/*
 * Give a batch of outcomes to the recorder.  False when there is no
 * recorder or no room in the ring: the caller records them itself.
 */
static bool
hand_over(List *results)
{
	StringInfoData buf;
	uint64		head;
	uint64		tail;
	uint64		seq;
	Latch	   *latch;
	bool		alive;
	ListCell   *lc;

	if (results == NIL)
		return true;

	/*
	 * A batch that could not fit in the ring (large bodies) is recorded by
	 * the worker: do not build a message of it first.
	 */
	{
		uint64		size = 0;

		foreach(lc, results)
		{
			BridgeResult *r = (BridgeResult *) lfirst(lc);

			size += 64 + (r->body ? VARSIZE(r->body) : 0)
				+ (r->headers ? strlen(r->headers) : 0) + (r->error ? strlen(r->error) : 0);
		}
		if (size > BRIDGE_RING_SIZE)
			return false;
	}

	SpinLockAcquire(&bridge_shared->mutex);
	alive = bridge_shared->recorder_pid != 0;
	head = bridge_shared->head;
	tail = bridge_shared->tail;
	seq = bridge_shared->sent_seq + 1;
	SpinLockRelease(&bridge_shared->mutex);
	if (!alive)
		return false;

	initStringInfo(&buf);
	serialize_results(&buf, results, seq);
	if ((uint64) buf.len > BRIDGE_RING_SIZE - (head - tail))
	{
		pfree(buf.data);
		return false;
	}
	/* Only this process writes past head, and the recorder reads below it. */
	ring_copy_in(head, buf.data, buf.len);
	SpinLockAcquire(&bridge_shared->mutex);
	bridge_shared->head = head + buf.len;
	bridge_shared->sent_seq = seq;
	latch = bridge_shared->recorder_latch;
	SpinLockRelease(&bridge_shared->mutex);
	pfree(buf.data);

	if (nunrecorded + list_length(results) > maxunrecorded)
	{
		maxunrecorded = Max(2 * maxunrecorded, nunrecorded + list_length(results) + 64);
		unrecorded = unrecorded == NULL
			? MemoryContextAlloc(bridge_cxt, sizeof(Unrecorded) * maxunrecorded)
			: repalloc(unrecorded, sizeof(Unrecorded) * maxunrecorded);
	}
	foreach(lc, results)
	{
		unrecorded[nunrecorded].id = ((BridgeResult *) lfirst(lc))->id;
		unrecorded[nunrecorded++].seq = seq;
	}
	if (latch != NULL)
		SetLatch(latch);
	return true;
}

/*
 * Forget the handed-over outcomes the recorder has committed.  A recorder
 * that stopped before committing some leaves them neither recorded nor
 * sendable by this worker: it exits, and the next worker sends them again.
 */
static void
prune_unrecorded(void)
{
	uint64		recorded;
	bool		alive;
	int			keep = 0;

	if (nunrecorded == 0)
		return;
	SpinLockAcquire(&bridge_shared->mutex);
	recorded = bridge_shared->recorded_seq;
	alive = bridge_shared->recorder_pid != 0;
	SpinLockRelease(&bridge_shared->mutex);
	for (int i = 0; i < nunrecorded; i++)
		if (unrecorded[i].seq > recorded)
			unrecorded[keep++] = unrecorded[i];
	nunrecorded = keep;
	if (nunrecorded > 0 && !alive)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("eightms bridge: the recorder stopped before recording %d outcomes", nunrecorded),
				 errdetail("The worker restarts; those requests are still queued and are sent again.")));
}

static TimestampTz recorder_started_at = 0;

/* Start the recorder for this worker's generation; false if it cannot be. */
static bool
start_recorder(void)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;

	recorder_started_at = GetCurrentTimestamp();

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "eightms");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "eightms_bridge_recorder_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "eightms bridge recorder");
	snprintf(w.bgw_type, BGW_MAXLEN, "eightms bridge recorder");
	w.bgw_main_arg = UInt32GetDatum(my_generation);
	w.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&w, &handle))
	{
		static bool logged = false;

		if (!logged)
			ereport(LOG,
					(errmsg("eightms bridge: could not start the recorder; the worker records outcomes itself"),
					 errhint("Raise max_worker_processes.")));
		logged = true;
		return false;
	}
	return true;
}

static void
recorder_exit(int code, Datum arg)
{
	SpinLockAcquire(&bridge_shared->mutex);
	if (bridge_shared->recorder_pid == MyProcPid)
	{
		bridge_shared->recorder_pid = 0;
		bridge_shared->recorder_latch = NULL;
	}
	SpinLockRelease(&bridge_shared->mutex);
}

/*
 * What the worker and the recorder do first: signals, and a connection to
 * the bridge database under their name.  Their commits need not wait for
 * the WAL flush: a crash that loses one only makes a request look unsent or
 * unfinished, and it is sent again (at least once), which the
 * Idempotency-Key covers.
 */
static void
bridge_process_start(const char *name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(bridge_database, NULL, 0);
	pgstat_report_appname(name);
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	/*
	 * Their statements run as superuser: only pg_catalog's functions and
	 * operators, whatever a schema on the default path holds (callbacks get
	 * the default path back, see run_callback).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
}

/*
 * Wait until the extension's SQL in the bridge database is the version of
 * this library: not installed yet in a new cluster, or a new library
 * installed and the server restarted before ALTER EXTENSION eightms UPDATE.
 * Until then the statements below would run against tables and functions
 * they were not written for.
 */
static void
wait_for_schema(const char *who)
{
	bool		logged = false;

	for (;;)
	{
		char	   *installed = NULL;

		begin_tx("eightms bridge: waiting for the extension");
		if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'eightms'",
						true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			installed = v ? MemoryContextStrdup(tx_caller_cxt, v) : NULL;
		}
		end_tx();
		if (installed != NULL && strcmp(installed, EIGHTMS_VERSION) == 0)
		{
			if (logged)
				ereport(LOG, (errmsg("%s: extension eightms is at version %s now; starting", who, installed)));
			return;
		}
		if (installed != NULL && !logged)
		{
			ereport(LOG,
					(errmsg("%s: the library is eightms %s but database \"%s\" has eightms %s; waiting",
							who, EIGHTMS_VERSION, bridge_database, installed),
					 errhint("Run ALTER EXTENSION eightms UPDATE in that database.")));
			logged = true;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 2000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * The recorder: takes the batches of outcomes the worker hands over, records
 * them (and runs their callbacks) in one transaction for all that have
 * arrived, and tells the worker which batches are committed.  It stops with
 * the worker that started it.
 */
void
eightms_bridge_recorder_main(Datum arg)
{
	uint32		gen = DatumGetUInt32(arg);
	MemoryContext batch_cxt;
	bool		ok;

	bridge_process_start("eightms bridge recorder");
	bridge_cxt = AllocSetContextCreate(TopMemoryContext, "eightms bridge recorder", ALLOCSET_DEFAULT_SIZES);
	batch_cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge recorder batch", ALLOCSET_DEFAULT_SIZES);

	SpinLockAcquire(&bridge_shared->mutex);
	ok = bridge_shared->generation == gen && bridge_shared->worker_alive
		&& bridge_shared->recorder_pid == 0;
	if (ok)
	{
		bridge_shared->recorder_pid = MyProcPid;
		bridge_shared->recorder_latch = MyLatch;
	}
	SpinLockRelease(&bridge_shared->mutex);
	if (!ok)
		proc_exit(0);
	on_shmem_exit(recorder_exit, (Datum) 0);
	/* The worker checked before starting it; checked again all the same. */
	wait_for_schema("eightms bridge recorder");

	for (;;)
	{
		uint64		head;
		uint64		tail;
		uint64		last_seq = 0;
		bool		current;
		char	   *buf;
		List	   *results = NIL;
		Latch	   *worker_latch;

		MemoryContextReset(batch_cxt);
		MemoryContextSwitchTo(batch_cxt);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		SpinLockAcquire(&bridge_shared->mutex);
		current = bridge_shared->generation == gen;
		head = bridge_shared->head;
		tail = bridge_shared->tail;
		if (current && head == tail && !bridge_shared->worker_alive)
			current = false;
		SpinLockRelease(&bridge_shared->mutex);
		if (!current)
			proc_exit(0);
		if (head == tail)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 1000L,
							 PG_WAIT_EXTENSION);
			continue;
		}

		/* Take every batch handed over so far, and free their room. */
		buf = palloc(head - tail);
		ring_copy_out(tail, buf, head - tail);
		SpinLockAcquire(&bridge_shared->mutex);
		current = bridge_shared->generation == gen;
		if (current)
			bridge_shared->tail = head;
		SpinLockRelease(&bridge_shared->mutex);
		if (!current)
			proc_exit(0);
		for (uint64 off = 0; off < head - tail;)
		{
			uint32		len;

			memcpy(&len, buf + off, sizeof(len));
			memcpy(&last_seq, buf + off + sizeof(uint32), sizeof(last_seq));
			results = deserialize_results(buf + off, results);
			off += len;
		}

		begin_tx("eightms bridge recorder: recording outcomes");
		record_results(results);
		end_tx();

		SpinLockAcquire(&bridge_shared->mutex);
		if (bridge_shared->generation == gen)
			bridge_shared->recorded_seq = last_seq;
		worker_latch = bridge_shared->latch;
		SpinLockRelease(&bridge_shared->mutex);
		if (worker_latch != NULL)
			SetLatch(worker_latch);
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
	bridge_process_start("eightms bridge");
	bridge_cxt = AllocSetContextCreate(TopMemoryContext, "eightms bridge", ALLOCSET_DEFAULT_SIZES);
	/* Reset all the time: a first block (kept on reset) that holds a turn. */
	iter_cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge loop",
									 0, 64 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	pending_cxt = AllocSetContextCreate(bridge_cxt, "eightms bridge results",
										0, 128 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	inflight = MemoryContextAlloc(bridge_cxt, sizeof(Transfer *) * BRIDGE_MAX_INFLIGHT);

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "eightms bridge: could not initialise libcurl");
	multi = new_multi();

	wait_for_schema("eightms bridge");

	/* Wait while another bridge worker holds the queue. */
	while (!take_worker_lock())
	{
		ereport(LOG, (errmsg("eightms bridge: another bridge worker is running; waiting")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 5000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/*
	 * A recorder left by the previous worker commits what it holds and
	 * stops; wait for it (bounded: one that is stuck sees the new generation
	 * and drops what it has).
	 */
	for (int i = 0; i < 300; i++)
	{
		pid_t		pid;

		SpinLockAcquire(&bridge_shared->mutex);
		pid = bridge_shared->recorder_pid;
		SpinLockRelease(&bridge_shared->mutex);
		if (pid == 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	SpinLockAcquire(&bridge_shared->mutex);
	bridge_shared->latch = MyLatch;
	my_generation = ++bridge_shared->generation;
	bridge_shared->worker_alive = true;
	bridge_shared->head = bridge_shared->tail = 0;
	bridge_shared->sent_seq = bridge_shared->recorded_seq = 0;
	SpinLockRelease(&bridge_shared->mutex);
	on_shmem_exit(bridge_exit, (Datum) 0);
	(void) start_recorder();
	ereport(LOG, (errmsg("eightms bridge started on database \"%s\"", bridge_database)));

	/*
	 * The loop hands finished requests to the recorder and claims new ones
	 * in batches: a transaction per completion would cost more than the
	 * HTTP itself.  A batch is three quarters of the concurrency limit (a
	 * claim costs a transaction of its own: with a quarter the worker used
	 * 10-25% more CPU per request than with a half, and a half ran at
	 * 0.42-0.57 of plain libcurl against 0.51-0.60 for three quarters in
	 * bench/bridge), or whatever has waited 2 ms, or everything once nothing
	 * is in flight.
	 */
	for (;;)
	{
		List	   *failed = NIL;
		int			running = 0;
		int			batch = Max(1, bridge_max_concurrency * 3 / 4);
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
			while (neasy_pool > 0)
				curl_easy_cleanup(easy_pool[--neasy_pool]);
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
			bool		self_record = do_record && !hand_over(pending);

			if (self_record || do_claim)
			{
				begin_tx("eightms bridge: recording results and claiming requests");
				if (self_record)
					record_results(pending);
				if (do_claim)
				{
					int			claimed;

					prune_unrecorded();
					claimed = claim_and_start(&failed);
					claim_was_full = (claimed >= room);
					if (failed != NIL && !hand_over(failed))
						record_results(failed);
					/* Look again within a second for retries coming due. */
					next_due = TimestampTzPlusMilliseconds(now, 1000);
				}
				end_tx();
			}
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
				inflight_changed = true;
			}
			if (inflight_changed)
				publish_inflight();
			continue;
		}

		if (nunrecorded > 0)
		{
			int			before = nunrecorded;

			prune_unrecorded();
			if (nunrecorded != before)
				inflight_changed = true;
		}
		else if (now - recorder_started_at >= 10 * USECS_PER_SEC)
		{
			pid_t		pid;

			/*
			 * A recorder that stopped with nothing to record left no request
			 * behind: start another (a spare one started meanwhile exits).
			 */
			SpinLockAcquire(&bridge_shared->mutex);
			pid = bridge_shared->recorder_pid;
			SpinLockRelease(&bridge_shared->mutex);
			if (pid == 0)
				(void) start_recorder();
			else
				recorder_started_at = now;
		}
		if (inflight_changed)
			publish_inflight();
		if (ninflight > 0)
			curl_multi_poll(multi, NULL, 0, pending != NIL ? 2 : 10, NULL);
		else if (pending == NIL && nunrecorded > 0)
		{
			/* The recorder sets the latch when it has committed. */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L,
							 PG_WAIT_EXTENSION);
			next_due = 0;
		}
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
