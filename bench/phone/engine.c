/*
 * bench/phone/engine.c: the SQL rows' engine work (phone_e164_possible, what
 * a non-strict e164 calls) by wall clock, two builds of the engine in one
 * process.  bench/phone/engine.sh builds it: the base build's symbols are
 * renamed base_*, the other keeps its own.
 *
 *   engine INPUTS.TSV PASSES
 *
 * Reads run.sh's corpus (raw, tab, region), keeps the rows whose non-strict
 * e164 succeeds (run.sh's table of possible numbers), checks that both builds
 * give the same answers on every input, then times PASSES passes of each
 * over those rows, alternated (every other pass in the other order), and
 * prints each build's best and median nanoseconds per row and the median of
 * the passes' ratios.  One process, passes of a tenth of a second: what the
 * machine's speed does from second to second falls on both builds alike.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phone/phone.h"

extern const PhoneTables base_phone_tables_v9_0_35;
extern int	base_phone_e164_possible(const PhoneTables *t, const char *raw, size_t len,
									 const PhoneRegion *region, char *buf);

typedef int (*E164Fn) (const PhoneTables *t, const char *raw, size_t len,
					   const PhoneRegion *region, char *buf);

typedef struct Row
{
	size_t		off;
	int			len;
	int			region;			/* index in the tables' regions, or -1 */
} Row;

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static const PhoneRegion *
region_in(const PhoneTables *t, int i)
{
	return i < 0 ? NULL : &t->regions[i];
}

/* Where the passes' sums go, so that the calls are not optimized away. */
static volatile long sink;

/* One pass over the rows, timed: nanoseconds a row. */
static __attribute__((noinline)) double
pass(E164Fn f, const PhoneTables *t, const char *text, const Row *rows, int n)
{
	long		sum = 0;
	char		out[32];
	double		t0 = now_ns();

	for (int i = 0; i < n; i++)
		sum += f(t, text + rows[i].off, rows[i].len, region_in(t, rows[i].region), out);
	sink += sum;
	return (now_ns() - t0) / n;
}

int
main(int argc, char **argv)
{
	const PhoneTables *nt = &phone_tables_v9_0_35;
	const PhoneTables *bt = &base_phone_tables_v9_0_35;
	FILE	   *f;
	int			passes;
	char	   *text;
	size_t		used = 0;
	size_t		cap = 1 << 20;
	Row		   *rows;
	int			n = 0;
	int			nrows = 1 << 16;
	int			all = 0;
	char	   *line = NULL;
	size_t		lcap = 0;
	ssize_t		l;
	double	   *tb,
			   *tn,
			   *q;

	if (argc != 3 || (f = fopen(argv[1], "r")) == NULL || (passes = atoi(argv[2])) < 1)
	{
		fprintf(stderr, "usage: engine INPUTS.TSV PASSES\n");
		return 2;
	}
	text = malloc(cap);
	rows = malloc(sizeof(Row) * nrows);
	while ((l = getline(&line, &lcap, f)) > 0)
	{
		char	   *tab;
		char		region[4] = {0};
		const PhoneRegion *r;
		char		o1[32],
					o2[32];
		int			a,
					b;
		size_t		len;

		if (line[l - 1] == '\n')
			line[--l] = '\0';
		if ((tab = strrchr(line, '\t')) == NULL)
			continue;
		all++;
		len = (size_t) (tab - line);
		if (strlen(tab + 1) > 3)
			continue;
		for (int i = 0; tab[1 + i]; i++)
			region[i] = (char) toupper((unsigned char) tab[1 + i]);
		r = phone_region(nt, region);
		a = phone_e164_possible(nt, line, len, r, o1);
		b = base_phone_e164_possible(bt, line, len, r ? &bt->regions[r - nt->regions] : NULL, o2);
		if (a != b || (a > 0 && memcmp(o1, o2, a) != 0))
		{
			fprintf(stderr, "the builds differ on input %d: %s\n", all, line);
			return 1;
		}
		if (a < 0)
			continue;
		if (used + len > cap)
			text = realloc(text, cap *= 2);
		if (n == nrows)
			rows = realloc(rows, sizeof(Row) * (nrows *= 2));
		memcpy(text + used, line, len);
		rows[n].off = used;
		rows[n].len = (int) len;
		rows[n].region = r ? (int) (r - nt->regions) : -1;
		used += len;
		n++;
	}
	tb = malloc(sizeof(double) * passes);
	tn = malloc(sizeof(double) * passes);
	q = malloc(sizeof(double) * passes);
	for (int p = 0; p < passes; p++)
	{
		/* Every other pass the other build first. */
		if (p % 2 == 0)
		{
			tb[p] = pass(base_phone_e164_possible, bt, text, rows, n);
			tn[p] = pass(phone_e164_possible, nt, text, rows, n);
		}
		else
		{
			tn[p] = pass(phone_e164_possible, nt, text, rows, n);
			tb[p] = pass(base_phone_e164_possible, bt, text, rows, n);
		}
		q[p] = tn[p] / tb[p];
	}
	qsort(tb, passes, sizeof(double), cmp_double);
	qsort(tn, passes, sizeof(double), cmp_double);
	qsort(q, passes, sizeof(double), cmp_double);
	printf("rows: %d possible numbers (of %d inputs), %d alternating passes of each build\n",
		   n, all, passes);
	printf("base: %.1f ns a row (best pass), %.1f (median)\n", tb[0], tb[passes / 2]);
	printf("this: %.1f ns a row (best pass), %.1f (median)\n", tn[0], tn[passes / 2]);
	printf("this/base: %.3f, median of the passes (quartiles %.3f and %.3f)\n",
		   q[passes / 2], q[passes / 4], q[3 * passes / 4]);
	return 0;
}
