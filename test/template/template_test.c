/*
 * template_test.c
 *		Unit tests of the template parser and renderer (make template-test):
 *		each case a body, the values, and the rendering or the error and its
 *		position.  Prints "ok"/"not ok" per case and "N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/template.h"

typedef struct Case
{
	const char *name;
	const char *body;
	const char *first;			/* NULL: missing */
	const char *last;
	const char *company;
	const char *custom[3];		/* values of the custom fields, in order of appearance */
	const char *expect;			/* the rendering, or NULL when refused */
	TplError	error;
	long		position;
} Case;

static const Case cases[] = {
	{"plain text", "Hello there", NULL, NULL, NULL, {0}, "Hello there"},
	{"empty body", "", NULL, NULL, NULL, {0}, ""},
	{"first name", "Hi {{first_name}}!", "Ada", NULL, NULL, {0}, "Hi Ada!"},
	{"all three", "{{first_name}} {{last_name}} of {{company}}", "Ada", "Lovelace", "Engines", {0},
	"Ada Lovelace of Engines"},
	{"fallback used when missing", "Hi {{first_name|there}}!", NULL, NULL, NULL, {0}, "Hi there!"},
	{"fallback used when empty", "Hi {{first_name|there}}!", "", NULL, NULL, {0}, "Hi there!"},
	{"fallback unused when present", "Hi {{first_name|there}}!", "Ada", NULL, NULL, {0}, "Hi Ada!"},
	{"missing without fallback is empty", "Hi {{first_name}}!", NULL, NULL, NULL, {0}, "Hi !"},
	{"blanks inside braces", "Hi {{ first_name }} {{\tlast_name\n}}", "Ada", "L", NULL, {0}, "Hi Ada L"},
	{"blanks around the fallback trimmed", "Hi {{ first_name | dear friend }}!", NULL, NULL, NULL, {0},
	"Hi dear friend!"},
	{"empty fallback", "Hi {{first_name|}}!", NULL, NULL, NULL, {0}, "Hi !"},
	{"a bar in the fallback", "{{company|A|B}}", NULL, NULL, NULL, {0}, "A|B"},
	{"custom field", "Plan: {{custom.plan}}", NULL, NULL, NULL, {"gold"}, "Plan: gold"},
	{"custom field twice is one field", "{{custom.plan}}/{{ custom.plan |none}}", NULL, NULL, NULL, {"gold"},
	"gold/gold"},
	{"two custom fields", "{{custom.a}}{{custom.b_2}}", NULL, NULL, NULL, {"1", "2"}, "12"},
	{"custom missing renders fallback", "{{custom.plan|basic}}", NULL, NULL, NULL, {NULL}, "basic"},
	{"escaped braces", "Use \\{{first_name}} to greet", "Ada", NULL, NULL, {0}, "Use {{first_name}} to greet"},
	{"backslash elsewhere literal", "a\\b \\{ \\}}", NULL, NULL, NULL, {0}, "a\\b \\{ \\}}"},
	{"lone braces literal", "{a} }} {", NULL, NULL, NULL, {0}, "{a} }} {"},
	{"non-ASCII around placeholders", "Grüß {{first_name|dich}} ☺", NULL, NULL, NULL, {0}, "Grüß dich ☺"},
	{"value with braces is not parsed", "{{first_name}}", "{{last_name}}", "x", NULL, {0}, "{{last_name}}"},
	{"triple brace: the first two open", "{{{first_name}}}", "Ada", NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 1},
	{"unknown placeholder", "Hi {{firstname}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 4},
	{"upper case is unknown", "{{First_Name}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 1},
	{"empty placeholder", "x {{ }}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 3},
	{"empty name with fallback", "x {{|y}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 3},
	{"custom without a field", "{{custom.}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 1},
	{"custom with a bad field name", "{{custom.Plan}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 1},
	{"custom field name too long", "{{custom.a23456789012345678901234567890123456789012}}", NULL, NULL, NULL, {0},
	NULL, TPL_ERR_UNKNOWN, 1},
	{"position counts characters, not bytes", "Grüße ☺ {{nope}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 9},
	{"position after a placeholder", "{{first_name}}é{{x}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 16},
	{"position after an escape", "\\{{ {{x}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNKNOWN, 5},
	{"unclosed", "Hi {{first_name", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNCLOSED, 4},
	{"unclosed by one brace", "Hi {{first_name}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNCLOSED, 4},
	{"only braces", "{{", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNCLOSED, 1},
	{"nested", "{{first_name|{{company}}}}", NULL, NULL, NULL, {0}, NULL, TPL_ERR_NESTED, 1},
	{"a later placeholder at fault", "{{company}} {{last_name|x", NULL, NULL, NULL, {0}, NULL, TPL_ERR_UNCLOSED, 13},
};

static int	passed,
			failed;

static void
report(bool ok, const char *name, const char *detail)
{
	if (ok)
		passed++;
	else
		failed++;
	printf("%s - %s%s%s\n", ok ? "ok" : "not ok", name, detail ? ": " : "", detail ? detail : "");
}

static void
run_case(const Case *c)
{
	Template   *t;
	long		pos;
	TplError	err = tpl_parse(c->body, strlen(c->body), NULL, &t, &pos);
	char		detail[256];

	if (c->expect == NULL)
	{
		snprintf(detail, sizeof(detail), "got %s at %ld, want %s at %ld", tpl_error_name(err), pos,
				 tpl_error_name(c->error), c->position);
		report(err == c->error && pos == c->position && t == NULL, c->name, err == c->error && pos == c->position ? NULL : detail);
		return;
	}
	if (err != TPL_OK)
	{
		snprintf(detail, sizeof(detail), "refused: %s at %ld", tpl_error_name(err), pos);
		report(false, c->name, detail);
		return;
	}
	{
		TplValue	values[TPL_SLOT_CUSTOM + 3] = {{0}};
		size_t		n;
		char	   *out;

		values[TPL_SLOT_FIRST_NAME].data = c->first;
		values[TPL_SLOT_FIRST_NAME].len = c->first ? strlen(c->first) : 0;
		values[TPL_SLOT_LAST_NAME].data = c->last;
		values[TPL_SLOT_LAST_NAME].len = c->last ? strlen(c->last) : 0;
		values[TPL_SLOT_COMPANY].data = c->company;
		values[TPL_SLOT_COMPANY].len = c->company ? strlen(c->company) : 0;
		for (int i = 0; i < t->nfields && i < 3; i++)
		{
			values[TPL_SLOT_CUSTOM + i].data = c->custom[i];
			values[TPL_SLOT_CUSTOM + i].len = c->custom[i] ? strlen(c->custom[i]) : 0;
		}
		n = tpl_render_size(t, values);
		out = malloc(n + 1);
		if (tpl_render(t, values, out) != n)
			report(false, c->name, "render wrote another length than render_size said");
		else
		{
			out[n] = '\0';
			snprintf(detail, sizeof(detail), "got \"%s\"", out);
			report(strcmp(out, c->expect) == 0, c->name, strcmp(out, c->expect) == 0 ? NULL : detail);
		}
		free(out);
		tpl_free(t, NULL);
	}
}

int
main(void)
{
	Template   *t;
	long		pos;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		run_case(&cases[i]);

	/* The fields a template names: each once, with its first position. */
	if (tpl_parse("ß{{custom.b}} {{custom.a|x}}{{custom.b}}", 41, NULL, &t, &pos) == TPL_OK)
	{
		report(t->nfields == 2 && t->fields[0].len == 1 && t->fields[0].name[0] == 'b' && t->fields[0].position == 2
			   && t->fields[1].name[0] == 'a' && t->fields[1].position == 15,
			   "custom fields listed once, in order, with their positions", NULL);
		tpl_free(t, NULL);
	}
	else
		report(false, "custom fields listed once, in order, with their positions", "refused");

	/* Every error has a stable name and a message. */
	report(strcmp(tpl_error_name(TPL_ERR_UNKNOWN), "unknown") == 0
		   && strcmp(tpl_error_message(TPL_ERR_UNCLOSED), "unclosed placeholder (no }} after it)") == 0
		   && strcmp(tpl_error_name((TplError) 99), "unknown_error") == 0,
		   "error names and messages", NULL);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
