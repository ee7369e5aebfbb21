//! The names of the seven services, their default ports (as in the original guide) and the order
//! in which `acgs up` starts them.

use std::fmt;
use std::str::FromStr;

/// One of the seven services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    Auth,
    Constitution,
    Integrity,
    Verification,
    Simulation,
    Consensus,
    Evolution,
}

impl ServiceName {
    /// All services, in start-up order (dependencies first).
    pub const ALL: [ServiceName; 7] = [
        ServiceName::Auth,
        ServiceName::Constitution,
        ServiceName::Integrity,
        ServiceName::Verification,
        ServiceName::Simulation,
        ServiceName::Consensus,
        ServiceName::Evolution,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ServiceName::Auth => "auth",
            ServiceName::Constitution => "constitution",
            ServiceName::Integrity => "integrity",
            ServiceName::Verification => "verification",
            ServiceName::Simulation => "simulation",
            ServiceName::Consensus => "consensus",
            ServiceName::Evolution => "evolution",
        }
    }

    /// The guide's port for this service (8000–8006).
    pub const fn default_port(self) -> u16 {
        match self {
            ServiceName::Auth => 8000,
            ServiceName::Constitution => 8001,
            ServiceName::Integrity => 8002,
            ServiceName::Verification => 8003,
            ServiceName::Simulation => 8004,
            ServiceName::Consensus => 8005,
            ServiceName::Evolution => 8006,
        }
    }

    /// "auth, constitution, …" for error messages.
    pub fn list() -> String {
        Self::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ServiceName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|name| name.as_str() == s)
            .ok_or_else(|| format!("unknown service '{s}' (valid: all, {})", Self::list()))
    }
}
