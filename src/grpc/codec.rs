//! The protobuf codec of every lefi service: prost's, except that a message that does not decode
//! is the sender's mistake, INVALID_ARGUMENT MESSAGE_MALFORMED with an ErrorInfo, instead of the
//! INTERNAL without details that `tonic_prost` reports. Generated code uses it through
//! `codec_path` in `build.rs`, so unary and streaming requests go through it alike.
//!
//! (Clients generated into this crate use it too; a response that does not decode then reads
//! MESSAGE_MALFORMED as well, which is what it is.)

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder};
use tonic_prost::ProstEncoder;

/// prost encoding, lefi's decode errors.
#[derive(Debug)]
pub struct LefiCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LefiCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LefiCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = LefiDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(Default::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        LefiDecoder(PhantomData)
    }
}

/// Decodes with prost; a decode error becomes [`crate::grpc::status::malformed_message`].
#[derive(Debug)]
pub struct LefiDecoder<U>(PhantomData<U>);

impl<U: Message + Default> Decoder for LefiDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf)
            .map(Some)
            .map_err(|e| crate::grpc::status::malformed_message(&e))
    }
}

/// Gives tonic's own refusal of an oversize unary request (OUT_OF_RANGE without details, in the
/// response headers, before any handler ran) lefi's form: RESOURCE_EXHAUSTED MESSAGE_TOO_LARGE
/// with the limit and the request id. Client streams see the same refusal as an error from
/// their `Streaming` and report it themselves (see [`crate::grpc::status::Unreadable`]).
pub fn oversize_refusal(
    response: http::Response<tonic::body::Body>,
    max_bytes: usize,
) -> http::Response<tonic::body::Body> {
    let headers = response.headers();
    let out_of_range = headers.get("grpc-status").is_some_and(|v| v == "11");
    if out_of_range && !headers.contains_key("grpc-status-details-bin") {
        crate::grpc::status::Unreadable::TooLarge { max_bytes }
            .status()
            .into_http()
    } else {
        response
    }
}
