//! The gRPC surface: generated protobuf code, the two APIs and the error mapping.
//!
//! - [`party_api`]: `lefi.v1`, for insurers and authorities (party listener).
//! - [`admin_api`]: `lefi.admin.v1`, for the agency's operators (admin listener).
//! - Shared floor below both: [`status`] (every `Status` is built there), [`fields`] (request
//!   field checks), [`paging`] (page tokens), [`convert`] (domain ↔ proto), [`identity_layer`]
//!   (who is calling), [`statistics`] (statistics orders on the wire, for both APIs).
//!
//! Invariant: protobuf types stop here. Services convert requests into domain values, read the
//! caller's principal from the request extensions (put there by [`identity_layer`]), call the
//! policy and the store, and convert the answer back. A service never imports another service.

pub mod admin_api;
pub mod codec;
pub mod convert;
pub mod fields;
pub mod identity_layer;
pub mod paging;
pub mod party_api;
pub mod statistics;
pub mod status;

use crate::identity::{OperatorPrincipal, PartyPrincipal};
use crate::policy::operator::{AdminRight, require};

/// Generated code for `proto/`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
pub mod pb {
    pub mod lefi {
        pub mod v1 {
            tonic::include_proto!("lefi.v1");
        }
        pub mod admin {
            pub mod v1 {
                tonic::include_proto!("lefi.admin.v1");
            }
        }
    }

    pub use lefi::v1::ErrorReason;

    /// The encoded descriptors of every lefi proto file, served by reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("lefi_descriptor");
}

/// The party that made this call. The identity layer guarantees it is there on the party listener;
/// its absence means the service was mounted without that layer, a bug reported as INTERNAL.
pub fn party_of<T>(req: &tonic::Request<T>) -> Result<PartyPrincipal, tonic::Status> {
    req.extensions()
        .get::<PartyPrincipal>()
        .cloned()
        .ok_or_else(status::missing_principal)
}

/// The operator that made this call, if its role holds `right` (the one operator-role check of
/// the admin API; see [`crate::policy::operator`]).
pub fn operator_with<T>(
    req: &tonic::Request<T>,
    right: AdminRight,
) -> Result<OperatorPrincipal, tonic::Status> {
    let operator = operator_of(req)?;
    require(operator.role, right)?;
    Ok(operator)
}

/// The operator that made this call, whatever its role (for calls every operator may make).
pub fn operator_of<T>(req: &tonic::Request<T>) -> Result<OperatorPrincipal, tonic::Status> {
    req.extensions()
        .get::<OperatorPrincipal>()
        .cloned()
        .ok_or_else(status::missing_principal)
}
