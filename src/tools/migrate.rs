//! `acgs migrate`: applies every selected service's embedded migrations to the configured store
//! (SQLite files in the data dir, or one PostgreSQL schema per service) and reports what it did.
//! Services also migrate themselves at start-up; this is for operators who want it done first.

use anyhow::Context;

use crate::config::Config;
use crate::embedded;
use crate::kernel::service::ServiceName;
use crate::kernel::storage::Db;

/// Migrates each service in `services` that has migrations.
pub async fn run(config: &Config, services: &[ServiceName]) -> anyhow::Result<()> {
    let storage = config.storage();
    for &service in services {
        let migrations = embedded::migrations(service).with_context(|| format!("{service}: embedded migrations"))?;
        if migrations.is_empty() {
            println!("{service:<13} no migrations");
            continue;
        }
        let db = Db::open(service.as_str(), &storage).await.with_context(|| format!("{service}: opening storage"))?;
        let applied = db.migrate(&migrations).await.with_context(|| format!("{service}: migrating"))?;
        let latest = migrations.last().map_or(0, |m| m.version);
        if applied.is_empty() {
            println!("{service:<13} up to date at version {latest} ({})", db.backend());
        } else {
            let list = applied.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
            println!("{service:<13} applied {list}; now at version {latest} ({})", db.backend());
        }
    }
    Ok(())
}
