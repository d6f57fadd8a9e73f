//! The invoice lifecycle statuses of the French e-invoicing reform (the codes 200 to 213 of
//! the external specifications that the public portal and the approved platforms exchange),
//! and what each one does to the dunning sequence. Four are mandatory: deposited, refused,
//! rejected and cashed.

use super::pause::PauseKind;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LifecycleStatus {
    Deposited,
    Issued,
    Received,
    MadeAvailable,
    InHand,
    Approved,
    PartiallyApproved,
    Disputed,
    Suspended,
    Completed,
    Refused,
    PaymentTransmitted,
    Cashed,
    Rejected,
}

/// What a lifecycle status does to the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEffect {
    /// Recorded in the journal; nothing else changes.
    JournalOnly,
    /// Pauses the sequence until a later status (or `dispute.resolved`) ends the pause.
    Pause(PauseKind),
    /// The buyer says the payment is on its way: a promise to pay today, so the sequence
    /// waits for the grace days and resumes if no money came.
    PromiseToday,
    /// Ends the pauses of these kinds that a previous status opened; the sequence resumes.
    EndPauses(&'static [PauseKind]),
    /// Closes the invoice: its steps are cancelled, no thank-you.
    Close,
    /// Records the amount as cashed (the whole balance if none is given); settles at zero.
    Settle,
}

impl LifecycleStatus {
    pub const ALL: [LifecycleStatus; 14] = [
        LifecycleStatus::Deposited,
        LifecycleStatus::Issued,
        LifecycleStatus::Received,
        LifecycleStatus::MadeAvailable,
        LifecycleStatus::InHand,
        LifecycleStatus::Approved,
        LifecycleStatus::PartiallyApproved,
        LifecycleStatus::Disputed,
        LifecycleStatus::Suspended,
        LifecycleStatus::Completed,
        LifecycleStatus::Refused,
        LifecycleStatus::PaymentTransmitted,
        LifecycleStatus::Cashed,
        LifecycleStatus::Rejected,
    ];

    /// The code of the specifications, e.g. 207 for "En litige".
    pub fn code(self) -> u16 {
        match self {
            LifecycleStatus::Deposited => 200,
            LifecycleStatus::Issued => 201,
            LifecycleStatus::Received => 202,
            LifecycleStatus::MadeAvailable => 203,
            LifecycleStatus::InHand => 204,
            LifecycleStatus::Approved => 205,
            LifecycleStatus::PartiallyApproved => 206,
            LifecycleStatus::Disputed => 207,
            LifecycleStatus::Suspended => 208,
            LifecycleStatus::Completed => 209,
            LifecycleStatus::Refused => 210,
            LifecycleStatus::PaymentTransmitted => 211,
            LifecycleStatus::Cashed => 212,
            LifecycleStatus::Rejected => 213,
        }
    }

    /// The name on the wire, e.g. `disputed`.
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStatus::Deposited => "deposited",
            LifecycleStatus::Issued => "issued",
            LifecycleStatus::Received => "received",
            LifecycleStatus::MadeAvailable => "made_available",
            LifecycleStatus::InHand => "in_hand",
            LifecycleStatus::Approved => "approved",
            LifecycleStatus::PartiallyApproved => "partially_approved",
            LifecycleStatus::Disputed => "disputed",
            LifecycleStatus::Suspended => "suspended",
            LifecycleStatus::Completed => "completed",
            LifecycleStatus::Refused => "refused",
            LifecycleStatus::PaymentTransmitted => "payment_transmitted",
            LifecycleStatus::Cashed => "cashed",
            LifecycleStatus::Rejected => "rejected",
        }
    }

    /// The French name of the specifications.
    pub fn label_fr(self) -> &'static str {
        match self {
            LifecycleStatus::Deposited => "Déposée",
            LifecycleStatus::Issued => "Émise par la plateforme",
            LifecycleStatus::Received => "Reçue par la plateforme",
            LifecycleStatus::MadeAvailable => "Mise à disposition",
            LifecycleStatus::InHand => "Prise en charge",
            LifecycleStatus::Approved => "Approuvée",
            LifecycleStatus::PartiallyApproved => "Approuvée partiellement",
            LifecycleStatus::Disputed => "En litige",
            LifecycleStatus::Suspended => "Suspendue",
            LifecycleStatus::Completed => "Complétée",
            LifecycleStatus::Refused => "Refusée",
            LifecycleStatus::PaymentTransmitted => "Paiement transmis",
            LifecycleStatus::Cashed => "Encaissée",
            LifecycleStatus::Rejected => "Rejetée",
        }
    }

    /// Whether the reform makes the status mandatory to transmit.
    pub fn mandatory(self) -> bool {
        matches!(
            self,
            LifecycleStatus::Deposited
                | LifecycleStatus::Refused
                | LifecycleStatus::Cashed
                | LifecycleStatus::Rejected
        )
    }

    pub fn effect(self) -> LifecycleEffect {
        const DISPUTE_OR_SUSPENSION: &[PauseKind] = &[PauseKind::Dispute, PauseKind::Suspension];
        const SUSPENSION: &[PauseKind] = &[PauseKind::Suspension];
        match self {
            LifecycleStatus::Deposited
            | LifecycleStatus::Issued
            | LifecycleStatus::Received
            | LifecycleStatus::MadeAvailable
            | LifecycleStatus::InHand => LifecycleEffect::JournalOnly,
            // The buyer approved: whatever it contested or asked for is settled.
            LifecycleStatus::Approved | LifecycleStatus::PartiallyApproved => {
                LifecycleEffect::EndPauses(DISPUTE_OR_SUSPENSION)
            }
            LifecycleStatus::Disputed => LifecycleEffect::Pause(PauseKind::Dispute),
            LifecycleStatus::Suspended => LifecycleEffect::Pause(PauseKind::Suspension),
            // The supplier completed what a suspension asked for.
            LifecycleStatus::Completed => LifecycleEffect::EndPauses(SUSPENSION),
            LifecycleStatus::PaymentTransmitted => LifecycleEffect::PromiseToday,
            LifecycleStatus::Cashed => LifecycleEffect::Settle,
            // Refused by the buyer, or rejected by a platform (deemed never issued): not owed.
            LifecycleStatus::Refused | LifecycleStatus::Rejected => LifecycleEffect::Close,
        }
    }
}

impl fmt::Display for LifecycleStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LifecycleStatus {
    type Err = String;
    /// Accepts the name (`disputed`, any case) or the code (`207`).
    fn from_str(s: &str) -> Result<Self, String> {
        let wanted = s.trim().to_ascii_lowercase();
        LifecycleStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == wanted || status.code().to_string() == wanted)
            .ok_or_else(|| {
                let known: Vec<String> = LifecycleStatus::ALL
                    .iter()
                    .map(|status| format!("{} ({})", status.as_str(), status.code()))
                    .collect();
                format!(
                    "unknown lifecycle status {s:?} (expected a name or code among: {})",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_read_by_name_or_code() {
        assert_eq!("disputed".parse(), Ok(LifecycleStatus::Disputed));
        assert_eq!("207".parse(), Ok(LifecycleStatus::Disputed));
        assert_eq!(" Cashed ".parse(), Ok(LifecycleStatus::Cashed));
        let unknown = "paid".parse::<LifecycleStatus>();
        assert!(
            unknown.as_ref().is_err_and(|e| e.contains("cashed (212)")),
            "{unknown:?}"
        );
    }

    #[test]
    fn codes_are_200_to_213_in_order_and_names_unique() {
        let codes: Vec<u16> = LifecycleStatus::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, (200..=213).collect::<Vec<u16>>());
        let mut names: Vec<&str> = LifecycleStatus::ALL.iter().map(|s| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), LifecycleStatus::ALL.len());
    }

    #[test]
    fn the_mandatory_statuses_each_act_on_the_sequence() {
        let mandatory: Vec<LifecycleStatus> = LifecycleStatus::ALL
            .into_iter()
            .filter(|s| s.mandatory())
            .collect();
        assert_eq!(
            mandatory,
            vec![
                LifecycleStatus::Deposited,
                LifecycleStatus::Refused,
                LifecycleStatus::Cashed,
                LifecycleStatus::Rejected
            ]
        );
        assert_eq!(LifecycleStatus::Refused.effect(), LifecycleEffect::Close);
        assert_eq!(LifecycleStatus::Rejected.effect(), LifecycleEffect::Close);
        assert_eq!(LifecycleStatus::Cashed.effect(), LifecycleEffect::Settle);
        assert_eq!(
            LifecycleStatus::Disputed.effect(),
            LifecycleEffect::Pause(PauseKind::Dispute)
        );
        assert_eq!(
            LifecycleStatus::Suspended.effect(),
            LifecycleEffect::Pause(PauseKind::Suspension)
        );
        assert_eq!(LifecycleStatus::Deposited.effect(), LifecycleEffect::JournalOnly);
    }
}
