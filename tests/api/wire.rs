//! Bad bytes on the wire (issue 14, items 10 and 11): a request that is not protobuf, or is over
//! the server's message limit, is the caller's mistake and says so with an ErrorInfo; on the
//! ingest stream everything before it is answered, nothing after it is read, and the call never
//! ends OK.

use std::marker::PhantomData;

use bytes::BufMut;
use lefi::grpc::pb::lefi::admin::v1 as admin_pb;
use lefi::grpc::pb::lefi::v1 as pb;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::backend_tests;
use crate::helpers::{Backend, SpawnOptions, TestApp, reason};
use crate::register::{P1, P2, ingest, outcome, payment};

backend_tests!(
    an_unreadable_fact_ends_ingest_after_answering_those_before_it,
    an_oversize_fact_ends_ingest_with_resource_exhausted,
    unary_requests_that_cannot_be_read_are_refused_with_a_reason,
);

/// The limit the tests' servers are started with.
const LIMIT: usize = 64 * 1024;

/// Bytes that are not protobuf: field 1 with wire type 7, which does not exist.
const NOT_PROTOBUF: &[u8] = &[0x0f, 0x01];

/// Sends request bytes exactly as given and decodes the answers as `R`.
struct RawCodec<R>(PhantomData<R>);

impl<R> Default for RawCodec<R> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<R: Message + Default + Send + 'static> Codec for RawCodec<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<R> {
        ProstDecoder(PhantomData)
    }
}

struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.put_slice(&item);
        Ok(())
    }
}

struct ProstDecoder<R>(PhantomData<R>);

impl<R: Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn raw_ingest(
    channel: Channel,
    requests: Vec<Vec<u8>>,
) -> (Vec<admin_pb::IngestResponse>, Result<(), Status>) {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/lefi.admin.v1.RegisterAdminService/Ingest");
    let mut stream = match grpc
        .streaming(
            tonic::Request::new(tokio_stream::iter(requests)),
            path,
            RawCodec::<admin_pb::IngestResponse>::default(),
        )
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Err(status)),
    };
    let mut answers = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(answer)) => answers.push(answer),
            Ok(None) => return (answers, Ok(())),
            Err(status) => return (answers, Err(status)),
        }
    }
}

/// A fact the register accepts.
fn good(person: &str, source_id: &str) -> admin_pb::Fact {
    payment(person, source_id, 1, pb::RecordKind::New, 100_000)
}

fn request(f: admin_pb::Fact) -> Vec<u8> {
    admin_pb::IngestRequest { fact: Some(f) }.encode_to_vec()
}

/// An IngestRequest of more than [`LIMIT`] bytes.
fn oversize_request() -> Vec<u8> {
    let mut big = good(P1, "big");
    big.source_id = "x".repeat(LIMIT + 1);
    request(big)
}

fn metadata(status: &Status, key: &str) -> Option<String> {
    status
        .get_details_error_info()
        .and_then(|info| info.metadata.get(key).cloned())
}

async fn spawn_limited(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(
        backend,
        SpawnOptions {
            max_message_bytes: Some(LIMIT),
            ..SpawnOptions::default()
        },
    )
    .await
}

/// The fact after the bad request was never stored: sending it now is ACCEPTED, not UNCHANGED.
async fn assert_never_stored(app: &TestApp, f: admin_pb::Fact) {
    let answers = ingest(app, vec![f]).await;
    assert_eq!(
        outcome(&answers[0]),
        admin_pb::IngestOutcome::Accepted,
        "{answers:?}"
    );
}

async fn an_unreadable_fact_ends_ingest_after_answering_those_before_it(backend: Backend) {
    let Some(app) = spawn_limited(backend).await else {
        return;
    };
    let channel = app.admin_channel(&app.certs.ingest).await;
    let after = good(P2, "after");
    let (answers, end) = raw_ingest(
        channel,
        vec![
            request(good(P1, "before")),
            NOT_PROTOBUF.to_vec(),
            request(after.clone()),
        ],
    )
    .await;
    assert_eq!(
        answers.len(),
        1,
        "the fact before the bad one is answered: {answers:?}"
    );
    assert_eq!(answers[0].index, 0);
    assert_eq!(
        outcome(&answers[0]),
        admin_pb::IngestOutcome::Accepted,
        "{answers:?}"
    );
    let status = end.expect_err("a stream with an unreadable request must not end OK");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::InvalidArgument, "MESSAGE_MALFORMED"),
        "{status:?}"
    );
    assert_eq!(metadata(&status, "index").as_deref(), Some("1"));
    assert!(metadata(&status, "request_id").is_some_and(|id| !id.is_empty()));
    assert!(
        status.message().contains("resend from request 1"),
        "{}",
        status.message()
    );
    assert_never_stored(&app, after).await;
    app.stop().await;
}

async fn an_oversize_fact_ends_ingest_with_resource_exhausted(backend: Backend) {
    let Some(app) = spawn_limited(backend).await else {
        return;
    };

    // Alone: no answer, and the end says so (it once ended OK with nothing).
    let (answers, end) = raw_ingest(
        app.admin_channel(&app.certs.ingest).await,
        vec![oversize_request()],
    )
    .await;
    assert!(answers.is_empty(), "{answers:?}");
    let status = end.expect_err("an oversize fact must not end OK");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
        "{status:?}"
    );
    assert_eq!(metadata(&status, "index").as_deref(), Some("0"));
    assert_eq!(metadata(&status, "max_bytes"), Some(LIMIT.to_string()));

    // Between two good facts: the first answered, the last never read.
    let after = good(P2, "after");
    let (answers, end) = raw_ingest(
        app.admin_channel(&app.certs.ingest).await,
        vec![
            request(good(P1, "before")),
            oversize_request(),
            request(after.clone()),
        ],
    )
    .await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(outcome(&answers[0]), admin_pb::IngestOutcome::Accepted);
    let status = end.expect_err("an oversize fact must not end OK");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(metadata(&status, "index").as_deref(), Some("1"));
    assert_never_stored(&app, after).await;
    app.stop().await;
}

async fn unary_requests_that_cannot_be_read_are_refused_with_a_reason(backend: Backend) {
    let Some(app) = spawn_limited(backend).await else {
        return;
    };
    let unary = |bytes: Vec<u8>, path: &'static str| {
        let app = &app;
        async move {
            let mut grpc = tonic::client::Grpc::new(app.party_channel(&app.certs.insurer).await);
            grpc.ready().await.unwrap();
            grpc.unary(
                tonic::Request::new(bytes),
                http::uri::PathAndQuery::from_static(path),
                RawCodec::<pb::QueryPersonResponse>::default(),
            )
            .await
        }
    };
    const QUERY: &str = "/lefi.v1.QueryService/QueryPerson";

    let status = unary(NOT_PROTOBUF.to_vec(), QUERY).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::InvalidArgument, "MESSAGE_MALFORMED"),
        "{status:?}"
    );
    assert!(metadata(&status, "request_id").is_some_and(|id| !id.is_empty()));
    assert!(status.message().contains("proto/"), "{}", status.message());

    let big = pb::QueryPersonRequest {
        person_id: "x".repeat(LIMIT + 1),
        ..Default::default()
    };
    let status = unary(big.encode_to_vec(), QUERY).await.unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
        "{status:?}"
    );
    assert_eq!(metadata(&status, "max_bytes"), Some(LIMIT.to_string()));
    assert!(metadata(&status, "request_id").is_some_and(|id| !id.is_empty()));

    // Just under the limit the request is read and judged on its fields as usual.
    let fits = pb::QueryPersonRequest {
        person_id: "x".repeat(LIMIT - 64),
        ..Default::default()
    };
    let status = unary(fits.encode_to_vec(), QUERY).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_ne!(reason(&status), "MESSAGE_TOO_LARGE");
    app.stop().await;
}
