/*
 * transfer.c
 *		The bridge's libcurl side: the requests in flight on one multi
 *		handle, how a URL and its headers are read, and what an attempt's
 *		outcome is (redirects, retries, the response).
 *
 * Only the worker sends.  The transfers in flight, the multi handle and the
 * pool of easy handles are this file's; the worker's loop drives them.
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "bridge_address.h"
#include "bridge_internal.h"

/*
 * Connections are reused across requests, and the address check runs when a
 * connection is opened.  After a configuration reload the cached connections
 * were checked under the old rules: new transfers then open fresh ones, and
 * the multi handle (with its connection cache) is replaced once idle.
 *
 * Easy handles are kept for the next transfers rather than created and
 * destroyed for each request; setup_easy() resets every option.
 */
static struct
{
	CURLM	   *multi;
	bool		fresh_connections;
	MemoryContext cxt;			/* the worker's lifetime: transfers' parent */
	Transfer  **inflight;
	int			ninflight;
	CURL	   *easy_pool[BRIDGE_MAX_INFLIGHT];
	int			neasy_pool;
}			curl_state;

/* ASCII lower case in place: host names and schemes compare that way. */
static void
ascii_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s += 'a' - 'A';
}

/*
 * Parse an http or https URL.  On success returns the libcurl handle (the
 * caller frees it with curl_url_cleanup) and sets *host (lower case, an
 * IPv6 address without brackets) and *origin (scheme://host:port, lower
 * case, the default port explicit), both palloc'd; NULL when the URL does
 * not parse or is not http or https.  Nothing here raises, so the handle
 * never leaks.
 */
CURLU *
bridge_parse_url(const char *url, char **host, char **origin)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *h = NULL;
	char	   *zone = NULL;
	char	   *port = NULL;
	bool		ok;

	ok = u != NULL
		&& curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK
		&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
		&& curl_url_get(u, CURLUPART_HOST, &h, 0) == CURLUE_OK
		&& curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK
		&& h[0] != '\0'
		&& (pg_strcasecmp(scheme, "http") == 0 || pg_strcasecmp(scheme, "https") == 0);
	if (ok)
	{
		size_t		hlen = strlen(h);
		char	   *bare;

		if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) != CURLUE_OK)
			zone = NULL;
		/* "[::1]": the brackets belong to the URL, not to the address. */
		if (h[0] == '[' && hlen > 2 && h[hlen - 1] == ']')
			bare = pnstrdup(h + 1, hlen - 2);
		else
			bare = pstrdup(h);
		if (zone != NULL)
			bare = psprintf("%s%%%s", bare, zone);
		ascii_lower(bare);
		*host = bare;
		*origin = psprintf(strchr(bare, ':') ? "%s://[%s]:%s" : "%s://%s:%s", scheme, bare, port);
		ascii_lower(*origin);
	}
	curl_free(scheme);
	curl_free(h);
	curl_free(zone);
	curl_free(port);
	if (!ok && u != NULL)
	{
		curl_url_cleanup(u);
		u = NULL;
	}
	return u;
}

/* The host or the origin of the URL argument, or NULL. */

/* Is host on eightms.bridge_allowed_hosts (empty: every host)? */
bool
bridge_host_allowed(const char *host)
{
	char	   *list;
	char	   *tok;
	char	   *save = NULL;
	bool		ok = false;
	size_t		hlen = strlen(host);

	if (bridge_settings.allowed_hosts == NULL || bridge_settings.allowed_hosts[0] == '\0')
		return true;
	list = pstrdup(bridge_settings.allowed_hosts);
	for (tok = strtok_r(list, ", \t", &save); tok != NULL && !ok; tok = strtok_r(NULL, ", \t", &save))
	{
		if (strncmp(tok, "*.", 2) == 0)
		{
			size_t		slen = strlen(tok + 1);	/* ".example.com" */

			ok = hlen > slen && pg_strcasecmp(host + hlen - slen, tok + 1) == 0;
		}
		else
			ok = pg_strcasecmp(host, tok) == 0;
	}
	pfree(list);
	return ok;
}

/*
 * libcurl asks for a socket for each address it is about to connect to:
 * this is where resolved (and redirected) addresses are checked.
 */
static curl_socket_t
open_socket_checked(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	Transfer   *t = (Transfer *) clientp;
	bool		public_addr = false;
	char		text[INET6_ADDRSTRLEN] = "?";

	if (address->family == AF_INET)
	{
		struct sockaddr_in *in = (struct sockaddr_in *) &address->addr;

		public_addr = bridge_ipv4_is_public((const uint8_t *) &in->sin_addr);
		inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text));
	}
	else if (address->family == AF_INET6)
	{
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &address->addr;

		public_addr = bridge_ipv6_is_public((const uint8_t *) &in6->sin6_addr);
		inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text));
	}
	if (!public_addr && !bridge_settings.allow_private)
	{
		t->refused = true;
		snprintf(t->refused_why, sizeof(t->refused_why),
				 "refused to connect to non-public address %s", text);
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	Transfer   *t = (Transfer *) arg;
	size_t		len = size * n;

	if ((size_t) t->response.len + len > (size_t) bridge_settings.max_response)
	{
		t->too_large = true;
		return 0;				/* aborts the transfer */
	}
	appendBinaryStringInfo(&t->response, data, (int) len);
	return len;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	Transfer   *t = (Transfer *) arg;
	size_t		len = size * n;

	/* Keep only the last response's headers (after 100 Continue etc.). */
	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0)
		resetStringInfo(&t->response_headers);
	if (t->response_headers.len + len <= 64 * 1024)
		appendBinaryStringInfo(&t->response_headers, data, (int) len);
	return len;
}

/* Point the transfer's easy handle at its URL with its method and body. */
static void
setup_easy(Transfer *t)
{
	CURL	   *e = t->easy;

	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_CURLU, t->curlu);
	curl_easy_setopt(e, CURLOPT_PRIVATE, t);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_PROXY, "");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "eightms-bridge/0.1");
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, t->headers);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_socket_checked);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, t);
	if (curl_state.fresh_connections)
		curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) bridge_settings.max_response);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, t->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, Min(t->timeout_ms, 10000L));

	if (strcmp(t->method, "HEAD") == 0)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (strcmp(t->method, "GET") != 0)
	{
		if (strcmp(t->method, "POST") != 0)
			curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, t->method);
		if (t->body != NULL)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) VARSIZE_ANY_EXHDR(t->body));
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, VARDATA_ANY(t->body));
		}
		else if (strcmp(t->method, "POST") == 0)
		{
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
		}
	}
	resetStringInfo(&t->response);
	resetStringInfo(&t->response_headers);
	t->too_large = false;
	t->refused = false;
}

static CURL *
get_easy(void)
{
	CURL	   *e = curl_state.neasy_pool > 0 ? curl_state.easy_pool[--curl_state.neasy_pool] : curl_easy_init();

	if (e == NULL)
		elog(ERROR, "eightms bridge: curl_easy_init failed");
	return e;
}

/* Free a curl header list, wiping it first if it holds secret values. */
static void
free_header_list(struct curl_slist *list, bool secret)
{
	if (secret)
		for (struct curl_slist *l = list; l != NULL; l = l->next)
			explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(list);
}

/*
 * Headers that carry credentials although the caller did not seal them:
 * they do not follow a redirect to another origin either.
 */
static bool
is_credential_header(const char *line)
{
	static const char *const names[] = {"authorization:", "proxy-authorization:", "cookie:"};

	for (int i = 0; i < lengthof(names); i++)
		if (pg_strncasecmp(line, names[i], strlen(names[i])) == 0)
			return true;
	return false;
}

/*
 * The transfer is about to follow a redirect to another origin: keep only
 * the headers that are neither secret nor credentials.  What is dropped is
 * gone for the rest of this attempt, whatever origin the redirects reach
 * later (curl too drops its own credentials across hosts; the bridge is the
 * one that set these, so it is the one to drop them).
 */
static void
drop_credentials(Transfer *t)
{
	struct curl_slist *kept = NULL;
	int			i = 0;
	int			nkept = 0;

	for (struct curl_slist *l = t->headers; l != NULL && i < t->nplain; l = l->next, i++)
		if (!is_credential_header(l->data))
		{
			kept = curl_slist_append(kept, l->data);
			nkept++;
		}
	free_header_list(t->headers, true);
	t->headers = kept;
	t->nplain = nkept;
	t->secret = false;
}

void
bridge_transfer_free(Transfer *t)
{
	if (t->easy)
	{
		curl_multi_remove_handle(curl_state.multi, t->easy);
		if (curl_state.neasy_pool < BRIDGE_MAX_INFLIGHT)
			curl_state.easy_pool[curl_state.neasy_pool++] = t->easy;
		else
			curl_easy_cleanup(t->easy);
	}
	free_header_list(t->headers, t->secret);
	if (t->curlu)
		curl_url_cleanup(t->curlu);
	MemoryContextDelete(t->cxt);
}

/*
 * Why a header line ("Name: value") may not be sent, or NULL if it may: its
 * name must be a token and its value what RFC 9110 lets a sender send in a
 * field value, visible US-ASCII with spaces and tabs only between.
 * http_check_headers() refuses the same at enqueue, but rows queued before
 * 0.2.0 were checked by a looser rule.  The message names the header only
 * by its name, and only once that is known to be a token.
 */
char *
bridge_header_line_problem(const char *line, const char *what)
{
	const char *p = line;
	const char *v;
	const char *end;

	while (*p && (isalnum((unsigned char) *p) || strchr("!#$%&'*+-.^_`|~", *p) != NULL))
		p++;
	if (p == line || *p != ':')
		return psprintf("a header name in %s is not a valid HTTP header name", what);
	v = p + 1;
	if (*v == ' ')
		v++;
	end = v + strlen(v);
	for (const char *c = v; c < end; c++)
		if (!((*c >= 0x21 && *c <= 0x7e) || ((*c == ' ' || *c == '\t') && c > v && c < end - 1)))
			return psprintf("header %.*s in %s has a value HTTP does not allow (control or non-ASCII characters, or leading or trailing whitespace)",
							(int) Min(p - line, 64), line, what);
	return NULL;
}

/*
 * Append the lines of a text[] to a curl header list; false (and *problem
 * set) at the first line that may not be sent.
 */
bool
bridge_append_header_lines(struct curl_slist **list, Datum arr, const char *what, char **problem)
{
	ArrayType  *a = DatumGetArrayTypeP(arr);
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	deconstruct_array(a, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *line;

		if (nulls[i])
			continue;
		line = TextDatumGetCString(elems[i]);
		*problem = bridge_header_line_problem(line, what);
		if (*problem == NULL)
			*list = curl_slist_append(*list, line);
		explicit_bzero(line, strlen(line));
		if (*problem != NULL)
			return false;
	}
	return true;
}

static void
start_transfer(Transfer *t)
{
	t->started = GetCurrentTimestamp();
	setup_easy(t);
	if (curl_multi_add_handle(curl_state.multi, t->easy) != CURLM_OK)
		elog(ERROR, "eightms bridge: curl_multi_add_handle failed");
}

/* Seconds a Retry-After header asks for (delta-seconds or HTTP date), or -1. */
static int
retry_after_seconds(const char *headers)
{
	const char *p = headers;

	while (p && *p)
	{
		const char *eol = strchr(p, '\n');
		size_t		len = eol ? (size_t) (eol - p) : strlen(p);

		if (len > 12 && pg_strncasecmp(p, "retry-after:", 12) == 0)
		{
			char		value[128];
			size_t		vlen = Min(len - 12, sizeof(value) - 1);
			char	   *v = value;
			char	   *end;
			long		secs;
			time_t		when;
			struct tm	tm;

			memcpy(value, p + 12, vlen);
			value[vlen] = '\0';
			while (*v == ' ' || *v == '\t')
				v++;
			for (end = v + strlen(v); end > v && (end[-1] == '\r' || end[-1] == ' '); end--)
				end[-1] = '\0';
			secs = strtol(v, &end, 10);
			if (end != v && *end == '\0')
				return (int) Max(0, Min(secs, BRIDGE_MAX_RETRY_AFTER_S));
			memset(&tm, 0, sizeof(tm));
			if (strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm) != NULL)
			{
				when = timegm(&tm);
				return (int) Max(0, Min((long) (when - time(NULL)), BRIDGE_MAX_RETRY_AFTER_S));
			}
			return -1;
		}
		p = eol ? eol + 1 : NULL;
	}
	return -1;
}

/* Exponential backoff with jitter: half the delay fixed, half random. */
static TimestampTz
retry_time(int attempt, int retry_after)
{
	double		delay = (double) bridge_settings.retry_base_ms * pow(2.0, Min(attempt - 1, 30));
	uint32		r;

	delay = Min(delay, (double) bridge_settings.retry_max_ms);
	if (!pg_strong_random(&r, sizeof(r)))
		r = (uint32) random();
	delay = delay / 2 + (delay / 2) * ((double) r / (double) PG_UINT32_MAX);
	if (retry_after >= 0)
		delay = Max(delay, retry_after * 1000.0);
	return TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) delay);
}

/*
 * The header block of a response as a JSON object: names lower-cased,
 * repeated headers joined with ", " (as HTTP allows), the status line and
 * lines without a colon left out.
 */
static char *
headers_to_json(const char *raw, int len)
{
	StringInfoData out;
	char	  **names = palloc(sizeof(char *) * (len / 2 + 1));
	char	  **values = palloc(sizeof(char *) * (len / 2 + 1));
	int			n = 0;
	const char *p = raw;
	const char *end = raw + len;

	while (p < end)
	{
		const char *eol = memchr(p, '\n', end - p);
		const char *line_end = eol ? eol : end;
		const char *colon = memchr(p, ':', line_end - p);

		if (colon != NULL && colon > p && strncmp(p, "HTTP/", 5) != 0)
		{
			char	   *name = pnstrdup(p, colon - p);
			const char *v = colon + 1;
			const char *ve = line_end;
			int			i;

			for (char *c = name; *c; c++)
				*c = pg_tolower((unsigned char) *c);
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			for (i = 0; i < n; i++)
				if (strcmp(names[i], name) == 0)
					break;
			if (i < n)
				values[i] = psprintf("%s, %.*s", values[i], (int) (ve - v), v);
			else
			{
				names[n] = name;
				values[n++] = pnstrdup(v, ve - v);
			}
		}
		p = eol ? eol + 1 : end;
	}
	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			appendStringInfoChar(&out, ',');
		escape_json(&out, names[i]);
		appendStringInfoChar(&out, ':');
		escape_json(&out, values[i]);
	}
	appendStringInfoChar(&out, '}');
	return out.data;
}

/*
 * A transfer finished.  Either it follows a redirect (and stays in flight),
 * or it yields a BridgeResult.
 */
static BridgeResult *
finish_transfer(Transfer *t, CURLcode rc, MemoryContext result_cxt)
{
	BridgeResult *r;
	long		status = 0;
	bool		retry = false;
	char	   *error = NULL;

	curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);

	if (rc == CURLE_OK && t->follow && status >= 300 && status < 400 && status != 304)
	{
		char	   *location = NULL;

		curl_easy_getinfo(t->easy, CURLINFO_REDIRECT_URL, &location);
		if (location != NULL)
		{
			CURLU	   *u = curl_url();
			char	   *scheme = NULL;
			CURLU	   *next;
			char	   *host;
			char	   *origin;

			/* Any scheme parses here, so that others can be named and refused. */
			if (curl_url_set(u, CURLUPART_URL, location, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK
				&& curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK
				&& pg_strcasecmp(scheme, "http") != 0 && pg_strcasecmp(scheme, "https") != 0)
				error = psprintf("refused to follow a redirect to a %s URL", scheme);
			curl_free(scheme);
			curl_url_cleanup(u);
			if (error == NULL)
			{
				MemoryContext old = MemoryContextSwitchTo(t->cxt);

				/* The next URL is checked and sent as this one parse says. */
				next = bridge_parse_url(location, &host, &origin);
				MemoryContextSwitchTo(old);
				if (next == NULL)
					error = pstrdup("the redirect Location is not a valid URL");
				else if (!bridge_host_allowed(host))
					error = psprintf("refused to follow a redirect to host %s, which is not in eightms.bridge_allowed_hosts", host);
				else if (t->redirects >= BRIDGE_MAX_REDIRECTS)
					error = psprintf("more than %d redirects", BRIDGE_MAX_REDIRECTS);
				if (error != NULL)
				{
					if (next != NULL)
						curl_url_cleanup(next);
				}
				else
				{
					old = MemoryContextSwitchTo(t->cxt);
					/* Credentials are for the origin they were given for. */
					if (strcmp(origin, t->origin) != 0)
						drop_credentials(t);
					curl_url_cleanup(t->curlu);
					t->curlu = next;
					t->host = host;
					t->origin = origin;
					t->redirects++;
					/* 301/302/303 turn a POST into a GET, as browsers do. */
					if (status == 303 || ((status == 301 || status == 302) && strcmp(t->method, "POST") == 0))
					{
						t->method = "GET";
						t->body = NULL;
					}
					curl_multi_remove_handle(curl_state.multi, t->easy);
					start_transfer(t);
					MemoryContextSwitchTo(old);
					return NULL;
				}
			}
		}
	}

	r = MemoryContextAllocZero(result_cxt, sizeof(BridgeResult));
	r->id = t->id;
	r->attempt = t->attempt;
	r->started = t->started;
	r->duration_ms = (double) (GetCurrentTimestamp() - t->started) / 1000.0;
	r->status = (rc == CURLE_OK) ? (int) status : 0;
	if (rc == CURLE_OK)
	{
		MemoryContext old = MemoryContextSwitchTo(result_cxt);

		r->headers = headers_to_json(t->response_headers.data, t->response_headers.len);
		r->body = (bytea *) palloc(VARHDRSZ + t->response.len);
		SET_VARSIZE(r->body, VARHDRSZ + t->response.len);
		memcpy(VARDATA(r->body), t->response.data, t->response.len);
		MemoryContextSwitchTo(old);
	}

	if (error != NULL)
		;						/* a refused redirect: final */
	else if (t->refused)
		error = pstrdup(t->refused_why);
	else if (t->too_large || rc == CURLE_FILESIZE_EXCEEDED)
		error = psprintf("response larger than eightms.bridge_max_response_bytes (%d bytes)", bridge_settings.max_response);
	else if (rc == CURLE_UNSUPPORTED_PROTOCOL)
		error = pstrdup("only http and https URLs can be requested");
	else if (rc != CURLE_OK)
	{
		error = pstrdup(curl_easy_strerror(rc));
		retry = true;
	}
	else if (status == 429 || status >= 500)
	{
		error = psprintf("HTTP %ld", status);
		retry = true;
	}
	else if (status >= 400)
		error = psprintf("HTTP %ld", status);

	if (error == NULL)
		r->state = "done";
	else if (retry && t->attempt < t->max_attempts)
	{
		r->state = "queued";
		r->next_at = retry_time(t->attempt,
								rc == CURLE_OK ? retry_after_seconds(t->response_headers.data) : -1);
	}
	else
	{
		r->state = "dead";
		if (retry)
			error = psprintf("gave up after %d attempts: %s", t->attempt, error);
	}
	r->error = error ? MemoryContextStrdup(result_cxt, error) : NULL;
	return r;
}

/*
 * Collect the transfers curl has finished, appending their results (in
 * result_cxt, where they wait to be recorded) to results.
 */
List *
bridge_collect_done(List *results, MemoryContext result_cxt)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(curl_state.multi, &left)) != NULL)
	{
		Transfer   *t = NULL;
		BridgeResult *r;
		MemoryContext old;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &t);
		r = finish_transfer(t, msg->data.result, result_cxt);
		if (r == NULL)
			continue;			/* following a redirect */
		old = MemoryContextSwitchTo(result_cxt);
		results = lappend(results, r);
		MemoryContextSwitchTo(old);
		for (int i = 0; i < curl_state.ninflight; i++)
			if (curl_state.inflight[i] == t)
			{
				curl_state.inflight[i] = curl_state.inflight[--curl_state.ninflight];
				break;
			}
		bridge_transfer_free(t);
	}
	return results;
}

static CURLM *
new_multi(void)
{
	CURLM	   *m = curl_multi_init();

	if (m == NULL)
		elog(ERROR, "eightms bridge: could not initialise a libcurl multi handle");
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) bridge_settings.max_concurrency);
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long) bridge_settings.per_host);
	return m;
}

/* libcurl and the set of transfers, for the worker's life (cxt). */
void
bridge_transfers_init(MemoryContext cxt)
{
	curl_state.cxt = cxt;
	curl_state.inflight = MemoryContextAlloc(cxt, sizeof(Transfer *) * BRIDGE_MAX_INFLIGHT);
	curl_state.ninflight = 0;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "eightms bridge: could not initialise libcurl");
	curl_state.multi = new_multi();
}

/* The configuration was reloaded: new limits, and connections checked anew. */
void
bridge_transfers_reconfigure(void)
{
	curl_multi_setopt(curl_state.multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) bridge_settings.max_concurrency);
	curl_multi_setopt(curl_state.multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long) bridge_settings.per_host);
	curl_state.fresh_connections = true;
}

/* Once nothing is in flight, drop the connections opened under old rules. */
void
bridge_transfers_refresh_if_idle(void)
{
	if (!curl_state.fresh_connections || curl_state.ninflight > 0)
		return;
	curl_multi_cleanup(curl_state.multi);
	while (curl_state.neasy_pool > 0)
		curl_easy_cleanup(curl_state.easy_pool[--curl_state.neasy_pool]);
	curl_state.multi = new_multi();
	curl_state.fresh_connections = false;
}

int
bridge_transfers_running(void)
{
	return curl_state.ninflight;
}

Transfer *
bridge_transfer_at(int i)
{
	Assert(i >= 0 && i < curl_state.ninflight);
	return curl_state.inflight[i];
}

/*
 * A new transfer for a claimed request, in a memory context of its own
 * under the worker's.  Default sizes: a transfer's allocations (two 1 kB
 * buffers among them) fit in the first block, and contexts of the standard
 * sizes are recycled, so a transfer costs no malloc of its own.
 */
Transfer *
bridge_transfer_new(void)
{
	MemoryContext cxt = AllocSetContextCreate(curl_state.cxt, "eightms bridge transfer",
											  ALLOCSET_DEFAULT_SIZES);
	Transfer   *t = MemoryContextAllocZero(cxt, sizeof(Transfer));

	t->cxt = cxt;
	return t;
}

/* Put a transfer in flight and start it. */
void
bridge_transfer_launch(Transfer *t)
{
	MemoryContext old;

	t->easy = get_easy();
	curl_state.inflight[curl_state.ninflight++] = t;
	old = MemoryContextSwitchTo(t->cxt);
	start_transfer(t);
	MemoryContextSwitchTo(old);
}

void
bridge_transfers_perform(void)
{
	int			running = 0;

	curl_multi_perform(curl_state.multi, &running);
}

void
bridge_transfers_poll(int timeout_ms)
{
	curl_multi_poll(curl_state.multi, NULL, 0, timeout_ms, NULL);
}
