#!/usr/bin/env python3
"""Byte-level junk for the differential test: pieces of numbers, prefixes,
extension and RFC 3966 marks, control characters, invalid and overlong
UTF-8, surrogates and supplementary digits, glued at random.

    gen_bytes.py COUNT SEED > inputs.tsv
"""
import random
import sys

PIECES = [b'+', b'00', b'011', b'44', b'1', b'20', b'7031', b'3000', b' ', b'-', b'(', b')',
          b'\xef\xbc\x8b', b'\xff', b'\xc3', b'\xe2\x80', b'\x80', b'ext', b'x', b'#', b';ext=',
          b'tel:', b';phone-context=', b'\x01', b'\x7f', b'\xc2\xa0', b'.', b'*', b'A', b'Z',
          b'\xd9\xa3', b'\xf0\x9d\x9f\x8e', b'\xed\xa0\x80', b'\xc0\xaf', b'\xf4\x90\x80\x80']
REGIONS = [b'GB', b'US', b'DE', b'IT', b'AR', b'MX', b'BR', b'', b'ZZ', b'gb', b'001']


def main():
    count, seed = int(sys.argv[1]), int(sys.argv[2])
    r = random.Random(seed)
    out = sys.stdout.buffer
    for _ in range(count):
        s = b''.join(r.choice(PIECES) for _ in range(r.randint(0, 14)))
        s = s.replace(b'\n', b'').replace(b'\t', b'').replace(b'\r', b'')
        out.write(s + b'\t' + r.choice(REGIONS) + b'\n')


if __name__ == "__main__":
    main()
