use super::*;

#[test]
fn module_names_are_limited_to_safe_characters() {
    assert!(ModuleName::parse("steps-2").is_ok());
    for bad in ["", "Steps", "a/b", "..", "a_b", &"x".repeat(65)] {
        let err = ModuleName::parse(bad).unwrap_err();
        assert!(err.0.contains("a-z, 0-9 and '-'"), "{err}");
    }
}

#[test]
fn workflow_ids_are_bounded() {
    assert!(WorkflowId::parse(&"x".repeat(255)).is_ok());
    assert!(WorkflowId::parse(&"x".repeat(256)).is_err());
    assert!(WorkflowId::parse("").is_err());
    assert!(WorkflowId::parse("a\nb").is_err());
}

#[test]
fn event_keys_are_bounded_and_single_line() {
    assert!(validate_event_key("step1").is_ok());
    for bad in ["", "a\nb", "a\rb", &"k".repeat(256)] {
        assert!(validate_event_key(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn generated_ids_sort_by_creation() {
    let first = WorkflowId::generate();
    let second = WorkflowId::generate();
    assert!(first < second);
}

#[test]
fn statuses_round_trip_through_text() {
    for status in RunStatus::ALL {
        assert_eq!(status.as_str().parse::<RunStatus>().unwrap(), status);
    }
    assert!("DONE".parse::<RunStatus>().is_err());
}

#[test]
fn versions_are_sha256_digests() {
    let empty = ModuleDigest::of(b"");
    assert_eq!(
        empty.as_str(),
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(empty.hex(), &empty.as_str()["sha256:".len()..]);
    assert_eq!(ModuleDigest::parse(empty.as_str()), Ok(empty.clone()));
}

#[test]
fn a_version_that_is_not_a_sha256_digest_is_refused() {
    let digits = ModuleDigest::of(b"").hex().to_owned();
    for bad in [
        String::new(),
        digits.clone(),
        format!("sha256:{}", &digits[1..]),
        format!("sha256:{digits}0"),
        format!("sha256:{}", digits.to_uppercase()),
        format!("sha512:{digits}"),
        "sha256:x".to_owned(),
    ] {
        let error = ModuleDigest::parse(&bad).unwrap_err();
        assert!(
            error.to_string().contains("64 lowercase hex digits"),
            "{bad:?}: {error}"
        );
    }
}
