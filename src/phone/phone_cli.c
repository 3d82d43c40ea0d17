/*
 * phone_cli.c
 *		eightms-phone: read "raw<TAB>region" lines, write
 *		"e164<TAB>valid<TAB>type<TAB>region" (empty e164 when the input cannot
 *		be parsed), with the tables of one metadata version.
 *
 *		eightms-phone [--metadata v9.0.35|v8.12.57] < input
 */
#include <stdio.h>
#include <string.h>

#include "phone.h"

int
main(int argc, char **argv)
{
	const PhoneTables *t = &phone_tables_v9_0_35;
	char		line[4096];

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--metadata") == 0 && i + 1 < argc)
		{
			i++;
			if (strcmp(argv[i], "v9.0.35") == 0)
				t = &phone_tables_v9_0_35;
			else if (strcmp(argv[i], "v8.12.57") == 0)
				t = &phone_tables_v8_12_57;
			else
			{
				fprintf(stderr, "eightms-phone: unknown metadata version %s (v9.0.35 or v8.12.57)\n", argv[i]);
				return 2;
			}
		}
		else
		{
			fprintf(stderr, "usage: eightms-phone [--metadata v9.0.35|v8.12.57] < lines of raw<TAB>region\n");
			return 2;
		}
	}
	while (fgets(line, sizeof(line), stdin) != NULL)
	{
		size_t		len = strcspn(line, "\n");
		char	   *tab;
		const char *region = "";
		PhoneNumber p;
		char		e164[32];

		line[len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[--len] = '\0';
		tab = strchr(line, '\t');
		if (tab != NULL)
		{
			*tab = '\0';
			region = tab + 1;
		}
		if (phone_parse(t, line, strlen(line), region, &p) != PHONE_OK)
		{
			printf("\t0\tunknown\t\n");
			continue;
		}
		phone_format_e164(&p, e164);
		{
			const char *r;
			PhoneType	type;

			phone_classify(t, &p, &r, &type);
			printf("%s\t%d\t%s\t%s\n", e164, r != NULL && type != PHONE_UNKNOWN ? 1 : 0,
				   phone_type_name(type), r ? r : "");
		}
	}
	return 0;
}
