/*
 * bridge_internal.h
 *		What the files of the HTTP bridge share with one another, and
 *		nothing outside src/bridge/ includes.
 *
 * The bridge is two background workers, the worker (claims and sends) and
 * the recorder (records outcomes), and the SQL functions around them:
 *
 *	api.c		SQL-callable functions, GUCs, the worker's registration
 *	worker.c	the worker's main loop
 *	transfer.c	libcurl: the requests in flight, URLs, headers, outcomes
 *	queue.c		SPI: transactions, the claim, the worker lock
 *	recorder.c	recording outcomes and running callbacks; the recorder
 *	handoff.c	shared memory: the worker's latch, the in-flight list, and
 *				the queue that carries outcomes from worker to recorder
 *	bridge_address.c	which addresses may be connected to
 *
 * Each file keeps the state it owns in one struct of its own; the GUCs are
 * api.c's, read by the others.
 */
#ifndef EIGHTMS_BRIDGE_INTERNAL_H
#define EIGHTMS_BRIDGE_INTERNAL_H

#include <curl/curl.h>

#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/array.h"

/* The GUCs (api.c defines them; the other files only read them). */
typedef struct BridgeSettings
{
	bool		enabled;
	char	   *database;
	int			max_concurrency;
	int			per_host;
	char	   *allowed_hosts;
	bool		allow_private;
	int			max_response;
	int			retry_base_ms;
	int			retry_max_ms;
	int			callback_timeout_ms;
} BridgeSettings;

extern BridgeSettings bridge_settings;

#define BRIDGE_MAX_REDIRECTS 5
#define BRIDGE_MAX_RETRY_AFTER_S 3600

/* Most requests the worker can have in flight (the concurrency GUC's limit). */
#define BRIDGE_MAX_INFLIGHT 1024
/* In flight, or finished and not recorded yet (at most as many again). */
#define BRIDGE_MAX_PUBLISHED (2 * BRIDGE_MAX_INFLIGHT)

/* One request being sent (transfer.c). */
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

/* The outcome of one attempt, to be recorded. */
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

/* transfer.c: libcurl */
extern CURLU *bridge_parse_url(const char *url, char **host, char **origin);
extern bool bridge_host_allowed(const char *host);
extern char *bridge_header_line_problem(const char *line, const char *what);
extern bool bridge_append_header_lines(struct curl_slist **list, Datum arr,
									   const char *what, char **problem);
extern void bridge_transfers_init(MemoryContext cxt);
extern void bridge_transfers_reconfigure(void);
extern void bridge_transfers_refresh_if_idle(void);
extern int	bridge_transfers_running(void);
extern Transfer *bridge_transfer_at(int i);
extern Transfer *bridge_transfer_new(void);
extern void bridge_transfer_launch(Transfer *t);
extern void bridge_transfer_free(Transfer *t);
extern void bridge_transfers_perform(void);
extern void bridge_transfers_poll(int timeout_ms);
extern List *bridge_collect_done(List *results, MemoryContext result_cxt);

/* queue.c: SPI */
extern void bridge_process_start(const char *name);
extern void bridge_begin_tx(const char *activity);
extern void bridge_end_tx(void);
extern void bridge_wait_for_schema(const char *who);
extern bool bridge_take_worker_lock(void);
extern bool bridge_node_is_citus_worker(void);
extern long bridge_ms_until_next_due(void);
extern ArrayType *bridge_make_array(Datum *values, bool *nulls, int n, Oid elemtype);
extern void bridge_spi_exec(const char *sql, int nargs, Oid *types, Datum *values,
							const char *nulls, int expect);
extern void bridge_spi_exec_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types,
								 Datum *values, int expect, long tcount);
extern int	bridge_plan_guards_begin(bool joins);
extern void bridge_plan_guards_end(int level);
extern int	bridge_claim_and_start(const int64 *held, int nheld, List **failed,
								   MemoryContext result_cxt);

/* recorder.c */
extern void bridge_record_results(List *results);

/* handoff.c: shared memory, and outcomes from the worker to the recorder */
extern void bridge_shmem_init(void);
extern void bridge_wake_worker(void);
extern int	bridge_read_inflight(int64 *ids);
extern void bridge_publish_inflight(const int64 *ids, int n);
extern void bridge_worker_begin(void);
extern bool bridge_start_recorder(void);
extern void bridge_restart_recorder_if_stopped(TimestampTz now);
extern bool bridge_hand_over(List *results);
extern void bridge_handoff_flush(void);
extern int	bridge_nunrecorded(void);
extern int	bridge_unrecorded(int64 *ids, int max);
extern bool bridge_prune_unrecorded(void);
extern bool bridge_recorder_attach(Datum arg);
extern bool bridge_recorder_take(List **results, uint64 *last_seq);
extern bool bridge_recorder_current(void);
extern void bridge_recorder_committed(uint64 seq);

#endif							/* EIGHTMS_BRIDGE_INTERNAL_H */
