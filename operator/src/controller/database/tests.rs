use super::*;

fn t(s: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + s).unwrap()
}

fn ok() -> Outcome {
    Outcome::Connected {
        probed: Probed {
            server_version: "PostgreSQL 15".into(),
            latency: Duration::from_millis(7),
            ssl_mode: None,
        },
        readonly: None,
        credentials_version: Some("41".into()),
    }
}

fn down() -> Outcome {
    Outcome::Failed {
        reason: "Unreachable",
        message: "server unreachable: refused".into(),
        permanent: false,
        credentials_ok: true,
        readonly: None,
    }
}

fn bad_password() -> Outcome {
    Outcome::Failed {
        reason: "AuthenticationFailed",
        message: "authentication failed".into(),
        permanent: true,
        credentials_ok: true,
        readonly: None,
    }
}

#[test]
fn first_success_is_connected_with_version_and_ready_condition() {
    let s = next_status(&DatabaseStatus::default(), &ok(), Some(1), t(0));
    assert_eq!(s.phase, Some(DatabasePhase::Connected));
    assert_eq!(s.server_version.as_deref(), Some("PostgreSQL 15"));
    assert_eq!(s.latency_ms, Some(7));
    assert_eq!(s.observed_generation, Some(1));
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Connected")
    );
}

#[test]
fn transient_failure_never_connected_stays_pending_with_the_reason() {
    let mut s = next_status(&DatabaseStatus::default(), &down(), Some(1), t(0));
    for i in 1..20 {
        s = next_status(&s, &down(), Some(1), t(i * 10));
    }
    assert_eq!(s.phase, Some(DatabasePhase::Pending));
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "Unreachable")
    );
}

#[test]
fn transient_failure_after_success_degrades_and_stays_degraded() {
    let up = next_status(&DatabaseStatus::default(), &ok(), Some(1), t(0));
    let d1 = next_status(&up, &down(), Some(1), t(10));
    assert_eq!(d1.phase, Some(DatabasePhase::Degraded));
    assert_eq!(d1.latency_ms, None);
    assert_eq!(
        d1.server_version.as_deref(),
        Some("PostgreSQL 15"),
        "last known version kept"
    );
    let d2 = next_status(&d1, &down(), Some(1), t(20));
    assert_eq!(d2.phase, Some(DatabasePhase::Degraded));
    let mut d = d2;
    for i in 3..50 {
        d = next_status(&d, &down(), Some(1), t(i * 10));
        assert_eq!(
            d.phase,
            Some(DatabasePhase::Degraded),
            "never Failed for a passing cause"
        );
    }
    assert_eq!(d.credentials_version, None);
    let back = next_status(&d, &ok(), Some(1), t(600));
    assert_eq!(back.phase, Some(DatabasePhase::Connected));
    assert_eq!(back.credentials_version.as_deref(), Some("41"));
}

#[test]
fn permanent_failure_after_success_is_failed_at_once() {
    let up = next_status(&DatabaseStatus::default(), &ok(), Some(1), t(0));
    assert_eq!(
        next_status(&up, &bad_password(), Some(1), t(5)).phase,
        Some(DatabasePhase::Failed)
    );
}

#[test]
fn unchanged_check_within_half_interval_writes_nothing() {
    let interval = Duration::from_secs(300);
    let s0 = next_status(&DatabaseStatus::default(), &ok(), Some(1), t(0));
    let s1 = next_status(&s0, &ok(), Some(1), t(60));
    assert!(
        !needs_write(&s0, &s1, interval, t(60)),
        "only lastChecked/latency differ"
    );
    assert!(
        needs_write(&s0, &s1, interval, t(150)),
        "half the interval elapsed"
    );
    let failed = next_status(&s0, &bad_password(), Some(1), t(61));
    assert!(needs_write(&s0, &failed, interval, t(61)), "phase changed");
    let new_gen = next_status(&s0, &ok(), Some(2), t(62));
    assert!(
        needs_write(&s0, &new_gen, interval, t(62)),
        "observedGeneration changed"
    );
}

#[test]
fn requeue_backs_off_while_failing_and_jitters_when_healthy() {
    let interval = Duration::from_secs(300);
    assert_eq!(
        next_check(DatabasePhase::Degraded, 1, &down(), interval, "a"),
        Duration::from_secs(5)
    );
    assert_eq!(
        next_check(DatabasePhase::Degraded, 3, &down(), interval, "a"),
        Duration::from_secs(20)
    );
    assert_eq!(
        next_check(DatabasePhase::Failed, 30, &down(), interval, "a"),
        interval
    );
    for _ in 0..50 {
        let d = next_check(DatabasePhase::Connected, 0, &ok(), interval, "a");
        assert!(
            d >= Duration::from_secs(270) && d <= Duration::from_secs(330),
            "{d:?}"
        );
    }
    let perm = next_check(DatabasePhase::Failed, 1, &bad_password(), interval, "a");
    assert!(perm >= Duration::from_secs(270), "{perm:?}");
}

#[test]
fn a_read_only_login_is_reported_in_its_own_condition() {
    let both = Outcome::Connected {
        probed: Probed {
            server_version: "PostgreSQL 15".into(),
            latency: Duration::from_millis(7),
            ssl_mode: None,
        },
        readonly: Some(true),
        credentials_version: None,
    };
    let s = next_status(&DatabaseStatus::default(), &both, Some(1), t(0));
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "ReadOnlyLogin")
        .unwrap();
    assert_eq!(c.status, "True");
    let failed = Outcome::Failed {
        reason: "AuthenticationFailed",
        message: "the read-only login: authentication failed".into(),
        permanent: true,
        credentials_ok: true,
        readonly: Some(false),
    };
    let s = next_status(&s, &failed, Some(1), t(1));
    assert_eq!(s.phase, Some(DatabasePhase::Failed));
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "ReadOnlyLogin")
        .unwrap();
    assert_eq!(c.status, "False");
    let s = next_status(&s, &ok(), Some(2), t(2));
    assert!(
        s.conditions.iter().all(|c| c.type_ != "ReadOnlyLogin"),
        "gone once not configured"
    );
}

#[test]
fn phase_after_failure_is_failed_only_for_causes_a_user_must_fix() {
    use DatabasePhase::*;
    for was in [
        None,
        Some(Pending),
        Some(Connected),
        Some(Degraded),
        Some(Failed),
    ] {
        assert_eq!(phase_after_failure(true, was), Failed, "{was:?}");
    }
    assert_eq!(phase_after_failure(false, Some(Connected)), Degraded);
    assert_eq!(phase_after_failure(false, Some(Degraded)), Degraded);
    for was in [None, Some(Pending), Some(Failed)] {
        assert_eq!(phase_after_failure(false, was), Pending, "{was:?}");
    }
}
