//! The gRPC surface: generated protobuf code, service implementations, and error mapping.
//!
//! Invariant: protobuf types stop here. Services convert requests into domain values, read the
//! caller's principal from the request extensions (put there by [`crate::identity`]), call the
//! store or the policy, and convert the answer back.

pub mod admin;
pub mod audit;
pub mod authorize;
pub mod consents;
pub mod convert;
pub mod delivery;
pub mod party;
pub mod query;
pub mod register;
pub mod status;
pub mod subscriptions;

use tonic::Code;

use crate::grpc::pb::ErrorReason;
use crate::identity::{OperatorPrincipal, PartyPrincipal};

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
    req.extensions().get::<PartyPrincipal>().cloned().ok_or_else(|| {
        tracing::error!("party principal missing: service mounted without the identity layer");
        status::error(
            Code::Internal,
            ErrorReason::Internal,
            "internal error: caller identity unavailable",
        )
    })
}

/// The operator that made this call (see [`party_of`]).
pub fn operator_of<T>(req: &tonic::Request<T>) -> Result<OperatorPrincipal, tonic::Status> {
    req.extensions()
        .get::<OperatorPrincipal>()
        .cloned()
        .ok_or_else(|| {
            tracing::error!("operator principal missing: service mounted without the identity layer");
            status::error(
                Code::Internal,
                ErrorReason::Internal,
                "internal error: caller identity unavailable",
            )
        })
}
