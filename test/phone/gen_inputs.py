#!/usr/bin/env python3
"""Inputs for the differential test against libphonenumber.

    gen_inputs.py METADATA.xml COUNT SEED > inputs.tsv

Numbers are drawn from every region's patterns for every type it has (and
its example numbers), then written the ways people write them: national
format with and without the national prefix, with +<code>, with the region's
own international prefix seen from another region, spaced, dashed, dotted,
bracketed, in full-width digits, with vanity letters, with extensions, as
tel: URIs, truncated, over-long, under the wrong region, and as junk.
Each line is "raw<TAB>default region".
"""
import random
import re
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tools/phone")
from gen import Parser  # noqa: E402

TYPES = ["fixedLine", "mobile", "tollFree", "premiumRate", "sharedCost", "voip",
         "personalNumber", "pager", "uan", "voicemail"]


def sample(node, rnd):
    kind = node[0]
    if kind == "set":
        return str(rnd.choice(sorted(node[1])))
    if kind == "cat":
        return "".join(sample(m, rnd) for m in node[1])
    if kind == "alt":
        return sample(rnd.choice(node[1]), rnd)
    if kind == "grp":
        return sample(node[1], rnd)
    if kind == "rep":
        _, m, lo, hi = node
        hi = lo + 3 if hi is None else hi
        return "".join(sample(m, rnd) for _ in range(rnd.randint(lo, hi)))
    return ""


FULLWIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
KEYS = {"2": "ABC", "3": "DEF", "4": "GHI", "5": "JKL", "6": "MNO", "7": "PQRS", "8": "TUV", "9": "WXYZ"}


def group(digits, rnd, sep):
    out, i = [], 0
    while i < len(digits):
        k = rnd.randint(2, 4)
        out.append(digits[i:i + k])
        i += k
    return sep.join(out)


def main():
    path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(seed)
    root = ET.parse(path).getroot()
    regions = []
    for t in root.iter("territory"):
        a = t.attrib
        pats = []
        for ty in TYPES:
            d = t.find(ty)
            if d is None:
                continue
            try:
                pats.append(Parser(d.find("nationalNumberPattern").text).parse())
            except ValueError:
                continue
            ex = d.find("exampleNumber")
            if ex is not None:
                pats.append(("lit", ex.text.strip()))
        idd = a.get("internationalPrefix", "")
        simple_idd = idd if re.fullmatch(r"\d+", idd or "") else (re.match(r"\d+", idd or "") or [None])[0]
        regions.append((a["id"], a["countryCode"], a.get("nationalPrefix", ""), simple_idd, pats))
    geo = [r for r in regions if r[0] != "001"]
    n = 0
    while n < count:
        rid, cc, np_, idd, pats = rnd.choice(regions)
        if not pats:
            continue
        p = rnd.choice(pats)
        nsn = p[1] if p[0] == "lit" else sample(p, rnd)
        home = rid if rid != "001" else rnd.choice(geo)[0]
        style = rnd.randrange(16)
        region = home
        if style == 0:
            raw = nsn
        elif style == 1:
            raw = np_ + nsn
        elif style == 2:
            raw = "+" + cc + nsn
        elif style == 3:
            raw = "+" + cc + " " + group(nsn, rnd, " ")
        elif style == 4:
            other = rnd.choice(geo)
            region = other[0]
            raw = (other[3] or "00") + cc + nsn
        elif style == 5:
            raw = (np_ + " " if np_ else "") + "(" + nsn[:3] + ") " + group(nsn[3:], rnd, "-")
        elif style == 6:
            raw = group(np_ + nsn, rnd, rnd.choice(["-", ".", " "]))
        elif style == 7:
            raw = "".join(FULLWIDTH.get(c, c) for c in "+" + cc + nsn).replace("+", chr(0xFF0B))
        elif style == 8:
            digits = list(np_ + nsn)
            for i in range(len(digits) - 1, max(len(digits) - 5, 0), -1):
                if digits[i] in KEYS and rnd.random() < 0.8:
                    digits[i] = rnd.choice(KEYS[digits[i]])
            raw = "".join(digits)
        elif style == 9:
            raw = "+" + cc + " " + nsn + rnd.choice([" ext. ", " x", " ext ", ";ext=", " #", ",,", " - "]) \
                + str(rnd.randint(1, 99999)) + rnd.choice(["", "#"])
        elif style == 10:
            raw = "tel:+" + cc + "-" + group(nsn, rnd, "-") + rnd.choice(["", ";ext=12", ";isub=3"])
        elif style == 11:
            raw = "tel:" + nsn + ";phone-context=+" + cc
        elif style == 12:
            raw = (np_ + nsn)[:max(1, len(nsn) - rnd.randint(1, 4))]
        elif style == 13:
            raw = "+" + cc + nsn + "".join(str(rnd.randint(0, 9)) for _ in range(rnd.randint(1, 6)))
        elif style == 14:
            region = rnd.choice(geo)[0]
            raw = np_ + nsn
        else:
            junk = "abc+-()#*x;:/\\ .0123456789" + chr(0xFF11) + chr(0x0663)
            raw = "".join(rnd.choice(junk) for _ in range(rnd.randint(0, 20)))
        raw = raw.replace("\t", " ").replace("\n", " ")
        print(raw + "\t" + region)
        n += 1


if __name__ == "__main__":
    main()
