-- The bridge's address guard (eightms.is_public_address, the same C the
-- worker calls for every resolved address) against the IANA IPv4 and IPv6
-- Special-Purpose Address Registries (versions last updated 2025-10-09).
--
-- The entries below are those of the tables in src/bridge/bridge_address.c, in the
-- same order: "registry" is the entry's Globally Reachable column as IANA
-- prints it ("not listed" for what the bridge adds from the address-space
-- and multicast registries), "bridge" what the bridge makes of it.
CREATE TEMP TABLE registry_entry (
	id serial,
	block cidr,
	name text,
	registry text,
	bridge text CHECK (bridge IN ('public', 'refused', 'embedded IPv4'))
);
INSERT INTO registry_entry (block, name, registry, bridge) VALUES
	('0.0.0.0/0', 'IPv4 address space', 'not listed', 'public'),
	('0.0.0.0/8', '"This network" (RFC 791)', 'False', 'refused'),
	('0.0.0.0/32', '"This host on this network" (RFC 1122)', 'False', 'refused'),
	('10.0.0.0/8', 'Private-Use (RFC 1918)', 'False', 'refused'),
	('100.64.0.0/10', 'Shared Address Space (RFC 6598)', 'False', 'refused'),
	('127.0.0.0/8', 'Loopback (RFC 1122)', 'False', 'refused'),
	('169.254.0.0/16', 'Link Local (RFC 3927)', 'False', 'refused'),
	('172.16.0.0/12', 'Private-Use (RFC 1918)', 'False', 'refused'),
	('192.0.0.0/24', 'IETF Protocol Assignments (RFC 6890)', 'False', 'refused'),
	('192.0.0.0/29', 'IPv4 Service Continuity Prefix (RFC 7335)', 'False', 'refused'),
	('192.0.0.8/32', 'IPv4 dummy address (RFC 7600)', 'False', 'refused'),
	('192.0.0.9/32', 'Port Control Protocol Anycast (RFC 7723)', 'True', 'public'),
	('192.0.0.10/32', 'Traversal Using Relays around NAT Anycast (RFC 8155)', 'True', 'public'),
	('192.0.0.170/32', 'NAT64/DNS64 Discovery (RFC 8880)', 'False', 'refused'),
	('192.0.0.171/32', 'NAT64/DNS64 Discovery (RFC 8880)', 'False', 'refused'),
	('192.0.2.0/24', 'Documentation (TEST-NET-1) (RFC 5737)', 'False', 'refused'),
	('192.31.196.0/24', 'AS112-v4 (RFC 7535)', 'True', 'public'),
	('192.52.193.0/24', 'AMT (RFC 7450)', 'True', 'public'),
	('192.88.99.0/24', 'Deprecated (6to4 Relay Anycast) (RFC 7526)', '(empty)', 'refused'),
	('192.88.99.2/32', '6a44-relay anycast address (RFC 6751)', 'False', 'refused'),
	('192.168.0.0/16', 'Private-Use (RFC 1918)', 'False', 'refused'),
	('192.175.48.0/24', 'Direct Delegation AS112 Service (RFC 7534)', 'True', 'public'),
	('198.18.0.0/15', 'Benchmarking (RFC 2544)', 'False', 'refused'),
	('198.51.100.0/24', 'Documentation (TEST-NET-2) (RFC 5737)', 'False', 'refused'),
	('203.0.113.0/24', 'Documentation (TEST-NET-3) (RFC 5737)', 'False', 'refused'),
	('240.0.0.0/4', 'Reserved (RFC 1112)', 'False', 'refused'),
	('255.255.255.255/32', 'Limited Broadcast (RFC 919)', 'False', 'refused'),
	('224.0.0.0/4', 'Multicast (RFC 5771)', 'not listed', 'refused'),
	('::/0', 'IPv6 address space', 'not listed', 'refused'),
	('2000::/3', 'Global Unicast (RFC 4291)', 'not listed', 'public'),
	('::1/128', 'Loopback Address (RFC 4291)', 'False', 'refused'),
	('::/128', 'Unspecified Address (RFC 4291)', 'False', 'refused'),
	('::ffff:0:0/96', 'IPv4-mapped Address (RFC 4291)', 'False', 'embedded IPv4'),
	('64:ff9b::/96', 'IPv4-IPv6 Translat. (RFC 6052)', 'True', 'embedded IPv4'),
	('64:ff9b:1::/48', 'IPv4-IPv6 Translat. (RFC 8215)', 'False', 'refused'),
	('100::/64', 'Discard-Only Address Block (RFC 6666)', 'False', 'refused'),
	('100:0:0:1::/64', 'Dummy IPv6 Prefix (RFC 9780)', 'False', 'refused'),
	('2001::/23', 'IETF Protocol Assignments (RFC 2928)', 'False', 'refused'),
	('2001::/32', 'TEREDO (RFC 4380)', 'N/A', 'refused'),
	('2001:1::1/128', 'Port Control Protocol Anycast (RFC 7723)', 'True', 'public'),
	('2001:1::2/128', 'Traversal Using Relays around NAT Anycast (RFC 8155)', 'True', 'public'),
	('2001:1::3/128', 'DNS-SD Service Registration Protocol Anycast (RFC 9665)', 'True', 'public'),
	('2001:2::/48', 'Benchmarking (RFC 5180)', 'False', 'refused'),
	('2001:3::/32', 'AMT (RFC 7450)', 'True', 'public'),
	('2001:4:112::/48', 'AS112-v6 (RFC 7535)', 'True', 'public'),
	('2001:10::/28', 'Deprecated (previously ORCHID) (RFC 4843)', '(empty)', 'refused'),
	('2001:20::/28', 'ORCHIDv2 (RFC 7343)', 'True', 'public'),
	('2001:30::/28', 'Drone Remote ID Protocol Entity Tags (RFC 9374)', 'True', 'public'),
	('2001:db8::/32', 'Documentation (RFC 3849)', 'False', 'refused'),
	('2002::/16', '6to4 (RFC 3056)', 'N/A', 'refused'),
	('2620:4f:8000::/48', 'Direct Delegation AS112 Service (RFC 7534)', 'True', 'public'),
	('3fff::/20', 'Documentation (RFC 9637)', 'False', 'refused'),
	('5f00::/16', 'Segment Routing (SRv6) SIDs (RFC 9602)', 'False', 'refused'),
	('fc00::/7', 'Unique-Local (RFC 4193)', 'False', 'refused'),
	('fe80::/10', 'Link-Local Unicast (RFC 4291)', 'False', 'refused'),
	('ff00::/8', 'Multicast (RFC 4291)', 'not listed', 'refused');

-- Each entry at its edges: its first and last address (its only one for a
-- single address), and the addresses just below and just above it.
CREATE TEMP VIEW probe AS
SELECT e.id, e.block, p.ord, p.probe, p.address
  FROM registry_entry e,
	   LATERAL (SELECT host(network(e.block))::inet AS lo,
					   host(broadcast(e.block))::inet AS hi,
					   CASE family(e.block) WHEN 4 THEN '0.0.0.0' ELSE '::' END::inet AS bottom,
					   CASE family(e.block) WHEN 4 THEN '255.255.255.255'
							ELSE 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' END::inet AS top) b,
	   LATERAL (VALUES (1, 'below', CASE WHEN b.lo <> b.bottom THEN b.lo - 1 END),
					   (2, CASE WHEN b.lo = b.hi THEN 'only' ELSE 'first' END, b.lo),
					   (3, 'last', CASE WHEN b.lo <> b.hi THEN b.hi END),
					   (4, 'above', CASE WHEN b.hi <> b.top THEN b.hi + 1 END)) AS p(ord, probe, address)
 WHERE p.address IS NOT NULL;

SELECT block, name, registry, bridge FROM registry_entry ORDER BY id;

SELECT block, probe, address, eightms.is_public_address(address) AS public
  FROM probe ORDER BY id, ord;

-- The same verdicts from a second reading of the table: the most specific
-- entry containing an address decides, an embedded IPv4 address by the
-- IPv4 entries.  No probe may disagree with it.
CREATE TEMP VIEW verdict AS
SELECT a.address,
	   (SELECT CASE e.bridge
				   WHEN 'public' THEN true
				   WHEN 'refused' THEN false
				   ELSE (SELECT v.bridge = 'public'
						   FROM registry_entry v
						  WHERE family(v.block) = 4
							AND v.block >>= '0.0.0.0'::inet + (a.address - host(network(e.block))::inet)
						  ORDER BY masklen(v.block) DESC LIMIT 1)
			   END
		  FROM registry_entry e
		 WHERE family(e.block) = family(a.address) AND e.block >>= a.address
		 ORDER BY masklen(e.block) DESC LIMIT 1) AS expected
  FROM (SELECT DISTINCT address FROM probe) a;
SELECT address, expected, eightms.is_public_address(address) AS public
  FROM verdict
 WHERE expected IS DISTINCT FROM eightms.is_public_address(address)
 ORDER BY address;

-- The addresses of the finding (issue 17, finding 8), which were called
-- public: local-use NAT64, SIIT IPv4-translated, RFC 9637 documentation,
-- SRv6 SIDs.
SELECT a AS address, eightms.is_public_address(a::inet) AS public
  FROM unnest(ARRAY['64:ff9b:1::a00:1', '64:ff9b:1::808:808', '::ffff:0:a00:1', '::ffff:0:808:808',
					'3fff::1', '3fff:fff:ffff::1', '5f00::1', '5f00:ffff::1']) AS a;

-- Forms that carry an IPv4 address: mapped and well-known NAT64 follow that
-- address, the rest are refused whatever they carry.
SELECT a AS address, eightms.is_public_address(a::inet) AS public
  FROM unnest(ARRAY[
	'::ffff:8.8.8.8', '::ffff:1.1.1.1', '::ffff:192.0.0.9', '::ffff:192.31.196.1',
	'::ffff:0.0.0.0', '::ffff:10.0.0.1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '::ffff:192.0.0.8',
	'::ffff:224.0.0.1', '::ffff:255.255.255.255',
	'64:ff9b::8.8.8.8', '64:ff9b::1.1.1.1', '64:ff9b::192.0.0.10', '64:ff9b::192.175.48.1',
	'64:ff9b::0.0.0.0', '64:ff9b::10.0.0.1', '64:ff9b::127.0.0.1', '64:ff9b::169.254.169.254',
	'64:ff9b::100.64.0.1', '64:ff9b::239.255.255.250',
	'::8.8.8.8', '::127.0.0.1', '::ffff:0:8.8.8.8', '64:ff9b:1:808:8:800::', '64:ff9b:1::8.8.8.8',
	'2002:808:808::1', '2002:a00:1::1', '2001:0:808:808::1', '2001:0:4136:e378:8000:63bf:3fff:fdd2']) AS a;

-- Plainly public hosts, and global unicast beyond the registries' entries.
SELECT a AS address, eightms.is_public_address(a::inet) AS public
  FROM unnest(ARRAY[
	'8.8.8.8', '8.8.4.4', '1.1.1.1', '1.0.0.1', '9.9.9.9', '208.67.222.222', '93.184.216.34',
	'100.63.255.255', '100.128.0.0', '172.15.255.255', '172.32.0.0', '192.0.1.0', '192.167.255.255',
	'198.17.255.255', '198.20.0.0', '223.255.255.255',
	'2606:4700::1111', '2606:4700:4700::1001', '2001:4860:4860::8888', '2001:4860:4860::8844',
	'2620:fe::fe', '2a00:1450:4001:82a::200e', '2400:cb00:2048:1::c629:d7a2', '2c0f:fb50:4003::1',
	'2001:200::1', '2001:4860::1', '2a03:2880:f12f:83:face:b00c:0:25de']) AS a;
