/*
 * base64url.h
 *		Base64 with the URL-safe alphabet and no padding (RFC 4648 section 5),
 *		as JWTs use it.  Plain C.
 */
#ifndef BASE64URL_H
#define BASE64URL_H

#include <stddef.h>
#include <stdint.h>

static inline size_t
base64url_encoded_len(size_t n)
{
	return (n / 3) * 4 + ((n % 3) ? (n % 3) + 1 : 0);
}

extern size_t base64url_encode(const uint8_t *src, size_t n, char *dst);

/* Decode into dst (capacity cap); -1 on a bad character, length or overflow. */
extern int	base64url_decode(const char *src, size_t n, uint8_t *dst, size_t cap);

#endif							/* BASE64URL_H */
