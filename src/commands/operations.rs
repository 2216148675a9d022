//! `lefi admin consumers` and `lefi admin limits`: following up each party's delivery, and setting
//! a party's own limits.

use tonic::transport::Channel;

use super::output::{instant, print_each, print_message};
use crate::cli::{AgencyScopeArgs, AgencySubscriptionsCommand, LimitsArgs};
use crate::grpc::pb::lefi::admin::v1 as pb;

/// `lefi admin consumers`: one block per party.
pub async fn consumers(channel: Channel, party_id: Option<&str>, json: bool) -> anyhow::Result<()> {
    let listing = pb::operations_admin_service_client::OperationsAdminServiceClient::new(channel)
        .list_consumers(pb::ListConsumersRequest {
            party_id: party_id.unwrap_or_default().to_string(),
        })
        .await?
        .into_inner();
    if json {
        return print_each(true, &listing.consumers, |_| {});
    }
    println!(
        "register head {} at {}; open streams as seen by {}",
        listing.head_sequence,
        instant(listing.read_at).unwrap_or_default(),
        listing.replica
    );
    if listing.consumers.is_empty() {
        println!("(no connected party)");
    }
    for c in &listing.consumers {
        println!();
        print_consumer(c);
    }
    Ok(())
}

fn print_consumer(c: &pb::Consumer) {
    let state = crate::grpc::pb::lefi::v1::PartyState::try_from(c.state)
        .unwrap_or_default()
        .as_str_name();
    println!("{} ({}, {state})", c.party_name, c.party_id);
    if c.open_streams.is_empty() {
        println!("  streams       none open here");
    }
    for (i, s) in c.open_streams.iter().enumerate() {
        let label = if i == 0 { "streams" } else { "" };
        let peer = if s.peer.is_empty() { "-" } else { &s.peer };
        println!(
            "  {label:<13} since {} from {peer}, resumed after {}, delivered up to {}",
            instant(s.opened_at).unwrap_or_default(),
            s.from_sequence,
            s.delivered_sequence
        );
    }
    if c.committed_cursors.is_empty() {
        println!("  confirmed     never (no CommitCursor)");
    }
    for (i, k) in c.committed_cursors.iter().enumerate() {
        let label = if i == 0 { "confirmed" } else { "" };
        println!(
            "  {label:<13} {} up to {} at {}",
            k.consumer,
            k.register_sequence,
            instant(k.committed_at).unwrap_or_default()
        );
    }
    if let Some(behind) = c.lag_sequences {
        let seconds = c.lag.map_or(0, |d| d.seconds);
        println!("  lag           {behind} sequences, {seconds} s");
    }
    match instant(c.cursor_expires_at) {
        Some(at) => println!("  cursor expires {at} unless it moves on"),
        None if c.lag_sequences.is_some() => println!("  cursor expires not while it is up to date"),
        None => {}
    }
    match &c.last_full_refresh {
        Some(r) => println!(
            "  full refresh  {} at sequence {} ({} subscriptions){}",
            instant(r.requested_at).unwrap_or_default(),
            r.sequence,
            r.subscription_count,
            if r.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", r.reason)
            }
        ),
        None => println!("  full refresh  never"),
    }
    if let Some(l) = &c.limits {
        println!("  limits        {}", limits_text(l));
    }
}

/// `lefi admin subscriptions suspend|resume|end`.
pub async fn agency_subscriptions(
    channel: Channel,
    command: &AgencySubscriptionsCommand,
    json: bool,
) -> anyhow::Result<()> {
    use pb::agency_subscriptions_request::Scope;
    let request = |args: &AgencyScopeArgs| pb::AgencySubscriptionsRequest {
        party_id: args.party.party_id.clone(),
        scope: Some(match (&args.subscription_id, &args.person_id) {
            (Some(id), _) => Scope::SubscriptionId(id.clone()),
            (None, Some(person)) => Scope::PersonId(person.clone()),
            (None, None) => Scope::AllOfParty(args.all),
        }),
        reason: args.reason.clone(),
    };
    let mut client = pb::operations_admin_service_client::OperationsAdminServiceClient::new(channel);
    let (response, done) = match command {
        AgencySubscriptionsCommand::Suspend(args) => {
            (client.suspend_subscriptions(request(args)).await?, "suspended")
        }
        AgencySubscriptionsCommand::Resume(args) => {
            (client.resume_subscriptions(request(args)).await?, "resumed")
        }
        AgencySubscriptionsCommand::End(args) => (client.end_subscriptions(request(args)).await?, "ended"),
    };
    print_message(json, &response.into_inner(), |r| {
        println!("{} subscriptions {done}", r.subscription_ids.len());
        for id in &r.subscription_ids {
            println!("  {id}");
        }
        Ok(())
    })
}

/// `lefi admin crls [--reload]`.
pub async fn crls(channel: Channel, reload: bool, json: bool) -> anyhow::Result<()> {
    let mut client = pb::operations_admin_service_client::OperationsAdminServiceClient::new(channel);
    let listing = if reload {
        client.reload_crls(pb::ReloadCrlsRequest {}).await?
    } else {
        client.list_crls(pb::ListCrlsRequest {}).await?
    }
    .into_inner();
    print_message(json, &listing, |l| {
        if reload {
            println!(
                "reloaded on {} ({} reloads since it started)",
                l.replica, l.reloads
            );
        }
        if l.crls.is_empty() {
            println!("no CRL in force (serve --crl FILE)");
        }
        for c in &l.crls {
            println!("{}", c.issuer);
            println!("  file          {}", c.source);
            println!(
                "  number        {}",
                if c.number.is_empty() { "-" } else { &c.number }
            );
            println!("  issued        {}", instant(c.this_update).unwrap_or_default());
            println!(
                "  next update   {}",
                instant(c.next_update).unwrap_or_else(|| "-".to_string())
            );
            println!("  revokes       {} certificates", c.revoked_count);
        }
        Ok(())
    })
}

/// Limits as people read them; a limit not set is the server's default.
pub(super) fn limits_text(l: &pb::PartyLimits) -> String {
    let shown = |v: Option<u32>| v.map_or("default".to_string(), |n| n.to_string());
    format!(
        "{} streams, {} requests/s, burst {}",
        shown(l.max_streams),
        shown(l.requests_per_second),
        shown(l.burst)
    )
}

/// `lefi admin limits`.
pub async fn limits(
    client: &mut pb::party_admin_service_client::PartyAdminServiceClient<Channel>,
    args: &LimitsArgs,
    json: bool,
    key: &str,
) -> anyhow::Result<()> {
    let response = client
        .set_party_limits(pb::SetPartyLimitsRequest {
            idempotency_key: key.to_string(),
            party_id: args.party.party_id.clone(),
            limits: Some(pb::PartyLimits {
                max_streams: args.max_streams,
                requests_per_second: args.rate,
                burst: args.burst,
            }),
            reason: args.reason.clone(),
        })
        .await?
        .into_inner();
    print_message(json, &response, |r| {
        let own = r.limits.unwrap_or_default();
        println!("party's own limits  {}", limits_text(&own));
        println!("in force at the party's next call, on every server");
        Ok(())
    })
}
