//! Which TOTP steps a factor accepts, and how clock drift is learned.
//!
//! A factor keeps a learned drift `o` (in steps). At time step `T` it accepts exactly the two
//! steps `{T+o, T+o−1}`: the current code and the previous one, as seen by the user's device.
//! The window never widens; only its position moves:
//! - at confirmation the code may come from `T−2 ..= T+1` (drift −1, 0 or +1 with its previous
//!   step), and the drift that explains it is stored;
//! - on use, a code one step beyond either edge of the window (`T+o+1` or `T+o−2`) is refused
//!   but remembered as a hint; a later code beyond the same edge, from a later step within
//!   [`HINT_HORIZON`] steps, proves the device has drifted by one more step: it is accepted and
//!   `o` moves by one, never beyond ±1 ([`MAX_USE_DRIFT`]). A stray code alone is never
//!   accepted; while a hint from a real neighbour code is pending, exactly one more step (in
//!   that direction, later than the hint) can complete it, which is the same proof the resync
//!   endpoint asks for (two codes in order) over a far smaller range;
//! - through resync, two consecutive codes found anywhere within ±10 steps prove a larger drift.
//!
//! Single use is enforced by the store on the returned step (INV-01); this module is pure.

use twofold_otp::{verify_steps, OtpParams};

pub const MAX_DRIFT: i32 = 10;
/// Drift learned on use stays within ±1 step; larger drift needs the audited resync.
pub const MAX_USE_DRIFT: i32 = 1;
/// How many steps may separate the two codes that teach drift on use (5 minutes at 30 s).
pub const HINT_HORIZON: i64 = 10;

fn step_now(params: &OtpParams, now_ms: i64) -> i64 {
    params.step_at((now_ms.max(0) / 1000) as u64) as i64
}

fn to_steps(steps: impl Iterator<Item = i64>) -> Vec<u64> {
    steps.filter(|s| *s >= 0).map(|s| s as u64).collect()
}

/// Verifies a code for use (login, API verify): returns the matched step.
pub fn verify_use(
    secret: &[u8],
    code: &str,
    params: &OtpParams,
    drift: i32,
    now_ms: i64,
) -> Option<i64> {
    let t = step_now(params, now_ms) + drift as i64;
    let steps = to_steps([t, t - 1].into_iter());
    verify_steps(secret, code, params, &steps).map(|s| s as i64)
}

/// A code just outside the use window: returns (step, direction) when it matches `T+o+1`
/// (direction +1) or `T+o−2` (direction −1) and the resulting drift stays within
/// ±[`MAX_USE_DRIFT`]. Both candidates are always evaluated.
pub fn verify_neighbour(
    secret: &[u8],
    code: &str,
    params: &OtpParams,
    drift: i32,
    now_ms: i64,
) -> Option<(i64, i32)> {
    let t = step_now(params, now_ms) + drift as i64;
    let ahead = verify_steps(secret, code, params, &to_steps([t + 1].into_iter()));
    let behind = verify_steps(secret, code, params, &to_steps([t - 2].into_iter()));
    let found = match (ahead, behind) {
        (Some(s), _) => Some((s as i64, 1)),
        (None, Some(s)) => Some((s as i64, -1)),
        (None, None) => None,
    };
    found.filter(|(_, dir)| (drift + dir).abs() <= MAX_USE_DRIFT)
}

/// The drift that explains a match at `step` when the real step is `t`, preferring the one
/// nearer zero (a match at `t−1` is ordinary typing latency, not drift).
fn drift_for(step: i64, t: i64) -> i32 {
    let d = step - t;
    (if d >= 0 { d } else { d + 1 }) as i32
}

/// Verifies the confirmation code of a new factor: returns (step, learned drift).
pub fn verify_confirmation(
    secret: &[u8],
    code: &str,
    params: &OtpParams,
    now_ms: i64,
) -> Option<(i64, i32)> {
    let t = step_now(params, now_ms);
    let steps = to_steps(t - 2..=t + 1);
    verify_steps(secret, code, params, &steps).map(|s| (s as i64, drift_for(s as i64, t)))
}

/// Finds two consecutive codes within ±[`MAX_DRIFT`] steps: returns (step of the second code,
/// new drift). Every candidate is evaluated (no early exit) by the OTP engine.
pub fn resync(
    secret: &[u8],
    first: &str,
    second: &str,
    params: &OtpParams,
    now_ms: i64,
) -> Option<(i64, i32)> {
    let t = step_now(params, now_ms);
    let lo = t - MAX_DRIFT as i64 - 1;
    let hi = t + MAX_DRIFT as i64;
    let mut found = None;
    // Check each candidate pair; the second code must be exactly one step after the first.
    for s in (lo..hi).filter(|s| *s >= 0) {
        let pair_ok = verify_steps(secret, first, params, &[s as u64]).is_some()
            & verify_steps(secret, second, params, &[(s + 1) as u64]).is_some();
        if pair_ok {
            found = Some(s + 1);
        }
    }
    found.map(|s2| (s2, (s2 - t) as i32))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use twofold_otp::totp_at_step;

    const SECRET: &[u8] = b"12345678901234567890";

    fn p() -> OtpParams {
        OtpParams::default()
    }

    #[test]
    fn use_accepts_current_and_previous_only() {
        let now = 1_000_000_000_000i64; // ms
        let t = (now / 1000 / 30) as u64;
        for (step, ok) in [(t, true), (t - 1, true), (t - 2, false), (t + 1, false)] {
            let code = totp_at_step(SECRET, step, &p());
            assert_eq!(
                verify_use(SECRET, &code, &p(), 0, now).is_some(),
                ok,
                "step {step}"
            );
        }
    }

    #[test]
    fn drift_moves_the_window_without_widening_it() {
        let now = 4_102_444_800_000i64; // 2100-01-01, after 2038
        let t = (now / 1000 / 30) as u64;
        let accepted: Vec<_> = (t - 5..t + 5)
            .filter(|s| verify_use(SECRET, &totp_at_step(SECRET, *s, &p()), &p(), 3, now).is_some())
            .collect();
        assert_eq!(accepted, vec![t + 2, t + 3]);
    }

    #[test]
    fn confirmation_learns_drift_within_one_step() {
        let now = 1_700_000_000_000i64;
        let t = now / 1000 / 30;
        for (step, drift) in [(t + 1, 1), (t, 0), (t - 1, 0), (t - 2, -1)] {
            let code = totp_at_step(SECRET, step as u64, &p());
            assert_eq!(
                verify_confirmation(SECRET, &code, &p(), now),
                Some((step, drift))
            );
        }
        let far = totp_at_step(SECRET, (t + 2) as u64, &p());
        assert_eq!(verify_confirmation(SECRET, &far, &p(), now), None);
    }

    #[test]
    fn neighbours_are_one_step_beyond_each_edge() {
        let now = 1_700_000_000_000i64;
        let t = now / 1000 / 30;
        let c = |s: i64| totp_at_step(SECRET, s as u64, &p());
        assert_eq!(
            verify_neighbour(SECRET, &c(t + 1), &p(), 0, now),
            Some((t + 1, 1))
        );
        assert_eq!(
            verify_neighbour(SECRET, &c(t - 2), &p(), 0, now),
            Some((t - 2, -1))
        );
        assert_eq!(verify_neighbour(SECRET, &c(t), &p(), 0, now), None);
        assert_eq!(verify_neighbour(SECRET, &c(t + 2), &p(), 0, now), None);
        assert_eq!(
            verify_neighbour(SECRET, &c(t - 1), &p(), 1, now),
            Some((t - 1, -1))
        );
        assert_eq!(
            verify_neighbour(SECRET, &c(t + 2), &p(), 1, now),
            None,
            "capped at +1"
        );
        assert_eq!(
            verify_neighbour(SECRET, &c(t - 3), &p(), -1, now),
            None,
            "capped at -1"
        );
    }

    #[test]
    fn resync_needs_two_consecutive_codes() {
        let now = 1_700_000_000_000i64;
        let t = now / 1000 / 30;
        let c = |s: i64| totp_at_step(SECRET, s as u64, &p());
        assert_eq!(
            resync(SECRET, &c(t + 7), &c(t + 8), &p(), now),
            Some((t + 8, 8))
        );
        assert_eq!(
            resync(SECRET, &c(t - 9), &c(t - 8), &p(), now),
            Some((t - 8, -8))
        );
        assert_eq!(resync(SECRET, &c(t + 7), &c(t + 9), &p(), now), None);
        assert_eq!(resync(SECRET, &c(t + 11), &c(t + 12), &p(), now), None);
    }
}
