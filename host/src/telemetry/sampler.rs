//! Which traces are exported: `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, as the OpenTelemetry specification names
//! them (default `parentbased_always_on`).

use opentelemetry::trace::TraceId;

/// A sampler of the specification.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sampler {
    /// Whether a span whose parent is remote follows the parent's decision.
    parent_based: bool,
    /// The share of root traces kept, 0 to 1.
    ratio: f64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            parent_based: true,
            ratio: 1.0,
        }
    }
}

impl Sampler {
    /// From the environment; an unknown sampler is the default, said once
    /// on stderr (the log is not set up yet when this is read).
    pub(crate) fn from_env() -> Self {
        let name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
        let arg = std::env::var("OTEL_TRACES_SAMPLER_ARG").ok();
        Self::parse(&name, arg.as_deref()).unwrap_or_else(|error| {
            eprintln!("cairn: {error}; sampling every trace");
            Sampler::default()
        })
    }

    fn parse(name: &str, arg: Option<&str>) -> Result<Self, String> {
        let ratio = || match arg {
            None | Some("") => Ok(1.0),
            Some(arg) => arg
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    format!("OTEL_TRACES_SAMPLER_ARG={arg:?} is not a ratio from 0 to 1")
                }),
        };
        let (parent_based, ratio) = match name.trim().to_ascii_lowercase().as_str() {
            "" | "parentbased_always_on" => (true, 1.0),
            "parentbased_always_off" => (true, 0.0),
            "parentbased_traceidratio" => (true, ratio()?),
            "always_on" => (false, 1.0),
            "always_off" => (false, 0.0),
            "traceidratio" => (false, ratio()?),
            other => {
                return Err(format!(
                    "OTEL_TRACES_SAMPLER={other:?} is not one of always_on, always_off, \
                     traceidratio, parentbased_always_on, parentbased_always_off, \
                     parentbased_traceidratio"
                ));
            }
        };
        Ok(Sampler {
            parent_based,
            ratio,
        })
    }

    /// Whether to keep the trace `trace` of a span whose remote parent was
    /// sampled or not (`None`: a root span).
    pub(crate) fn sample(self, trace: TraceId, remote_parent_sampled: Option<bool>) -> bool {
        if let (true, Some(sampled)) = (self.parent_based, remote_parent_sampled) {
            return sampled;
        }
        if self.ratio >= 1.0 {
            return true;
        }
        // The specification's TraceIdRatioBased: the trace id's low 8 bytes
        // (random in W3C ids) against the ratio, so every host decides the
        // same for one trace.
        let low = u64::from_be_bytes(trace.to_bytes()[8..].try_into().expect("8 bytes"));
        let bound = (self.ratio.max(0.0) * (1u64 << 63) as f64) as u64;
        (low >> 1) < bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_follow_the_specification() {
        let trace = TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736_u128);
        let on = Sampler::parse("", None).unwrap();
        assert!(on.sample(trace, None));
        assert!(
            !on.sample(trace, Some(false)),
            "parent-based follows its parent"
        );
        let off = Sampler::parse("always_off", None).unwrap();
        assert!(!off.sample(trace, Some(true)), "not parent-based");
        let half = Sampler::parse("parentbased_traceidratio", Some("0.5")).unwrap();
        assert!(half.sample(trace, Some(true)));
        let kept = (0..10_000u128)
            .filter(|i| {
                half.sample(
                    TraceId::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
                    None,
                )
            })
            .count();
        assert!(
            (4_000..6_000).contains(&kept),
            "{kept} of 10000 kept at 0.5"
        );
        assert!(Sampler::parse("traceidratio", Some("2")).is_err());
        assert!(Sampler::parse("jaeger_remote", None).is_err());
    }
}
