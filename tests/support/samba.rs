//! A Samba Active Directory domain controller for tests: the domain AD.TEST (NetBIOS ADTEST),
//! provisioned once per checkout into `target/samba-template`, then started for each test from
//! a copy of that template by `scripts/samba/samba-dc.sh`, on 127.0.0.1 with LDAPS under a CA
//! the script makes for that instance.
//!
//! Samba binds fixed ports (389 and 636), so one instance runs at a time on the machine: a
//! [`SambaDc`] holds an exclusive lock on `target/samba-dc.lock` from before it starts until
//! it has stopped, and tests that need one wait for it in turn. Should a test process die
//! without unwinding, the lock goes with it, and the next [`SambaDc::start`] stops the server
//! it left (its folder is recorded in `target/samba-dc.current`).
//!
//! A missing Samba is a loud failure, never a skipped test: `scripts/setup.sh` installs it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

const INSTALL_HINT: &str = "is Samba installed (Debian packages samba, samba-ad-dc, winbind, \
                            krb5-user, ldb-tools)? scripts/setup.sh installs them";

/// A running domain controller. Stopped, and its folder removed, on drop.
pub struct SambaDc {
    dir: tempfile::TempDir,
    /// `ldaps://127.0.0.1`.
    pub url: String,
    /// The PEM file of the CA that signed the server's certificate.
    pub ca_file: PathBuf,
    /// `DC=ad,DC=test`.
    pub base_dn: String,
    /// `AD.TEST`.
    pub realm: String,
    /// `ADTEST`.
    pub domain: String,
    pub admin_dn: String,
    /// `Administrator@ad.test`.
    pub admin_upn: String,
    pub admin_password_file: PathBuf,
    /// Held until the server has stopped.
    _lock: File,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
}

fn script() -> PathBuf {
    manifest_dir().join("scripts/samba/samba-dc.sh")
}

fn run_script(args: &[&str]) {
    let output = Command::new(script())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("scripts/samba/samba-dc.sh cannot run: {e}"));
    assert!(
        output.status.success(),
        "scripts/samba/samba-dc.sh {args:?} failed ({INSTALL_HINT}):\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The `KEY='value'` lines of the script's `env` file.
fn read_env(path: &Path) -> std::collections::HashMap<String, String> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
        .collect()
}

/// Waits for an exclusive `flock` on the file: held per open file, so two instances in one
/// test process queue as two processes do, and released when the process dies.
fn lock_exclusively(file: &File) {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a file descriptor this `File` owns for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return;
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(
            error.kind(),
            std::io::ErrorKind::Interrupted,
            "lock the Samba instance slot: {error}"
        );
    }
}

impl SambaDc {
    /// Waits for the machine's one instance slot, then starts a fresh domain controller.
    pub fn start() -> SambaDc {
        let target = target_dir();
        fs::create_dir_all(&target).expect("target dir");
        let lock = File::create(target.join("samba-dc.lock")).expect("lock file");
        lock_exclusively(&lock);
        // A server a dead test process left running holds the ports: stop it first.
        let current = target.join("samba-dc.current");
        if let Ok(left) = fs::read_to_string(&current) {
            let left = left.trim();
            if Path::new(left).exists() {
                run_script(&["stop", left]);
            }
            let _ = fs::remove_file(&current);
        }
        let template = target.join("samba-template");
        run_script(&["template", template.to_str().expect("utf-8 path")]);
        let dir = tempfile::Builder::new()
            .prefix("idsync-samba-")
            .tempdir()
            .expect("temp dir");
        let instance = dir.path().join("dc");
        let instance_str = instance.to_str().expect("utf-8 path").to_string();
        fs::write(&current, &instance_str).expect("record the running instance");
        run_script(&[
            "start",
            template.to_str().expect("utf-8 path"),
            &instance_str,
            "127.0.0.1",
        ]);
        let env = read_env(&instance.join("env"));
        let get = |key: &str| {
            env.get(key)
                .unwrap_or_else(|| panic!("{key} missing from the instance's env"))
                .clone()
        };
        SambaDc {
            url: get("SAMBA_URL"),
            ca_file: PathBuf::from(get("SAMBA_CA_FILE")),
            base_dn: get("SAMBA_BASE_DN"),
            realm: get("SAMBA_REALM"),
            domain: get("SAMBA_DOMAIN"),
            admin_dn: get("SAMBA_ADMIN_DN"),
            admin_upn: get("SAMBA_ADMIN_UPN"),
            admin_password_file: PathBuf::from(get("SAMBA_ADMIN_PASSWORD_FILE")),
            dir,
            _lock: lock,
        }
    }

    /// The instance's folder (configuration, database, TLS files, logs).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().join("dc")
    }

    pub fn admin_password(&self) -> String {
        fs::read_to_string(&self.admin_password_file).expect("admin password")
    }

    /// Runs an OpenLDAP client tool (`ldapsearch`, `ldapmodify`, …) against the server over
    /// LDAPS, bound as `bind` (a DN, a UPN or `DOMAIN\user`) with the administrator's password.
    pub fn tool_as(&self, program: &str, bind: &str, args: &[&str]) -> std::process::Output {
        Command::new(program)
            .env("LDAPTLS_CACERT", &self.ca_file)
            .args(["-x", "-H", &self.url, "-D", bind, "-y"])
            .arg(&self.admin_password_file)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program} cannot run (ldap-utils): {e}"))
    }
}

impl SambaDc {
    /// Adds entries (LDIF) as the administrator, over LDAPS.
    pub fn add_ldif(&self, ldif: &str) {
        self.ldif("ldapadd", ldif);
    }

    /// Applies changes (LDIF) as the administrator, over LDAPS.
    pub fn modify_ldif(&self, ldif: &str) {
        self.ldif("ldapmodify", ldif);
    }

    fn ldif(&self, program: &str, ldif: &str) {
        let file = self.dir().join("change.ldif");
        fs::write(&file, ldif).expect("write LDIF");
        let out = self.tool_as(
            program,
            &self.admin_dn,
            &["-f", file.to_str().expect("path")],
        );
        assert!(
            out.status.success(),
            "{program} failed: {}\n{ldif}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The DN of a user or group created by [`Self::add_user`] or [`Self::add_group`].
    pub fn dn(&self, cn: &str) -> String {
        format!("CN={cn},CN=Users,{}", self.base_dn)
    }

    /// Adds a user under CN=Users with a password (set over LDAPS, as AD requires), enabled
    /// (`userAccountControl` 512) or disabled (514).
    pub fn add_user(&self, name: &str, password: &str, enabled: bool) {
        self.add_ldif(&self.user_ldif(name, password, enabled));
    }

    /// Adds enabled users in one request (AD hashes every password: one process, not many).
    pub fn add_users(&self, names: &[String], password: &str) {
        let ldif: Vec<String> = names
            .iter()
            .map(|name| self.user_ldif(name, password, true))
            .collect();
        self.add_ldif(&ldif.join("\n"));
    }

    fn user_ldif(&self, name: &str, password: &str, enabled: bool) -> String {
        use base64::Engine as _;
        let quoted: Vec<u8> = format!("\"{password}\"")
            .encode_utf16()
            .flat_map(|unit| unit.to_le_bytes())
            .collect();
        let password = base64::engine::general_purpose::STANDARD.encode(quoted);
        let realm = self.realm.to_ascii_lowercase();
        format!(
            "dn: {dn}\nobjectClass: user\nsAMAccountName: {name}\nuserPrincipalName: {name}@{realm}\n\
             unicodePwd:: {password}\nuserAccountControl: {uac}\n",
            dn = self.dn(name),
            uac = if enabled { 512 } else { 514 },
        )
    }

    /// Adds a global security group under CN=Users with these members (DNs).
    pub fn add_group(&self, name: &str, members: &[String]) {
        let mut ldif = format!(
            "dn: {}\nobjectClass: group\nsAMAccountName: {name}\n",
            self.dn(name)
        );
        for member in members {
            ldif.push_str(&format!("member: {member}\n"));
        }
        self.add_ldif(&ldif);
    }

    /// Adds enabled accounts without a password (they cannot sign in), many per request: a
    /// large directory without the cost of hashing a password for each.
    pub fn add_people(&self, names: &[String]) {
        for chunk in names.chunks(1000) {
            let ldif: Vec<String> = chunk
                .iter()
                .map(|name| {
                    format!(
                        "dn: {}\nobjectClass: user\nsAMAccountName: {name}\n\
                         userPrincipalName: {name}@{}\nuserAccountControl: 512\n",
                        self.dn(name),
                        self.realm.to_ascii_lowercase()
                    )
                })
                .collect();
            self.add_ldif(&ldif.join("\n"));
        }
    }

    /// Adds a member (a DN) to a group made by [`Self::add_group`].
    pub fn add_member(&self, group: &str, member: &str) {
        self.modify_ldif(&format!(
            "dn: {}\nchangetype: modify\nadd: member\nmember: {member}\n",
            self.dn(group)
        ));
    }

    /// Deletes the user or group `cn` (it becomes a tombstone).
    pub fn delete(&self, cn: &str) {
        let out = self.tool_as("ldapdelete", &self.admin_dn, &[&self.dn(cn)]);
        assert!(
            out.status.success(),
            "ldapdelete failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Disables or enables an account.
    pub fn set_enabled(&self, name: &str, enabled: bool) {
        self.modify_ldif(&format!(
            "dn: {}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: {}\n",
            self.dn(name),
            if enabled { 512 } else { 514 }
        ));
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        let instance = self.dir();
        if let Some(path) = instance.to_str() {
            let _ = Command::new(script()).args(["stop", path]).output();
        }
        let _ = fs::remove_file(target_dir().join("samba-dc.current"));
    }
}
