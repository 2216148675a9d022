//! Page tokens and page sizes: one scheme for every listing of both APIs.
//!
//! A token is opaque to clients: base64url of a small JSON object naming the listing, the scope it
//! was issued for (the caller and the filters, so a token is honoured only for the same query) and
//! the position the next page starts after. A token from another listing or scope, or one that
//! does not decode, is refused with PAGE_TOKEN_INVALID.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::grpc::fields::{FieldError, FieldProblem};
use crate::grpc::pb::lefi::admin::v1 as admin_pb;
use crate::grpc::pb::lefi::v1 as pb;

/// Page size when the request gives none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// The largest page size; larger requests get this many.
pub const MAX_PAGE_SIZE: u32 = 1_000;

/// The page size to use: the default for 0, at most [`MAX_PAGE_SIZE`].
pub fn page_size(requested: u32) -> u32 {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}

#[derive(Serialize, Deserialize)]
struct Token<P> {
    /// The listing, e.g. `ListParties`.
    l: String,
    /// The scope: who asked and with which filters.
    s: String,
    /// Where the previous page ended.
    p: P,
}

/// A listing's answer: one page of its items and the token of the next page (empty after the
/// last).
pub trait Paged {
    type Item;

    fn of(items: Vec<Self::Item>, next_page_token: String) -> Self;
}

/// Declares the answers of the paged listings, each by the field that holds its items.
macro_rules! paged {
    ($($answer:ty { $items:ident: $item:ty }),+ $(,)?) => {
        $(
            impl Paged for $answer {
                type Item = $item;

                fn of(items: Vec<$item>, next_page_token: String) -> Self {
                    Self { $items: items, next_page_token }
                }
            }
        )+
    };
}

paged! {
    pb::ListCasesResponse { cases: pb::Case },
    pb::ListConsentsResponse { consents: pb::Consent },
    admin_pb::ListConsentsResponse { consents: admin_pb::PartyConsent },
    admin_pb::ListPartiesResponse { parties: admin_pb::Party },
    admin_pb::ListPartyHistoryResponse { entries: admin_pb::AuditEntry },
    admin_pb::ListDisclosuresResponse { entries: admin_pb::DisclosureEntry },
}

/// The page a request asks for: after which position it starts (`None`: the first page), and how
/// many rows it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<P> {
    pub after: Option<P>,
    pub size: u32,
}

impl<P> Page<P> {
    /// The rows to read for the page: one more than it holds, to learn whether another follows
    /// (see [`Pages::trim`]).
    pub fn limit(&self) -> u32 {
        self.size + 1
    }
}

/// A listing's tokens, for one caller and one set of filters.
#[derive(Debug, Clone)]
pub struct Pages {
    listing: &'static str,
    scope: String,
}

impl Pages {
    /// Tokens of `listing` for the query identified by `scope` (e.g. the party id and the filters,
    /// written in any stable way). Tokens carry a digest of the scope, never the filters
    /// themselves: a filter may be an identity number.
    pub fn new(listing: &'static str, scope: impl AsRef<[u8]>) -> Self {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(scope.as_ref());
        Self {
            listing,
            scope: hex::encode(&digest[..12]),
        }
    }

    /// The position a request's token names; `None` for the first page (an empty token).
    pub fn position<P: DeserializeOwned>(&self, token: &str) -> Result<Option<P>, FieldError> {
        if token.is_empty() {
            return Ok(None);
        }
        URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Token<P>>(&bytes).ok())
            .filter(|t| t.l == self.listing && t.s == self.scope)
            .map(|t| Some(t.p))
            .ok_or_else(|| {
                FieldError::new(
                    FieldProblem::PageToken,
                    "page_token",
                    "page_token was not issued by this listing with the same filters; restart without a page_token",
                )
            })
    }

    /// The page a request asks for with its `page_token` and `page_size`.
    pub fn page<P: DeserializeOwned>(&self, token: &str, requested_size: u32) -> Result<Page<P>, FieldError> {
        Ok(Page {
            after: self.position(token)?,
            size: page_size(requested_size),
        })
    }

    /// The token for the page after `position`.
    pub fn token<P: Serialize>(&self, position: P) -> String {
        let token = Token {
            l: self.listing.to_string(),
            s: self.scope.clone(),
            p: position,
        };
        serde_json::to_vec(&token)
            .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
            .unwrap_or_default()
    }

    /// One page of a listing held in memory, for a request's `page_token` and `page_size`: the
    /// items after the token's offset and the token for the next page (empty after the last).
    pub fn slice<T>(
        &self,
        items: Vec<T>,
        token: &str,
        requested_size: u32,
    ) -> Result<(Vec<T>, String), FieldError> {
        let offset: usize = self.position(token)?.unwrap_or(0);
        let size = page_size(requested_size) as usize;
        let total = items.len();
        let page: Vec<T> = items.into_iter().skip(offset).take(size).collect();
        // Tokens are not signed: a client can name any offset, up to `usize::MAX`.
        let next = match offset.checked_add(size) {
            Some(end) if end < total => self.token(end),
            _ => String::new(),
        };
        Ok((page, next))
    }

    /// [`Pages::slice`] as the listing's answer.
    pub fn slice_into<R: Paged>(
        &self,
        items: Vec<R::Item>,
        token: &str,
        requested_size: u32,
    ) -> Result<R, FieldError> {
        let (page, next_page_token) = self.slice(items, token, requested_size)?;
        Ok(R::of(page, next_page_token))
    }

    /// The answer for a page read from the database with [`Page::limit`] rows asked for: the
    /// page's rows as `item`s, and the token that [`Pages::trim`] gives.
    pub fn trim_into<R: Paged, T, P: Serialize>(
        &self,
        mut rows: Vec<T>,
        page_size: u32,
        position: impl Fn(&T) -> P,
        item: impl Fn(&T) -> R::Item,
    ) -> R {
        let next_page_token = self.trim(&mut rows, page_size, position);
        R::of(rows.iter().map(item).collect(), next_page_token)
    }

    /// The token after a page read from the database with `page_size` + 1 rows asked for: when
    /// the extra row came, it is dropped and the token names the last row kept.
    pub fn trim<T, P: Serialize>(
        &self,
        rows: &mut Vec<T>,
        page_size: u32,
        position: impl Fn(&T) -> P,
    ) -> String {
        if rows.len() <= page_size as usize {
            return String::new();
        }
        rows.truncate(page_size as usize);
        rows.last()
            .map(|last| self.token(position(last)))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_within_their_listing_and_scope() {
        let pages = Pages::new("ListParties", "INSURER|");
        let token = pages.token(("Å AB", "pty_1"));
        let back: Option<(String, String)> = pages.position(&token).unwrap();
        assert_eq!(back, Some(("Å AB".to_string(), "pty_1".to_string())));
        assert!(
            Pages::new("ListParties", "|")
                .position::<(String, String)>(&token)
                .is_err()
        );
        assert!(
            Pages::new("ListConsents", "INSURER|")
                .position::<(String, String)>(&token)
                .is_err()
        );
        assert!(pages.position::<(String, String)>("garbage").is_err());
        assert!(pages.position::<u64>(&token).is_err());
        assert_eq!(pages.position::<u64>("").unwrap(), None);
    }

    #[test]
    fn slices_page_through_everything_once() {
        let pages = Pages::new("L", "");
        let mut token = String::new();
        let mut seen = Vec::new();
        loop {
            let (page, next) = pages.slice((0..7).collect(), &token, 3).unwrap();
            seen.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        assert_eq!(seen, (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn a_page_holds_the_size_asked_for_within_bounds_and_reads_one_row_more() {
        let pages = Pages::new("L", "");
        let first: Page<i64> = pages.page("", 0).unwrap();
        assert_eq!(
            first,
            Page {
                after: None,
                size: DEFAULT_PAGE_SIZE
            }
        );
        assert_eq!(first.limit(), DEFAULT_PAGE_SIZE + 1);
        let later: Page<i64> = pages.page(&pages.token(7_i64), u32::MAX).unwrap();
        assert_eq!(
            later,
            Page {
                after: Some(7),
                size: MAX_PAGE_SIZE
            }
        );
        assert!(pages.page::<i64>("garbage", 10).is_err());
    }

    #[test]
    fn answers_carry_their_page_and_the_next_token() {
        let pages = Pages::new("ListCases", "");
        let case = |reference: &str| pb::Case {
            case_reference: reference.to_string(),
            ..Default::default()
        };
        let first: pb::ListCasesResponse = pages.trim_into(vec!["a", "b", "c"], 2, |r| *r, |r| case(r));
        assert_eq!(first.cases, vec![case("a"), case("b")]);
        assert_eq!(
            pages
                .position::<String>(&first.next_page_token)
                .unwrap()
                .as_deref(),
            Some("b")
        );
        let items = vec![case("a"), case("b"), case("c")];
        let last: pb::ListCasesResponse = pages.slice_into(items, &pages.token(2_usize), 2).unwrap();
        assert_eq!(last.cases, vec![case("c")]);
        assert!(last.next_page_token.is_empty());
    }

    #[test]
    fn a_written_offset_near_the_largest_pages_nothing_without_overflow() {
        // Found by the fuzz target `page_token`: `offset + size` overflowed, a panic in a build
        // with overflow checks and a token back to the start without them.
        let pages = Pages::new("L", "");
        for offset in [usize::MAX, usize::MAX - 2] {
            let (page, next) = pages
                .slice((0..7).collect::<Vec<u32>>(), &pages.token(offset), 3)
                .unwrap();
            assert!(page.is_empty());
            assert!(next.is_empty());
        }
    }

    #[test]
    fn trim_keeps_a_page_and_names_its_last_row() {
        let pages = Pages::new("L", "");
        let mut rows = vec![1, 2, 3];
        let token = pages.trim(&mut rows, 2, |r| *r);
        assert_eq!(rows, vec![1, 2]);
        assert_eq!(pages.position::<i32>(&token).unwrap(), Some(2));
        let mut short = vec![1];
        assert!(pages.trim(&mut short, 2, |r| *r).is_empty());
    }
}
