/*
 * message_state.c
 *		eightms.message_state_ok(direction, status, pending): the check on
 *		every row version of eightms.message.
 *
 * The rule: direction is 'out' or 'in'; status is one of queued, claimed,
 * sent, delivered, failed, expired, canceled, received; pending is true
 * exactly while the message is queued or claimed, and NULL otherwise (the
 * queue indexes look at pending, see sql/gateway_tables.sql).
 *
 * Why C: PostgreSQL rebuilds a table's check expressions from their stored
 * text for every statement that writes the table (stringToNode, then the
 * planner), and a message is written by four statements in its life.  The
 * rule spelled as a CASE over eight states is long to rebuild for every
 * statement and slow to evaluate for every row; a call of this function is
 * short to rebuild and quick to run (bench/README.md, bench/gateway).
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(eightms_message_state_ok);

static inline bool
text_is(text *t, const char *lit, size_t len)
{
	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), lit, len) == 0;
}

#define TEXT_IS(t, lit) text_is((t), (lit), sizeof(lit) - 1)

/* Not STRICT: a NULL pending is part of the rule; a NULL state is refused. */
Datum
eightms_message_state_ok(PG_FUNCTION_ARGS)
{
	text	   *direction;
	text	   *status;
	bool		pending_null = PG_ARGISNULL(2);
	bool		pending = !pending_null && PG_GETARG_BOOL(2);

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	direction = PG_GETARG_TEXT_PP(0);
	status = PG_GETARG_TEXT_PP(1);

	if (!TEXT_IS(direction, "out") && !TEXT_IS(direction, "in"))
		PG_RETURN_BOOL(false);

	/* The states a message waits in: pending must be true. */
	if (TEXT_IS(status, "queued") || TEXT_IS(status, "claimed"))
		PG_RETURN_BOOL(pending);

	/* Every other state: pending must be NULL. */
	if (TEXT_IS(status, "sent") || TEXT_IS(status, "delivered") ||
		TEXT_IS(status, "received") || TEXT_IS(status, "failed") ||
		TEXT_IS(status, "expired") || TEXT_IS(status, "canceled"))
		PG_RETURN_BOOL(pending_null);

	PG_RETURN_BOOL(false);
}
