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
//!
//! Every service is declared with `service!`: one line per RPC naming the guard that checks
//! who calls, and an inherent method of the API, of the RPC's own name, that answers it.

pub mod admin_api;
pub mod codec;
pub mod convert;
pub mod fields;
pub mod identity_layer;
pub mod paging;
pub mod party_api;
pub mod rate_limit;
pub mod statistics;
pub mod status;
pub mod wire;

use crate::identity::{OperatorPrincipal, PartyPrincipal};
use crate::policy::operator::{AdminRight, require};

/// Generated code for `proto/`.
#[allow(clippy::all, clippy::pedantic, missing_docs, rust_2018_idioms)]
pub mod pb {
    pub mod lefi {
        pub mod v1 {
            tonic::include_proto!("lefi.v1");

            /// A benefit record in a message: its fields or its stored encoding (see
            /// [`crate::grpc::wire`]); generated messages hold this type.
            pub use crate::grpc::wire::BenefitRecord;

            /// The record's `fact` oneof (generated for the fields, `BenefitRecordFields`).
            pub mod benefit_record {
                pub use super::benefit_record_fields::*;
            }
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

/// Implements one tonic service for an API value, one line per RPC:
///
/// ```text
/// service! {
///     impl pb::case_service_server::CaseService for PartyApi {
///         close_case(pb::CloseCaseRequest) -> pb::CloseCaseResponse: party;
///     }
/// }
/// ```
///
/// Each RPC runs in its own span (`tracing::instrument(skip_all)`, with the fields a leading
/// `#[fields(..)]` declares). Its request goes first to the named guard, a method of the API with
/// the guard's arguments after the request: the guard checks who calls and returns the call as
/// the RPC's method takes it (for example `PartyApi::party`). The answer comes from the API's
/// inherent method of the RPC's own name (inherent methods take precedence over the trait's), so
/// nothing reaches a method without the check its line names.
macro_rules! service {
    (
        impl $($service:ident)::+ for $api:ty {
            $(
                $(#[fields($($field:ident),+)])?
                $rpc:ident($request:ty) -> $response:ty: $guard:ident $(($($arg:expr),+))?;
            )+
        }
    ) => {
        #[tonic::async_trait]
        impl $($service)::+ for $api {
            $(
                #[tracing::instrument(skip_all $(, fields($($field),+))?)]
                async fn $rpc(
                    &self,
                    request: tonic::Request<$request>,
                ) -> Result<tonic::Response<$response>, tonic::Status> {
                    let call = self.$guard(request $($(, $arg)+)?)?;
                    self.$rpc(call).await.map(tonic::Response::new)
                }
            )+
        }
    };
}

pub(crate) use service;

/// Declares an API's list of services, for `app`: `SERVICE_NAMES`, what health and reflection
/// advertise on its listener (these and the health service), and `add_services`, which adds each
/// to the routes around one value of the API, `$api { state }`, with the request limit tonic
/// enforces (its refusal is given lefi's form in [`codec`]).
macro_rules! services {
    ($api:ident, [$($server:ident),+ $(,)?]) => {
        /// The services reflection advertises on this API's listener.
        pub const SERVICE_NAMES: &[&str] = &[
            $(<$server<$api> as tonic::server::NamedService>::NAME,)+
            "grpc.health.v1.Health",
        ];

        /// Adds every service of this API to `routes`.
        pub fn add_services(routes: &mut tonic::service::RoutesBuilder, state: &$crate::state::AppState) {
            let api = $api { state: state.clone() };
            $(
                routes.add_service(
                    $server::new(api.clone()).max_decoding_message_size(state.max_message_bytes),
                );
            )+
        }
    };
}

pub(crate) use services;

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
