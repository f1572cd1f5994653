//! Closed sets the domain names, as types. Each serialises (serde, `Display`, `as_str`) to the
//! exact string the catalog, the manifests, the reports and `--json` have always carried, and
//! parses back from it with an error that lists the known values.

macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code)]
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // `pad`, not `write_str`: widths and alignment (`{:<10}`) apply as to a string.
                f.pad(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        "unknown {} `{other}` (known: {})",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

closed_set!(
    /// How a run ended (the `runs` table, `RunSummary.status`).
    RunStatus {
        /// Started, not finished: the row `start_run` writes, until the run ends.
        Running => "running",
        /// Committed a new snapshot version.
        Succeeded => "succeeded",
        /// Same content as the latest version: nothing new committed but the watermark.
        Unchanged => "unchanged",
        /// Failed at a stage: nothing committed.
        Failed => "failed",
        /// `--dry-run`: did the work, committed nothing, recorded nothing.
        DryRun => "dry_run",
        /// Died without finishing (killed, crashed): the next run of the pipeline, holding its
        /// lock, marks a `running` row so (sql/catalog/create_runs.sql).
        Abandoned => "abandoned",
    }
);

impl RunStatus {
    /// A run that committed (a new version, or the same content again).
    pub fn committed(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Unchanged)
    }
}

closed_set!(
    /// What a merge did (`MergeReport.status`).
    MergeStatus {
        /// A new merged version.
        Merged => "merged",
        /// The inputs equal the latest merged version's: nothing merged.
        Unchanged => "unchanged",
    }
);

impl OrgStatus {
    /// FHIR's `active` flag as an ODS status.
    pub fn from_active(active: bool) -> Self {
        if active { OrgStatus::Active } else { OrgStatus::Inactive }
    }
}

/// A report being built is a merge until it is found to be unchanged.
impl Default for MergeStatus {
    fn default() -> Self {
        MergeStatus::Merged
    }
}

closed_set!(
    /// An organisation's (or a role's, a relationship's) ODS status.
    OrgStatus {
        Active => "Active",
        Inactive => "Inactive",
    }
);

closed_set!(
    /// `odsync status`'s verdict on one pipeline.
    Health {
        Ok => "ok",
        Unhealthy => "unhealthy",
    }
);

closed_set!(
    /// A stage of a run: laps in the summary's `stages`, the `stage` span of every log line, and
    /// where a failed run stopped (`RunError`, the `runs` row's error, `--json`).
    Stage {
        Fetch => "fetch",
        ReadPrevious => "read previous",
        Parse => "parse",
        Roles => "roles",
        BuildTables => "build tables",
        WriteSnapshot => "write snapshot",
        Diff => "diff",
        History => "history",
        Merge => "merge",
        Commit => "commit",
        /// Failures only: the pull is incomplete (`[quality]`).
        Completeness => "completeness",
        /// Failures only: the role mapping does not load.
        RoleMapping => "role mapping",
        /// Failures only: a table of the previous snapshot a delta builds on cannot be read.
        ReadPreviousSnapshot => "read previous snapshot",
        /// Failures only: the publication-shift guard stopped the run.
        ShiftGuard => "shift guard",
    }
);

closed_set!(
    /// What one change row of a diff means (`change_kind` of the changes table, the history, the
    /// summary's `by_kind`). `diff/compare.rs` labels each row from the field that changed,
    /// `diff/kinds.rs` relabels child rows by what happened to their organisation.
    ChangeKind {
        Added => "added",
        Deleted => "deleted",
        Changed => "changed",
        Renamed => "renamed",
        Reparented => "reparented",
        /// Status to Inactive/Closed, or an operational end date set.
        Closed => "closed",
        Reopened => "reopened",
        /// A `Proposed` organisation became operational (`status_detail`).
        Opened => "opened",
        /// A successor added (an organisation merged into another).
        Succeeded => "succeeded",
        /// A flag about the release, not the organisation (`amended_record`).
        Metadata => "metadata",
    }
);

closed_set!(
    /// How a role code changed in ODS's role code system between two snapshots
    /// (`CodeSystemChange`, the run summary and the manifest).
    CodeChange {
        Added => "added",
        Removed => "removed",
        Renamed => "renamed",
    }
);

closed_set!(
    /// Where a snapshot's records came from (`[source] type`, the manifest's `source.kind`).
    SourceKind {
        Ord => "ord",
        Csv => "csv",
        Fhir => "fhir",
        TrudXml => "trud_xml",
    }
);

closed_set!(
    /// How a conflict is resolved (`odsync conflicts resolve`, the `resolutions.csv` log).
    ResolutionKind {
        /// Take the ODS value.
        AcceptOds => "accept_ods",
        /// Keep the team's value.
        KeepLocal => "keep_local",
        /// A value of the team's choosing (`value`).
        Set => "set",
        /// Leave the conflict open but out of the counts, with a reason, until a date if given.
        Ignore => "ignore",
    }
);

impl SourceKind {
    /// An API with a `/sync`-style change feed: runs take deltas from a watermark.
    pub fn has_change_feed(self) -> bool {
        matches!(self, SourceKind::Ord | SourceKind::Fhir)
    }
}

closed_set!(
    /// A table odsync writes, by its name (its folder in the warehouse, its catalog view, the
    /// `table` column of a diff's changes): the snapshot's eight, the diff's, the history's and
    /// the merge's four.
    Table {
        Organisations => "organisations",
        Roles => "roles",
        Relationships => "relationships",
        Successors => "successors",
        CodeSystemRoles => "code_system_roles",
        Quarantine => "quarantine",
        Deletions => "deletions",
        Raw => "raw",
        Changes => "changes",
        History => "history",
        Trusts => "trusts",
        Conflicts => "conflicts",
        Provenance => "provenance",
        Sources => "sources",
    }
);

impl ChangeKind {
    /// The kind in row `i` of a `change_kind` column; `None` for a null or a value this version
    /// does not know (a table written by another version: callers treat it as no kind they test).
    pub fn at(column: &arrow::array::StringArray, i: usize) -> Option<Self> {
        use arrow::array::Array;
        column.is_valid(i).then(|| column.value(i).parse().ok()).flatten()
    }

    /// A `change_kind` column.
    pub fn column(kinds: impl IntoIterator<Item = ChangeKind>) -> arrow::array::ArrayRef {
        std::sync::Arc::new(
            kinds
                .into_iter()
                .map(|k| Some(k.as_str()))
                .collect::<arrow::array::StringArray>(),
        )
    }

    /// `n` rows of one kind.
    pub fn repeat(self, n: usize) -> arrow::array::ArrayRef {
        Self::column(std::iter::repeat_n(self, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_round_trips_through_its_string_and_serde() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{s}\""));
            assert_eq!(serde_json::from_str::<RunStatus>(&json).unwrap(), *s);
        }
        for k in ChangeKind::ALL {
            assert_eq!(k.as_str().parse::<ChangeKind>().unwrap(), *k);
        }
        let column = ChangeKind::column([ChangeKind::Closed, ChangeKind::Metadata]);
        let column = column.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        assert_eq!(column.value(1), "metadata");
        assert_eq!(ChangeKind::at(column, 0), Some(ChangeKind::Closed));
        let foreign = arrow::array::StringArray::from(vec![Some("merged"), None]);
        assert_eq!((ChangeKind::at(&foreign, 0), ChangeKind::at(&foreign, 1)), (None, None));
        assert_eq!(RunStatus::DryRun.as_str(), "dry_run");
        assert_eq!(OrgStatus::Inactive.to_string(), "Inactive");
        assert_eq!(format!("[{:<10}]", RunStatus::Failed), "[failed    ]");
        let err = "done".parse::<RunStatus>().unwrap_err();
        assert!(err.contains("`done`") && err.contains("succeeded, unchanged"), "{err}");
    }
}
