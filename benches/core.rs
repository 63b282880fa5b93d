//! Benchmarks of what one sign-in costs: evaluating a provider's mappings against the user's group
//! values, resolving permissions and settings across the user's groups, and the whole login
//! transaction on a file-backed SQLite database.
//!
//! Each figure has a baseline beside it where one means something: the irreducible part of the
//! same work (hashing and probing strings; a minimal write transaction on the same database), so
//! the results read as ratios that survive a change of machine better than raw times do.
//!
//! `scripts/bench.sh` runs these and writes BENCHMARKS.md from criterion's estimates; the ids used
//! here are the directory names it reads, so rename them in both places.

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, SamplingMode};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

use idsync::clock;
use idsync::config::TokenConfig;
use idsync::declarative;
use idsync::login::{self, VerifiedIdentity};
use idsync::model::access;
use idsync::model::group::{GroupRef, ALL_USERS, ALL_USERS_PRIORITY};
use idsync::model::mapping::{
    self, Action, CurrentMembership, Mapping, MembershipSource, ProviderKind, ProviderRef,
};
use idsync::model::matcher::{comparison_form, ValueSyntax};
use idsync::model::permissions::{self, Grant, Permission};
use idsync::model::settings::{self, FileMapping, GroupSettings, SettingValue};
use idsync::signer::Signer;
use idsync::store::{Actor, ConfigStore, GroupRecord, MappingRecord, SqlStore};

// =============================================================================================
// 1. Mapping evaluation: one user, 1,000 mappings over 300 groups, 200 group values.
// =============================================================================================

const EVAL_GROUPS: usize = 300;
const EVAL_MAPPINGS: usize = 1000;
const EVAL_VALUES: usize = 200;

/// Mappings (by index) with an exact pattern the user carries a value for. Mapping `m` targets
/// group `m % 300`, so these are also the indices of twelve distinct groups.
const MATCHED_EXACT: [usize; 12] = [0, 26, 52, 78, 104, 130, 156, 182, 208, 234, 261, 289];
/// Glob mappings the user matches (groups 43 and 163).
const MATCHED_GLOB: [usize; 2] = [43, 463];
/// The regex mapping the user matches (group 237).
const MATCHED_REGEX: usize = 237;

#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Exact,
    Glob,
    Regex,
}

/// Most mappings name exact groups; one in twenty is a glob and one in a hundred a regex, which
/// is about what directories that grew project and regional groups end up with.
fn shape(m: usize) -> Shape {
    if m % 100 == 37 {
        Shape::Regex
    } else if m % 20 == 3 {
        Shape::Glob
    } else {
        Shape::Exact
    }
}

/// How an admin writes the patterns of mapping `m`. DN patterns are written with upper-case
/// attribute types and the values arrive lower-case with spaces, so the DN normalisation does
/// real work instead of passing strings through.
fn eval_patterns(kind: ProviderKind, m: usize) -> Vec<String> {
    let ldap = kind == ProviderKind::Ldap;
    match shape(m) {
        Shape::Exact if ldap => {
            let mut patterns = vec![format!("CN=Team {m:04},OU=Groups,DC=Example,DC=com")];
            // Some mappings list a second group that grants the same access.
            if m % 7 == 0 {
                patterns.push(format!("CN=Team {m:04} Leads,OU=Groups,DC=Example,DC=com"));
            }
            patterns
        }
        Shape::Exact => {
            let mut patterns = vec![format!("team-{m:04}")];
            if m % 7 == 0 {
                patterns.push(format!("team-{m:04}-leads"));
            }
            patterns
        }
        Shape::Glob if ldap => vec![format!("glob:cn=proj-{m}-*,ou=projects,dc=example,dc=com")],
        Shape::Glob => vec![format!("glob:proj-{m}-*")],
        Shape::Regex if ldap => vec![format!(
            "regex:cn=region-{m}-(emea|apac|amer)-[0-9]+,ou=regions,dc=example,dc=com"
        )],
        Shape::Regex => vec![format!("regex:region-{m}-(emea|apac|amer)-[0-9]+")],
    }
}

/// The group values the provider sends: 15 that match (12 exact, 2 glob, 1 regex), one that is
/// not a DN (an LDAP provider reports it as unusable), and distribution lists that match nothing.
fn eval_values(kind: ProviderKind) -> Vec<String> {
    let ldap = kind == ProviderKind::Ldap;
    let mut values: Vec<String> = Vec::with_capacity(EVAL_VALUES);
    for m in MATCHED_EXACT {
        values.push(if ldap {
            format!("cn=team {m:04}, ou=groups, dc=example, dc=com")
        } else {
            format!("team-{m:04}")
        });
    }
    for m in MATCHED_GLOB {
        values.push(if ldap {
            format!("CN=Proj-{m}-Website,OU=Projects,DC=example,DC=com")
        } else {
            format!("proj-{m}-website")
        });
    }
    values.push(if ldap {
        format!("CN=Region-{MATCHED_REGEX}-EMEA-7,OU=Regions,DC=example,DC=com")
    } else {
        format!("region-{MATCHED_REGEX}-emea-7")
    });
    values.push("Domain Users".to_string());
    let mut j = 0;
    while values.len() < EVAL_VALUES {
        values.push(if ldap {
            format!("CN=dl-{j:03}-all-staff,OU=Distribution Lists,OU=Exchange,DC=example,DC=com")
        } else {
            format!("dl-{j:03}-all-staff")
        });
        j += 1;
    }
    // Providers send groups in directory order, not sorted.
    values.reverse();
    values
}

fn eval_group(g: usize) -> GroupRef {
    GroupRef {
        id: 100 + g as i64,
        name: format!("Team {g:03}"),
        priority: 100 + (g % 10) as i64 * 10,
        is_system: false,
    }
}

fn mapping_id(m: usize) -> i64 {
    m as i64 + 1
}

struct EvalScenario {
    provider: ProviderRef,
    records: Vec<MappingRecord>,
    mappings: Vec<Mapping>,
    values: Vec<String>,
    current: Vec<CurrentMembership>,
    /// The usable values in comparison form, for the baseline.
    forms: Vec<String>,
    /// One exact string per mapping, in comparison form, for the baseline.
    probes: Vec<String>,
}

fn eval_scenario(kind: ProviderKind) -> EvalScenario {
    let provider = ProviderRef {
        id: 1,
        name: format!("corp-{}", kind.as_str()),
        kind,
        remove_manual_memberships: true,
    };
    let records: Vec<MappingRecord> = (0..EVAL_MAPPINGS)
        .map(|m| MappingRecord {
            id: mapping_id(m),
            provider_id: provider.id,
            provider: provider.name.clone(),
            group: eval_group(m % EVAL_GROUPS),
            assign_all_users: false,
            attributes: eval_patterns(kind, m),
        })
        .collect();
    let mappings = login::compile_mappings(&provider, &records).expect("patterns compile");
    let values = eval_values(kind);

    // Ten current memberships: five mapped and one manual that stay, three mapped and one
    // manual that go.
    let mapped = |m: usize| CurrentMembership {
        group: eval_group(m % EVAL_GROUPS),
        source: MembershipSource::Mapping {
            provider_id: provider.id,
            mapping_id: mapping_id(m),
        },
    };
    let manual = |g: usize| CurrentMembership {
        group: eval_group(g),
        source: MembershipSource::Manual,
    };
    let current = vec![
        mapped(0),
        mapped(26),
        mapped(52),
        mapped(78),
        mapped(43),
        manual(104),
        mapped(7),
        mapped(99),
        mapped(150),
        manual(200),
    ];

    let syntax = kind.value_syntax();
    let forms = values
        .iter()
        .filter_map(|v| comparison_form(v, syntax).ok())
        .collect();
    let probes = (0..EVAL_MAPPINGS)
        .map(|m| {
            let exact = match kind {
                ProviderKind::Ldap => format!("CN=Team {m:04},OU=Groups,DC=Example,DC=com"),
                _ => format!("team-{m:04}"),
            };
            comparison_form(&exact, syntax).expect("probe is a DN")
        })
        .collect();

    let scenario = EvalScenario {
        provider,
        records,
        mappings,
        values,
        current,
        forms,
        probes,
    };
    check_eval_scenario(&scenario);
    scenario
}

/// The figures are only worth something if the data does what the names say.
fn check_eval_scenario(s: &EvalScenario) {
    let evaluation = mapping::evaluate(&s.provider, &s.mappings, &s.values, &s.current);
    let count = |action: Action| {
        evaluation
            .decisions
            .iter()
            .filter(|d| d.action == action)
            .count()
    };
    assert_eq!(evaluation.decisions.len(), EVAL_GROUPS);
    assert_eq!(count(Action::Add), 9, "additions");
    assert_eq!(count(Action::Keep), 6, "kept");
    assert_eq!(count(Action::Remove), 4, "removals");
    let unusable = usize::from(s.provider.kind == ProviderKind::Ldap);
    assert_eq!(evaluation.unusable_values.len(), unusable);
    assert_eq!(baseline_probe(&s.forms, &s.probes), MATCHED_EXACT.len());
    let patterns: usize = s.records.iter().map(|r| r.attributes.len()).sum();
    assert!(patterns > EVAL_MAPPINGS);
}

/// The irreducible work of an evaluation: every value hashed once, every mapping probed once.
fn baseline_probe(values: &[String], probes: &[String]) -> usize {
    let set: HashSet<&str> = values.iter().map(String::as_str).collect();
    probes.iter().filter(|p| set.contains(p.as_str())).count()
}

fn bench_evaluate(c: &mut Criterion) {
    let ldap = eval_scenario(ProviderKind::Ldap);
    let oidc = eval_scenario(ProviderKind::Oidc);

    let mut group = c.benchmark_group("evaluate");
    quick(&mut group);
    for (name, s) in [("ldap", &ldap), ("oidc", &oidc)] {
        group.bench_function(format!("{name}_1000_mappings_200_values"), |b| {
            b.iter(|| {
                mapping::evaluate(
                    black_box(&s.provider),
                    black_box(&s.mappings),
                    black_box(&s.values),
                    black_box(&s.current),
                )
            })
        });
        group.bench_function(
            format!("baseline_hashset_200_values_1000_probes_{name}"),
            |b| b.iter(|| baseline_probe(black_box(&s.forms), black_box(&s.probes))),
        );
    }
    // Breakdown of the LDAP figure: the DN parsing it starts with.
    group.bench_function("ldap_normalise_200_values", |b| {
        b.iter(|| {
            black_box(&ldap.values)
                .iter()
                .filter_map(|v| comparison_form(v, ValueSyntax::Dn).ok())
                .count()
        })
    });
    // Not part of `evaluate`, but the login path compiles every mapping of the provider on
    // every sign-in before evaluating, so its cost belongs next to the evaluation's.
    group.bench_function("ldap_compile_1000_mappings", |b| {
        b.iter(|| login::compile_mappings(black_box(&ldap.provider), black_box(&ldap.records)))
    });
    group.finish();
}

// =============================================================================================
// 2. Access resolution: permissions and settings of a user in 50 groups.
// =============================================================================================

const RESOLVE_GROUPS: usize = 50;

/// Permission families a department is given, each a View with what builds on it.
const FAMILIES: [&[&str]; 10] = [
    &["Images View", "Images Modify", "Images Create"],
    &["Sessions View", "Sessions Delete"],
    &["Agents View", "Agents Modify"],
    &["Staging View", "Staging Modify", "Staging Create"],
    &["Casting View", "Casting Modify"],
    &["Webfilters View", "Webfilters Modify"],
    &["DevAPI View", "DevAPI Create"],
    &["Reports View"],
    &["Zones View", "Zones Modify"],
    &["Servers View", "Servers Modify"],
];

/// Grants whose requirements no group in the scenario holds (System View, Users View, Groups
/// View, Server Pools View, VM Provider View): they stay ineffective and are reported as such.
const UNMET: [&str; 5] = [
    "Licenses View",
    "Users Modify",
    "Groups Modify System",
    "Autoscale View",
    "VM Provider Modify",
];

const WORKSPACES: [&str; 20] = [
    "Chrome",
    "Firefox",
    "VS Code",
    "Terminal",
    "LibreOffice",
    "GIMP",
    "Inkscape",
    "Thunderbird",
    "Slack",
    "Zoom",
    "Postman",
    "DBeaver",
    "IntelliJ IDEA",
    "RStudio",
    "Jupyter",
    "Blender",
    "Audacity",
    "Signal",
    "Obsidian",
    "Tor Browser",
];

fn dept_group(g: usize) -> GroupRef {
    GroupRef {
        id: 1000 + g as i64,
        name: format!("Dept {g:02}"),
        // Eight priority levels over fifty groups: plenty of ties, decided by name.
        priority: 100 + (g % 8) as i64 * 10,
        is_system: false,
    }
}

fn all_users_group() -> GroupRef {
    GroupRef {
        id: 1,
        name: ALL_USERS.to_string(),
        priority: ALL_USERS_PRIORITY,
        is_system: true,
    }
}

/// Two permission families (3 to 6 grants), and in one group out of five a grant whose
/// requirement nobody holds.
fn dept_permissions(g: usize) -> Vec<&'static str> {
    let mut names: Vec<&str> = FAMILIES[g % 10].to_vec();
    names.extend_from_slice(FAMILIES[(g * 3 + 1) % 10]);
    if g % 5 == 0 {
        names.push(UNMET[(g / 5) % UNMET.len()]);
    }
    names.sort_unstable();
    names.dedup();
    names
}

/// Five or six settings from the catalogue, and shared volumes in one group out of three (the
/// container paths collide across groups, so the overriding rule has work to do).
fn dept_settings(g: usize) -> BTreeMap<String, Value> {
    let mut s = BTreeMap::new();
    s.insert("allow_kasm_downloads".to_string(), json!(g % 2 == 0));
    s.insert("allow_kasm_clipboard_down".to_string(), json!(g % 3 != 0));
    s.insert("keepalive_interval".to_string(), json!(60 + 10 * (g % 20)));
    s.insert("idle_disconnect".to_string(), json!(10 + g % 30));
    let (name, value) = match g % 4 {
        0 => ("max_kasms_per_user", json!(1 + g % 5)),
        1 => (
            "usage_limit",
            json!({"type": "per_user", "interval": "monthly", "hours": 40 + g}),
        ),
        2 => ("web_filter_policy", json!(format!("Policy {}", g % 3))),
        _ => ("session_time_limit", json!(14_400)),
    };
    s.insert(name.to_string(), value);
    if g % 3 == 0 {
        s.insert(
            "volume_mapping".to_string(),
            json!({
                format!("/srv/shares/dept-{g:02}"): {
                    "bind": "/home/kasm-user/department", "mode": "rw",
                    "uid": 1000, "gid": 1000, "required": false, "skip_check": false
                },
                format!("/srv/scratch/dept-{g:02}"): {
                    "bind": format!("/scratch/dept-{g:02}"), "mode": "rw",
                    "required": false, "skip_check": true
                },
                "/srv/tools": {
                    "bind": "/opt/tools", "mode": "ro", "required": true, "skip_check": false
                }
            }),
        );
    }
    s
}

/// Every other group places a browser policy (one destination shared by all of them) and a file
/// of its own.
fn dept_file_mappings(g: usize) -> Vec<FileMapping> {
    if g % 2 != 0 {
        return Vec::new();
    }
    vec![
        FileMapping {
            destination: "/etc/opt/chrome/policies/managed/bookmarks.json".to_string(),
            name: format!("Dept {g:02} bookmarks"),
            description: "Managed bookmarks".to_string(),
            content: format!(
                r#"{{"ManagedBookmarks": [{{"name": "Wiki", "url": "https://wiki.example.com/dept-{g:02}"}}]}}"#
            ),
            executable: false,
            writable: false,
        },
        FileMapping {
            destination: format!("/etc/idsync/dept-{g:02}.conf"),
            name: "Department config".to_string(),
            description: String::new(),
            content: format!("department = {g}\nregion = emea\n"),
            executable: false,
            writable: g % 4 == 0,
        },
    ]
}

fn dept_workspaces(g: usize) -> Vec<String> {
    (0..2 + g % 3)
        .map(|k| WORKSPACES[(g + k * 7) % WORKSPACES.len()].to_string())
        .collect()
}

fn parse_settings(raw: &BTreeMap<String, Value>) -> BTreeMap<String, SettingValue> {
    raw.iter()
        .map(|(name, json)| {
            let spec = settings::lookup(name).expect("catalogue setting");
            let value = settings::parse_value(spec, json).expect("valid setting");
            (name.clone(), value)
        })
        .collect()
}

struct ResolveScenario {
    groups: Vec<GroupRef>,
    grants: Vec<Grant>,
    group_settings: Vec<GroupSettings>,
    /// The same groups as the store hands them to the login path (JSON values).
    records: Vec<GroupRecord>,
}

fn resolve_scenario() -> ResolveScenario {
    let mut records = vec![GroupRecord {
        group: all_users_group(),
        description: String::new(),
        permissions: vec!["User".to_string()],
        settings: settings::all_users_defaults()
            .into_iter()
            .map(|(name, value)| (name, value.to_json()))
            .collect(),
        file_mappings: BTreeMap::new(),
        workspaces: vec!["Chrome".to_string()],
    }];
    for g in 0..RESOLVE_GROUPS {
        records.push(GroupRecord {
            group: dept_group(g),
            description: String::new(),
            permissions: dept_permissions(g).into_iter().map(String::from).collect(),
            settings: dept_settings(g),
            file_mappings: dept_file_mappings(g)
                .into_iter()
                .map(|f| {
                    let json = serde_json::to_value(&f).expect("file mapping serialises");
                    (f.destination, json)
                })
                .collect(),
            workspaces: dept_workspaces(g),
        });
    }

    let groups = records.iter().map(|r| r.group.clone()).collect();
    let grants = records
        .iter()
        .flat_map(|r| {
            r.permissions.iter().map(|name| Grant {
                group: r.group.clone(),
                permission: name.parse::<Permission>().expect("catalogue permission"),
            })
        })
        .collect();
    let group_settings = records
        .iter()
        .map(|r| GroupSettings {
            group: r.group.clone(),
            settings: parse_settings(&r.settings),
            file_mappings: r
                .file_mappings
                .values()
                .map(|json| serde_json::from_value(json.clone()).expect("file mapping"))
                .collect(),
            workspaces: r.workspaces.clone(),
        })
        .collect();

    let scenario = ResolveScenario {
        groups,
        grants,
        group_settings,
        records,
    };
    check_resolve_scenario(&scenario);
    scenario
}

fn check_resolve_scenario(s: &ResolveScenario) {
    let resolved = access::resolve(&s.groups, &s.grants, &s.group_settings);
    assert_eq!(resolved.groups.len(), RESOLVE_GROUPS + 1);
    assert!(!resolved.permissions.ineffective().is_empty());
    assert!(
        resolved.settings.warnings.is_empty(),
        "{:?}",
        resolved.settings.warnings
    );
    assert!(!resolved.settings.volume_mapping.is_empty());
    assert!(resolved
        .settings
        .volume_mapping
        .iter()
        .any(|v| !v.overridden.is_empty()));
    assert!(resolved
        .settings
        .file_mappings
        .iter()
        .any(|f| !f.overridden.is_empty()));
    let from_records = login::access_from_records(&s.records).expect("records resolve");
    assert_eq!(from_records.settings, resolved.settings);
    assert_eq!(from_records.permissions, resolved.permissions);
}

fn bench_resolve(c: &mut Criterion) {
    let s = resolve_scenario();
    let mut group = c.benchmark_group("resolve");
    quick(&mut group);
    group.bench_function("access_50_groups", |b| {
        b.iter(|| {
            access::resolve(
                black_box(&s.groups),
                black_box(&s.grants),
                black_box(&s.group_settings),
            )
        })
    });
    // Breakdown: the two halves of `access::resolve`.
    group.bench_function("permissions_only_50_groups", |b| {
        b.iter(|| permissions::effective(black_box(&s.grants)))
    });
    group.bench_function("settings_only_50_groups", |b| {
        b.iter(|| settings::resolve(black_box(&s.group_settings)))
    });
    // What the login path actually runs: stored JSON values parsed, then resolved.
    group.bench_function("from_stored_records_50_groups", |b| {
        b.iter(|| login::access_from_records(black_box(&s.records)))
    });
    group.finish();
}

// =============================================================================================
// 3. The login path on a file-backed SQLite database.
// =============================================================================================

const LOGIN_GROUPS: usize = 50;
const LOGIN_PROVIDER: &str = "corp-ldap";

fn staff_dn(g: usize) -> String {
    format!("CN=Dept {g:02} Staff,OU=Groups,DC=example,DC=com")
}

/// Two mappings per group (100 in all): the staff group, and a second one naming the leads and
/// either an alumni group, a glob (one group in ten) or a regex (one group).
fn login_mappings(g: usize) -> Value {
    let extra = if g == 25 {
        "regex:cn=dept-25-(emea|apac)-[a-z]+,ou=groups,dc=example,dc=com".to_string()
    } else if g % 10 == 0 {
        format!("glob:cn=dept-{g:02}-project-*,ou=projects,dc=example,dc=com")
    } else {
        format!("CN=Dept {g:02} Alumni,OU=Groups,DC=example,DC=com")
    };
    json!([
        {"provider": LOGIN_PROVIDER, "attributes": [staff_dn(g)]},
        {
            "provider": LOGIN_PROVIDER,
            "attributes": [format!("CN=Dept {g:02} Leads,OU=Groups,DC=example,DC=com"), extra]
        }
    ])
}

/// The configuration as a state file, so it goes through the same validation and planning as
/// `idsync apply`.
fn login_state_file() -> String {
    let groups: Vec<Value> = (0..LOGIN_GROUPS)
        .map(|g| {
            let group = dept_group(g);
            json!({
                "name": group.name,
                "priority": group.priority,
                "permissions": dept_permissions(g),
                "settings": dept_settings(g),
                "file_mappings": dept_file_mappings(g),
                "workspaces": dept_workspaces(g),
                "mappings": login_mappings(g),
            })
        })
        .collect();
    let state = json!({
        "providers": [{"name": LOGIN_PROVIDER, "kind": "ldap"}],
        "groups": groups,
    });
    toml::to_string(&state).expect("state serialises as TOML")
}

/// Group values of an identity: the staff groups of `depts` and twenty distribution lists that
/// no mapping names. Last-seen attributes carry the same list, as an LDAP source records it.
fn login_identity(username: &str, depts: std::ops::Range<usize>) -> VerifiedIdentity {
    let mut group_values: Vec<String> = depts.map(staff_dn).collect();
    group_values.extend(
        (0..20).map(|j| format!("CN=dl-{j:02}-all,OU=Distribution Lists,DC=example,DC=com")),
    );
    VerifiedIdentity {
        provider: LOGIN_PROVIDER.to_string(),
        username: username.to_string(),
        attributes: json!({
            "dn": format!("uid={username},ou=people,dc=example,dc=com"),
            "mail": format!("{username}@example.com"),
            "displayName": username,
            "memberOf": group_values,
        }),
        group_values,
    }
}

struct LoginScenario {
    // Kept so the database outlives the benchmark.
    _dir: tempfile::TempDir,
    store: SqlStore,
    signer: Signer,
    /// Staff of departments 0–11, then 4–15: switching removes four groups and adds four.
    alternating: [VerifiedIdentity; 2],
    /// Signs in with the same groups every time.
    steady: VerifiedIdentity,
}

async fn login_scenario() -> LoginScenario {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = SqlStore::open(&url).await.expect("database opens");
    let now = clock::now_ms();

    let desired = declarative::parse_state("bench-state.toml", &login_state_file())
        .unwrap_or_else(|e| panic!("state file: {e}"));
    let current = store.load_config().await.expect("config loads");
    let plan = declarative::plan(&current, &desired);
    store
        .apply_config(
            &plan.changes,
            &Actor::new("bench:setup"),
            &access::permissions_digest,
            now,
        )
        .await
        .expect("config applies");
    let config = store.load_config().await.expect("config loads");
    assert_eq!(config.mappings.len(), 2 * LOGIN_GROUPS);

    let signer = Signer::load(&store, &TokenConfig::default(), now / 1000)
        .await
        .expect("signer loads");

    // Baseline table: a scratch row written and removed in each baseline transaction.
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_scratch (id INTEGER PRIMARY KEY, note TEXT NOT NULL)",
    )
    .execute(store.pool())
    .await
    .expect("scratch table");

    let scenario = LoginScenario {
        _dir: dir,
        store,
        signer,
        alternating: [
            login_identity("alice", 0..12),
            login_identity("alice", 4..16),
        ],
        steady: login_identity("bob", 0..12),
    };
    check_login_scenario(&scenario).await;
    scenario
}

/// Leaves alice on her first identity and bob signed in once, and checks that every switch
/// writes eight membership changes and that a steady sign-in writes none.
async fn check_login_scenario(s: &LoginScenario) {
    let first = sign_in(s, &s.alternating[0]).await;
    assert_eq!(first.outcome.changes_written, 12);
    for identity in [&s.alternating[1], &s.alternating[0]] {
        let signed = sign_in(s, identity).await;
        assert_eq!(signed.outcome.changes_written, 8);
        assert!(!signed.token.is_empty());
    }
    sign_in(s, &s.steady).await;
    let again = sign_in(s, &s.steady).await;
    assert_eq!(again.outcome.changes_written, 0);
    assert_eq!(again.outcome.memberships_after.len(), 12);
}

async fn sign_in(s: &LoginScenario, identity: &VerifiedIdentity) -> login::SignedLogin {
    login::login(&s.store, &s.signer, identity, clock::now_ms())
        .await
        .expect("login succeeds")
}

/// The smallest write a login could be: one immediate transaction (as the store begins its own)
/// with one insert and one delete, committed.
async fn minimal_write_transaction(store: &SqlStore) {
    let mut tx = store
        .pool()
        .begin_with("BEGIN IMMEDIATE")
        .await
        .expect("begin");
    sqlx::query("INSERT INTO bench_scratch (id, note) VALUES ($1, $2)")
        .bind(1_i64)
        .bind("baseline")
        .execute(&mut *tx)
        .await
        .expect("insert");
    sqlx::query("DELETE FROM bench_scratch WHERE id = $1")
        .bind(1_i64)
        .execute(&mut *tx)
        .await
        .expect("delete");
    tx.commit().await.expect("commit");
}

fn bench_login(c: &mut Criterion) {
    let rt = Runtime::new().expect("tokio runtime");
    let s = rt.block_on(login_scenario());

    let mut group = c.benchmark_group("login");
    // A login takes milliseconds: fewer, flat samples keep the run short without losing much.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(30)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));

    // After the check alice holds her first identity, so the first timed call switches.
    let mut turn = 0usize;
    group.bench_function("sqlite_apply_8_membership_changes", |b| {
        b.iter(|| {
            turn += 1;
            rt.block_on(sign_in(&s, &s.alternating[turn % 2]))
        })
    });
    group.bench_function("sqlite_no_change", |b| {
        b.iter(|| rt.block_on(sign_in(&s, &s.steady)))
    });
    group.bench_function("baseline_sqlite_write_tx_insert_delete", |b| {
        b.iter(|| rt.block_on(minimal_write_transaction(&s.store)))
    });
    group.finish();

    rt.block_on(s.store.close());
}

// =============================================================================================

/// Settings for the microsecond-scale benchmarks: short, since their spread is small.
fn quick(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
}

fn config() -> Criterion {
    Criterion::default().without_plots().nresamples(20_000)
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_evaluate, bench_resolve, bench_login
}
criterion_main!(benches);
