/*
 * claims.c
 *		The claims of the current request as the pre-request hook verified
 *		them, and the account it chose: eightms.current_account_id(), which
 *		every tenant policy compares account_id to, eightms.jwt_claims() and
 *		eightms.require_phone().
 *
 * request.jwt.claims is an ordinary setting: any role may set it, so an API
 * role with a SQL connection could name another tenant's account in it.
 * None of these functions reads it.  The hook (src/auth/pre_request.c) verifies
 * the request's bearer token itself and binds what it verified, with the
 * account it chose, to the transaction and the role the request runs as,
 * in eightms.verified_claims: a setting only superusers may set (the hook
 * runs as the extension's owner), set as SET LOCAL, so it ends with the
 * transaction (or a rolled-back savepoint), and stamped with the
 * transaction's local id and the role's OID, so that it is trusted only in
 * the transaction and by the role it was bound in.  A setting rather than a
 * plain variable because parallel workers receive the leader's settings,
 * and policies run there too.
 *
 * On Citus, the shards a request touches live on other nodes, whose
 * backends never run the hook: the policies there need the binding too.
 * Citus forwards a transaction's SET LOCAL commands to the nodes it works
 * on (citus.propagate_set_commands = 'local'), as the role the request
 * runs as, which may not set eightms.verified_claims.  So where Citus does
 * that, binding also issues SET LOCAL eightms.relayed_claims: the binding
 * with the role's name and the time, under an HMAC with the JWT secret
 * (every node reads the same key file).  A node with Citus loaded and no
 * binding of its own trusts a relay whose MAC holds, whose role is the
 * role it runs as (or which reaches it as a superuser, as the statements of
 * a SECURITY DEFINER function do), and which is at most RELAY_MAX_AGE old; any role may
 * set the setting, but none can make a relay without the secret, and a
 * relay says no more than the hook verified for that role.  Without Citus
 * a relay binds nothing.
 *
 * Row-level security evaluates the policy for every row a statement writes
 * (WITH CHECK), so the binding is parsed once per assignment (the assign
 * hook counts them; looking the setting up by name on every call cost more
 * than the rest of the function) and each call only compares the stamps.
 */
#include "postgres.h"

#include <openssl/crypto.h>

#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "claims.h"
#include "jwt.h"
#include "util/hex.h"
#include "util/try_uuid.h"

PG_FUNCTION_INFO_V1(eightms_current_account_id);
PG_FUNCTION_INFO_V1(eightms_jwt_claims);
PG_FUNCTION_INFO_V1(eightms_require_phone);
PG_FUNCTION_INFO_V1(eightms_bind_account);

#define BINDING_GUC "eightms.verified_claims"
#define RELAY_GUC "eightms.relayed_claims"

/*
 * How long a relay is trusted after the hook made it: requests take
 * seconds, and a relay outlives its transaction only as a copied value.
 */
#define RELAY_MAX_AGE_SECS 300

/* eightms.verified_claims: "<lxid> <role oid> <account uuid or -> <claims>". */
static char *verified_claims = NULL;
static uint64 assignments = 0;

/*
 * eightms.relayed_claims: "v1 <hex mac> <unix time> <role name> <account
 * uuid or -> <claims>", the MAC over what follows it.
 */
static char *relayed_claims = NULL;
static uint64 relay_assignments = 0;

/* The relay last checked: trusted or not, for this transaction and role. */
static struct
{
	uint64		assignments;
	LocalTransactionId lxid;
	Oid			role;
	bool		trusted;
}			relay_checked;

/* The binding as last parsed, in TopMemoryContext. */
static struct
{
	uint64		assignments;	/* of the setting it was parsed from */
	bool		valid;
	LocalTransactionId lxid;
	Oid			role;
	bool		has_account;
	pg_uuid_t	account;
	Jsonb	   *claims;
	char	   *phone;			/* ->> 'phone_id', unparsed, or NULL */
	bool		relayed;		/* made from a relay ... */
	uint64		relay_assignments;	/* ... as the relay setting was then */
}			bound;

static void
count_assignment(const char *newval, void *extra)
{
	assignments++;
}

static void
count_relay_assignment(const char *newval, void *extra)
{
	relay_assignments++;
}

void
eightms_claims_init(void)
{
	DefineCustomStringVariable(BINDING_GUC,
							   "The claims the pre-request hook verified for the current transaction.",
							   "Set only by eightms_api.pre_request(); read by eightms.current_account_id() and eightms.jwt_claims().",
							   &verified_claims,
							   "",
							   PGC_SUSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL
							   | GUC_DISALLOW_IN_FILE | GUC_SUPERUSER_ONLY,
							   NULL, count_assignment, NULL);
	DefineCustomStringVariable(RELAY_GUC,
							   "The verified claims as the pre-request hook relays them to Citus nodes.",
							   "Set by the hook where Citus forwards SET LOCAL; trusted only with Citus loaded and a valid MAC.",
							   &relayed_claims,
							   "",
							   PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL
							   | GUC_DISALLOW_IN_FILE,
							   NULL, count_relay_assignment, NULL);
}

/* Citus is loaded and forwards SET LOCAL to the nodes a transaction uses. */
static bool
citus_forwards_set_local(void)
{
	const char *v = GetConfigOption("citus.propagate_set_commands", true, false);

	return v != NULL && strcmp(v, "local") == 0;
}

/* Citus is loaded in this server. */
static bool
citus_loaded(void)
{
	return GetConfigOption("citus.propagate_set_commands", true, false) != NULL;
}

/*
 * The local id of the transaction the request runs in: a parallel worker's
 * own transaction is part of its leader's.
 */
static inline LocalTransactionId
request_lxid(void)
{
	PGPROC	   *leader = MyProc->lockGroupLeader;

	return leader != NULL ? leader->lxid : MyProc->lxid;
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

/* Keep claims (and what is read from them) as the binding's. */
static void
keep_binding(LocalTransactionId lxid, Oid role, const pg_uuid_t *account, Jsonb *claims)
{
	Jsonb	   *kept_claims = MemoryContextAlloc(TopMemoryContext, VARSIZE(claims));
	char	   *phone = eightms_claim_text(claims, "phone_id");
	char	   *kept_phone = phone ? MemoryContextStrdup(TopMemoryContext, phone) : NULL;

	memcpy(kept_claims, claims, VARSIZE(claims));
	if (bound.claims != NULL)
		pfree(bound.claims);
	if (bound.phone != NULL)
		pfree(bound.phone);
	bound.claims = kept_claims;
	bound.phone = kept_phone;
	bound.lxid = lxid;
	bound.role = role;
	bound.has_account = (account != NULL);
	if (account != NULL)
		bound.account = *account;
	bound.valid = true;
	bound.relayed = false;
}

/* Parse the setting as it is now; a value not made by the hook binds nothing. */
static void
parse_binding(void)
{
	const char *s = verified_claims;
	char	   *end;
	unsigned long lxid;
	unsigned long role;
	pg_uuid_t	account;
	bool		has_account = false;

	bound.valid = false;
	bound.assignments = assignments;
	if (s == NULL || s[0] == '\0')
		return;
	lxid = strtoul(s, &end, 10);
	if (*end != ' ')
		return;
	role = strtoul(end + 1, &end, 10);
	if (*end != ' ')
		return;
	s = end + 1;
	if (s[0] == '-' && s[1] == ' ')
		s += 2;
	else if (strlen(s) > 37 && s[36] == ' ' && eightms_parse_uuid(s, 36, &account))
	{
		has_account = true;
		s += 37;
	}
	else
		return;
	keep_binding((LocalTransactionId) lxid, (Oid) role, has_account ? &account : NULL,
				 DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s))));
	bound.assignments = assignments;
}

/*
 * A relay (see the top of the file) made for the role this backend runs as,
 * checked and, when trusted, kept as this transaction's binding.
 */
static bool
trust_relay(void)
{
	const char *s = relayed_claims;
	LocalTransactionId lxid = request_lxid();
	Oid			role = GetOuterUserId();
	uint8		mac[32];
	uint8		given[32];
	char	   *end;
	long		made;
	long		now;
	const char *role_name;
	size_t		role_len;
	pg_uuid_t	account;
	bool		has_account = false;

	if (relay_checked.assignments == relay_assignments && relay_checked.lxid == lxid
		&& relay_checked.role == role)
		return relay_checked.trusted;
	relay_checked.assignments = relay_assignments;
	relay_checked.lxid = lxid;
	relay_checked.role = role;
	relay_checked.trusted = false;

	if (s == NULL || strncmp(s, "v1 ", 3) != 0 || strlen(s) < 3 + 64 + 1 || s[3 + 64] != ' ')
		return false;
	for (int i = 0; i < 32; i++)
	{
		int			hi = eightms_hex_value(s[3 + 2 * i]);
		int			lo = eightms_hex_value(s[4 + 2 * i]);

		if (hi < 0 || lo < 0)
			return false;
		given[i] = (uint8) (hi << 4 | lo);
	}
	s += 3 + 64 + 1;
	eightms_relay_mac(s, strlen(s), mac);
	if (CRYPTO_memcmp(mac, given, sizeof(mac)) != 0)
		return false;
	made = strtol(s, &end, 10);
	now = (long) (GetCurrentTimestamp() / USECS_PER_SEC
				  + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
	if (*end != ' ' || made > now + 60 || now - made > RELAY_MAX_AGE_SECS)
		return false;
	/*
	 * The relay names the role the request runs as.  Citus reaches this node
	 * as that role, or as the owner for the statements of a SECURITY DEFINER
	 * function: a superuser, who may read every row anyway, and for whom the
	 * request's claims are what current_account_id() must still answer.
	 */
	role_name = GetUserNameFromId(role, false);
	role_len = strlen(role_name);
	s = end + 1;
	if (!(strncmp(s, role_name, role_len) == 0 && s[role_len] == ' ') && !superuser_arg(role))
		return false;
	s = strchr(s, ' ');
	if (s == NULL)
		return false;
	s++;
	if (s[0] == '-' && s[1] == ' ')
		s += 2;
	else if (strlen(s) > 37 && s[36] == ' ' && eightms_parse_uuid(s, 36, &account))
	{
		has_account = true;
		s += 37;
	}
	else
		return false;
	keep_binding(lxid, role, has_account ? &account : NULL,
				 DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(s))));
	bound.assignments = assignments;
	bound.relayed = true;
	bound.relay_assignments = relay_assignments;
	relay_checked.trusted = true;
	return true;
}

/*
 * The binding, when it was made in this transaction for the current role,
 * by the hook here or (with Citus) relayed from the node that ran it.
 */
static bool
have_binding(void)
{
	if (bound.assignments != assignments)
		parse_binding();
	/* A binding made from a relay holds only while the relay is unchanged. */
	if (bound.valid && bound.lxid == request_lxid() && bound.role == GetOuterUserId()
		&& (!bound.relayed || bound.relay_assignments == relay_assignments))
		return true;
	return relayed_claims != NULL && relayed_claims[0] != '\0' && citus_loaded() && trust_relay();
}

/*
 * Where Citus forwards SET LOCAL, relay the binding just made to the nodes
 * this transaction works on (see the top of the file).
 */
static void
relay_binding(const char *claims_text, const char *acct)
{
	long		now = (long) (GetCurrentTimestamp() / USECS_PER_SEC
							  + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY);
	char	   *payload = psprintf("%ld %s %s %s", now,
								   GetUserNameFromId(GetOuterUserId(), false), acct, claims_text);
	uint8		mac[32];
	char		hex[65];
	char	   *value;

	eightms_relay_mac(payload, strlen(payload), mac);
	hex[hex_encode((const char *) mac, sizeof(mac), hex)] = '\0';
	value = psprintf("v1 %s %s", hex, payload);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(psprintf("SET LOCAL " RELAY_GUC " = %s", quote_literal_cstr(value)),
					false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "could not relay the verified claims");
	SPI_finish();
}

/*
 * Bind verified claims (their text, as the setting keeps it) and the
 * account the request acts on (NULL: none yet) to this transaction and the
 * role the request runs as.  Only the hook calls it.
 */
void
eightms_bind_claims(Jsonb *claims, const char *claims_text, const pg_uuid_t *account)
{
	LocalTransactionId lxid = request_lxid();
	Oid			role = GetOuterUserId();
	const char *acct = account
		? DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(account))) : "-";

	(void) set_config_option(BINDING_GUC,
							 psprintf("%u %u %s %s", lxid, role, acct, claims_text),
							 PGC_SUSET, PGC_S_SESSION, GUC_ACTION_LOCAL, true, 0, false);
	/* Parsing it back would give what we have. */
	keep_binding(lxid, role, account, claims);
	bound.assignments = assignments;
	if (citus_forwards_set_local())
		relay_binding(claims_text, acct);
}

/*
 * The account of eightms.current_account_id(), for C callers: false when
 * the current role has none bound (outside a verified request).
 */
bool
eightms_bound_account(pg_uuid_t *account)
{
	if (!have_binding() || !bound.has_account)
		return false;
	*account = bound.account;
	return true;
}

Datum
eightms_current_account_id(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *result;

	if (!have_binding() || !bound.has_account)
		PG_RETURN_NULL();
	result = palloc(sizeof(pg_uuid_t));
	*result = bound.account;
	PG_RETURN_UUID_P(result);
}

/* The verified claims, with the chosen account; {} outside a verified request. */
Datum
eightms_jwt_claims(PG_FUNCTION_ARGS)
{
	Jsonb	   *result;

	if (!have_binding())
		PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
	result = palloc(VARSIZE(bound.claims));
	memcpy(result, bound.claims, VARSIZE(bound.claims));
	PG_RETURN_JSONB_P(result);
}

/*
 * The calling phone, or an error: nullif(claims ->> 'phone_id', '')::uuid,
 * which must name one, with an account chosen too.
 */
Datum
eightms_require_phone(PG_FUNCTION_ARGS)
{
	Datum		phone = (Datum) 0;
	bool		have = have_binding() && bound.has_account;

	/* A phone_id that is no uuid fails as the cast fails. */
	if (have && bound.phone != NULL && bound.phone[0] != '\0')
		phone = DirectFunctionCall1(uuid_in, CStringGetDatum(bound.phone));
	if (phone == (Datum) 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("this call is for paired phones"),
				 errhint("Call it with the device token pair_phone returned.")));
	PG_RETURN_DATUM(phone);
}

/*
 * eightms.bind_account(acct uuid, member_role text) returns jsonb: the
 * request acts on acct (NULL: on none) as member_role from now on; returns
 * the claims as re-issued (account_id and account_role replaced).  For the
 * hook and the API's own functions, which have checked the membership; no
 * API role may call it.  It rebinds only a binding of this transaction and
 * role, so it never makes one up.
 */
Datum
eightms_bind_account(PG_FUNCTION_ARGS)
{
	pg_uuid_t  *acct = PG_ARGISNULL(0) ? NULL : PG_GETARG_UUID_P(0);
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbValue *res = NULL;
	Jsonb	   *claims;

	if (!have_binding())
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("no verified request to act on an account in"),
				 errhint("Call the API through PostgREST, whose pre-request hook verifies the request's token.")));

	it = JsonbIteratorInit(&bound.claims->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY
			&& ((v.val.string.len == 10 && memcmp(v.val.string.val, "account_id", 10) == 0)
				|| (v.val.string.len == 12 && memcmp(v.val.string.val, "account_role", 12) == 0)))
		{
			(void) JsonbIteratorNext(&it, &v, true);	/* and its value */
			continue;
		}
		if (tok == WJB_END_OBJECT && acct != NULL)
		{
			JsonbValue	k;
			JsonbValue	val;

			k.type = jbvString;
			k.val.string.val = "account_id";
			k.val.string.len = 10;
			pushJsonbValue(&state, WJB_KEY, &k);
			val.type = jbvString;
			val.val.string.val = DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(acct)));
			val.val.string.len = strlen(val.val.string.val);
			pushJsonbValue(&state, WJB_VALUE, &val);
			k.val.string.val = "account_role";
			k.val.string.len = 12;
			pushJsonbValue(&state, WJB_KEY, &k);
			if (PG_ARGISNULL(1))
				val.type = jbvNull;
			else
			{
				text	   *role = PG_GETARG_TEXT_PP(1);

				val.type = jbvString;
				val.val.string.val = VARDATA_ANY(role);
				val.val.string.len = VARSIZE_ANY_EXHDR(role);
			}
			pushJsonbValue(&state, WJB_VALUE, &val);
		}
		res = pushJsonbValue(&state, tok, tok < WJB_BEGIN_ARRAY ? &v : NULL);
	}
	claims = JsonbValueToJsonb(res);
	eightms_bind_claims(claims, JsonbToCString(NULL, &claims->root, VARSIZE(claims)), acct);
	PG_RETURN_JSONB_P(claims);
}
