/*
 * bridge_address.h
 *		Which network addresses the bridge may connect to.  Plain C.
 */
#ifndef BRIDGE_ADDRESS_H
#define BRIDGE_ADDRESS_H

#include <stdbool.h>
#include <stdint.h>

/* ipv4: 4 bytes in network order */
extern bool bridge_ipv4_is_public(const uint8_t *a);

/*
 * ipv6: 16 bytes in network order; IPv4-mapped and well-known NAT64
 * (64:ff9b::/96) addresses are judged by the IPv4 address they carry
 */
extern bool bridge_ipv6_is_public(const uint8_t *a);

#endif							/* BRIDGE_ADDRESS_H */
