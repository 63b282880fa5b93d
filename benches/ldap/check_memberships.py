#!/usr/bin/env python3
"""Checks a sync's memberships against the directory's truth, computed here independently.

    check_memberships.py --ldif DIR.ldif [--changes CHANGES.ldif] --state STATE.toml
                         --provider NAME --phase first|incremental|full
                         (--sqlite DB | --pg URL) [--cache DIR]

The truth is computed from the LDIF scripts/ldap/gen_directory.py wrote (and, for the phases
after the changes, its --changes LDIF applied in order) and from the state file `idsync apply`
applied, with nothing of idsync's:

  - a user is an inetOrgPerson entry under the provider's user_base_dn, named by its uid;
  - a user's group values are the DNs of the groups (groupOfNames and the other group classes
    of the default group_filter, under group_base_dn) whose `member` lists the user, and, with
    nested_groups = true, every group listing one of those groups, transitively;
  - a local group holds a user when one of its mappings from the provider is assign_all_users,
    or lists an attribute pattern matching one of the user's group values: an exact DN compared
    as a DN (RFC 4514/4518: attribute types case-insensitive and by alias or OID, values
    case-insensitive, spaces around separators and runs of spaces insignificant, `\\,` and
    `\\2C` the same), `glob:` and `regex:` (anchored) matched case-insensitively against the
    DN's canonical form (lower case, no spaces around separators, RFC 4514 escapes);
  - All Users is implicit and never stored.

Phases: `first` is the directory as loaded; `full` is after the changes; `incremental` is
after the changes too: the servers scripts/ldap/slapd.sh starts offer RFC 4533 content
synchronisation, through which an incremental run learns of deleted entries. With
--timestamps-only, the users the changes deleted keep the memberships they had (a directory
without content synchronisation: deleted entries leave no timestamp, only full runs find them).

The database's memberships (every row of `memberships`, joined to users and groups by name)
must equal the truth exactly. Prints "memberships equal the directory's truth: yes (N rows)",
or the differences, each with the user, the group and why the truth says otherwise, and exits
1. With --cache DIR, the truth of a (directory, changes, mappings, phase) is computed once and
reused by later checks.
"""

import argparse
import base64
import collections
import functools
import hashlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import tomllib

# ---------------------------------------------------------------------------------------------
# Distinguished names

# Attribute types by alias and OID, to their short name (the common ones of RFC 4519).
ATTRIBUTE_TYPES = {
    "cn": ("2.5.4.3", "commonname"),
    "sn": ("2.5.4.4", "surname"),
    "c": ("2.5.4.6", "countryname"),
    "l": ("2.5.4.7", "localityname"),
    "st": ("2.5.4.8", "stateorprovincename"),
    "street": ("2.5.4.9", "streetaddress"),
    "o": ("2.5.4.10", "organizationname"),
    "ou": ("2.5.4.11", "organizationalunitname"),
    "uid": ("0.9.2342.19200300.100.1.1", "userid"),
    "mail": ("0.9.2342.19200300.100.1.3", "rfc822mailbox"),
    "dc": ("0.9.2342.19200300.100.1.25", "domaincomponent"),
}
TYPE_ALIASES = {}
for short, names in ATTRIBUTE_TYPES.items():
    TYPE_ALIASES[short] = short
    for n in names:
        TYPE_ALIASES[n] = short


class DnError(ValueError):
    pass


def parse_dn(text):
    """RFC 4514 string form -> list of RDNs, each a list of (type, value, is_hex)."""
    rdns, avas = [], []
    i, n = 0, len(text)

    def skip_spaces(i):
        while i < n and text[i] == " ":
            i += 1
        return i

    i = skip_spaces(i)
    if i == n:
        return []
    while True:
        i = skip_spaces(i)
        start = i
        while i < n and text[i] not in "= ":
            i += 1
        attr = text[start:i]
        i = skip_spaces(i)
        if not attr or i >= n or text[i] != "=":
            raise DnError(f"expected type=value at {start} in {text!r}")
        i = skip_spaces(i + 1)
        if i < n and text[i] == "#":
            start = i + 1
            while i + 1 < n and text[i + 1] not in ",;+ ":
                i += 1
            value, is_hex = text[start : i + 1].lower(), True
            i += 1
        else:
            raw = bytearray()
            trailing_unescaped = 0
            while i < n and text[i] not in ",;+":
                c = text[i]
                if c == "\\":
                    if i + 1 >= n:
                        raise DnError(f"unterminated escape in {text!r}")
                    pair = text[i + 1 : i + 3]
                    if len(pair) == 2 and all(ch in "0123456789abcdefABCDEF" for ch in pair):
                        raw.append(int(pair, 16))
                        i += 3
                    else:
                        raw += text[i + 1].encode()
                        i += 2
                    trailing_unescaped = 0
                else:
                    raw += c.encode()
                    trailing_unescaped = trailing_unescaped + 1 if c == " " else 0
                    i += 1
            if trailing_unescaped:
                del raw[-trailing_unescaped:]
            value, is_hex = raw.decode("utf-8"), False
        avas.append((attr, value, is_hex))
        if i >= n:
            rdns.append(avas)
            return rdns
        sep = text[i]
        i += 1
        if sep in ",;":
            rdns.append(avas)
            avas = []


def canonical_type(attr):
    a = attr.lower()
    if a.startswith("oid."):
        a = a[4:]
    if a in TYPE_ALIASES:
        return TYPE_ALIASES[a]
    for short, (oid, _) in ATTRIBUTE_TYPES.items():
        if a == oid:
            return short
    return a


# RFC 4518 section 2.2: characters mapped to nothing.
MAPPED_TO_NOTHING = re.compile(
    "[\u0000-\u0008\u000e-\u001f\u007f-\u0084\u0086-\u009f\u00ad\u034f\u06dd\u070f\u1806"
    "\u180b-\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2063\u206a-\u206f\ufe00-\ufe0f\ufeff"
    "\ufff9-\ufffc\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]"
)


def prepare(value):
    """caseIgnoreMatch's preparation: invisible characters dropped, white space runs to one
    space, trimmed, lower case."""
    value = MAPPED_TO_NOTHING.sub("", value)
    value = " ".join(value.split())
    return "".join(c.lower() if c != "ς" else "σ" for c in value)


def escape_value(v):
    out = []
    for k, c in enumerate(v):
        if c == " " and (k == 0 or k == len(v) - 1):
            out.append("\\ ")
        elif c == "#" and k == 0:
            out.append("\\#")
        elif c in ',+"\\<>;=':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\{ord(c):02x}")
        else:
            out.append(c)
    return "".join(out)


# DNs made of these characters only need no escape handling: the fast path of normalize().
SIMPLE_DN = re.compile(r"[A-Za-z0-9 ,=._-]*\Z")


@functools.lru_cache(maxsize=1 << 21)
def normalize(dn):
    """The canonical form of a DN: idsync's comparison form, computed independently."""
    if SIMPLE_DN.match(dn):
        if not dn.strip():
            return ""
        parts = []
        for rdn in dn.split(","):
            attr, eq, value = rdn.partition("=")
            if not eq or not attr.strip():
                raise DnError(f"expected type=value in {dn!r}")
            parts.append(f"{canonical_type(attr.strip())}={escape_value(prepare(value))}")
        return ",".join(parts)
    out = []
    for avas in parse_dn(dn):
        parts = sorted(
            {
                f"{canonical_type(a)}=" + (f"#{v}" if is_hex else escape_value(prepare(v)))
                for a, v, is_hex in avas
            }
        )
        out.append("+".join(parts))
    return ",".join(out)


def under(dn_norm, base_norm):
    return dn_norm == base_norm or dn_norm.endswith("," + base_norm)


# ---------------------------------------------------------------------------------------------
# Mapping patterns


def glob_to_regex(glob):
    """globset's syntax (literal_separator off): * ? [..] [!..] {a,b} and \\ escapes."""
    out, i, n = [], 0, len(glob)
    depth = 0
    while i < n:
        c = glob[i]
        if c == "\\" and i + 1 < n:
            out.append(re.escape(glob[i + 1]))
            i += 2
            continue
        if c == "*":
            while i + 1 < n and glob[i + 1] == "*":
                i += 1
            out.append(".*")
        elif c == "?":
            out.append(".")
        elif c == "[":
            j = i + 1
            negate = j < n and glob[j] in "!^"
            if negate:
                j += 1
            start = j
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            body = glob[start:j].replace("\\", "\\\\")
            out.append("[" + ("^" if negate else "") + body + "]")
            i = j
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Pattern:
    def __init__(self, source):
        self.source = source
        if source.startswith("glob:"):
            self.exact = None
            self.regex = re.compile(glob_to_regex(source[5:]), re.IGNORECASE | re.DOTALL)
        elif source.startswith("regex:"):
            self.exact = None
            self.regex = re.compile(source[6:], re.IGNORECASE)
        else:
            self.exact = normalize(source)
            self.regex = None

    def matches(self, dn_norm):
        if self.exact is not None:
            return self.exact == dn_norm
        return self.regex.fullmatch(dn_norm) is not None


# ---------------------------------------------------------------------------------------------
# LDIF


def ldif_records(path):
    """Each record as a list of (attribute, value), "-" separators included as ("-", "")."""
    with open(path, "rb") as f:
        record, last = [], None
        for raw in f:
            line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            if not line:
                if last is not None:
                    record.append(last)
                    last = None
                if record:
                    yield record
                record = []
                continue
            if line.startswith(" ") and last is not None:
                last = (last[0], last[1] + line[1:], last[2])
                continue
            if last is not None:
                record.append(last)
                last = None
            if line.startswith("#") or line.startswith("version:"):
                continue
            if line == "-":
                record.append(("-", "", False))
                continue
            attr, _, rest = line.partition(":")
            if rest.startswith(":"):
                last = (attr, rest[1:].strip(), True)
            else:
                last = (attr, rest[1:] if rest.startswith(" ") else rest, False)
        if last is not None:
            record.append(last)
        if record:
            yield record


def decoded(record):
    return [
        (a, base64.b64decode(v).decode("utf-8") if b64 else v) for a, v, b64 in record
    ]


GROUP_CLASSES = {"groupofnames", "groupofuniquenames", "posixgroup", "group"}


class Directory:
    """Users and groups as the LDIF (and changes) leave them."""

    def __init__(self, user_base, group_base):
        self.user_base = normalize(user_base)
        self.group_base = normalize(group_base)
        self.users = {}  # norm dn -> uid
        self.groups = {}  # norm dn -> dn as written
        self.members = collections.defaultdict(set)  # group norm dn -> member norm dns
        self.history = collections.defaultdict(list)  # user norm dn -> change descriptions

    def add_entry(self, attrs):
        dn = attrs[0][1]
        key = normalize(dn)
        classes = {v.lower() for a, v in attrs if a.lower() == "objectclass"}
        if "inetorgperson" in classes and under(key, self.user_base) and key != self.user_base:
            uid = next((v for a, v in attrs if a.lower() == "uid"), None)
            if uid:
                self.users[key] = uid
        elif classes & GROUP_CLASSES and under(key, self.group_base):
            self.groups[key] = dn
            for a, v in attrs:
                if a.lower() == "member" and v.strip():
                    self.members[key].add(normalize(v))

    def load(self, path):
        for record in ldif_records(path):
            attrs = decoded(record)
            if attrs and attrs[0][0].lower() == "dn":
                self.add_entry(attrs)

    def apply_changes(self, path):
        """ldapmodify records; returns the usernames of the users deleted."""
        deleted = []
        for number, record in enumerate(ldif_records(path), start=1):
            attrs = decoded(record)
            dn = attrs[0][1]
            key = normalize(dn)
            kind = next(v for a, v in attrs if a.lower() == "changetype").lower()
            if kind == "add":
                self.add_entry([x for x in attrs if x[0].lower() != "changetype"])
                self.history[key].append((number, "added", None, None))
            elif kind == "delete":
                if key in self.users:
                    deleted.append(self.users.pop(key))
                self.groups.pop(key, None)
                self.members.pop(key, None)
                # The memberof overlay's referential integrity drops the entry from groups.
                for m in self.members.values():
                    m.discard(key)
                self.history[key].append((number, "deleted", None, None))
            elif kind == "modify":
                op = None
                for a, v in attrs[2:]:
                    low = a.lower()
                    if low == "-":
                        op = None
                    elif low in ("add", "delete", "replace") and v.lower() == "member":
                        op = low
                        if op == "replace":
                            self.members[key] = set()
                    elif low == "member" and op:
                        member = normalize(v)
                        if op == "delete":
                            self.members[key].discard(member)
                        else:
                            self.members[key].add(member)
                        self.history[member].append((number, op, key, self.groups.get(key, dn)))
            else:
                sys.exit(f"check_memberships.py: change {number}: changetype {kind} not handled")
        return deleted


class Truth:
    """Who is in which local group, by the rules of the module docstring."""

    def __init__(self, directory, groups, provider, nested):
        self.d = directory
        self.nested = nested
        self.assign_all = []
        self.patterns = []  # (local group, Pattern)
        for group in groups:
            for m in group.get("mappings", []):
                if m.get("provider", "").strip() != provider:
                    continue
                if m.get("assign_all_users"):
                    self.assign_all.append(group["name"].strip())
                for a in m.get("attributes", []):
                    self.patterns.append((group["name"].strip(), Pattern(a)))
        self.exact = collections.defaultdict(list)
        self.wild = []
        for name, p in self.patterns:
            if p.exact is not None:
                self.exact[p.exact].append((name, p))
            else:
                self.wild.append((name, p))
        # Parent groups of every member (user or group): the groups listing it.
        self.parents = collections.defaultdict(set)
        for g, ms in directory.members.items():
            if g in directory.groups:
                for m in ms:
                    self.parents[m].add(g)
        self._direct_local = {}
        self._local = {}

    def direct_local(self, g):
        """(local group, pattern) pairs whose pattern matches group g itself."""
        if g not in self._direct_local:
            hits = list(self.exact.get(g, ()))
            hits += [(name, p) for name, p in self.wild if p.matches(g)]
            self._direct_local[g] = hits
        return self._direct_local[g]

    def closure(self, dn_norm):
        """The group values of a member: the groups listing it, and with nesting their parents
        too; as {group: the group listing it on the way (None for a direct one)}."""
        found = {g: None for g in self.parents.get(dn_norm, ())}
        if not self.nested:
            return found
        frontier = list(found)
        while frontier:
            g = frontier.pop()
            for p in self.parents.get(g, ()):
                if p not in found:
                    found[p] = g
                    frontier.append(p)
        return found

    def local_groups_of_group(self, g):
        if g not in self._local:
            names = {name for name, _ in self.direct_local(g)}
            if self.nested:
                for a in self.closure(g):
                    names.update(name for name, _ in self.direct_local(a))
            self._local[g] = frozenset(names)
        return self._local[g]

    def of_user(self, dn_norm):
        names = set(self.assign_all)
        for g in self.parents.get(dn_norm, ()):
            names |= self.local_groups_of_group(g)
        return names

    def rows(self, only=None):
        out = set()
        for dn_norm, uid in self.d.users.items():
            if only is not None and uid not in only:
                continue
            for name in self.of_user(dn_norm):
                out.add((uid, name))
        return out

    def why(self, uid, group):
        """Why the truth has (or has not) this membership."""
        dn_norm = next((k for k, v in self.d.users.items() if v == uid), None)
        if dn_norm is None:
            return f"{uid} is not in the directory"
        if group in self.assign_all:
            return f"{group} has an assign_all_users mapping"
        values = self.closure(dn_norm)
        for g, via in sorted(values.items()):
            for name, p in self.direct_local(g):
                if name == group:
                    chain = [self.d.groups.get(g, g)]
                    while via is not None:
                        chain.append(self.d.groups.get(via, via))
                        via = values[via]
                    return (
                        f"pattern '{p.source}' matches '{chain[0]}', which {uid} is in"
                        + (" through " + " ⊂ ".join(f"'{c}'" for c in reversed(chain[1:])) if len(chain) > 1 else " directly")
                    )
        direct = sorted(self.d.groups.get(g, g) for g in self.parents.get(dn_norm, ()))
        patterns = [p.source for name, p in self.patterns if name == group]
        shown = ", ".join(f"'{d}'" for d in direct[:3])
        if len(direct) > 3:
            shown += f" and {len(direct) - 3} more"
        return (
            f"no group value of {uid} matches {group}'s patterns "
            + ", ".join(f"'{p}'" for p in patterns)
            + ", directly or "
            f"through nesting; {uid} is directly in {shown or 'no group'}"
        )

    def nested_in(self, group_norm):
        """The groups containing a group, through nesting, nearest first, as written."""
        if not self.nested:
            return []
        found = self.closure(group_norm)
        return [self.d.groups.get(g, g) for g in found]


# ---------------------------------------------------------------------------------------------
# The database

QUERY = (
    "select u.username, g.name from memberships m join users u on u.id = m.user_id "
    "join groups g on g.id = m.group_id"
)


def database_rows(args):
    if args.sqlite:
        db = sqlite3.connect(f"file:{args.sqlite}?mode=ro", uri=True)
        rows = db.execute(QUERY).fetchall()
        return set(rows), len(rows)
    out = subprocess.run(
        ["psql", args.pg, "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", QUERY],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    rows = [tuple(line.split("\t", 1)) for line in out.splitlines() if line]
    return set(rows), len(rows)


# ---------------------------------------------------------------------------------------------


def build(args, state):
    provider = next((p for p in state.get("providers", []) if p["name"].strip() == args.provider), None)
    if provider is None:
        sys.exit(f"check_memberships.py: no provider {args.provider!r} in {args.state}")
    options = provider.get("options", {})
    user_base = options["user_base_dn"]
    group_base = options.get("group_base_dn", user_base)
    if options.get("group_source", "member_of") not in ("member_of", "member"):
        sys.exit("check_memberships.py: only group_source member_of and member are modelled")
    if options.get("user_filter", "(objectClass=person)").lower() != "(objectclass=inetorgperson)":
        sys.exit("check_memberships.py: only user_filter (objectClass=inetOrgPerson) is modelled")
    if "group_filter" in options:
        sys.exit("check_memberships.py: only the default group_filter is modelled")
    directory = Directory(user_base, group_base)
    directory.load(args.ldif)
    before = Truth(directory, state.get("groups", []), args.provider, bool(options.get("nested_groups")))
    if args.phase == "first":
        return before, before.rows()
    if not args.changes:
        sys.exit(f"check_memberships.py: phase {args.phase} needs --changes")
    deleted_rows = set()
    # The deleted users' memberships before the changes, for the incremental phase.
    deleted_uids = set()
    for record in ldif_records(args.changes):
        attrs = decoded(record)
        kind = next((v for a, v in attrs if a.lower() == "changetype"), "").lower()
        if kind == "delete":
            uid = directory.users.get(normalize(attrs[0][1]))
            if uid:
                deleted_uids.add(uid)
    if args.phase == "incremental" and deleted_uids and args.timestamps_only:
        deleted_rows = before.rows(only=deleted_uids)
    directory.apply_changes(args.changes)
    after = Truth(directory, state.get("groups", []), args.provider, bool(options.get("nested_groups")))
    return after, after.rows() | deleted_rows


def cache_key(args, state):
    h = hashlib.sha256()
    for path in (args.ldif, args.changes):
        if path:
            st = os.stat(path)
            h.update(f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    provider = [p for p in state.get("providers", []) if p["name"].strip() == args.provider]
    for p in provider:
        p = dict(p)
        opts = dict(p.get("options", {}))
        for k in ("url", "bind_password_file", "bind_dn"):
            opts.pop(k, None)
        p["options"] = opts
        h.update(json.dumps(p, sort_keys=True).encode())
    h.update(json.dumps(state.get("groups", []), sort_keys=True).encode())
    h.update(args.phase.encode())
    h.update(b"timestamps-only" if args.timestamps_only else b"")
    return h.hexdigest()[:16]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ldif", required=True)
    p.add_argument("--changes")
    p.add_argument("--state", required=True)
    p.add_argument("--provider", required=True)
    p.add_argument("--phase", choices=("first", "incremental", "full"), required=True)
    p.add_argument("--timestamps-only", action="store_true",
                   help="the incremental run could not see deletions (no content synchronisation)")
    db = p.add_mutually_exclusive_group(required=True)
    db.add_argument("--sqlite")
    db.add_argument("--pg")
    p.add_argument("--cache")
    p.add_argument("--examples", type=int, default=20, help="differences shown (20)")
    args = p.parse_args()
    with open(args.state, "rb") as f:
        state = tomllib.load(f)

    truth = None
    expected = None
    cached = None
    if args.cache:
        os.makedirs(args.cache, exist_ok=True)
        cached = os.path.join(args.cache, f"truth-{cache_key(args, state)}.tsv")
        if os.path.exists(cached):
            with open(cached, encoding="utf-8") as f:
                expected = {tuple(line.rstrip("\n").split("\t", 1)) for line in f if line.strip()}
    if expected is None:
        truth, expected = build(args, state)
        if cached:
            with open(cached + ".tmp", "w", encoding="utf-8") as f:
                f.writelines(f"{u}\t{g}\n" for u, g in sorted(expected))
            os.replace(cached + ".tmp", cached)

    actual, count = database_rows(args)
    if count != len(actual):
        print(f"check_memberships.py: the database lists {count - len(actual)} memberships twice", file=sys.stderr)
    missing = sorted(expected - actual)
    extra = sorted(actual - expected)
    if not missing and not extra and count == len(actual):
        print(f"memberships equal the directory's truth: yes ({len(expected):,} rows)")
        return
    if truth is None:
        truth, _ = build(args, state)
    print(
        f"memberships equal the directory's truth: NO ({len(expected):,} expected, {len(actual):,} in "
        f"the database: {len(missing):,} missing, {len(extra):,} extra)"
    )
    by_group = collections.Counter(g for _, g in missing)
    if missing:
        print("  missing by group: " + ", ".join(f"{g} {n}" for g, n in by_group.most_common(10)))
    by_group = collections.Counter(g for _, g in extra)
    if extra:
        print("  extra by group: " + ", ".join(f"{g} {n}" for g, n in by_group.most_common(10)))
    for label, rows in (("missing", missing), ("extra", extra)):
        for uid, group in rows[: args.examples]:
            print(f"  {label}: {uid} in {group}: {truth.why(uid, group)}")
            key = next((k for k, v in truth.d.users.items() if v == uid), None)
            for number, op, group_key, group_dn in truth.d.history.get(key, [])[:5]:
                if group_key is None:
                    print(f"      change {number}: the user was {op}")
                    continue
                where = truth.nested_in(group_key)
                print(
                    f"      change {number}: {'removed from' if op == 'delete' else 'added to'} "
                    f"'{group_dn}'"
                    + (", which is nested in " + " and ".join(f"'{w}'" for w in where) if where else "")
                )
        if len(rows) > args.examples:
            print(f"  … and {len(rows) - args.examples} more {label}")
    sys.exit(1)


if __name__ == "__main__":
    main()
