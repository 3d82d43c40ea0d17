/*
 * gcm_kat.c
 *		Known-answer tests for src/secrets/seal_gcm.c: the AES-256 test cases of the
 *		GCM specification (McGrew and Viega, test cases 13 to 16, as
 *		published by NIST), run through the same code the extension uses.
 *		Prints "N passed, N failed".
 */
#include <stdio.h>
#include <string.h>

#include "secrets/seal_gcm.h"

typedef struct
{
	const char *name;
	const char *key;
	const char *iv;
	const char *pt;
	const char *aad;
	const char *ct;
	const char *tag;
} Vector;

static const Vector vectors[] = {
	{"test case 13 (empty plaintext)",
		"0000000000000000000000000000000000000000000000000000000000000000",
		"000000000000000000000000", "", "", "",
	"530f8afbc74536b9a963b4f1c4cb738b"},
	{"test case 14 (one zero block)",
		"0000000000000000000000000000000000000000000000000000000000000000",
		"000000000000000000000000", "00000000000000000000000000000000", "",
		"cea7403d4d606b6e074ec5d3baf39d18",
	"d0d1c8a799996bf0265b98b5d48ab919"},
	{"test case 15 (64 bytes)",
		"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
		"cafebabefacedbaddecaf888",
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255",
		"",
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
	"b094dac5d93471bdec1a502270e3cc6c"},
	{"test case 16 (60 bytes, 20 bytes of AAD)",
		"feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308",
		"cafebabefacedbaddecaf888",
		"d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
		"feedfacedeadbeeffeedfacedeadbeefabaddad2",
		"522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
	"76fc6ece0f4e1768cddf8853bb2d551b"},
};

static size_t
unhex(const char *s, uint8_t *out)
{
	size_t		n = strlen(s) / 2;

	for (size_t i = 0; i < n; i++)
		sscanf(s + 2 * i, "%2hhx", &out[i]);
	return n;
}

static int	passed,
			failed;

static void
check(int ok, const char *what, const char *name)
{
	printf("%s - %s: %s\n", ok ? "ok" : "not ok", name, what);
	if (ok)
		passed++;
	else
		failed++;
}

int
main(void)
{
	for (size_t v = 0; v < sizeof(vectors) / sizeof(vectors[0]); v++)
	{
		const Vector *t = &vectors[v];
		uint8_t		key[32],
					iv[12],
					pt[64],
					aad[32],
					ct[64],
					tag[16],
					out[64],
					got_tag[16];
		size_t		ptlen,
					aadlen,
					split;
		SealGcmKey	k;

		unhex(t->key, key);
		unhex(t->iv, iv);
		ptlen = unhex(t->pt, pt);
		aadlen = unhex(t->aad, aad);
		unhex(t->ct, ct);
		unhex(t->tag, tag);
		if (!seal_gcm_key_init(&k, key))
		{
			check(0, "key setup", t->name);
			continue;
		}

		/* The AAD is given in two pieces, as the extension does. */
		split = aadlen / 2;
		check(seal_gcm_encrypt(&k, iv, aad, split, aad + split, aadlen - split, pt, ptlen, out, got_tag)
			  && memcmp(out, ct, ptlen) == 0 && memcmp(got_tag, tag, 16) == 0,
			  "encrypts to the published ciphertext and tag", t->name);
		check(seal_gcm_decrypt(&k, iv, aad, aadlen, NULL, 0, ct, ptlen, tag, out)
			  && memcmp(out, pt, ptlen) == 0,
			  "decrypts the published ciphertext", t->name);
		tag[0] ^= 1;
		check(!seal_gcm_decrypt(&k, iv, aad, aadlen, NULL, 0, ct, ptlen, tag, out),
			  "refuses a tag with one bit changed", t->name);
		tag[0] ^= 1;
		if (aadlen > 0)
		{
			aad[aadlen - 1] ^= 0x80;
			check(!seal_gcm_decrypt(&k, iv, aad, aadlen, NULL, 0, ct, ptlen, tag, out),
				  "refuses changed associated data", t->name);
		}
		if (aadlen > 0)
			aad[aadlen - 1] ^= 0x80;
		memset(out, 0, sizeof(out));
		memset(got_tag, 0, sizeof(got_tag));
		check(seal_gcm_encrypt(&k, iv, aad, aadlen, NULL, 0, pt, ptlen, out, got_tag)
			  && memcmp(out, ct, ptlen) == 0 && memcmp(got_tag, tag, 16) == 0,
			  "the prepared context, used again, gives the same answer", t->name);
		seal_gcm_key_free(&k);
	}
	printf("%d passed, %d failed\n", passed, failed);
	return failed != 0;
}
