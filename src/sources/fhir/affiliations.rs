//! Relationships over FHIR: `OrganizationAffiliation` searches for the organisations read, the
//! participating organisations `_include`d (or read by id), and the raw record of each
//! organisation as a `collection` Bundle of all of them (see the module docs of `fhir`).

use super::*;

/// Codes per `primary-organization` query (keeps URLs well under common 8 KB limits).
const AFFILIATION_BATCH: usize = 50;
/// `_count` of affiliation searches (the API recommends 1,000 and refuses over 50,000).
const AFFILIATION_PAGE: u32 = 1000;

#[derive(Default)]
struct Affiliations {
    /// Organisation code → affiliation id → resource.
    by_owner: BTreeMap<String, BTreeMap<String, Value>>,
    /// `_include`d participating organisations by code.
    included: BTreeMap<String, Value>,
    pages: u64,
}

impl FhirSource {
    /// The relationships of `codes`: `OrganizationAffiliation?primary-organization=…` in batches
    /// (comma = OR), with the participating organisations `_include`d for their primary role.
    fn affiliations(&self, codes: &[&String]) -> Result<Affiliations, SourceError> {
        let mut out = Affiliations::default();
        for batch in codes.chunks(AFFILIATION_BATCH) {
            let mut url = self.endpoint("OrganizationAffiliation");
            url.query_pairs_mut()
                .append_pair(
                    "primary-organization",
                    &batch.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(","),
                )
                .append_pair("_include", "OrganizationAffiliation:participating-organization")
                .append_pair("_count", &AFFILIATION_PAGE.to_string());
            out.pages += self.pages(url, |entry, _page| {
                let Some(resource) = entry.get("resource") else {
                    return;
                };
                match resource.get("resourceType").and_then(Value::as_str) {
                    Some("OrganizationAffiliation") => {
                        let id = resource
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned();
                        if let Some(owner) = referenced_code(resource.get("organization")) {
                            out.by_owner.entry(owner).or_default().insert(id, resource.clone());
                        }
                    }
                    Some("Organization") => {
                        if let Some(id) = resource.get("id").and_then(Value::as_str) {
                            out.included.insert(id.to_owned(), resource.clone());
                        }
                    }
                    _ => {}
                }
            })?;
        }
        Ok(out)
    }

    /// Raw records: each Organization in a `collection` Bundle with its affiliations (by id) and
    /// the participating organisations they name (by code), as `fhir_json` parses them.
    pub(super) fn bundle_records(
        &self,
        orgs: BTreeMap<String, Value>,
        origin: impl Fn(&str) -> String,
    ) -> Result<(Vec<RawRecord>, serde_json::Value), SourceError> {
        let codes: Vec<&String> = orgs.keys().collect();
        let mut affs = self.affiliations(&codes)?;
        // A server that ignores `_include` (its support is not verified against the live API):
        // the participating organisations still missing are read by `_id`, so relationships keep
        // their target's primary role either way.
        let missing: Vec<String> = affs
            .by_owner
            .values()
            .flat_map(|m| m.values())
            .filter_map(|a| referenced_code(a.get("participatingOrganization")))
            .filter(|t| !affs.included.contains_key(t) && !orgs.contains_key(t))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut looked_up = 0u64;
        for batch in missing.chunks(AFFILIATION_BATCH) {
            let mut url = self.endpoint("Organization");
            url.query_pairs_mut()
                .append_pair("_id", &batch.join(","))
                .append_pair("_count", &AFFILIATION_PAGE.to_string());
            self.pages(url, |entry, _page| {
                let Some(resource) = entry.get("resource") else {
                    return;
                };
                if let (Some("Organization"), Some(id)) = (
                    resource.get("resourceType").and_then(Value::as_str),
                    resource.get("id").and_then(Value::as_str),
                ) {
                    looked_up += 1;
                    affs.included.insert(id.to_owned(), resource.clone());
                }
            })?;
        }
        let mut without_role = BTreeSet::new();
        let mut relationships = 0u64;
        let mut records = Vec::with_capacity(orgs.len());
        for (code, org) in &orgs {
            let mine = affs.by_owner.remove(code).unwrap_or_default();
            relationships += mine.len() as u64;
            let targets: BTreeSet<String> = mine
                .values()
                .filter_map(|a| referenced_code(a.get("participatingOrganization")))
                .collect();
            let mut entry = vec![serde_json::json!({"resource": org})];
            entry.extend(mine.into_values().map(|a| serde_json::json!({"resource": a})));
            for t in targets {
                match affs.included.get(&t).or_else(|| orgs.get(&t)) {
                    Some(o) => entry.push(serde_json::json!({"resource": o})),
                    None => {
                        without_role.insert(t);
                    }
                }
            }
            let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": entry});
            records.push(RawRecord {
                code: code.clone(),
                format: RawFormat::FhirJson,
                origin: origin(code),
                payload: serde_json::to_vec(&bundle).expect("serialises").into(),
            });
        }
        if !without_role.is_empty() {
            tracing::warn!(
                count = without_role.len(),
                example = %without_role.iter().next().map(String::as_str).unwrap_or_default(),
                "participating organisations the affiliation search did not include: their relationships have no target primary role"
            );
        }
        let stats = serde_json::json!({
            "affiliation_pages": affs.pages,
            "relationships": relationships,
            "targets_read_by_id": looked_up,
            "targets_without_primary_role": without_role.len(),
        });
        Ok((records, stats))
    }
}
