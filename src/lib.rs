//! acgs: a governance control plane for automated and AI agents, in one binary.
