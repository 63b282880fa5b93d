//! The operator's side of the admin API: a frontend over the admin layer (`crate::admin`),
//! which checks and audits every change exactly as for HTTP. The CLI holds the database, so
//! it acts with every permission; every change is written to the audit log as `cli:<command>`.

use clap::Subcommand;

use super::CliError;
use crate::admin::names::{unknown_in_store, Named};
use crate::admin::{self as admin_layer, AdminCaller, ApplyMode, ChangeOutcome};
use crate::store::admin::AdminStore;
use crate::store::{ConfigChange, ConfigStore, MembershipStore, SqlStore};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Groups: list, show, create, delete.
    #[command(subcommand)]
    Groups(GroupsCommand),
    /// Users: list, show, disable, enable, delete, revoke sessions.
    #[command(subcommand, alias = "user")]
    Users(UsersCommand),
    /// Providers: list them (secrets are never stored in their options).
    #[command(subcommand, alias = "provider")]
    Providers(ProvidersCommand),
}

#[derive(Debug, Subcommand)]
pub enum GroupsCommand {
    /// Every group by name, with its priority.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A group with its permissions, settings, workspaces and members.
    Show {
        /// The group's name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create an empty group; its permissions and settings come from a state file or the API.
    Create {
        /// A unique name.
        name: String,
        /// What the group is for, shown to admins.
        #[arg(long, default_value = "")]
        description: String,
        /// Lower wins when groups define the same setting.
        #[arg(long, default_value_t = 100)]
        priority: i64,
    },
    /// Delete a group (system groups never are); its members lose it, each with an audit row.
    Delete {
        /// The group's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Users by name, with their permission version and whether they are disabled.
    List {
        /// At most this many users, in name order.
        #[arg(long, default_value_t = 1000)]
        limit: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// A user with their groups and effective permissions.
    Show {
        /// The user's name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: they cannot sign in or refresh, and their sessions end.
    Disable {
        /// The user's name.
        name: String,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's name.
        name: String,
    },
    /// Delete a user with their memberships, last-seen attributes and sessions.
    Delete {
        /// The user's name.
        name: String,
    },
    /// Revoke every session of the user: no earlier token authenticates or refreshes.
    RevokeSessions {
        /// The user's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Every provider with its kind and options (secrets redacted).
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum MappingCommand {
    /// The mappings, with their ids (which `remove` takes).
    List {
        /// Only this provider's mappings.
        #[arg(long)]
        provider: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Map a provider's users into a group: everyone, or those carrying a group attribute.
    Add {
        /// The provider whose users are mapped.
        #[arg(long)]
        provider: String,
        /// The group they are mapped into.
        #[arg(long)]
        group: String,
        /// Every user of the provider, whatever their group attributes.
        #[arg(long, conflicts_with = "attributes")]
        assign_all_users: bool,
        /// A group attribute value (exact, glob:PATTERN or regex:PATTERN). Repeat for several.
        #[arg(long = "attribute", required_unless_present = "assign_all_users")]
        attributes: Vec<String>,
    },
    /// Remove a mapping by id; the memberships it alone granted go.
    Remove {
        /// The mapping's id, as `mappings list` shows it.
        id: i64,
    },
}

fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// Applies changes through the admin layer as `cli:<command>`.
async fn apply(
    store: &SqlStore,
    command: &str,
    changes: Vec<ConfigChange>,
    now: i64,
) -> Result<ChangeOutcome, CliError> {
    Ok(admin_layer::apply_changes(
        store,
        &AdminCaller::command_line(command),
        changes,
        ApplyMode::default(),
        now,
    )
    .await?)
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
                            "options": admin_layer::redact(&p.options),
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
    }
}

async fn groups(store: &SqlStore, command: GroupsCommand, now: i64) -> Result<i32, CliError> {
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
            let Some(record) = store.group_by_name(&name).await? else {
                return Err(unknown_in_store(store, Named::Group, &name).await.into());
            };
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
            apply(
                store,
                "groups",
                vec![ConfigChange::CreateGroup {
                    name: name.clone(),
                    description,
                    priority,
                }],
                now,
            )
            .await?;
            println!("created group {name:?}");
            Ok(0)
        }
        GroupsCommand::Delete { name } => {
            apply(
                store,
                "groups",
                vec![ConfigChange::DeleteGroup { name: name.clone() }],
                now,
            )
            .await?;
            println!("deleted group {name:?}");
            Ok(0)
        }
    }
}

async fn users(store: &SqlStore, command: UsersCommand, now: i64) -> Result<i32, CliError> {
    let caller = AdminCaller::command_line("users");
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
            let user = admin_layer::users::user_named(store, &name).await?;
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
        UsersCommand::Disable { name } => set_disabled(store, &caller, &name, true, now).await,
        UsersCommand::Enable { name } => set_disabled(store, &caller, &name, false, now).await,
        UsersCommand::Delete { name } => {
            admin_layer::users::delete(store, &caller, &name, now).await?;
            println!("deleted user {name:?}");
            Ok(0)
        }
        UsersCommand::RevokeSessions { name } => {
            admin_layer::users::revoke_sessions(store, &caller, &name, now).await?;
            println!("revoked every session of {name:?}");
            Ok(0)
        }
    }
}

async fn set_disabled(
    store: &SqlStore,
    caller: &AdminCaller,
    name: &str,
    disable: bool,
    now: i64,
) -> Result<i32, CliError> {
    admin_layer::users::set_disabled(store, caller, name, disable, now).await?;
    println!(
        "user {name:?} {}",
        if disable { "disabled" } else { "enabled" }
    );
    Ok(0)
}

pub(super) async fn mapping(
    store: &SqlStore,
    command: MappingCommand,
    now: i64,
) -> Result<i32, CliError> {
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
            let outcome = apply(
                store,
                "mapping",
                vec![ConfigChange::CreateMapping {
                    provider: provider.clone(),
                    group: group.clone(),
                    assign_all_users,
                    attributes,
                }],
                now,
            )
            .await?;
            super::print_reevaluations(&outcome.reevaluations, false);
            println!("mapped {provider:?} into {group:?}");
            Ok(0)
        }
        MappingCommand::Remove { id } => {
            let outcome = apply(
                store,
                "mapping",
                vec![ConfigChange::DeleteMapping {
                    id,
                    provider: String::new(),
                    group: String::new(),
                }],
                now,
            )
            .await?;
            super::print_reevaluations(&outcome.reevaluations, false);
            for provider in &outcome.ldap_providers_to_sync {
                println!(
                    "LDAP provider {provider:?}: the memberships the mapping granted go at its \
                     next sync (idsync sync {provider})."
                );
            }
            println!("removed mapping {id}");
            Ok(0)
        }
    }
}
