/*
 * bridge_address.c
 *		Server-side request forgery guard: the address ranges the bridge
 *		refuses after DNS resolution, so a public name that resolves to an
 *		internal address (or a redirect to one) reaches nothing inside.
 *
 * The tables below are the IANA IPv4 and IPv6 Special-Purpose Address
 * Registries (RFC 6890, updated by RFC 8190), every entry of both, as they
 * stood in their versions last updated 2025-10-09 (the newest entry being
 * 100:0:0:1::/64, RFC 9780, allocated 2025-04).  Each entry carries the
 * registry's "Globally Reachable" column: True is public, False is refused,
 * and the entries whose column is N/A or empty (6to4, Teredo, the terminated
 * 6to4 relay anycast and ORCHID blocks) are refused, since they tunnel to
 * arbitrary IPv4 hosts or no longer exist.
 *
 * To those the bridge adds what the special-purpose registries do not list
 * but no public host lives in: IPv4 and IPv6 multicast (the multicast
 * registries), and, from the IPv6 Address Space registry, everything outside
 * global unicast 2000::/3.  Two prefixes carry an IPv4 address in their last
 * 32 bits and are judged by it: IPv4-mapped ::ffff:0:0/96 (the socket then
 * talks IPv4 to that host) and the well-known NAT64 prefix 64:ff9b::/96
 * (a translator forwards to that host).
 *
 * The most specific entry containing an address decides, which is how the
 * registries state their exceptions: 192.0.0.0/24 and 2001::/23 are not
 * globally reachable "unless allowed by a more specific allocation", and
 * a few of their sub-blocks are.  Each table starts with an entry for the
 * whole address space, so some entry always matches.
 *
 * When either registry changes, update its table here and the list in
 * test/regress/sql/address.sql, which probes every entry's edges.
 */
#include "bridge_address.h"

#include <string.h>

#define ENTRIES(table) (sizeof(table) / sizeof((table)[0]))

typedef enum
{
	REFUSED,					/* Globally Reachable: False, N/A or empty */
	PUBLIC,						/* Globally Reachable: True */
	EMBEDDED_IPV4				/* judged by the IPv4 address in bytes 12-15 */
} Reach;

typedef struct
{
	uint8_t		prefix[16];
	int			bits;
	Reach		reach;
} Entry;

static const Entry ipv4_entries[] = {
	/* IPv4 Address Space registry: unicast unless an entry below says not */
	{{0}, 0, PUBLIC},

	/* IANA IPv4 Special-Purpose Address Registry */
	{{0}, 8, REFUSED},			/* "This network", RFC 791 */
	{{0, 0, 0, 0}, 32, REFUSED},	/* "This host on this network", RFC 1122 */
	{{10}, 8, REFUSED},			/* Private-Use, RFC 1918 */
	{{100, 64}, 10, REFUSED},	/* Shared Address Space, RFC 6598 */
	{{127}, 8, REFUSED},		/* Loopback, RFC 1122 */
	{{169, 254}, 16, REFUSED},	/* Link Local (cloud metadata), RFC 3927 */
	{{172, 16}, 12, REFUSED},	/* Private-Use, RFC 1918 */
	{{192, 0, 0}, 24, REFUSED}, /* IETF Protocol Assignments, RFC 6890 */
	{{192, 0, 0, 0}, 29, REFUSED},	/* IPv4 Service Continuity, RFC 7335 */
	{{192, 0, 0, 8}, 32, REFUSED},	/* IPv4 dummy address, RFC 7600 */
	{{192, 0, 0, 9}, 32, PUBLIC},	/* Port Control Protocol Anycast, RFC 7723 */
	{{192, 0, 0, 10}, 32, PUBLIC},	/* TURN Anycast, RFC 8155 */
	{{192, 0, 0, 170}, 32, REFUSED},	/* NAT64/DNS64 Discovery, RFC 8880 */
	{{192, 0, 0, 171}, 32, REFUSED},	/* NAT64/DNS64 Discovery, RFC 8880 */
	{{192, 0, 2}, 24, REFUSED}, /* Documentation (TEST-NET-1), RFC 5737 */
	{{192, 31, 196}, 24, PUBLIC},	/* AS112-v4, RFC 7535 */
	{{192, 52, 193}, 24, PUBLIC},	/* AMT, RFC 7450 */
	{{192, 88, 99}, 24, REFUSED},	/* 6to4 Relay Anycast (terminated), RFC 7526 */
	{{192, 88, 99, 2}, 32, REFUSED},	/* 6a44-relay anycast, RFC 6751 */
	{{192, 168}, 16, REFUSED},	/* Private-Use, RFC 1918 */
	{{192, 175, 48}, 24, PUBLIC},	/* Direct Delegation AS112, RFC 7534 */
	{{198, 18}, 15, REFUSED},	/* Benchmarking, RFC 2544 */
	{{198, 51, 100}, 24, REFUSED},	/* Documentation (TEST-NET-2), RFC 5737 */
	{{203, 0, 113}, 24, REFUSED},	/* Documentation (TEST-NET-3), RFC 5737 */
	{{240}, 4, REFUSED},		/* Reserved, RFC 1112 */
	{{255, 255, 255, 255}, 32, REFUSED},	/* Limited Broadcast, RFC 919 */

	/* IPv4 Multicast Address Space registry */
	{{224}, 4, REFUSED},		/* Multicast, RFC 5771 */
};

static const Entry ipv6_entries[] = {
	/* IPv6 Address Space registry: no public host outside global unicast */
	{{0}, 0, REFUSED},
	{{0x20}, 3, PUBLIC},		/* Global Unicast, RFC 4291 */

	/* IANA IPv6 Special-Purpose Address Registry */
	{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, REFUSED},	/* Loopback, RFC 4291 */
	{{0}, 128, REFUSED},		/* Unspecified, RFC 4291 */
	{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, 96, EMBEDDED_IPV4},	/* IPv4-mapped, RFC 4291 */
	{{0, 0x64, 0xff, 0x9b}, 96, EMBEDDED_IPV4}, /* IPv4-IPv6 Translat., RFC 6052 */
	{{0, 0x64, 0xff, 0x9b, 0, 1}, 48, REFUSED}, /* IPv4-IPv6 Translat. (local use), RFC 8215 */
	{{0x01, 0}, 64, REFUSED},	/* Discard-Only Address Block, RFC 6666 */
	{{0x01, 0, 0, 0, 0, 0, 0, 1}, 64, REFUSED}, /* Dummy IPv6 Prefix, RFC 9780 */
	{{0x20, 0x01, 0x00}, 23, REFUSED},	/* IETF Protocol Assignments, RFC 2928 */
	{{0x20, 0x01, 0, 0}, 32, REFUSED},	/* Teredo (N/A), RFC 4380 */
	{{0x20, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 128, PUBLIC},	/* PCP Anycast, RFC 7723 */
	{{0x20, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2}, 128, PUBLIC},	/* TURN Anycast, RFC 8155 */
	{{0x20, 0x01, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3}, 128, PUBLIC},	/* DNS-SD SRP Anycast, RFC 9665 */
	{{0x20, 0x01, 0, 2, 0, 0}, 48, REFUSED},	/* Benchmarking, RFC 5180 */
	{{0x20, 0x01, 0, 3}, 32, PUBLIC},	/* AMT, RFC 7450 */
	{{0x20, 0x01, 0, 4, 0x01, 0x12}, 48, PUBLIC},	/* AS112-v6, RFC 7535 */
	{{0x20, 0x01, 0, 0x10}, 28, REFUSED},	/* previously ORCHID (terminated), RFC 4843 */
	{{0x20, 0x01, 0, 0x20}, 28, PUBLIC},	/* ORCHIDv2, RFC 7343 */
	{{0x20, 0x01, 0, 0x30}, 28, PUBLIC},	/* DRIP Entity Tags, RFC 9374 */
	{{0x20, 0x01, 0x0d, 0xb8}, 32, REFUSED},	/* Documentation, RFC 3849 */
	{{0x20, 0x02}, 16, REFUSED},	/* 6to4 (N/A), RFC 3056 */
	{{0x26, 0x20, 0, 0x4f, 0x80, 0}, 48, PUBLIC},	/* Direct Delegation AS112, RFC 7534 */
	{{0x3f, 0xff, 0x00}, 20, REFUSED},	/* Documentation, RFC 9637 */
	{{0x5f, 0x00}, 16, REFUSED},	/* Segment Routing (SRv6) SIDs, RFC 9602 */
	{{0xfc}, 7, REFUSED},		/* Unique-Local, RFC 4193 */
	{{0xfe, 0x80}, 10, REFUSED},	/* Link-Local Unicast, RFC 4291 */

	/* IPv6 Multicast Address Space registry */
	{{0xff}, 8, REFUSED},		/* Multicast, RFC 4291 */
};

static bool
in_block(const uint8_t *a, const Entry *e)
{
	int			full = e->bits / 8;
	int			rest = e->bits % 8;

	if (memcmp(a, e->prefix, full) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[full] ^ e->prefix[full]) & (0xff << (8 - rest))) == 0;
}

/* The reach of the most specific entry containing the address. */
static Reach
reach_of(const uint8_t *a, const Entry *entries, size_t n)
{
	const Entry *best = &entries[0];

	for (size_t i = 1; i < n; i++)
		if (entries[i].bits > best->bits && in_block(a, &entries[i]))
			best = &entries[i];
	return best->reach;
}

bool
bridge_ipv4_is_public(const uint8_t *a)
{
	return reach_of(a, ipv4_entries, ENTRIES(ipv4_entries)) == PUBLIC;
}

bool
bridge_ipv6_is_public(const uint8_t *a)
{
	switch (reach_of(a, ipv6_entries, ENTRIES(ipv6_entries)))
	{
		case PUBLIC:
			return true;
		case EMBEDDED_IPV4:
			return bridge_ipv4_is_public(a + 12);
		default:
			return false;
	}
}
