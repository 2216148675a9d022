//! The party API (`lefi.v1`), served on the party listener to insurers and authorities.
//!
//! One module per service: [`party`] (who am I, catalogues), [`subscriptions`], [`consents`],
//! [`cases`], [`query`], [`delivery`] (the stream), [`statistics`] (statistics orders). [`authorize`] is their shared helper for the
//! disclosure policy, not a service. No service imports another.
//!
//! Every RPC names its guard in its service's `grpc::service!` table: `PartyApi::party` (the
//! calling party), or `PartyApi::logged` for the RPCs whose decisions go to the disclosure log.

pub mod authorize;
pub mod cases;
pub mod consents;
pub mod delivery;
pub mod party;
pub mod query;
pub mod statistics;
pub mod subscriptions;

use tonic::{Request, Status};

use self::authorize::CallContext;
use crate::domain::disclosure::Channel;
use crate::grpc::party_of;
use crate::grpc::pb::lefi::v1::case_service_server::CaseServiceServer;
use crate::grpc::pb::lefi::v1::consent_service_server::ConsentServiceServer;
use crate::grpc::pb::lefi::v1::delivery_service_server::DeliveryServiceServer;
use crate::grpc::pb::lefi::v1::party_service_server::PartyServiceServer;
use crate::grpc::pb::lefi::v1::query_service_server::QueryServiceServer;
use crate::grpc::pb::lefi::v1::statistics_order_service_server::StatisticsOrderServiceServer;
use crate::grpc::pb::lefi::v1::subscription_service_server::SubscriptionServiceServer;
use crate::identity::PartyPrincipal;
use crate::state::AppState;

/// The party API's services: one value, shared by every service of the API.
#[derive(Debug, Clone)]
pub struct PartyApi {
    pub state: AppState,
}

crate::grpc::services!(
    PartyApi,
    [
        PartyServiceServer,
        SubscriptionServiceServer,
        DeliveryServiceServer,
        QueryServiceServer,
        ConsentServiceServer,
        CaseServiceServer,
        StatisticsOrderServiceServer,
    ]
);

impl PartyApi {
    /// The guard of the party RPCs: the calling party ([`party_of`]) and the request message.
    fn party<T>(&self, request: Request<T>) -> Result<(PartyPrincipal, T), Status> {
        Ok((party_of(&request)?, request.into_inner()))
    }

    /// The guard of the party RPCs whose decisions go to the disclosure log: the calling party,
    /// where the call came from (the full method `rpc`, its `channel` and the request id), and the
    /// request message.
    fn logged<T>(
        &self,
        request: Request<T>,
        rpc: &'static str,
        channel: Channel,
    ) -> Result<(PartyPrincipal, CallContext, T), Status> {
        let party = party_of(&request)?;
        let call = CallContext::new(&request, rpc, channel);
        Ok((party, call, request.into_inner()))
    }
}
