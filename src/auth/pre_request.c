/*
 * pre_request.c
 *		eightms_api.pre_request(), PostgREST's db-pre-request hook.  It
 *		verifies the request's bearer token itself and binds the verified
 *		claims to the transaction (src/auth/claims.c); a phone's requests are then
 *		checked here, a dashboard user's and an anonymous caller's go on to
 *		eightms.pre_request_member() (PL/pgSQL, in sql/api_tenancy.sql).
 *
 * PostgREST verifies the token too, and sets request.jwt.claims from it;
 * but any role may set that setting, so nothing trusts it: the token comes
 * from the request's Authorization header, which PostgREST passes in
 * request.headers, and its role must be the role the request runs as.
 *
 * Every request runs the hook, and phones make most of them (claims,
 * reports, heartbeats, inbound SMS), each with the same token.  Verified
 * tokens are kept per backend, compared byte for byte with the whole token
 * (their lifetime is checked on every use), so that a phone's requests do
 * not compute an HMAC and parse its claims each time.  Written in
 * PL/pgSQL, most of a phone's check went to the function itself: PL/pgSQL
 * prepares its expressions again in every transaction, and each request is
 * one.  Here the check is one saved plan (bench/README.md, the hook).  Its
 * answers and errors are the PL/pgSQL version's (test/pgtap/50_gateway.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "claims.h"
#include "jwt.h"
#include "util/try_uuid.h"

PG_FUNCTION_INFO_V1(eightms_pre_request);

/*
 * The account's status, and whether the device token is the phone's current
 * one: two statements of one table each, by key.  On one server they are
 * the same two index lookups as one statement would be; on Citus a
 * statement joining two distributed tables (an EXISTS on phone under
 * account) cannot be planned with parameters, and these plans are generic.
 */
static SPIPlanPtr status_plan = NULL;
static SPIPlanPtr token_plan = NULL;

#define STATUS_QUERY \
	"SELECT a.status FROM eightms.account a WHERE a.account_id = $1"

#define TOKEN_QUERY \
	"SELECT FROM eightms.phone p" \
	" WHERE p.account_id = $1" \
	" AND p.phone_id = NULLIF($2, '')::pg_catalog.uuid" \
	" AND p.unpaired_at IS NULL" \
	" AND p.token_version::pg_catalog.text OPERATOR(pg_catalog.=) $3"

/*
 * A kept plan of one of the queries above.  A generic plan: lookups by key
 * whatever the values; left to choose, the plan cache kept planning the
 * query again for every request.
 */
static SPIPlanPtr
device_plan(SPIPlanPtr *kept, const char *query)
{
	Oid			argtypes[3] = {UUIDOID, TEXTOID, TEXTOID};

	if (*kept == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(query, 3, argtypes,
											  CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the device token check: %s",
				 SPI_result_code_string(SPI_result));
		*kept = plan;
	}
	return *kept;
}

/*
 * eightms.pre_request_member(), found once and kept until any function
 * changes (an upgrade may create it again).
 */
static Oid	member_fn = InvalidOid;
static FmgrInfo member_flinfo;

static void
forget_member_fn(Datum arg, int cacheid, uint32 hashvalue)
{
	member_fn = InvalidOid;
}

static void
call_member_hook(void)
{
	static bool watching = false;

	if (!watching)
	{
		CacheRegisterSyscacheCallback(PROCOID, forget_member_fn, (Datum) 0);
		watching = true;
	}
	if (!OidIsValid(member_fn))
	{
		List	   *name = list_make2(makeString("eightms"), makeString("pre_request_member"));
		Oid			fn = LookupFuncName(name, 0, NULL, false);

		fmgr_info_cxt(fn, &member_flinfo, TopMemoryContext);
		member_fn = fn;
	}
	FunctionCall0Coll(&member_flinfo, InvalidOid);
}

/*
 * A device token: its account must be active, and its token version the
 * phone's current one (unpairing or pairing the device again bumps it, so
 * older tokens stop working at once).
 */
static void
check_device(Jsonb *claims, pg_uuid_t *acct_out)
{
	char	   *acct_text = eightms_claim_text(claims, "account_id");
	char	   *phone = eightms_claim_text(claims, "phone_id");
	char	   *tv = eightms_claim_text(claims, "tv");
	pg_uuid_t	acct;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		active = false;
	char	   *status_text = NULL;
	MemoryContext caller = CurrentMemoryContext;
	bool		current = false;

	if (acct_text == NULL || !eightms_parse_uuid(acct_text, strlen(acct_text), &acct))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("device token has no valid account_id claim"),
				 errhint("Pair the phone again to get a new token.")));

	values[0] = UUIDPGetDatum(&acct);
	values[1] = phone ? CStringGetTextDatum(phone) : (Datum) 0;
	nulls[1] = phone ? ' ' : 'n';
	values[2] = tv ? CStringGetTextDatum(tv) : (Datum) 0;
	nulls[2] = tv ? ' ' : 'n';

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* Both plans take the three values; the status query reads only $1. */
	if (SPI_execute_plan(device_plan(&status_plan, STATUS_QUERY), values, nulls, true, 1)
		!= SPI_OK_SELECT)
		elog(ERROR, "the device token check failed");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		status = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
		{
			MemoryContext spi = MemoryContextSwitchTo(caller);

			status_text = TextDatumGetCString(status);
			MemoryContextSwitchTo(spi);
		}
		active = status_text != NULL && strcmp(status_text, "active") == 0;
	}
	if (active)
	{
		if (SPI_execute_plan(device_plan(&token_plan, TOKEN_QUERY), values, nulls, true, 1)
			!= SPI_OK_SELECT)
			elog(ERROR, "the device token check failed");
		current = SPI_processed == 1;
	}
	SPI_finish();

	/*
	 * The same refusal a dashboard user gets for the account
	 * (eightms.refuse_inactive_account), so that a client handles one error.
	 */
	if (!active && status_text != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("account %s is %s",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&acct))),
						status_text),
				 errhint("Contact support to reactivate the account.")));
	if (!active)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("account %s no longer exists",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&acct)))),
				 errhint("The account was deleted; this phone cannot use it any more.")));
	if (!current)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("this device token has been revoked"),
				 errhint("The phone was unpaired or paired again; pair it with a new code.")));
	*acct_out = acct;
}

/*
 * Verified tokens kept by this backend.  A connection pool's backend serves
 * many phones in turn; the oldest entry makes room for a new one.
 */
#define TOKEN_CACHE_SIZE 32

typedef struct VerifiedToken
{
	char	   *token;			/* NULL: unused slot */
	size_t		len;
	uint32		hash;
	Oid			role;			/* the role its claims name */
	bool		asymmetric;		/* verified with a public key */
	uint64		keys_generation;	/* ... of this generation of keys */
	float8		exp;
	float8		nbf;
	Jsonb	   *claims;
	char	   *claims_text;
} VerifiedToken;

static VerifiedToken token_cache[TOKEN_CACHE_SIZE];
static int	token_cache_next = 0;

static void
forget_token(VerifiedToken *t)
{
	if (t->token != NULL)
	{
		pfree(t->token);
		pfree(t->claims);
		pfree(t->claims_text);
	}
	t->token = NULL;
}

/* The role a token's claims name (PostgREST's anonymous role without one). */
static Oid
claims_role(Jsonb *claims)
{
	char	   *role = eightms_claim_text(claims, "role");

	return get_role_oid(role != NULL ? role : "eightms_anon", true);
}

/* A token, verified now or earlier by this backend. */
static VerifiedToken *
verified_token(const char *token, size_t len)
{
	uint32		hash = hash_bytes((const unsigned char *) token, (int) len);
	VerifiedToken *t;
	Jsonb	   *claims;
	float8		exp;
	float8		nbf;
	bool		asymmetric;
	MemoryContext old;

	for (int i = 0; i < TOKEN_CACHE_SIZE; i++)
	{
		t = &token_cache[i];
		if (t->token != NULL && t->hash == hash && t->len == len
			&& memcmp(t->token, token, len) == 0)
		{
			/* Keys that signed it may have been withdrawn since. */
			if (!t->asymmetric || t->keys_generation == eightms_jwt_keys_generation())
				return t;
			forget_token(t);
			break;
		}
	}

	claims = eightms_jwt_verify_token(token, len, &exp, &nbf, &asymmetric);
	t = &token_cache[token_cache_next];
	token_cache_next = (token_cache_next + 1) % TOKEN_CACHE_SIZE;
	forget_token(t);
	old = MemoryContextSwitchTo(TopMemoryContext);
	t->claims = palloc(VARSIZE(claims));
	memcpy(t->claims, claims, VARSIZE(claims));
	t->claims_text = JsonbToCString(NULL, &claims->root, VARSIZE(claims));
	t->token = palloc(len);
	memcpy(t->token, token, len);
	MemoryContextSwitchTo(old);
	t->len = len;
	t->hash = hash;
	t->role = claims_role(claims);
	t->asymmetric = asymmetric;
	t->keys_generation = asymmetric ? eightms_jwt_keys_generation() : 0;
	t->exp = exp;
	t->nbf = nbf;
	return t;
}
#define skip_space(p) while (*(p) == ' ' || *(p) == '\t' || *(p) == '\n' || *(p) == '\r') (p)++

/*
 * The authorization member of a flat JSON object of strings, as PostgREST
 * writes request.headers, found without building the object: parsing the
 * whole of it into a jsonb was the hook's largest cost.  1: found (*val,
 * *len: its text, which has no escapes), 0: absent, -1: the text has
 * another shape (a member that is no string, an escape in a name or in
 * that value); then jsonb_in reads it.  Like jsonb, the last of repeated
 * names wins.
 */
static int
scan_authorization(const char *p, const char **val, size_t *len)
{
	int			found = 0;

	skip_space(p);
	if (*p++ != '{')
		return -1;
	skip_space(p);
	if (*p == '}')
		return 0;
	for (;;)
	{
		const char *name;
		size_t		name_len;
		const char *v;
		bool		escaped = false;

		if (*p++ != '"')
			return -1;
		name = p;
		while (*p != '"' && *p != '\\' && *p != '\0')
			p++;
		if (*p != '"')
			return -1;
		name_len = p++ - name;
		skip_space(p);
		if (*p++ != ':')
			return -1;
		skip_space(p);
		if (*p++ != '"')
			return -1;
		v = p;
		while (*p != '"' && *p != '\0')
		{
			if (*p == '\\')
			{
				escaped = true;
				if (*++p == '\0')
					return -1;
			}
			p++;
		}
		if (*p != '"')
			return -1;
		if (name_len == 13 && memcmp(name, "authorization", 13) == 0)
		{
			if (escaped)
				return -1;
			*val = v;
			*len = p - v;
			found = 1;
		}
		p++;
		skip_space(p);
		if (*p == '}')
			return found;
		if (*p++ != ',')
			return -1;
		skip_space(p);
	}
}

/*
 * The bearer token of the request's Authorization header, as PostgREST
 * passes the headers (a JSON object, names in lower case), or NULL.
 */
static const char *
bearer_token(size_t *len)
{
	const char *headers = GetConfigOption("request.headers", true, false);
	const char *s = NULL;
	size_t		n = 0;
	int			found;

	if (headers == NULL || headers[0] == '\0')
		return NULL;
	found = scan_authorization(headers, &s, &n);
	if (found < 0)
	{
		Jsonb	   *jb;
		JsonbValue *auth;

		/* jsonb_in's own errors would quote the headers' text. */
		if (pg_parse_json(makeJsonLexContextCstringLen(unconstify(char *, headers), strlen(headers),
													   GetDatabaseEncoding(), true),
						  &nullSemAction) != JSON_SUCCESS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("request.headers is not JSON"),
					 errhint("PostgREST sets it to a JSON object of the request's headers.")));
		jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(headers)));
		auth = JB_ROOT_IS_OBJECT(jb)
			? getKeyJsonValueFromContainer(&jb->root, "authorization", 13, NULL) : NULL;

		found = (auth != NULL && auth->type != jbvNull);
		if (found && auth->type == jbvString)
		{
			s = auth->val.string.val;
			n = auth->val.string.len;
		}
	}
	if (!found)
		return NULL;
	if (n < 7 || pg_strncasecmp(s, "bearer ", 7) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the Authorization header is not a bearer token"),
				 errhint("Send \"Authorization: Bearer <JWT>\", or no Authorization header for anonymous calls.")));
	s += 7;
	n -= 7;
	while (n > 0 && *s == ' ')
		s++, n--;
	while (n > 0 && s[n - 1] == ' ')
		n--;
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the Authorization header's bearer token is empty"),
				 errhint("Send \"Authorization: Bearer <JWT>\", or no Authorization header for anonymous calls.")));
	*len = n;
	return s;
}

Datum
eightms_pre_request(PG_FUNCTION_ARGS)
{
	Oid			runs_as = GetOuterUserId();
	size_t		len = 0;
	const char *token = bearer_token(&len);
	Jsonb	   *claims;
	const char *claims_text;
	char	   *role;

	if (token != NULL)
	{
		VerifiedToken *t = verified_token(token, len);

		eightms_jwt_check_lifetime(t->exp, t->nbf);
		if (t->role != runs_as)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("the JWT is not for role %s, which the request runs as",
							GetUserNameFromId(runs_as, false)),
					 errhint("The request must run as the role its token's \"role\" claim names, as PostgREST runs it.")));
		claims = t->claims;
		claims_text = t->claims_text;
	}
	else
	{
		/* No token: PostgREST's anonymous role, and no other. */
		if (runs_as != get_role_oid("eightms_anon", true))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
					 errmsg("no bearer token for role %s", GetUserNameFromId(runs_as, false)),
					 errhint("Only eightms_anon calls without a token; send the JWT as \"Authorization: Bearer <JWT>\" (PostgREST passes it in request.headers).")));
		claims_text = "{\"role\": \"eightms_anon\"}";
		claims = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(claims_text)));
	}
	role = eightms_claim_text(claims, "role");

	if (role != NULL && strcmp(role, "eightms_phone") == 0)
	{
		pg_uuid_t	acct;

		check_device(claims, &acct);
		eightms_bind_claims(claims, claims_text, &acct);
	}
	else
	{
		/* The members' half chooses the account (eightms.bind_account). */
		eightms_bind_claims(claims, claims_text, NULL);
		call_member_hook();
	}
	PG_RETURN_VOID();
}
