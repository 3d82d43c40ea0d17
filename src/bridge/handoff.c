/*
 * handoff.c
 *		What the bridge keeps in shared memory, and how the worker hands
 *		outcomes to the recorder.
 *
 * The module's shared memory holds the worker's latch (enqueuing backends
 * set it at commit), the worker's generation and the recorder's pid, each a
 * word under a spinlock, and the list of the ids the worker holds, which
 * eightms.http_in_flight() reads, under an LWLock of its own.
 *
 * Outcomes pass, a batch per message, through a shm_mq in a dynamic shared
 * memory segment that the worker creates for each recorder it starts.  The
 * segment also holds the number of the last batch the recorder committed:
 * the worker holds each request until that number reaches the batch that
 * carried its outcome.  A worker that exits detaches from the queue; the
 * recorder records what it received, then stops.  A recorder that stops
 * with outcomes not committed leaves them neither recorded nor sendable by
 * this worker: the worker exits, and the next one sends them again.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "bridge_internal.h"

typedef struct BridgeShared
{
	slock_t		mutex;			/* for the three words below */
	Latch	   *latch;			/* the worker's; NULL while there is none */
	uint32		generation;		/* bumped by each worker start */
	pid_t		recorder_pid;	/* 0: no recorder */

	LWLock	   *lock;			/* for the in-flight list below */
	int			ninflight;
	int64		inflight_ids[BRIDGE_MAX_PUBLISHED];
} BridgeShared;

#define BRIDGE_LWLOCK_TRANCHE "eightms bridge"

/* The head of the segment a worker creates for its recorder. */
typedef struct BridgeHandoff
{
	uint32		generation;		/* of the worker that created it */
	pg_atomic_uint64 recorded_seq;	/* the last batch the recorder committed */
} BridgeHandoff;

#define BRIDGE_QUEUE_SIZE (4 * 1024 * 1024)
#define BRIDGE_QUEUE_OFFSET MAXALIGN(sizeof(BridgeHandoff))

/* Outcomes handed to the recorder and not yet committed by it: still held. */
typedef struct Unrecorded
{
	int64		id;
	uint64		seq;
} Unrecorded;

/* Every process: where the shared struct is. */
static struct
{
	BridgeShared *shared;
	shmem_request_hook_type prev_request_hook;
	shmem_startup_hook_type prev_startup_hook;
}			shmem;

/* The worker: its recorder's queue, and the outcomes still held. */
static struct
{
	MemoryContext cxt;
	uint32		generation;
	dsm_segment *seg;
	BridgeHandoff *handoff;
	shm_mq_handle *mqh;
	StringInfoData outbox;		/* the message being sent */
	bool		sending;		/* outbox not fully in the queue yet */
	bool		detached;		/* the recorder left the queue */
	uint64		sent_seq;
	Unrecorded *unrecorded;
	int			nunrecorded;
	int			maxunrecorded;
	TimestampTz recorder_started_at;
	bool		logged_no_recorder;
}			worker;

/* The recorder: the queue it reads. */
static struct
{
	uint32		generation;
	BridgeHandoff *handoff;
	shm_mq_handle *mqh;
}			recorder;

static void
bridge_shmem_request(void)
{
	if (shmem.prev_request_hook)
		shmem.prev_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(BridgeShared)));
	RequestNamedLWLockTranche(BRIDGE_LWLOCK_TRANCHE, 1);
}

static void
bridge_shmem_startup(void)
{
	bool		found;
	BridgeShared *s;

	if (shmem.prev_startup_hook)
		shmem.prev_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	s = ShmemInitStruct("eightms bridge", sizeof(BridgeShared), &found);
	if (!found)
	{
		SpinLockInit(&s->mutex);
		s->latch = NULL;
		s->generation = 0;
		s->recorder_pid = 0;
		s->lock = &(GetNamedLWLockTranche(BRIDGE_LWLOCK_TRANCHE))->lock;
		s->ninflight = 0;
	}
	LWLockRelease(AddinShmemInitLock);
	shmem.shared = s;
}

/* Called while the library is preloaded. */
void
bridge_shmem_init(void)
{
	shmem.prev_request_hook = shmem_request_hook;
	shmem_request_hook = bridge_shmem_request;
	shmem.prev_startup_hook = shmem_startup_hook;
	shmem_startup_hook = bridge_shmem_startup;
}

/* Set the worker's latch, if there is a worker. */
void
bridge_wake_worker(void)
{
	Latch	   *latch;

	if (shmem.shared == NULL)
		return;
	SpinLockAcquire(&shmem.shared->mutex);
	latch = shmem.shared->latch;
	SpinLockRelease(&shmem.shared->mutex);
	if (latch != NULL)
		SetLatch(latch);
}

/* Copy the published in-flight ids into ids (BRIDGE_MAX_PUBLISHED long). */
int
bridge_read_inflight(int64 *ids)
{
	int			n;

	if (shmem.shared == NULL)
		return 0;
	LWLockAcquire(shmem.shared->lock, LW_SHARED);
	n = shmem.shared->ninflight;
	memcpy(ids, shmem.shared->inflight_ids, sizeof(int64) * n);
	LWLockRelease(shmem.shared->lock);
	return n;
}

/* The worker: show eightms.http_in_flight() these ids (at most the first BRIDGE_MAX_PUBLISHED). */
void
bridge_publish_inflight(const int64 *ids, int n)
{
	n = Min(n, BRIDGE_MAX_PUBLISHED);
	LWLockAcquire(shmem.shared->lock, LW_EXCLUSIVE);
	memcpy(shmem.shared->inflight_ids, ids, sizeof(int64) * n);
	shmem.shared->ninflight = n;
	LWLockRelease(shmem.shared->lock);
}

static bool
recorder_registered(void)
{
	pid_t		pid;

	SpinLockAcquire(&shmem.shared->mutex);
	pid = shmem.shared->recorder_pid;
	SpinLockRelease(&shmem.shared->mutex);
	return pid != 0;
}

static void
worker_exit(int code, Datum arg)
{
	SpinLockAcquire(&shmem.shared->mutex);
	shmem.shared->latch = NULL;
	SpinLockRelease(&shmem.shared->mutex);
	LWLockAcquire(shmem.shared->lock, LW_EXCLUSIVE);
	shmem.shared->ninflight = 0;
	LWLockRelease(shmem.shared->lock);
}

/*
 * The worker takes over: a recorder left by the previous worker commits
 * what it holds and stops; wait for it (bounded: one that is stuck sees the
 * new generation and drops what it has).  Then enqueuing backends find this
 * worker's latch.
 */
void
bridge_worker_begin(void)
{
	for (int i = 0; i < 300 && recorder_registered(); i++)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100L,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	worker.cxt = AllocSetContextCreate(TopMemoryContext, "eightms bridge hand-off",
									   ALLOCSET_DEFAULT_SIZES);
	worker.outbox.data = NULL;
	SpinLockAcquire(&shmem.shared->mutex);
	shmem.shared->latch = MyLatch;
	worker.generation = ++shmem.shared->generation;
	SpinLockRelease(&shmem.shared->mutex);
	on_shmem_exit(worker_exit, (Datum) 0);
}

/*
 * Start a recorder for this worker, with a new queue; false if it cannot
 * be (no background worker slot or no segment left): the worker then
 * records outcomes itself.  Called only when no outcome is held.
 */
bool
bridge_start_recorder(void)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;
	MemoryContext old;
	dsm_segment *seg;
	shm_mq	   *mq;

	Assert(worker.nunrecorded == 0);
	worker.recorder_started_at = GetCurrentTimestamp();
	if (worker.mqh != NULL)
		shm_mq_detach(worker.mqh);
	if (worker.seg != NULL)
		dsm_detach(worker.seg);
	worker.mqh = NULL;
	worker.seg = NULL;
	worker.handoff = NULL;
	worker.sending = false;
	worker.detached = false;
	worker.sent_seq = 0;

	old = MemoryContextSwitchTo(worker.cxt);
	if (worker.outbox.data == NULL)
		initStringInfo(&worker.outbox);
	seg = dsm_create(BRIDGE_QUEUE_OFFSET + BRIDGE_QUEUE_SIZE, DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg != NULL)
	{
		BridgeHandoff *h = dsm_segment_address(seg);

		/* Mapped for the worker's life, whatever resource owner is current. */
		dsm_pin_mapping(seg);
		h->generation = worker.generation;
		pg_atomic_init_u64(&h->recorded_seq, 0);
		mq = shm_mq_create((char *) h + BRIDGE_QUEUE_OFFSET, BRIDGE_QUEUE_SIZE);
		shm_mq_set_sender(mq, MyProc);

		memset(&w, 0, sizeof(w));
		w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		w.bgw_start_time = BgWorkerStart_RecoveryFinished;
		w.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(w.bgw_library_name, BGW_MAXLEN, "eightms");
		snprintf(w.bgw_function_name, BGW_MAXLEN, "eightms_bridge_recorder_main");
		snprintf(w.bgw_name, BGW_MAXLEN, "eightms bridge recorder");
		snprintf(w.bgw_type, BGW_MAXLEN, "eightms bridge recorder");
		w.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
		w.bgw_notify_pid = MyProcPid;
		if (RegisterDynamicBackgroundWorker(&w, &handle))
		{
			worker.seg = seg;
			worker.handoff = h;
			/* With the handle, a recorder that never starts reads as detached. */
			worker.mqh = shm_mq_attach(mq, seg, handle);
		}
		else
			dsm_detach(seg);
	}
	MemoryContextSwitchTo(old);
	if (worker.mqh == NULL)
	{
		if (!worker.logged_no_recorder)
			ereport(LOG,
					(errmsg("eightms bridge: could not start the recorder; the worker records outcomes itself"),
					 errhint("Raise max_worker_processes.")));
		worker.logged_no_recorder = true;
		return false;
	}
	return true;
}

/*
 * A recorder that stopped with nothing to record left no request behind:
 * start another, at most every 10 seconds (a spare one started meanwhile
 * exits).
 */
void
bridge_restart_recorder_if_stopped(TimestampTz now)
{
	if (worker.nunrecorded > 0 || now - worker.recorder_started_at < 10 * USECS_PER_SEC)
		return;
	if (!recorder_registered())
		(void) bridge_start_recorder();
	else
		worker.recorder_started_at = now;
}

static void
put_bytes(StringInfo buf, const char *p, int32 len)
{
	appendBinaryStringInfo(buf, (const char *) &len, sizeof(len));
	if (len > 0)
		appendBinaryStringInfo(buf, p, len);
}

/*
 * One message: batch number (uint64), number of outcomes (uint32), then each
 * outcome's fields.
 */
static void
serialize_results(StringInfo buf, List *results, uint64 seq)
{
	uint32		n = list_length(results);
	ListCell   *lc;

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

/*
 * The outcomes of one message (palloc'd in the current context), and its
 * batch number.
 */
static List *
deserialize_results(const char *msg, List *results, uint64 *seq)
{
	const char *p = msg;
	uint32		n;

	p = get_fixed(p, seq, sizeof(*seq));
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
 * Write what the queue has room for of the message being sent.  Once begun,
 * a message can only be finished, with the same bytes: the outbox keeps it
 * until then.
 */
void
bridge_handoff_flush(void)
{
	shm_mq_result res;

	if (!worker.sending)
		return;
	res = shm_mq_send(worker.mqh, worker.outbox.len, worker.outbox.data, true, true);
	if (res == SHM_MQ_WOULD_BLOCK)
		return;
	worker.sending = false;
	if (res == SHM_MQ_DETACHED)
		worker.detached = true;
}

/*
 * Give a batch of outcomes to the recorder.  False when there is no
 * recorder, or the batch could not fit in the queue, or the queue is still
 * busy with an earlier batch: the caller records them itself.
 */
bool
bridge_hand_over(List *results)
{
	uint64		size = 0;
	uint64		seq;
	ListCell   *lc;

	if (results == NIL)
		return true;

	/*
	 * A batch that could not fit in the queue (large bodies) is recorded by
	 * the worker: do not build a message of it first.
	 */
	foreach(lc, results)
	{
		BridgeResult *r = (BridgeResult *) lfirst(lc);

		size += 64 + (r->body ? VARSIZE(r->body) : 0)
			+ (r->headers ? strlen(r->headers) : 0) + (r->error ? strlen(r->error) : 0);
	}
	if (size > BRIDGE_QUEUE_SIZE)
		return false;
	if (worker.mqh == NULL || !recorder_registered())
		return false;
	bridge_handoff_flush();
	if (worker.sending || worker.detached)
		return false;

	seq = worker.sent_seq + 1;
	resetStringInfo(&worker.outbox);
	serialize_results(&worker.outbox, results, seq);
	worker.sent_seq = seq;
	worker.sending = true;
	bridge_handoff_flush();

	/*
	 * Held until the recorder commits them, even if it left the queue just
	 * now: it may have committed them first.
	 */
	if (worker.nunrecorded + list_length(results) > worker.maxunrecorded)
	{
		worker.maxunrecorded = Max(2 * worker.maxunrecorded, worker.nunrecorded + list_length(results) + 64);
		worker.unrecorded = worker.unrecorded == NULL
			? MemoryContextAlloc(worker.cxt, sizeof(Unrecorded) * worker.maxunrecorded)
			: repalloc(worker.unrecorded, sizeof(Unrecorded) * worker.maxunrecorded);
	}
	foreach(lc, results)
	{
		worker.unrecorded[worker.nunrecorded].id = ((BridgeResult *) lfirst(lc))->id;
		worker.unrecorded[worker.nunrecorded++].seq = seq;
	}
	return true;
}

int
bridge_nunrecorded(void)
{
	return worker.nunrecorded;
}

/* Copy the ids of the outcomes handed over and not committed, up to max. */
int
bridge_unrecorded(int64 *ids, int max)
{
	int			n = Min(max, worker.nunrecorded);

	for (int i = 0; i < n; i++)
		ids[i] = worker.unrecorded[i].id;
	return n;
}

/*
 * Forget the handed-over outcomes the recorder has committed; true if some
 * were.  A recorder that stopped before committing some leaves them neither
 * recorded nor sendable by this worker: it exits, and the next worker sends
 * them again.
 */
bool
bridge_prune_unrecorded(void)
{
	uint64		recorded;
	bool		alive;
	int			before = worker.nunrecorded;
	int			keep = 0;

	if (worker.nunrecorded == 0)
		return false;
	alive = recorder_registered() && !worker.detached;
	/* Read after: a recorder seen gone has published its last commit. */
	pg_read_barrier();
	recorded = pg_atomic_read_u64(&worker.handoff->recorded_seq);
	for (int i = 0; i < worker.nunrecorded; i++)
		if (worker.unrecorded[i].seq > recorded)
			worker.unrecorded[keep++] = worker.unrecorded[i];
	worker.nunrecorded = keep;
	if (worker.nunrecorded > 0 && !alive)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("eightms bridge: the recorder stopped before recording %d outcomes", worker.nunrecorded),
				 errdetail("The worker restarts; those requests are still queued and are sent again.")));
	return worker.nunrecorded != before;
}

static void
recorder_exit(int code, Datum arg)
{
	SpinLockAcquire(&shmem.shared->mutex);
	if (shmem.shared->recorder_pid == MyProcPid)
		shmem.shared->recorder_pid = 0;
	SpinLockRelease(&shmem.shared->mutex);
}

/*
 * The recorder: attach to the queue of the worker that started it (arg, the
 * segment's handle).  False when that worker is gone or another recorder
 * serves it.
 */
bool
bridge_recorder_attach(Datum arg)
{
	dsm_segment *seg = dsm_attach(DatumGetUInt32(arg));
	BridgeHandoff *h;
	shm_mq	   *mq;
	bool		ok;

	if (seg == NULL)
		return false;
	dsm_pin_mapping(seg);
	h = dsm_segment_address(seg);
	on_shmem_exit(recorder_exit, (Datum) 0);
	SpinLockAcquire(&shmem.shared->mutex);
	ok = shmem.shared->generation == h->generation && shmem.shared->latch != NULL
		&& shmem.shared->recorder_pid == 0;
	if (ok)
		shmem.shared->recorder_pid = MyProcPid;
	SpinLockRelease(&shmem.shared->mutex);
	if (!ok)
		return false;
	mq = (shm_mq *) ((char *) h + BRIDGE_QUEUE_OFFSET);
	shm_mq_set_receiver(mq, MyProc);
	recorder.generation = h->generation;
	recorder.handoff = h;
	recorder.mqh = shm_mq_attach(mq, seg, NULL);
	return true;
}

/*
 * Append the outcomes of every batch in the queue to *results (in the
 * current memory context) and set *last_seq to the last batch's number.
 * False once the worker has left the queue and everything it sent is taken.
 */
bool
bridge_recorder_take(List **results, uint64 *last_seq)
{
	for (;;)
	{
		Size		len;
		void	   *data;
		shm_mq_result res = shm_mq_receive(recorder.mqh, &len, &data, true);

		if (res != SHM_MQ_SUCCESS)
			return res == SHM_MQ_WOULD_BLOCK;
		/* data is the queue's own memory until the next receive: copied out. */
		*results = deserialize_results(data, *results, last_seq);
	}
}

/* Is the worker that started this recorder still the current one? */
bool
bridge_recorder_current(void)
{
	bool		current;

	SpinLockAcquire(&shmem.shared->mutex);
	current = shmem.shared->generation == recorder.generation;
	SpinLockRelease(&shmem.shared->mutex);
	return current;
}

/* The batches up to seq are committed: the worker may let their requests go. */
void
bridge_recorder_committed(uint64 seq)
{
	pg_atomic_write_u64(&recorder.handoff->recorded_seq, seq);
	bridge_wake_worker();
}
