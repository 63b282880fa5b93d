//! Connections, binds and searches against the directory, each bounded in time, each failure
//! reported for what it is: never read as "no entries" or "no groups".

use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::{
    Ldap, LdapConnAsync, LdapConnSettings, LdapError as ProtocolError, Scope, SearchEntry,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use super::config::{LdapOptions, OptionsError};
use super::LdapError;

/// LDAP result codes the code reacts to (RFC 4511, appendix A).
pub mod rc {
    pub const SUCCESS: u32 = 0;
    pub const TIME_LIMIT_EXCEEDED: u32 = 3;
    pub const SIZE_LIMIT_EXCEEDED: u32 = 4;
    pub const REFERRAL: u32 = 10;
    pub const ADMIN_LIMIT_EXCEEDED: u32 = 11;
    pub const UNAVAILABLE_CRITICAL_EXTENSION: u32 = 12;
    pub const NO_SUCH_OBJECT: u32 = 32;
    pub const INVALID_CREDENTIALS: u32 = 49;
    pub const UNWILLING_TO_PERFORM: u32 = 53;
    /// e-syncRefreshRequired (RFC 4533): the server cannot send the changes since the cookie.
    pub const SYNC_REFRESH_REQUIRED: u32 = 4096;
}

/// A configured directory: options, the TLS configuration built once, and the connections
/// sign-ins reuse. Clones share the connections.
#[derive(Clone)]
pub struct Directory {
    pub options: LdapOptions,
    tls: Option<Arc<ClientConfig>>,
    pool: Arc<ConnectionPool>,
}

/// Most idle connections of each kind kept for the next sign-ins.
pub const MAX_IDLE_CONNECTIONS: usize = 16;
/// An idle connection older than this is closed rather than reused: servers drop idle
/// connections (Active Directory after 900 s by default), and a fresh one costs less than a
/// failed attempt.
pub const MAX_IDLE: Duration = Duration::from_secs(60);
/// A connection is not reused once it is this old, however busy: a service account disabled
/// or given a new password in the directory keeps its already-bound sessions there, so without
/// a limit a connection in constant use would outlive the change indefinitely.
pub const MAX_LIFETIME: Duration = Duration::from_secs(300);

/// What a pooled connection is used for. The two never mix: a connection that ever carried a
/// user's bind is never used to search, so no search runs with a user's rights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Bound as the service account; searches and reads.
    Service,
    /// User binds only (password checks).
    UserBind,
}

/// Connections kept open between sign-ins, so a sign-in costs a search and a bind, not two
/// TCP (and TLS) handshakes and a service bind. A connection goes back only after an operation
/// on it completed; one that failed in any way is closed.
#[derive(Default)]
struct ConnectionPool {
    service: std::sync::Mutex<Vec<Idle>>,
    user_bind: std::sync::Mutex<Vec<Idle>>,
    opened: std::sync::atomic::AtomicU64,
}

/// A kept connection: when it was opened, and since when it waits.
struct Idle {
    ldap: Ldap,
    opened_at: std::time::Instant,
    since: std::time::Instant,
}

impl ConnectionPool {
    fn idle(&self, purpose: Purpose) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        let idle = match purpose {
            Purpose::Service => &self.service,
            Purpose::UserBind => &self.user_bind,
        };
        idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take(&self, purpose: Purpose) -> Option<(Ldap, std::time::Instant)> {
        let mut idle = self.idle(purpose);
        while let Some(mut kept) = idle.pop() {
            if kept.since.elapsed() <= MAX_IDLE
                && kept.opened_at.elapsed() <= MAX_LIFETIME
                && !kept.ldap.is_closed()
            {
                return Some((kept.ldap, kept.opened_at));
            }
        }
        None
    }

    fn give_back(&self, purpose: Purpose, mut taken: Taken) {
        if taken.ldap.is_closed() || taken.opened_at.elapsed() > MAX_LIFETIME {
            return;
        }
        let mut idle = self.idle(purpose);
        if idle.len() < MAX_IDLE_CONNECTIONS {
            idle.push(Idle {
                ldap: taken.ldap,
                opened_at: taken.opened_at,
                since: std::time::Instant::now(),
            });
        }
    }
}

/// A connection taken for one operation, when it was opened, and whether it was open before.
struct Taken {
    ldap: Ldap,
    opened_at: std::time::Instant,
    reused: bool,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("url", &self.options.url)
            .finish()
    }
}

fn tls_config(options: &LdapOptions) -> Result<Option<Arc<ClientConfig>>, OptionsError> {
    let uses_tls = options.starttls || options.url.starts_with("ldaps:");
    if !uses_tls || !options.tls_verify {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match &options.ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| OptionsError(format!("ca_file {}: {e}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| OptionsError(format!("ca_file {}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| OptionsError(format!("ca_file {}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(OptionsError(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| OptionsError(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(Arc::new(config)))
}

impl Directory {
    pub fn new(options: LdapOptions) -> Result<Directory, LdapError> {
        options.validate()?;
        let tls = tls_config(&options)?;
        Ok(Directory {
            options,
            tls,
            pool: Arc::default(),
        })
    }

    /// Connections opened so far, by any means (pooled or not), since this directory was
    /// configured.
    pub fn connections_opened(&self) -> u64 {
        self.pool.opened.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn unreachable(&self, reason: impl std::fmt::Display) -> LdapError {
        LdapError::Unreachable {
            url: self.options.url.clone(),
            reason: reason.to_string(),
        }
    }

    /// Opens a connection (TLS as configured), not yet bound.
    pub async fn connect(&self) -> Result<Ldap, LdapError> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.options.connect_timeout())
            .set_starttls(self.options.starttls);
        if let Some(config) = &self.tls {
            settings = settings.set_config(config.clone());
        }
        if !self.options.tls_verify {
            settings = settings.set_no_tls_verify(true);
        }
        let connecting = LdapConnAsync::with_settings(settings, &self.options.url);
        let (conn, ldap) = tokio::time::timeout(self.options.connect_timeout(), connecting)
            .await
            .map_err(|_| LdapError::Timeout {
                operation: "connect",
                secs: self.options.connect_timeout_secs,
            })?
            .map_err(|e| self.unreachable(e))?;
        self.pool
            .opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "LDAP connection closed");
            }
        });
        Ok(ldap)
    }

    /// Runs one operation with the operation timeout.
    pub async fn timed<T>(
        &self,
        operation: &'static str,
        future: impl std::future::Future<Output = Result<T, ProtocolError>>,
    ) -> Result<T, LdapError> {
        match tokio::time::timeout(self.options.operation_timeout(), future).await {
            Err(_) => Err(LdapError::Timeout {
                operation,
                secs: self.options.operation_timeout_secs,
            }),
            Ok(Err(ProtocolError::Timeout { .. })) => Err(LdapError::Timeout {
                operation,
                secs: self.options.operation_timeout_secs,
            }),
            Ok(Err(e)) => Err(self.unreachable(format!("{operation}: {e}"))),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// A connection bound as the service account.
    pub async fn service_connection(&self) -> Result<Ldap, LdapError> {
        let password = self.options.bind_password()?;
        if password.is_empty() {
            return Err(LdapError::ServiceBind {
                dn: self.options.bind_dn.clone(),
                reason: "the configured password is empty (an unauthenticated bind is refused)"
                    .into(),
            });
        }
        let mut ldap = self.connect().await?;
        let result = self
            .timed(
                "service bind",
                ldap.simple_bind(&self.options.bind_dn, password.expose()),
            )
            .await?;
        if result.rc != rc::SUCCESS {
            return Err(LdapError::ServiceBind {
                dn: self.options.bind_dn.clone(),
                reason: if result.rc == rc::INVALID_CREDENTIALS {
                    "invalid credentials".to_string()
                } else {
                    format!("result code {} {}", result.rc, result.text)
                },
            });
        }
        Ok(ldap)
    }

    async fn take(&self, purpose: Purpose) -> Result<Taken, LdapError> {
        if let Some((ldap, opened_at)) = self.pool.take(purpose) {
            return Ok(Taken {
                ldap,
                opened_at,
                reused: true,
            });
        }
        self.open(purpose).await
    }

    async fn open(&self, purpose: Purpose) -> Result<Taken, LdapError> {
        let opened_at = std::time::Instant::now();
        let ldap = match purpose {
            Purpose::Service => self.service_connection().await?,
            Purpose::UserBind => self.connect().await?,
        };
        Ok(Taken {
            ldap,
            opened_at,
            reused: false,
        })
    }

    /// Runs `operation` on a pooled connection for `purpose` and puts the connection back when
    /// the directory answered. A connection kept from earlier may have been closed by the
    /// server meanwhile: when one fails to carry the operation at all, the operation runs once
    /// more on a new connection. A timeout is not retried (the directory is slow, not gone).
    async fn with_pooled<T, F, Fut>(&self, purpose: Purpose, operation: F) -> Result<T, LdapError>
    where
        F: Fn(Ldap) -> Fut,
        Fut: std::future::Future<Output = Result<T, LdapError>>,
    {
        // The operation gets a handle of its own on the connection (handles are cheap clones
        // of one connection), so it can borrow whatever it likes for as long as it runs.
        let mut taken = self.take(purpose).await?;
        let mut result = operation(taken.ldap.clone()).await;
        if taken.reused && matches!(result, Err(LdapError::Unreachable { .. })) {
            tracing::debug!("a pooled LDAP connection failed; retrying on a new one");
            taken = self.open(purpose).await?;
            result = operation(taken.ldap.clone()).await;
        }
        if answered(&result) {
            self.pool.give_back(purpose, taken);
        }
        result
    }

    /// Runs `operation` with a connection bound as the service account, taken from the pool
    /// (see [`Self::check_password`] for the pool's rules).
    pub async fn with_service_connection<T, F, Fut>(&self, operation: F) -> Result<T, LdapError>
    where
        F: Fn(Ldap) -> Fut,
        Fut: std::future::Future<Output = Result<T, LdapError>>,
    {
        self.with_pooled(Purpose::Service, operation).await
    }

    /// Binds as a user to check their password, on a connection kept for user binds: it is
    /// never used for anything else, so a search never runs with a user's rights, and after a
    /// failed bind it is anonymous (RFC 4511 §4.2.1) until the next bind.
    pub async fn check_password(&self, dn: &str, password: &str) -> Result<(), LdapError> {
        if password.is_empty() {
            return Err(LdapError::EmptyPassword);
        }
        self.with_pooled(Purpose::UserBind, |mut ldap| async move {
            let result = self
                .timed("user bind", ldap.simple_bind(dn, password))
                .await?;
            match result.rc {
                rc::SUCCESS => Ok(()),
                rc::INVALID_CREDENTIALS => Err(LdapError::InvalidCredentials),
                code => Err(LdapError::Directory {
                    operation: "user bind",
                    rc: code,
                    text: result.text,
                }),
            }
        })
        .await
    }

    /// Starts a paged search whose entries are read one by one with [`EntryStream::next`],
    /// page by page, without holding the result set.
    pub async fn search_stream(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[&str],
    ) -> Result<EntryStream<'_>, LdapError> {
        self.search_stream_with(ldap, base, filter, attrs, Vec::new())
            .await
    }

    /// [`Directory::search_stream`] with request controls besides paging (e.g. AD's
    /// show-deleted).
    pub async fn search_stream_with(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[&str],
        controls: Vec<ldap3::controls::RawControl>,
    ) -> Result<EntryStream<'_>, LdapError> {
        if !controls.is_empty() {
            ldap.with_controls(controls);
        }
        let adapters: Vec<Box<dyn Adapter<'static, String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.options.page_size)),
        ];
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let stream = self
            .timed(
                "search",
                ldap.streaming_search_with(adapters, base, Scope::Subtree, filter, attrs),
            )
            .await?;
        Ok(EntryStream {
            directory: self,
            stream,
            count: 0,
            finished: false,
        })
    }

    /// Runs a paged search and hands every entry to `each`; see [`EntryStream`] for what
    /// counts as success.
    pub async fn for_each_entry(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[&str],
        mut each: impl FnMut(SearchEntry) -> Result<(), LdapError>,
    ) -> Result<u64, LdapError> {
        let mut stream = self.search_stream(ldap, base, filter, attrs).await?;
        while let Some(entry) = stream.next().await? {
            each(entry)?;
        }
        Ok(stream.count())
    }

    /// Reads one entry by DN (base scope), or `None` when it does not exist.
    pub async fn read_entry(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attrs: &[&str],
    ) -> Result<Option<SearchEntry>, LdapError> {
        let attrs: Vec<String> = attrs.iter().map(|a| a.to_string()).collect();
        let result = self
            .timed(
                "read",
                ldap.search(dn, Scope::Base, "(objectClass=*)", attrs),
            )
            .await?;
        match result.1.rc {
            rc::SUCCESS => Ok(result
                .0
                .into_iter()
                .find(|e| !e.is_ref() && !e.is_intermediate())
                .map(SearchEntry::construct)),
            rc::NO_SUCH_OBJECT => Ok(None),
            code => Err(LdapError::Directory {
                operation: "read",
                rc: code,
                text: result.1.text,
            }),
        }
    }

    pub fn operation_timeout(&self) -> Duration {
        self.options.operation_timeout()
    }
}

/// The entries of a running search. It ends with `Ok(None)` only when the server reported
/// success for the whole search: a size or time limit, a dropped connection or any other result
/// code is an error, so a partial result is never taken for a complete one. Referrals are
/// neither chased nor counted.
pub struct EntryStream<'d> {
    directory: &'d Directory,
    stream: ldap3::SearchStream<'static, String, Vec<String>>,
    count: u64,
    finished: bool,
}

impl EntryStream<'_> {
    pub async fn next(&mut self) -> Result<Option<SearchEntry>, LdapError> {
        if self.finished {
            return Ok(None);
        }
        match self.directory.timed("search", self.stream.next()).await {
            Ok(Some(entry)) => {
                self.count += 1;
                Ok(Some(SearchEntry::construct(entry)))
            }
            Ok(None) => {
                self.finished = true;
                let result = self.stream.finish().await;
                match result.rc {
                    rc::SUCCESS => Ok(None),
                    rc::SIZE_LIMIT_EXCEEDED
                    | rc::ADMIN_LIMIT_EXCEEDED
                    | rc::TIME_LIMIT_EXCEEDED => Err(LdapError::Incomplete {
                        entries: self.count,
                        reason: format!("result code {} {}", result.rc, limit_name(result.rc)),
                    }),
                    code => Err(LdapError::Directory {
                        operation: "search",
                        rc: code,
                        text: result.text,
                    }),
                }
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    /// Entries read so far.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// Whether the directory answered the operation (with success or with a verdict on the
/// request, i.e. anything but a directory failure), so the connection that carried it is fit
/// to carry the next.
fn answered<T>(result: &Result<T, LdapError>) -> bool {
    match result {
        Ok(_) => true,
        Err(error) => !error.is_directory_failure(),
    }
}

fn limit_name(code: u32) -> &'static str {
    match code {
        rc::SIZE_LIMIT_EXCEEDED => "(size limit exceeded)",
        rc::TIME_LIMIT_EXCEEDED => "(time limit exceeded)",
        rc::ADMIN_LIMIT_EXCEEDED => "(administrative limit exceeded)",
        _ => "",
    }
}

/// The values of an attribute, whatever case the server spells its name in; for AD's range
/// retrieval (`member;range=0-1499`) see [`super::groups::ranged_values`].
pub fn values<'e>(entry: &'e SearchEntry, attribute: &str) -> &'e [String] {
    entry
        .attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attribute))
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[])
}
