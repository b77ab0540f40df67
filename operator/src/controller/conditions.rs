//! Kubernetes-convention conditions: set one by type, keeping `lastTransitionTime` when its
//! status did not change.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// Sets (or adds) the condition `type_`. Returns nothing; compare whole statuses to see changes.
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if ok { "True" } else { "False" };
    let fresh = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => {
            c.reason = fresh.reason;
            c.message = fresh.message;
            c.observed_generation = fresh.observed_generation;
        }
        Some(c) => *c = fresh,
        None => conditions.push(fresh),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Timestamp::from_second(1_000).unwrap();
        let t1 = Timestamp::from_second(2_000).unwrap();
        let mut c = Vec::new();
        set(&mut c, "Ready", true, "Connected", "ok", Some(1), t0);
        set(&mut c, "Ready", true, "Connected", "still ok", Some(2), t1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].last_transition_time, Time(t0));
        assert_eq!(
            (c[0].message.as_str(), c[0].observed_generation),
            ("still ok", Some(2))
        );
        set(&mut c, "Ready", false, "Unreachable", "down", Some(2), t1);
        assert_eq!(c[0].last_transition_time, Time(t1));
        assert_eq!(c[0].status, "False");
    }
}
