#!/usr/bin/env python3
"""Generates an LDAP directory for benchmarks, as LDIF on standard output.

    gen_directory.py --users N --groups M --groups-per-user K [--base dc=example,dc=com]
                     [--seed S] [--nested G] [--department D] [--password PW] > dir.ldif
    gen_directory.py --users N --groups M --groups-per-user K [--seed S] [--nested G]
                     [--department D] --changes C > changes.ldif

Directory mode writes, parents first:
  - the base entry and ou=People, ou=Groups, ou=Services (no service account: the test
    harness adds its own, and skips these four entries when it finds them in an LDIF);
  - N users uid=user000001 ... (inetOrgPerson, userPassword PW in plain text, which slapd
    accepts for simple binds);
  - M groups cn=group00001 ... (groupOfNames), each user a member of K groups chosen at
    random, so a group has about N*K/M members;
  - with --nested G, G of the groups are also members of one other group each, always one
    with a lower number, so nesting never forms a cycle;
  - with --department D, a department of D people: the groups of DEPARTMENT_TREE below (a
    top group cn=Engineering, four divisions, their teams and a few squads, four levels deep,
    plus a guild nested in two divisions), written after the numbered groups. D users chosen
    at random are each a direct member of one team or squad (and about 5% of them of the guild
    too), so exactly D users are in cn=Engineering through nesting, and nobody else is. The
    names hold characters a DN must escape (`,` `+` `;` `"` `<` `>`, a leading `#`), brackets
    and non-ASCII letters (such DNs and values are written base64, `dn::`), as real
    directories have them.

The numbered output is the same with or without --department (the department draws from its
own random sequence), so a directory with a department is the one without plus the
department's groups and the department's users' extra memberOf values.

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
With --department, 30% of the additions and removals are to and from the department's teams
and squads (so that some people join or leave the department through a nested group). They
are consistent when applied in order and never empty a group (groupOfNames needs a
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


# The department of --department: (name, parent names), parents first. Users are placed in the
# groups without children (teams and squads), the guild aside.
DEPARTMENT_TREE = [
    ("Engineering", ()),
    ("Platform & Infrastructure", ("Engineering",)),
    ("Product, Web", ("Engineering",)),
    ("Data + ML", ("Engineering",)),
    ("Security (CISO Office)", ("Engineering",)),
    ("Platform Team 1", ("Platform & Infrastructure",)),
    ("Platform Team 2", ("Platform & Infrastructure",)),
    ("Platform Team 3", ("Platform & Infrastructure",)),
    ("SRE; On-Call", ("Platform & Infrastructure",)),
    ("Web Team 1", ("Product, Web",)),
    ("Web Team 2", ("Product, Web",)),
    ('Web "Checkout"', ("Product, Web",)),
    ("Mobile (iOS + Android)", ("Product, Web",)),
    ("Data Team 1", ("Data + ML",)),
    ("Data Team 2", ("Data + ML",)),
    ("#ML-Ops", ("Data + ML",)),
    ("Équipe Données", ("Data + ML",)),
    ("Security <Red Team>", ("Security (CISO Office)",)),
    ("Security Team 2", ("Security (CISO Office)",)),
    ("Platform Team 1 / Squad A", ("Platform Team 1",)),
    ("Platform Team 1 / Squad B", ("Platform Team 1",)),
    ("Web Team 1 / Squad A", ("Web Team 1",)),
    ("Guild: Rust", ("Platform & Infrastructure", "Data + ML")),
]
DEPARTMENT_GUILD = "Guild: Rust"
# Share of the department's people also in the guild.
GUILD_SHARE = 0.05
# Share of the membership changes (--changes) made to the department's teams, with --department.
DEPARTMENT_CHANGE_SHARE = 0.3


def dn_escape(value):
    """An attribute value for a DN's string form (RFC 4514 section 2.4)."""
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;' or (i == 0 and c in "# ") or (i == len(value) - 1 and c == " "):
            out.append("\\" + c)
        else:
            out.append(c)
    return "".join(out)


class Department:
    """The department tree of --department D and its people, its groups numbered M+1, M+2, ...
    after the M numbered groups, in DEPARTMENT_TREE order."""

    def __init__(self, args):
        rng = random.Random(f"{args.seed}/department")
        if args.department > args.users:
            sys.exit("gen_directory.py: --department cannot exceed --users")
        names = [name for name, _ in DEPARTMENT_TREE]
        self.first = args.groups + 1
        self.ids = {name: self.first + k for k, name in enumerate(names)}
        self.names = {i: name for name, i in self.ids.items()}
        self.dn = {
            i: f"cn={dn_escape(name)},ou=Groups,{args.base}" for name, i in self.ids.items()
        }
        # child id -> parent ids
        self.parents = {
            self.ids[name]: [self.ids[p] for p in parents] for name, parents in DEPARTMENT_TREE
        }
        has_children = {p for ps in self.parents.values() for p in ps}
        guild = self.ids[DEPARTMENT_GUILD]
        self.leaves = [i for i in self.names if i not in has_children and i != guild]
        # user index -> department group ids the user is a direct member of
        self.direct = {}
        for user in rng.sample(range(1, args.users + 1), args.department):
            groups = [rng.choice(self.leaves)]
            if rng.random() < GUILD_SHARE:
                groups.append(guild)
            self.direct[user] = groups


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
        s += ldif_value("memberOf", dn)
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
    dept = Department(args) if args.department else None
    if dept:
        gdn += [dept.dn[i] for i in sorted(dept.names)]
    members = [[] for _ in range(len(gdn))]
    if dept:
        # The department's groups list their child groups first, then their people.
        for child, parents in dept.parents.items():
            for p in parents:
                members[p].append(gdn[child])

    out.add(base_entries(base))
    for i, gs in enumerate(user_groups, start=1):
        uid = user_name(i)
        dn = f"uid={uid},ou=People,{base}"
        for g in gs:
            members[g].append(dn)
        ds = dept.direct.get(i, ()) if dept else ()
        for g in ds:
            members[g].append(dn)
        out.add(
            user_entry(
                base, uid, args.password, domain, [gdn[g] for g in sorted(gs) + sorted(ds)]
            )
        )
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
    if dept:
        for g in sorted(dept.names):
            s = ldif_value("dn", gdn[g]) + "objectClass: top\nobjectClass: groupOfNames\n"
            s += ldif_value("cn", dept.names[g])
            s += "".join(ldif_value("memberOf", gdn[p]) for p in dept.parents[g])
            if members[g]:
                s += "".join(ldif_value("member", m) for m in members[g])
            else:
                s += "member:\n"
            out.add(s + "\n")


def write_changes(args, out):
    """C change records against the directory the same arguments generate."""
    base = args.base
    domain = mail_domain(base)
    user_groups, parent = build(args)
    dept = Department(args) if args.department else None
    rng = random.Random(f"{args.seed}/changes")

    def udn(uid):
        return f"uid={uid},ou=People,{base}"

    def gdn(g):
        if g > args.groups:
            return dept.dn[g]
        return f"cn={group_name(g)},ou=Groups,{base}"

    # Membership as it stands after the changes so far.
    groups_of = {user_name(i): set(gs) for i, gs in enumerate(user_groups, start=1)}
    size = [0] * (args.groups + 1 + (len(dept.names) if dept else 0))
    for gs in user_groups:
        for g in gs:
            size[g] += 1
    for child, p in parent.items():
        size[p] += 1
    # The people of each department team (with --department), for removals from a team.
    team_members = {}
    if dept:
        team_members = {g: set() for g in dept.leaves}
        for i, gs in dept.direct.items():
            groups_of[user_name(i)].update(gs)
            for g in gs:
                size[g] += 1
                if g in team_members:
                    team_members[g].add(user_name(i))
        for child, parents in dept.parents.items():
            for p in parents:
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
        return (
            ldif_value("dn", gdn(g))
            + f"changetype: modify\n{op}: member\n"
            + ldif_value("member", udn(uid))
            + "-\n\n"
        )

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
                if g in team_members:
                    team_members[g].discard(uid)
            remove_alive(uid)
            out.add(f"dn: {udn(uid)}\nchangetype: delete\n\n")
        elif r < 0.55:
            if not alive:
                continue
            uid = rng.choice(alive)
            if dept and rng.random() < DEPARTMENT_CHANGE_SHARE:
                g = rng.choice(dept.leaves)
            else:
                g = rng.randint(1, args.groups)
            if g in groups_of[uid]:
                continue
            groups_of[uid].add(g)
            size[g] += 1
            if g in team_members:
                team_members[g].add(uid)
            out.add(modify(g, "add", uid))
        elif dept and rng.random() < DEPARTMENT_CHANGE_SHARE:
            # Someone leaves a department team.
            g = rng.choice(dept.leaves)
            if size[g] <= 1 or not team_members[g]:
                continue
            uid = rng.choice(sorted(team_members[g]))
            groups_of[uid].discard(g)
            team_members[g].discard(uid)
            size[g] -= 1
            out.add(modify(g, "delete", uid))
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
            if g in team_members:
                team_members[g].discard(uid)
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
    p.add_argument(
        "--department",
        type=int,
        default=0,
        metavar="D",
        help="add a nested department (cn=Engineering) of D people (0: none)",
    )
    p.add_argument("--password", default="password", help="every user's password (password)")
    p.add_argument(
        "--changes",
        type=int,
        metavar="C",
        help="print C change records for ldapmodify instead of the directory",
    )
    args = p.parse_args()
    for name in ("users", "groups", "groups_per_user", "nested", "department"):
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
