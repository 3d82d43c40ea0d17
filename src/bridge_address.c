/*
 * bridge_address.c
 *		Server-side request forgery guard: the address ranges the bridge
 *		refuses after DNS resolution, so a public name that resolves to an
 *		internal address (or a redirect to one) reaches nothing inside.
 *
 * The lists follow the IANA special-purpose address registries: anything
 * not globally reachable is refused.
 */
#include "bridge_address.h"

#include <string.h>

typedef struct
{
	uint8_t		prefix[16];
	int			bits;
} Range;

static bool
in_range(const uint8_t *a, const Range *r)
{
	int			full = r->bits / 8;
	int			rest = r->bits % 8;

	if (memcmp(a, r->prefix, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ r->prefix[full]) & (0xff << (8 - rest))) == 0;
}

static const Range v4_blocked[] = {
	{{0}, 8},					/* "this network" */
	{{10}, 8},					/* private */
	{{100, 64}, 10},			/* shared address space (carrier NAT) */
	{{127}, 8},					/* loopback */
	{{169, 254}, 16},			/* link-local, cloud metadata */
	{{172, 16}, 12},			/* private */
	{{192, 0, 0}, 24},			/* IETF protocol assignments */
	{{192, 0, 2}, 24},			/* documentation */
	{{192, 88, 99}, 24},		/* 6to4 relay anycast */
	{{192, 168}, 16},			/* private */
	{{198, 18}, 15},			/* benchmarking */
	{{198, 51, 100}, 24},		/* documentation */
	{{203, 0, 113}, 24},		/* documentation */
	{{224}, 4},					/* multicast */
	{{240}, 4},					/* reserved, and broadcast */
};

static const Range v6_blocked[] = {
	{{0}, 96},					/* unspecified, loopback, IPv4-compatible */
	{{0x01, 0x00}, 64},			/* discard-only */
	{{0x20, 0x01, 0x00}, 23},	/* IETF protocol assignments (Teredo, ...) */
	{{0x20, 0x01, 0x0d, 0xb8}, 32}, /* documentation */
	{{0x20, 0x02}, 16},			/* 6to4: embeds an IPv4 address */
	{{0xfc}, 7},				/* unique local */
	{{0xfe, 0x80}, 10},			/* link-local */
	{{0xfe, 0xc0}, 10},			/* site-local (deprecated) */
	{{0xff}, 8},				/* multicast */
};

bool
bridge_ipv4_is_public(const uint8_t *a)
{
	uint8_t		padded[16] = {0};

	memcpy(padded, a, 4);
	for (size_t i = 0; i < sizeof(v4_blocked) / sizeof(v4_blocked[0]); i++)
		if (in_range(padded, &v4_blocked[i]))
			return false;
	return true;
}

bool
bridge_ipv6_is_public(const uint8_t *a)
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

	/* ::ffff:a.b.c.d and 64:ff9b::a.b.c.d reach an IPv4 address. */
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return bridge_ipv4_is_public(a + 12);
	for (size_t i = 0; i < sizeof(v6_blocked) / sizeof(v6_blocked[0]); i++)
		if (in_range(a, &v6_blocked[i]))
			return false;
	return true;
}
