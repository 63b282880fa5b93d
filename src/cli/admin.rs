//! The operator's side of the admin API: the same operations against the same store. The CLI
//! holds the database, so it is not permission-checked; every change is written to the audit
//! log as `cli:<command>`.

use clap::Subcommand;

use super::CliError;
use crate::model::access::permissions_digest;
use crate::model::group::ALL_USERS;
use crate::model::matcher::ValuePattern;
use crate::store::admin::AdminStore;
use crate::store::{Actor, ConfigChange, ConfigStore, MembershipStore, SqlStore, StoreError};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Groups: list, show, create, delete.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Users: list, show, delete, revoke sessions.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Providers: list them (secrets are never stored in their options).
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// SSO group mappings, one at a time (the state file manages them all at once).
    #[command(subcommand)]
    Mapping(MappingCommand),
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    List {
        #[arg(long)]
        json: bool,
    },
    /// A group with its permissions, settings, workspaces and members.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    Create {
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Lower wins when groups define the same setting.
        #[arg(long, default_value_t = 100)]
        priority: i64,
    },
    /// Delete a group (system groups never are); its members lose it, each with an audit row.
    Delete { name: String },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    List {
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// A user with their groups and effective permissions.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a user with their memberships, last-seen attributes and sessions.
    Delete { name: String },
    /// Revoke every session of the user: no earlier token authenticates or refreshes.
    RevokeSessions { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    List {
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Map a provider's users into a group: everyone, or those carrying a group attribute.
    Add {
        #[arg(long)]
        provider: String,
        #[arg(long)]
        group: String,
        #[arg(long, conflicts_with = "attributes")]
        assign_all_users: bool,
        /// A group attribute value (exact, glob:PATTERN or regex:PATTERN). Repeat for several.
        #[arg(long = "attribute", required_unless_present = "assign_all_users")]
        attributes: Vec<String>,
    },
    /// Remove a mapping by id.
    Remove { id: i64 },
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

fn refused(message: String) -> CliError {
    CliError::Store(StoreError::Refused(message))
}

pub async fn run(store: &SqlStore, command: AdminCommand, now: i64) -> Result<i32, CliError> {
    match command {
        AdminCommand::Groups(command) => groups(store, command, now).await,
        AdminCommand::Users(command) => users(store, command, now).await,
        AdminCommand::Providers(ProvidersCommand::List { json }) => {
            let config = store.load_config().await?;
            if json {
                let list: Vec<_> = config
                    .providers
                    .iter()
                    .map(|p| {
                        serde_json::json!({
                            "name": p.provider.name,
                            "kind": p.provider.kind.as_str(),
                            "remove_manual_memberships": p.provider.remove_manual_memberships,
                            "options": crate::http::admin::redact(&p.options),
                        })
                    })
                    .collect();
                print_json(&list);
            } else {
                for p in &config.providers {
                    println!(
                        "{}\t{}\tremove_manual_memberships={}",
                        p.provider.name,
                        p.provider.kind.as_str(),
                        p.provider.remove_manual_memberships
                    );
                }
            }
            Ok(0)
        }
        AdminCommand::Mapping(command) => mapping(store, command, now).await,
    }
}

async fn groups(store: &SqlStore, command: GroupsCommand, now: i64) -> Result<i32, CliError> {
    let actor = Actor::new("cli:groups");
    match command {
        GroupsCommand::List { json } => {
            let config = store.load_config().await?;
            if json {
                let list: Vec<_> = config.groups.iter().map(|g| &g.group).collect();
                print_json(&list);
            } else {
                for g in &config.groups {
                    println!(
                        "{}\tpriority {}{}",
                        g.group.name,
                        g.group.priority,
                        if g.group.is_system { "\tsystem" } else { "" }
                    );
                }
            }
            Ok(0)
        }
        GroupsCommand::Show { name, json } => {
            let record = store
                .group_by_name(&name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("no group named {name:?}")))?;
            let members = store.group_members(record.group.id).await?;
            if json {
                let mut value = serde_json::to_value(&record).unwrap_or_default();
                value["members"] = serde_json::to_value(&members).unwrap_or_default();
                print_json(&value);
            } else {
                println!(
                    "{} (priority {}{})",
                    record.group.name,
                    record.group.priority,
                    if record.group.is_system {
                        ", system"
                    } else {
                        ""
                    }
                );
                if !record.description.is_empty() {
                    println!("  {}", record.description);
                }
                println!("permissions: {}", record.permissions.join(", "));
                for (k, v) in &record.settings {
                    println!("setting {k} = {v}");
                }
                println!("workspaces: {}", record.workspaces.join(", "));
                if record.group.is_all_users() {
                    println!("members: every user");
                } else {
                    for m in &members {
                        println!(
                            "member {} ({}{})",
                            m.username,
                            m.source,
                            m.provider
                                .as_deref()
                                .map(|p| format!(" via {p}"))
                                .unwrap_or_default()
                        );
                    }
                }
            }
            Ok(0)
        }
        GroupsCommand::Create {
            name,
            description,
            priority,
        } => {
            if name.trim().is_empty() || name.trim() != name {
                return Err(refused(
                    "a group name must not be blank or start or end with spaces".into(),
                ));
            }
            if store.group_id(&name).await?.is_some() {
                return Err(refused(format!("a group named {name:?} exists already")));
            }
            store
                .apply_config(
                    &[ConfigChange::CreateGroup {
                        name: name.clone(),
                        description,
                        priority,
                    }],
                    &actor,
                    &permissions_digest,
                    now,
                )
                .await?;
            println!("created group {name:?}");
            Ok(0)
        }
        GroupsCommand::Delete { name } => {
            store
                .apply_config(
                    &[ConfigChange::DeleteGroup { name: name.clone() }],
                    &actor,
                    &permissions_digest,
                    now,
                )
                .await?;
            println!("deleted group {name:?}");
            Ok(0)
        }
    }
}

async fn users(store: &SqlStore, command: UsersCommand, now: i64) -> Result<i32, CliError> {
    let actor = Actor::new("cli:users");
    let user_named = |name: &str| {
        let name = name.to_owned();
        async move {
            store
                .user_by_name(&name)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("no user named {name:?}")))
        }
    };
    match command {
        UsersCommand::List { limit, json } => {
            let list = store.users(limit, None).await?;
            if json {
                print_json(&list);
            } else {
                for u in &list {
                    println!(
                        "{}\tpermission version {}{}",
                        u.username,
                        u.permission_version,
                        if u.disabled { "\tdisabled" } else { "" }
                    );
                }
            }
            Ok(0)
        }
        UsersCommand::Show { name, json } => {
            let user = user_named(&name).await?;
            let memberships = store.memberships(user.id).await?;
            let access = crate::login::load_access(store, &memberships).await?;
            let groups: Vec<&str> = access.groups.iter().map(|g| g.name.as_str()).collect();
            let permissions = access.permission_names();
            if json {
                print_json(&serde_json::json!({
                    "user": user,
                    "groups": groups,
                    "permissions": permissions,
                    "has_running_sessions": user.has_running_sessions(now),
                }));
            } else {
                println!(
                    "{} (permission version {}{})",
                    user.username,
                    user.permission_version,
                    if user.disabled { ", disabled" } else { "" }
                );
                println!("groups: {}", groups.join(", "));
                println!("permissions: {}", permissions.join(", "));
            }
            Ok(0)
        }
        UsersCommand::Delete { name } => {
            store.delete_user(&name, &actor, now).await?;
            println!("deleted user {name:?}");
            Ok(0)
        }
        UsersCommand::RevokeSessions { name } => {
            store.revoke_sessions(&name, &actor, now).await?;
            println!("revoked every session of {name:?}");
            Ok(0)
        }
    }
}

async fn mapping(store: &SqlStore, command: MappingCommand, now: i64) -> Result<i32, CliError> {
    let actor = Actor::new("cli:mapping");
    match command {
        MappingCommand::List { provider, json } => {
            let config = store.load_config().await?;
            let list: Vec<_> = config
                .mappings
                .iter()
                .filter(|m| provider.as_ref().is_none_or(|p| *p == m.provider))
                .collect();
            if json {
                print_json(&list);
            } else {
                for m in list {
                    println!(
                        "{}\t{} -> {}\t{}",
                        m.id,
                        m.provider,
                        m.group.name,
                        if m.assign_all_users {
                            "assign all users".to_owned()
                        } else {
                            m.attributes.join(" | ")
                        }
                    );
                }
            }
            Ok(0)
        }
        MappingCommand::Add {
            provider,
            group,
            assign_all_users,
            attributes,
        } => {
            let record = store.provider(&provider).await?;
            if group == ALL_USERS {
                return Err(refused(
                    "All Users contains every user: a mapping to it would have no effect".into(),
                ));
            }
            if store.group_id(&group).await?.is_none() {
                return Err(CliError::Store(StoreError::NotFound(format!(
                    "no group named {group:?}"
                ))));
            }
            for a in &attributes {
                ValuePattern::compile(a, record.provider.kind.value_syntax())
                    .map_err(|e| refused(format!("attribute {a:?}: {e}")))?;
            }
            let mut attributes = attributes;
            attributes.sort();
            attributes.dedup();
            store
                .apply_config(
                    &[ConfigChange::CreateMapping {
                        provider: provider.clone(),
                        group: group.clone(),
                        assign_all_users,
                        attributes,
                    }],
                    &actor,
                    &permissions_digest,
                    now,
                )
                .await?;
            println!("mapped {provider:?} into {group:?}");
            Ok(0)
        }
        MappingCommand::Remove { id } => {
            let config = store.load_config().await?;
            let mapping = config
                .mappings
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| StoreError::NotFound(format!("no mapping with id {id}")))?;
            store
                .apply_config(
                    &[ConfigChange::DeleteMapping {
                        id,
                        provider: mapping.provider.clone(),
                        group: mapping.group.name.clone(),
                    }],
                    &actor,
                    &permissions_digest,
                    now,
                )
                .await?;
            println!("removed mapping {id}");
            Ok(0)
        }
    }
}
