//! What an operator's role allows on the admin API: one table, one check.
//!
//! Every admin RPC names the [`AdminRight`] it needs; [`require`] is the only place that decides
//! whether a role holds it. A refusal stays a typed [`RoleDenied`] until the gRPC edge reports it.

use crate::domain::OperatorRole;

/// What an admin RPC requires of the operator's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AdminRight {
    /// Onboarding, certificates and termination of parties.
    ManageParties,
    /// Reading parties and their audit history.
    ReadParties,
    /// Feeding facts into the register (Ingest).
    FeedRegister,
    /// Looking at one person's register data (ShowPerson; logged as an operator view).
    ViewPerson,
    /// The register's statistics (no personal data).
    ReadRegisterStats,
    /// Reading and verifying the disclosure log and the consents of every party.
    ReadAudit,
    /// Revoking a party's consent on the agency's behalf.
    ManageConsents,
    /// Reading statistics orders and their manifests.
    ReadStatisticsOrders,
    /// Taking the statistics unit's steps of an order (receipt, quote, population, extract,
    /// delivery, retention, invoice, purge).
    ManageStatisticsOrders,
    /// The confidentiality review of a statistics order (release or refusal).
    ReviewStatisticsOrders,
}

impl AdminRight {
    pub const ALL: [Self; 10] = [
        Self::ManageParties,
        Self::ReadParties,
        Self::FeedRegister,
        Self::ViewPerson,
        Self::ReadRegisterStats,
        Self::ReadAudit,
        Self::ManageConsents,
        Self::ReadStatisticsOrders,
        Self::ManageStatisticsOrders,
        Self::ReviewStatisticsOrders,
    ];
}

/// Whether `role` holds `right`: `operator` runs parties, consents and looks at the register;
/// `auditor` reads; `ingest` only feeds the register (and sees its statistics); `statistician` runs
/// statistics orders and makes their confidentiality review.
pub fn permits(role: OperatorRole, right: AdminRight) -> bool {
    use AdminRight as R;
    use OperatorRole as O;
    match right {
        R::ManageParties | R::ManageConsents => role == O::Operator,
        R::ReadParties | R::ViewPerson | R::ReadAudit => matches!(role, O::Operator | O::Auditor),
        R::FeedRegister => role == O::Ingest,
        R::ReadRegisterStats => true,
        R::ReadStatisticsOrders => matches!(role, O::Statistician | O::Operator | O::Auditor),
        R::ManageStatisticsOrders | R::ReviewStatisticsOrders => role == O::Statistician,
    }
}

/// Every role that holds `right` (for telling a refused caller what it needs).
pub fn holders_of(right: AdminRight) -> Vec<OperatorRole> {
    OperatorRole::ALL
        .into_iter()
        .filter(|r| permits(*r, right))
        .collect()
}

/// An operator's role lacks the right a call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operator role '{role}' does not hold the right {right:?}")]
pub struct RoleDenied {
    pub role: OperatorRole,
    pub right: AdminRight,
}

/// Refuses a role that lacks `right`.
pub fn require(role: OperatorRole, right: AdminRight) -> Result<(), RoleDenied> {
    if permits(role, right) {
        Ok(())
    } else {
        Err(RoleDenied { role, right })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        use AdminRight::*;
        use OperatorRole::*;
        let rows = [
            (ManageParties, vec![Operator]),
            (ReadParties, vec![Operator, Auditor]),
            (FeedRegister, vec![Ingest]),
            (ViewPerson, vec![Operator, Auditor]),
            (ReadRegisterStats, vec![Operator, Auditor, Ingest, Statistician]),
            (ReadAudit, vec![Operator, Auditor]),
            (ManageConsents, vec![Operator]),
            (ReadStatisticsOrders, vec![Operator, Auditor, Statistician]),
            (ManageStatisticsOrders, vec![Statistician]),
            (ReviewStatisticsOrders, vec![Statistician]),
        ];
        assert_eq!(rows.len(), AdminRight::ALL.len());
        for (right, holders) in rows {
            assert_eq!(holders_of(right), holders, "{right:?}");
            for role in OperatorRole::ALL {
                assert_eq!(require(role, right).is_ok(), holders.contains(&role));
            }
        }
    }
}
