//! The seven services, one folder each. A service never reaches into another's internals: it
//! uses that service's client type (in-process or HTTP) or the bus.

pub mod auth;
pub mod consensus;
pub mod constitution;
pub mod evolution;
pub mod integrity;
pub mod simulation;
pub mod verification;
