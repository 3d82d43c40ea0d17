/*
 * template_sql.c
 *		SQL functions over src/template/template.c: render_template, which
 *		campaigns call once per recipient, and template_fields, which saving
 *		a template calls to check it (sql/templates.sql).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"

#include "template.h"

PG_FUNCTION_INFO_V1(eightms_render_template);
PG_FUNCTION_INFO_V1(eightms_template_fields);

/*
 * The parsed template of a call site, kept in fn_extra with a copy of the
 * body it was parsed from: a campaign renders one body for every
 * recipient, and parses it once.  A different body parses again.
 */
typedef struct TemplateCache
{
	MemoryContext cxt;			/* the body, the template, the values */
	char	   *body;
	size_t		len;
	Template   *template;
	TplValue   *values;
} TemplateCache;

static void *
tpl_palloc(void *ctx, size_t size)
{
	return MemoryContextAlloc((MemoryContext) ctx, size);
}

/* Parse, or raise 22023 with the position (never the body itself). */
static Template *
parse_or_raise(const char *body, size_t len, MemoryContext cxt)
{
	TplAllocator a = {tpl_palloc, NULL, cxt};
	Template   *t;
	long		position;
	TplError	err = tpl_parse(body, len, &a, &t, &position);

	if (err == TPL_ERR_NO_MEMORY)
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	if (err != TPL_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s at character %ld of the template", tpl_error_message(err), position),
				 errhint("Placeholders are {{first_name}}, {{last_name}}, {{company}} and {{custom.<field>}}, "
						 "each with an optional fallback after a bar, as in {{first_name|there}}; "
						 "write \\{{ for a literal {{.")));
	return t;
}

static TemplateCache *
cached_template(FunctionCallInfo fcinfo, text *body)
{
	TemplateCache *c = (TemplateCache *) fcinfo->flinfo->fn_extra;
	const char *data = VARDATA_ANY(body);
	size_t		len = VARSIZE_ANY_EXHDR(body);

	if (c != NULL && c->template != NULL && c->len == len && memcmp(c->body, data, len) == 0)
		return c;
	if (c == NULL)
	{
		c = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(TemplateCache));
		c->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "eightms template", ALLOCSET_SMALL_SIZES);
		fcinfo->flinfo->fn_extra = c;
	}
	MemoryContextReset(c->cxt);
	c->template = NULL;
	c->len = 0;
	c->body = MemoryContextAlloc(c->cxt, len + 1);
	memcpy(c->body, data, len);
	/* Set only once parsed: a body that failed is never taken for a cached one. */
	c->template = parse_or_raise(c->body, len, c->cxt);
	c->values = MemoryContextAllocZero(c->cxt, sizeof(TplValue) * (TPL_SLOT_CUSTOM + c->template->nfields));
	c->len = len;
	return c;
}

static void
set_text(TplValue *v, FunctionCallInfo fcinfo, int arg)
{
	if (PG_ARGISNULL(arg))
	{
		v->data = NULL;
		v->len = 0;
	}
	else
	{
		text	   *t = PG_GETARG_TEXT_PP(arg);

		v->data = VARDATA_ANY(t);
		v->len = VARSIZE_ANY_EXHDR(t);
	}
}

/*
 * A custom value as it renders: a string as it is, a number as its text,
 * a boolean as true or false; anything else (null, or an object or array,
 * which checked custom values never are) is missing.
 */
static void
set_custom(TplValue *v, JsonbContainer *custom, const TplField *f)
{
	JsonbValue	jv;
	JsonbValue *found = NULL;

	v->data = NULL;
	v->len = 0;
	if (custom != NULL)
		found = getKeyJsonValueFromContainer(custom, f->name, (int) f->len, &jv);
	if (found == NULL)
		return;
	switch (found->type)
	{
		case jbvString:
			v->data = found->val.string.val;
			v->len = found->val.string.len;
			break;
		case jbvNumeric:
			v->data = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(found->val.numeric)));
			v->len = strlen(v->data);
			break;
		case jbvBool:
			v->data = found->val.boolean ? "true" : "false";
			v->len = strlen(v->data);
			break;
		default:
			break;
	}
}

/*
 * render_template(body, first_name, last_name, company, custom jsonb):
 * the body with each placeholder replaced by the contact's value, or its
 * fallback when the value is NULL or empty (a NULL custom: none).  NULL
 * for a NULL body.
 */
Datum
eightms_render_template(PG_FUNCTION_ARGS)
{
	TemplateCache *c;
	Template   *t;
	JsonbContainer *custom = NULL;
	text	   *out;
	size_t		n;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	c = cached_template(fcinfo, PG_GETARG_TEXT_PP(0));
	t = c->template;
	set_text(&c->values[TPL_SLOT_FIRST_NAME], fcinfo, 1);
	set_text(&c->values[TPL_SLOT_LAST_NAME], fcinfo, 2);
	set_text(&c->values[TPL_SLOT_COMPANY], fcinfo, 3);
	if (t->nfields > 0 && !PG_ARGISNULL(4))
	{
		Jsonb	   *j = PG_GETARG_JSONB_P(4);

		if (JB_ROOT_IS_OBJECT(j))
			custom = &j->root;
	}
	for (int i = 0; i < t->nfields; i++)
		set_custom(&c->values[TPL_SLOT_CUSTOM + i], custom, &t->fields[i]);
	n = tpl_render_size(t, c->values);
	out = (text *) palloc(VARHDRSZ + n);
	SET_VARSIZE(out, VARHDRSZ + tpl_render(t, c->values, VARDATA(out)));
	/* The values point into this call's arguments: none is kept. */
	memset(c->values, 0, sizeof(TplValue) * (TPL_SLOT_CUSTOM + t->nfields));
	PG_RETURN_TEXT_P(out);
}

/*
 * template_fields(body) -> (names text[], positions integer[]): the custom
 * fields a body names, each once with the character of its first
 * placeholder; 22023 with the position when the body is not a template.
 */
Datum
eightms_template_fields(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	Template   *t = parse_or_raise(VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body), CurrentMemoryContext);
	TupleDesc	desc;
	Datum	   *names = palloc(sizeof(Datum) * (t->nfields + 1));
	Datum	   *positions = palloc(sizeof(Datum) * (t->nfields + 1));
	Datum		values[2];
	bool		nulls[2] = {false, false};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "template_fields must return a record");
	desc = BlessTupleDesc(desc);
	for (int i = 0; i < t->nfields; i++)
	{
		names[i] = PointerGetDatum(cstring_to_text_with_len(t->fields[i].name, (int) t->fields[i].len));
		positions[i] = Int32GetDatum((int32) t->fields[i].position);
	}
	values[0] = PointerGetDatum(construct_array(names, t->nfields, TEXTOID, -1, false, TYPALIGN_INT));
	values[1] = PointerGetDatum(construct_array(positions, t->nfields, INT4OID, 4, true, TYPALIGN_INT));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
