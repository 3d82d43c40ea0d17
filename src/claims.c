/*
 * claims.c
 *		eightms.current_account_id(): the account named by the request's JWT
 *		claims, which every tenant policy compares account_id to.
 *
 * Row-level security evaluates the policy for every row a statement writes
 * (WITH CHECK), so a batch of 50 messages parsed the same claims JSON
 * dozens of times; that parse cost more than the check itself.  The account
 * the claims name is kept until the claims change, and the module learns of
 * every change at once: it defines request.jwt.claims itself (PostgREST
 * sets it with set_config(..., true) for each request; to PostgREST and SQL
 * it is the same setting), and its assign hook counts the changes.  Looking
 * the setting up by name on every call (GetConfigOption) cost more than the
 * rest of the function.  The answer is exactly that of
 * (nullif(current_setting('request.jwt.claims', true), '')::jsonb
 * ->> 'account_id')::uuid.
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/uuid.h"

#include "eightms.h"

PG_FUNCTION_INFO_V1(eightms_current_account_id);

/* request.jwt.claims, and how many times it has been assigned. */
static char *request_jwt_claims = NULL;
static uint64 claims_assignments = 0;

static char *cached_claims = NULL;	/* in TopMemoryContext */
static uint64 cached_assignments = 0;
static bool cached_isnull;
static pg_uuid_t cached_account;

/*
 * Every SET, set_config, RESET and end-of-transaction restore goes through
 * here, so an unchanged count means an unchanged value.
 */
static void
count_claims_assignment(const char *newval, void *extra)
{
	claims_assignments++;
}

void
eightms_claims_init(void)
{
	DefineCustomStringVariable("request.jwt.claims",
							   "The JWT claims of the current request, as PostgREST sets them.",
							   "Defined by eightms so that the account they name is read once per change.",
							   &request_jwt_claims,
							   NULL,
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, count_claims_assignment, NULL);
}

/* The request's claims as set (NULL or empty outside a request). */
const char *
eightms_request_claims(void)
{
	return request_jwt_claims;
}

/* What claims ->> key gives, as a C string, or NULL. */
char *
eightms_claim_text(Jsonb *claims, const char *key)
{
	JsonbValue *v;

	if (!JB_ROOT_IS_OBJECT(claims))
		return NULL;
	v = getKeyJsonValueFromContainer(&claims->root, key, strlen(key), NULL);
	if (v == NULL)
		return NULL;
	switch (v->type)
	{
		case jbvNull:
			return NULL;
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		case jbvBinary:
			return JsonbToCString(NULL, v->val.binary.data, v->val.binary.len);
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
	return NULL;				/* keep the compiler quiet */
}

/* What ->> 'account_id' gives for the claims, as a C string, or NULL. */
static char *
account_claim_text(const char *claims)
{
	return eightms_claim_text(DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims))),
							  "account_id");
}

Datum
eightms_current_account_id(PG_FUNCTION_ARGS)
{
	const char *claims = request_jwt_claims;
	pg_uuid_t  *result;

	if (claims == NULL || claims[0] == '\0')
		PG_RETURN_NULL();

	if (cached_claims == NULL || cached_assignments != claims_assignments)
	{
		/* Set again, perhaps to the same text: parsed only if it differs. */
		if (cached_claims == NULL || strcmp(cached_claims, claims) != 0)
		{
			/* Parse first: an error leaves the cache as it was. */
			char	   *text = account_claim_text(claims);
			pg_uuid_t	account = {{0}};

			if (text != NULL)
				memcpy(&account,
					   DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(text))),
					   sizeof(pg_uuid_t));
			if (cached_claims != NULL)
				pfree(cached_claims);
			cached_claims = NULL;
			cached_claims = MemoryContextStrdup(TopMemoryContext, claims);
			cached_isnull = (text == NULL);
			cached_account = account;
		}
		cached_assignments = claims_assignments;
	}

	if (cached_isnull)
		PG_RETURN_NULL();
	result = palloc(sizeof(pg_uuid_t));
	*result = cached_account;
	PG_RETURN_UUID_P(result);
}
