/*
 * base64url.c
 *		Base64url without padding, for JWTs.
 */
#include "base64url.h"

static const char b64url[] =
"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t
base64url_encode(const uint8_t *src, size_t n, char *dst)
{
	size_t		o = 0;
	size_t		i = 0;

	for (; i + 3 <= n; i += 3)
	{
		uint32_t	v = (src[i] << 16) | (src[i + 1] << 8) | src[i + 2];

		dst[o++] = b64url[(v >> 18) & 63];
		dst[o++] = b64url[(v >> 12) & 63];
		dst[o++] = b64url[(v >> 6) & 63];
		dst[o++] = b64url[v & 63];
	}
	if (n - i == 1)
	{
		uint32_t	v = src[i] << 16;

		dst[o++] = b64url[(v >> 18) & 63];
		dst[o++] = b64url[(v >> 12) & 63];
	}
	else if (n - i == 2)
	{
		uint32_t	v = (src[i] << 16) | (src[i + 1] << 8);

		dst[o++] = b64url[(v >> 18) & 63];
		dst[o++] = b64url[(v >> 12) & 63];
		dst[o++] = b64url[(v >> 6) & 63];
	}
	return o;
}

static int
b64url_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

int
base64url_decode(const char *src, size_t n, uint8_t *dst, size_t cap)
{
	uint32_t	acc = 0;
	int			bits = 0;
	size_t		o = 0;

	/* A lone trailing character cannot carry a whole byte. */
	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++)
	{
		int			v = b64url_value(src[i]);

		if (v < 0)
			return -1;
		acc = (acc << 6) | (uint32_t) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (o >= cap)
				return -1;
			dst[o++] = (uint8_t) (acc >> bits);
		}
	}
	/* Leftover bits must be zero, so each token has one spelling. */
	if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
		return -1;
	if (o > (size_t) 0x7fffffff)
		return -1;
	return (int) o;
}
