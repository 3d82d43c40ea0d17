#!/usr/bin/env python3
"""Harder inputs for the differential test, written independently of
gen_inputs.py: the corners gen_inputs.py does not reach.

    gen_hard.py METADATA.xml COUNT SEED > inputs.tsv

Other Unicode digit sets (Arabic-Indic, Extended Arabic-Indic, Devanagari,
Bengali, Thai, Myanmar...), regions in lower case, unknown or absent default
regions, the long forms of extension marks, tel: URIs with domain contexts
and parameters, punctuation and prefix noise, example numbers of regions
whose IDD or national prefix for parsing is a real pattern (one string drawn
from it), national prefixes with carrier codes, and inputs near the length
limits.
"""
import random
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, __file__.rsplit("/", 3)[0] + "/tools/phone")
sys.path.insert(0, __file__.rsplit("/", 1)[0])
from gen import Parser  # noqa: E402
from gen_inputs import sample, TYPES, KEYS  # noqa: E402

DIGIT_BASES = [0x30, 0xFF10, 0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0x0AE6, 0x0BE6, 0x1810, 0x1D7CE]
EXT_MARKS = [" ext ", " ext. ", " ext: ", " extension ", " EXT", " x ", "x", " #", "#", ";ext=", ",", ",,",
             " доб ", " anexo ", " extn. ", " ramal ", " int ", " ext.", "  ext  ", " xtn ", " ~"]
PLUSES = ["+", "\uff0b"]
NOISE_BEFORE = ["", "", "", "Tel: ", "phone ", "(", "[", "*", "#", "..", "-", "  ", "++", "+ ", "\u00a0", "/"]
NOISE_AFTER = ["", "", "", ")", "]", ".", " ", "-", "#", "*", "/", "!", "\u00a0"]
SEPS = [" ", "-", ".", "/", "\u2010", "\u2013", "\u00a0", "\u3000", "(", ")", "~", "\u2212", ""]


def digits_in(s, base):
    out = []
    for c in s:
        if c.isdigit() and c < "\x80":
            out.append(chr(base + int(c)) if base != 0x30 else c)
        else:
            out.append(c)
    return "".join(out)


def sep_group(s, rnd):
    out, i = [], 0
    while i < len(s):
        k = rnd.randint(1, 4)
        out.append(s[i:i + k])
        i += k
    return rnd.choice(SEPS).join(out)


def main():
    path, count, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rnd = random.Random(seed)
    root = ET.parse(path).getroot()
    regions = []
    for t in root.iter("territory"):
        a = t.attrib
        pats = []
        for ty in TYPES + ["generalDesc"]:
            d = t.find(ty)
            if d is None or d.find("nationalNumberPattern") is None:
                continue
            try:
                pats.append(Parser(d.find("nationalNumberPattern").text).parse())
            except ValueError:
                continue
        def drawn(attr):
            v = a.get(attr)
            if not v:
                return None
            try:
                return Parser(v).parse()
            except ValueError:
                return None
        regions.append(dict(id=a["id"], cc=a["countryCode"], np=a.get("nationalPrefix", ""),
                            idd=drawn("internationalPrefix"), npp=drawn("nationalPrefixForParsing"),
                            pats=pats))
    geo = [r for r in regions if r["id"] != "001"]
    ids = [r["id"] for r in geo]
    n = 0
    while n < count:
        r = rnd.choice(regions)
        if not r["pats"]:
            continue
        nsn = sample(rnd.choice(r["pats"]), rnd)
        home = r["id"] if r["id"] != "001" else rnd.choice(ids)
        region = home
        style = rnd.randrange(14)
        if style == 0:          # other digit sets, with or without +cc
            raw = digits_in(rnd.choice(["", "+" + r["cc"]]) + nsn, rnd.choice(DIGIT_BASES))
        elif style == 1:        # default region odd: lower case, unknown, none, 001
            raw = rnd.choice(["", "+" + r["cc"], r["np"]]) + nsn
            region = rnd.choice([home.lower(), "", "ZZ", "XX", "001", "U", "USA", home.title()])
        elif style == 2:        # extension marks
            raw = rnd.choice(["+" + r["cc"] + " ", r["np"]]) + nsn + rnd.choice(EXT_MARKS) + \
                str(rnd.randint(0, 10 ** rnd.randint(1, 9)))
        elif style == 3:        # tel: URIs with domain contexts, params, lower/upper
            ctx = rnd.choice([";phone-context=+" + r["cc"], ";phone-context=example.com",
                              ";phone-context=+" + r["cc"] + "-1", ";phone-context=", ";isub=12",
                              ";ext=" + str(rnd.randint(1, 999)), ";ext=12;phone-context=+" + r["cc"], ""])
            raw = rnd.choice(["tel:", "TEL:", "Tel:", ""]) + rnd.choice(["", "+" + r["cc"]]) + \
                sep_group(nsn, rnd) + ctx
        elif style == 4:        # punctuation and prefix/suffix noise
            raw = rnd.choice(NOISE_BEFORE) + rnd.choice(PLUSES + [""]) + r["cc"] + \
                rnd.choice(SEPS) + sep_group(nsn, rnd) + rnd.choice(NOISE_AFTER)
        elif style == 5:        # IDD drawn from the region's own pattern
            other = rnd.choice(geo)
            idd = sample(other["idd"], rnd) if other["idd"] else "00"
            region = other["id"]
            raw = idd + rnd.choice(["", " "]) + r["cc"] + rnd.choice(["", " "]) + nsn
        elif style == 6:        # national prefix for parsing drawn from its pattern
            pre = sample(r["npp"], rnd) if r["npp"] else r["np"]
            raw = pre + nsn
        elif style == 7:        # national prefix and number with the cc glued on twice
            raw = r["cc"] + nsn if rnd.random() < 0.5 else r["cc"] + r["np"] + nsn
        elif style == 8:        # vanity letters anywhere, lower case too
            ds = list("+" + r["cc"] + nsn)
            for i in range(len(ds)):
                if ds[i] in KEYS and rnd.random() < 0.3:
                    c = rnd.choice(KEYS[ds[i]])
                    ds[i] = c.lower() if rnd.random() < 0.3 else c
            raw = "".join(ds)
        elif style == 9:        # near the length limits
            pad = "".join(rnd.choice("0123456789 ") for _ in range(rnd.randint(0, 260)))
            raw = rnd.choice(["+" + r["cc"], ""]) + nsn + pad
        elif style == 10:       # leading zeros (Italian style) and zero-only
            raw = "+" + r["cc"] + "0" * rnd.randint(1, 4) + nsn[:rnd.randint(0, len(nsn))]
        elif style == 11:       # deletions and insertions of single digits
            s = list(nsn)
            if s and rnd.random() < 0.5:
                del s[rnd.randrange(len(s))]
            else:
                s.insert(rnd.randint(0, len(s)), str(rnd.randint(0, 9)))
            raw = rnd.choice(["+" + r["cc"], r["np"], ""]) + "".join(s)
        elif style == 12:       # another region's default
            region = rnd.choice(ids)
            raw = rnd.choice(["+" + r["cc"], r["np"], "", "00" + r["cc"], "011" + r["cc"]]) + nsn
        else:                   # junk with digits, letters, unicode
            alphabet = "0123456789+-()# .x;=:telTEL*/\uff10\u0663\u06f5\u0967ABCabc\uff0b,"
            raw = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 30)))
        raw = raw.replace("\t", " ").replace("\n", " ").replace("\r", " ")
        print(raw + "\t" + region)
        n += 1


if __name__ == "__main__":
    main()
