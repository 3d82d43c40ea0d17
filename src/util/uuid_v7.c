/*
 * uuid_v7.c
 *		eightms.uuid_v7(): time-ordered UUIDs (RFC 9562, version 7) for
 *		message ids.
 *
 * Two reasons, both about bulk sends.  gen_random_uuid() asks OpenSSL for
 * 16 bytes on every call, a large share of what queueing a message costs;
 * this draws the same strong randomness (pg_strong_random) 4 KB at a time.  And
 * ids that grow with time are appended at the right of the primary key
 * instead of landing on a random leaf, which nbtree does without a descent
 * from the root.
 *
 * Layout: 48 bits of Unix milliseconds, the version, 12 bits of
 * sub-millisecond counter (so that ids from one backend are in order even
 * within a millisecond), the variant, 62 random bits.  The time an id
 * shows is the message's created_at, which its readers see anyway.
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#define POOL_SIZE 4096

/* Per backend: the pool of random bytes and the last time stamp issued. */
static uint8 pool[POOL_SIZE];
static int	pool_used = POOL_SIZE;
static int	pool_pid = 0;
static uint64 last_ms = 0;
static uint32 last_seq = 0;

static const uint8 *
random_bytes(int n)
{
	/* A forked child must never reuse its parent's bytes. */
	if (pool_used + n > POOL_SIZE || pool_pid != MyProcPid)
	{
		if (!pg_strong_random(pool, POOL_SIZE))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate random bytes for a message id")));
		pool_used = 0;
		pool_pid = MyProcPid;
	}
	pool_used += n;
	return pool + pool_used - n;
}

PG_FUNCTION_INFO_V1(eightms_uuid_v7);

Datum
eightms_uuid_v7(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));
	TimestampTz now = GetCurrentTimestamp();
	/* Microseconds since 2000 to milliseconds since 1970. */
	uint64		us = (uint64) now + (uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	uint64		ms = us / 1000;
	uint32		seq = (uint32) ((us % 1000) * 4096 / 1000);
	const uint8 *r = random_bytes(8);

	/* Never go backwards within a backend, even when the clock does. */
	if (ms < last_ms || (ms == last_ms && seq <= last_seq))
	{
		ms = last_ms;
		seq = last_seq + 1;
		if (seq > 0xFFF)
		{
			ms++;
			seq = 0;
		}
	}
	last_ms = ms;
	last_seq = seq;

	for (int i = 0; i < 6; i++)
		u->data[i] = (uint8) (ms >> (40 - 8 * i));
	u->data[6] = 0x70 | (uint8) (seq >> 8);
	u->data[7] = (uint8) seq;
	u->data[8] = 0x80 | (r[0] & 0x3F);
	memcpy(u->data + 9, r + 1, 7);
	PG_RETURN_UUID_P(u);
}
