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

/* ipv6: 16 bytes in network order; mapped and NAT64 IPv4 are judged as IPv4 */
extern bool bridge_ipv6_is_public(const uint8_t *a);

#endif							/* BRIDGE_ADDRESS_H */
