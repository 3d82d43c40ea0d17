-- The bridge's address guard: which addresses it refuses to connect to
-- (the same C the worker calls for every resolved address).
SELECT a AS address, eightms.is_public_address(a::inet) AS public
  FROM unnest(ARRAY[
	'8.8.8.8', '1.1.1.1', '93.184.216.34', '2606:4700::1111', '2a00:1450:4001:82a::200e',
	'0.0.0.0', '0.1.2.3', '10.0.0.1', '10.255.255.255', '100.64.0.1', '100.127.255.254', '100.128.0.1',
	'127.0.0.1', '127.255.255.254', '169.254.169.254', '172.15.255.255', '172.16.0.1', '172.31.255.255',
	'172.32.0.1', '192.0.0.8', '192.0.2.1', '192.88.99.1', '192.168.1.1', '198.18.0.1', '198.19.255.255',
	'198.20.0.1', '198.51.100.7', '203.0.113.9', '224.0.0.1', '239.255.255.250', '240.0.0.1', '255.255.255.255',
	'::', '::1', '::ffff:127.0.0.1', '::ffff:8.8.8.8', '::ffff:10.0.0.1', '64:ff9b::a00:1', '64:ff9b::808:808',
	'100::1', '2001::1', '2001:db8::1', '2002:a00:1::1', 'fc00::1', 'fd12:3456::1', 'fe80::1', 'fec0::1',
	'ff02::1', '::127.0.0.1']) AS a;

-- URLs that cannot be queued.
SELECT eightms.http_enqueue('GET', 'ftp://example.com/file');
SELECT eightms.http_enqueue('GET', 'http://exa mple.com/');
SELECT eightms.http_enqueue('GET', '//example.com/');
SELECT eightms.http_enqueue('CONNECT', 'https://example.com/');
SELECT eightms.http_enqueue('GET', 'https://example.com/', headers => '["not", "an", "object"]');
SELECT eightms.http_enqueue('GET', 'https://example.com/', headers => '{"Bad Name":"x"}');
SELECT eightms.http_enqueue('GET', 'https://example.com/', headers => '{"Idempotency-Key":"mine"}');
SELECT eightms.http_enqueue('GET', 'https://example.com/', timeout => '50 milliseconds');
SELECT eightms.http_enqueue('GET', 'https://example.com/', max_attempts => 0);

-- Response headers as JSON.
SELECT eightms.http_parse_headers(E'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Empty:\r\n\r\n');

-- A URL's host and origin as the worker reads them (libcurl's URL API): the
-- host column, the allowlist and the seal context of the secret headers.
SELECT u AS url, eightms.http_url_host(u) AS host, eightms.http_origin(u) AS origin
  FROM unnest(ARRAY[
	'http://127.0.0.1:8080/x', 'HTTPS://Api.Example.COM/a?b', 'https://api.example.com:443/',
	'http://[::1]:80/', 'http://[FE80::1%25eth0]/', 'http://2130706433:9/',
	'http://user:pw@h.example:8080/p', 'http://127.0.0.1@[::1]:5/', 'http://%31%32%37.0.0.1/',
	'http://[::ffff:127.0.0.1]:9/', 'ftp://example.com/', 'not a url']) AS u;

-- Header values: visible ASCII with spaces and tabs between, nothing else.
SELECT eightms.http_enqueue('GET', 'https://example.com/', headers => jsonb_build_object('X-A', E'a\x0bb'));
SELECT eightms.http_enqueue('GET', 'https://example.com/', secret_headers => jsonb_build_object('Authorization', ' Bearer x'));
