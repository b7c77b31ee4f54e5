//! Retry policies of steps: what is accepted, and how long to wait before
//! each attempt.

use crate::runtime::wit::steps::RetryPolicy;

/// The longest wait between two attempts, and the longest step name.
const MAX_INTERVAL_MS: u64 = 7 * 24 * 3600 * 1000;
const MAX_ATTEMPTS: u32 = 1000;
const MAX_NAME_CHARS: usize = 255;

/// Whether a step may be begun under `name` with `policy`; the refusal
/// says what is accepted.
pub(super) fn validate(name: &str, policy: &RetryPolicy) -> Result<(), String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS {
        return Err(format!(
            "a step name must be 1 to {MAX_NAME_CHARS} characters, got {chars}"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "step name {name:?} must not contain control characters"
        ));
    }
    if !(1..=MAX_ATTEMPTS).contains(&policy.max_attempts) {
        return Err(format!(
            "max-attempts of step {name:?} must be 1 to {MAX_ATTEMPTS}, got {}",
            policy.max_attempts
        ));
    }
    if !(1.0..=10.0).contains(&policy.backoff_factor) {
        return Err(format!(
            "backoff-factor of step {name:?} must be 1.0 to 10.0, got {}",
            policy.backoff_factor
        ));
    }
    for (what, ms) in [
        ("initial-interval-ms", policy.initial_interval_ms),
        ("max-interval-ms", policy.max_interval_ms),
    ] {
        if ms > MAX_INTERVAL_MS {
            return Err(format!(
                "{what} of step {name:?} must be at most {MAX_INTERVAL_MS} (7 days), got {ms}"
            ));
        }
    }
    Ok(())
}

/// The wait after failed attempt `attempt` (from 1): the initial interval,
/// times the backoff factor for each attempt before, capped.
pub(super) fn delay_ms(policy: &RetryPolicy, attempt: u32) -> i64 {
    let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
    let wait = policy.initial_interval_ms as f64 * policy.backoff_factor.powi(exponent);
    let capped = wait.min(policy.max_interval_ms as f64).max(0.0);
    capped as i64
}

/// An error message cut to at most `limit` bytes, on a character boundary.
pub(super) fn truncate(mut message: String, limit: usize) -> String {
    if message.len() > limit {
        let mut end = limit;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: u32, initial: u64, factor: f64, max: u64) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_interval_ms: initial,
            backoff_factor: factor,
            max_interval_ms: max,
        }
    }

    #[test]
    fn waits_grow_by_the_factor_up_to_the_cap() {
        let p = policy(5, 100, 2.0, 500);
        let waits: Vec<i64> = (1..=5).map(|n| delay_ms(&p, n)).collect();
        assert_eq!(waits, [100, 200, 400, 500, 500]);
        assert_eq!(delay_ms(&policy(3, 50, 1.0, 1000), 3), 50);
    }

    #[test]
    fn bad_policies_and_names_are_refused_with_the_accepted_range() {
        let ok = policy(3, 10, 2.0, 100);
        assert!(validate("charge", &ok).is_ok());
        assert!(validate("", &ok).unwrap_err().contains("1 to 255"));
        assert!(validate(&"x".repeat(256), &ok).is_err());
        assert!(
            validate("a\0b", &ok)
                .unwrap_err()
                .contains("control characters")
        );
        let zero = validate("s", &policy(0, 10, 2.0, 100)).unwrap_err();
        assert!(zero.contains("max-attempts"), "{zero}");
        let factor = validate("s", &policy(3, 10, 0.5, 100)).unwrap_err();
        assert!(factor.contains("1.0 to 10.0"), "{factor}");
        assert!(validate("s", &policy(3, 10, f64::NAN, 100)).is_err());
        assert!(validate("s", &policy(3, u64::MAX, 2.0, 100)).is_err());
    }

    #[test]
    fn messages_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo".into(), 2), "h");
        assert_eq!(truncate("abc".into(), 10), "abc");
    }
}
