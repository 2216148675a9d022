//! Statistics orders: the order rows, every step as an audited state change, and the population
//! (key) file. The rules of each step are [`crate::domain::statistics::order::check_step`], called
//! inside the transaction that makes the change. The files (population and extract) are in
//! [`files`].

mod files;

use time::Date;

pub use files::{ExtractFile, FILE_CHUNK_BYTES, FileFacts};

use super::tx::{Conn, on_conn};
use super::{Store, StoreError, is_unique_violation, new_id, stored_date};
use crate::domain::clock::{Micros, format_date};
use crate::domain::disclosure::NewDisclosure;
use crate::domain::statistics::calendar::months_after;
use crate::domain::statistics::order::{
    OrderFacts, OrderState, OrderStep, RETENTION_MONTHS, Side, StepRefused, check_step,
};
use crate::domain::statistics::population::Member;

/// What an orderer submits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// The orderer's own reference: submitting the same reference again returns the order.
    pub order_reference: String,
    pub project: String,
    pub purpose: String,
    /// The exception or duty the order relies on (e.g. a special duty to provide data).
    pub legal_ground: String,
    pub population_description: String,
    pub benefit_types: Vec<String>,
    /// The wished variables, free text or picked from the variable lists.
    pub variables: String,
    pub period_from: Date,
    pub period_to: Date,
    pub wished_delivery: Option<Date>,
    pub contact_name: String,
    pub contact_email: String,
    /// A special duty to provide data applies: no charge.
    pub special_duty: bool,
}

/// An order as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub order_id: String,
    pub party_id: String,
    pub order: NewOrder,
    pub state: OrderState,
    pub submitted_at: Micros,
    /// The last day receipt may be confirmed (two working days after submission).
    pub receipt_due: Date,
    pub receipt_confirmed_at: Option<Micros>,
    pub quote: Option<Quote>,
    /// The confidentiality review: who decided, and the conditions of the release or the reasons of
    /// the refusal.
    pub decision: Option<(String, String)>,
    pub population_count: u64,
    pub extracted_sequence: Option<u64>,
    pub delivered_on: Option<Date>,
    pub retain_until: Option<Date>,
    pub invoice_net_ore: Option<i64>,
    pub deleted_at: Option<Micros>,
    pub updated_at: Micros,
}

/// A drafted quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    pub drafted_by: String,
    /// What is delivered: tables and variables, population, periods.
    pub specification: String,
    pub centihours: i64,
    pub net_ore: i64,
    pub vat_ore: i64,
}

/// What a step records besides the state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepDetail {
    /// The question to the orderer, or the orderer's answer.
    Text(String),
    Quote(Quote),
    /// The review's conditions (release) or reasons (refusal).
    Decision(String),
    Population(Vec<Member>),
    /// The extract was produced: its files (written to local files by the producer, stored here in
    /// chunks) and its manifest (JSON, kept after the files are deleted).
    Extracted {
        sequence: u64,
        files: Vec<ExtractFile>,
        manifest: String,
    },
    /// The extract was delivered: from `on`, kept until `retain_until`; `release` is written to
    /// the disclosure log in the same transaction as the state change (log before disclose).
    Delivered {
        on: Date,
        retain_until: Date,
        release: Release,
    },
    RetainUntil(Date),
    Invoice {
        net_ore: i64,
    },
    None,
}

/// The disclosure-log entries of a delivery: one per person of the population, counted from the
/// extract produced as of `sequence`. The Deliver step writes them in its own transaction, so they
/// exist exactly once, and only for a delivery that happened; a replay by key writes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Release {
    /// The register sequence of the extract the entries were counted from (as the caller read the
    /// order): the step is refused when the extract was produced again meanwhile.
    pub sequence: Option<u64>,
    pub entries: Vec<NewDisclosure>,
}

/// One step in an order's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderHistoryEntry {
    pub n: u64,
    pub step: OrderStep,
    pub side: String,
    pub actor: String,
    pub before: OrderState,
    pub after: OrderState,
    pub detail: String,
    pub at: Micros,
}

/// Why a step was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no such order")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] StepRefused),
    #[error("this idempotency key was used for another step of the order")]
    KeyReused,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file the producer wrote could not be read back (local disk).
    #[error("cannot read a produced extract file: {0}")]
    File(std::io::Error),
}

impl From<sqlx::Error> for OrderError {
    fn from(e: sqlx::Error) -> Self {
        OrderError::Store(e.into())
    }
}

/// Filters of [`Store::orders`].
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub party_id: Option<String>,
    pub states: Vec<OrderState>,
    /// Only orders whose receipt is not confirmed and was due before this day.
    pub overdue_on: Option<Date>,
    /// Only delivered orders without an invoice record.
    pub awaiting_invoice: bool,
}

const ORDER_COLUMNS: &str = "order_id, party_id, order_reference, project, purpose, legal_ground, \
     population_description, benefit_types, variables, period_from, period_to, wished_delivery, \
     contact_name, contact_email, special_duty, state, submitted_at, receipt_due, receipt_confirmed_at, \
     quote_drafted_by, quote_specification, quote_centihours, quote_net_ore, quote_vat_ore, decision_by, \
     decision_text, population_count, extracted_sequence, delivered_on, retain_until, invoice_net_ore, \
     deleted_at, updated_at";

#[derive(sqlx::FromRow)]
struct OrderRow {
    order_id: String,
    party_id: String,
    order_reference: String,
    project: String,
    purpose: String,
    legal_ground: String,
    population_description: String,
    benefit_types: String,
    variables: String,
    period_from: String,
    period_to: String,
    wished_delivery: Option<String>,
    contact_name: String,
    contact_email: String,
    special_duty: bool,
    state: String,
    submitted_at: i64,
    receipt_due: String,
    receipt_confirmed_at: Option<i64>,
    quote_drafted_by: Option<String>,
    quote_specification: Option<String>,
    quote_centihours: Option<i64>,
    quote_net_ore: Option<i64>,
    quote_vat_ore: Option<i64>,
    decision_by: Option<String>,
    decision_text: Option<String>,
    population_count: i64,
    extracted_sequence: Option<i64>,
    delivered_on: Option<String>,
    retain_until: Option<String>,
    invoice_net_ore: Option<i64>,
    deleted_at: Option<i64>,
    updated_at: i64,
}

fn optional_date(v: Option<String>, what: &'static str) -> Result<Option<Date>, StoreError> {
    v.map(|d| stored_date(&d, what)).transpose()
}

impl TryFrom<OrderRow> for Order {
    type Error = StoreError;

    fn try_from(r: OrderRow) -> Result<Self, StoreError> {
        let quote = match (r.quote_drafted_by, r.quote_specification, r.quote_centihours) {
            (Some(drafted_by), Some(specification), Some(centihours)) => Some(Quote {
                drafted_by,
                specification,
                centihours,
                net_ore: r.quote_net_ore.unwrap_or(0),
                vat_ore: r.quote_vat_ore.unwrap_or(0),
            }),
            _ => None,
        };
        Ok(Order {
            order: NewOrder {
                order_reference: r.order_reference,
                project: r.project,
                purpose: r.purpose,
                legal_ground: r.legal_ground,
                population_description: r.population_description,
                benefit_types: r
                    .benefit_types
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(str::to_string)
                    .collect(),
                variables: r.variables,
                period_from: stored_date(&r.period_from, "statistics_orders.period_from")?,
                period_to: stored_date(&r.period_to, "statistics_orders.period_to")?,
                wished_delivery: optional_date(r.wished_delivery, "statistics_orders.wished_delivery")?,
                contact_name: r.contact_name,
                contact_email: r.contact_email,
                special_duty: r.special_duty,
            },
            order_id: r.order_id,
            party_id: r.party_id,
            state: OrderState::parse(&r.state).ok_or(StoreError::Corrupt("statistics_orders.state"))?,
            submitted_at: r.submitted_at,
            receipt_due: stored_date(&r.receipt_due, "statistics_orders.receipt_due")?,
            receipt_confirmed_at: r.receipt_confirmed_at,
            quote,
            decision: r.decision_by.zip(r.decision_text),
            population_count: super::to_u64(r.population_count, "statistics_orders.population_count")?,
            extracted_sequence: r
                .extracted_sequence
                .map(|s| super::to_u64(s, "statistics_orders.extracted_sequence"))
                .transpose()?,
            delivered_on: optional_date(r.delivered_on, "statistics_orders.delivered_on")?,
            retain_until: optional_date(r.retain_until, "statistics_orders.retain_until")?,
            invoice_net_ore: r.invoice_net_ore,
            deleted_at: r.deleted_at,
            updated_at: r.updated_at,
        })
    }
}

impl Order {
    fn facts(&self) -> OrderFacts {
        OrderFacts {
            quote_drafted_by: self.quote.as_ref().map(|q| q.drafted_by.clone()),
            has_population: self.population_count > 0,
        }
    }
}

async fn order_row(conn: &mut Conn, order_id: &str, lock: bool) -> Result<Option<Order>, StoreError> {
    let select = format!("SELECT {ORDER_COLUMNS} FROM statistics_orders WHERE order_id = $1");
    let locked = format!("{select} FOR UPDATE");
    let row: Option<OrderRow> = on_conn!(conn,
        sqlite: |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(select)).bind(order_id).fetch_optional(c).await?
        },
        postgres: |c| {
            let sql = if lock { locked } else { select };
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(order_id).fetch_optional(c).await?
        },
    );
    row.map(Order::try_from).transpose()
}

fn side_name(side: Side) -> &'static str {
    match side {
        Side::Orderer => "ORDERER",
        Side::Agency => "AGENCY",
        Side::Server => "SERVER",
    }
}

/// A row of `statistics_order_steps`: n, step, side, actor, state before, state after, detail, at.
type HistoryRow = (i64, String, String, String, String, String, String, i64);

impl Store {
    /// Registers a submitted order (state SUBMITTED, receipt due `receipt_due`); submitting the same
    /// `order_reference` again returns the stored order and `false`.
    pub async fn submit_order(
        &self,
        party_id: &str,
        order: &NewOrder,
        receipt_due: Date,
        now: Micros,
    ) -> Result<(Order, bool), StoreError> {
        let mut conn = self.write().await?;
        let existing: Option<(String,)> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT order_id FROM statistics_orders WHERE party_id = $1 AND order_reference = $2",
            )
            .bind(party_id)
            .bind(&order.order_reference)
            .fetch_optional(c)
            .await?
        });
        if let Some((order_id,)) = existing {
            let stored = order_row(&mut conn, &order_id, false)
                .await?
                .ok_or(StoreError::NotFound)?;
            return Ok((stored, false));
        }
        let order_id = new_id("ord");
        let state = OrderState::Submitted.as_str();
        let inserted = on_conn!(&mut conn, |c| {
            sqlx::query(
                "INSERT INTO statistics_orders (order_id, party_id, order_reference, project, purpose, \
                 legal_ground, population_description, benefit_types, variables, period_from, period_to, \
                 wished_delivery, contact_name, contact_email, special_duty, state, submitted_at, receipt_due, \
                 population_count, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 0, $17)",
            )
            .bind(&order_id)
            .bind(party_id)
            .bind(&order.order_reference)
            .bind(&order.project)
            .bind(&order.purpose)
            .bind(&order.legal_ground)
            .bind(&order.population_description)
            .bind(order.benefit_types.join(","))
            .bind(&order.variables)
            .bind(format_date(order.period_from))
            .bind(format_date(order.period_to))
            .bind(order.wished_delivery.map(format_date))
            .bind(&order.contact_name)
            .bind(&order.contact_email)
            .bind(order.special_duty)
            .bind(state)
            .bind(now)
            .bind(format_date(receipt_due))
            .execute(&mut *c)
            .await
            .map(|_| ())
        });
        if let Err(e) = inserted {
            if is_unique_violation(&e) {
                return Err(StoreError::Conflict(
                    "an order with this reference was submitted at the same time".into(),
                ));
            }
            return Err(e.into());
        }
        append_step(
            &mut conn,
            &order_id,
            0,
            OrderStep::Submit,
            Side::Orderer,
            party_id,
            (OrderState::Submitted, OrderState::Submitted),
            "",
            None,
            now,
        )
        .await?;
        let stored = order_row(&mut conn, &order_id, false)
            .await?
            .ok_or(StoreError::NotFound)?;
        conn.commit().await?;
        Ok((stored, true))
    }

    /// Takes one step of an order, checked by the order's rules, in one transaction with its audit
    /// entry. With an `idempotency_key` already used for this same step of the order, returns the
    /// order as it is without a second effect.
    #[allow(clippy::too_many_arguments, reason = "one step: who, what, with what, when")]
    pub async fn order_step(
        &self,
        order_id: &str,
        only_party: Option<&str>,
        step: OrderStep,
        side: Side,
        actor: &str,
        detail: &StepDetail,
        idempotency_key: Option<&str>,
        now: Micros,
    ) -> Result<Order, OrderError> {
        let mut conn = self.write().await?;
        let order = order_row(&mut conn, order_id, true)
            .await?
            .ok_or(OrderError::NotFound)?;
        if only_party.is_some_and(|p| p != order.party_id) {
            return Err(OrderError::NotFound);
        }
        if let Some(key) = idempotency_key {
            let used: Option<(String,)> = on_conn!(&mut conn, |c| {
                sqlx::query_as(
                    "SELECT step FROM statistics_order_steps WHERE order_id = $1 AND idempotency_key = $2",
                )
                .bind(order_id)
                .bind(key)
                .fetch_optional(c)
                .await?
            });
            if let Some((used_for,)) = used {
                return if used_for == step.as_str() {
                    Ok(order)
                } else {
                    Err(OrderError::KeyReused)
                };
            }
        }
        let after = check_step(order.state, &order.facts(), step, side, actor)?;
        let state = after.as_str();
        if let StepDetail::Delivered { release, .. } = detail {
            // Log before disclose: the entries commit with the state change that makes the files
            // downloadable, and were counted from the extract and population that are delivered.
            if release.sequence != order.extracted_sequence
                || release.entries.len() as u64 != order.population_count
            {
                return Err(OrderError::Store(StoreError::Conflict(
                    "the order's extract changed while its delivery was prepared; deliver again".into(),
                )));
            }
            crate::store::disclosure_log::append_on(&mut conn, &release.entries, now).await?;
        }
        let text = match detail {
            StepDetail::Population(members) => files::store_population(&mut conn, order_id, members).await?,
            StepDetail::Extracted {
                sequence,
                files: produced,
                manifest,
            } => files::store_extract(&mut conn, order_id, *sequence, produced, manifest, now).await?,
            other => record_detail(&mut conn, order_id, actor, other).await?,
        };
        // The steps that stamp a time of their own: confirming receipt and deleting.
        let stamp = match step {
            OrderStep::ConfirmReceipt => ", receipt_confirmed_at = $3",
            OrderStep::Delete => ", deleted_at = $3",
            _ => "",
        };
        let sql =
            format!("UPDATE statistics_orders SET state = $2, updated_at = $3{stamp} WHERE order_id = $1");
        on_conn!(&mut conn, |c| {
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(order_id)
                .bind(state)
                .bind(now)
                .execute(c)
                .await?;
        });
        // The files and the population go at the end of the retention, and at once when the order
        // ends without delivery (withdrawn, refused); the manifest (metadata) remains.
        let mut text = text;
        if matches!(step, OrderStep::Delete | OrderStep::Withdraw | OrderStep::Refuse) {
            let held = order.population_count > 0 || order.extracted_sequence.is_some();
            files::delete_order_rows(&mut conn, order_id, files::DELETED_AT_RETENTION).await?;
            if held && step != OrderStep::Delete {
                text = format!(
                    "{text}{}population and files deleted",
                    if text.is_empty() { "" } else { "; " }
                );
            }
        }
        let n = history_len(&mut conn, order_id).await?;
        append_step(
            &mut conn,
            order_id,
            n,
            step,
            side,
            actor,
            (order.state, after),
            &text,
            idempotency_key,
            now,
        )
        .await?;
        let stored = order_row(&mut conn, order_id, false)
            .await?
            .ok_or(OrderError::NotFound)?;
        conn.commit().await?;
        Ok(stored)
    }

    /// One order (`only_party`: only if it is that party's).
    pub async fn order(&self, order_id: &str, only_party: Option<&str>) -> Result<Option<Order>, StoreError> {
        let mut conn = self.read().await?;
        let order = order_row(&mut conn, order_id, false).await?;
        Ok(order.filter(|o| only_party.is_none_or(|p| p == o.party_id)))
    }

    /// Orders matching `filter`, oldest first.
    pub async fn orders(&self, filter: &OrderFilter) -> Result<Vec<Order>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<OrderRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT {ORDER_COLUMNS} FROM statistics_orders ORDER BY submitted_at, order_id"
            )))
            .fetch_all(c)
            .await?
        });
        let mut out = Vec::new();
        for row in rows {
            let order = Order::try_from(row)?;
            let keep = filter.party_id.as_ref().is_none_or(|p| *p == order.party_id)
                && (filter.states.is_empty() || filter.states.contains(&order.state))
                && filter.overdue_on.is_none_or(|day| order.is_overdue(day))
                && (!filter.awaiting_invoice || order.awaits_invoice());
            if keep {
                out.push(order);
            }
        }
        Ok(out)
    }

    /// An order's history, oldest first.
    pub async fn order_history(&self, order_id: &str) -> Result<Vec<OrderHistoryEntry>, StoreError> {
        let mut conn = self.read().await?;
        let rows: Vec<HistoryRow> = on_conn!(&mut conn, |c| {
            sqlx::query_as(
                "SELECT n, step, side, actor, state_before, state_after, detail, at FROM statistics_order_steps \
                 WHERE order_id = $1 ORDER BY n",
            )
            .bind(order_id)
            .fetch_all(c)
            .await?
        });
        rows.into_iter()
            .map(|(n, step, side, actor, before, after, detail, at)| {
                let corrupt = StoreError::Corrupt("statistics_order_steps");
                Ok(OrderHistoryEntry {
                    n: super::to_u64(n, "statistics_order_steps.n")?,
                    step: OrderStep::parse(&step)
                        .ok_or(StoreError::Corrupt("statistics_order_steps.step"))?,
                    side,
                    actor,
                    before: OrderState::parse(&before)
                        .ok_or(StoreError::Corrupt("statistics_order_steps.state_before"))?,
                    after: OrderState::parse(&after).ok_or(corrupt)?,
                    detail,
                    at,
                })
            })
            .collect()
    }
}

impl Order {
    /// The last day the order's population and files are kept (they are deleted the day after):
    /// delivered, its retention date; released, accepted or extracted and holding a population but
    /// not delivered, [`RETENTION_MONTHS`] after its last step. `None`: nothing is
    /// held (not yet released), or the order ended and its data is already deleted.
    pub fn deletion_due(&self) -> Option<Date> {
        match self.state {
            OrderState::Delivered => self.retain_until,
            OrderState::Released | OrderState::QuoteAccepted | OrderState::Extracted
                if self.population_count > 0 =>
            {
                Some(months_after(
                    crate::domain::clock::business_date_at(self.updated_at),
                    RETENTION_MONTHS,
                ))
            }
            _ => None,
        }
    }

    /// Whether the order was delivered and its invoice is not recorded yet.
    pub fn awaits_invoice(&self) -> bool {
        self.state == OrderState::Delivered && self.invoice_net_ore.is_none()
    }

    /// Whether receipt was due before `today` and is still not confirmed.
    pub fn is_overdue(&self, today: Date) -> bool {
        self.receipt_confirmed_at.is_none() && self.state == OrderState::Submitted && self.receipt_due < today
    }
}

/// Writes what a step records in the order's row (the population and the extract are stored by
/// [`files`]); the text the step's audit entry shows.
async fn record_detail(
    conn: &mut Conn,
    order_id: &str,
    actor: &str,
    detail: &StepDetail,
) -> Result<String, StoreError> {
    Ok(on_conn!(conn, |c| {
        match detail {
            StepDetail::Quote(q) => {
                sqlx::query(
                    "UPDATE statistics_orders SET quote_drafted_by = $2, quote_specification = $3, \
                     quote_centihours = $4, quote_net_ore = $5, quote_vat_ore = $6 WHERE order_id = $1",
                )
                .bind(order_id)
                .bind(&q.drafted_by)
                .bind(&q.specification)
                .bind(q.centihours)
                .bind(q.net_ore)
                .bind(q.vat_ore)
                .execute(&mut *c)
                .await?;
                format!("{} centihours; {}", q.centihours, q.specification)
            }
            StepDetail::Decision(text) => {
                sqlx::query(
                    "UPDATE statistics_orders SET decision_by = $2, decision_text = $3 WHERE order_id = $1",
                )
                .bind(order_id)
                .bind(actor)
                .bind(text)
                .execute(&mut *c)
                .await?;
                text.clone()
            }
            StepDetail::Delivered { on, retain_until, .. } => {
                sqlx::query(
                    "UPDATE statistics_orders SET delivered_on = $2, retain_until = $3 WHERE order_id = $1",
                )
                .bind(order_id)
                .bind(format_date(*on))
                .bind(format_date(*retain_until))
                .execute(&mut *c)
                .await?;
                format!(
                    "delivered {}; kept until {}",
                    format_date(*on),
                    format_date(*retain_until)
                )
            }
            StepDetail::RetainUntil(until) => {
                sqlx::query("UPDATE statistics_orders SET retain_until = $2 WHERE order_id = $1")
                    .bind(order_id)
                    .bind(format_date(*until))
                    .execute(&mut *c)
                    .await?;
                format!("kept until {}", format_date(*until))
            }
            StepDetail::Invoice { net_ore } => {
                sqlx::query("UPDATE statistics_orders SET invoice_net_ore = $2 WHERE order_id = $1")
                    .bind(order_id)
                    .bind(net_ore)
                    .execute(&mut *c)
                    .await?;
                format!("{net_ore} öre excluding VAT")
            }
            StepDetail::Text(text) => text.clone(),
            // Stored by `files`, before this is called.
            StepDetail::None | StepDetail::Population(_) | StepDetail::Extracted { .. } => String::new(),
        }
    }))
}

async fn history_len(conn: &mut Conn, order_id: &str) -> Result<u64, StoreError> {
    let (n,): (i64,) = on_conn!(conn, |c| {
        sqlx::query_as("SELECT COUNT(*) FROM statistics_order_steps WHERE order_id = $1")
            .bind(order_id)
            .fetch_one(c)
            .await?
    });
    super::to_u64(n, "statistics_order_steps count")
}

#[allow(clippy::too_many_arguments, reason = "one audit row")]
async fn append_step(
    conn: &mut Conn,
    order_id: &str,
    n: u64,
    step: OrderStep,
    side: Side,
    actor: &str,
    (before, after): (OrderState, OrderState),
    detail: &str,
    idempotency_key: Option<&str>,
    at: Micros,
) -> Result<(), StoreError> {
    on_conn!(conn, |c| {
        sqlx::query(
            "INSERT INTO statistics_order_steps (order_id, n, step, side, actor, state_before, state_after, \
             detail, idempotency_key, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(order_id)
        .bind(super::to_i64(n))
        .bind(step.as_str())
        .bind(side_name(side))
        .bind(actor)
        .bind(before.as_str())
        .bind(after.as_str())
        .bind(detail)
        .bind(idempotency_key)
        .bind(at)
        .execute(c)
        .await?;
    });
    Ok(())
}
