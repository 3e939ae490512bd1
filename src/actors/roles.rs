//! The reactive roles the supervisor starts, in start order. Adding a role: one file in
//! `src/actors/`, one line here.

use super::ir_lead::IrLead;
use super::role::RoleSpec;
use super::sentinel::Sentinel;
use super::threat_intel::ThreatIntel;
use super::tier2::Tier2;

/// The reactive roles, in start order.
pub const REACTIVE_ROLES: [RoleSpec; 4] = [
    RoleSpec::of::<Sentinel>(),
    RoleSpec::of::<Tier2>(),
    RoleSpec::of::<IrLead>(),
    RoleSpec::of::<ThreatIntel>(),
];
