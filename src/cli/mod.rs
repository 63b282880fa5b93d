//! The command line: administration against the same store the service uses.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory, Parser, Subcommand};

pub mod admin;

use crate::admin::{self as admin_layer, AdminCaller, ApplyMode};
use crate::clock;
use crate::config::{Config, ConfigError};
use crate::declarative::{self, StateFileError};
use crate::login::{self, LoginError};
use crate::report::{self, IdentityReport};
use crate::signer::{Signer, SignerError};
use crate::sources::{Evidence, Purpose, SourceRegistry, VerifyContext};
use crate::store::{
    Actor, AuditQuery, AuditStore, ConfigStore, MembershipStore, ProviderRecord, SqlStore,
    StoreError,
};

/// Largest claims or assertion sample file read.
pub const MAX_SAMPLE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    StateFile(#[from] StateFileError),
    #[error(transparent)]
    Login(#[from] LoginError),
    #[error(transparent)]
    Signer(#[from] SignerError),
    #[error(transparent)]
    Ldap(#[from] crate::sources::ldap::LdapError),
    #[error(transparent)]
    Verify(#[from] crate::sources::VerifyError),
    #[error(transparent)]
    SignIn(#[from] crate::login::SignInError),
    #[error(transparent)]
    Sync(#[from] crate::sync::SyncError),
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    #[error("{0}")]
    Serve(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("{0}")]
    Refused(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}

#[derive(Debug, Parser)]
#[command(
    name = "idsync",
    version,
    about = "Identity sync: SSO group mappings, memberships, permissions and tokens"
)]
pub struct Cli {
    /// Configuration file (TOML). Environment variables IDSYNC_SECTION__KEY override it.
    #[arg(long, short = 'c', global = true, env = "IDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the database schema.
    Migrate,
    /// Print a completion script for a shell: `idsync completions bash > /etc/bash_completion.d/idsync`.
    Completions {
        /// The shell the script is for.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `idsync man > /usr/local/share/man/man1/idsync.1`.
    Man,
    /// Run the service: login hook, tokens, browser sign-in, admin API, scheduled syncs.
    Serve,
    /// API keys for the admin API and trusted login pipelines. The first key is made here:
    /// the HTTP API has no unauthenticated admin route.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    #[command(flatten)]
    Admin(admin::AdminCommand),
    /// Plan and apply a declarative state file (providers, groups, permissions, settings, mappings).
    ///
    /// Every change is checked as the admin API checks it. A plan that deletes groups or
    /// providers asks first on a terminal; elsewhere it needs --prune (or --yes).
    Apply {
        /// The state file (TOML).
        file: PathBuf,
        /// Print the plan and change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Allow the plan to delete groups and providers the file no longer lists.
        #[arg(long)]
        prune: bool,
        /// Answer yes to every question (implies --prune).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Re-evaluate an OpenID Connect or SAML provider's users from their last-seen attributes,
    /// or apply (--confirm) a re-evaluation that stopped at the removal threshold.
    Reevaluate {
        /// The provider, by name.
        provider: String,
        /// Show what would change; change nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// The id of a run that stopped at the removal threshold: apply its diff.
        #[arg(long)]
        confirm: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// SSO group mappings: test them against a sample, list, add and remove them one at a
    /// time (a state file manages them all at once).
    #[command(subcommand, alias = "mapping")]
    Mappings(MappingsCommand),
    /// Sign a user in and print the token: from already-verified attributes (--claims, as a
    /// trusted login pipeline does), or with a password against an LDAP provider (--user, the
    /// password read from standard input or IDSYNC_PASSWORD).
    Login {
        #[command(flatten)]
        sample: SampleArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Sync an LDAP directory: bring every user's memberships in line with the mappings.
    Sync {
        /// The provider, by name.
        #[arg(long)]
        provider: String,
        /// Compute and show the diff; write nothing.
        #[arg(long, short = 'n')]
        dry_run: bool,
        /// Apply the diff of a run that stopped at the removal threshold.
        #[arg(long, value_name = "RUN_ID")]
        confirm: Option<String>,
        /// Further attempts after a failed run, with exponential backoff.
        #[arg(long, default_value_t = 0)]
        retries: usize,
        /// Fetch only what changed since the last successful run (full runs find deletions).
        #[arg(long)]
        incremental: bool,
        /// Show the recent runs instead of running.
        #[arg(long)]
        history: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Read the audit log, newest first.
    Audit {
        /// Only rows about this user.
        #[arg(long)]
        user: Option<String>,
        /// Only rows about this group.
        #[arg(long, conflicts_with = "security")]
        group: Option<String>,
        /// Only rows about this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only the changes of this sync run (its id).
        #[arg(long, conflicts_with = "security")]
        run: Option<String>,
        /// Show refused sign-ins (security events) instead of membership and configuration
        /// changes.
        #[arg(long)]
        security: bool,
        /// With --security: refusals for this reason code (replay, invalid_credentials, …).
        #[arg(long, requires = "security")]
        reason: Option<String>,
        /// With --security: refusals from this client address.
        #[arg(long, requires = "security")]
        client: Option<String>,
        /// At most this many rows, newest first.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add or remove a group membership by hand (a "manual" membership).
    #[command(subcommand)]
    Members(MembersCommand),
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key and print it (it is shown once; only its hash is stored).
    Create {
        /// A unique name, e.g. the pipeline or person it is for.
        #[arg(long)]
        name: String,
        /// A permission the key carries, by its documented name ("Global Admin", "Users Auth
        /// Session", "Groups View", …). Repeat for several.
        #[arg(
            long = "permission",
            required_unless_present = "scim_provider",
            conflicts_with = "scim_provider"
        )]
        permissions: Vec<String>,
        /// Make a SCIM token instead: it opens this provider's SCIM endpoint
        /// (/scim/v2/PROVIDER) for a SCIM client such as Entra ID or Okta, and nothing else.
        #[arg(long, value_name = "PROVIDER")]
        scim_provider: Option<String>,
        /// The key stops working after this long (e.g. 90d); default: never.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<std::time::Duration>,
    },
    /// List the keys (never their secrets).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by name.
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Add a known user to a group by hand; an unknown name is refused unless --create.
    Add {
        /// The group, by name.
        group: String,
        /// The user, by name.
        username: String,
        /// Create the user when idsync does not know them yet.
        #[arg(long)]
        create: bool,
    },
    /// Take a user out of a group by hand.
    Remove {
        /// The group, by name.
        group: String,
        /// The user, by name.
        username: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingsCommand {
    /// Show what a login with these verified attributes would do, changing nothing: mappings
    /// matched and why, the membership diff, effective permissions and resolved settings.
    Test {
        #[command(flatten)]
        sample: SampleArgs,
        /// Print the report as JSON (the document `POST /api/v1/mappings/test` returns).
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Manage(admin::MappingCommand),
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// The provider the attributes come from.
    #[arg(long)]
    pub provider: String,
    /// A JSON file of verified claims, e.g. {"username": "alice", "groups": ["..."]}. Without
    /// it, an LDAP provider looks the user (--user) up in the directory with its service account.
    #[arg(long)]
    pub claims: Option<PathBuf>,
    /// The username; default: the claims' username, preferred_username, uid or sub.
    #[arg(long)]
    pub user: Option<String>,
    /// Where the group values are in the claims: a name or a dotted path. Default: the
    /// provider's own (an OpenID provider's groups_claim, a SAML provider's group attribute),
    /// else "groups".
    #[arg(long)]
    pub groups_claim: Option<String>,
    /// A file holding an ID token of an OpenID provider (the compact JWT). It is verified
    /// (signature against the provider's keys, issuer, audience, expiry) before it is used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["claims", "saml_response", "user"])]
    pub id_token: Option<PathBuf>,
    /// The nonce the ID token must carry. It may begin with "-" (a base64url nonce can).
    #[arg(long, requires = "id_token", allow_hyphen_values = true)]
    pub nonce: Option<String>,
    /// A file holding a SAML Response (base64 as posted to an ACS, or the XML). It is verified
    /// as at a sign-in; a mapping test does not record it as used.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["claims", "id_token", "user"])]
    pub saml_response: Option<PathBuf>,
    /// The id of the AuthnRequest the SAML response answers (its InResponseTo). Repeat for
    /// several.
    #[arg(long = "request-id", value_name = "ID", requires = "saml_response")]
    pub request_ids: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Verify a token's signature, issuer, audience and times, and print its claims.
    Verify {
        /// The token (compact JWT).
        token: String,
    },
    /// Issue a new token for a valid token's session from the current memberships.
    Refresh {
        /// The token (compact JWT).
        token: String,
    },
    /// Print the JWKS other services verify tokens with.
    Jwks,
    /// Start signing with a new key; the old one keeps verifying for the overlap.
    Rotate,
}

/// Runs the command line; returns the process exit code.
/// Errors are printed here, in words an admin can act on, and become exit code 1.
/// How `idsync serve` starts the service: the binary passes the HTTP frontend in, so the two
/// frontends never import each other.
pub type Serve = fn(Config, SqlStore) -> ServeFuture;

/// What serving returns: the service's end, or why it could not run.
pub type ServeFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>
            + Send,
    >,
>;

pub async fn run(args: impl IntoIterator<Item = OsString>, serve: Serve) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    match execute(cli, serve).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn init_logging(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log.level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours for a person at a terminal only: a log file or journal gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = if config.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the database. Only the commands that set a database up may create one: a read or a
/// single change against a database that is not there would otherwise leave an empty
/// `./idsync.db` behind and answer as if it were the real one.
async fn open_store(
    config: &Config,
    command: &Command,
    named_config: bool,
) -> Result<SqlStore, CliError> {
    let url = config.database_url()?;
    let creates = matches!(
        command,
        Command::Serve | Command::Apply { dry_run: false, .. }
    );
    if creates {
        return Ok(SqlStore::open(&url).await?);
    }
    match SqlStore::open_existing(&url).await {
        // A dry run plans against what is there: nothing yet, so an empty schema, in memory.
        Err(StoreError::NoDatabase { path }) if matches!(command, Command::Apply { .. }) => {
            eprintln!(
                "note: there is no database at {path} yet; the plan is against an empty one \
                 and creates nothing"
            );
            Ok(SqlStore::open("sqlite::memory:").await?)
        }
        Err(StoreError::NoDatabase { path }) if !named_config => Err(CliError::Refused(format!(
            "{}; no configuration file was named (--config or IDSYNC_CONFIG), so the default \
             database {path} in the current directory was looked for",
            StoreError::NoDatabase { path: path.clone() }
        ))),
        other => Ok(other?),
    }
}

async fn execute(cli: Cli, serve: Serve) -> Result<i32, CliError> {
    // Generated from the command definitions: no configuration read, no database touched.
    match &cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "idsync",
                &mut std::io::stdout(),
            );
            return Ok(0);
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            return Ok(0);
        }
        _ => {}
    }
    let config = Config::load(cli.config.as_deref())?;
    init_logging(&config);
    if matches!(cli.command, Command::Migrate) {
        let store = SqlStore::connect(&config.database_url()?).await?;
        let migrated = store.migrate_reporting().await?;
        match migrated.applied.as_slice() {
            [] => println!(
                "the database schema is up to date (version {}): nothing to apply",
                migrated.version
            ),
            applied => println!(
                "applied {} migration(s) ({}); the database schema is at version {}",
                applied.len(),
                applied
                    .iter()
                    .map(|v| format!("{v:04}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                migrated.version
            ),
        }
        return Ok(0);
    }
    // A state file that does not parse is refused before a database is opened, or created;
    // it is read and parsed this once.
    let desired_state = match &cli.command {
        Command::Apply { file, .. } => {
            let text = read_capped(file, declarative::MAX_STATE_FILE_BYTES as u64)?;
            Some(declarative::parse_state(
                &file.display().to_string(),
                &text,
            )?)
        }
        _ => None,
    };
    let store = open_store(&config, &cli.command, cli.config.is_some()).await?;
    let now = clock::now_ms();
    match cli.command {
        Command::Migrate | Command::Completions { .. } | Command::Man => {
            unreachable!("handled above")
        }
        Command::Serve => {
            serve(config, store).await.map_err(CliError::Serve)?;
            Ok(0)
        }
        Command::ApiKey(command) => api_key_command(&store, command, now).await,
        Command::Admin(command) => admin::run(&store, command, now).await,
        Command::Apply {
            file: _,
            dry_run,
            json,
            prune,
            yes,
        } => {
            let Some(desired) = desired_state else {
                unreachable!("an apply's state file is parsed before the store opens")
            };
            let current = store.load_config().await?;
            let plan = declarative::plan(&current, &desired);
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report::plan_json(&plan, dry_run))
                        .unwrap_or_default()
                );
            } else {
                println!("{plan}");
            }
            if plan.is_empty() {
                if !json {
                    println!("Nothing to change.");
                }
                return Ok(0);
            }
            let caller = AdminCaller::command_line("apply");
            if !dry_run {
                confirm_deletions(&plan.changes, prune || yes)?;
            }
            // Checked as the admin API checks every change, all of them before anything is
            // written; a dry run checks and previews the re-evaluations.
            let outcome = admin_layer::apply_changes(
                &store,
                &caller,
                plan.changes,
                ApplyMode { dry_run },
                now,
            )
            .await?;
            if dry_run {
                if !json {
                    print_reevaluations(&outcome.reevaluations, true);
                    println!("Dry run: nothing was changed.");
                }
                return Ok(0);
            }
            if !json {
                println!("Applied {} change(s).", outcome.applied);
                print_reevaluations(&outcome.reevaluations, false);
                for provider in &outcome.ldap_providers_to_sync {
                    println!(
                        "LDAP provider {provider:?}: its users are brought in line by its next \
                         sync (idsync sync {provider})."
                    );
                }
            }
            let pending = outcome.reevaluations.iter().any(|r| {
                r.outcome
                    .as_ref()
                    .is_some_and(|o| o.run.status == "needs_confirmation")
            });
            Ok(if pending { 3 } else { 0 })
        }
        Command::Reevaluate {
            provider,
            dry_run,
            confirm,
            json,
        } => {
            let request = crate::sync::reevaluate::ReevaluateRequest {
                provider,
                proposed: Vec::new(),
                dry_run,
                confirm,
                actor: Actor::new("cli:reevaluate"),
                confirmation_max_age: Some(config.sync.confirmation_max_age()),
            };
            let outcome =
                crate::sync::reevaluate::reevaluate_provider(&store, &request, now).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&outcome).unwrap_or_default()
                );
            } else {
                print_reevaluations(
                    &[admin_layer::Reevaluation {
                        provider: request.provider.clone(),
                        outcome: Some(outcome.clone()),
                        error: None,
                    }],
                    dry_run,
                );
            }
            Ok(if outcome.run.status == "needs_confirmation" {
                3
            } else {
                0
            })
        }
        Command::Mappings(MappingsCommand::Manage(command)) => {
            admin::mapping(&store, command, now).await
        }
        Command::Mappings(MappingsCommand::Test { sample, json }) => {
            let record = store.provider(&sample.provider).await?;
            let mut warnings = Vec::new();
            let identity = match sample_evidence(&sample, Purpose::Test, &record)? {
                Sample::Claims(claims) => {
                    warnings = claims.warnings;
                    claims.identity
                }
                Sample::Evidence(evidence, file) => {
                    let context = VerifyContext::new(now, Purpose::Test);
                    crate::sources::verify(
                        &store,
                        &SourceRegistry::new(),
                        &record,
                        evidence,
                        &context,
                    )
                    .await
                    .map_err(|e| refused_sample(file, e))?
                    .identity
                }
            };
            let exists = store.user_by_name(&identity.username).await?.is_some();
            let outcome = login::preview(&store, &identity, now).await?;
            let mut report = IdentityReport::new(&identity, exists, &outcome);
            report.warnings.splice(0..0, warnings);
            print_report(&report, json);
            Ok(0)
        }
        Command::Login { sample, json } => {
            let record = store.provider(&sample.provider).await?;
            let (evidence, file) = match sample_evidence(&sample, Purpose::SignIn, &record)? {
                Sample::Evidence(evidence, file) => (evidence, file),
                Sample::Claims(crate::sources::ClaimsSample { identity, .. }) => (
                    Evidence::VerifiedAttributes {
                        username: identity.username,
                        groups: identity.group_values,
                        attributes: identity.attributes,
                    },
                    sample.claims.clone(),
                ),
            };
            let signer = Signer::load(&store, &config.tokens, now / 1000).await?;
            // Whether the sign-in creates the user, as far as the evidence names them before it
            // is verified (an ID token or SAML response names nobody until then).
            let exists = match evidence.claimed_username() {
                Some(name) => store.user_by_name(name).await?.is_some(),
                None => false,
            };
            // Whoever runs the command line holds the database: a trusted pipeline. The
            // evidence goes through the same checks and the same record of refusals as over
            // HTTP.
            let context = VerifyContext {
                authenticated: true,
                trusted_pipeline: true,
                lockout: config.security.lockout,
                ..VerifyContext::new(now, Purpose::SignIn)
            };
            let request = login::SignInRequest {
                provider: sample.provider.clone(),
                evidence,
                context,
            };
            let log = login::RefusalLog::new(&config.security, None);
            let sealing = upstream_key(&config)?;
            let (identity, signed) = login::sign_in(
                &store,
                &login::ConfigCache::new(),
                &signer,
                &SourceRegistry::new(),
                sealing.as_ref(),
                request,
                &log,
            )
            .await
            .map_err(|e| refused_sample(file, e))?;
            let report = IdentityReport::new(&identity, exists, &signed.outcome);
            if json {
                let mut doc = serde_json::to_value(&report).unwrap_or_default();
                doc["token"] = serde_json::Value::String(signed.token.clone());
                doc["token_expires_at"] = signed.claims.exp.into();
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            } else {
                println!("{}", report.render());
                println!(
                    "\nToken (expires at {}):\n{}",
                    signed.claims.exp, signed.token
                );
            }
            Ok(0)
        }
        Command::Token(command) => {
            let signer = Signer::load(&store, &config.tokens, now / 1000).await?;
            match command {
                TokenCommand::Verify { token } => match signer.verify(token.trim(), now / 1000) {
                    Ok(claims) => {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&claims).unwrap_or_default()
                        );
                        Ok(0)
                    }
                    Err(e) => {
                        eprintln!("token refused: {e}");
                        Ok(1)
                    }
                },
                TokenCommand::Refresh { token } => {
                    let sealing = upstream_key(&config)?;
                    let sources = SourceRegistry::new();
                    let log = login::RefusalLog::new(&config.security, None);
                    let upstream = login::upstream::Upstream {
                        sources: &sources,
                        key: sealing.as_ref(),
                        log: &log,
                    };
                    let (token, claims) = login::refresh(
                        &store,
                        &login::ConfigCache::new(),
                        &signer,
                        &upstream,
                        token.trim(),
                        now,
                    )
                    .await?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&claims).unwrap_or_default()
                    );
                    println!("{token}");
                    Ok(0)
                }
                TokenCommand::Jwks => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&signer.jwks(now / 1000)).unwrap_or_default()
                    );
                    Ok(0)
                }
                TokenCommand::Rotate => {
                    let kid = signer.rotate(&store, now / 1000).await?;
                    println!("now signing with key {kid}");
                    Ok(0)
                }
            }
        }
        Command::Sync {
            provider,
            dry_run,
            confirm,
            retries,
            incremental,
            history,
            json,
        } => {
            let request = crate::sync::SyncRequest {
                provider,
                dry_run,
                confirm: confirm.map(|run| crate::sync::Confirmation {
                    run,
                    by: Actor::new("cli:sync"),
                }),
                retries,
                retry_delay: std::time::Duration::from_secs(1),
                incremental,
                confirmation_max_age: Some(config.sync.confirmation_max_age()),
            };
            sync_command(&store, request, history, json).await
        }
        Command::Audit {
            user,
            provider,
            security: true,
            reason,
            client,
            limit,
            json,
            ..
        } => {
            use crate::store::SecurityEventStore;
            let events = store
                .security_events(&crate::store::SecurityEventQuery {
                    provider,
                    reason,
                    username: user,
                    client_address: client,
                    limit,
                    ..Default::default()
                })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&events).unwrap_or_default()
                );
            } else {
                for e in &events {
                    println!("{}", report::security_event_line(e));
                }
            }
            Ok(0)
        }
        Command::Audit {
            user,
            group,
            provider,
            run,
            limit,
            json,
            ..
        } => {
            let entries = store
                .audit(&AuditQuery {
                    username: user,
                    group,
                    provider,
                    run_id: run,
                    since_ms: None,
                    limit,
                    ..AuditQuery::default()
                })
                .await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&entries).unwrap_or_default()
                );
            } else {
                for e in &entries {
                    println!("{}", report::audit_line(e));
                }
            }
            Ok(0)
        }
        Command::Members(command) => {
            let caller = AdminCaller::command_line("members");
            let (group, username, member, changed) = match command {
                MembersCommand::Add {
                    group,
                    username,
                    create,
                } => {
                    let changed =
                        admin_layer::members::add(&store, &caller, &group, &username, create, now)
                            .await?;
                    (group, username, true, changed)
                }
                MembersCommand::Remove { group, username } => {
                    let changed =
                        admin_layer::members::remove(&store, &caller, &group, &username, now)
                            .await?;
                    (group, username, false, changed)
                }
            };
            println!(
                "{username:?} {} {group:?}{}",
                if member {
                    "is a member of"
                } else {
                    "is not a member of"
                },
                if changed { "" } else { " (unchanged)" }
            );
            Ok(0)
        }
    }
}

async fn api_key_command(
    store: &SqlStore,
    command: ApiKeyCommand,
    now: i64,
) -> Result<i32, CliError> {
    use crate::store::ApiKeyStore;
    match command {
        ApiKeyCommand::Create {
            name,
            permissions,
            scim_provider,
            expires_in,
        } => {
            let grant = match &scim_provider {
                Some(provider) => admin_layer::keys::KeyGrant::Scim { provider },
                None => admin_layer::keys::KeyGrant::Permissions(&permissions),
            };
            let (record, key) = admin_layer::keys::create(
                store,
                &AdminCaller::command_line("api-key"),
                &name,
                grant,
                expires_in.map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                now,
            )
            .await?;
            match &record.scim_provider {
                Some(provider) => eprintln!(
                    "SCIM token {name:?} created for provider {provider:?}: the SCIM client's \
                     bearer token at /scim/v2/{provider}. It is shown once; keep it secret:"
                ),
                None => eprintln!(
                    "API key {name:?} created with {}. It is shown once; keep it secret:",
                    record.permissions.join(", ")
                ),
            }
            println!("{key}");
            Ok(0)
        }
        ApiKeyCommand::List { json } => {
            let keys = store.api_keys().await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&keys).unwrap_or_default()
                );
            } else {
                for key in &keys {
                    let state = if key.revoked_at.is_some() {
                        "revoked"
                    } else if key.expires_at.is_some_and(|at| at <= now) {
                        "expired"
                    } else {
                        "active"
                    };
                    let grant = match &key.scim_provider {
                        Some(provider) => format!("SCIM for {provider}"),
                        None => key.permissions.join(", "),
                    };
                    println!("{}\t{}\t{state}\t{grant}", key.name, key.id);
                }
            }
            Ok(0)
        }
        ApiKeyCommand::Revoke { name } => {
            admin_layer::keys::revoke(
                store,
                &crate::login::ConfigCache::new(),
                &AdminCaller::command_line("api-key"),
                &name,
                now,
            )
            .await?;
            println!("API key {name:?} revoked");
            Ok(0)
        }
    }
}

/// How long the command line's hold on a provider's sync lease lasts between renewals.
const CLI_SYNC_LEASE_TTL_MS: i64 = 30_000;

async fn sync_command(
    store: &SqlStore,
    request: crate::sync::SyncRequest,
    history: bool,
    json: bool,
) -> Result<i32, CliError> {
    use crate::store::SyncStore;
    use crate::sync::{run_sync, Progress};
    if history {
        let record = store.provider(&request.provider).await?;
        let runs = store.sync_runs(record.provider.id, 20).await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&runs).unwrap_or_default()
            );
        } else if runs.is_empty() {
            println!(
                "no sync runs of {} yet: `idsync sync --provider {}` runs one (add --dry-run to change nothing)",
                request.provider, request.provider
            );
        } else {
            for run in &runs {
                println!("{}", report::sync_run_line(run));
            }
        }
        return Ok(0);
    }
    let bar = if !json && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Some(bar)
    } else {
        None
    };
    let progress = |p: Progress| {
        if let Some(bar) = &bar {
            match p {
                Progress::Users(n) => bar.set_message(format!("{n} directory entries read")),
                Progress::Applied(n) => bar.set_message(format!("{n} changes applied")),
            }
        }
    };
    let outcome = if request.dry_run {
        // A dry run writes nothing and needs no lease.
        run_sync(store, &request, &progress, &clock::now_ms).await?
    } else {
        // The same lease as scheduled and requested runs: one run of a provider at a time, on
        // any instance or command line.
        let holder: std::sync::Arc<str> = format!("cli-{}", std::process::id()).into();
        let leased = crate::sync::scheduler::with_provider_lease(
            store,
            &request.provider,
            &holder,
            CLI_SYNC_LEASE_TTL_MS,
            || run_sync(store, &request, &progress, &clock::now_ms),
        )
        .await?;
        match leased {
            crate::sync::scheduler::Leased::Done(outcome) => outcome?,
            crate::sync::scheduler::Leased::Busy(held) => {
                if let Some(bar) = bar {
                    bar.finish_and_clear();
                }
                eprintln!("error: {}", held.describe(&request.provider));
                return Ok(1);
            }
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome).unwrap_or_default()
        );
    } else {
        println!("{}", report::render_sync(&outcome));
    }
    Ok(match outcome.run.status.as_str() {
        "succeeded" | "dry_run" => 0,
        // Superseded at its end: an earlier run waits with the same changes (its message
        // names it).
        "needs_confirmation" | "superseded" => 3,
        _ => 1,
    })
}

/// What a sample names: a claims document (an identity as the admin says a provider would
/// send it) or evidence to verify.
enum Sample {
    Claims(crate::sources::ClaimsSample),
    /// Evidence, and the file it was read from (named in a refusal).
    Evidence(Evidence, Option<PathBuf>),
}

/// A refusal of a sample's evidence, naming the file it came from.
/// Refuses a plan that deletes groups or providers unless the operator said so: --prune or
/// --yes, or "yes" typed on a terminal.
fn confirm_deletions(
    changes: &[crate::store::ConfigChange],
    allowed: bool,
) -> Result<(), CliError> {
    use crate::store::ConfigChange;
    let doomed: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            ConfigChange::DeleteGroup { name } => Some(format!("group {name:?}")),
            ConfigChange::DeleteProvider { name } => Some(format!("provider {name:?}")),
            _ => None,
        })
        .collect();
    if doomed.is_empty() || allowed {
        return Ok(());
    }
    let what = doomed.join(", ");
    if std::io::IsTerminal::is_terminal(&std::io::stdin())
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
    {
        eprint!(
            "The plan deletes {what}: their members lose them and their mappings go. Type \
             \"yes\" to apply: "
        );
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() == "yes" {
            return Ok(());
        }
        return Err(CliError::Refused("nothing was applied".into()));
    }
    Err(CliError::Refused(format!(
        "the plan deletes {what}, which the file no longer lists; nothing was applied. Run \
         again with --prune to delete them (or --yes), or add them back to the file"
    )))
}

/// What the re-evaluations after a mapping change did, for the operator.
pub(crate) fn print_reevaluations(reevaluations: &[admin_layer::Reevaluation], dry_run: bool) {
    for r in reevaluations {
        match (&r.outcome, &r.error) {
            (Some(outcome), _) => {
                let run = &outcome.run;
                let verb = if dry_run { "would change" } else { "changed" };
                println!(
                    "Re-evaluation of {:?} from last-seen attributes: {} user(s), {verb} +{} \
                     -{}.",
                    r.provider, run.users_seen, run.additions, run.removals
                );
                if run.status == "needs_confirmation" {
                    println!(
                        "It would remove more than the limit of {}: nothing was applied for \
                         the users. Review it, then run: idsync reevaluate {} --confirm {}",
                        run.removal_limit, r.provider, run.id
                    );
                }
                for change in outcome.changes.iter().filter(|c| c.group.is_some()) {
                    println!(
                        "  {:?} {} {:?}: {}",
                        change.kind,
                        change.username,
                        change.group.as_ref().map(|g| g.name.as_str()).unwrap_or(""),
                        change.reason
                    );
                }
            }
            (None, Some(error)) => println!(
                "Re-evaluation of {:?} failed: {error}; the users get the change at their \
                 next sign-in.",
                r.provider
            ),
            (None, None) => {}
        }
    }
}

fn refused_sample(file: Option<PathBuf>, error: impl std::fmt::Display) -> CliError {
    CliError::Input {
        path: file.map_or_else(|| "command line".into(), |f| f.display().to_string()),
        message: error.to_string(),
    }
}

/// The evidence of a mapping test or a command-line sign-in: a claims file, an ID token or
/// SAML response file, or an LDAP username (a sign-in reads the password from standard input
/// or IDSYNC_PASSWORD; a test looks the user up without one).
fn sample_evidence(
    sample: &SampleArgs,
    purpose: Purpose,
    record: &ProviderRecord,
) -> Result<Sample, CliError> {
    if sample.claims.is_some() {
        return Ok(Sample::Claims(read_claims(sample, record)?));
    }
    if let Some(path) = &sample.id_token {
        let token = read_capped(path, MAX_SAMPLE_BYTES)?;
        return Ok(Sample::Evidence(
            Evidence::IdToken {
                id_token: token.trim().to_owned(),
                nonce: sample.nonce.clone(),
                access_token: None,
            },
            Some(path.clone()),
        ));
    }
    if let Some(path) = &sample.saml_response {
        let text = read_capped(path, MAX_SAMPLE_BYTES)?;
        // A saved response may be the XML itself or the base64 form field.
        let encoded = if text.trim_start().starts_with('<') {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text.trim())
        } else {
            text.split_whitespace().collect()
        };
        return Ok(Sample::Evidence(
            Evidence::SamlResponse {
                saml_response: encoded,
                request_ids: sample.request_ids.clone(),
            },
            Some(path.clone()),
        ));
    }
    let username = sample.user.clone().ok_or_else(|| CliError::Input {
        path: "command line".into(),
        message: "pass --claims FILE, --id-token FILE, --saml-response FILE, or --user NAME for \
                  an LDAP provider"
            .into(),
    })?;
    if purpose == Purpose::Test {
        return Ok(Sample::Evidence(
            Evidence::DirectoryLookup { username },
            None,
        ));
    }
    let password = match std::env::var("IDSYNC_PASSWORD") {
        Ok(p) => p,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    Ok(Sample::Evidence(
        Evidence::Password { username, password },
        None,
    ))
}

fn print_report(report: &IdentityReport, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    } else {
        println!("{}", report.render());
    }
}

fn read_capped(path: &Path, limit: u64) -> Result<String, CliError> {
    let input = |message: String| CliError::Input {
        path: path.display().to_string(),
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| input(e.to_string()))?;
    if meta.len() > limit {
        return Err(input(format!(
            "the file is {} bytes; the limit is {limit}",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| input(e.to_string()))
}

/// Reads a claims sample for a provider: its group values at `--groups-claim`, else where the
/// provider puts them.
pub fn read_claims(
    sample: &SampleArgs,
    record: &ProviderRecord,
) -> Result<crate::sources::ClaimsSample, CliError> {
    let Some(path) = &sample.claims else {
        return Err(CliError::Input {
            path: "command line".into(),
            message: "no --claims file".into(),
        });
    };
    let text = read_capped(path, MAX_SAMPLE_BYTES)?;
    crate::sources::parse_claims(&text)
        .and_then(|claims| {
            crate::sources::claims_sample(
                record,
                claims,
                sample.user.as_deref(),
                sample.groups_claim.as_deref(),
            )
        })
        .map_err(|message| CliError::Input {
            path: path.display().to_string(),
            message,
        })
}

/// The key that seals providers' refresh tokens at rest (upstream re-checks), when the
/// configuration names a sealing secret.
fn upstream_key(config: &Config) -> Result<Option<crate::seal::SealKey>, CliError> {
    Ok(config
        .http
        .root_key()
        .map_err(CliError::Refused)?
        .map(|root| crate::seal::SealKey::derive(&root, crate::seal::UPSTREAM_TOKEN_PURPOSE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and subcommand, with its path from `idsync`.
    fn all_commands(command: &clap::Command, path: String, out: &mut Vec<(String, clap::Command)>) {
        out.push((path.clone(), command.clone()));
        for sub in command.get_subcommands() {
            all_commands(sub, format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_command_and_option_says_what_it_is_for() {
        let mut commands = Vec::new();
        all_commands(&Cli::command(), "idsync".into(), &mut commands);
        let mut silent = Vec::new();
        for (path, command) in &commands {
            if command.get_about().is_none() && path != "idsync help" {
                silent.push(format!("{path} (the command)"));
            }
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    silent.push(format!("{path} {id}"));
                }
            }
        }
        assert!(silent.is_empty(), "without help text: {silent:#?}");
    }

    #[test]
    fn one_command_per_noun() {
        let cli = Cli::command();
        let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        for name in &names {
            let singular = name.strip_suffix('s').unwrap_or(name);
            let twins: Vec<&&str> = names
                .iter()
                .filter(|other| {
                    *other != name && other.strip_suffix('s').unwrap_or(other) == singular
                })
                .collect();
            assert!(twins.is_empty(), "{name} has a near-twin: {twins:?}");
        }
        // The singular spellings people type still reach the one command.
        for (typed, meant) in [("mapping", "mappings"), ("user", "users")] {
            let matches = Cli::try_parse_from(["idsync", typed, "list"])
                .unwrap_or_else(|e| panic!("`idsync {typed} list`: {e}"));
            let reached = format!("{:?}", matches.command).to_lowercase();
            assert!(reached.contains(meant), "{typed} reached {reached}");
        }
    }
}
