/*
 * csv_cli.c
 *		The CSV reader as a filter, for the differential check against
 *		Python's csv module (test/csv/diff.py): stdin holds inputs, each as
 *		a line "<delimiter as a decimal byte, 0 to detect> <length>" and that
 *		many bytes; for each it prints the dump of csv_dump.h, fed in small
 *		uneven chunks, and a line "= <the delimiter used, as a decimal byte>".
 */
#include <stdio.h>
#include <stdlib.h>

#include "csv_dump.h"

int
main(void)
{
	static const size_t sizes[] = {3, 1, 7, 64};
	int			delimiter;
	size_t		len;

	while (scanf("%d %zu", &delimiter, &len) == 2)
	{
		CsvOptions	o = {(char) delimiter, 0, 0, 0, NULL};
		char	   *in = malloc(len + 1);
		DumpBuf		d = {0};
		CsvParser  *p = csv_create(&o);
		CsvRecord	r;

		if (getchar() != '\n' || in == NULL || fread(in, 1, len, stdin) != len)
		{
			fprintf(stderr, "csv_cli: short input\n");
			return 2;
		}
		csv_dump(&o, in, len, sizes, 4, NULL, &d);
		fputs(d.s ? d.s : "", stdout);
		/* the delimiter in use, for Python to be told */
		csv_feed(p, in, len);
		csv_finish(p);
		(void) csv_next(p, &r);
		printf("= %d\n", csv_delimiter(p));
		csv_destroy(p);
		free(d.s);
		free(in);
	}
	return 0;
}
