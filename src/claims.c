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
 *
 * eightms.require_phone(), which every API call of a phone starts with,
 * reads the phone_id claim from the same cache: as a PL/pgSQL function it
 * cost each such call about 39,000 instructions.
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
PG_FUNCTION_INFO_V1(eightms_require_phone);

/* request.jwt.claims, and how many times it has been assigned. */
static char *request_jwt_claims = NULL;
static uint64 claims_assignments = 0;

static char *cached_claims = NULL;	/* in TopMemoryContext */
static uint64 cached_assignments = 0;
static bool cached_isnull;
static pg_uuid_t cached_account;
static char *cached_phone = NULL;	/* ->> 'phone_id', unparsed; in TopMemoryContext */

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

/*
 * Bring the cache up to date with the claims (neither NULL nor empty): the
 * account they name, parsed, and the phone_id claim's text.
 */
static void
refresh_cache(const char *claims)
{
	if (cached_claims != NULL && cached_assignments == claims_assignments)
		return;
	/* Set again, perhaps to the same text: parsed only if it differs. */
	if (cached_claims == NULL || strcmp(cached_claims, claims) != 0)
	{
		/* Parse first: an error leaves the cache as it was. */
		Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims)));
		char	   *text = eightms_claim_text(jb, "account_id");
		char	   *phone = eightms_claim_text(jb, "phone_id");
		pg_uuid_t	account = {{0}};
		char	   *kept_claims;
		char	   *kept_phone;

		if (text != NULL)
			memcpy(&account,
				   DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(text))),
				   sizeof(pg_uuid_t));
		kept_claims = MemoryContextStrdup(TopMemoryContext, claims);
		kept_phone = phone ? MemoryContextStrdup(TopMemoryContext, phone) : NULL;
		if (cached_claims != NULL)
			pfree(cached_claims);
		if (cached_phone != NULL)
			pfree(cached_phone);
		cached_claims = kept_claims;
		cached_phone = kept_phone;
		cached_isnull = (text == NULL);
		cached_account = account;
	}
	cached_assignments = claims_assignments;
}

Datum
eightms_current_account_id(PG_FUNCTION_ARGS)
{
	const char *claims = request_jwt_claims;
	pg_uuid_t  *result;

	if (claims == NULL || claims[0] == '\0')
		PG_RETURN_NULL();
	refresh_cache(claims);
	if (cached_isnull)
		PG_RETURN_NULL();
	result = palloc(sizeof(pg_uuid_t));
	*result = cached_account;
	PG_RETURN_UUID_P(result);
}

/*
 * The calling phone, or an error: nullif(claims ->> 'phone_id', '')::uuid,
 * which must name one, with an account in the claims too.
 */
Datum
eightms_require_phone(PG_FUNCTION_ARGS)
{
	const char *claims = request_jwt_claims;
	Datum		phone = (Datum) 0;

	if (claims != NULL && claims[0] != '\0')
	{
		refresh_cache(claims);
		/* A phone_id that is no uuid fails as the cast fails. */
		if (cached_phone != NULL && cached_phone[0] != '\0')
			phone = DirectFunctionCall1(uuid_in, CStringGetDatum(cached_phone));
	}
	if (phone == (Datum) 0 || cached_isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("this call is for paired phones"),
				 errhint("Call it with the device token pair_phone returned.")));
	PG_RETURN_DATUM(phone);
}
