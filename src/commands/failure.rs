//! How a command that failed says so: what went wrong, what to do, and for an answer of the server
//! the request id to quote to the agency.
//!
//! Plain text on stderr by default. With `--json`, one line on stderr holding one JSON object,
//! `{"error": {...}}`, in the convention of every other `--json` output (the protobuf JSON
//! mapping: camelCase keys, enum values by name, empty fields left out): `code` (the gRPC code's
//! name, e.g. `PERMISSION_DENIED`), `reason`, `domain` and `metadata` (the server's
//! `google.rpc.ErrorInfo`; domain `lefi`), `message`, `requestId` and `hints`. A failure found by
//! the client itself (a key that does not belong to its certificate, nothing listening at the
//! address, a certificate the server refused in the TLS handshake) has the same shape with
//! domain [`CLIENT_DOMAIN`] and its own reason.

use std::collections::BTreeMap;
use std::process::ExitCode;

use tonic::{Code, Status};
use tonic_types::StatusExt as _;

use super::client::Target;
use crate::client::{ClientError, PemProblem, TransportProblem};
use crate::grpc::pb::ErrorReason;

/// The `domain` of the failures the client finds itself (the server's are `lefi`).
pub const CLIENT_DOMAIN: &str = "client.lefi";

/// The header the server answers every call with (tower-http's request id layer).
const REQUEST_ID_HEADER: &str = "x-request-id";

/// A failed command, as reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Failure {
    code: Code,
    reason: Option<String>,
    domain: Option<String>,
    message: String,
    metadata: BTreeMap<String, String>,
    request_id: Option<String>,
    hints: Vec<String>,
}

impl Failure {
    /// A failure of the command itself, with nothing more to say than its message.
    fn local(message: String) -> Failure {
        Failure {
            code: Code::Unknown,
            reason: None,
            domain: None,
            message,
            metadata: BTreeMap::new(),
            request_id: None,
            hints: Vec::new(),
        }
    }

    /// A failure the client found itself.
    fn client(code: Code, reason: &str, message: String, hint: Option<String>) -> Failure {
        Failure {
            code,
            reason: Some(reason.to_string()),
            domain: Some(CLIENT_DOMAIN.to_string()),
            hints: hint.into_iter().collect(),
            ..Failure::local(message)
        }
    }

    /// Explains `error`: an answer of the server with its ErrorInfo and request id, a problem
    /// connecting (looked at again through `target` when the first call only saw the connection
    /// close), or anything else by its message.
    pub(super) async fn explain(error: &anyhow::Error, target: Option<&Target>) -> Failure {
        if let Some(e) = error.downcast_ref::<ClientError>() {
            return Self::of_client_error(e, target).await;
        }
        if let Some(status) = error.downcast_ref::<Status>() {
            return Self::of_status(status, target).await;
        }
        Failure::local(format!("{error:#}"))
    }

    async fn of_client_error(error: &ClientError, target: Option<&Target>) -> Failure {
        let reason = match error {
            ClientError::Read { .. } => "FILE_UNREADABLE",
            ClientError::Pem { problem, .. } => match problem {
                PemProblem::CertificateGivenAsKey => "KEY_IS_A_CERTIFICATE",
                PemProblem::KeyGivenAsCertificate => "CERTIFICATE_IS_A_KEY",
                PemProblem::NoCertificate => "NO_CERTIFICATE",
                PemProblem::NoKey => "NO_PRIVATE_KEY",
                PemProblem::UnusableKey => "UNUSABLE_PRIVATE_KEY",
            },
            ClientError::KeyMismatch { .. } => "KEY_DOES_NOT_MATCH_CERTIFICATE",
            ClientError::PlainHttp { .. } => "PLAIN_HTTP_ADDRESS",
            ClientError::Address { .. } => "INVALID_ADDRESS",
            ClientError::Connect { addr, problem, .. } => {
                let problem = match (problem, target) {
                    (Some(p), _) if *p != TransportProblem::Closed => Some(*p),
                    (_, Some(target)) => second_look(target).await.or(*problem),
                    (p, None) => *p,
                };
                return match problem {
                    Some(p) => Self::of_transport(p, format!("cannot connect to {addr}: {p}")),
                    None => Failure::client(Code::Unavailable, "CONNECT_FAILED", error.to_string(), None),
                };
            }
        };
        Failure::client(Code::InvalidArgument, reason, error.to_string(), error.hint())
    }

    fn of_transport(problem: TransportProblem, message: String) -> Failure {
        let (code, reason) = match problem {
            TransportProblem::Refused => (Code::Unavailable, "CONNECTION_REFUSED"),
            TransportProblem::ClientCertificateRefused(_) => {
                (Code::Unauthenticated, "CLIENT_CERTIFICATE_REFUSED")
            }
            TransportProblem::ServerCertificateUntrusted => {
                (Code::Unavailable, "SERVER_CERTIFICATE_UNTRUSTED")
            }
            TransportProblem::ServerNameMismatch => (Code::Unavailable, "SERVER_NAME_MISMATCH"),
            TransportProblem::NotTls => (Code::Unavailable, "NOT_TLS"),
            TransportProblem::Closed => (Code::Unavailable, "CONNECTION_CLOSED"),
            TransportProblem::TimedOut => (Code::Unavailable, "CONNECT_TIMEOUT"),
        };
        Failure::client(code, reason, message, Some(problem.hint()))
    }

    async fn of_status(status: &Status, target: Option<&Target>) -> Failure {
        let request_id = request_id(status);
        let Some(info) = status.get_details_error_info() else {
            // No service answered: the call failed on the way (the connection, TLS).
            if let Some(problem) = transport_problem(status, target).await {
                return Failure {
                    request_id,
                    ..Self::of_transport(problem, problem.to_string())
                };
            }
            let mut hints = Vec::new();
            match status.code() {
                Code::Unavailable => hints.push(TransportProblem::Refused.hint()),
                Code::Unimplemented => hints.push("this server does not offer that call (yet)".to_string()),
                _ => {}
            }
            let message = match std::error::Error::source(status) {
                Some(source) => format!("{}: {}", status.message(), crate::client::chain_text(source)),
                None => status.message().to_string(),
            };
            return Failure {
                code: status.code(),
                request_id,
                hints,
                ..Failure::local(message)
            };
        };
        let mut metadata: BTreeMap<String, String> = info.metadata.into_iter().collect();
        let request_id = request_id.or_else(|| metadata.get("request_id").cloned());
        metadata.remove("request_id");
        let mut hints = Vec::new();
        if ErrorReason::from_str_name(&info.reason) == Some(ErrorReason::CursorExpired) {
            hints.push(
                "run `lefi client refresh`: it prints a cursor; write it into the --cursor-file (or \
                 delete the file to start over) and stream again"
                    .to_string(),
            );
        }
        Failure {
            code: status.code(),
            reason: Some(info.reason),
            domain: Some(info.domain),
            message: status.message().to_string(),
            metadata,
            request_id,
            hints,
        }
    }

    /// Adds advice.
    pub(super) fn hint(mut self, hint: String) -> Failure {
        self.hints.push(hint);
        self
    }

    /// One line, for a log record: code, reason and message.
    pub(super) fn summary(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{} {reason}: {}", code_name(self.code), self.message),
            None => format!("{}: {}", code_name(self.code), self.message),
        }
    }

    /// Prints the failure on stderr: text, or one line of JSON with `json`.
    pub(super) fn print(&self, json: bool) {
        if json {
            eprintln!("{}", self.to_json());
        } else {
            eprintln!("{}", self.to_text());
        }
    }

    fn to_text(&self) -> String {
        let mut out = match (&self.reason, &self.domain) {
            (Some(reason), Some(domain)) if domain != CLIENT_DOMAIN => {
                format!("error: {} ({reason}): {}", code_name(self.code), self.message)
            }
            _ => format!("error: {}", self.message),
        };
        if !self.metadata.is_empty() {
            let details: Vec<String> = self.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("\n  details: {}", details.join(", ")));
        }
        if let Some(id) = &self.request_id {
            out.push_str(&format!("\n  request id: {id} (quote it to the agency)"));
        }
        for hint in &self.hints {
            out.push_str(&format!("\n  hint: {hint}"));
        }
        out
    }

    fn to_json(&self) -> serde_json::Value {
        let mut error = serde_json::Map::new();
        error.insert("code".into(), code_name(self.code).into());
        if let Some(reason) = &self.reason {
            error.insert("reason".into(), reason.clone().into());
        }
        if let Some(domain) = &self.domain {
            error.insert("domain".into(), domain.clone().into());
        }
        error.insert("message".into(), self.message.clone().into());
        if !self.metadata.is_empty() {
            let metadata: serde_json::Map<String, serde_json::Value> = self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            error.insert("metadata".into(), metadata.into());
        }
        if let Some(id) = &self.request_id {
            error.insert("requestId".into(), id.clone().into());
        }
        if !self.hints.is_empty() {
            error.insert("hints".into(), self.hints.clone().into());
        }
        serde_json::json!({ "error": error })
    }
}

/// The transport problem behind a status no service answered: from its source chain, or, when
/// that only says the connection closed (TLS 1.3 lets the client finish its handshake before the
/// server judges its certificate), from a second, bare handshake.
async fn transport_problem(status: &Status, target: Option<&Target>) -> Option<TransportProblem> {
    let found = TransportProblem::of(status);
    let unclear = matches!(found, None | Some(TransportProblem::Closed))
        && matches!(
            status.code(),
            Code::Unknown | Code::Unavailable | Code::Cancelled | Code::Internal
        );
    match target {
        Some(target) if unclear => second_look(target).await.or(found),
        _ => found,
    }
}

/// What a bare handshake with the target's files says, when it says something definite.
async fn second_look(target: &Target) -> Option<TransportProblem> {
    crate::client::probe(&target.addr, &target.pem, target.server_name.as_deref())
        .await
        .filter(|p| *p != TransportProblem::Closed)
}

/// The request id of the call that failed: the response header, or the ErrorInfo's `request_id`.
fn request_id(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A streaming call's final status comes in the trailers, without the response headers that
/// carry `x-request-id`: copies the id from `headers` (the call's response metadata) into it.
pub(super) fn with_request_id(mut status: Status, headers: &tonic::metadata::MetadataMap) -> Status {
    if status.metadata().get(REQUEST_ID_HEADER).is_none() {
        if let Some(id) = headers.get(REQUEST_ID_HEADER) {
            status.metadata_mut().insert(REQUEST_ID_HEADER, id.clone());
        }
    }
    status
}

/// The code's name as in google.rpc.Code (`PERMISSION_DENIED`), from tonic's variant name.
fn code_name(code: Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Reports the outcome of a command: nothing on success; the explained failure otherwise.
pub(super) async fn finish(result: anyhow::Result<()>, target: Option<&Target>, json: bool) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            Failure::explain(&e, target).await.print(json);
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_google_rpc_names() {
        assert_eq!(code_name(Code::PermissionDenied), "PERMISSION_DENIED");
        assert_eq!(code_name(Code::Unavailable), "UNAVAILABLE");
        assert_eq!(code_name(Code::Ok), "OK");
    }

    #[test]
    fn json_leaves_out_what_is_empty() {
        let failure = Failure::client(
            Code::Unavailable,
            "CONNECTION_REFUSED",
            "nothing".to_string(),
            None,
        );
        assert_eq!(
            failure.to_json().to_string(),
            r#"{"error":{"code":"UNAVAILABLE","domain":"client.lefi","message":"nothing","reason":"CONNECTION_REFUSED"}}"#
        );
    }
}
