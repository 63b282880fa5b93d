//! An OpenLDAP server for tests: a throwaway `slapd` per test, listening on 127.0.0.1 only.
//!
//! Each [`Slapd`] owns a temp dir holding its cn=config (`slapd.d/`), its mdb database
//! (`data/`), its TLS files (`tls/`) and its log (`slapd.log`). The directory is laid out as:
//!
//! ```text
//! BASE                                    dcObject + organization
//! ├── ou=People                           users: uid=NAME (inetOrgPerson)
//! ├── ou=Groups                           groups: cn=NAME (groupOfNames, groupOfUniqueNames, posixGroup)
//! └── ou=Services
//!     └── cn=idsync                       the read-only service account the sync binds as
//! ```
//!
//! Access: the rootdn (`admin_dn`) may do anything; the service account reads every entry and
//! attribute except `userPassword` (a sync never needs password hashes, and real directories
//! do not give them out); a user may bind and read their own entry; anonymous may only bind.
//!
//! The memberof overlay keeps `memberOf` on the members of `groupOfNames` groups (`member`),
//! and removes dangling references when an entry is deleted. It runs only for online writes
//! ([`Slapd::add_ldif`], [`Slapd::modify_ldif`]): a bulk load with
//! [`Slapd::start_with_ldif`] goes through `slapadd`, which stores `memberOf` only where the
//! LDIF itself carries it (`scripts/ldap/gen_directory.py` writes it for that reason).
//!
//! `slapd` runs in the foreground (`-d`) as a child of the test process, so it is reaped and
//! never outlives its [`Slapd`]; `Drop` kills it. Should the test process itself die without
//! unwinding (a timeout's SIGKILL), the next test process to start a server kills what it left.
//!
//! `IDSYNC_TEST_SLAPD_DEBUG` sets slapd's debug level (default `stats`: one log line per
//! operation, which shows the filters, attributes and controls a client sent);
//! [`Slapd::log`] reads the log.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread::sleep;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// How long a server gets to answer its first search after `slapd` is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits after SIGTERM before it sends SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Temp dirs of servers are named with this prefix, which stale-server cleanup looks for.
const DIR_PREFIX: &str = "idsync-slapd-";
const INSTALL_HINT: &str =
    "is the Debian package slapd installed? scripts/setup.sh installs it (with ldap-utils)";

/// How to configure a server.
#[derive(Debug, Clone)]
pub struct SlapdOptions {
    /// The database suffix.
    pub base_dn: String,
    /// Size limit (soft and hard) for every identity but the rootdn; `None`: unlimited.
    /// slapd applies it to paged searches too, as a cap on the total across all pages,
    /// unless `paged_unlimited` is set.
    pub size_limit: Option<u32>,
    /// Largest page size accepted in a paged search (`size.pr`). A bigger page size is
    /// refused with adminLimitExceeded (11, "illegal pagedResults page size"), not shrunk.
    pub paged_limit: Option<u32>,
    /// Lets paged searches return any number of entries in total (`size.prtotal=unlimited`)
    /// while `size_limit` still caps plain searches: the usual production setup.
    pub paged_unlimited: bool,
    /// Generate a CA and a server certificate for 127.0.0.1/localhost, offer StartTLS on
    /// `url` and listen on `ldaps_url` too.
    pub tls: bool,
    /// The memberof overlay (on `groupOfNames`/`member`).
    pub memberof: bool,
    /// The syncprov overlay, with a session log: RFC 4533 content synchronisation, which
    /// incremental runs then use (deletions arrive as entryUUIDs).
    pub syncprov: bool,
}

impl Default for SlapdOptions {
    fn default() -> Self {
        SlapdOptions {
            base_dn: "dc=example,dc=com".to_string(),
            size_limit: None,
            paged_limit: None,
            paged_unlimited: false,
            tls: false,
            memberof: true,
            syncprov: false,
        }
    }
}

/// What an LDAP command-line tool answered.
#[derive(Debug, Clone)]
pub struct ToolOutput {
    /// The exit status: the LDAP result code for ldapsearch and friends (4: size limit
    /// exceeded, 11: admin limit exceeded, 32: no such object, 49: invalid credentials),
    /// 255 when the server could not be reached, -1 when killed by a signal.
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl ToolOutput {
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

/// A running (or stopped) throwaway slapd.
pub struct Slapd {
    /// `ldap://127.0.0.1:PORT` (StartTLS is offered there when `tls` is on).
    pub url: String,
    /// `ldaps://127.0.0.1:PORT2` when `tls` is on.
    pub ldaps_url: Option<String>,
    pub port: u16,
    pub ldaps_port: Option<u16>,
    pub base_dn: String,
    /// The rootdn of the database: not subject to ACLs or limits.
    pub admin_dn: String,
    pub admin_password: String,
    /// `cn=idsync,ou=Services,BASE`: read-only, subject to the size limits.
    pub service_dn: String,
    pub service_password: String,
    /// The CA that signed the server certificate, when `tls` is on.
    pub ca_file: Option<PathBuf>,
    options: SlapdOptions,
    child: Option<Child>,
    run_as_openldap: bool,
    // Removed on drop, once `Drop::drop` has killed the process.
    dir: tempfile::TempDir,
}

impl Slapd {
    /// A server with the default options and only the base entries.
    pub fn start() -> Slapd {
        Slapd::start_with(SlapdOptions::default())
    }

    /// A server with only the base entries.
    pub fn start_with(options: SlapdOptions) -> Slapd {
        Slapd::start_with_ldif(options, "")
    }

    /// A server bulk-loaded with `ldif` (add records, no `changetype`) by `slapadd` before it
    /// starts: much faster than `add_ldif` for thousands of entries, but the memberof overlay
    /// does not run, so users get only the `memberOf` values the LDIF gives them. Tests that
    /// rely on the overlay add their groups with [`Slapd::add_ldif`].
    ///
    /// The harness writes the base entries (BASE, ou=People, ou=Groups, ou=Services) and the
    /// service account itself: records for those DNs in `ldif` are skipped, so the output of
    /// `scripts/ldap/gen_directory.py` loads as it is. Records must come parents first.
    pub fn start_with_ldif(options: SlapdOptions, ldif: &str) -> Slapd {
        kill_stale_servers();
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("create a temp dir for slapd");
        fs::write(dir.path().join("owner"), std::process::id().to_string())
            .expect("write the owner file");
        let base_dn = options.base_dn.clone();
        let mut slapd = Slapd {
            url: String::new(),
            ldaps_url: None,
            port: 0,
            ldaps_port: None,
            admin_dn: format!("cn=admin,{base_dn}"),
            admin_password: "admin-secret".to_string(),
            service_dn: format!("cn=idsync,ou=Services,{base_dn}"),
            service_password: "idsync-secret".to_string(),
            base_dn,
            ca_file: None,
            options,
            child: None,
            run_as_openldap: running_as_root(),
            dir,
        };
        if slapd.options.tls {
            slapd.ca_file = Some(generate_certificates(&slapd.dir.path().join("tls")));
        }
        fs::create_dir(slapd.path("data")).expect("create the data dir");
        fs::create_dir(slapd.path("slapd.d")).expect("create the config dir");
        fs::write(slapd.path("config.ldif"), slapd.config_ldif()).expect("write config.ldif");
        slapd.run_checked(
            Command::new("slapadd")
                .args(["-n", "0", "-F"])
                .arg(slapd.path("slapd.d"))
                .arg("-l")
                .arg(slapd.path("config.ldif")),
            "slapadd (cn=config)",
        );

        slapd
            .write_data_ldif(&slapd.path("data.ldif"), ldif)
            .expect("write data.ldif");
        // -q skips consistency checks that cost most of a bulk load's time. It is safe with
        // the single tool thread configured here; with several, slapadd has been seen to
        // crash on groups of more than 2,000 members.
        slapd.run_checked(
            Command::new("slapadd")
                .args(["-q", "-F"])
                .arg(slapd.path("slapd.d"))
                .args(["-b", &slapd.base_dn, "-l"])
                .arg(slapd.path("data.ldif")),
            "slapadd (data)",
        );
        // The LDIF can be large; the database has it now.
        let _ = fs::remove_file(slapd.path("data.ldif"));
        if slapd.run_as_openldap {
            // slapd drops root for openldap, which must own its config, database and key.
            slapd.run_checked(
                Command::new("chown")
                    .args(["-R", "openldap:openldap"])
                    .arg(slapd.dir.path()),
                "chown",
            );
        }

        slapd.spawn_on_free_ports();
        slapd
    }

    /// Adds entries online, as the rootdn (`ldapadd -x`): the memberof overlay runs.
    pub fn add_ldif(&self, ldif: &str) {
        self.admin_tool_with_file("ldapadd", ldif);
    }

    /// Applies an LDIF of change records online, as the rootdn (`ldapmodify -x`): each record
    /// says its `changetype` (add, modify, delete, modrdn).
    pub fn modify_ldif(&self, ldif: &str) {
        self.admin_tool_with_file("ldapmodify", ldif);
    }

    /// Deletes one entry online, as the rootdn.
    pub fn delete(&self, dn: &str) {
        self.modify_ldif(&format!("dn: {dn}\nchangetype: delete\n"));
    }

    /// Searches the subtree under `base` as the service account and returns the LDIF
    /// (`ldapsearch -LLL`, unwrapped lines); panics if the search fails.
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        let out = self.search_as(
            &self.service_dn,
            &self.service_password,
            base,
            filter,
            attrs,
        );
        assert!(
            out.success(),
            "ldapsearch -b {base:?} {filter:?} failed ({}): {}",
            out.status,
            out.stderr
        );
        out.stdout
    }

    /// Searches the subtree under `base` bound as `bind_dn`; a failure is returned.
    pub fn search_as(
        &self,
        bind_dn: &str,
        password: &str,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> ToolOutput {
        let mut args = vec![
            "-x",
            "-LLL",
            "-o",
            "ldif-wrap=no",
            "-H",
            &self.url,
            "-D",
            bind_dn,
            "-w",
            password,
            "-b",
            base,
            filter,
        ];
        args.extend_from_slice(attrs);
        self.tool("ldapsearch", &args)
    }

    /// `ldapwhoami -x` bound as `dn`: success means the password was accepted.
    pub fn whoami(&self, dn: &str, password: &str) -> ToolOutput {
        self.tool(
            "ldapwhoami",
            &["-x", "-H", &self.url, "-D", dn, "-w", password],
        )
    }

    /// Runs an ldap-utils program with `LDAPTLS_CACERT` set to this server's CA (when it has
    /// one). The arguments must name the server (`-H`).
    pub fn tool(&self, program: &str, args: &[&str]) -> ToolOutput {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        if let Some(ca) = &self.ca_file {
            cmd.env("LDAPTLS_CACERT", ca);
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {INSTALL_HINT}"));
        ToolOutput {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stops the server cleanly (SIGTERM) and waits until the process is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server at once (SIGKILL), as a crash would, and waits until it is gone: its
    /// ports are closed when this returns. The database survives (mdb is crash-safe).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, on the same ports and with the same data.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn_on_same_ports();
    }

    /// The process id while the server runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// What slapd logged so far (across restarts).
    pub fn log(&self) -> String {
        fs::read_to_string(self.path("slapd.log")).unwrap_or_default()
    }

    /// The server's temp dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config_ldif(&self) -> String {
        let dir = self.dir.path().display();
        let o = &self.options;
        let base = &self.base_dn;
        let mut s = String::new();
        writeln!(s, "dn: cn=config\nobjectClass: olcGlobal\ncn: config").unwrap();
        writeln!(
            s,
            "olcPidFile: {dir}/slapd.pid\nolcArgsFile: {dir}/slapd.args"
        )
        .unwrap();
        // Debug output goes to slapd.log (-d); nothing to syslog.
        writeln!(s, "olcLogLevel: none").unwrap();
        if o.tls {
            writeln!(
                s,
                "olcTLSCACertificateFile: {dir}/tls/ca.crt\n\
                 olcTLSCertificateFile: {dir}/tls/server.crt\n\
                 olcTLSCertificateKeyFile: {dir}/tls/server.key"
            )
            .unwrap();
        }
        s.push('\n');
        s.push_str(
            "dn: cn=module{0},cn=config\n\
             objectClass: olcModuleList\n\
             cn: module{0}\n\
             olcModulePath: /usr/lib/ldap\n\
             olcModuleLoad: {0}back_mdb\n\
             olcModuleLoad: {1}memberof\n",
        );
        if o.syncprov {
            s.push_str("olcModuleLoad: {2}syncprov\n");
        }
        s.push_str(
            "\n\
             dn: cn=schema,cn=config\n\
             objectClass: olcSchemaConfig\n\
             cn: schema\n\n",
        );
        // nis brings posixGroup/memberUid (and posixAccount).
        for schema in ["core", "cosine", "inetorgperson", "nis"] {
            writeln!(s, "include: file:///etc/ldap/schema/{schema}.ldif\n").unwrap();
        }
        s.push_str(
            "dn: olcDatabase={-1}frontend,cn=config\n\
             objectClass: olcDatabaseConfig\n\
             objectClass: olcFrontendConfig\n\
             olcDatabase: {-1}frontend\n\n\
             dn: olcDatabase={0}config,cn=config\n\
             objectClass: olcDatabaseConfig\n\
             olcDatabase: {0}config\n\
             olcAccess: {0}to * by * none\n\n",
        );
        writeln!(
            s,
            "dn: olcDatabase={{1}}mdb,cn=config\n\
             objectClass: olcDatabaseConfig\n\
             objectClass: olcMdbConfig\n\
             olcDatabase: {{1}}mdb\n\
             olcSuffix: {base}\n\
             olcDbDirectory: {dir}/data\n\
             olcRootDN: {}\n\
             olcRootPW: {}",
            self.admin_dn, self.admin_password
        )
        .unwrap();
        // The map size is only reserved address space; 100k users and 10k groups need
        // well under 1 GiB. No fsync: a killed slapd loses nothing (the pages are in the
        // OS cache), only a machine crash would.
        s.push_str("olcDbMaxSize: 4294967296\nolcDbNoSync: TRUE\n");
        for index in [
            "objectClass eq",
            "uid eq",
            "cn eq",
            "member eq",
            "uniqueMember eq",
            "memberUid eq",
            "memberOf eq",
            "entryUUID eq",
            "entryCSN eq",
        ] {
            writeln!(s, "olcDbIndex: {index}").unwrap();
        }
        // A limits clause that matches replaces the database's size limit for that
        // identity, so it repeats the plain limit next to the paged ones.
        let plain = match o.size_limit {
            Some(n) => format!("size.soft={n} size.hard={n}"),
            None => "size=unlimited".to_string(),
        };
        writeln!(
            s,
            "olcSizeLimit: {}",
            o.size_limit
                .map_or("unlimited".to_string(), |n| n.to_string())
        )
        .unwrap();
        let mut paged = String::new();
        if let Some(n) = o.paged_limit {
            write!(paged, " size.pr={n}").unwrap();
        }
        if o.paged_unlimited {
            paged.push_str(" size.prtotal=unlimited");
        }
        if !paged.is_empty() {
            writeln!(s, "olcLimits: {{0}}* {plain}{paged}").unwrap();
        }
        writeln!(
            s,
            "olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none\n\
             olcAccess: {{1}}to * by dn.exact=\"{}\" read by self read by * none",
            self.service_dn
        )
        .unwrap();
        s.push('\n');
        if o.memberof {
            // refint: deleting or renaming a user or a group updates the other side.
            s.push_str(
                "dn: olcOverlay={0}memberof,olcDatabase={1}mdb,cn=config\n\
                 objectClass: olcOverlayConfig\n\
                 objectClass: olcMemberOf\n\
                 olcOverlay: {0}memberof\n\
                 olcMemberOfRefInt: TRUE\n\
                 olcMemberOfGroupOC: groupOfNames\n\
                 olcMemberOfMemberAD: member\n\
                 olcMemberOfMemberOfAD: memberOf\n\
                 olcMemberOfDangling: ignore\n\n",
            );
        }
        if o.syncprov {
            let index = usize::from(o.memberof);
            writeln!(
                s,
                "dn: olcOverlay={{{index}}}syncprov,olcDatabase={{1}}mdb,cn=config\n\
                 objectClass: olcOverlayConfig\n\
                 objectClass: olcSyncProvConfig\n\
                 olcOverlay: {{{index}}}syncprov\n\
                 olcSpCheckpoint: 100 10\n\
                 olcSpSessionlog: 200000\n"
            )
            .unwrap();
        }
        s
    }

    /// Writes the harness's base entries followed by the caller's records, minus any record
    /// for a DN the harness writes itself, to `path`. The records are copied as they are:
    /// a benchmark LDIF runs to hundreds of megabytes.
    fn write_data_ldif(&self, path: &Path, ldif: &str) -> std::io::Result<()> {
        let base = &self.base_dn;
        let (rdn_attr, rdn_value) = first_rdn(base);
        let mut head = format!("dn: {base}\n");
        match rdn_attr.as_str() {
            "dc" => {
                head.push_str("objectClass: dcObject\nobjectClass: organization\n");
                head.push_str(&ldif_line("dc", &rdn_value));
                head.push_str(&ldif_line("o", &rdn_value));
            }
            "o" => {
                head.push_str("objectClass: organization\n");
                head.push_str(&ldif_line("o", &rdn_value));
            }
            "ou" => {
                head.push_str("objectClass: organizationalUnit\n");
                head.push_str(&ldif_line("ou", &rdn_value));
            }
            other => panic!("base DN {base:?}: its first RDN must be dc=, o= or ou=, not {other}="),
        }
        head.push('\n');
        for ou in ["People", "Groups", "Services"] {
            writeln!(
                head,
                "dn: ou={ou},{base}\nobjectClass: organizationalUnit\nou: {ou}\n"
            )
            .unwrap();
        }
        writeln!(
            head,
            "dn: {}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n\
             cn: idsync\ndescription: read-only account of the identity sync\n{}",
            self.service_dn,
            ldif_line("userPassword", &self.service_password)
        )
        .unwrap();

        let ours: HashSet<String> = [
            base.to_string(),
            format!("ou=People,{base}"),
            format!("ou=Groups,{base}"),
            format!("ou=Services,{base}"),
            self.service_dn.clone(),
        ]
        .iter()
        .map(|dn| loose_dn(dn))
        .collect();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, fs::File::create(path)?);
        out.write_all(head.as_bytes())?;
        for record in ldif_records(ldif) {
            // "version: 1" may open an LDIF, and only there: the records now follow ours.
            let record = match record.strip_prefix("version:") {
                Some(rest) => rest.split_once('\n').map_or("", |(_, r)| r),
                None => record,
            };
            match record_dn(record) {
                Some(dn) if ours.contains(&loose_dn(&dn)) => continue,
                None if record
                    .lines()
                    .all(|l| l.trim().is_empty() || l.starts_with('#')) =>
                {
                    continue
                }
                _ => {}
            }
            out.write_all(record.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }

    fn run_checked(&self, cmd: &mut Command, what: &str) {
        let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
            panic!("slapd did not start: cannot run {what}: {e}; {INSTALL_HINT}")
        });
        if !out.status.success() {
            panic!(
                "slapd did not start: {what} failed ({}):\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    fn admin_tool_with_file(&self, program: &str, ldif: &str) {
        // A file rather than stdin: these tools print a line per entry, and a pipe left
        // unread while the LDIF is still being written would block both sides.
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let file = self.path(&format!(
            "{program}-{}.ldif",
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&file, ldif).expect("write an LDIF file");
        let out = self.tool(
            program,
            &[
                "-x",
                "-H",
                &self.url,
                "-D",
                &self.admin_dn,
                "-w",
                &self.admin_password,
                "-f",
                file.to_str().expect("temp path is UTF-8"),
            ],
        );
        let _ = fs::remove_file(&file);
        assert!(
            out.success(),
            "{program} failed ({}): {}\n{}\nLDIF:\n{}",
            out.status,
            out.stderr.trim(),
            last_lines(&out.stdout, 5),
            first_chars(ldif, 2000)
        );
    }

    fn listen_urls(&self) -> String {
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.ldaps_port {
            write!(urls, " ldaps://127.0.0.1:{p}/").unwrap();
        }
        urls
    }

    fn set_ports(&mut self, port: u16, ldaps_port: Option<u16>) {
        self.port = port;
        self.url = format!("ldap://127.0.0.1:{port}");
        self.ldaps_port = ldaps_port;
        self.ldaps_url = ldaps_port.map(|p| format!("ldaps://127.0.0.1:{p}"));
    }

    fn spawn_on_free_ports(&mut self) {
        // A port found free can be taken by someone else before slapd binds it: try others.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let ldaps = self.options.tls.then(|| loop {
                let p = free_port();
                if p != port {
                    break p;
                }
            });
            self.set_ports(port, ldaps);
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if e.addr_in_use => last = e.message,
                Err(e) => panic!("{}", e.message),
            }
        }
        panic!("{last}");
    }

    fn spawn_on_same_ports(&mut self) {
        // The ports were ours a moment ago; give the kernel or a squatter a few seconds.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                Err(e) if e.addr_in_use && Instant::now() < deadline => {
                    sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("{}", e.message),
            }
        }
    }

    fn spawn_and_wait(&mut self) -> Result<(), StartError> {
        let log_path = self.path("slapd.log");
        let log_start = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open slapd.log");
        let level =
            std::env::var("IDSYNC_TEST_SLAPD_DEBUG").unwrap_or_else(|_| "stats".to_string());
        let mut cmd = Command::new("slapd");
        cmd.arg("-F")
            .arg(self.path("slapd.d"))
            .args(["-h", &self.listen_urls()])
            // -d keeps slapd in the foreground, our child, logging to stderr.
            .args(["-d", &level])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        if self.run_as_openldap {
            cmd.args(["-u", "openldap", "-g", "openldap"]);
        }
        let child = cmd.spawn().map_err(|e| StartError {
            addr_in_use: false,
            message: format!("slapd did not start: cannot run slapd: {e}; {INSTALL_HINT}"),
        })?;
        let pid = child.id();
        self.child = Some(child);
        let _ = fs::write(self.path("slapd.child"), pid.to_string());

        let started = Instant::now();
        loop {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = self.log_since(log_start);
                return Err(StartError {
                    addr_in_use: log.contains("Address already in use"),
                    message: format!(
                        "slapd did not start: it exited ({status}); {INSTALL_HINT}\n\
                         slapd {}\n--- slapd.log ---\n{log}",
                        self.listen_urls()
                    ),
                });
            }
            if self.answers() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                self.kill();
                return Err(StartError {
                    addr_in_use: false,
                    message: format!(
                        "slapd did not start: no answer on {} within {START_TIMEOUT:?}; \
                         {INSTALL_HINT}\n--- slapd.log ---\n{}",
                        self.url,
                        self.log_since(log_start)
                    ),
                });
            }
            sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server answers a root DSE search. A TCP connect first keeps the probe
    /// cheap while slapd is still loading.
    fn answers(&self) -> bool {
        let addr = ([127, 0, 0, 1], self.port).into();
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return false;
        }
        self.tool(
            "ldapsearch",
            &[
                "-x",
                "-H",
                &self.url,
                "-o",
                "nettimeout=2",
                "-b",
                "",
                "-s",
                "base",
                "-LLL",
                "1.1",
            ],
        )
        .success()
    }

    fn log_since(&self, offset: u64) -> String {
        let log = self.log();
        log.get(offset as usize..).unwrap_or(&log).to_string()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        // The data is thrown away with the dir, so there is nothing to shut down cleanly.
        self.kill();
    }
}

struct StartError {
    addr_in_use: bool,
    message: String,
}

fn running_as_root() -> bool {
    fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// Whether a process runs: a zombie (killed, not yet reaped) does not.
fn process_alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Kills the servers of test processes that died without dropping their `Slapd`, and
/// removes their dirs. Once per test process; a dir whose owner still runs is left alone.
fn kill_stale_servers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with(DIR_PREFIX) {
                continue;
            }
            let dir = entry.path();
            let read_pid = |f: &str| -> Option<u32> {
                fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok()
            };
            let Some(owner) = read_pid("owner") else {
                continue;
            };
            if process_alive(owner) {
                continue;
            }
            if let Some(pid) = read_pid("slapd.child") {
                // Only a slapd started on this dir: the pid may have been reused.
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                if cmdline.contains("slapd") && cmdline.contains(&*dir.to_string_lossy()) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                    sleep(Duration::from_millis(50));
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}

/// A CA and a server certificate for 127.0.0.1 and localhost, both P-256, as strict
/// verifiers (rustls/webpki) want them: v3, CA:TRUE on the CA, subjectAltName and
/// serverAuth on the leaf. Returns the CA file.
fn generate_certificates(dir: &Path) -> PathBuf {
    fs::create_dir(dir).expect("create the tls dir");
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run openssl: {e}; is the Debian package openssl installed?")
            });
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509", "-new"][..],
            &key,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "3650",
                "-subj",
                "/CN=idsync test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req", "-new"][..],
            &key,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat(),
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         extendedKeyUsage=serverAuth\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "3650",
        "-extfile",
        "server.ext",
        "-out",
        "server.crt",
    ]);
    dir.join("ca.crt")
}

// ---------------------------------------------------------------------------------------
// LDIF builders

/// Escapes a value for use in an RDN (RFC 4514): `uid=a\,b` for "a,b".
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// `uid=UID,ou=People,BASE`.
pub fn user_dn(base: &str, uid: &str) -> String {
    format!("uid={},ou=People,{base}", escape_dn_value(uid))
}

/// `cn=CN,ou=Groups,BASE`.
pub fn group_dn(base: &str, cn: &str) -> String {
    format!("cn={},ou=Groups,{base}", escape_dn_value(cn))
}

/// An inetOrgPerson under ou=People: uid, cn and sn (the uid), displayName, mail
/// (`UID@DOMAIN` from the base's dc= parts, when the uid is ASCII) and a plain-text
/// userPassword, which slapd accepts for simple binds.
pub fn user_ldif(base: &str, uid: &str, password: &str) -> String {
    let mut s = ldif_line("dn", &user_dn(base, uid));
    s.push_str(
        "objectClass: top\nobjectClass: person\nobjectClass: organizationalPerson\n\
         objectClass: inetOrgPerson\n",
    );
    s.push_str(&ldif_line("uid", uid));
    s.push_str(&ldif_line("cn", uid));
    s.push_str(&ldif_line("sn", uid));
    s.push_str(&ldif_line("displayName", &format!("User {uid}")));
    if uid.is_ascii() && !uid.contains(' ') {
        s.push_str(&ldif_line("mail", &format!("{uid}@{}", mail_domain(base))));
    }
    s.push_str(&ldif_line("userPassword", password));
    s.push('\n');
    s
}

/// The value that stands for "no members" in a groupOfNames or groupOfUniqueNames, whose
/// schema requires at least one: the empty (null) DN, written `member:`. slapd accepts it
/// and the memberof overlay ignores it; a reader of `member` must skip it.
pub const EMPTY_MEMBER: &str = "";

/// A groupOfNames under ou=Groups. Members are DNs: users, or groups for nesting. With no
/// members, the group gets one [`EMPTY_MEMBER`].
pub fn group_of_names_ldif(base: &str, cn: &str, member_dns: &[String]) -> String {
    group_ldif(base, cn, "groupOfNames", "member", member_dns)
}

/// A groupOfUniqueNames under ou=Groups (`uniqueMember`; the memberof overlay does not
/// follow these). With no members, the group gets one [`EMPTY_MEMBER`].
pub fn group_of_unique_names_ldif(base: &str, cn: &str, member_dns: &[String]) -> String {
    group_ldif(base, cn, "groupOfUniqueNames", "uniqueMember", member_dns)
}

/// A posixGroup under ou=Groups: members are uids (`memberUid`), which may be absent.
pub fn posix_group_ldif(base: &str, cn: &str, gid: u32, member_uids: &[&str]) -> String {
    let mut s = ldif_line("dn", &group_dn(base, cn));
    s.push_str("objectClass: top\nobjectClass: posixGroup\n");
    s.push_str(&ldif_line("cn", cn));
    writeln!(s, "gidNumber: {gid}").unwrap();
    for uid in member_uids {
        s.push_str(&ldif_line("memberUid", uid));
    }
    s.push('\n');
    s
}

/// An LDIF change record adding (`add: true`) or removing `member` values of a group.
pub fn member_change_ldif(group_dn: &str, add: bool, member_dns: &[String]) -> String {
    let op = if add { "add" } else { "delete" };
    let mut s = ldif_line("dn", group_dn);
    writeln!(s, "changetype: modify\n{op}: member").unwrap();
    for dn in member_dns {
        s.push_str(&ldif_line("member", dn));
    }
    s.push_str("-\n\n");
    s
}

fn group_ldif(base: &str, cn: &str, class: &str, attr: &str, member_dns: &[String]) -> String {
    let mut s = ldif_line("dn", &group_dn(base, cn));
    writeln!(s, "objectClass: top\nobjectClass: {class}").unwrap();
    s.push_str(&ldif_line("cn", cn));
    if member_dns.is_empty() {
        s.push_str(&ldif_line(attr, EMPTY_MEMBER));
    }
    for dn in member_dns {
        s.push_str(&ldif_line(attr, dn));
    }
    s.push('\n');
    s
}

/// One `attr: value` line, base64 (`attr:: ...`) where RFC 2849 requires it.
pub fn ldif_line(attr: &str, value: &str) -> String {
    let safe = value
        .chars()
        .all(|c| c.is_ascii() && !matches!(c, '\0' | '\n' | '\r'))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        if value.is_empty() {
            format!("{attr}:\n")
        } else {
            format!("{attr}: {value}\n")
        }
    } else {
        let encoded = base64::engine::general_purpose::STANDARD.encode(value);
        format!("{attr}:: {encoded}\n")
    }
}

fn mail_domain(base: &str) -> String {
    let parts: Vec<&str> = base
        .split(',')
        .filter_map(|rdn| {
            let (attr, value) = rdn.split_once('=')?;
            attr.trim().eq_ignore_ascii_case("dc").then(|| value.trim())
        })
        .collect();
    if parts.is_empty() {
        "example.com".to_string()
    } else {
        parts.join(".")
    }
}

fn first_rdn(dn: &str) -> (String, String) {
    let rdn = dn.split(',').next().unwrap_or_default();
    let (attr, value) = rdn
        .split_once('=')
        .unwrap_or_else(|| panic!("not a DN: {dn:?}"));
    (attr.trim().to_ascii_lowercase(), value.trim().to_string())
}

/// The records of an LDIF as slices, each with its lines' ends; blank lines separate them.
fn ldif_records(ldif: &str) -> impl Iterator<Item = &str> {
    let mut rest = ldif;
    std::iter::from_fn(move || {
        // Skip blank lines before a record.
        loop {
            let line_end = rest.find('\n').map_or(rest.len(), |i| i + 1);
            if rest.is_empty() || !rest[..line_end].trim().is_empty() {
                break;
            }
            rest = &rest[line_end..];
        }
        if rest.is_empty() {
            return None;
        }
        let mut end = 0;
        while end < rest.len() {
            let line_end = rest[end..].find('\n').map_or(rest.len(), |i| end + i + 1);
            if rest[end..line_end].trim().is_empty() {
                break;
            }
            end = line_end;
        }
        let (record, tail) = rest.split_at(end);
        rest = tail;
        Some(record)
    })
}

/// The DN of a record: its `dn:` line (or base64 `dn::`), continuation lines joined.
fn record_dn(record: &str) -> Option<String> {
    let mut lines = record
        .lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .skip_while(|l| l.starts_with('#'));
    let mut first = lines.next()?.to_string();
    for more in lines {
        match more.strip_prefix(' ') {
            Some(cont) => first.push_str(cont),
            None => break,
        }
    }
    if let Some(b64) = first.strip_prefix("dn::") {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .ok()?;
        String::from_utf8(bytes).ok()
    } else {
        first.strip_prefix("dn:").map(|dn| dn.trim().to_string())
    }
}

/// A DN compared loosely: case and spaces around separators ignored. Enough to recognise
/// the harness's own entries in a caller's LDIF.
fn loose_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| {
            rdn.split('=')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("=")
                .to_ascii_lowercase()
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn first_chars(text: &str, n: usize) -> String {
    match text.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}
