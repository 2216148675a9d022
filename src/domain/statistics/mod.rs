//! Statistics orders (MiDAS): individual data released for statistical purposes to other
//! statistics authorities and research projects, from order to deletion. The pure rules:
//!
//! - [`order`]: the steps of an order, who takes each, and in which state (four eyes on the
//!   confidentiality review; no population file before the release, no extraction before an
//!   accepted quote);
//! - [`calendar`]: Swedish working days, for the two-working-day receipt deadline;
//! - [`quote`]: hours at the dated hourly rate, VAT apart, or free under a special duty;
//! - [`population`]: the population (key) file, checked line by line, taken whole or not at all;
//! - [`extract`]: an extract's rows for one person (episodes, panels) and the data dictionary;
//! - [`coverage`]: how complete a recent month is, from the register's two time axes, and whether
//!   it may be ordered (from 95 %).

pub mod calendar;
pub mod coverage;
pub mod extract;
pub mod order;
pub mod population;
pub mod quote;
