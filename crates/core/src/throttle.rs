//! Attempt limits per (user, factor), SECURITY.md "Attempt limits" and INV-03.
//!
//! ```text
//!            wrong code (failures < 5)
//!          ┌──────────────┐
//!          ▼              │
//!   ┌────────────┐  5th consecutive failure   ┌───────────────────────────┐
//!   │   open     │ ─────────────────────────▶ │ blocked until now + 2^(n-5)s│ (capped at 15 min)
//!   └────────────┘ ◀──── success ──────────── └───────────────────────────┘
//!          ▲                                      │ attempts while blocked are
//!          │ operator unlock                      │ denied and not counted
//!          │                                      ▼ 100th consecutive failure
//!   ┌────────────┐ ◀──────────────────────────────┘
//!   │   locked   │  every attempt denied, even with a right code
//!   └────────────┘
//! ```
//! Counters are reset only by a success of the same factor or by an operator; never by
//! resending, restarting a login or a first-factor success.

pub const BACKOFF_AFTER: i32 = 5;
pub const LOCK_AFTER: i32 = 100;
pub const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleState {
    pub failures: i32,
    pub blocked_until: Option<i64>,
    pub locked_at: Option<i64>,
}

impl ThrottleState {
    pub fn is_locked(&self) -> bool {
        self.locked_at.is_some()
    }
    pub fn is_blocked(&self, now: i64) -> bool {
        self.blocked_until.is_some_and(|t| t > now)
    }
}

/// The state after one more counted failure at `now`.
pub fn after_failure(state: ThrottleState, now: i64) -> ThrottleState {
    let failures = state.failures.saturating_add(1);
    let locked_at = if failures >= LOCK_AFTER {
        state.locked_at.or(Some(now))
    } else {
        state.locked_at
    };
    let blocked_until = if failures >= BACKOFF_AFTER {
        let exp = (failures - BACKOFF_AFTER).min(20) as u32;
        Some(now + (1000i64 << exp).min(MAX_BACKOFF_MS))
    } else {
        None
    };
    ThrottleState {
        failures,
        blocked_until,
        locked_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> ThrottleState {
        ThrottleState {
            failures: 0,
            blocked_until: None,
            locked_at: None,
        }
    }

    #[test]
    fn four_failures_are_free_then_backoff_doubles() {
        let mut s = open();
        for _ in 0..4 {
            s = after_failure(s, 0);
            assert!(!s.is_blocked(0));
        }
        s = after_failure(s, 0);
        assert_eq!(s.blocked_until, Some(1000));
        assert!(s.is_blocked(999) && !s.is_blocked(1000));
        s = after_failure(s, 1000);
        assert_eq!(s.blocked_until, Some(3000));
        s = after_failure(s, 3000);
        assert_eq!(s.blocked_until, Some(7000));
    }

    #[test]
    fn backoff_is_capped_and_lock_comes_at_one_hundred() {
        let mut s = open();
        for _ in 0..99 {
            s = after_failure(s, 0);
        }
        assert_eq!(s.blocked_until, Some(MAX_BACKOFF_MS));
        assert!(!s.is_locked());
        s = after_failure(s, 5);
        assert!(s.is_locked());
        assert_eq!(s.locked_at, Some(5));
        s = after_failure(s, 9);
        assert_eq!(s.locked_at, Some(5), "lock time is kept");
    }
}
