//! The files bundled into the binary (`embedded/` at the crate root): the genesis constitution and
//! policy set, each service's SQL migrations, the acgs image's Dockerfile (`docker/`), the pinned
//! third-party images and the compose file (`deploy/images.toml`, `deploy/compose.yaml`), and the
//! monitoring provisioning (`monitoring/prometheus/` scrape config and alert rules,
//! `monitoring/grafana/` data source, dashboard provider and the three dashboards).
//! `acgs embedded export DIR` writes them out; embedded/README.md lists what each file is for.

use include_dir::{Dir, include_dir};

use crate::kernel::service::ServiceName;
use crate::kernel::storage::{Migration, StorageError, migrations_from_dir};

/// The embedded tree.
pub static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/embedded");

/// A service's migrations, in order. A service without a migrations folder has none.
pub fn migrations(service: ServiceName) -> Result<Vec<Migration>, StorageError> {
    match EMBEDDED.get_dir(format!("migrations/{}", service.as_str())) {
        Some(dir) => migrations_from_dir(dir),
        None => Ok(Vec::new()),
    }
}
