//! The host process's own CPU time, for `/healthz`: a benchmark reads it
//! before and after a measurement to give CPU per operation, a figure that
//! stays comparable when the machine is noisy.

/// User plus system CPU time of every thread of this process so far, in
/// microseconds; `None` where the kernel does not say (not Linux).
pub fn process_cpu_micros() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&stat)
}

/// The kernel counts in clock ticks of `USER_HZ`, which Linux fixes at 100
/// for user space on every architecture.
const MICROS_PER_TICK: u64 = 10_000;

/// utime and stime (fields 14 and 15 of `/proc/<pid>/stat`), read after the
/// command name, which is in parentheses and may itself hold spaces.
fn parse_stat(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // Field 3 (the state) is the first after the name.
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) * MICROS_PER_TICK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_time_are_read_after_a_name_with_spaces() {
        let stat = "4242 (cairn (a) b) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat(stat), Some(325 * MICROS_PER_TICK));
    }

    #[test]
    fn this_process_has_used_some_time() {
        let spent = (0..200_000u64).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
        assert!(spent != 1);
        assert!(process_cpu_micros().is_some());
    }
}
