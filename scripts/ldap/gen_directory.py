#!/usr/bin/env python3
"""Generates an LDAP directory for benchmarks, as LDIF on standard output.

    gen_directory.py --users N --groups M --groups-per-user K [--base dc=example,dc=com]
                     [--seed S] [--nested G] [--password PW] > dir.ldif
    gen_directory.py --users N --groups M --groups-per-user K [--seed S] --changes C > changes.ldif

Directory mode writes, parents first:
  - the base entry and ou=People, ou=Groups, ou=Services (no service account: the test
    harness adds its own, and skips these four entries when it finds them in an LDIF);
  - N users uid=user000001 ... (inetOrgPerson, userPassword PW in plain text, which slapd
    accepts for simple binds);
  - M groups cn=group00001 ... (groupOfNames), each user a member of K groups chosen at
    random, so a group has about N*K/M members;
  - with --nested G, G of the groups are also members of one other group each, always one
    with a lower number, so nesting never forms a cycle.

slapadd does not run the memberof overlay: an offline load leaves memberOf empty. So the
users' (and nested groups') memberOf values are written here, in the entries themselves,
and a memberOf-mode sync finds the same memberships as a group-search sync. Online changes
(ldapadd/ldapmodify through a slapd with the overlay) keep them up to date from then on.

Load it offline, the server stopped:
    slapadd -q -F SLAPD.D -b BASE -l dir.ldif
or from Rust tests with Slapd::start_with_ldif (tests/support/slapd.rs). slapadd -q with
more than one tool thread (olcToolThreads, or -j) has been seen to crash on groups with more
than 2,000 members; use one thread (the default) when N*K/M is that large.

Changes mode (--changes C) prints C change records for ldapmodify, meant for the directory
the same --users/--groups/--groups-per-user/--base/--seed/--nested generate: about 45% add a
user to a group, 45% remove one, 5% add a new user (uid=new000001 ...), 5% delete a user.
They are consistent when applied in order and never empty a group (groupOfNames needs a
member). memberOf is not written there: apply them online, through a slapd with the
memberof overlay (it updates memberOf, and removes deleted users from their groups):
    ldapmodify -x -H URL -D ADMIN_DN -w PW -f changes.ldif

Output is deterministic for given arguments. 100k users x 10k groups x 10 groups per user
generates in a few seconds.
"""

import argparse
import base64
import random
import sys

CHUNK = 1 << 16


def ldif_value(attr, value):
    """One attr: value line, base64 where RFC 2849 wants it."""
    safe = (
        value.isascii()
        and not any(c in value for c in "\0\n\r")
        and not value.startswith((" ", ":", "<"))
        and not value.endswith(" ")
    )
    if safe:
        return f"{attr}: {value}\n" if value else f"{attr}:\n"
    return f"{attr}:: {base64.b64encode(value.encode()).decode()}\n"


class Out:
    """Buffered writer: joins many small strings before each write."""

    def __init__(self, stream):
        self.stream = stream
        self.parts = []

    def add(self, s):
        self.parts.append(s)
        if len(self.parts) >= CHUNK:
            self.flush()

    def flush(self):
        self.stream.write("".join(self.parts))
        self.parts.clear()


def user_name(i):
    return f"user{i:06d}"


def group_name(i):
    return f"group{i:05d}"


def base_entries(base):
    rdn = base.split(",", 1)[0]
    attr, _, value = rdn.partition("=")
    attr = attr.strip().lower()
    value = value.strip()
    s = f"dn: {base}\n"
    if attr == "dc":
        s += "objectClass: dcObject\nobjectClass: organization\n"
        s += ldif_value("dc", value) + ldif_value("o", value)
    elif attr == "o":
        s += "objectClass: organization\n" + ldif_value("o", value)
    elif attr == "ou":
        s += "objectClass: organizationalUnit\n" + ldif_value("ou", value)
    else:
        sys.exit(f"gen_directory.py: the base DN's first RDN must be dc=, o= or ou=: {base}")
    s += "\n"
    for ou in ("People", "Groups", "Services"):
        s += f"dn: ou={ou},{base}\nobjectClass: organizationalUnit\nou: {ou}\n\n"
    return s


def mail_domain(base):
    parts = [
        rdn.split("=", 1)[1].strip()
        for rdn in base.split(",")
        if rdn.split("=", 1)[0].strip().lower() == "dc" and "=" in rdn
    ]
    return ".".join(parts) or "example.com"


def user_entry(base, uid, password, domain, member_of=(), change=False):
    """A user entry; with change=True, as an ldapmodify add record."""
    s = (
        f"dn: uid={uid},ou=People,{base}\n"
        + ("changetype: add\n" if change else "")
        + "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n"
        "objectClass: inetOrgPerson\n"
        f"uid: {uid}\ncn: {uid}\nsn: {uid}\ndisplayName: User {uid}\n"
        f"mail: {uid}@{domain}\n"
    )
    s += ldif_value("userPassword", password)
    for dn in member_of:
        s += f"memberOf: {dn}\n"
    return s + "\n"


def build(args):
    """The memberships: user index -> list of group indexes, group index -> parent index."""
    rng = random.Random(args.seed)
    if args.groups_per_user > args.groups:
        sys.exit("gen_directory.py: --groups-per-user cannot exceed --groups")
    groups = range(1, args.groups + 1)
    user_groups = [rng.sample(groups, args.groups_per_user) for _ in range(args.users)]
    parent = {}
    if args.nested:
        if args.nested >= args.groups:
            sys.exit("gen_directory.py: --nested must be below --groups")
        # Children are drawn from groups 2..M; each gets a parent with a lower number.
        for child in rng.sample(range(2, args.groups + 1), args.nested):
            parent[child] = rng.randrange(1, child)
    return user_groups, parent


def write_directory(args, out):
    base = args.base
    domain = mail_domain(base)
    user_groups, parent = build(args)
    gdn = [None] + [f"cn={group_name(g)},ou=Groups,{base}" for g in range(1, args.groups + 1)]
    members = [[] for _ in range(args.groups + 1)]

    out.add(base_entries(base))
    for i, gs in enumerate(user_groups, start=1):
        uid = user_name(i)
        dn = f"uid={uid},ou=People,{base}"
        for g in gs:
            members[g].append(dn)
        out.add(user_entry(base, uid, args.password, domain, (gdn[g] for g in sorted(gs))))
    for child, p in parent.items():
        members[p].append(gdn[child])

    largest = max((len(m) for m in members), default=0)
    if largest > 2000:
        print(
            f"gen_directory.py: the largest group has {largest} members; load with one "
            "slapadd tool thread",
            file=sys.stderr,
        )
    for g in range(1, args.groups + 1):
        s = f"dn: {gdn[g]}\nobjectClass: top\nobjectClass: groupOfNames\ncn: {group_name(g)}\n"
        if g in parent:
            s += f"memberOf: {gdn[parent[g]]}\n"
        if members[g]:
            s += "".join(f"member: {m}\n" for m in members[g])
        else:
            # groupOfNames must have a member: the null DN stands for none.
            s += "member:\n"
        out.add(s + "\n")


def write_changes(args, out):
    """C change records against the directory the same arguments generate."""
    base = args.base
    domain = mail_domain(base)
    user_groups, parent = build(args)
    rng = random.Random(f"{args.seed}/changes")

    def udn(uid):
        return f"uid={uid},ou=People,{base}"

    def gdn(g):
        return f"cn={group_name(g)},ou=Groups,{base}"

    # Membership as it stands after the changes so far.
    groups_of = {user_name(i): set(gs) for i, gs in enumerate(user_groups, start=1)}
    size = [0] * (args.groups + 1)
    for gs in user_groups:
        for g in gs:
            size[g] += 1
    for child, p in parent.items():
        size[p] += 1
    # Users in a list for uniform choice; removal swaps with the last.
    alive = list(groups_of)
    where = {uid: i for i, uid in enumerate(alive)}
    new_users = 0

    def remove_alive(uid):
        i = where.pop(uid)
        last = alive.pop()
        if i < len(alive):
            alive[i] = last
            where[last] = i

    def modify(g, op, uid):
        return f"dn: {gdn(g)}\nchangetype: modify\n{op}: member\nmember: {udn(uid)}\n-\n\n"

    written = 0
    attempts = 0
    while written < args.changes:
        attempts += 1
        if attempts > 100 * args.changes + 1000:
            sys.exit("gen_directory.py: cannot find enough possible changes in this directory")
        r = rng.random()
        if r < 0.05:
            new_users += 1
            uid = f"new{new_users:06d}"
            groups_of[uid] = set()
            where[uid] = len(alive)
            alive.append(uid)
            out.add(user_entry(base, uid, args.password, domain, change=True))
        elif r < 0.10:
            if not alive:
                continue
            uid = rng.choice(alive)
            # Deleting the only member of a group would leave it without one.
            if any(size[g] <= 1 for g in groups_of[uid]):
                continue
            for g in groups_of.pop(uid):
                size[g] -= 1
            remove_alive(uid)
            out.add(f"dn: {udn(uid)}\nchangetype: delete\n\n")
        elif r < 0.55:
            if not alive:
                continue
            uid = rng.choice(alive)
            g = rng.randint(1, args.groups)
            if g in groups_of[uid]:
                continue
            groups_of[uid].add(g)
            size[g] += 1
            out.add(modify(g, "add", uid))
        else:
            if not alive:
                continue
            uid = rng.choice(alive)
            candidates = [g for g in groups_of[uid] if size[g] > 1]
            if not candidates:
                continue
            g = rng.choice(sorted(candidates))
            groups_of[uid].discard(g)
            size[g] -= 1
            out.add(modify(g, "delete", uid))
        written += 1


def main():
    p = argparse.ArgumentParser(
        description="Generate an LDAP directory (or changes to one) as LDIF on stdout.",
        epilog="See the module docstring for what is written and how to load it.",
    )
    p.add_argument("--users", type=int, required=True, help="number of users")
    p.add_argument("--groups", type=int, required=True, help="number of groups")
    p.add_argument(
        "--groups-per-user", type=int, required=True, help="groups each user is a member of"
    )
    p.add_argument("--base", default="dc=example,dc=com", help="base DN (dc=example,dc=com)")
    p.add_argument("--seed", type=int, default=1, help="random seed (1)")
    p.add_argument(
        "--nested", type=int, default=0, help="number of groups nested in another group (0)"
    )
    p.add_argument("--password", default="password", help="every user's password (password)")
    p.add_argument(
        "--changes",
        type=int,
        metavar="C",
        help="print C change records for ldapmodify instead of the directory",
    )
    args = p.parse_args()
    for name in ("users", "groups", "groups_per_user", "nested"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must not be negative")
    if args.groups == 0 and args.groups_per_user:
        p.error("--groups-per-user needs groups")
    if args.users > 999_999 or args.groups > 99_999:
        p.error("at most 999,999 users and 99,999 groups (the names have fixed widths)")

    out = Out(sys.stdout)
    if args.changes is None:
        write_directory(args, out)
    else:
        write_changes(args, out)
    out.flush()


if __name__ == "__main__":
    main()
