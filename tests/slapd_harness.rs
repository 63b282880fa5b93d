//! The throwaway OpenLDAP server of `tests/support/slapd.rs`: it starts, stops, survives a
//! kill, loads in bulk, speaks TLS, enforces its limits, and its ACLs and overlay behave as
//! the LDAP source's tests expect.

mod support;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use support::slapd::{
    group_dn, group_of_names_ldif, group_of_unique_names_ldif, posix_group_ldif, user_dn,
    user_ldif, Slapd, SlapdOptions,
};

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// The values of `attr` in ldapsearch -LLL output.
fn values<'a>(ldif: &'a str, attr: &str) -> Vec<&'a str> {
    let prefix = format!("{attr}: ");
    ldif.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

#[test]
fn starts_and_stops() {
    let started = Instant::now();
    let mut slapd = Slapd::start();
    // Timings are reported, not judged: a busy machine is not a broken harness.
    eprintln!("slapd start-up: {:?}", started.elapsed());
    assert!(slapd.pid().is_some());
    assert!(slapd.url.starts_with("ldap://127.0.0.1:"));
    assert!(slapd.ldaps_url.is_none() && slapd.ca_file.is_none());

    let out = slapd.search(&slapd.base_dn, "(objectClass=organizationalUnit)", &["ou"]);
    let mut ous = values(&out, "ou");
    ous.sort();
    assert_eq!(ous, ["Groups", "People", "Services"]);

    let port = slapd.port;
    slapd.stop();
    assert_eq!(slapd.pid(), None);
    assert!(!port_open(port), "port {port} still open after stop");
    assert!(slapd.log().contains("slapd starting"));
}

#[test]
fn online_groups_give_member_of_and_follow_deletes_and_renames() {
    let slapd = Slapd::start();
    let b = slapd.base_dn.clone();
    let mut ldif = String::new();
    for uid in ["alice", "bob", "carol"] {
        ldif.push_str(&user_ldif(&b, uid, &format!("{uid}-pw")));
    }
    ldif.push_str(&group_of_names_ldif(
        &b,
        "devs",
        &[user_dn(&b, "alice"), user_dn(&b, "bob")],
    ));
    // Nested: devs is a member of staff.
    ldif.push_str(&group_of_names_ldif(
        &b,
        "staff",
        &[group_dn(&b, "devs"), user_dn(&b, "carol")],
    ));
    ldif.push_str(&group_of_names_ldif(&b, "nobody", &[]));
    ldif.push_str(&group_of_unique_names_ldif(
        &b,
        "auditors",
        &[user_dn(&b, "bob")],
    ));
    ldif.push_str(&posix_group_ldif(&b, "unix", 5000, &["alice", "carol"]));
    slapd.add_ldif(&ldif);

    let alice = slapd.search(&user_dn(&b, "alice"), "(objectClass=*)", &["memberOf"]);
    // memberOf lists direct memberships only: staff comes through devs.
    assert_eq!(values(&alice, "memberOf"), [group_dn(&b, "devs")]);
    let devs = slapd.search(&group_dn(&b, "devs"), "(objectClass=*)", &["memberOf"]);
    assert_eq!(values(&devs, "memberOf"), [group_dn(&b, "staff")]);
    // Only groupOfNames counts: bob is in auditors (groupOfUniqueNames) too.
    let bob = slapd.search(&user_dn(&b, "bob"), "(objectClass=*)", &["memberOf"]);
    assert_eq!(values(&bob, "memberOf"), [group_dn(&b, "devs")]);

    let members = slapd.search(
        &format!("ou=Groups,{b}"),
        "(memberUid=carol)",
        &["cn", "gidNumber"],
    );
    assert_eq!(values(&members, "cn"), ["unix"]);
    // The empty group holds the null DN as its one member.
    let nobody = slapd.search(&group_dn(&b, "nobody"), "(objectClass=*)", &["member"]);
    assert!(nobody.lines().any(|l| l == "member:"), "{nobody}");

    // Deleting a user takes it out of its groups (memberof refint).
    slapd.delete(&user_dn(&b, "bob"));
    let devs = slapd.search(&group_dn(&b, "devs"), "(objectClass=*)", &["member"]);
    assert_eq!(values(&devs, "member"), [user_dn(&b, "alice")]);
    // A membership change online updates the user's memberOf.
    slapd.modify_ldif(&support::slapd::member_change_ldif(
        &group_dn(&b, "staff"),
        true,
        &[user_dn(&b, "alice")],
    ));
    let alice = slapd.search(&user_dn(&b, "alice"), "(objectClass=*)", &["memberOf"]);
    let mut groups = values(&alice, "memberOf");
    groups.sort();
    assert_eq!(groups, [group_dn(&b, "devs"), group_dn(&b, "staff")]);

    // Renaming a user renames it in its groups.
    slapd.modify_ldif(&format!(
        "dn: {}\nchangetype: modrdn\nnewrdn: uid=alicia\ndeleteoldrdn: 1\n",
        user_dn(&b, "alice")
    ));
    let devs = slapd.search(&group_dn(&b, "devs"), "(objectClass=*)", &["member"]);
    assert_eq!(values(&devs, "member"), [user_dn(&b, "alicia")]);
}

#[test]
fn users_bind_with_their_password_and_see_only_themselves() {
    let slapd = Slapd::start();
    let b = slapd.base_dn.clone();
    slapd.add_ldif(&(user_ldif(&b, "alice", "s3cret pw") + &user_ldif(&b, "bob", "other")));
    let alice = user_dn(&b, "alice");

    let ok = slapd.whoami(&alice, "s3cret pw");
    assert!(ok.success(), "{ok:?}");
    assert_eq!(ok.stdout.trim(), format!("dn:{alice}"));
    let wrong = slapd.whoami(&alice, "wrong");
    assert_eq!(wrong.status, 49, "{wrong:?}");
    assert!(wrong.stderr.contains("Invalid credentials"));
    assert_eq!(slapd.whoami(&user_dn(&b, "nobody"), "x").status, 49);
    let svc = slapd.whoami(&slapd.service_dn, &slapd.service_password);
    assert!(svc.success(), "{svc:?}");

    // A user reads their own entry, and nothing else.
    let own = slapd.search_as(&alice, "s3cret pw", &alice, "(objectClass=*)", &["mail"]);
    assert!(own.success(), "{own:?}");
    assert_eq!(values(&own.stdout, "mail"), ["alice@example.com"]);
    let other = slapd.search_as(&alice, "s3cret pw", &b, "(uid=bob)", &["uid"]);
    assert!(!other.stdout.contains("uid=bob"), "{other:?}");
    // Anonymous sees nothing.
    let anon = slapd.tool(
        "ldapsearch",
        &["-x", "-LLL", "-H", &slapd.url, "-b", &b, "(objectClass=*)"],
    );
    assert!(anon.stdout.trim().is_empty(), "{anon:?}");
    // The service account reads everything but password hashes.
    let svc = slapd.search(&alice, "(objectClass=*)", &["uid", "userPassword"]);
    assert!(
        svc.contains("uid: alice") && !svc.contains("userPassword"),
        "{svc}"
    );
}

#[test]
fn killed_server_closes_its_port_and_restarts_with_its_data() {
    let mut slapd = Slapd::start();
    let b = slapd.base_dn.clone();
    slapd.add_ldif(&user_ldif(&b, "alice", "pw"));
    let (port, pid) = (slapd.port, slapd.pid().unwrap());

    slapd.kill();
    assert_eq!(slapd.pid(), None);
    assert!(!port_open(port), "port {port} still open after kill");
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let down = slapd.whoami(&user_dn(&b, "alice"), "pw");
    assert_eq!(down.status, 255, "{down:?}");

    slapd.restart();
    assert_eq!(slapd.port, port);
    assert_ne!(slapd.pid(), Some(pid));
    assert!(slapd.whoami(&user_dn(&b, "alice"), "pw").success());
    slapd.restart();
    assert!(slapd.whoami(&user_dn(&b, "alice"), "pw").success());
}

#[test]
fn bulk_load_of_2000_users() {
    let base = "dc=example,dc=com";
    // Base entries in the LDIF are skipped: the harness writes its own.
    let mut ldif = format!(
        "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: x\n\n"
    );
    let members: Vec<String> = (0..2000)
        .map(|i| user_dn(base, &format!("user{i:06}")))
        .collect();
    for i in 0..2000 {
        let mut user = user_ldif(base, &format!("user{i:06}"), "pw");
        // slapadd does not run the memberof overlay: memberOf comes from the LDIF.
        user.insert_str(
            user.len() - 1,
            &format!("memberOf: {}\n", group_dn(base, "everyone")),
        );
        ldif.push_str(&user);
    }
    ldif.push_str(&group_of_names_ldif(base, "everyone", &members));

    let started = Instant::now();
    let slapd = Slapd::start_with_ldif(SlapdOptions::default(), &ldif);
    eprintln!("slapd bulk start: {:?}", started.elapsed());

    let all = slapd.search(
        &format!("ou=People,{base}"),
        "(objectClass=inetOrgPerson)",
        &["1.1"],
    );
    assert_eq!(all.lines().filter(|l| l.starts_with("dn: ")).count(), 2000);
    let one = slapd.search(
        &user_dn(base, "user001999"),
        "(objectClass=*)",
        &["memberOf"],
    );
    assert_eq!(values(&one, "memberOf"), [group_dn(base, "everyone")]);
    let group = slapd.search(&group_dn(base, "everyone"), "(objectClass=*)", &["member"]);
    assert_eq!(values(&group, "member").len(), 2000);
    assert!(slapd.whoami(&user_dn(base, "user000042"), "pw").success());
}

#[test]
fn tls_by_starttls_and_ldaps() {
    let slapd = Slapd::start_with(SlapdOptions {
        tls: true,
        ..SlapdOptions::default()
    });
    let ca = slapd.ca_file.clone().expect("a CA file");
    let ldaps = slapd.ldaps_url.clone().expect("an ldaps URL");
    let ldapsearch = |url: &str, extra: &[&str], ca: Option<&std::path::Path>| {
        let mut cmd = Command::new("ldapsearch");
        cmd.args(["-x", "-LLL", "-H", url])
            .args(extra)
            .args(["-D", &slapd.service_dn, "-w", &slapd.service_password])
            .args(["-b", &slapd.base_dn, "-s", "base", "1.1"]);
        match ca {
            Some(ca) => cmd.env("LDAPTLS_CACERT", ca),
            None => cmd.env_remove("LDAPTLS_CACERT"),
        };
        cmd.output().expect("run ldapsearch")
    };

    let starttls = ldapsearch(&slapd.url, &["-ZZ"], Some(&ca));
    assert!(
        starttls.status.success(),
        "{}",
        String::from_utf8_lossy(&starttls.stderr)
    );
    let over_ldaps = ldapsearch(&ldaps, &[], Some(&ca));
    assert!(
        over_ldaps.status.success(),
        "{}",
        String::from_utf8_lossy(&over_ldaps.stderr)
    );
    // Without the test CA the certificate is not trusted.
    assert!(!ldapsearch(&slapd.url, &["-ZZ"], None).status.success());
    assert!(!ldapsearch(&ldaps, &[], None).status.success());
    // Plain LDAP still works on the StartTLS port.
    assert!(ldapsearch(&slapd.url, &[], None).status.success());
}

#[test]
fn size_limits_apply_to_the_service_account_only() {
    let slapd = Slapd::start_with(SlapdOptions {
        size_limit: Some(3),
        ..SlapdOptions::default()
    });
    let b = slapd.base_dn.clone();
    let users: String = (0..5)
        .map(|i| user_ldif(&b, &format!("u{i}"), "pw"))
        .collect();
    slapd.add_ldif(&users);
    let people = format!("ou=People,{b}");

    let capped = slapd.search_as(
        &slapd.service_dn,
        &slapd.service_password,
        &people,
        "(uid=*)",
        &["uid"],
    );
    assert_eq!(capped.status, 4, "{capped:?}");
    assert!(capped.stderr.contains("Size limit exceeded"), "{capped:?}");
    assert_eq!(values(&capped.stdout, "uid").len(), 3);
    // Paging does not get around it: the limit caps the total.
    let paged = slapd.tool(
        "ldapsearch",
        &[
            "-x",
            "-LLL",
            "-H",
            &slapd.url,
            "-D",
            &slapd.service_dn,
            "-w",
            &slapd.service_password,
            "-E",
            "pr=2/noprompt",
            "-b",
            &people,
            "(uid=*)",
            "uid",
        ],
    );
    assert_eq!(paged.status, 4, "{paged:?}");
    // The rootdn has no limit.
    let admin = slapd.search_as(
        &slapd.admin_dn,
        &slapd.admin_password,
        &people,
        "(uid=*)",
        &["uid"],
    );
    assert!(admin.success(), "{admin:?}");
    assert_eq!(values(&admin.stdout, "uid").len(), 5);
}

#[test]
fn paged_limits() {
    let slapd = Slapd::start_with(SlapdOptions {
        size_limit: Some(3),
        paged_limit: Some(2),
        paged_unlimited: true,
        ..SlapdOptions::default()
    });
    let b = slapd.base_dn.clone();
    let users: String = (0..5)
        .map(|i| user_ldif(&b, &format!("u{i}"), "pw"))
        .collect();
    slapd.add_ldif(&users);
    let people = format!("ou=People,{b}");
    let paged = |page: &str| {
        slapd.tool(
            "ldapsearch",
            &[
                "-x",
                "-LLL",
                "-H",
                &slapd.url,
                "-D",
                &slapd.service_dn,
                "-w",
                &slapd.service_password,
                "-E",
                page,
                "-b",
                &people,
                "(uid=*)",
                "uid",
            ],
        )
    };

    // Pages within the page limit may return everything in total.
    let all = paged("pr=2/noprompt");
    assert!(all.success(), "{all:?}");
    assert_eq!(values(&all.stdout, "uid").len(), 5);
    // A bigger page is refused outright, not shrunk.
    let too_big = paged("pr=10/noprompt");
    assert_eq!(too_big.status, 11, "{too_big:?}");
    assert!(
        too_big.stderr.contains("illegal pagedResults page size"),
        "{too_big:?}"
    );
    // Plain searches keep the size limit.
    let plain = slapd.search_as(
        &slapd.service_dn,
        &slapd.service_password,
        &people,
        "(uid=*)",
        &["uid"],
    );
    assert_eq!(plain.status, 4, "{plain:?}");
}

/// Runs scripts/ldap/gen_directory.py and returns its output.
fn gen_directory(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ldap/gen_directory.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("run python3 scripts/ldap/gen_directory.py");
    assert!(
        out.status.success(),
        "gen_directory.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 LDIF")
}

/// The sorted memberOf values of every user, by uid, as the service account sees them.
fn member_of_by_user(slapd: &Slapd) -> Vec<(String, Vec<String>)> {
    let out = slapd.tool(
        "ldapsearch",
        &[
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &slapd.url,
            "-D",
            &slapd.service_dn,
            "-w",
            &slapd.service_password,
            "-E",
            "pr=1000/noprompt",
            "-b",
            &format!("ou=People,{}", slapd.base_dn),
            "(objectClass=inetOrgPerson)",
            "uid",
            "memberOf",
        ],
    );
    assert!(out.success(), "{out:?}");
    let mut users = Vec::new();
    for entry in out.stdout.split("\n\n") {
        let Some(uid) = values(entry, "uid").first().map(|s| s.to_string()) else {
            continue;
        };
        let mut groups: Vec<String> = values(entry, "memberOf")
            .iter()
            .map(|s| s.to_string())
            .collect();
        groups.sort();
        users.push((uid, groups));
    }
    users.sort();
    users
}

#[test]
fn generated_directory_loads_offline_with_the_member_of_the_overlay_would_give() {
    let args = [
        "--users",
        "300",
        "--groups",
        "30",
        "--groups-per-user",
        "3",
        "--nested",
        "5",
    ];
    let ldif = gen_directory(&args);
    let changes = gen_directory(&[&args[..], &["--changes", "200"]].concat());

    // Offline: memberOf as the generator wrote it.
    let offline = Slapd::start_with_ldif(SlapdOptions::default(), &ldif);
    assert_eq!(member_of_by_user(&offline).len(), 300);
    assert!(offline
        .whoami(&user_dn(&offline.base_dn, "user000300"), "password")
        .success());
    offline.modify_ldif(&changes);

    // Online: the same users without memberOf, then the groups, as a directory is built;
    // the overlay computes memberOf.
    let online = Slapd::start();
    let without_member_of: String = ldif
        .lines()
        .filter(|l| !l.starts_with("memberOf: "))
        .map(|l| format!("{l}\n"))
        .collect();
    let records: Vec<&str> = without_member_of
        .split("\n\n")
        .filter(|r| r.starts_with("dn: uid=") || r.starts_with("dn: cn=group"))
        .collect();
    online.add_ldif(&(records.join("\n\n") + "\n"));
    online.modify_ldif(&changes);

    // Same memberships after the same changes, with the overlay or without it.
    assert_eq!(member_of_by_user(&offline), member_of_by_user(&online));
}
