/*
 * pre_request.c
 *		eightms_api.pre_request(), PostgREST's db-pre-request hook.  A phone's
 *		requests are checked here; a dashboard user's and an anonymous
 *		caller's go on to eightms.pre_request_member() (PL/pgSQL, in
 *		sql/api_tenancy.sql).
 *
 * Every request runs the hook, and phones make most of them (claims,
 * reports, heartbeats, inbound SMS).  Written in PL/pgSQL, a phone's check
 * cost about 196,000 instructions, 125,000 of them in the function itself:
 * PL/pgSQL prepares its expressions again in every transaction, and each
 * request is one.  Here the check is one saved plan.  Its answers and
 * errors are the PL/pgSQL version's (test/pgtap/50_gateway.sql).
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/pg_list.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "eightms.h"

PG_FUNCTION_INFO_V1(eightms_pre_request);

/* The account's status, and whether the device token is the phone's current one. */
static SPIPlanPtr device_plan = NULL;

#define DEVICE_QUERY \
	"SELECT a.status, EXISTS (SELECT FROM eightms.phone p" \
	" WHERE p.account_id = $1" \
	" AND p.phone_id = NULLIF($2, '')::pg_catalog.uuid" \
	" AND p.unpaired_at IS NULL" \
	" AND p.token_version::pg_catalog.text OPERATOR(pg_catalog.=) $3)" \
	" FROM eightms.account a WHERE a.account_id = $1"

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
 * Where Citus sends SET LOCAL to its workers (citus.propagate_set_commands
 * = 'local'), the claims are issued again as SET LOCAL, which it sees and
 * set_config is not (DESIGN.md).  Elsewhere they already are what they
 * should be.
 */
static bool
citus_propagates_set_local(void)
{
	const char *v = GetConfigOption("citus.propagate_set_commands", true, false);

	return v != NULL && strcmp(v, "local") == 0;
}

/*
 * A device token: its account must be active, and its token version the
 * phone's current one (unpairing or pairing the device again bumps it, so
 * older tokens stop working at once).
 */
static void
check_device(Jsonb *claims, const char *claims_text)
{
	char	   *acct_text = eightms_claim_text(claims, "account_id");
	char	   *phone = eightms_claim_text(claims, "phone_id");
	char	   *tv = eightms_claim_text(claims, "tv");
	pg_uuid_t	acct;
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	bool		active = false;
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
	if (device_plan == NULL)
	{
		Oid			argtypes[3] = {UUIDOID, TEXTOID, TEXTOID};
		SPIPlanPtr	plan = SPI_prepare(DEVICE_QUERY, 3, argtypes);

		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "could not prepare the device token check: %s",
				 SPI_result_code_string(SPI_result));
		device_plan = plan;
	}
	if (SPI_execute_plan(device_plan, values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "the device token check failed");
	if (SPI_processed == 1)
	{
		HeapTuple	row = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		status = SPI_getbinval(row, desc, 1, &isnull);

		active = !isnull && strcmp(TextDatumGetCString(status), "active") == 0;
		current = DatumGetBool(SPI_getbinval(row, desc, 2, &isnull)) && !isnull;
	}
	if (active && current && citus_propagates_set_local())
		SPI_execute(psprintf("SET LOCAL request.jwt.claims = %s", quote_literal_cstr(claims_text)),
					false, 0);
	SPI_finish();

	if (!active)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("account %s is not active",
						DatumGetCString(DirectFunctionCall1(uuid_out, UUIDPGetDatum(&acct))))));
	if (!current)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("this device token has been revoked"),
				 errhint("The phone was unpaired or paired again; pair it with a new code.")));
}

Datum
eightms_pre_request(PG_FUNCTION_ARGS)
{
	const char *text = eightms_request_claims();
	Jsonb	   *claims;
	char	   *role;

	/* As eightms.jwt_claims() reads them: none is an empty object. */
	if (text == NULL || text[0] == '\0')
		text = "{}";
	claims = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(text)));
	role = eightms_claim_text(claims, "role");

	if (role != NULL && strcmp(role, "eightms_phone") == 0)
		check_device(claims, text);
	else
		call_member_hook();
	PG_RETURN_VOID();
}
