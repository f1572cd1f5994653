//! `odsync migrate`: moves every pipeline of the warehouse still in the first layout to one
//! directory per table (`warehouse::layout::migrate`), then recreates the catalog views.

use super::Globals;
use crate::warehouse::layout::{Migration, migrate, needs_migration, pipelines_in};
use std::process::ExitCode;

pub fn run(globals: &Globals) -> anyhow::Result<ExitCode> {
    let warehouse = globals.warehouse(None);
    let mut done: Vec<Migration> = Vec::new();
    for name in pipelines_in(&warehouse) {
        let lock = crate::warehouse::lock_pipeline(&warehouse, &name, "migrate-layout")?;
        // Finishes an interrupted commit (or an interrupted migration) first.
        let recovery = crate::warehouse::recover(&warehouse, &name)?;
        done.extend(recovery.migrated);
        if needs_migration(&warehouse, &name)
            && let Some(m) = migrate(&warehouse, &name)?
        {
            done.push(m);
        }
        drop(lock);
    }
    if !done.is_empty() || warehouse.join(crate::catalog::CATALOG_FILE).exists() {
        crate::catalog::Catalog::open(&warehouse)?.refresh_views()?;
    }
    globals.printer.emit(&done, |done: &Vec<Migration>| {
        if done.is_empty() {
            return format!(
                "{}: every pipeline is already in the current layout\n",
                warehouse.display()
            );
        }
        let mut out = String::new();
        for m in done {
            let versions: Vec<String> = m.versions.iter().map(|(o, n)| format!("{n} {o}")).collect();
            out.push_str(&format!(
                "{}: moved {} files ({} versions) to one directory per table\n",
                m.pipeline,
                m.files_moved,
                versions.join(", ")
            ));
        }
        out
    })?;
    Ok(ExitCode::SUCCESS)
}
