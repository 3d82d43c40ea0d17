#!/usr/bin/env python3
"""Compile Google's PhoneNumberMetadata.xml into C tables for the engine in src/phone/.

    python3 tools/phone/gen.py data/phonenumber/PhoneNumberMetadata-v9.0.35.xml v9_0_35 > src/phone/tables/v9_0_35.c

(make phone-tables writes both committed tables; make phone-tables-check
compares them with this program's output.)

Every regular expression in the metadata is parsed here, once.  Patterns
that must match a whole national number (the general and per-type
descriptions) become DFAs over the ten digits, so the engine matches them in
one pass with no backtracking.  Prefix patterns (international prefix,
national prefix for parsing with its capture groups, leading digits) become
small programs for the engine's bounded backtracking matcher, which gives
the leftmost-first semantics libphonenumber (RE2) uses for them.

The metadata rules follow libphonenumber's BuildMetadataFromXml: whitespace
is removed from patterns, nationalPrefixForParsing defaults to
nationalPrefix, the general description's possible lengths are the union of
the types' (noInternationalDialling excluded), and a type with no element
never matches.
"""
import re
import sys
import xml.etree.ElementTree as ET

TYPES = ["fixedLine", "mobile", "tollFree", "premiumRate", "sharedCost", "voip",
         "personalNumber", "pager", "uan", "voicemail"]

# ---------------------------------------------------------------- regex AST

class Parser:
    """The regex subset the metadata uses, over digits only."""

    def __init__(self, s):
        self.s = re.sub(r"\s", "", s)
        self.i = 0
        self.ngroups = 0

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def take(self):
        c = self.s[self.i]
        self.i += 1
        return c

    def parse(self):
        node = self.alt()
        if self.i != len(self.s):
            raise ValueError("unexpected %r at %d in %s" % (self.peek(), self.i, self.s))
        return node

    def alt(self):
        branches = [self.cat()]
        while self.peek() == "|":
            self.take()
            branches.append(self.cat())
        return branches[0] if len(branches) == 1 else ("alt", branches)

    def cat(self):
        items = []
        while self.peek() not in (None, "|", ")"):
            items.append(self.repeat())
        return ("cat", items)

    def repeat(self):
        atom = self.atom()
        while True:
            c = self.peek()
            if c == "?":
                self.take(); atom = ("rep", atom, 0, 1)
            elif c == "*":
                self.take(); atom = ("rep", atom, 0, None)
            elif c == "+":
                self.take(); atom = ("rep", atom, 1, None)
            elif c == "{":
                j = self.s.index("}", self.i)
                body = self.s[self.i + 1:j]
                self.i = j + 1
                if "," in body:
                    lo, hi = body.split(",")
                    atom = ("rep", atom, int(lo), int(hi) if hi else None)
                else:
                    atom = ("rep", atom, int(body), int(body))
            else:
                return atom
            if self.peek() == "?":
                raise ValueError("lazy quantifier in " + self.s)

    def atom(self):
        c = self.take()
        if c == "(":
            capture = None
            if self.s.startswith("?:", self.i):
                self.i += 2
            else:
                self.ngroups += 1
                capture = self.ngroups
            node = self.alt()
            if self.take() != ")":
                raise ValueError("unclosed group in " + self.s)
            return ("grp", node, capture)
        if c == "[":
            digits = set()
            neg = False
            if self.peek() == "^":
                self.take(); neg = True
            while self.peek() != "]":
                d = self.take()
                if d == "\\":
                    e = self.take()
                    if e != "d":
                        raise ValueError("class escape \\%s in %s" % (e, self.s))
                    digits |= set(range(10))
                    continue
                if self.peek() == "-" and self.s[self.i + 1] != "]":
                    self.take()
                    hi = self.take()
                    digits |= set(range(int(d), int(hi) + 1))
                else:
                    digits.add(int(d))
            self.take()
            if neg:
                digits = set(range(10)) - digits
            return ("set", frozenset(digits))
        if c == "\\":
            e = self.take()
            if e == "d":
                return ("set", frozenset(range(10)))
            raise ValueError("escape \\%s in %s" % (e, self.s))
        if c == "$":
            return ("end",)
        if c == "^":
            return ("begin",)
        if c.isdigit():
            return ("set", frozenset([int(c)]))
        raise ValueError("character %r in %s" % (c, self.s))


# ------------------------------------------- programs (backtracking VM)

OP_SET, OP_SPLIT, OP_JMP, OP_SAVE, OP_END, OP_MATCH = range(6)


def compile_prog(node):
    """A program of (op, x, y): SET(mask), SPLIT(prefer x, else y), JMP(x),
    SAVE(slot), END (assert end of input), MATCH."""
    prog = []

    def emit(op, x=0, y=0):
        prog.append([op, x, y])
        return len(prog) - 1

    def gen(n):
        kind = n[0]
        if kind == "set":
            emit(OP_SET, sum(1 << d for d in n[1]))
        elif kind == "cat":
            for m in n[1]:
                gen(m)
        elif kind == "alt":
            jumps = []
            for k, m in enumerate(n[1]):
                if k < len(n[1]) - 1:
                    split = emit(OP_SPLIT)
                    prog[split][1] = len(prog)
                    gen(m)
                    jumps.append(emit(OP_JMP))
                    prog[split][2] = len(prog)
                else:
                    gen(m)
            for j in jumps:
                prog[j][1] = len(prog)
        elif kind == "grp":
            if n[2] is not None:
                emit(OP_SAVE, 2 * n[2])
            gen(n[1])
            if n[2] is not None:
                emit(OP_SAVE, 2 * n[2] + 1)
        elif kind == "rep":
            _, m, lo, hi = n
            for _ in range(lo):
                gen(m)
            if hi is None:
                split = emit(OP_SPLIT)
                prog[split][1] = len(prog)
                gen(m)
                emit(OP_JMP, split)
                prog[split][2] = len(prog)
            else:
                splits = []
                for _ in range(hi - lo):
                    split = emit(OP_SPLIT)
                    prog[split][1] = len(prog)
                    splits.append(split)
                    gen(m)
                for sp in splits:
                    prog[sp][2] = len(prog)
        elif kind == "end":
            emit(OP_END)
        elif kind == "begin":
            pass                      # patterns are anchored at the start anyway
        else:
            raise ValueError(kind)

    gen(node)
    emit(OP_MATCH)
    return prog


# ---------------------------------------------------------------- DFAs

def to_dfa(prog):
    """Subset construction over the program's epsilon closure; a state
    accepts when MATCH is reachable (END is satisfied at the end of input,
    which is the only place a full match accepts)."""

    def closure(pcs):
        stack = list(pcs)
        seen = set(pcs)
        while stack:
            pc = stack.pop()
            op, x, y = prog[pc]
            nxt = []
            if op == OP_SPLIT:
                nxt = [x, y]
            elif op in (OP_JMP,):
                nxt = [x]
            elif op in (OP_SAVE, OP_END):
                nxt = [pc + 1]
            for q in nxt:
                if q not in seen:
                    seen.add(q)
                    stack.append(q)
        return frozenset(seen)

    start = closure([0])
    states = {start: 1}
    order = [start]
    trans = []
    accept = []
    k = 0
    while k < len(order):
        cur = order[k]
        k += 1
        accept.append(any(prog[pc][0] == OP_MATCH for pc in cur))
        row = []
        for d in range(10):
            moved = [pc + 1 for pc in cur if prog[pc][0] == OP_SET and (prog[pc][1] >> d) & 1]
            if not moved:
                row.append(0)
                continue
            c = closure(moved)
            if c not in states:
                states[c] = len(order) + 1
                order.append(c)
                if len(order) > 60000:
                    raise ValueError("DFA too large")
            row.append(states[c])
        trans.append(row)
    return minimize(trans, accept)


def minimize(trans, accept):
    """Moore's partition refinement; state 0 is the dead state."""
    n = len(trans)
    part = [0] + [1 + int(a) for a in accept]  # index 0: dead
    while True:
        sig = {}
        newpart = [0] * (n + 1)
        for s in range(n + 1):
            if s == 0:
                key = ("dead",)
            else:
                key = (part[s],) + tuple(part[t] for t in trans[s - 1])
            if key not in sig:
                sig[key] = len(sig)
            newpart[s] = sig[key]
        if len(set(newpart)) == len(set(part)):
            part = newpart
            break
        part = newpart
    # renumber: dead -> 0, start -> 1
    dead = part[0]
    ids = {dead: 0, part[1]: 1}
    for s in range(1, n + 1):
        if part[s] not in ids:
            ids[part[s]] = len(ids)
    m = len(ids) - 1
    mtrans = [[0] * 10 for _ in range(m)]
    macc = [False] * m
    for s in range(1, n + 1):
        q = ids[part[s]]
        if q == 0:
            continue
        macc[q - 1] = accept[s - 1]
        mtrans[q - 1] = [ids[part[t]] if t else 0 for t in trans[s - 1]]
    return mtrans, macc


# ---------------------------------------------------------------- metadata

def lengths(spec):
    out = set()
    if not spec:
        return out
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"\[(\d+)-(\d+)\]", part)
        if m:
            out |= set(range(int(m.group(1)), int(m.group(2)) + 1))
        elif part == "-1":
            continue
        else:
            out.add(int(part))
    return out


def main():
    path, name = sys.argv[1], sys.argv[2]
    root = ET.parse(path).getroot()
    dfa_trans = [[0] * 10]            # state 0 of the shared table: dead
    dfa_accept = [False]
    progs = []
    regions = []

    def add_dfa(pattern):
        if pattern is None:
            return -1
        trans, acc = to_dfa(compile_prog(Parser(pattern).parse()))
        base = len(dfa_trans) - 1     # global index of local state 1 is base+1
        for row in trans:
            dfa_trans.append([base + t if t else 0 for t in row])
        dfa_accept.extend(acc)
        return base + 1

    def add_prefix_dfa(pattern):
        """The DFA of the pattern, for a quick "no prefix can match" before
        the backtracking program runs; -1 when there is none."""
        if not pattern:
            return -1
        try:
            first = len(dfa_trans)
            start = add_dfa(pattern)
        except ValueError:
            return -1
        # 2: accepting, and nothing goes on from it.  Reached first, such a
        # state is the only match there is: where the pattern has no "$",
        # the backtracking program can only find that one.
        if not any(op == OP_END for op, _, _ in compile_prog(Parser(pattern).parse())):
            for q in range(first, len(dfa_trans)):
                if dfa_accept[q] and not any(dfa_trans[q]):
                    dfa_accept[q] = 2
        return start

    def add_prog(pattern):
        if not pattern:
            return -1, 0
        p = Parser(pattern)
        prog = compile_prog(p.parse())
        off = len(progs)
        for op, x, y in prog:
            if op in (OP_SPLIT, OP_JMP):
                x += off
                y = y + off if op == OP_SPLIT else 0
            progs.append((op, x, y))
        return off, p.ngroups

    for t in root.iter("territory"):
        a = t.attrib
        r = {"id": a["id"], "cc": int(a["countryCode"])}
        r["main"] = a.get("mainCountryForCode") == "true"
        idd = a.get("internationalPrefix")
        r["idd"] = add_prog(idd)[0]
        r["idd_dfa"] = add_prefix_dfa(idd)
        np_ = a.get("nationalPrefix", "")
        npp = a.get("nationalPrefixForParsing")
        if npp is None and np_:
            npp = np_
        r["npp"], r["npp_groups"] = add_prog(npp)
        r["npp_dfa"] = add_prefix_dfa(npp)
        r["transform"] = a.get("nationalPrefixTransformRule", "")
        r["leading"] = add_prog(a.get("leadingDigits"))[0]
        r["leading_dfa"] = add_prefix_dfa(a.get("leadingDigits"))
        gd = t.find("generalDesc")
        r["general"] = add_dfa(gd.find("nationalNumberPattern").text)
        all_nat, all_local = set(), set()
        r["types"] = []
        for ty in TYPES:
            d = t.find(ty)
            if d is None:
                r["types"].append((-1, 0, 0))
                continue
            pl = d.find("possibleLengths")
            nat = lengths(pl.get("national")) if pl is not None else set()
            loc = lengths(pl.get("localOnly")) if pl is not None else set()
            all_nat |= nat
            all_local |= loc
            r["types"].append((add_dfa(d.find("nationalNumberPattern").text),
                               sum(1 << n for n in nat), sum(1 << n for n in loc)))
        r["lengths"] = sum(1 << n for n in all_nat)
        r["local"] = sum(1 << n for n in (all_local - all_nat))
        fl, mo = t.find("fixedLine"), t.find("mobile")
        r["same_fixed_mobile"] = (fl is not None and mo is not None and
                                  re.sub(r"\s", "", fl.find("nationalNumberPattern").text) ==
                                  re.sub(r"\s", "", mo.find("nationalNumberPattern").text))
        regions.append(r)

    out = []
    w = out.append
    w("/* Generated by tools/phone/gen.py from %s; do not edit. */" % path.split("/")[-1])
    w('#include "phone/phone.h"')
    w("")
    w("static const uint16_t dfa_next[][10] = {")
    for row in dfa_trans:
        w("\t{%s}," % ",".join(map(str, row)))
    w("};")
    w("static const uint8_t dfa_accept[] = {%s};" % ",".join(str(int(x)) for x in dfa_accept))
    w("static const PhoneInst prog[] = {")
    for op, x, y in progs:
        w("\t{%d,%d,%d}," % (op, x, y))
    w("};")
    w("static const PhoneRegion regions[] = {")
    def first_digits(start):
        """Bit d: the prefix DFA does not die on a first digit d (all ten
        where it accepts before any, or there is no DFA)."""
        if start < 0 or dfa_accept[start]:
            return 0x3FF
        return sum(1 << d for d in range(10) if dfa_trans[start][d])

    # live[q]: an accepting state is reachable from q (the dead state 0 never).
    live = [bool(a) for a in dfa_accept]
    live[0] = False
    changed = True
    while changed:
        changed = False
        for q, row in enumerate(dfa_trans):
            if not live[q] and q and any(live[t] for t in row if t):
                live[q] = changed = True

    def npp_never_general(r):
        """1 where no number that a national prefix starts can match the
        general description whole: the engine's strip then needs no general
        match, before or after.  The prefix DFA accepts wherever the prefix
        program may match (and more), so the pairs of states walked to its
        first accepting one cover every number the program strips."""
        if r["npp"] < 0 or r["general"] < 0:
            return 1
        if r["npp_dfa"] < 0:
            return 0
        seen = set()
        todo = [(r["npp_dfa"], r["general"])]
        while todo:
            a, g = todo.pop()
            if (a, g) in seen:
                continue
            seen.add((a, g))
            if dfa_accept[a]:
                if live[g]:
                    return 0
                continue
            for d in range(10):
                a2, g2 = dfa_trans[a][d], dfa_trans[g][d]
                if a2 and g2:
                    todo.append((a2, g2))
        return 1

    # Calling code -> its regions, the main country first, then the others in
    # the metadata's order (libphonenumber's country-code-to-region map).
    by_cc = {}
    for i, r in enumerate(regions):
        lst = by_cc.setdefault(r["cc"], [])
        if r["main"]:
            lst.insert(0, i)
        else:
            lst.append(i)
    for r in regions:
        types = ",".join("{%d,%dU,%dU}" % ty for ty in r["types"])
        # In PhoneRegion's order (src/phone/phone.h).
        w('\t{"%s",%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%dU,%dU,"%s",{%s},%d,%d,%d,%d,%d,{%s}},' % (
            r["id"], r["cc"], int(r["main"]), int(r["same_fixed_mobile"]), r["idd"], r["npp"],
            r["idd_dfa"], r["npp_dfa"], r["npp_groups"], npp_never_general(r), r["general"],
            r["lengths"], r["local"],
            r["transform"].replace("\\", "\\\\").replace('"', '\\"'),
            ",".join("'%s'" % c for c in "+%d" % r["cc"]), by_cc[r["cc"]][0],
            first_digits(r["idd_dfa"]), first_digits(r["npp_dfa"]), r["leading"],
            r["leading_dfa"], types))
    w("};")
    cc_list, cc_first, cc_count = [], [0] * 1000, [0] * 1000
    for cc in sorted(by_cc):
        cc_first[cc] = len(cc_list)
        cc_count[cc] = len(by_cc[cc])
        cc_list.extend(by_cc[cc])
    # Two-letter region id -> index (001 is not a region one can parse in).
    id_index = [-1] * (26 * 26)
    for i, r in enumerate(regions):
        if len(r["id"]) == 2 and r["id"].isalpha():
            id_index[(ord(r["id"][0]) - 65) * 26 + ord(r["id"][1]) - 65] = i
    w("static const int16_t cc_list[] = {%s};" % ",".join(map(str, cc_list)))
    w("static const uint16_t cc_first[1000] = {%s};" % ",".join(map(str, cc_first)))
    w("static const uint8_t cc_count[1000] = {%s};" % ",".join(map(str, cc_count)))
    w("static const int16_t id_index[676] = {%s};" % ",".join(map(str, id_index)))
    w("")
    w("const PhoneTables phone_tables_%s = {" % name)
    w('\t"%s", dfa_next, dfa_accept, prog, regions, %d, cc_list, cc_first, cc_count, id_index' % (
        name.replace("_", "."), len(regions)))
    w("};")
    print("\n".join(out))
    print("/* %d regions, %d DFA states, %d program instructions */" % (len(regions), len(dfa_trans), len(progs)), file=sys.stderr)


if __name__ == "__main__":
    main()
