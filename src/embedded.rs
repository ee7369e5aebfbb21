//! The files bundled into the binary (`embedded/` at the crate root): the genesis constitution,
//! each service's SQL migrations, and (in later issues) Dockerfiles, the compose file and the
//! monitoring provisioning. `acgs embedded export DIR` writes them out.

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
