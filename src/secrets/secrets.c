/*
 * secrets.c
 *		Where the server's secrets come from, and what is left of them there.
 *
 * The seal key ring and the JWT secret come from a key file named by
 * eightms.secrets_file (the documented way) or from the server's
 * environment.  Each variable is taken from the file when the file sets it,
 * else from the environment.  seal.c and jwt.c read them through
 * eightms_secret() while the library loads; eightms_secrets_forget() then
 * wipes the file's bytes and, in the postmaster, every trace in the
 * environment, so that neither child processes nor /proc/PID/environ show
 * them.
 *
 * The same file also holds the check that the server's logging settings do
 * not write statement text (which can carry gateway passwords and secret
 * header values) to its log.
 */
#include "postgres.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "lib/stringinfo.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "secrets.h"

/* A key file is a few lines; anything bigger is not one. */
#define SECRETS_FILE_MAX	(64 * 1024)

/* The variables eightms reads; other names in the file are ignored. */
static const char *const secret_names[] = {
	"EIGHTMS_SEAL_KEYS",
	"EIGHTMS_SEAL_ACTIVE_KEY",
	"EIGHTMS_JWT_SECRET",
};

#define NSECRETS lengthof(secret_names)

/* GUC: the key file's path, empty for none. */
static char *secrets_file_path = NULL;

static struct
{
	char	   *buf;			/* the file's bytes (malloc'd), or NULL */
	size_t		size;
	const char *value[NSECRETS];	/* pointers into buf */
	const char *refused;		/* why the file is not used, or NULL */
}			secrets_file;

static bool
in_postmaster_start(void)
{
	return process_shared_preload_libraries_in_progress && !IsUnderPostmaster;
}

static int
secret_index(const char *name, size_t len)
{
	for (int i = 0; i < (int) NSECRETS; i++)
		if (strlen(secret_names[i]) == len && strncmp(secret_names[i], name, len) == 0)
			return i;
	return -1;
}

/*
 * KEY=VALUE lines, as test/lib.sh writes them and a shell can source: blank
 * lines and lines starting with '#' are skipped, an "export " prefix is
 * allowed and a value may be wrapped in matching single or double quotes.
 * Warnings name a line by its number only: a malformed line may be a key.
 */
static void
parse_secrets_file(void)
{
	char	   *line = secrets_file.buf;
	int			lineno = 0;

	while (line != NULL && *line != '\0')
	{
		char	   *next = strchr(line, '\n');
		char	   *name;
		char	   *eq;
		char	   *end;
		int			idx;

		lineno++;
		if (next != NULL)
			*next++ = '\0';
		end = line + strlen(line);
		while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
			*--end = '\0';
		while (*line == ' ' || *line == '\t')
			line++;
		if (*line == '\0' || *line == '#')
		{
			line = next;
			continue;
		}
		if (strncmp(line, "export ", 7) == 0)
			line += 7;
		name = line;
		eq = name;
		while ((*eq >= 'A' && *eq <= 'Z') || (*eq >= 'a' && *eq <= 'z') ||
			   (*eq >= '0' && *eq <= '9') || *eq == '_')
			eq++;
		if (eq == name || *eq != '=')
		{
			if (in_postmaster_start())
				ereport(WARNING,
						(errmsg("eightms: line %d of eightms.secrets_file is not of the form NAME=VALUE; it is ignored",
								lineno)));
			line = next;
			continue;
		}
		idx = secret_index(name, eq - name);
		if (idx >= 0)
		{
			char	   *value = eq + 1;
			size_t		len = strlen(value);

			if (len >= 2 && (value[0] == '"' || value[0] == '\'') && value[len - 1] == value[0])
			{
				value[len - 1] = '\0';
				value++;
			}
			/* Later lines win, as when a shell sources the file. */
			secrets_file.value[idx] = value;
		}
		line = next;
	}
}

/*
 * Refuse the file: no secret is then taken from anywhere, so that a key file
 * that must be fixed is not silently replaced by an old environment.
 */
static void
refuse_secrets_file(const char *reason, const char *hint)
{
	secrets_file.refused = MemoryContextStrdup(TopMemoryContext,
											   psprintf("eightms.secrets_file was refused: %s", reason));
	if (in_postmaster_start())
		ereport(WARNING,
				(errmsg("eightms: the secrets file \"%s\" is not used: %s", secrets_file_path, reason),
				 errdetail("Sealing, unsealing and JWTs fail until the server is restarted with a usable file."),
				 hint ? errhint("%s", hint) : 0));
}

/*
 * Read the key file, checked as PostgreSQL checks its SSL key: a regular
 * file owned by the server's user, with no access for group or others.
 * The checks run on the opened file, so it cannot be swapped in between.
 */
static void
read_secrets_file(void)
{
	int			fd;
	struct stat st;
	size_t		got = 0;

	fd = open(secrets_file_path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
	{
		refuse_secrets_file(psprintf("could not open it: %m"), NULL);
		return;
	}
	if (fstat(fd, &st) < 0)
		refuse_secrets_file(psprintf("could not stat it: %m"), NULL);
	else if (!S_ISREG(st.st_mode))
		refuse_secrets_file("it is not a regular file", NULL);
	else if (st.st_uid != geteuid())
		refuse_secrets_file("it is not owned by the server's operating system user",
							"Give it to the user the server runs as, with mode 0600 (u=rw) or 0400.");
	else if ((st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
		refuse_secrets_file("it has group or world access",
							"Make it mode 0600 (u=rw) or 0400, owned by the server's operating system user.");
	else if (st.st_size > SECRETS_FILE_MAX)
		refuse_secrets_file("it is larger than 64 kB", NULL);
	else
	{
		secrets_file.buf = malloc(st.st_size + 1);
		if (secrets_file.buf == NULL)
			refuse_secrets_file("out of memory reading it", NULL);
		else
		{
			while (got < (size_t) st.st_size)
			{
				ssize_t		n = read(fd, secrets_file.buf + got, st.st_size - got);

				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					break;
				got += n;
			}
			secrets_file.size = st.st_size + 1;
			secrets_file.buf[got] = '\0';
			if (got < (size_t) st.st_size)
				refuse_secrets_file("could not read all of it", NULL);
			else
				parse_secrets_file();
		}
	}
	close(fd);
}

/*
 * Called from _PG_init before the capabilities that read secrets.
 */
void
eightms_secrets_init(void)
{
	/*
	 * A setting for server start only, and only the postmaster reads
	 * secrets: defined after startup, it would end the session with FATAL.
	 */
	if (!process_shared_preload_libraries_in_progress)
		return;
	DefineCustomStringVariable("eightms.secrets_file",
							   "File the server reads its secrets from (seal key ring, JWT secret) at start.",
							   "KEY=VALUE lines; mode 0600 or 0400 and owned by the server's user, or it is refused. "
							   "A variable it sets wins over the same one in the environment.",
							   &secrets_file_path, "", PGC_POSTMASTER, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	if (secrets_file_path != NULL && secrets_file_path[0] != '\0')
		read_secrets_file();
}

/*
 * The value of a secret, or NULL with *problem (when asked) saying why there
 * is none; the problem names the variable and the source, never a value.
 * Only valid while the library loads: eightms_secrets_forget() wipes both
 * sources.
 */
const char *
eightms_secret(const char *name, const char **problem)
{
	int			idx = secret_index(name, strlen(name));
	bool		have_file = secrets_file_path != NULL && secrets_file_path[0] != '\0';
	const char *value;

	Assert(idx >= 0);
	if (secrets_file.refused != NULL)
	{
		if (problem)
			*problem = secrets_file.refused;
		return NULL;
	}
	if (idx >= 0 && secrets_file.value[idx] != NULL)
		return secrets_file.value[idx];
	value = getenv(name);
	if (value == NULL && problem)
		*problem = MemoryContextStrdup(TopMemoryContext,
									   have_file
									   ? psprintf("%s is set neither in eightms.secrets_file nor in the server's environment", name)
									   : psprintf("%s is not set in the server's environment", name));
	return value;
}

/*
 * Overwrite the values of eightms's variables in the environment block the
 * process started with.
 *
 * PostgreSQL (ps_status.c, save_ps_display_args) copies environ to the heap
 * before any library loads and uses the original argv/environ area as the
 * buffer for the ps display, so unsetenv() only reaches the copy; the kernel
 * keeps showing the original bytes, between env_start and env_end, in
 * /proc/PID/environ, and every child inherits them with the fork.
 *
 * Writing into that area is safe whether or not the ps display buffer
 * overlaps it: nothing reads the original strings any more (environ points
 * at the copy), the area is this process's own writable memory, and the ps
 * display code only ever overwrites it with its own text.  We write NUL
 * bytes over each value and stay inside [env_start, env_end), so the names
 * remain and nothing past the area is touched.
 *
 * Returns NULL on success, else why the area could not be found.
 */
static const char *
wipe_original_environment(void)
{
	FILE	   *f;
	char		line[4096];
	size_t		n;
	char	   *p;
	char	   *save = NULL;
	unsigned long field[52] = {0};	/* proc(5) numbering, from 1 */
	int			fieldno = 2;	/* the last field before the fields we scan */
	char	   *start;
	char	   *end;

	f = fopen("/proc/self/stat", "r");
	if (f == NULL)
		return "/proc/self/stat cannot be read";
	n = fread(line, 1, sizeof(line) - 1, f);
	fclose(f);
	line[n] = '\0';

	/* Field 2, the command name in parentheses, may hold spaces and ')'. */
	p = strrchr(line, ')');
	if (p == NULL)
		return "/proc/self/stat has an unexpected layout";
	for (char *tok = strtok_r(p + 1, " \n", &save); tok != NULL && fieldno < 51;
		 tok = strtok_r(NULL, " \n", &save))
	{
		fieldno++;
		field[fieldno] = strtoul(tok, NULL, 10);
	}

	/*
	 * Fields 48 to 51 (arg_start, arg_end, env_start, env_end) exist since
	 * Linux 3.5; the environment follows the arguments.
	 */
	if (fieldno < 51 || field[50] == 0 || field[48] >= field[49] ||
		field[49] > field[50] || field[50] >= field[51] ||
		field[51] - field[50] > 256 * 1024 * 1024)
		return "/proc/self/stat does not give the bounds of the environment";

	start = (char *) (uintptr_t) field[50];
	end = (char *) (uintptr_t) field[51];
	for (p = start; p < end;)
	{
		size_t		len = strnlen(p, end - p);
		char	   *eq = memchr(p, '=', len);

		if (eq != NULL && secret_index(p, eq - p) >= 0)
		{
			for (volatile char *v = eq + 1; v < p + len; v++)
				*v = '\0';
		}
		p += len + 1;
	}
	return NULL;
}

/* Wipe an environment variable's value in place, then remove it. */
static void
forget_env(const char *name)
{
	char	   *value = getenv(name);

	if (value != NULL)
	{
		/* volatile stores, so the compiler cannot drop them as dead */
		for (volatile char *p = value; *p != '\0'; p++)
			*p = '\0';
		unsetenv(name);
	}
}

/*
 * Called from _PG_init once the capabilities have taken their copies: the
 * file's bytes are wiped in every process that read them; the postmaster
 * also removes the variables from its environment (so that programs the
 * server runs, such as archive_command or COPY ... PROGRAM, never inherit
 * them) and wipes them from its original environment block (so that
 * /proc/PID/environ of the postmaster and of every child shows no value).
 */
void
eightms_secrets_forget(void)
{
	if (secrets_file.buf != NULL)
	{
		explicit_bzero(secrets_file.buf, secrets_file.size);
		free(secrets_file.buf);
		secrets_file.buf = NULL;
	}
	memset(secrets_file.value, 0, sizeof(secrets_file.value));

	if (in_postmaster_start())
	{
		bool		in_env = false;
		const char *failed;

		for (int i = 0; i < (int) NSECRETS; i++)
			in_env |= getenv(secret_names[i]) != NULL;
		if (in_env && (failed = wipe_original_environment()) != NULL)
			ereport(WARNING,
					(errmsg("eightms: could not wipe the secrets from the server's original environment"),
					 errdetail("%s; /proc/%d/environ may still show them.", failed, (int) getpid()),
					 errhint("Keep the secrets in the file eightms.secrets_file names, not in the environment.")));
		for (int i = 0; i < (int) NSECRETS; i++)
			forget_env(secret_names[i]);
	}
}

/*
 * Warn, once at start, when the server's logging settings would write the
 * text of statements (or their parameters) to the log: a heartbeat's
 * gateway password or http_enqueue's secret headers are arguments in that
 * text.  log_statement = 'ddl' is left alone: eightms's secrets are never
 * DDL.  Only the settings at start are checked; a later reload is not.
 */
void
eightms_check_statement_logging(void)
{
	StringInfoData what;
	const char *explain_min = GetConfigOption("auto_explain.log_min_duration", true, false);

	if (!in_postmaster_start())
		return;

	initStringInfo(&what);
	if (log_statement == LOGSTMT_MOD || log_statement == LOGSTMT_ALL)
		appendStringInfo(&what, ", log_statement = '%s'", GetConfigOption("log_statement", false, false));
	if (log_min_duration_statement >= 0)
		appendStringInfo(&what, ", log_min_duration_statement = %d", log_min_duration_statement);
	if (log_min_duration_sample >= 0 && log_statement_sample_rate > 0)
		appendStringInfo(&what, ", log_min_duration_sample = %d", log_min_duration_sample);
	if (log_xact_sample_rate > 0)
		appendStringInfo(&what, ", log_transaction_sample_rate = %g", log_xact_sample_rate);
	if (log_min_error_statement < PANIC)
		appendStringInfo(&what, ", log_min_error_statement = '%s'", GetConfigOption("log_min_error_statement", false, false));
	if (log_parameter_max_length_on_error != 0)
		appendStringInfo(&what, ", log_parameter_max_length_on_error = %d", log_parameter_max_length_on_error);
	if (explain_min != NULL && explain_min[0] != '\0' && strtol(explain_min, NULL, 10) != -1)
		appendStringInfo(&what, ", auto_explain.log_min_duration = %s", explain_min);

	if (what.len > 0)
		ereport(WARNING,
				(errmsg("eightms: the server's logging settings write SQL statement text to its log, where gateway passwords and secret header values can appear"),
				 errdetail("Set: %s.", what.data + 2),
				 errhint("Use log_statement = 'none' or 'ddl', log_min_duration_statement = -1, log_min_duration_sample = -1, "
						 "log_transaction_sample_rate = 0, log_parameter_max_length = 0, log_parameter_max_length_on_error = 0, "
						 "log_min_error_statement = 'panic' and no auto_explain.log_min_duration (doc/operations.md, Logging).")));
	pfree(what.data);
}
