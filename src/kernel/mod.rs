//! What every service shares: HTTP application and errors, token verification, the
//! constitutional hash, Cedar policy parsing and validation, storage, the bus, metrics, votes and
//! their tally, shutdown. Nothing here knows any one service.

pub mod audit;
pub mod auth;
pub mod bus;
pub mod constitution;
pub mod error;
pub mod http;
pub mod metrics;
pub mod peer;
pub mod policy;
pub mod service;
pub mod shared;
pub mod shutdown;
pub mod storage;
pub mod voting;
