/*
 * curl_multi.c
 *		The baseline for bench/bridge: a plain libcurl multi client sending
 *		the same GET requests with the same concurrency as the bridge.
 *
 *		curl_multi URL COUNT CONCURRENCY
 *
 * Prints "<seconds> <failures>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <curl/curl.h>

static size_t
discard(char *p, size_t s, size_t n, void *u)
{
	(void) p;
	(void) u;
	return s * n;
}

static CURL *
make(const char *url, int i)
{
	CURL	   *e = curl_easy_init();
	char		key[64];
	struct curl_slist *h;

	snprintf(key, sizeof(key), "Idempotency-Key: bench-%d", i);
	h = curl_slist_append(NULL, key);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_PRIVATE, h);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
	return e;
}

int
main(int argc, char **argv)
{
	const char *url;
	int			count,
				conc,
				started = 0,
				done = 0,
				failures = 0,
				running = 0;
	CURLM	   *m;
	struct timespec t0,
				t1;

	if (argc != 4)
	{
		fprintf(stderr, "usage: %s URL COUNT CONCURRENCY\n", argv[0]);
		return 2;
	}
	url = argv[1];
	count = atoi(argv[2]);
	conc = atoi(argv[3]);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	m = curl_multi_init();
	curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) conc);
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long) conc);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (done < count)
	{
		CURLMsg    *msg;
		int			left;
		int			finished;

		while (started < count && started - done < conc)
			curl_multi_add_handle(m, make(url, started++));
		curl_multi_perform(m, &running);
		finished = 0;
		while ((msg = curl_multi_info_read(m, &left)) != NULL)
		{
			long		status = 0;
			struct curl_slist *h;

			if (msg->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
			if (msg->data.result != CURLE_OK || status != 200)
				failures++;
			curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &h);
			curl_multi_remove_handle(m, msg->easy_handle);
			curl_easy_cleanup(msg->easy_handle);
			curl_slist_free_all(h);
			done++;
			finished++;
		}
		/* Refill freed slots before waiting, as the bridge does. */
		if (done < count && finished == 0)
			curl_multi_poll(m, NULL, 0, 100, NULL);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.3f %d\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, failures);
	curl_multi_cleanup(m);
	return 0;
}
