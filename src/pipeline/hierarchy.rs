//! The parent of each organisation, derived from its own active relationships (relationships
//! live on the child and point to the parent, docs/ods-reference.md 6): the first rule that matches wins.
//!
//! | child | relationship |
//! |---|---|
//! | trust site → trust | RE6 (is operated by) |
//! | GP practice → commissioner | RE4 (is commissioned by; not the geographic RE5) |
//! | trust, sub-ICB location → ICB | RE5 to an RO261 target |
//! | ICB → NHS England region | RE2 or RE5 to an RO209 target |
//! | bulk CSV rows | the commissioner column, else High Level Health Geography, else National Grouping |
//!
//! The result is two derived columns, `parent_code` and `parent_relationship` (which rule), so a
//! change of parent is a `reparented` change in the diff and is merged with provenance. The dated
//! history of every parent link stays in the `relationships` table (see the `hierarchy` view).

use crate::model::states::OrgStatus;
use crate::model::{OrgRecord, Relationship};

fn active(rel: &Relationship) -> bool {
    rel.status.as_deref() != Some(OrgStatus::Inactive.as_str()) && rel.operational.end.is_none()
}

/// Sets `parent_code` and `parent_relationship` on one record.
///
/// A closed organisation keeps the parent it had when it closed: its relationships end with it
/// (ORD) or carry its Inactive status (bulk files), so for it the rules look at the links that
/// ended last. Otherwise every closure would also read as a move to no parent, and a trust closed
/// and recoded in one release would lose its new parent.
pub fn apply(rec: &mut OrgRecord) {
    let closed = rec.organisation.status.as_deref() == Some(OrgStatus::Inactive.as_str());
    let rels = &rec.relationships;
    let find = |pred: &dyn Fn(&Relationship) -> bool| {
        if closed {
            // Latest end first (an open end is latest), then latest start.
            rels.iter()
                .filter(|r| pred(r))
                .max_by_key(|r| (r.operational.end.is_none(), r.operational.end, r.operational.start))
        } else {
            rels.iter()
                .filter(|r| active(r) && pred(r))
                .max_by_key(|r| r.operational.start)
        }
    };
    let target_role = |r: &Relationship, role: &str| r.target_primary_role.as_deref() == Some(role);
    let choice: Option<(&Relationship, String)> = [
        (find(&|r| r.rel_type == "RE6"), "RE6 is operated by"),
        (find(&|r| r.rel_type == "RE4"), "RE4 is commissioned by"),
        (
            find(&|r| r.rel_type == "RE5" && target_role(r, "RO261")),
            "RE5 in the geography of (ICB)",
        ),
        (
            find(&|r| (r.rel_type == "RE2" || r.rel_type == "RE5") && target_role(r, "RO209")),
            "RE2/RE5 region",
        ),
        (find(&|r| r.rel_type == "COMMISSIONER"), "csv:15 commissioner"),
        (
            find(&|r| r.rel_type == "HIGH_LEVEL_HEALTH_GEOGRAPHY"),
            "csv:4 high level health geography",
        ),
        (find(&|r| r.rel_type == "NATIONAL_GROUPING"), "csv:3 national grouping"),
    ]
    .into_iter()
    .find_map(|(rel, why)| rel.map(|r| (r, why.to_owned())));
    let (code, why) = match choice {
        Some((rel, why)) => (Some(rel.target_code.clone()), Some(why)),
        None => (None, None),
    };
    rec.organisation.parent_code = code;
    rec.organisation.parent_relationship = why;
}
