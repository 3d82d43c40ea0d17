/*
 * queue.c
 *		The bridge's statements on eightms.http_request through SPI: its
 *		transactions, the claim, the worker lock, the wait for the schema.
 *
 * The worker and the recorder run them as superuser with a search_path of
 * pg_catalog only (bridge_process_start), from plans prepared once and kept
 * for the process's life where they run on every turn.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bridge_internal.h"

/* The claim's plans and where the last claim stopped. */
static struct
{
	MemoryContext tx_caller_cxt;	/* where bridge_end_tx() returns to */
	SPIPlanPtr	claim_plan;
	SPIPlanPtr	claim_after_plan;
	TimestampTz cursor_at;
	int64		cursor_id;
	bool		cursor_valid;
	TimestampTz last_full_claim;	/* when the last full claim ran */
}			queue;

/*
 * What the worker and the recorder do first: signals, and a connection to
 * the bridge database under their name.  Their commits need not wait for
 * the WAL flush: a crash that loses one only makes a request look unsent or
 * unfinished, and it is sent again (at least once), which the
 * Idempotency-Key covers.
 */
void
bridge_process_start(const char *name)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(bridge_settings.database, NULL, 0);
	pgstat_report_appname(name);
	SetConfigOption("synchronous_commit", "off", PGC_USERSET, PGC_S_SESSION);
	/*
	 * Their statements run as superuser: only pg_catalog's functions and
	 * operators, whatever a schema on the default path holds (callbacks get
	 * the default path back, see run_callback() in recorder.c).
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION);
}

/*
 * Wait until the extension's SQL in the bridge database is the version of
 * this library: not installed yet in a new cluster, or a new library
 * installed and the server restarted before ALTER EXTENSION eightms UPDATE.
 * Until then the bridge's statements would run against tables and
 * functions they were not written for.
 */
void
bridge_wait_for_schema(const char *who)
{
	bool		logged = false;

	for (;;)
	{
		char	   *installed = NULL;

		bridge_begin_tx("eightms bridge: waiting for the extension");
		if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'eightms'",
						true, 1) == SPI_OK_SELECT && SPI_processed == 1)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			installed = v ? MemoryContextStrdup(queue.tx_caller_cxt, v) : NULL;
		}
		bridge_end_tx();
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
							who, EIGHTMS_VERSION, bridge_settings.database, installed),
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

/* Run one statement through SPI, raising on failure. */
void
bridge_spi_exec(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
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
void
bridge_spi_exec_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
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

/*
 * Keep the planner on the indexes for the claim and the record statements,
 * whatever the statistics say: the queue fills in bursts, and statistics
 * taken when it was nearly empty once led to sorting (or scanning) all of
 * it on every claim.  Like a function's SET clause, until plan_guards_end().
 */
int
bridge_plan_guards_begin(bool joins)
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

void
bridge_plan_guards_end(int level)
{
	AtEOXact_GUC(true, level);
}

void
bridge_begin_tx(const char *activity)
{
	queue.tx_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);
}

void
bridge_end_tx(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(queue.tx_caller_cxt);
}

/*
 * Only one worker may send the queue: the claim below leaves requests
 * 'queued' while they are in flight, and relies on the worker's own list to
 * skip them.  The postmaster runs one bridge worker; this session-level
 * advisory lock (released when the process exits, however it exits) makes
 * sure a second one, however started, waits instead of sending twice.
 */
#define BRIDGE_LOCK_SQL "SELECT pg_catalog.pg_try_advisory_lock(3697011, 1)"	/* 0x386d73: "8ms" */

bool
bridge_take_worker_lock(void)
{
	bool		got = false;
	bool		isnull;

	bridge_begin_tx("eightms bridge: taking the worker lock");
	if (SPI_execute(BRIDGE_LOCK_SQL, false, 1) == SPI_OK_SELECT
		&& SPI_processed == 1)
		got = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	bridge_end_tx();
	return got;
}


/*
 * Whether this node is a worker of a Citus cluster, in the caller's
 * transaction.  On Citus the coordinator's bridge sends the queue: every
 * node runs a bridge worker (the same shared_preload_libraries), and a
 * queue every node could see, made a reference table say, would be sent
 * once per node.  A node that has the citus extension in the bridge
 * database and a group other than 0 (the coordinator's) is a worker; a
 * node not added to a cluster yet is in group 0 and sends its own queue.
 */
bool
bridge_node_is_citus_worker(void)
{
	bool		worker = false;
	bool		isnull;

	if (SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'", true, 1) != SPI_OK_SELECT
		|| SPI_processed == 0)
		return false;
	if (SPI_execute("SELECT groupid <> 0 FROM pg_catalog.pg_dist_local_group", true, 1) == SPI_OK_SELECT
		&& SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		worker = !isnull && DatumGetBool(d);
	}
	return worker;
}

ArrayType *
bridge_make_array(Datum *values, bool *nulls, int n, Oid elemtype)
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

#define BRIDGE_FULL_CLAIM_MS 200

/*
 * A request that ends without being sent (it is recorded as dead): its
 * result joins *failed in result_cxt, where results wait to be recorded.
 */
static void
append_unsent(List **failed, Transfer *t, const char *why, MemoryContext result_cxt)
{
	MemoryContext old = MemoryContextSwitchTo(result_cxt);
	BridgeResult *r = palloc0(sizeof(BridgeResult));

	r->id = t->id;
	r->attempt = t->attempt;
	r->started = GetCurrentTimestamp();
	r->state = "dead";
	r->error = pstrdup(why);
	*failed = lappend(*failed, r);
	MemoryContextSwitchTo(old);
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
 * Claim due requests up to the concurrency limits and start them, skipping
 * the nheld requests of held: those this worker has in flight, and finished
 * ones whose outcome is not recorded yet (not handed over, or handed to the
 * recorder and not committed by it), which the table still shows queued.
 * Requests that cannot be sent at all (host not allowed, secret headers that
 * do not open) are appended to *failed, in result_cxt, to be recorded as
 * dead.
 */
int
bridge_claim_and_start(const int64 *held, int nheld, List **failed, MemoryContext result_cxt)
{
	int			ninflight = bridge_transfers_running();
	int			room = bridge_settings.max_concurrency - ninflight;
	Oid			full_types[3] = {INT8ARRAYOID, TEXTARRAYOID, INT4OID};
	Oid			after_types[4] = {INT8ARRAYOID, TIMESTAMPTZOID, INT8OID, INT4OID};
	Datum		values[4];
	bool		after;
	TimestampTz now = GetCurrentTimestamp();
	bool		skipped = false;
	int			guards;
	Datum	   *held_ids;
	Datum	   *full;
	int			nfull = 0;
	char	  **hosts;
	int		   *host_n;
	int			nhosts = 0;
	MemoryContext old;
	int			claimed;

	if (room <= 0)
		return 0;

	held_ids = palloc(sizeof(Datum) * (nheld + 1));
	for (int i = 0; i < nheld; i++)
		held_ids[i] = Int64GetDatum(held[i]);
	values[0] = PointerGetDatum(bridge_make_array(held_ids, NULL, nheld, INT8OID));

	/*
	 * Requests in flight by host, for the per-host limit: this worker is the
	 * only one sending, so its own list is the whole truth.  Hosts at their
	 * limit are left out of the claim; a host that fills up while the
	 * claimed rows are started keeps the rest queued for a later claim.
	 */
	hosts = palloc(sizeof(char *) * (ninflight + room));
	host_n = palloc(sizeof(int) * (ninflight + room));
	for (int i = 0; i < ninflight; i++)
		(void) count_host(hosts, host_n, &nhosts, bridge_transfer_at(i)->host);
	full = palloc(sizeof(Datum) * Max(nhosts, 1));
	for (int i = 0; i < nhosts; i++)
		if (host_n[i] >= bridge_settings.per_host)
			full[nfull++] = CStringGetTextDatum(hosts[i]);
	values[1] = PointerGetDatum(bridge_make_array(full, NULL, nfull, TEXTOID));

	/*
	 * Claim from where the last one stopped while that is safe: no host was
	 * at its limit (rows behind the cursor may wait for it) and a full claim
	 * ran lately (for rows that committed late, behind the cursor).
	 */
	after = queue.cursor_valid && nfull == 0 && now - queue.last_full_claim < BRIDGE_FULL_CLAIM_MS * 1000;
	guards = bridge_plan_guards_begin(false);
	if (after)
	{
		values[1] = TimestampTzGetDatum(queue.cursor_at);
		values[2] = Int64GetDatum(queue.cursor_id);
		values[3] = Int32GetDatum(room);
		bridge_spi_exec_plan(&queue.claim_after_plan, claim_after_sql, 4, after_types, values, SPI_OK_SELECT, room);
	}
	else
	{
		values[2] = Int32GetDatum(room * 4);
		bridge_spi_exec_plan(&queue.claim_plan, claim_sql, 3, full_types, values, SPI_OK_SELECT, room);
		queue.last_full_claim = now;
	}
	bridge_plan_guards_end(guards);
	claimed = (int) SPI_processed;
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bool		secret_null;
		char	   *host;
		Transfer   *t;
		char	   *url;
		char	   *key_line;
		Datum		headers;
		Datum		secret_lines;
		Datum		body;
		char	   *why = NULL;

		queue.cursor_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 14, &isnull));
		queue.cursor_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));

		t = bridge_transfer_new();
		old = MemoryContextSwitchTo(t->cxt);
		t->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		t->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 12, &isnull)) + 1;
		url = TextDatumGetCString(SPI_getbinval(tup, desc, 3, &isnull));
		/* The host and origin are those of the URL sent, never a column's. */
		t->curlu = bridge_parse_url(url, &t->host, &t->origin);
		MemoryContextSwitchTo(old);
		if (t->curlu == NULL)
		{
			append_unsent(failed, t, "the URL is not a valid http or https URL", result_cxt);
			bridge_transfer_free(t);
			continue;
		}
		host = pstrdup(t->host);	/* outlives the transfer in hosts[] */
		if (count_host(hosts, host_n, &nhosts, host) >= bridge_settings.per_host)
		{
			/* The host filled up during this claim: the request stays queued. */
			uncount_host(hosts, host_n, nhosts, host);
			skipped = true;
			bridge_transfer_free(t);
			continue;
		}
		old = MemoryContextSwitchTo(t->cxt);
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
			(void) bridge_append_header_lines(&t->headers, headers, "headers", &why);
		key_line = psprintf("Idempotency-Key: %s",
							TextDatumGetCString(SPI_getbinval(tup, desc, 11, &isnull)));
		if (why == NULL && (why = bridge_header_line_problem(key_line, "the request")) == NULL)
			t->headers = curl_slist_append(t->headers, key_line);
		/* No "Expect: 100-continue" round trip before bodies. */
		t->headers = curl_slist_append(t->headers, "Expect:");
		for (struct curl_slist *l = t->headers; l != NULL; l = l->next)
			t->nplain++;
		secret_lines = SPI_getbinval(tup, desc, 6, &secret_null);
		if (why == NULL && !secret_null)
		{
			t->secret = true;
			(void) bridge_append_header_lines(&t->headers, secret_lines, "secret_headers", &why);
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
		if (why == NULL && !bridge_host_allowed(t->host))
			why = psprintf("host %s is not in eightms.bridge_allowed_hosts", t->host);
		if (why != NULL)
		{
			append_unsent(failed, t, why, result_cxt);
			bridge_transfer_free(t);
			uncount_host(hosts, host_n, nhosts, host);
			continue;
		}
		bridge_transfer_launch(t);
	}

	/*
	 * A claim that came up short has seen the whole due queue: the next one
	 * starts from the beginning again.  So does one after a request was left
	 * behind the cursor for its host's limit.
	 */
	queue.cursor_valid = claimed >= room && !skipped;
	return claimed;
}


/* Milliseconds until the next queued request is due (capped), for sleeping. */
long
bridge_ms_until_next_due(void)
{
	long		ms = 60000;
	bool		isnull;

	bridge_begin_tx("eightms bridge: idle");
	if (SPI_execute("SELECT ceil(extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint"
					" FROM eightms.http_request WHERE state = 'queued'", true, 1) == SPI_OK_SELECT
		&& SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			ms = (long) Max(0, Min(DatumGetInt64(d), 60000));
	}
	bridge_end_tx();
	return ms;
}
