//! Deletion notices over FHIR: `GET /List/Organization-deletion` for incremental runs (a
//! deleted record is not in a `lastChangeDate` search).

use super::*;

/// The List of organisation deletion notices (docs/ods-reference.md 3).
const DELETION_LIST: &str = "List/Organization-deletion";

/// Deletion notices from a `List` (or a Bundle of Lists): each entry's `item` names the
/// organisation, `date` is when, `flag` the reason. The List's exact shape is UNVERIFIED
/// (docs/ods-reference.md 3 names the endpoint, not a body), so this reads the standard FHIR List.
fn parse_deletion_list(body: &Value) -> Vec<Deletion> {
    let lists: Vec<&Value> = match body.get("resourceType").and_then(Value::as_str) {
        Some("List") => vec![body],
        Some("Bundle") => body
            .get("entry")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("resource"))
            .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("List"))
            .collect(),
        _ => Vec::new(),
    };
    lists
        .into_iter()
        .flat_map(|l| l.get("entry").and_then(Value::as_array).into_iter().flatten())
        .filter_map(|e| {
            let flag = e.get("flag");
            let coding = flag
                .and_then(|f| f.get("coding"))
                .and_then(Value::as_array)
                .and_then(|c| c.first());
            let text_of = |v: Option<&Value>| {
                v.and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_i64().map(|n| n.to_string()))
                })
            };
            Some(Deletion {
                code: referenced_code(e.get("item"))?,
                reason_code: text_of(coding.and_then(|c| c.get("code"))),
                reason: text_of(flag.and_then(|f| f.get("text")))
                    .or_else(|| text_of(coding.and_then(|c| c.get("display")))),
                deleted_at: text_of(e.get("date")),
            })
        })
        .collect()
}

impl FhirSource {
    /// `GET /List/Organization-deletion`, for incremental runs (a deleted record is not in a
    /// `lastChangeDate` search). A 404 means this API has no such list: the run goes on without
    /// deletions, says so in a warning and records it in the manifest's source parameters.
    pub(super) fn deletions(&self) -> Result<(Vec<Deletion>, Value), SourceError> {
        let url = self.endpoint(DELETION_LIST);
        match self.http.get(&url) {
            Ok(r) => {
                let body: Value = serde_json::from_slice(&r.body).map_err(|e| SourceError::BadResponse {
                    url: r.url.clone(),
                    message: format!("not a JSON List: {e}"),
                })?;
                if !matches!(
                    body.get("resourceType").and_then(Value::as_str),
                    Some("List" | "Bundle")
                ) {
                    return Err(SourceError::BadResponse {
                        url: r.url.clone(),
                        message: "expected a FHIR List of deletions: without it deletions would go unnoticed\nHelp: run again (nothing was committed and the watermark did not move)".into(),
                    });
                }
                let found = parse_deletion_list(&body);
                let stats = serde_json::json!({"list": DELETION_LIST, "entries": found.len()});
                Ok((found, stats))
            }
            Err(HttpError::Status { url, status: 404, body }) => {
                let why = operation_outcome(&body).unwrap_or_else(|| "not found".into());
                tracing::warn!(%url, %why, "the FHIR API has no deletion list: deleted organisations will not be noticed by incremental runs (a --full run drops them)");
                Ok((
                    Vec::new(),
                    serde_json::json!({"list": DELETION_LIST, "unavailable": format!("HTTP 404: {why}")}),
                ))
            }
            Err(e) => Err(self.error(e)),
        }
    }
}
