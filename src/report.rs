//! Reports for admins: what a mapping test (or a login) did and why, as text and as a stable
//! JSON document (described in the README), plus plan and audit renderings.

use serde::Serialize;

use crate::declarative::Plan;
use crate::login::{LoginOutcome, VerifiedIdentity};
use crate::model::group::GroupRef;
use crate::model::mapping::{
    Action, CurrentMembership, GroupDecision, MembershipSource, UnusableValue,
};
use crate::model::permissions::IneffectiveGrant;
use crate::model::settings::ResolvedSettings;
use crate::store::{AuditEntry, SyncRun};
use crate::sync::SyncOutcome;

/// Version of the JSON document; bumped on any incompatible change.
pub const REPORT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize)]
pub struct IdentityReport {
    pub version: u32,
    pub provider: ProviderSummary,
    pub user: UserSummary,
    pub decisions: Vec<DecisionReport>,
    pub unusable_values: Vec<UnusableValue>,
    pub groups_before: Vec<String>,
    pub groups_after: Vec<String>,
    pub permissions: PermissionsReport,
    pub settings: ResolvedSettings,
    pub changes_written: usize,
    /// What the admin should look at: a groups claim missing from a claims sample, a value
    /// that differs from a mapping's pattern only in case.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderSummary {
    pub name: String,
    pub kind: String,
    pub remove_manual_memberships: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserSummary {
    pub username: String,
    /// False when the user would be created by this login.
    pub exists: bool,
    pub group_values: Vec<String>,
    pub permission_version: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecisionReport {
    pub group: String,
    pub priority: i64,
    /// add, remove, keep, keep_manual or stay_out.
    pub action: Action,
    /// The reason in words.
    pub reason: String,
    /// The reason as data: which mapping, which value matched or which patterns did not.
    pub reason_detail: crate::model::mapping::Reason,
    pub source_before: Option<MembershipSource>,
    pub source_after: Option<MembershipSource>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PermissionsReport {
    /// Effective permissions with the groups each comes from.
    pub effective: Vec<PermissionSource>,
    /// Granted permissions that have no effect, with what is missing.
    pub ineffective: Vec<IneffectiveReport>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PermissionSource {
    pub permission: String,
    pub from: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IneffectiveReport {
    pub permission: String,
    pub groups: Vec<String>,
    pub missing: Vec<String>,
    pub reason: String,
}

fn names(groups: &[GroupRef]) -> Vec<String> {
    groups.iter().map(|g| g.name.clone()).collect()
}

fn membership_names(
    memberships: &[CurrentMembership],
    all_users: Option<&GroupRef>,
) -> Vec<String> {
    let mut groups: Vec<GroupRef> = memberships.iter().map(|m| m.group.clone()).collect();
    if let Some(all) = all_users {
        groups.push(all.clone());
    }
    groups.sort_by(|a, b| a.precedence_key().cmp(&b.precedence_key()));
    groups.dedup();
    names(&groups)
}

/// The values a test read, for the first line of the text report: all of a few, the first
/// of many.
fn listed_values(values: &[String]) -> String {
    const SHOWN: usize = 10;
    if values.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = values
        .iter()
        .take(SHOWN)
        .map(|v| format!("{v:?}"))
        .collect();
    let more = values.len().saturating_sub(SHOWN);
    format!(
        ": {}{}",
        shown.join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )
}

/// A group value that matched no mapping but equals an exact pattern of one when case is
/// ignored: values are compared as the provider sends them, so `devs` does not match `Devs`.
/// Pure.
fn case_only_differences(
    values: &[String],
    decisions: &[crate::model::mapping::GroupDecision],
) -> Vec<String> {
    use crate::model::mapping::Reason;
    let mut warnings = Vec::new();
    for decision in decisions {
        let Reason::NoMappingMatched { patterns, .. } = &decision.reason else {
            continue;
        };
        for pattern in patterns {
            if pattern.starts_with("glob:") || pattern.starts_with("regex:") {
                continue;
            }
            for value in values {
                if value != pattern && value.to_lowercase() == pattern.to_lowercase() {
                    warnings.push(format!(
                        "the value {value:?} differs only in case from {pattern:?}, a pattern of \
                         the mapping into {:?}; values are compared as sent, so it does not match",
                        decision.group.name
                    ));
                }
            }
        }
    }
    warnings
}

impl IdentityReport {
    pub fn new(identity: &VerifiedIdentity, existed: bool, outcome: &LoginOutcome) -> Self {
        let all_users = outcome.access.groups.iter().find(|g| g.is_all_users());
        let permissions = &outcome.access.permissions;
        IdentityReport {
            version: REPORT_VERSION,
            provider: ProviderSummary {
                name: outcome.provider.name.clone(),
                kind: outcome.provider.kind.as_str().to_string(),
                remove_manual_memberships: outcome.provider.remove_manual_memberships,
            },
            user: UserSummary {
                username: outcome.user.username.clone(),
                exists: existed,
                group_values: identity.group_values.clone(),
                permission_version: outcome.permission_version,
            },
            decisions: outcome
                .evaluation
                .decisions
                .iter()
                .map(decision_report)
                .collect(),
            unusable_values: outcome.evaluation.unusable_values.clone(),
            groups_before: membership_names(&outcome.memberships_before, all_users),
            groups_after: membership_names(&outcome.memberships_after, all_users),
            permissions: PermissionsReport {
                effective: permissions
                    .effective()
                    .into_iter()
                    .map(|p| PermissionSource {
                        permission: p.name().to_string(),
                        from: names(permissions.effective_via(p)),
                    })
                    .collect(),
                ineffective: permissions
                    .ineffective()
                    .iter()
                    .map(ineffective_report)
                    .collect(),
            },
            settings: outcome.access.settings.clone(),
            changes_written: outcome.changes_written,
            warnings: case_only_differences(&identity.group_values, &outcome.evaluation.decisions),
        }
    }

    /// The report as text for a terminal.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let push = |out: &mut String, line: String| {
            out.push_str(&line);
            out.push('\n');
        };
        push(
            &mut out,
            format!(
                "Provider {} ({}); user {}{}; {} group value(s){}",
                self.provider.name,
                self.provider.kind,
                self.user.username,
                if self.user.exists { "" } else { " (new)" },
                self.user.group_values.len(),
                listed_values(&self.user.group_values)
            ),
        );
        for warning in &self.warnings {
            push(&mut out, format!("warning: {warning}"));
        }
        push(&mut out, String::new());
        push(&mut out, "Mappings:".into());
        if self.decisions.is_empty() {
            push(
                &mut out,
                "  (no group has a mapping from this provider)".into(),
            );
        }
        for d in &self.decisions {
            let (mark, word) = match d.action {
                Action::Add => ("+", "add"),
                Action::Remove => ("-", "remove"),
                Action::Keep => ("=", "keep"),
                Action::KeepManual => ("=", "keep (manual)"),
                Action::StayOut => (" ", "not a member"),
            };
            push(
                &mut out,
                format!("  {mark} {word:<13} {:<24} {}", d.group, d.reason),
            );
        }
        for u in &self.unusable_values {
            push(
                &mut out,
                format!("  ! ignored value {:?}: {}", u.value, u.problem),
            );
        }
        push(&mut out, String::new());
        push(
            &mut out,
            format!("Groups before: {}", self.groups_before.join(", ")),
        );
        push(
            &mut out,
            format!("Groups after:  {}", self.groups_after.join(", ")),
        );
        push(&mut out, String::new());
        push(&mut out, "Effective permissions:".into());
        for p in &self.permissions.effective {
            push(
                &mut out,
                format!("  {:<32} from {}", p.permission, p.from.join(", ")),
            );
        }
        if !self.permissions.ineffective.is_empty() {
            push(&mut out, "Ineffective grants:".into());
            for p in &self.permissions.ineffective {
                push(
                    &mut out,
                    format!(
                        "  ! {} (group {}): {}",
                        p.permission,
                        p.groups.join(", "),
                        p.reason
                    ),
                );
            }
        }
        push(&mut out, String::new());
        out.push_str(&render_settings(&self.settings));
        out.trim_end().to_string()
    }
}

fn decision_report(d: &GroupDecision) -> DecisionReport {
    DecisionReport {
        group: d.group.name.clone(),
        priority: d.group.priority,
        action: d.action,
        reason: d.reason.to_string(),
        reason_detail: d.reason.clone(),
        source_before: d.source_before,
        source_after: d.source_after,
    }
}

fn ineffective_report(i: &IneffectiveGrant) -> IneffectiveReport {
    IneffectiveReport {
        permission: i.permission.name().to_string(),
        groups: names(&i.groups),
        missing: i.missing.iter().map(|p| p.name().to_string()).collect(),
        reason: i.reason.clone(),
    }
}

/// The plan of `idsync apply` as a JSON document.
pub fn plan_json(plan: &Plan, dry_run: bool) -> serde_json::Value {
    let (created, changed, deleted) = plan.summary();
    serde_json::json!({
        "dry_run": dry_run,
        "changes": plan.changes,
        "summary": {"create": created, "change": changed, "delete": deleted},
        "warnings": plan.warnings,
    })
}

/// One audit entry on one line.
/// One refused sign-in, on one line.
pub fn security_event_line(e: &crate::store::SecurityEvent) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at.max(0) as u64);
    let mut parts = vec![format!(
        "#{} {} {} {} via {}",
        e.id,
        humantime::format_rfc3339_millis(at),
        e.reason,
        e.provider,
        e.evidence
    )];
    if let Some(u) = &e.username {
        parts.push(format!("user={u}"));
    }
    if let Some(c) = &e.client_address {
        parts.push(format!("client={c}"));
    }
    if let Some(id) = &e.correlation_id {
        parts.push(format!("correlation={id}"));
    }
    parts.push(format!("— {}", e.detail));
    parts.join(" ")
}

pub fn audit_line(e: &AuditEntry) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.at.max(0) as u64);
    let mut parts = vec![format!(
        "#{} {} {} by {}",
        e.id,
        humantime::format_rfc3339_millis(at),
        e.action,
        e.actor
    )];
    if let Some(u) = &e.username {
        parts.push(format!("user={u}"));
    }
    if let Some(g) = &e.group {
        parts.push(format!("group={g:?}"));
    }
    if let Some(p) = &e.provider {
        parts.push(format!("provider={p}"));
    }
    if let Some(m) = e.mapping_id {
        parts.push(format!("mapping=#{m}"));
    }
    if let Some(r) = &e.run_id {
        parts.push(format!("run={r}"));
    }
    parts.push(format!("— {}", e.reason));
    parts.join(" ")
}

/// The resolved settings as text: each value with the group it came from.
pub fn render_settings(settings: &ResolvedSettings) -> String {
    let mut out = String::from("Settings:\n");
    if settings.settings.is_empty() {
        out.push_str("  (none set)\n");
    }
    for (name, resolved) in &settings.settings {
        out.push_str(&format!(
            "  {name:<44} = {:<20} from {}\n",
            resolved.value.to_json().to_string(),
            resolved.source.name
        ));
    }
    if !settings.volume_mapping.is_empty() {
        out.push_str("Volume mappings:\n");
        for v in &settings.volume_mapping {
            out.push_str(&format!(
                "  {} -> {}   from {}\n",
                v.host_path,
                serde_json::to_string(&v.mount).unwrap_or_default(),
                v.source.name
            ));
        }
    }
    if !settings.file_mappings.is_empty() {
        out.push_str("File mappings:\n");
        for f in &settings.file_mappings {
            out.push_str(&format!(
                "  {} ({})   from {}\n",
                f.mapping.destination, f.mapping.name, f.source.name
            ));
        }
    }
    if !settings.workspaces.is_empty() {
        out.push_str("Workspaces:\n");
        for w in &settings.workspaces {
            out.push_str(&format!("  {}   from {}\n", w.name, w.source.name));
        }
    }
    for w in &settings.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// One sync run on one line: id (a dry run has none: it is not recorded), start, kind,
/// status, entries read, the memberships added and removed (written, or to be written while a
/// run waits for confirmation or is previewed), users skipped, the removal limit, the message.
pub fn sync_run_line(run: &SyncRun) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(run.started_at.max(0) as u64);
    let id = if run.dry_run {
        "(dry run, not recorded)"
    } else {
        run.id.as_str()
    };
    let applied = matches!(
        run.status.as_str(),
        "succeeded" | "abandoned" | "failed" | "running"
    );
    format!(
        "{} {} {} {}: {} users{}, +{} -{}{}{} (limit {}){}",
        id,
        humantime::format_rfc3339_seconds(at),
        run.kind,
        run.status,
        run.users_seen,
        if run.entries_read > 0 {
            format!(" ({} entries read)", run.entries_read)
        } else {
            String::new()
        },
        run.additions,
        run.removals,
        if applied { " applied" } else { " planned" },
        if run.skipped > 0 {
            format!(", {} skipped", run.skipped)
        } else {
            String::new()
        },
        run.removal_limit,
        run.error
            .as_deref()
            .map(|e| format!(" — {e}"))
            .unwrap_or_default()
    )
}

/// A sync outcome as text: the run, then the diff grouped by group.
pub fn render_sync(outcome: &SyncOutcome) -> String {
    use crate::model::sync::ChangeKind;
    let mut out = sync_run_line(&outcome.run);
    let mut by_group: std::collections::BTreeMap<&str, (Vec<&str>, Vec<&str>)> =
        std::collections::BTreeMap::new();
    for c in &outcome.changes {
        let Some(group) = &c.group else { continue };
        let entry = by_group.entry(group.name.as_str()).or_default();
        match c.kind {
            ChangeKind::Add => entry.0.push(&c.username),
            ChangeKind::Remove => entry.1.push(&c.username),
            _ => {}
        }
    }
    for (group, (added, removed)) in by_group {
        if !added.is_empty() {
            out.push_str(&format!("\n+ {group}: {}", added.join(", ")));
        }
        if !removed.is_empty() {
            out.push_str(&format!("\n- {group}: {}", removed.join(", ")));
        }
    }
    out
}
