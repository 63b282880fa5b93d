//! The pure core: groups, settings, permissions, SSO group mappings and how they resolve.
//!
//! Nothing in here performs I/O, reads the clock or touches a database; every function is a
//! plain transformation of its arguments, which is what lets the rules be tested exhaustively.

pub mod access;
pub mod claims;
pub mod defaults;
pub mod dn;
pub mod group;
pub mod lockout;
pub mod mapping;
pub mod matcher;
pub mod permissions;
pub mod settings;
pub mod suggest;
pub mod sync;
