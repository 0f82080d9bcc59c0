//! Passive ejection and address checks of one server, on unit-test servers.

use super::*;

fn passive(max_failures: u32, cooldown_ms: u64) -> PassiveConfig {
    PassiveConfig { max_failures, cooldown: Duration::from_millis(cooldown_ms) }
}

#[test]
fn ejected_after_max_failures_then_back_after_cooldown() {
    let s = test_server("127.0.0.1:1", 1, passive(3, 50));
    assert!(!s.record_failure("reset"));
    assert!(!s.record_failure("reset"));
    assert!(s.is_available());
    assert!(s.record_failure("reset"));
    assert!(!s.is_available());
    assert_eq!(s.state(), State::Ejected);
    // More failures from requests already under way change nothing.
    assert!(!s.record_failure("reset"));
    std::thread::sleep(Duration::from_millis(60));
    assert!(s.is_available(), "cooldown over");
    // Probation: the first failure ejects again at once.
    assert!(s.record_failure("reset"));
    assert!(!s.is_available());
    assert_eq!(s.live.ejections_total.load(Ordering::Relaxed), 2);
    std::thread::sleep(Duration::from_millis(60));
    s.record_success();
    // Readmitted for good: it takes max_failures again to eject.
    assert!(!s.record_failure("reset"));
    assert!(!s.record_failure("reset"));
    assert!(s.is_available());
}

#[test]
fn success_resets_the_count() {
    let s = test_server("127.0.0.1:1", 1, passive(2, 10_000));
    assert!(!s.record_failure("reset"));
    s.record_success();
    assert!(!s.record_failure("reset"));
    assert!(s.is_available());
}

#[test]
fn success_inside_the_cooldown_does_not_readmit() {
    let s = test_server("127.0.0.1:1", 1, passive(1, 10_000));
    assert!(s.record_failure("reset"));
    s.record_success();
    assert!(!s.is_available());
}

#[test]
fn active_recovery_ends_passive_ejection() {
    let s = test_server("127.0.0.1:1", 1, passive(1, 10_000));
    assert!(s.set_healthy(false));
    assert!(s.record_failure("reset"));
    assert_eq!(s.state(), State::Unhealthy);
    assert!(s.set_healthy(true));
    assert!(s.is_available());
    assert!(!s.set_healthy(true), "no change, nothing to log");
}

#[test]
fn passive_off_never_ejects() {
    let s = test_server("127.0.0.1:1", 1, passive(0, 0));
    for _ in 0..100 {
        assert!(!s.record_failure("reset"));
    }
    assert!(s.is_available());
}

#[test]
fn ip_literals_need_no_resolution() {
    assert!(!test_server("127.0.0.1:80", 1, passive(3, 1)).needs_resolution());
    assert_eq!(*test_server("127.0.0.1:80", 1, passive(3, 1)).addrs(), ["127.0.0.1:80".parse().unwrap()]);
    let named = test_server("localhost:80", 1, passive(3, 1));
    assert!(named.needs_resolution());
    assert!(named.addrs().is_empty());
}
