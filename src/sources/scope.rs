//! Which organisations a pipeline keeps (`[scope]`): the sources apply it while listing and
//! parsing, the runner to every parsed record.

use crate::model::OrgRecord;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeConfig {
    /// One ORD search per role (`PrimaryRoleId=`); an organisation is in scope when its primary
    /// role is listed here.
    #[serde(default)]
    pub primary_roles: Vec<String>,
    /// One ORD search with `Roles=` (primary or non-primary); in scope when any role matches.
    #[serde(default)]
    pub roles: Vec<String>,
    /// `Active` or `Inactive`; absent means both.
    #[serde(default)]
    pub status: Option<String>,
    /// Record classes kept (`RC1` organisations, `RC2` sites); empty means both.
    #[serde(default)]
    pub record_classes: Vec<String>,
}

impl ScopeConfig {
    /// Whether a parsed record belongs to this scope (empty lists mean "everything").
    pub fn matches(&self, rec: &OrgRecord) -> bool {
        let by_role = (self.primary_roles.is_empty() && self.roles.is_empty())
            || rec
                .organisation
                .primary_role
                .as_ref()
                .is_some_and(|p| self.primary_roles.contains(p))
            || rec.role_ids().any(|r| self.roles.iter().any(|s| s == r));
        let by_status = self.status.as_ref().is_none_or(|s| {
            rec.organisation
                .status
                .as_ref()
                .is_some_and(|o| o.eq_ignore_ascii_case(s))
        });
        let by_class = self.record_classes.is_empty()
            || rec
                .organisation
                .record_class
                .as_ref()
                .is_some_and(|c| self.record_classes.contains(c));
        by_role && by_status && by_class
    }
}
