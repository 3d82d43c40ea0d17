/*
 * random.c
 *		Random bytes from the server's strong random source, for tokens.
 *
 * pgcrypto's gen_random_bytes lives in whatever schema pgcrypto was
 * installed into, which SECURITY DEFINER code with a pinned search_path
 * cannot rely on; this uses the same source (pg_strong_random) directly.
 */
#include "postgres.h"

#include "fmgr.h"
#include "port.h"

#define EIGHTMS_RANDOM_MAX 1024

PG_FUNCTION_INFO_V1(eightms_random_bytes);

Datum
eightms_random_bytes(PG_FUNCTION_ARGS)
{
	int32		n = PG_GETARG_INT32(0);
	bytea	   *result;

	if (n < 1 || n > EIGHTMS_RANDOM_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("number of random bytes must be between 1 and %d", EIGHTMS_RANDOM_MAX),
				 errdetail("%d were asked for.", n)));

	result = (bytea *) palloc(VARHDRSZ + n);
	SET_VARSIZE(result, VARHDRSZ + n);
	if (!pg_strong_random(VARDATA(result), n))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate random bytes")));
	PG_RETURN_BYTEA_P(result);
}
