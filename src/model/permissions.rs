//! Permissions: the catalogue, the dependencies between permissions, a user's effective
//! permissions across all their groups, lints for admins editing grants, and the special rules
//! that authorise admin actions on groups, users and images.
//!
//! A user's permissions are the union of the permissions granted to every group they belong to.
//! `Global Admin` holds every permission. Some permissions only work together with others (most
//! Modify/Create/Delete permissions need the matching View, Licenses View needs System View, …);
//! a granted permission whose requirements are not all effective is *ineffective*: it stays on
//! record, is reported with the reason, and is left out of the effective set that goes into tokens
//! and authorises actions.
//!
//! Requirements are static: they depend only on the permissions held. Conditions that depend on the
//! target of an action (a user with running sessions, a Global Admin, a system group, a group the
//! caller belongs to, resource fields of an image) are the special rules, checked by the `can_*`
//! functions when an action is attempted.
//!
//! Everything here is pure: no I/O, no clock, no shared state.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::group::GroupRef;

// ---------------------------------------------------------------------------------------------
// Catalogue
// ---------------------------------------------------------------------------------------------

/// Static information about one permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionInfo {
    pub permission: Permission,
    /// The display name, exactly as the product documents it (e.g. "Users Modify Admin").
    pub name: &'static str,
    /// The documented description, verbatim.
    pub description: &'static str,
    /// Permissions that must also be effective for this one to have any effect. A requirement is
    /// also met by a broader permission that covers it (see [`Permission::also_satisfied_by`]).
    pub requires: &'static [Permission],
}

/// Declares the `Permission` enum and the catalogue from one table. Each row is
/// `Variant, "Display Name", "Description", [generic View], [additional requirements];`
/// so the source shows which requirement comes from which rule.
macro_rules! permission_catalogue {
    ($(
        $variant:ident, $name:literal, $description:literal,
        [$($view:ident)?], [$($also:ident),*];
    )*) => {
        /// One permission of the catalogue. The declaration order is the catalogue order, which is
        /// also the order of every sorted list of permissions this module returns.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Permission {
            $( #[doc = $description] $variant, )*
        }

        impl Permission {
            /// Number of permissions in the catalogue.
            pub const COUNT: usize = [$(stringify!($variant)),*].len();
        }

        static CATALOGUE: [PermissionInfo; Permission::COUNT] = [
            $( PermissionInfo {
                permission: Permission::$variant,
                name: $name,
                description: $description,
                requires: &[$(Permission::$view,)? $(Permission::$also,)*],
            }, )*
        ];
    };
}

// How the documented dependencies were turned into this table.
//
// Generic rule (first bracket): a Modify, Create or Delete permission needs the View of the same
// object kind. For the scoped group permissions the View of the same scope is the matching one:
// Groups Modify IfMember needs Groups View IfMember, Groups Modify/Delete System need Groups View
// System. The rule covers only Modify/Create/Delete, so Users Auth Session, System Export Schema,
// System Import Data and System Export Data stand alone. Every kind that has a Modify/Create/Delete
// in the table also has a View, so the rule always applies.
//
// Additional requirements (second bracket), each from the documentation:
// - Licenses View → System View; Registries View → Images View, System View, Agents View;
//   Autoscale View, Autoscale Schedule View, DNS Providers View → Server Pools View;
//   Egress Gateways/Credentials Create/Modify/Delete → Egress Providers Modify: as listed.
// - "VM Providers View requires Server Pools View and Autoscale View": the table has no
//   "VM Providers View", only "VM Provider View" (singular, like the rest of that family), so the
//   dependency is read as applying to VM Provider View.
// - "Permissions View requires Groups View": the table has no Permissions View and no permission
//   that views group permissions apart from the Groups View family (a group's permissions are part
//   of the "group settings" Groups View shows). Mapping it onto Groups View would be a
//   self-dependency; mapping it onto Groups View IfMember would defeat that permission, whose whole
//   purpose is to work without Groups View. It is dropped. The one place where a group-viewing
//   permission does need Groups View comes from the special rules instead (next item).
// - Groups View System → Groups View, Groups Modify System → Groups Modify, Groups Delete System →
//   Groups Delete: "To edit or view System groups, they will *also* need the Groups View/Modify
//   System permission" makes the System permissions an extension of the base permission, not a
//   replacement, so each alone has no effect.
// - Users Modify Admin → Users Modify: "There is an additional permission that protects
//   modification of users with the Global Admin permission" — it widens who can be modified, but
//   modifying anyone still takes Users Modify, so alone it has no effect. "User Modify Admin" in
//   the special-rules prose is the same permission (the table spells it "Users Modify Admin").
// - Users Delete → Users Modify: "Users Delete requires Sessions Delete if the target user has
//   running sessions and Users Modify" parses as two requirements, only the first one conditional
//   (the other reading, "if the target has sessions and Users Modify", is not a condition on a
//   target). Users Modify is therefore static; Sessions Delete (running sessions) and Users Modify
//   Admin (Global Admin target) depend on the target and are checked by `can_delete_user`.
// - "View Images" / "View Servers" in the prose are Images View and Servers View with the words
//   swapped. That paragraph describes a case where no dependency exists (the server drop-down is
//   just hidden), so it adds nothing to the table.
//
// Descriptions are verbatim, including the documented typo "Delete exiting users." and missing
// full stops, so the table can be cross-checked against the documentation text.
permission_catalogue! {
    User, "User", "Default level of permissions for normal users.", [], [];
    GlobalAdmin, "Global Admin", "Global Administrator with all permissions.", [], [];
    UsersView, "Users View", "View users and user information.", [], [];
    UsersModify, "Users Modify", "Modify existing users.", [UsersView], [];
    UsersCreate, "Users Create", "Create new users.", [UsersView], [];
    UsersDelete, "Users Delete", "Delete exiting users.", [UsersView], [UsersModify];
    UsersModifyAdmin, "Users Modify Admin", "Modify users with Global Admin permissions.", [UsersView], [UsersModify];
    UsersAuthSession, "Users Auth Session", "Login and logout on behalf of another user.", [], [];
    GroupsView, "Groups View", "View groups, group members, and group settings.", [], [];
    GroupsModify, "Groups Modify", "Modify group members and settings.", [GroupsView], [];
    GroupsCreate, "Groups Create", "Create new groups.", [GroupsView], [];
    GroupsDelete, "Groups Delete", "Delete existing groups.", [GroupsView], [];
    GroupsViewIfMember, "Groups View IfMember", "View groups you are a member of, excluding system groups.", [], [];
    GroupsModifyIfMember, "Groups Modify IfMember", "Modify groups you are a member of, excluding system groups.", [GroupsViewIfMember], [];
    GroupsViewSystem, "Groups View System", "View groups, group members and group settings of system defined groups.", [], [GroupsView];
    GroupsModifySystem, "Groups Modify System", "Modify group members and settings of system groups.", [GroupsViewSystem], [GroupsModify];
    GroupsDeleteSystem, "Groups Delete System", "Delete a system group.", [GroupsViewSystem], [GroupsDelete];
    AgentsView, "Agents View", "View agents and agent settings.", [], [];
    AgentsModify, "Agents Modify", "Modify agent settings.", [AgentsView], [];
    AgentsCreate, "Agents Create", "Create agents.", [AgentsView], [];
    AgentsDelete, "Agents Delete", "Delete existing agents.", [AgentsView], [];
    StagingView, "Staging View", "View staging list and stage configuration settings.", [], [];
    StagingModify, "Staging Modify", "Modify existing staging settings.", [StagingView], [];
    StagingCreate, "Staging Create", "Create new staging configurations.", [StagingView], [];
    StagingDelete, "Staging Delete", "Delete existing staging configurations.", [StagingView], [];
    CastingView, "Casting View", "View casting list and casting configuration settings.", [], [];
    CastingModify, "Casting Modify", "Modify existing casting settings.", [CastingView], [];
    CastingCreate, "Casting Create", "Create new casting configurations.", [CastingView], [];
    CastingDelete, "Casting Delete", "Delete existing casting configurations.", [CastingView], [];
    SessionsView, "Sessions View", "View all user sessions.", [], [];
    SessionsModify, "Sessions Modify", "Perform modifications to a session of another user.", [SessionsView], [];
    SessionsDelete, "Sessions Delete", "Delete the session of another user.", [SessionsView], [];
    SessionRecordingsView, "Session Recordings View", "View user session recordings.", [], [];
    ImagesView, "Images View", "View images", [], [];
    ImagesModify, "Images Modify", "Modify image configurations.", [ImagesView], [];
    ImagesCreate, "Images Create", "Create new images.", [ImagesView], [];
    ImagesDelete, "Images Delete", "Delete existing images.", [ImagesView], [];
    ImagesModifyResources, "Images Modify Resources", "Modify image resource settings, such as CPU and Memory settings.", [ImagesView], [];
    DevApiView, "DevAPI View", "View developer API list.", [], [];
    DevApiModify, "DevAPI Modify", "Modify developer API configurations.", [DevApiView], [];
    DevApiCreate, "DevAPI Create", "Create a new developer API key.", [DevApiView], [];
    DevApiDelete, "DevAPI Delete", "Delete an existing developer API key.", [DevApiView], [];
    WebfiltersView, "Webfilters View", "View webfilters", [], [];
    WebfiltersModify, "Webfilters Modify", "Modify existing webfilters", [WebfiltersView], [];
    WebfiltersCreate, "Webfilters Create", "Create a new webfilter.", [WebfiltersView], [];
    WebfiltersDelete, "Webfilters Delete", "Delete an existing webfilter", [WebfiltersView], [];
    BrandingsView, "Brandings View", "View branding configurations.", [], [];
    BrandingsModify, "Brandings Modify", "Modify existing branding configurations.", [BrandingsView], [];
    BrandingsCreate, "Brandings Create", "Create new branding configurations.", [BrandingsView], [];
    BrandingsDelete, "Brandings Delete", "Delete existing branding configurations.", [BrandingsView], [];
    SettingsView, "Settings View", "View global settings.", [], [];
    SettingsModify, "Settings Modify", "Modify global settings in all categories.", [SettingsView], [];
    SettingsModifyAuth, "Settings Modify Auth", "Modify global settings in the authentication category.", [SettingsView], [];
    SettingsModifyAuthCaptcha, "Settings Modify Auth Captcha", "Modify global settings in the authentication captcha category.", [SettingsView], [];
    SettingsModifyCast, "Settings Modify Cast", "Modify global settings in the casting category.", [SettingsView], [];
    SettingsModifyImages, "Settings Modify Images", "Modify global settings in the images category.", [SettingsView], [];
    SettingsModifyLicense, "Settings Modify License", "Modify global settings in the license category.", [SettingsView], [];
    SettingsModifyLogging, "Settings Modify Logging", "Modify global settings in the logging category.", [SettingsView], [];
    SettingsModifyManager, "Settings Modify Manager", "Modify global settings in the manager category.", [SettingsView], [];
    SettingsModifyScale, "Settings Modify Scale", "Modify global settings in the scale category.", [SettingsView], [];
    SettingsModifySubscription, "Settings Modify Subscription", "Modify global settings in the subscription category.", [SettingsView], [];
    SettingsModifyFilter, "Settings Modify Filter", "Modify global settings in the filter category.", [SettingsView], [];
    SettingsModifyStorage, "Settings Modify Storage", "Modify global settings in the storage category.", [SettingsView], [];
    SettingsModifyConnections, "Settings Modify Connections", "Modify global settings in the connections category.", [SettingsView], [];
    SettingsModifyTheme, "Settings Modify Theme", "Modify global settings in the theme category.", [SettingsView], [];
    AuthView, "Auth View", "View LDAP/OIDC/SAML configurations.", [], [];
    AuthModify, "Auth Modify", "Modify LDAP/OIDC/SAML configurations.", [AuthView], [];
    AuthCreate, "Auth Create", "Create LDAP/OIDC/SAML configurations.", [AuthView], [];
    AuthDelete, "Auth Delete", "Delete LDAP/OIDC/SAML configurations.", [AuthView], [];
    LicensesView, "Licenses View", "View licenses.", [], [SystemView];
    LicensesCreate, "Licenses Create", "Add new licenses.", [LicensesView], [];
    LicensesDelete, "Licenses Delete", "Delete licenses.", [LicensesView], [];
    SystemView, "System View", "View system information.", [], [];
    SystemExportSchema, "System Export Schema", "Export system schema.", [], [];
    SystemImportData, "System Import Data", "Import system data.", [], [];
    SystemExportData, "System Export Data", "Export system data.", [], [];
    ReportsView, "Reports View", "View system reports and logging. Warning: Providing access to logs can provide a lot of potentially sensitive information.", [], [];
    ManagersView, "Managers View", "View the managers.", [], [];
    ManagersModify, "Managers Modify", "Modify existing managers.", [ManagersView], [];
    ManagersCreate, "Managers Create", "Create a new manager.", [ManagersView], [];
    ManagersDelete, "Managers Delete", "Delete existing managers.", [ManagersView], [];
    ZonesView, "Zones View", "View Zones and Zone settings.", [], [];
    ZonesModify, "Zones Modify", "Modify Zone settings.", [ZonesView], [];
    ZonesCreate, "Zones Create", "Create new Zones.", [ZonesView], [];
    ZonesDelete, "Zones Delete", "Delete existing Zones.", [ZonesView], [];
    CompaniesView, "Companies View", "View companies.", [], [];
    CompaniesModify, "Companies Modify", "Modify existing company.", [CompaniesView], [];
    CompaniesCreate, "Companies Create", "Create a new company.", [CompaniesView], [];
    CompaniesDelete, "Companies Delete", "Delete an existing company.", [CompaniesView], [];
    ConnectionProxyView, "Connection Proxy View", "View connection proxies.", [], [];
    ConnectionProxyModify, "Connection Proxy Modify", "Modify connection proxies.", [ConnectionProxyView], [];
    ConnectionProxyCreate, "Connection Proxy Create", "Create a connection proxy.", [ConnectionProxyView], [];
    ConnectionProxyDelete, "Connection Proxy Delete", "Delete an existing connection proxy.", [ConnectionProxyView], [];
    PhysicalTokensView, "Physical Tokens View", "View physical 2FA tokens.", [], [];
    PhysicalTokensModify, "Physical Tokens Modify", "Assign/Unassign physical 2FA tokens.", [PhysicalTokensView], [];
    PhysicalTokensCreate, "Physical Tokens Create", "Import or create physical 2FA tokens.", [PhysicalTokensView], [];
    PhysicalTokensDelete, "Physical Tokens Delete", "Delete a physical 2FA token.", [PhysicalTokensView], [];
    ServersView, "Servers View", "View servers.", [], [];
    ServersModify, "Servers Modify", "Modify existing servers.", [ServersView], [];
    ServersCreate, "Servers Create", "Create new servers.", [ServersView], [];
    ServersDelete, "Servers Delete", "Delete servers.", [ServersView], [];
    ServerPoolsView, "Server Pools View", "View server pools.", [], [];
    ServerPoolsModify, "Server Pools Modify", "Modify server pools.", [ServerPoolsView], [];
    ServerPoolsCreate, "Server Pools Create", "Create a new server pool.", [ServerPoolsView], [];
    ServerPoolsDelete, "Server Pools Delete", "Delete a server pool.", [ServerPoolsView], [];
    AutoscaleView, "Autoscale View", "View auto scale configurations.", [], [ServerPoolsView];
    AutoscaleModify, "Autoscale Modify", "Modify an existing auto scale configuration.", [AutoscaleView], [];
    AutoscaleCreate, "Autoscale Create", "Create a new auto scale configuration.", [AutoscaleView], [];
    AutoscaleDelete, "Autoscale Delete", "Delete auto scale configurations.", [AutoscaleView], [];
    VmProviderView, "VM Provider View", "View VM Provider configurations.", [], [ServerPoolsView, AutoscaleView];
    VmProviderModify, "VM Provider Modify", "Modify VM Provider configurations.", [VmProviderView], [];
    VmProviderCreate, "VM Provider Create", "Create new VM Provider configurations.", [VmProviderView], [];
    VmProviderDelete, "VM Provider Delete", "Delete VM Provider configurations.", [VmProviderView], [];
    AutoscaleScheduleView, "Autoscale Schedule View", "View an auto scale schedule.", [], [ServerPoolsView];
    AutoscaleScheduleModify, "Autoscale Schedule Modify", "Modify an auto scale schedule.", [AutoscaleScheduleView], [];
    AutoscaleScheduleCreate, "Autoscale Schedule Create", "Create an auto scale schedule.", [AutoscaleScheduleView], [];
    AutoscaleScheduleDelete, "Autoscale Schedule Delete", "Delete an auto scale schedule.", [AutoscaleScheduleView], [];
    DnsProvidersView, "DNS Providers View", "View DNS provider configurations.", [], [ServerPoolsView];
    DnsProvidersModify, "DNS Providers Modify", "Modify DNS provider configurations.", [DnsProvidersView], [];
    DnsProvidersCreate, "DNS Providers Create", "Create new DNS Provider configurations.", [DnsProvidersView], [];
    DnsProvidersDelete, "DNS Providers Delete", "Delete DNS Provider configurations.", [DnsProvidersView], [];
    RegistriesView, "Registries View", "View Workspace Registries.", [], [ImagesView, SystemView, AgentsView];
    RegistriesModify, "Registries Modify", "Modify existing Workspace Registries.", [RegistriesView], [];
    RegistriesCreate, "Registries Create", "Add new Workspace Registries", [RegistriesView], [];
    RegistriesDelete, "Registries Delete", "Delete a Workspace Registry", [RegistriesView], [];
    StorageProvidersView, "Storage Providers View", "View Storage Providers.", [], [];
    StorageProvidersModify, "Storage Providers Modify", "Modify existing Storage Providers.", [StorageProvidersView], [];
    StorageProvidersCreate, "Storage Providers Create", "Create new Storage Providers.", [StorageProvidersView], [];
    StorageProvidersDelete, "Storage Providers Delete", "Delete an existing Storage Provider.", [StorageProvidersView], [];
    EgressProvidersView, "Egress Providers View", "View Egress Providers.", [], [];
    EgressProvidersModify, "Egress Providers Modify", "Modify existing Egress Providers.", [EgressProvidersView], [];
    EgressProvidersCreate, "Egress Providers Create", "Create new Egress Providers.", [EgressProvidersView], [];
    EgressProvidersDelete, "Egress Providers Delete", "Delete an existing Egress Provider.", [EgressProvidersView], [];
    EgressGatewaysView, "Egress Gateways View", "View Egress Gateways.", [], [];
    EgressGatewaysModify, "Egress Gateways Modify", "Modify existing Egress Gateways.", [EgressGatewaysView], [EgressProvidersModify];
    EgressGatewaysCreate, "Egress Gateways Create", "Create new Egress Gateways.", [EgressGatewaysView], [EgressProvidersModify];
    EgressGatewaysDelete, "Egress Gateways Delete", "Delete an existing Egress Gateway.", [EgressGatewaysView], [EgressProvidersModify];
    EgressCredentialsView, "Egress Credentials View", "View Egress Credentials.", [], [];
    EgressCredentialsModify, "Egress Credentials Modify", "Modify existing Egress Credentials.", [EgressCredentialsView], [EgressProvidersModify];
    EgressCredentialsCreate, "Egress Credentials Create", "Create new Egress Credentials.", [EgressCredentialsView], [EgressProvidersModify];
    EgressCredentialsDelete, "Egress Credentials Delete", "Delete an existing Egress Credential.", [EgressCredentialsView], [EgressProvidersModify];
}

/// Every permission with its display name, description and requirements, in catalogue order.
pub fn catalogue() -> &'static [PermissionInfo] {
    &CATALOGUE
}

impl Permission {
    /// The catalogue entry of this permission.
    pub fn info(self) -> &'static PermissionInfo {
        &CATALOGUE[self as usize]
    }

    /// The display name, e.g. "Users Modify Admin".
    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn description(self) -> &'static str {
        self.info().description
    }

    /// The permissions that must also be effective for this one to have any effect.
    pub fn requires(self) -> &'static [Permission] {
        self.info().requires
    }

    /// Broader permissions that meet a requirement on `self`. Groups View covers everything
    /// Groups View IfMember shows (and Groups Modify everything Groups Modify IfMember changes), so
    /// someone holding Groups View and Groups Modify IfMember is not told to add Groups View
    /// IfMember. This relation is used only to decide whether requirements are met; holding
    /// Groups View does not put Groups View IfMember into anyone's effective set.
    pub fn also_satisfied_by(self) -> &'static [Permission] {
        match self {
            Permission::GroupsViewIfMember => &[Permission::GroupsView],
            Permission::GroupsModifyIfMember => &[Permission::GroupsModify],
            _ => &[],
        }
    }

    /// The permission at `index` in catalogue order; `None` past the end.
    pub fn from_index(index: usize) -> Option<Permission> {
        CATALOGUE.get(index).map(|info| info.permission)
    }

    /// All permissions in catalogue order.
    pub fn all() -> impl Iterator<Item = Permission> {
        CATALOGUE.iter().map(|info| info.permission)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// A name that matches no permission, with the nearest known one when something is close enough.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {input:?}{}", DidYouMean(.suggestion))]
pub struct UnknownPermission {
    pub input: String,
    pub suggestion: Option<Permission>,
}

struct DidYouMean<'a>(&'a Option<Permission>);

impl fmt::Display for DidYouMean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(permission) => write!(f, "; did you mean {:?}?", permission.name()),
            None => Ok(()),
        }
    }
}

/// Below this similarity (0 = nothing in common, 1 = equal) no suggestion is offered: pointing
/// at an unrelated permission is worse than pointing at none.
const SUGGESTION_THRESHOLD: f64 = 0.6;

impl FromStr for Permission {
    type Err = UnknownPermission;

    /// Accepts the display name case-insensitively, ignoring spaces, `_` and `-` (so
    /// `users_modify_admin`, `USERS-MODIFY-ADMIN`, `groups view if member` and
    /// `GroupsViewIfMember` all parse). Misspellings, the singular/plural slips and swapped word
    /// orders found in the documentation's prose are not accepted as aliases — stored
    /// configuration should use one spelling — but the error suggests the intended name.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        // Stored grants are written in the display name: answer those from a table, since a
        // login parses every grant of every group the user is in.
        static BY_NAME: std::sync::OnceLock<std::collections::HashMap<&'static str, Permission>> =
            std::sync::OnceLock::new();
        let by_name = BY_NAME.get_or_init(|| Permission::all().map(|p| (p.name(), p)).collect());
        if let Some(permission) = by_name.get(input) {
            return Ok(*permission);
        }
        Permission::all()
            .find(|permission| same_key(permission.name(), input))
            .ok_or_else(|| UnknownPermission {
                input: input.to_owned(),
                suggestion: nearest_permission(input),
            })
    }
}

/// The characters that identify a name: letters and digits, lower-cased.
fn key_chars(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
}

fn same_key(a: &str, b: &str) -> bool {
    key_chars(a).eq(key_chars(b))
}

/// Lower-cased words separated by single spaces; `_` and `-` separate words too.
fn normalized_words(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c == '_' || c == '-')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn sorted_words(normalized: &str) -> String {
    let mut words: Vec<&str> = normalized.split(' ').collect();
    words.sort_unstable();
    words.join(" ")
}

/// The permission whose name is closest to `input`: normalised Levenshtein similarity, also
/// compared with the words sorted so that "View Images" finds "Images View"; Jaro-Winkler breaks
/// ties (it favours a shared beginning).
fn nearest_permission(input: &str) -> Option<Permission> {
    let wanted = normalized_words(input);
    if wanted.is_empty() {
        return None;
    }
    let wanted_sorted = sorted_words(&wanted);
    let mut best: Option<(f64, f64, Permission)> = None;
    for permission in Permission::all() {
        let candidate = normalized_words(permission.name());
        let similarity = strsim::normalized_levenshtein(&wanted, &candidate).max(
            strsim::normalized_levenshtein(&wanted_sorted, &sorted_words(&candidate)),
        );
        let tie_break = strsim::jaro_winkler(&wanted, &candidate);
        let better = match best {
            None => true,
            Some((best_similarity, best_tie_break, _)) => {
                similarity > best_similarity
                    || (similarity == best_similarity && tie_break > best_tie_break)
            }
        };
        if better {
            best = Some((similarity, tie_break, permission));
        }
    }
    best.filter(|(similarity, _, _)| *similarity >= SUGGESTION_THRESHOLD)
        .map(|(_, _, permission)| permission)
}

impl Serialize for Permission {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------------
// Permission sets
// ---------------------------------------------------------------------------------------------

const SET_WORDS: usize = Permission::COUNT.div_ceil(64);

/// A set of permissions, iterated in catalogue order. Serialised as a list of display names.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PermissionSet {
    bits: [u64; SET_WORDS],
}

impl PermissionSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every permission of the catalogue.
    pub fn all() -> Self {
        Permission::all().collect()
    }

    /// Literal membership: holding `Global Admin` does not make `contains` true for other
    /// permissions (the effective set of a Global Admin is [`PermissionSet::all`] instead).
    pub fn contains(&self, permission: Permission) -> bool {
        let index = permission as usize;
        self.bits[index / 64] & (1 << (index % 64)) != 0
    }

    /// Adds `permission`; true when it was not there yet.
    pub fn insert(&mut self, permission: Permission) -> bool {
        let index = permission as usize;
        let newly = !self.contains(permission);
        self.bits[index / 64] |= 1 << (index % 64);
        newly
    }

    /// Removes `permission`; true when it was there.
    pub fn remove(&mut self, permission: Permission) -> bool {
        let index = permission as usize;
        let present = self.contains(permission);
        self.bits[index / 64] &= !(1 << (index % 64));
        present
    }

    pub fn len(&self) -> usize {
        self.bits
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|word| *word == 0)
    }

    pub fn union(&self, other: &PermissionSet) -> PermissionSet {
        let mut bits = self.bits;
        for (word, other_word) in bits.iter_mut().zip(other.bits) {
            *word |= other_word;
        }
        PermissionSet { bits }
    }

    /// The permissions in both sets.
    pub fn intersection(&self, other: &PermissionSet) -> PermissionSet {
        let mut bits = self.bits;
        for (word, theirs) in bits.iter_mut().zip(other.bits.iter()) {
            *word &= theirs;
        }
        PermissionSet { bits }
    }

    pub fn difference(&self, other: &PermissionSet) -> PermissionSet {
        let mut bits = self.bits;
        for (word, other_word) in bits.iter_mut().zip(other.bits) {
            *word &= !other_word;
        }
        PermissionSet { bits }
    }

    pub fn is_subset(&self, other: &PermissionSet) -> bool {
        self.difference(other).is_empty()
    }

    /// The members in catalogue order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        Permission::all().filter(|permission| self.contains(*permission))
    }

    pub fn to_vec(&self) -> Vec<Permission> {
        self.iter().collect()
    }

    /// True when `required` is held, or a broader permission that covers it is.
    pub fn satisfies(&self, required: Permission) -> bool {
        self.satisfier_of(required).is_some()
    }

    /// The held permission that meets a requirement on `required`: `required` itself if held,
    /// else a held broader permission.
    fn satisfier_of(&self, required: Permission) -> Option<Permission> {
        if self.contains(required) {
            return Some(required);
        }
        required
            .also_satisfied_by()
            .iter()
            .copied()
            .find(|broader| self.contains(*broader))
    }

    /// True when every requirement of `permission` is met within this set.
    fn meets_requirements_of(&self, permission: Permission) -> bool {
        permission
            .requires()
            .iter()
            .all(|required| self.satisfies(*required))
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Permission::name))
            .finish()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        let mut set = PermissionSet::new();
        set.extend(iter);
        set
    }
}

impl Extend<Permission> for PermissionSet {
    fn extend<I: IntoIterator<Item = Permission>>(&mut self, iter: I) {
        for permission in iter {
            self.insert(permission);
        }
    }
}

impl Serialize for PermissionSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for PermissionSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Vec::<Permission>::deserialize(deserializer)?
            .into_iter()
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Dependency resolution
// ---------------------------------------------------------------------------------------------

/// The permissions of `granted` that take effect. Global Admin makes everything effective.
/// Otherwise a permission is effective when each of its requirements is met by an *effective*
/// permission, so requirements apply transitively: VM Provider View granted with Autoscale View
/// but without Server Pools View leaves both ineffective. The dependency graph is acyclic, so
/// repeatedly dropping permissions with unmet requirements reaches the one answer whatever the
/// order of the input.
fn resolve_effective(granted: &PermissionSet) -> PermissionSet {
    if granted.contains(Permission::GlobalAdmin) {
        return PermissionSet::all();
    }
    let mut effective = *granted;
    loop {
        let unmet: Vec<Permission> = effective
            .iter()
            .filter(|permission| !effective.meets_requirements_of(*permission))
            .collect();
        if unmet.is_empty() {
            return effective;
        }
        for permission in unmet {
            effective.remove(permission);
        }
    }
}

/// What must be added to `held` for all of `required` to be held and effective: each required
/// permission not held (nor covered by a broader held one), plus, transitively, whatever the
/// required and the held-but-needed permissions themselves require.
fn needed_in_addition(required: &[Permission], held: &PermissionSet) -> PermissionSet {
    let mut needed = PermissionSet::new();
    let mut visited = PermissionSet::new();
    let mut pending: Vec<Permission> = required.to_vec();
    while let Some(permission) = pending.pop() {
        if !visited.insert(permission) {
            continue;
        }
        match held.satisfier_of(permission) {
            Some(satisfier) => pending.extend_from_slice(satisfier.requires()),
            None => {
                needed.insert(permission);
                pending.extend_from_slice(permission.requires());
            }
        }
    }
    needed
}

/// Why `permission`, granted, is not effective: its direct requirements that are not met by the
/// effective set, and everything that has to be granted (transitively) to fix it.
fn shortfall(
    permission: Permission,
    granted: &PermissionSet,
    effective: &PermissionSet,
) -> (Vec<Permission>, Vec<Permission>) {
    let missing = permission
        .requires()
        .iter()
        .copied()
        .filter(|required| !effective.satisfies(*required))
        .collect();
    let to_grant = needed_in_addition(permission.requires(), granted).to_vec();
    (missing, to_grant)
}

/// "Licenses View has no effect without System View; grant System View too", naming requirements
/// that are granted but ineffective themselves, so the admin knows why granting more is needed.
fn ineffective_reason(
    permission: Permission,
    missing: &[Permission],
    to_grant: &[Permission],
    granted: &PermissionSet,
) -> String {
    let mut reason = format!(
        "{permission} has no effect without {}",
        join_words(
            missing
                .iter()
                .map(|required| describe_requirement(*required))
        )
    );
    let inert: Vec<Permission> = missing
        .iter()
        .copied()
        .filter(|required| granted.satisfies(*required))
        .collect();
    match inert.len() {
        0 => {}
        1 => reason.push_str(&format!(
            " ({} is granted but has no effect itself)",
            inert[0]
        )),
        _ => reason.push_str(&format!(
            " ({} are granted but have no effect themselves)",
            join_words(inert.iter().map(|p| p.name().to_owned()))
        )),
    }
    reason.push_str(&format!("; grant {} too", join_names(to_grant)));
    reason
}

/// "Groups View IfMember (or Groups View)" for requirements a broader permission also meets.
fn describe_requirement(required: Permission) -> String {
    let broader = required.also_satisfied_by();
    if broader.is_empty() {
        required.name().to_owned()
    } else {
        format!(
            "{required} (or {})",
            join_words(broader.iter().map(|p| p.name().to_owned()))
        )
    }
}

/// "A", "A and B", "A, B and C".
fn join_words(words: impl IntoIterator<Item = String>) -> String {
    let words: Vec<String> = words.into_iter().collect();
    match words.as_slice() {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn join_names(permissions: &[Permission]) -> String {
    join_words(permissions.iter().map(|p| p.name().to_owned()))
}

fn by_precedence(a: &GroupRef, b: &GroupRef) -> std::cmp::Ordering {
    a.precedence_key()
        .cmp(&b.precedence_key())
        .then_with(|| a.cmp(b))
}

// ---------------------------------------------------------------------------------------------
// Effective permissions
// ---------------------------------------------------------------------------------------------

/// One group granting one permission.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    pub group: GroupRef,
    pub permission: Permission,
}

/// A granted permission that has no effect because requirements are not met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IneffectiveGrant {
    pub permission: Permission,
    /// The groups that grant it, by precedence.
    pub groups: Vec<GroupRef>,
    /// Its direct requirements that are not effective (not granted, or granted but themselves
    /// ineffective).
    pub missing: Vec<Permission>,
    /// What would have to be granted, transitively, for it to take effect.
    pub to_grant: Vec<Permission>,
    /// The same in words, e.g. "Licenses View has no effect without System View; grant System
    /// View too".
    pub reason: String,
}

/// A user's permissions resolved across all their groups.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectivePermissions {
    /// Each granted permission with the groups granting it, by precedence.
    granted_by: BTreeMap<Permission, Vec<GroupRef>>,
    granted: PermissionSet,
    effective: PermissionSet,
    ineffective: Vec<IneffectiveGrant>,
}

/// Resolves a user's permissions from the grants of all the groups they belong to: the union of
/// the grants, everything for a Global Admin, minus grants whose requirements are not effective.
/// The result does not depend on the order of `grants` or on repeated grants.
pub fn effective(grants: &[Grant]) -> EffectivePermissions {
    let mut granted_by: BTreeMap<Permission, Vec<GroupRef>> = BTreeMap::new();
    for grant in grants {
        granted_by
            .entry(grant.permission)
            .or_default()
            .push(grant.group.clone());
    }
    for groups in granted_by.values_mut() {
        groups.sort_by(by_precedence);
        groups.dedup();
    }
    let granted: PermissionSet = granted_by.keys().copied().collect();
    let effective = resolve_effective(&granted);
    let ineffective = granted
        .difference(&effective)
        .iter()
        .map(|permission| {
            let (missing, to_grant) = shortfall(permission, &granted, &effective);
            let reason = ineffective_reason(permission, &missing, &to_grant, &granted);
            IneffectiveGrant {
                permission,
                groups: granted_by[&permission].clone(),
                missing,
                to_grant,
                reason,
            }
        })
        .collect();
    EffectivePermissions {
        granted_by,
        granted,
        effective,
        ineffective,
    }
}

impl Default for EffectivePermissions {
    fn default() -> Self {
        effective(&[])
    }
}

impl EffectivePermissions {
    /// True when `permission` is effective (always, for a Global Admin).
    pub fn has(&self, permission: Permission) -> bool {
        self.effective.contains(permission)
    }

    pub fn is_global_admin(&self) -> bool {
        self.granted.contains(Permission::GlobalAdmin)
    }

    /// The effective permissions in catalogue order: what a token carries.
    pub fn effective(&self) -> Vec<Permission> {
        self.effective.to_vec()
    }

    /// The effective permissions as a set, for the `can_*` rules.
    pub fn effective_set(&self) -> &PermissionSet {
        &self.effective
    }

    /// Everything granted, effective or not.
    pub fn granted(&self) -> &PermissionSet {
        &self.granted
    }

    /// The groups that grant `permission` directly, by precedence; empty when none does (even if
    /// it is effective through Global Admin).
    pub fn granted_by(&self, permission: Permission) -> &[GroupRef] {
        self.granted_by
            .get(&permission)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The groups `permission` comes from, for explanations: the groups granting it when it is
    /// granted and effective, else the groups granting Global Admin when that is what makes it
    /// effective, else nothing.
    pub fn effective_via(&self, permission: Permission) -> &[GroupRef] {
        if !self.has(permission) {
            return &[];
        }
        match self.granted_by(permission) {
            [] => self.granted_by(Permission::GlobalAdmin),
            groups => groups,
        }
    }

    /// Granted permissions that have no effect, in catalogue order, with the reason.
    pub fn ineffective(&self) -> &[IneffectiveGrant] {
        &self.ineffective
    }
}

// ---------------------------------------------------------------------------------------------
// Lints
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum LintKind {
    /// The grant has no effect unless its members get the missing permissions elsewhere.
    Ineffective,
    /// The grant changes nothing: Global Admin already includes it.
    RedundantWithGlobalAdmin,
}

/// A finding about one grant, for an admin editing a group's permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionLint {
    pub permission: Permission,
    pub kind: LintKind,
    /// Direct requirements that are not met (empty for redundancy).
    pub missing: Vec<Permission>,
    /// What to grant, transitively, to make the grant effective (empty for redundancy).
    pub to_grant: Vec<Permission>,
    pub message: String,
}

impl fmt::Display for PermissionLint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A lint found while checking a whole configuration, with the group it concerns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupPermissionLint {
    pub group: GroupRef,
    pub lint: PermissionLint,
}

/// Checks one group's permissions on their own: which grants would have no effect and why, and
/// which are redundant next to Global Admin. A user's permissions are the union over all their
/// groups, so a requirement missing here may still be met at runtime by another group of every
/// member; the messages say so.
pub fn lint_group(permissions: &[Permission]) -> Vec<PermissionLint> {
    lint_in_context(permissions, &PermissionSet::new())
}

/// Checks every group of a configuration. All Users' permissions count as present for every
/// other group, because every user is a member of All Users; any other group's permissions
/// cannot be assumed, since membership varies from user to user. Lints come in group precedence
/// order, then catalogue order.
pub fn lint_configuration(grants: &[Grant]) -> Vec<GroupPermissionLint> {
    let mut by_group: Vec<(GroupRef, PermissionSet)> = Vec::new();
    let mut sorted: Vec<&Grant> = grants.iter().collect();
    sorted.sort_by(|a, b| by_precedence(&a.group, &b.group));
    for grant in sorted {
        match by_group.last_mut() {
            Some((group, permissions)) if *group == grant.group => {
                permissions.insert(grant.permission);
            }
            _ => by_group.push((
                grant.group.clone(),
                PermissionSet::from_iter([grant.permission]),
            )),
        }
    }
    let everyone = by_group
        .iter()
        .filter(|(group, _)| group.is_all_users())
        .fold(PermissionSet::new(), |all, (_, permissions)| {
            all.union(permissions)
        });
    by_group
        .iter()
        .flat_map(|(group, permissions)| {
            let context = if group.is_all_users() {
                PermissionSet::new()
            } else {
                everyone
            };
            lint_in_context(&permissions.to_vec(), &context)
                .into_iter()
                .map(|lint| GroupPermissionLint {
                    group: group.clone(),
                    lint,
                })
        })
        .collect()
}

/// Lints `own` grants, counting `context` (permissions every member is known to hold) as held.
fn lint_in_context(own: &[Permission], context: &PermissionSet) -> Vec<PermissionLint> {
    let own: PermissionSet = own.iter().copied().collect();
    let held = own.union(context);
    if held.contains(Permission::GlobalAdmin) {
        return own
            .iter()
            .filter(|permission| *permission != Permission::GlobalAdmin)
            .map(|permission| PermissionLint {
                permission,
                kind: LintKind::RedundantWithGlobalAdmin,
                missing: Vec::new(),
                to_grant: Vec::new(),
                message: format!(
                    "{permission} is redundant: the members of this group hold Global Admin, \
                     which already includes every permission"
                ),
            })
            .collect();
    }
    let effective = resolve_effective(&held);
    own.difference(&effective)
        .iter()
        .map(|permission| {
            let (missing, to_grant) = shortfall(permission, &held, &effective);
            let pronoun = if to_grant.len() == 1 { "it" } else { "them" };
            let message = format!(
                "{}, unless every member of this group receives {pronoun} from another group",
                ineffective_reason(permission, &missing, &to_grant, &held)
            );
            PermissionLint {
                permission,
                kind: LintKind::Ineffective,
                missing,
                to_grant,
                message,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Special rules
// ---------------------------------------------------------------------------------------------

/// An admin action the special rules authorise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Action {
    ViewGroup,
    ModifyGroup,
    DeleteGroup,
    CreateGroup,
    ModifyUser,
    DeleteUser,
    ModifyImage,
    RevokeSessions,
    RevokeApiKey,
    LimitGlobalAdmins,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::ViewGroup => "view the group",
            Action::ModifyGroup => "modify the group",
            Action::DeleteGroup => "delete the group",
            Action::CreateGroup => "create a group",
            Action::ModifyUser => "modify the user",
            Action::DeleteUser => "delete the user",
            Action::ModifyImage => "modify the image",
            Action::RevokeSessions => "revoke the user's sessions",
            Action::RevokeApiKey => "revoke the API key",
            Action::LimitGlobalAdmins => "take Global Admin from its holders",
        })
    }
}

/// A refused action: what the rule asks for, and which permissions the caller lacks (granting all
/// of `missing` would allow the action; where there are alternatives, the narrowest is named).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not allowed to {action}: {reason}; missing {}", join_names(.missing))]
pub struct Denied {
    pub action: Action,
    pub missing: Vec<Permission>,
    pub reason: String,
}

/// Facts about the group an action targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupFacts {
    /// All Users or Administrators.
    pub is_system: bool,
    /// The caller belongs to the group (what the IfMember permissions look at).
    pub caller_is_member: bool,
}

/// Facts about the user an action targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserFacts {
    /// The target holds Global Admin.
    pub is_global_admin: bool,
    /// The target has sessions running right now.
    pub has_running_sessions: bool,
}

/// Checks the caller's permissions against the ways an action may be allowed. Each way is the
/// permissions it needs; their requirements are checked too, so the rules give the same answer
/// for an effective set and for a raw list of granted permissions. When no way is open, the one
/// needing the fewest additional permissions is reported (the first listed on a tie, so list the
/// narrowest first).
fn check(
    perms: &PermissionSet,
    action: Action,
    ways: &[&[Permission]],
    reason: impl FnOnce() -> String,
) -> Result<(), Denied> {
    if perms.contains(Permission::GlobalAdmin) {
        return Ok(());
    }
    let shortfalls = ways.iter().map(|way| needed_in_addition(way, perms));
    let mut fewest: Option<PermissionSet> = None;
    for needed in shortfalls {
        if needed.is_empty() {
            return Ok(());
        }
        if fewest.is_none_or(|best| needed.len() < best.len()) {
            fewest = Some(needed);
        }
    }
    Err(Denied {
        action,
        missing: fewest.unwrap_or_default().to_vec(),
        reason: reason(),
    })
}

/// Viewing a group. A non-system group is visible with Groups View, or with Groups View IfMember
/// to its members. A system group needs Groups View System *together with* Groups View: the
/// documentation says system groups "also" need the System permission, so Groups View alone does
/// not show them, and the IfMember permissions never do.
pub fn can_view_group(perms: &PermissionSet, group: &GroupFacts) -> Result<(), Denied> {
    use Permission::*;
    if group.is_system {
        check(perms, Action::ViewGroup, &[&[GroupsViewSystem]], || {
            "a system group is visible only with Groups View together with Groups View System"
                .to_owned()
        })
    } else if group.caller_is_member {
        check(
            perms,
            Action::ViewGroup,
            &[&[GroupsViewIfMember], &[GroupsView]],
            || {
                "viewing a group requires Groups View, or Groups View IfMember for a group the \
                 caller belongs to"
                    .to_owned()
            },
        )
    } else {
        check(perms, Action::ViewGroup, &[&[GroupsView]], || {
            "viewing a group the caller does not belong to requires Groups View".to_owned()
        })
    }
}

/// Modifying a group (its members and settings). A non-system group needs Groups Modify, or
/// Groups Modify IfMember for its members; a system group needs Groups Modify together with
/// Groups Modify System. Each needs the matching View permissions as well.
pub fn can_modify_group(perms: &PermissionSet, group: &GroupFacts) -> Result<(), Denied> {
    use Permission::*;
    if group.is_system {
        check(perms, Action::ModifyGroup, &[&[GroupsModifySystem]], || {
            "a system group can be modified only with Groups Modify together with Groups Modify \
             System"
                .to_owned()
        })
    } else if group.caller_is_member {
        check(
            perms,
            Action::ModifyGroup,
            &[&[GroupsModifyIfMember], &[GroupsModify]],
            || {
                "modifying a group requires Groups Modify, or Groups Modify IfMember for a group \
                 the caller belongs to"
                    .to_owned()
            },
        )
    } else {
        check(perms, Action::ModifyGroup, &[&[GroupsModify]], || {
            "modifying a group the caller does not belong to requires Groups Modify".to_owned()
        })
    }
}

/// Deleting a group: Groups Delete, and for a system group Groups Delete System as well. There is
/// no IfMember variant for deletion. This answers only the permission question: the product rule
/// that system groups can never be deleted is enforced where groups are stored, and holds even
/// for a Global Admin. So `Ok` for a system group means "the caller is not refused for lack of
/// permission", and the deletion is still refused by that invariant.
pub fn can_delete_group(perms: &PermissionSet, group: &GroupFacts) -> Result<(), Denied> {
    use Permission::*;
    if group.is_system {
        check(perms, Action::DeleteGroup, &[&[GroupsDeleteSystem]], || {
            "deleting a system group requires Groups Delete together with Groups Delete System"
                .to_owned()
        })
    } else {
        check(perms, Action::DeleteGroup, &[&[GroupsDelete]], || {
            "deleting a group requires Groups Delete".to_owned()
        })
    }
}

/// Creating a group: Groups Create (new groups are never system groups).
pub fn can_create_group(perms: &PermissionSet) -> Result<(), Denied> {
    check(
        perms,
        Action::CreateGroup,
        &[&[Permission::GroupsCreate]],
        || "creating a group requires Groups Create".to_owned(),
    )
}

/// Modifying a user: Users Modify; a target holding Global Admin also needs the caller to be a
/// Global Admin or to hold Users Modify Admin.
pub fn can_modify_user(perms: &PermissionSet, target: &UserFacts) -> Result<(), Denied> {
    use Permission::*;
    if target.is_global_admin {
        let reason = || {
            "the user is a Global Admin, and modifying a Global Admin requires Users Modify and \
             Users Modify Admin (or being a Global Admin)"
                .to_owned()
        };
        check(
            perms,
            Action::ModifyUser,
            &[&[UsersModify, UsersModifyAdmin]],
            reason,
        )
    } else {
        check(perms, Action::ModifyUser, &[&[UsersModify]], || {
            "modifying a user requires Users Modify".to_owned()
        })
    }
}

/// Deleting a user: Users Delete and Users Modify; Sessions Delete as well when the target has
/// running sessions; Users Modify Admin (or being a Global Admin) as well when the target is a
/// Global Admin.
pub fn can_delete_user(perms: &PermissionSet, target: &UserFacts) -> Result<(), Denied> {
    use Permission::*;
    let mut required = vec![UsersDelete, UsersModify];
    let mut reason = "deleting a user requires Users Delete and Users Modify".to_owned();
    if target.has_running_sessions {
        required.push(SessionsDelete);
        reason.push_str("; the user has running sessions, which also requires Sessions Delete");
    }
    if target.is_global_admin {
        required.push(UsersModifyAdmin);
        reason.push_str(
            "; the user is a Global Admin, which also requires Users Modify Admin (or being a \
             Global Admin)",
        );
    }
    check(perms, Action::DeleteUser, &[&required], || reason)
}

/// Revoking a user's sessions: Sessions Delete; Users Modify Admin (or being a Global Admin) as
/// well when the target is a Global Admin, since it limits what a Global Admin can do, as
/// modifying one does.
pub fn can_revoke_sessions(perms: &PermissionSet, target: &UserFacts) -> Result<(), Denied> {
    use Permission::*;
    if target.is_global_admin {
        check(
            perms,
            Action::RevokeSessions,
            &[&[SessionsDelete, UsersModifyAdmin]],
            || {
                "the user is a Global Admin, and revoking a Global Admin's sessions requires \
                 Sessions Delete and Users Modify Admin (or being a Global Admin)"
                    .to_owned()
            },
        )
    } else {
        check(perms, Action::RevokeSessions, &[&[SessionsDelete]], || {
            "revoking a user's sessions requires Sessions Delete".to_owned()
        })
    }
}

/// Revoking an API key: DevAPI Delete; Users Modify Admin (or being a Global Admin) as well when
/// the key is a Global Admin's: it carries Global Admin, or a Global Admin made it.
pub fn can_revoke_api_key(perms: &PermissionSet, global_admins_key: bool) -> Result<(), Denied> {
    use Permission::*;
    if global_admins_key {
        check(
            perms,
            Action::RevokeApiKey,
            &[&[DevApiDelete, UsersModifyAdmin]],
            || {
                "the key is a Global Admin's, and revoking it requires DevAPI Delete and Users \
                 Modify Admin (or being a Global Admin)"
                    .to_owned()
            },
        )
    } else {
        check(perms, Action::RevokeApiKey, &[&[DevApiDelete]], || {
            "revoking an API key requires DevAPI Delete".to_owned()
        })
    }
}

/// Taking Global Admin from the users who hold it through a group — revoking Global Admin from
/// a group with members, or removing a member from a group that grants it — needs Users Modify
/// Admin (or being a Global Admin), on top of what changing the group needs.
pub fn can_limit_global_admins(perms: &PermissionSet) -> Result<(), Denied> {
    use Permission::*;
    check(
        perms,
        Action::LimitGlobalAdmins,
        &[&[UsersModifyAdmin]],
        || {
            "the change takes Global Admin from the group's members, which requires Users \
             Modify Admin (or being a Global Admin)"
                .to_owned()
        },
    )
}

/// A setting of a workspace image, as far as the permission rules care.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageField {
    GpuCount,
    Cores,
    Memory,
    CpuAllocationMethod,
    UncompressedImageSize,
    DockerRegistry,
    DockerRegistryUsername,
    DockerRegistryPassword,
    Hash,
    VolumeMappings,
    DockerRunConfigOverride,
    DockerExecConfig,
    /// Any other setting (name, description, …), which Images Modify covers.
    Other(String),
}

impl ImageField {
    /// The settings that change the compute resources an image gets, which need Images Modify
    /// Resources; exactly the documented list.
    pub const RESOURCE_FIELDS: [ImageField; 12] = [
        ImageField::GpuCount,
        ImageField::Cores,
        ImageField::Memory,
        ImageField::CpuAllocationMethod,
        ImageField::UncompressedImageSize,
        ImageField::DockerRegistry,
        ImageField::DockerRegistryUsername,
        ImageField::DockerRegistryPassword,
        ImageField::Hash,
        ImageField::VolumeMappings,
        ImageField::DockerRunConfigOverride,
        ImageField::DockerExecConfig,
    ];

    /// The documented name ("GPU Count", …), or the text of an `Other` field.
    pub fn name(&self) -> &str {
        match self {
            ImageField::GpuCount => "GPU Count",
            ImageField::Cores => "Cores",
            ImageField::Memory => "Memory",
            ImageField::CpuAllocationMethod => "CPU Allocation Method",
            ImageField::UncompressedImageSize => "Uncompressed Image Size",
            ImageField::DockerRegistry => "Docker Registry",
            ImageField::DockerRegistryUsername => "Docker Registry Username",
            ImageField::DockerRegistryPassword => "Docker Registry Password",
            ImageField::Hash => "Hash",
            ImageField::VolumeMappings => "Volume Mappings",
            ImageField::DockerRunConfigOverride => "Docker Run Config Override",
            ImageField::DockerExecConfig => "Docker Exec Config",
            ImageField::Other(name) => name,
        }
    }

    /// True for the resource settings. An `Other` whose text names a resource setting (say
    /// `Other("cores")`, built without parsing) counts as that setting, so the rule cannot be
    /// bypassed by how a field was constructed.
    pub fn requires_resources(&self) -> bool {
        match self {
            ImageField::Other(name) => Self::resource_field_named(name).is_some(),
            _ => true,
        }
    }

    fn resource_field_named(name: &str) -> Option<ImageField> {
        Self::RESOURCE_FIELDS
            .into_iter()
            .find(|field| same_key(field.name(), name))
    }
}

impl fmt::Display for ImageField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ImageField {
    type Err = std::convert::Infallible;

    /// The documented names, case-insensitive and ignoring spaces, `_` and `-` (so API keys like
    /// `docker_registry_password` work); anything else is `Other`.
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Ok(
            Self::resource_field_named(input)
                .unwrap_or_else(|| ImageField::Other(input.to_owned())),
        )
    }
}

impl Serialize for ImageField {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ImageField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Ok(match text.parse() {
            Ok(field) => field,
            Err(never) => match never {},
        })
    }
}

/// Modifying an image. The documentation splits image settings between two permissions: Images
/// Modify covers every setting except the resource ones, and Images Modify Resources covers the
/// resource ones. Each is read as sufficient for its own settings, so Images Modify Resources
/// alone lets a caller change resource settings (it still needs Images View), and a change that
/// touches both kinds needs both. A change naming no field still requires one of the two: the
/// caller must be allowed to edit images at all.
pub fn can_modify_image(
    perms: &PermissionSet,
    changed_fields: &[ImageField],
) -> Result<(), Denied> {
    use Permission::*;
    let (resource, other): (Vec<&ImageField>, Vec<&ImageField>) = changed_fields
        .iter()
        .partition(|field| field.requires_resources());
    let field_list =
        |fields: &[&ImageField]| join_words(fields.iter().map(|field| field.name().to_owned()));
    match (resource.is_empty(), other.is_empty()) {
        (true, true) => check(
            perms,
            Action::ModifyImage,
            &[&[ImagesModify], &[ImagesModifyResources]],
            || "modifying an image requires Images Modify or Images Modify Resources".to_owned(),
        ),
        (true, false) => check(perms, Action::ModifyImage, &[&[ImagesModify]], || {
            format!("changing {} requires Images Modify", field_list(&other))
        }),
        (false, true) => check(
            perms,
            Action::ModifyImage,
            &[&[ImagesModifyResources]],
            || {
                if resource.len() == 1 {
                    format!(
                        "{} is a resource setting, which requires Images Modify Resources",
                        field_list(&resource)
                    )
                } else {
                    format!(
                        "{} are resource settings, which require Images Modify Resources",
                        field_list(&resource)
                    )
                }
            },
        ),
        (false, false) => check(
            perms,
            Action::ModifyImage,
            &[&[ImagesModify, ImagesModifyResources]],
            || {
                format!(
                    "changing {} requires Images Modify, and changing the resource settings {} \
                     requires Images Modify Resources",
                    field_list(&other),
                    field_list(&resource)
                )
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Permission::*;

    /// Rows of the documentation's permission table (each `Name | Description` pair).
    const SEED_TABLE_ROWS: usize = 141;

    /// Every name of the documentation's table, in its order.
    const SEED_TABLE_NAMES: [&str; SEED_TABLE_ROWS] = [
        "User",
        "Global Admin",
        "Users View",
        "Users Modify",
        "Users Create",
        "Users Delete",
        "Users Modify Admin",
        "Users Auth Session",
        "Groups View",
        "Groups Modify",
        "Groups Create",
        "Groups Delete",
        "Groups View IfMember",
        "Groups Modify IfMember",
        "Groups View System",
        "Groups Modify System",
        "Groups Delete System",
        "Agents View",
        "Agents Modify",
        "Agents Create",
        "Agents Delete",
        "Staging View",
        "Staging Modify",
        "Staging Create",
        "Staging Delete",
        "Casting View",
        "Casting Modify",
        "Casting Create",
        "Casting Delete",
        "Sessions View",
        "Sessions Modify",
        "Sessions Delete",
        "Session Recordings View",
        "Images View",
        "Images Modify",
        "Images Create",
        "Images Delete",
        "Images Modify Resources",
        "DevAPI View",
        "DevAPI Modify",
        "DevAPI Create",
        "DevAPI Delete",
        "Webfilters View",
        "Webfilters Modify",
        "Webfilters Create",
        "Webfilters Delete",
        "Brandings View",
        "Brandings Modify",
        "Brandings Create",
        "Brandings Delete",
        "Settings View",
        "Settings Modify",
        "Settings Modify Auth",
        "Settings Modify Auth Captcha",
        "Settings Modify Cast",
        "Settings Modify Images",
        "Settings Modify License",
        "Settings Modify Logging",
        "Settings Modify Manager",
        "Settings Modify Scale",
        "Settings Modify Subscription",
        "Settings Modify Filter",
        "Settings Modify Storage",
        "Settings Modify Connections",
        "Settings Modify Theme",
        "Auth View",
        "Auth Modify",
        "Auth Create",
        "Auth Delete",
        "Licenses View",
        "Licenses Create",
        "Licenses Delete",
        "System View",
        "System Export Schema",
        "System Import Data",
        "System Export Data",
        "Reports View",
        "Managers View",
        "Managers Modify",
        "Managers Create",
        "Managers Delete",
        "Zones View",
        "Zones Modify",
        "Zones Create",
        "Zones Delete",
        "Companies View",
        "Companies Modify",
        "Companies Create",
        "Companies Delete",
        "Connection Proxy View",
        "Connection Proxy Modify",
        "Connection Proxy Create",
        "Connection Proxy Delete",
        "Physical Tokens View",
        "Physical Tokens Modify",
        "Physical Tokens Create",
        "Physical Tokens Delete",
        "Servers View",
        "Servers Modify",
        "Servers Create",
        "Servers Delete",
        "Server Pools View",
        "Server Pools Modify",
        "Server Pools Create",
        "Server Pools Delete",
        "Autoscale View",
        "Autoscale Modify",
        "Autoscale Create",
        "Autoscale Delete",
        "VM Provider View",
        "VM Provider Modify",
        "VM Provider Create",
        "VM Provider Delete",
        "Autoscale Schedule View",
        "Autoscale Schedule Modify",
        "Autoscale Schedule Create",
        "Autoscale Schedule Delete",
        "DNS Providers View",
        "DNS Providers Modify",
        "DNS Providers Create",
        "DNS Providers Delete",
        "Registries View",
        "Registries Modify",
        "Registries Create",
        "Registries Delete",
        "Storage Providers View",
        "Storage Providers Modify",
        "Storage Providers Create",
        "Storage Providers Delete",
        "Egress Providers View",
        "Egress Providers Modify",
        "Egress Providers Create",
        "Egress Providers Delete",
        "Egress Gateways View",
        "Egress Gateways Modify",
        "Egress Gateways Create",
        "Egress Gateways Delete",
        "Egress Credentials View",
        "Egress Credentials Modify",
        "Egress Credentials Create",
        "Egress Credentials Delete",
    ];

    fn group(id: i64, name: &str, priority: i64) -> GroupRef {
        GroupRef {
            id,
            name: name.to_owned(),
            priority,
            is_system: false,
        }
    }

    fn all_users() -> GroupRef {
        GroupRef {
            id: 1,
            name: crate::model::group::ALL_USERS.to_owned(),
            priority: crate::model::group::ALL_USERS_PRIORITY,
            is_system: true,
        }
    }

    fn administrators() -> GroupRef {
        GroupRef {
            id: 2,
            name: crate::model::group::ADMINISTRATORS.to_owned(),
            priority: crate::model::group::ADMINISTRATORS_PRIORITY,
            is_system: true,
        }
    }

    fn grants_to(group: &GroupRef, permissions: &[Permission]) -> Vec<Grant> {
        permissions
            .iter()
            .map(|permission| Grant {
                group: group.clone(),
                permission: *permission,
            })
            .collect()
    }

    fn one_group(permissions: &[Permission]) -> EffectivePermissions {
        effective(&grants_to(&group(10, "Staff", 100), permissions))
    }

    fn set(permissions: &[Permission]) -> PermissionSet {
        permissions.iter().copied().collect()
    }

    /// `permission` together with everything it transitively requires.
    fn with_closure(permission: Permission) -> PermissionSet {
        let mut closure = needed_in_addition(&[permission], &PermissionSet::new());
        closure.insert(permission);
        closure
    }

    // --- catalogue ------------------------------------------------------------------------

    #[test]
    fn catalogue_has_every_row_of_the_table_in_order() {
        assert_eq!(Permission::COUNT, SEED_TABLE_ROWS);
        assert_eq!(catalogue().len(), SEED_TABLE_ROWS);
        let names: Vec<&str> = catalogue().iter().map(|info| info.name).collect();
        assert_eq!(names, SEED_TABLE_NAMES);
    }

    #[test]
    fn catalogue_entries_sit_at_their_variant_index() {
        for (index, info) in catalogue().iter().enumerate() {
            assert_eq!(info.permission as usize, index, "{}", info.name);
            assert_eq!(Permission::from_index(index), Some(info.permission));
            assert!(!info.description.is_empty(), "{}", info.name);
        }
        assert_eq!(Permission::from_index(SEED_TABLE_ROWS), None);
    }

    #[test]
    fn descriptions_are_verbatim() {
        assert_eq!(UsersDelete.description(), "Delete exiting users.");
        assert_eq!(ImagesView.description(), "View images");
        assert_eq!(
            ReportsView.description(),
            "View system reports and logging. Warning: Providing access to logs can provide a \
             lot of potentially sensitive information."
        );
        assert_eq!(
            ImagesModifyResources.description(),
            "Modify image resource settings, such as CPU and Memory settings."
        );
    }

    #[test]
    fn parsing_keys_are_unique() {
        for a in Permission::all() {
            for b in Permission::all() {
                if a != b {
                    assert!(!same_key(a.name(), b.name()), "{a} and {b} collide");
                }
            }
        }
    }

    #[test]
    fn dependency_graph_is_acyclic_and_never_self_referential() {
        // Depth-first search with colours over the requirement edges.
        fn visit(p: Permission, state: &mut [u8; Permission::COUNT]) {
            match state[p as usize] {
                1 => panic!("cycle through {p}"),
                2 => return,
                _ => {}
            }
            state[p as usize] = 1;
            for required in p.requires() {
                assert_ne!(*required, p);
                visit(*required, state);
            }
            state[p as usize] = 2;
        }
        let mut state = [0u8; Permission::COUNT];
        for p in Permission::all() {
            visit(p, &mut state);
        }
    }

    // --- parsing ----------------------------------------------------------------------------

    #[test]
    fn every_display_name_parses_back() {
        for p in Permission::all() {
            assert_eq!(p.name().parse::<Permission>(), Ok(p));
            assert_eq!(p.to_string(), p.name());
        }
    }

    #[test]
    fn parsing_tolerates_case_separators_and_spacing() {
        let cases = [
            ("users_modify_admin", UsersModifyAdmin),
            ("USERS-MODIFY-ADMIN", UsersModifyAdmin),
            ("  users   modify  admin ", UsersModifyAdmin),
            ("UsersModifyAdmin", UsersModifyAdmin),
            ("groups_view_if_member", GroupsViewIfMember),
            ("Groups View Ifmember", GroupsViewIfMember),
            ("devapi-create", DevApiCreate),
            ("vm_provider_view", VmProviderView),
            ("dns providers delete", DnsProvidersDelete),
            ("global admin", GlobalAdmin),
            ("user", User),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Permission>(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn unknown_names_suggest_the_nearest_permission() {
        let cases = [
            ("Users Modfy", Some(UsersModify)),
            ("User Modify Admin", Some(UsersModifyAdmin)),
            ("VM Providers View", Some(VmProviderView)),
            ("View Images", Some(ImagesView)),
            ("View Servers", Some(ServersView)),
            ("Licences View", Some(LicensesView)),
            ("egress_gateway_create", Some(EgressGatewaysCreate)),
            ("Groups View If Members", Some(GroupsViewIfMember)),
            ("zzzz", None),
            ("", None),
            ("Kubernetes Clusters Scale", None),
        ];
        for (input, expected) in cases {
            let error = input.parse::<Permission>().unwrap_err();
            assert_eq!(error.input, input);
            assert_eq!(error.suggestion, expected, "{input}");
        }
    }

    #[test]
    fn unknown_name_error_reads_well() {
        let error = "Users Modfy".parse::<Permission>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown permission \"Users Modfy\"; did you mean \"Users Modify\"?"
        );
        let error = "zzzz".parse::<Permission>().unwrap_err();
        assert_eq!(error.to_string(), "unknown permission \"zzzz\"");
    }

    #[test]
    fn permissions_view_from_the_prose_is_not_a_permission() {
        assert!("Permissions View".parse::<Permission>().is_err());
    }

    #[test]
    fn serde_uses_display_names() {
        let json = serde_json::to_string(&[UsersModifyAdmin, DevApiView]).unwrap();
        assert_eq!(json, r#"["Users Modify Admin","DevAPI View"]"#);
        let parsed: Vec<Permission> =
            serde_json::from_str(r#"["Users Modify Admin","users_modify_admin"]"#).unwrap();
        assert_eq!(parsed, [UsersModifyAdmin, UsersModifyAdmin]);
        let error = serde_json::from_str::<Permission>(r#""Users Modfy""#).unwrap_err();
        assert!(
            error.to_string().contains("did you mean \"Users Modify\"?"),
            "{error}"
        );

        let set = set(&[SystemView, LicensesView]);
        let json = serde_json::to_string(&set).unwrap();
        assert_eq!(json, r#"["Licenses View","System View"]"#);
        assert_eq!(serde_json::from_str::<PermissionSet>(&json).unwrap(), set);
    }

    // --- dependencies -----------------------------------------------------------------------

    /// The View a Modify/Create/Delete permission needs, derived from its name alone: the words
    /// before the action plus "View", keeping a scope word when the scoped View exists.
    fn generic_view_from_name(name: &str) -> Option<Permission> {
        let words: Vec<&str> = name.split(' ').collect();
        let action = words
            .iter()
            .position(|w| matches!(*w, "Modify" | "Create" | "Delete"))?;
        let kind = words[..action].join(" ");
        let scope = words[action + 1..].join(" ");
        let scoped = format!("{kind} View {scope}");
        let plain = format!("{kind} View");
        Permission::all()
            .find(|p| !scope.is_empty() && p.name() == scoped)
            .or_else(|| Permission::all().find(|p| p.name() == plain))
    }

    #[test]
    fn generic_rule_holds_for_every_modify_create_delete() {
        let mut covered = 0;
        for p in Permission::all() {
            if let Some(view) = generic_view_from_name(p.name()) {
                assert!(p.requires().contains(&view), "{p} should require {view}");
                assert_eq!(p.requires()[0], view, "{p}: the generic View comes first");
                covered += 1;
            }
        }
        // Every Modify/Create/Delete has a View of its kind in this table.
        let actions = Permission::all()
            .filter(|p| {
                p.name()
                    .split(' ')
                    .any(|w| matches!(w, "Modify" | "Create" | "Delete"))
            })
            .count();
        assert_eq!(covered, actions);
    }

    #[test]
    fn requirements_are_exactly_the_generic_view_plus_the_listed_ones() {
        // Additional requirements beyond the generic View, as resolved in the catalogue comment.
        let additional: &[(Permission, &[Permission])] = &[
            (LicensesView, &[SystemView]),
            (RegistriesView, &[ImagesView, SystemView, AgentsView]),
            (AutoscaleView, &[ServerPoolsView]),
            (AutoscaleScheduleView, &[ServerPoolsView]),
            (DnsProvidersView, &[ServerPoolsView]),
            (VmProviderView, &[ServerPoolsView, AutoscaleView]),
            (UsersDelete, &[UsersModify]),
            (UsersModifyAdmin, &[UsersModify]),
            (GroupsViewSystem, &[GroupsView]),
            (GroupsModifySystem, &[GroupsModify]),
            (GroupsDeleteSystem, &[GroupsDelete]),
            (EgressGatewaysCreate, &[EgressProvidersModify]),
            (EgressGatewaysModify, &[EgressProvidersModify]),
            (EgressGatewaysDelete, &[EgressProvidersModify]),
            (EgressCredentialsCreate, &[EgressProvidersModify]),
            (EgressCredentialsModify, &[EgressProvidersModify]),
            (EgressCredentialsDelete, &[EgressProvidersModify]),
        ];
        for p in Permission::all() {
            let mut expected: Vec<Permission> =
                generic_view_from_name(p.name()).into_iter().collect();
            if let Some((_, extra)) = additional.iter().find(|(q, _)| *q == p) {
                expected.extend_from_slice(extra);
            }
            assert_eq!(p.requires(), expected.as_slice(), "{p}");
        }
    }

    #[test]
    fn every_dependency_is_enforced_and_satisfiable() {
        for p in Permission::all() {
            // Allowed: the permission with everything it needs.
            let closure = with_closure(p);
            let resolved = one_group(&closure.to_vec());
            assert!(resolved.has(p), "{p} with {closure:?}");
            assert!(resolved.ineffective().is_empty(), "{p}");

            // Ineffective: drop any one permission of its closure.
            for dropped in closure.iter().filter(|d| *d != p) {
                let mut without = closure;
                without.remove(dropped);
                let resolved = one_group(&without.to_vec());
                assert!(!resolved.has(p), "{p} without {dropped}");
                let grant = resolved
                    .ineffective()
                    .iter()
                    .find(|g| g.permission == p)
                    .unwrap_or_else(|| panic!("{p} without {dropped} not reported"));
                assert_eq!(grant.to_grant, [dropped], "{p} without {dropped}");
                if p.requires().contains(&dropped) {
                    assert!(grant.missing.contains(&dropped), "{p} without {dropped}");
                }
                assert!(grant.reason.contains(dropped.name()), "{}", grant.reason);
            }
        }
    }

    #[test]
    fn listed_dependencies_table() {
        // (granted, permission under test, effective?)
        let cases: &[(&[Permission], Permission, bool)] = &[
            (&[LicensesView], LicensesView, false),
            (&[LicensesView, SystemView], LicensesView, true),
            (
                &[RegistriesView, ImagesView, SystemView],
                RegistriesView,
                false,
            ),
            (
                &[RegistriesView, ImagesView, AgentsView],
                RegistriesView,
                false,
            ),
            (
                &[RegistriesView, SystemView, AgentsView],
                RegistriesView,
                false,
            ),
            (
                &[RegistriesView, ImagesView, SystemView, AgentsView],
                RegistriesView,
                true,
            ),
            (&[AutoscaleView], AutoscaleView, false),
            (&[AutoscaleView, ServerPoolsView], AutoscaleView, true),
            (&[AutoscaleScheduleView], AutoscaleScheduleView, false),
            (
                &[AutoscaleScheduleView, ServerPoolsView],
                AutoscaleScheduleView,
                true,
            ),
            (&[DnsProvidersView], DnsProvidersView, false),
            (&[DnsProvidersView, ServerPoolsView], DnsProvidersView, true),
            (&[VmProviderView, ServerPoolsView], VmProviderView, false),
            (&[VmProviderView, AutoscaleView], VmProviderView, false),
            (
                &[VmProviderView, AutoscaleView, ServerPoolsView],
                VmProviderView,
                true,
            ),
            (&[UsersDelete, UsersView], UsersDelete, false),
            (&[UsersDelete, UsersView, UsersModify], UsersDelete, true),
            (
                &[EgressGatewaysModify, EgressGatewaysView],
                EgressGatewaysModify,
                false,
            ),
            (
                &[
                    EgressGatewaysModify,
                    EgressGatewaysView,
                    EgressProvidersModify,
                    EgressProvidersView,
                ],
                EgressGatewaysModify,
                true,
            ),
            (
                &[
                    EgressCredentialsDelete,
                    EgressCredentialsView,
                    EgressProvidersModify,
                ],
                EgressCredentialsDelete,
                false,
            ),
            (&[GroupsViewSystem], GroupsViewSystem, false),
            (&[GroupsViewSystem, GroupsView], GroupsViewSystem, true),
            (&[GroupsModifyIfMember], GroupsModifyIfMember, false),
            (
                &[GroupsModifyIfMember, GroupsViewIfMember],
                GroupsModifyIfMember,
                true,
            ),
            // Groups View covers what Groups View IfMember shows.
            (
                &[GroupsModifyIfMember, GroupsView],
                GroupsModifyIfMember,
                true,
            ),
            (&[UsersModifyAdmin, UsersView], UsersModifyAdmin, false),
            (
                &[UsersModifyAdmin, UsersView, UsersModify],
                UsersModifyAdmin,
                true,
            ),
            (
                &[ImagesModifyResources, ImagesView],
                ImagesModifyResources,
                true,
            ),
            // "View Images" without "View Servers" is fine: no dependency between them.
            (&[ImagesView], ImagesView, true),
            (&[ServersView], ServersView, true),
            // Conditional requirements of Users Delete are not static.
            (&[UsersDelete, UsersModify, UsersView], UsersDelete, true),
            // The generic rule covers only Modify/Create/Delete.
            (&[SystemImportData], SystemImportData, true),
            (&[UsersAuthSession], UsersAuthSession, true),
            (
                &[SettingsModifyAuthCaptcha],
                SettingsModifyAuthCaptcha,
                false,
            ),
            (
                &[SettingsModifyAuthCaptcha, SettingsView],
                SettingsModifyAuthCaptcha,
                true,
            ),
        ];
        for (granted, permission, expected) in cases {
            let resolved = one_group(granted);
            assert_eq!(
                resolved.has(*permission),
                *expected,
                "{permission} from {granted:?}"
            );
        }
    }

    #[test]
    fn requirements_apply_transitively() {
        let resolved = one_group(&[VmProviderModify, VmProviderView, AutoscaleView]);
        assert_eq!(resolved.effective(), Vec::<Permission>::new());
        let reported: Vec<Permission> = resolved
            .ineffective()
            .iter()
            .map(|g| g.permission)
            .collect();
        assert_eq!(reported, [AutoscaleView, VmProviderView, VmProviderModify]);

        let vm_view = &resolved.ineffective()[1];
        assert_eq!(vm_view.missing, [ServerPoolsView, AutoscaleView]);
        assert_eq!(vm_view.to_grant, [ServerPoolsView]);
        assert_eq!(
            vm_view.reason,
            "VM Provider View has no effect without Server Pools View and Autoscale View \
             (Autoscale View is granted but has no effect itself); grant Server Pools View too"
        );

        let vm_modify = &resolved.ineffective()[2];
        assert_eq!(vm_modify.missing, [VmProviderView]);
        assert_eq!(vm_modify.to_grant, [ServerPoolsView]);
    }

    #[test]
    fn ineffective_reason_names_what_to_grant() {
        let resolved = one_group(&[LicensesView]);
        assert_eq!(
            resolved.ineffective()[0].reason,
            "Licenses View has no effect without System View; grant System View too"
        );
        let resolved = one_group(&[GroupsModifyIfMember]);
        assert_eq!(
            resolved.ineffective()[0].reason,
            "Groups Modify IfMember has no effect without Groups View IfMember (or Groups View); \
             grant Groups View IfMember too"
        );
        let resolved = one_group(&[LicensesCreate]);
        assert_eq!(
            resolved.ineffective()[0].to_grant,
            [LicensesView, SystemView]
        );
        assert_eq!(
            resolved.ineffective()[0].reason,
            "Licenses Create has no effect without Licenses View; grant Licenses View and System \
             View too"
        );
    }

    // --- effective permissions --------------------------------------------------------------

    #[test]
    fn permissions_are_the_union_across_groups() {
        let licences = group(10, "Licence Admins", 10);
        let system = group(11, "System Viewers", 20);
        let mut grants = grants_to(&licences, &[LicensesView]);
        grants.extend(grants_to(&system, &[SystemView]));
        let resolved = effective(&grants);
        assert!(resolved.has(LicensesView));
        assert!(resolved.has(SystemView));
        assert!(!resolved.has(UsersView));
        assert_eq!(resolved.effective(), [LicensesView, SystemView]);
        assert_eq!(resolved.granted_by(LicensesView), [licences]);
        assert_eq!(resolved.effective_via(SystemView), [system]);
        assert!(resolved.ineffective().is_empty());
        assert!(!resolved.is_global_admin());
    }

    #[test]
    fn global_admin_holds_every_permission() {
        let mut grants = grants_to(&administrators(), &[GlobalAdmin]);
        grants.extend(grants_to(&all_users(), &[User, LicensesView]));
        let resolved = effective(&grants);
        assert!(resolved.is_global_admin());
        assert_eq!(resolved.effective().len(), SEED_TABLE_ROWS);
        assert!(Permission::all().all(|p| resolved.has(p)));
        assert!(resolved.ineffective().is_empty());
        assert_eq!(
            resolved.effective_via(EgressCredentialsDelete),
            [administrators()]
        );
        assert_eq!(resolved.effective_via(User), [all_users()]);
        assert_eq!(resolved.granted_by(EgressCredentialsDelete), []);
        assert_eq!(resolved.granted().len(), 3);
    }

    #[test]
    fn granting_groups_are_sorted_by_precedence_and_deduplicated() {
        let low = group(30, "b-low", 5);
        let tie_a = group(31, "a-tie", 7);
        let tie_b = group(20, "b-tie", 7);
        let mut grants = Vec::new();
        for g in [&tie_b, &all_users(), &low, &tie_a, &low] {
            grants.extend(grants_to(g, &[User]));
        }
        let resolved = effective(&grants);
        assert_eq!(resolved.granted_by(User), [low, tie_a, tie_b, all_users()]);
    }

    #[test]
    fn ineffective_grants_list_their_groups() {
        let a = group(10, "A", 10);
        let b = group(11, "B", 5);
        let mut grants = grants_to(&a, &[AutoscaleView]);
        grants.extend(grants_to(&b, &[AutoscaleView]));
        let resolved = effective(&grants);
        assert_eq!(resolved.ineffective().len(), 1);
        assert_eq!(resolved.ineffective()[0].groups, [b, a]);
        assert_eq!(resolved.effective_via(AutoscaleView), []);
    }

    #[test]
    fn no_grants_means_nothing_effective() {
        let resolved = EffectivePermissions::default();
        assert!(resolved.effective().is_empty());
        assert!(resolved.granted().is_empty());
        assert!(!resolved.is_global_admin());
    }

    // --- lints ------------------------------------------------------------------------------

    #[test]
    fn lint_group_reports_ineffective_grants() {
        let lints = lint_group(&[LicensesView, UsersView, UsersModify]);
        assert_eq!(lints.len(), 1);
        let lint = &lints[0];
        assert_eq!(lint.permission, LicensesView);
        assert_eq!(lint.kind, LintKind::Ineffective);
        assert_eq!(lint.missing, [SystemView]);
        assert_eq!(lint.to_grant, [SystemView]);
        assert_eq!(
            lint.to_string(),
            "Licenses View has no effect without System View; grant System View too, unless \
             every member of this group receives it from another group"
        );
    }

    #[test]
    fn lint_group_is_quiet_for_consistent_grants() {
        assert!(lint_group(&[]).is_empty());
        assert!(lint_group(&[User]).is_empty());
        assert!(lint_group(&[LicensesView, SystemView, LicensesCreate]).is_empty());
        for p in Permission::all() {
            assert!(lint_group(&with_closure(p).to_vec()).is_empty(), "{p}");
        }
    }

    #[test]
    fn lint_group_flags_redundancy_next_to_global_admin() {
        let lints = lint_group(&[GlobalAdmin, UsersView, LicensesView]);
        assert_eq!(lints.len(), 2);
        assert!(lints
            .iter()
            .all(|l| l.kind == LintKind::RedundantWithGlobalAdmin));
        assert_eq!(lints[0].permission, UsersView);
        assert!(lints[1].message.contains("Global Admin"));
        assert!(lint_group(&[GlobalAdmin]).is_empty());
    }

    #[test]
    fn lint_group_plural_message() {
        let lints = lint_group(&[EgressGatewaysCreate]);
        assert_eq!(
            lints[0].to_grant,
            [
                EgressProvidersView,
                EgressProvidersModify,
                EgressGatewaysView
            ]
        );
        assert!(lints[0]
            .message
            .ends_with("receives them from another group"));
    }

    #[test]
    fn lint_configuration_counts_all_users_for_every_group() {
        let licences = group(10, "Licence Admins", 10);
        let servers = group(11, "Server Admins", 20);
        let mut grants = grants_to(&all_users(), &[User, SystemView, GroupsModifyIfMember]);
        grants.extend(grants_to(&licences, &[LicensesView]));
        grants.extend(grants_to(&servers, &[AutoscaleView]));
        grants.extend(grants_to(&administrators(), &[GlobalAdmin]));
        let lints = lint_configuration(&grants);
        let found: Vec<(&str, Permission)> = lints
            .iter()
            .map(|l| (l.group.name.as_str(), l.lint.permission))
            .collect();
        // Licenses View is fine: every member gets System View from All Users.
        assert_eq!(
            found,
            [
                ("Server Admins", AutoscaleView),
                ("All Users", GroupsModifyIfMember)
            ]
        );
    }

    #[test]
    fn lint_configuration_does_not_assume_other_groups() {
        let licences = group(10, "Licence Admins", 10);
        let system = group(11, "System Viewers", 20);
        let mut grants = grants_to(&licences, &[LicensesView]);
        grants.extend(grants_to(&system, &[SystemView]));
        let lints = lint_configuration(&grants);
        assert_eq!(lints.len(), 1);
        assert_eq!(lints[0].group, licences);
        assert_eq!(lints[0].lint.permission, LicensesView);
    }

    // --- special rules ----------------------------------------------------------------------

    fn facts(is_system: bool, caller_is_member: bool) -> GroupFacts {
        GroupFacts {
            is_system,
            caller_is_member,
        }
    }

    fn user(is_global_admin: bool, has_running_sessions: bool) -> UserFacts {
        UserFacts {
            is_global_admin,
            has_running_sessions,
        }
    }

    /// What a rule should answer: `None` when allowed, else the permissions reported missing.
    type Expected = Option<&'static [Permission]>;

    type GroupRule = fn(&PermissionSet, &GroupFacts) -> Result<(), Denied>;
    type GroupCase = (GroupRule, &'static [Permission], GroupFacts, Expected);

    /// Runs a rule and returns the missing permissions (`None` when allowed).
    fn outcome(result: Result<(), Denied>) -> Option<Vec<Permission>> {
        result.err().map(|denied| denied.missing)
    }

    #[test]
    fn group_rules_table() {
        let regular = facts(false, false);
        let member = facts(false, true);
        let system = facts(true, false);
        let system_member = facts(true, true);
        let view: GroupRule = can_view_group;
        let modify: GroupRule = can_modify_group;
        let delete: GroupRule = can_delete_group;
        let cases: &[GroupCase] = &[
            // Viewing.
            (view, &[GroupsView], regular, None),
            (view, &[GroupsView], member, None),
            (view, &[GroupsViewIfMember], member, None),
            (view, &[GroupsViewIfMember], regular, Some(&[GroupsView])),
            (view, &[], regular, Some(&[GroupsView])),
            (view, &[], member, Some(&[GroupsViewIfMember])),
            (view, &[GroupsView, GroupsViewSystem], system, None),
            (view, &[GroupsView], system, Some(&[GroupsViewSystem])),
            (view, &[GroupsViewSystem], system, Some(&[GroupsView])),
            (
                view,
                &[GroupsViewIfMember],
                system_member,
                Some(&[GroupsView, GroupsViewSystem]),
            ),
            (
                view,
                &[GroupsView, GroupsViewIfMember],
                system_member,
                Some(&[GroupsViewSystem]),
            ),
            (view, &[GlobalAdmin], system, None),
            // Modifying.
            (modify, &[GroupsModify, GroupsView], regular, None),
            (modify, &[GroupsModify, GroupsView], member, None),
            (modify, &[GroupsModify], regular, Some(&[GroupsView])),
            (
                modify,
                &[GroupsModifyIfMember, GroupsViewIfMember],
                member,
                None,
            ),
            (modify, &[GroupsModifyIfMember, GroupsView], member, None),
            (
                modify,
                &[GroupsModifyIfMember],
                member,
                Some(&[GroupsViewIfMember]),
            ),
            (
                modify,
                &[GroupsModifyIfMember, GroupsViewIfMember],
                regular,
                Some(&[GroupsView, GroupsModify]),
            ),
            (
                modify,
                &[],
                member,
                Some(&[GroupsViewIfMember, GroupsModifyIfMember]),
            ),
            (
                modify,
                &[
                    GroupsModify,
                    GroupsView,
                    GroupsModifySystem,
                    GroupsViewSystem,
                ],
                system,
                None,
            ),
            (
                modify,
                &[GroupsModify, GroupsView, GroupsViewSystem],
                system,
                Some(&[GroupsModifySystem]),
            ),
            (
                modify,
                &[GroupsModifySystem, GroupsViewSystem, GroupsView],
                system,
                Some(&[GroupsModify]),
            ),
            (
                modify,
                &[GroupsModifyIfMember, GroupsViewIfMember],
                system_member,
                Some(&[
                    GroupsView,
                    GroupsModify,
                    GroupsViewSystem,
                    GroupsModifySystem,
                ]),
            ),
            (modify, &[GlobalAdmin], system_member, None),
            // Deleting.
            (delete, &[GroupsDelete, GroupsView], regular, None),
            (delete, &[GroupsDelete, GroupsView], member, None),
            (delete, &[GroupsDelete], regular, Some(&[GroupsView])),
            (
                delete,
                &[GroupsModify, GroupsView],
                member,
                Some(&[GroupsDelete]),
            ),
            (
                delete,
                &[GroupsDelete, GroupsView],
                system,
                Some(&[GroupsViewSystem, GroupsDeleteSystem]),
            ),
            (
                delete,
                &[
                    GroupsDelete,
                    GroupsView,
                    GroupsDeleteSystem,
                    GroupsViewSystem,
                ],
                system,
                None,
            ),
            (
                delete,
                &[GroupsDeleteSystem, GroupsViewSystem, GroupsView],
                system,
                Some(&[GroupsDelete]),
            ),
            (delete, &[GlobalAdmin], system, None),
        ];
        for (index, (rule, held, group, expected)) in cases.iter().enumerate() {
            let got = outcome(rule(&set(held), group));
            assert_eq!(
                got.as_deref(),
                *expected,
                "case {index}: {held:?} {group:?}"
            );
        }
    }

    #[test]
    fn create_group_rule() {
        assert_eq!(can_create_group(&set(&[GroupsCreate, GroupsView])), Ok(()));
        assert_eq!(can_create_group(&set(&[GlobalAdmin])), Ok(()));
        let denied = can_create_group(&set(&[GroupsView])).unwrap_err();
        assert_eq!(denied.missing, [GroupsCreate]);
        assert_eq!(
            denied.to_string(),
            "not allowed to create a group: creating a group requires Groups Create; missing \
             Groups Create"
        );
        let denied = can_create_group(&set(&[GroupsCreate])).unwrap_err();
        assert_eq!(denied.missing, [GroupsView]);
    }

    #[test]
    fn denied_messages_name_the_missing_permission() {
        let denied = can_view_group(&set(&[GroupsView]), &facts(true, false)).unwrap_err();
        assert_eq!(denied.action, Action::ViewGroup);
        assert_eq!(
            denied.to_string(),
            "not allowed to view the group: a system group is visible only with Groups View \
             together with Groups View System; missing Groups View System"
        );
        let denied = can_delete_user(
            &set(&[UsersDelete, UsersModify, UsersView]),
            &user(true, true),
        )
        .unwrap_err();
        assert_eq!(
            denied.to_string(),
            "not allowed to delete the user: deleting a user requires Users Delete and Users \
             Modify; the user has running sessions, which also requires Sessions Delete; the \
             user is a Global Admin, which also requires Users Modify Admin (or being a Global \
             Admin); missing Users Modify Admin, Sessions View and Sessions Delete"
        );
    }

    #[test]
    fn limiting_a_global_admin_needs_users_modify_admin() {
        let narrow = set(&[SessionsView, SessionsDelete, DevApiView, DevApiDelete]);
        assert_eq!(can_revoke_sessions(&narrow, &user(false, true)), Ok(()));
        let denied = can_revoke_sessions(&narrow, &user(true, true)).unwrap_err();
        assert!(denied.missing.contains(&UsersModifyAdmin), "{denied}");
        assert_eq!(can_revoke_api_key(&narrow, false), Ok(()));
        let denied = can_revoke_api_key(&narrow, true).unwrap_err();
        assert!(denied.missing.contains(&UsersModifyAdmin), "{denied}");
        let protector = set(&[
            SessionsView,
            SessionsDelete,
            DevApiView,
            DevApiDelete,
            UsersView,
            UsersModify,
            UsersModifyAdmin,
        ]);
        assert_eq!(can_revoke_sessions(&protector, &user(true, true)), Ok(()));
        assert_eq!(can_revoke_api_key(&protector, true), Ok(()));
        assert_eq!(can_revoke_api_key(&PermissionSet::all(), true), Ok(()));
        let denied = can_limit_global_admins(&set(&[GroupsView, GroupsModify])).unwrap_err();
        assert!(denied.missing.contains(&UsersModifyAdmin), "{denied}");
        assert_eq!(can_limit_global_admins(&protector), Ok(()));
    }

    type UserRule = fn(&PermissionSet, &UserFacts) -> Result<(), Denied>;
    type UserCase = (UserRule, &'static [Permission], UserFacts, Expected);

    type ImageCase = (&'static [Permission], Vec<ImageField>, Expected);

    #[test]
    fn user_rules_table() {
        let plain = user(false, false);
        let busy = user(false, true);
        let admin = user(true, false);
        let busy_admin = user(true, true);
        let modify: UserRule = can_modify_user;
        let delete: UserRule = can_delete_user;
        let users_modify: &[Permission] = &[UsersView, UsersModify];
        let users_delete: &[Permission] = &[UsersView, UsersModify, UsersDelete];
        let cases: &[UserCase] = &[
            // Modifying.
            (modify, users_modify, plain, None),
            (modify, users_modify, busy, None),
            (modify, &[UsersModify], plain, Some(&[UsersView])),
            (modify, &[UsersView], plain, Some(&[UsersModify])),
            (modify, users_modify, admin, Some(&[UsersModifyAdmin])),
            (
                modify,
                &[UsersView, UsersModify, UsersModifyAdmin],
                admin,
                None,
            ),
            (
                modify,
                &[UsersView, UsersModifyAdmin],
                admin,
                Some(&[UsersModify]),
            ),
            (modify, &[GlobalAdmin], admin, None),
            // Deleting.
            (delete, users_delete, plain, None),
            (
                delete,
                &[UsersView, UsersDelete],
                plain,
                Some(&[UsersModify]),
            ),
            (
                delete,
                &[UsersView, UsersModify],
                plain,
                Some(&[UsersDelete]),
            ),
            (
                delete,
                users_delete,
                busy,
                Some(&[SessionsView, SessionsDelete]),
            ),
            (
                delete,
                &[UsersView, UsersModify, UsersDelete, SessionsDelete],
                busy,
                Some(&[SessionsView]),
            ),
            (
                delete,
                &[
                    UsersView,
                    UsersModify,
                    UsersDelete,
                    SessionsView,
                    SessionsDelete,
                ],
                busy,
                None,
            ),
            (delete, users_delete, admin, Some(&[UsersModifyAdmin])),
            (
                delete,
                &[UsersView, UsersModify, UsersDelete, UsersModifyAdmin],
                admin,
                None,
            ),
            (
                delete,
                &[UsersView, UsersModify, UsersDelete, UsersModifyAdmin],
                busy_admin,
                Some(&[SessionsView, SessionsDelete]),
            ),
            (
                delete,
                &[
                    UsersView,
                    UsersModify,
                    UsersDelete,
                    UsersModifyAdmin,
                    SessionsView,
                    SessionsDelete,
                ],
                busy_admin,
                None,
            ),
            (delete, &[GlobalAdmin], busy_admin, None),
        ];
        for (index, (rule, held, target, expected)) in cases.iter().enumerate() {
            let got = outcome(rule(&set(held), target));
            assert_eq!(
                got.as_deref(),
                *expected,
                "case {index}: {held:?} {target:?}"
            );
        }
    }

    #[test]
    fn image_fields_are_exactly_the_documented_list() {
        let names: Vec<&str> = ImageField::RESOURCE_FIELDS
            .iter()
            .map(ImageField::name)
            .collect();
        assert_eq!(
            names,
            [
                "GPU Count",
                "Cores",
                "Memory",
                "CPU Allocation Method",
                "Uncompressed Image Size",
                "Docker Registry",
                "Docker Registry Username",
                "Docker Registry Password",
                "Hash",
                "Volume Mappings",
                "Docker Run Config Override",
                "Docker Exec Config",
            ]
        );
        for field in ImageField::RESOURCE_FIELDS {
            assert!(field.requires_resources(), "{field}");
            assert_eq!(field.name().parse::<ImageField>(), Ok(field.clone()));
        }
    }

    #[test]
    fn image_field_parsing_and_other_fields() {
        assert_eq!("gpu_count".parse::<ImageField>(), Ok(ImageField::GpuCount));
        assert_eq!(
            "docker-registry-password".parse::<ImageField>(),
            Ok(ImageField::DockerRegistryPassword)
        );
        assert_eq!(
            "friendly_name".parse::<ImageField>(),
            Ok(ImageField::Other("friendly_name".to_owned()))
        );
        assert!(!ImageField::Other("friendly_name".to_owned()).requires_resources());
        // An `Other` spelling a resource setting is still a resource setting.
        assert!(ImageField::Other("cores".to_owned()).requires_resources());
        assert!(ImageField::Other("Volume Mappings".to_owned()).requires_resources());

        let json = serde_json::to_string(&[ImageField::CpuAllocationMethod]).unwrap();
        assert_eq!(json, r#"["CPU Allocation Method"]"#);
        let parsed: Vec<ImageField> = serde_json::from_str(r#"["hash","description"]"#).unwrap();
        assert_eq!(
            parsed,
            [
                ImageField::Hash,
                ImageField::Other("description".to_owned())
            ]
        );
    }

    #[test]
    fn image_rules_table() {
        let name = ImageField::Other("Friendly Name".to_owned());
        let memory = ImageField::Memory;
        let modify: &[Permission] = &[ImagesView, ImagesModify];
        let resources: &[Permission] = &[ImagesView, ImagesModifyResources];
        let both: &[Permission] = &[ImagesView, ImagesModify, ImagesModifyResources];
        let cases: &[ImageCase] = &[
            (modify, vec![name.clone()], None),
            (modify, vec![memory.clone()], Some(&[ImagesModifyResources])),
            (
                modify,
                vec![name.clone(), memory.clone()],
                Some(&[ImagesModifyResources]),
            ),
            (resources, vec![memory.clone()], None),
            (resources, vec![name.clone()], Some(&[ImagesModify])),
            (
                resources,
                vec![name.clone(), memory.clone()],
                Some(&[ImagesModify]),
            ),
            (both, vec![name.clone(), memory.clone()], None),
            (&[ImagesModify], vec![name.clone()], Some(&[ImagesView])),
            (
                &[ImagesModifyResources],
                vec![memory.clone()],
                Some(&[ImagesView]),
            ),
            (
                &[ImagesView],
                vec![memory.clone()],
                Some(&[ImagesModifyResources]),
            ),
            (modify, vec![], None),
            (resources, vec![], None),
            (&[ImagesView], vec![], Some(&[ImagesModify])),
            (&[GlobalAdmin], vec![name.clone(), memory.clone()], None),
        ];
        for field in ImageField::RESOURCE_FIELDS {
            assert_eq!(
                can_modify_image(&set(resources), std::slice::from_ref(&field)),
                Ok(())
            );
            let denied = can_modify_image(&set(modify), std::slice::from_ref(&field)).unwrap_err();
            assert_eq!(denied.missing, [ImagesModifyResources], "{field}");
            assert!(denied.reason.contains(field.name()), "{}", denied.reason);
        }
        for (index, (held, fields, expected)) in cases.iter().enumerate() {
            let got = outcome(can_modify_image(&set(held), fields));
            assert_eq!(
                got.as_deref(),
                *expected,
                "case {index}: {held:?} {fields:?}"
            );
        }
        let denied = can_modify_image(&set(modify), &[name, memory]).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "not allowed to modify the image: changing Friendly Name requires Images Modify, and \
             changing the resource settings Memory requires Images Modify Resources; missing \
             Images Modify Resources"
        );
    }

    #[test]
    fn global_admin_passes_every_rule() {
        let admin = set(&[GlobalAdmin]);
        for is_system in [false, true] {
            for caller_is_member in [false, true] {
                let group = facts(is_system, caller_is_member);
                assert_eq!(can_view_group(&admin, &group), Ok(()));
                assert_eq!(can_modify_group(&admin, &group), Ok(()));
                assert_eq!(can_delete_group(&admin, &group), Ok(()));
            }
        }
        assert_eq!(can_create_group(&admin), Ok(()));
        for is_global_admin in [false, true] {
            for has_running_sessions in [false, true] {
                let target = user(is_global_admin, has_running_sessions);
                assert_eq!(can_modify_user(&admin, &target), Ok(()));
                assert_eq!(can_delete_user(&admin, &target), Ok(()));
            }
        }
        let fields: Vec<ImageField> = ImageField::RESOURCE_FIELDS.to_vec();
        assert_eq!(can_modify_image(&admin, &fields), Ok(()));
        // The effective set of a Global Admin works the same way.
        let resolved = effective(&grants_to(&administrators(), &[GlobalAdmin]));
        assert_eq!(
            can_delete_user(resolved.effective_set(), &user(true, true)),
            Ok(())
        );
    }

    #[test]
    fn rules_accept_an_effective_set() {
        let resolved = one_group(&[UsersView, UsersModify, UsersModifyAdmin]);
        assert_eq!(
            can_modify_user(resolved.effective_set(), &user(true, false)),
            Ok(())
        );
        // Ineffective grants do not authorise anything.
        let resolved = one_group(&[UsersModify, UsersModifyAdmin]);
        assert!(resolved.effective().is_empty());
        let denied = can_modify_user(resolved.effective_set(), &user(false, false)).unwrap_err();
        assert_eq!(denied.missing, [UsersView, UsersModify]);
    }

    // --- properties -------------------------------------------------------------------------

    fn any_permission() -> impl Strategy<Value = Permission> {
        // Half the draws come from a tangle of related permissions so dependencies interact;
        // Global Admin turns up now and then.
        let related = prop::sample::select(vec![
            GlobalAdmin,
            LicensesView,
            LicensesCreate,
            SystemView,
            ServerPoolsView,
            AutoscaleView,
            VmProviderView,
            VmProviderModify,
            RegistriesView,
            ImagesView,
            AgentsView,
            GroupsView,
            GroupsViewIfMember,
            GroupsModifyIfMember,
            GroupsViewSystem,
            EgressProvidersModify,
            EgressProvidersView,
            EgressGatewaysCreate,
            EgressGatewaysView,
        ]);
        let anything = (0..Permission::COUNT).prop_map(|i| Permission::from_index(i).unwrap());
        prop_oneof![related, anything]
    }

    fn any_grant() -> impl Strategy<Value = Grant> {
        let groups = vec![
            all_users(),
            administrators(),
            group(10, "Staff", 100),
            group(11, "Ops", 100),
            group(12, "Audit", 5),
        ];
        (prop::sample::select(groups), any_permission())
            .prop_map(|(group, permission)| Grant { group, permission })
    }

    proptest! {
        #[test]
        fn effective_ignores_grant_order(
            (grants, shuffled) in prop::collection::vec(any_grant(), 0..24)
                .prop_flat_map(|grants| (Just(grants.clone()), Just(grants).prop_shuffle()))
        ) {
            prop_assert_eq!(effective(&grants), effective(&shuffled));
        }

        #[test]
        fn effective_ignores_duplicate_grants(
            grants in prop::collection::vec(any_grant(), 1..24),
            repeats in prop::collection::vec(any::<prop::sample::Index>(), 1..12),
        ) {
            let mut duplicated = grants.clone();
            for repeat in &repeats {
                duplicated.push(repeat.get(&grants).clone());
            }
            prop_assert_eq!(effective(&grants), effective(&duplicated));
        }

        #[test]
        fn effective_set_is_closed_and_maximal(
            grants in prop::collection::vec(any_grant(), 0..24)
        ) {
            let resolved = effective(&grants);
            let effective_set = *resolved.effective_set();
            if resolved.is_global_admin() {
                prop_assert_eq!(effective_set, PermissionSet::all());
                prop_assert!(resolved.ineffective().is_empty());
            } else {
                prop_assert!(effective_set.is_subset(resolved.granted()));
                for p in effective_set.iter() {
                    prop_assert!(effective_set.meets_requirements_of(p), "{} unmet", p);
                }
                let reported: PermissionSet =
                    resolved.ineffective().iter().map(|g| g.permission).collect();
                prop_assert_eq!(reported, resolved.granted().difference(&effective_set));
                for grant in resolved.ineffective() {
                    prop_assert!(!grant.missing.is_empty());
                    prop_assert!(!grant.to_grant.is_empty());
                    // Granting what the report asks for makes the permission effective.
                    let mut fixed = grants.clone();
                    fixed.extend(grants_to(&grant.groups[0], &grant.to_grant));
                    prop_assert!(effective(&fixed).has(grant.permission));
                }
            }
        }

        #[test]
        fn lint_of_a_lone_group_matches_effective(
            permissions in prop::collection::vec(any_permission(), 0..16)
        ) {
            let lints = lint_group(&permissions);
            let resolved = one_group(&permissions);
            if resolved.is_global_admin() {
                prop_assert!(lints.iter().all(|l| l.kind == LintKind::RedundantWithGlobalAdmin));
            } else {
                let linted: Vec<Permission> = lints.iter().map(|l| l.permission).collect();
                let ineffective: Vec<Permission> =
                    resolved.ineffective().iter().map(|g| g.permission).collect();
                prop_assert_eq!(linted, ineffective);
            }
        }
    }
}
