//! Changing the number of an SMS factor: the old number agrees, the new number proves it is
//! reachable, then the numbers are swapped — never one without the other.
//!
//! ```text
//!   start(new number)                      (code sent to the OLD number)
//!         │
//!         ▼        right code from old number          right code from new number
//!   ┌─────────────┐ ───────────────────────▶ ┌─────────────┐ ───────────────────▶ ┌──────┐
//!   │ awaiting_old│   (code sent to the NEW  │ awaiting_new│   number swapped,    │ done │
//!   └─────────────┘    number)               └─────────────┘   user notified      └──────┘
//!     │  ▲  wrong code: stays (the code's 5 tries and the factor's attempt limits count)
//!     │  └──┘                                     │  ▲ wrong code: stays
//!     │                                           │  └──┘
//!     │ start again, or EXPIRY (30 min after start, any state but done)
//!     ▼                                           ▼
//!   ┌───────────┐ ◀───────────────────────────────┘
//!   │ cancelled │   (an expired change is treated as cancelled; nothing is swapped)
//!   └───────────┘
//! ```
//!
//! Every transition is a conditional update in the store (`… WHERE state = from AND
//! expires_at > now`) applied in the same transaction as the code that justifies it, so a
//! change cannot skip a step, complete twice, or complete after expiry.

use crate::messaging::{CodePurpose, PhoneChange, PhoneChangeState};

/// How long a phone change may take from start to finish.
pub const PHONE_CHANGE_TTL_MS: i64 = 30 * 60 * 1000;

/// What the user sends next, and what a right code does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The purpose of the code that is expected now.
    pub purpose: CodePurpose,
    /// Where a right code moves the change.
    pub to: PhoneChangeState,
    /// Whether a right code also swaps the number.
    pub swaps: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneChangeError {
    /// Past its expiry: start again.
    Expired,
    /// Done or cancelled: nothing more to confirm.
    Finished,
}

/// The state as seen at `now`: an unfinished change past its expiry counts as cancelled.
pub fn effective_state(change: &PhoneChange, now: i64) -> PhoneChangeState {
    match change.state {
        PhoneChangeState::AwaitingOld | PhoneChangeState::AwaitingNew
            if now >= change.expires_at =>
        {
            PhoneChangeState::Cancelled
        }
        s => s,
    }
}

/// The step expected at `now`, or why there is none.
pub fn next_step(change: &PhoneChange, now: i64) -> Result<Step, PhoneChangeError> {
    match change.state {
        PhoneChangeState::Done | PhoneChangeState::Cancelled => Err(PhoneChangeError::Finished),
        _ if now >= change.expires_at => Err(PhoneChangeError::Expired),
        PhoneChangeState::AwaitingOld => Ok(Step {
            purpose: CodePurpose::PhoneOld,
            to: PhoneChangeState::AwaitingNew,
            swaps: false,
        }),
        PhoneChangeState::AwaitingNew => Ok(Step {
            purpose: CodePurpose::PhoneNew,
            to: PhoneChangeState::Done,
            swaps: true,
        }),
    }
}

/// Where the code for the current step goes: the old number first, then the new one.
pub fn code_destination<'a>(change: &'a PhoneChange, old_number: &'a str) -> &'a str {
    match change.state {
        PhoneChangeState::AwaitingOld => old_number,
        _ => &change.new_phone,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn change(state: PhoneChangeState) -> PhoneChange {
        PhoneChange {
            id: "pcg_x".into(),
            tenant_id: 1,
            user_id: 2,
            factor_id: "fac_x".into(),
            new_phone: "+447700900999".into(),
            state,
            created_at: 1_000,
            expires_at: 1_000 + PHONE_CHANGE_TTL_MS,
            updated_at: 1_000,
        }
    }

    #[test]
    fn walks_old_then_new_then_done() {
        let c = change(PhoneChangeState::AwaitingOld);
        let s = next_step(&c, 2_000).unwrap();
        assert_eq!(s.purpose, CodePurpose::PhoneOld);
        assert_eq!(s.to, PhoneChangeState::AwaitingNew);
        assert!(!s.swaps);
        assert_eq!(code_destination(&c, "+441111111111"), "+441111111111");

        let c = PhoneChange { state: s.to, ..c };
        let s = next_step(&c, 3_000).unwrap();
        assert_eq!(s.purpose, CodePurpose::PhoneNew);
        assert_eq!(s.to, PhoneChangeState::Done);
        assert!(s.swaps);
        assert_eq!(code_destination(&c, "+441111111111"), "+447700900999");

        let c = PhoneChange { state: s.to, ..c };
        assert_eq!(next_step(&c, 4_000), Err(PhoneChangeError::Finished));
    }

    #[test]
    fn expiry_applies_to_every_unfinished_state_at_the_exact_edge() {
        for state in [PhoneChangeState::AwaitingOld, PhoneChangeState::AwaitingNew] {
            let c = change(state);
            let edge = c.expires_at;
            assert!(next_step(&c, edge - 1).is_ok());
            assert_eq!(effective_state(&c, edge - 1), state);
            assert_eq!(next_step(&c, edge), Err(PhoneChangeError::Expired));
            assert_eq!(effective_state(&c, edge), PhoneChangeState::Cancelled);
        }
        // Finished changes stay what they are, however late.
        let done = change(PhoneChangeState::Done);
        assert_eq!(effective_state(&done, i64::MAX), PhoneChangeState::Done);
        assert_eq!(next_step(&done, i64::MAX), Err(PhoneChangeError::Finished));
        let cancelled = change(PhoneChangeState::Cancelled);
        assert_eq!(next_step(&cancelled, 0), Err(PhoneChangeError::Finished));
    }
}
