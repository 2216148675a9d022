//! Domain types: valid-only values that the rest of the service passes around.
//!
//! Invariant: this module imports neither tonic nor sqlx and does no I/O. Raw input becomes a
//! domain type through a `parse` constructor before anything else happens to it.

pub mod catalogue;
pub mod clock;
pub mod cursor;
pub mod delivery;
pub mod disclosure;
pub mod lifecycle;
pub mod limits;
pub(crate) mod names;
pub mod onboarding;
pub mod org_number;
pub mod party;
pub mod personnummer;
pub mod register;
pub mod statistics;

pub use org_number::OrgNumber;
pub use party::{OperatorRole, PartyKind, PartyState};
pub use personnummer::Personnummer;
