/*
 * worker.c
 *		The bridge worker's main loop: claim due requests, drive their
 *		transfers, and hand the outcomes to the recorder.
 *
 * Claiming a request writes nothing: it stays 'queued' until its outcome is
 * recorded, and the worker skips the requests it holds (queue.c).  So the
 * worker keeps, and publishes for eightms.http_in_flight(), every request
 * it holds: in flight (transfer.c), finished and not handed over yet (the
 * pending list here), and handed to the recorder and not committed by it
 * (handoff.c).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/pmsignal.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bridge_internal.h"

PGDLLEXPORT void eightms_bridge_main(Datum arg);

/* The worker's loop state. */
static struct
{
	MemoryContext cxt;			/* the worker's lifetime */
	MemoryContext iter_cxt;		/* one turn of the main loop */
	MemoryContext pending_cxt;	/* results not yet recorded */
	List	   *pending;		/* finished requests waiting to be recorded */
	TimestampTz pending_since;
	TimestampTz next_due;		/* when the claim looks again */
	bool		claim_was_full;
	bool		inflight_changed;	/* the published list is out of date */
	bool		citus_worker;	/* a Citus worker node: claims nothing */
	TimestampTz next_node_check;	/* when to ask again */
}			W;

/*
 * Whether this node is a Citus worker, asked again every 10 seconds (a node
 * is added to a cluster, or removed from one, while the server runs).  A
 * worker node's bridge claims nothing: it finishes what it holds and stays
 * idle, whatever its settings say (doc/scale-out.md).
 */
static void
check_node(TimestampTz now)
{
	bool		worker;

	if (now < W.next_node_check)
		return;
	bridge_begin_tx("eightms bridge: checking the node's place in a Citus cluster");
	worker = bridge_node_is_citus_worker();
	bridge_end_tx();
	if (worker != W.citus_worker)
		ereport(LOG,
				(errmsg(worker ? "eightms bridge: this node is a Citus worker; the coordinator's bridge sends the queue, this one stays idle"
						: "eightms bridge: this node is not a Citus worker; sending the queue")));
	W.citus_worker = worker;
	W.next_node_check = TimestampTzPlusMilliseconds(now, 10000);
}

/*
 * The ids of the requests this worker holds, which the table still shows
 * queued: in flight, finished and not handed over, handed over and not
 * committed (palloc'd).
 */
static int
held_requests(int64 **ids)
{
	int			nrunning = bridge_transfers_running();
	int			max = nrunning + list_length(W.pending) + bridge_nunrecorded();
	int64	   *out = palloc(sizeof(int64) * Max(max, 1));
	int			n = 0;
	ListCell   *lc;

	for (int i = 0; i < nrunning; i++)
		out[n++] = bridge_transfer_at(i)->id;
	foreach(lc, W.pending)
		out[n++] = ((BridgeResult *) lfirst(lc))->id;
	n += bridge_unrecorded(out + n, max - n);
	*ids = out;
	return n;
}

/* Show eightms.http_in_flight() the requests sent and not recorded yet. */
static void
publish_inflight(void)
{
	int64	   *ids;
	int			n = held_requests(&ids);

	bridge_publish_inflight(ids, n);
	pfree(ids);
	W.inflight_changed = false;
}

/*
 * Claim and start due requests, in the caller's transaction.  Those that
 * cannot be sent are recorded as dead, by the recorder or here.  Returns
 * how many rows the claim returned.
 */
static int
claim(void)
{
	int64	   *held;
	int			nheld = held_requests(&held);
	int			before = bridge_transfers_running();
	List	   *failed = NIL;
	int			claimed;

	claimed = bridge_claim_and_start(held, nheld, &failed, W.pending_cxt);
	if (bridge_transfers_running() != before)
		W.inflight_changed = true;
	if (failed != NIL && !bridge_hand_over(failed))
		bridge_record_results(failed);
	return claimed;
}

void
eightms_bridge_main(Datum arg)
{
	bridge_process_start("eightms bridge");
	W.cxt = AllocSetContextCreate(TopMemoryContext, "eightms bridge", ALLOCSET_DEFAULT_SIZES);
	/* Reset all the time: a first block (kept on reset) that holds a turn. */
	W.iter_cxt = AllocSetContextCreate(W.cxt, "eightms bridge loop",
									   0, 64 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	W.pending_cxt = AllocSetContextCreate(W.cxt, "eightms bridge results",
										  0, 128 * 1024, ALLOCSET_DEFAULT_MAXSIZE);
	bridge_transfers_init(W.cxt);

	bridge_wait_for_schema("eightms bridge");

	/* Wait while another bridge worker holds the queue. */
	while (!bridge_take_worker_lock())
	{
		ereport(LOG, (errmsg("eightms bridge: another bridge worker is running; waiting")));
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 5000L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	bridge_worker_begin();
	(void) bridge_start_recorder();
	ereport(LOG, (errmsg("eightms bridge started on database \"%s\"", bridge_settings.database)));

	/*
	 * The loop hands finished requests to the recorder and claims new ones
	 * in batches: a transaction per completion would cost more than the
	 * HTTP itself.  A batch is three quarters of the concurrency limit (a
	 * claim costs a transaction of its own; bench/README.md has the figures
	 * behind that fraction), or whatever has waited 2 ms, or everything once
	 * nothing is in flight.
	 */
	for (;;)
	{
		int			batch = Max(1, bridge_settings.max_concurrency * 3 / 4);
		int			room;
		int			before;
		bool		woken;
		bool		do_claim;
		bool		do_record;
		TimestampTz now;

		MemoryContextReset(W.iter_cxt);
		MemoryContextSwitchTo(W.iter_cxt);
		CHECK_FOR_INTERRUPTS();
		if (!PostmasterIsAlive())
			proc_exit(1);
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			bridge_transfers_reconfigure();
			W.next_due = 0;
		}
		bridge_transfers_refresh_if_idle();

		woken = MyLatch->is_set;
		ResetLatch(MyLatch);
		bridge_transfers_perform();
		if (W.pending == NIL)
			W.pending_since = GetCurrentTimestamp();
		before = bridge_transfers_running();
		W.pending = bridge_collect_done(W.pending, W.pending_cxt);
		if (bridge_transfers_running() != before)
			W.inflight_changed = true;
		/* The rest of a batch the queue had no room for, if any. */
		bridge_handoff_flush();

		now = GetCurrentTimestamp();
		check_node(now);
		room = bridge_settings.max_concurrency - bridge_transfers_running();
		do_claim = !W.citus_worker && (woken || W.claim_was_full || now >= W.next_due)
			&& (room >= batch || (bridge_transfers_running() == 0 && room > 0));
		do_record = W.pending != NIL
			&& (list_length(W.pending) >= batch || bridge_transfers_running() == 0 || do_claim
				|| now - W.pending_since >= 2000);

		if (do_claim || do_record)
		{
			ListCell   *lc;
			bool		self_record = do_record && !bridge_hand_over(W.pending);

			if (self_record || do_claim)
			{
				bridge_begin_tx("eightms bridge: recording results and claiming requests");
				if (self_record)
					bridge_record_results(W.pending);
				if (do_claim)
				{
					if (bridge_prune_unrecorded())
						W.inflight_changed = true;
					W.claim_was_full = (claim() >= room);
					/* Look again within a second for retries coming due. */
					W.next_due = TimestampTzPlusMilliseconds(now, 1000);
				}
				bridge_end_tx();
			}
			if (do_record)
			{
				foreach(lc, W.pending)
				{
					BridgeResult *r = (BridgeResult *) lfirst(lc);

					if (strcmp(r->state, "queued") == 0 && r->next_at < W.next_due)
						W.next_due = r->next_at;
				}
				W.pending = NIL;
				MemoryContextReset(W.pending_cxt);
				W.inflight_changed = true;
			}
			if (W.inflight_changed)
				publish_inflight();
			continue;
		}

		if (bridge_nunrecorded() > 0)
		{
			if (bridge_prune_unrecorded())
				W.inflight_changed = true;
		}
		else
			bridge_restart_recorder_if_stopped(now);
		if (W.inflight_changed)
			publish_inflight();
		if (bridge_transfers_running() > 0)
			bridge_transfers_poll(W.pending != NIL ? 2 : 10);
		else if (W.pending == NIL && bridge_nunrecorded() > 0)
		{
			/* The recorder sets the latch when it has committed. */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 10L,
							 PG_WAIT_EXTENSION);
			W.next_due = 0;
		}
		else if (W.pending == NIL && W.citus_worker)
		{
			/* Nothing to claim here: wake for the next check. */
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Max(1, (W.next_node_check - GetCurrentTimestamp()) / 1000),
							 PG_WAIT_EXTENSION);
		}
		else if (W.pending == NIL)
		{
			long		ms = bridge_ms_until_next_due();

			W.next_due = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);
			if (ms > 0)
				(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
								 PG_WAIT_EXTENSION);
		}
	}
}
