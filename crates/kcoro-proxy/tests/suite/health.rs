//! Active health checks take a backend out and put it back.

use kcoro_proxy::ErrorKind;

use crate::common::{Backend, Client, Mode, Running, config};

// The checks here fail by a refused connect or a wrong answer, both immediate; the long
// timeout only keeps a busy machine's stall from failing a healthy backend's check.
const FAST: &str = "[pool.health]\ninterval = \"50ms\"\ntimeout = \"10s\"\nrise = 2\nfall = 2";

#[test]
fn a_dead_backend_is_taken_out_and_put_back_when_it_returns() {
    let a = Backend::start(0, Mode::Echo);
    let b = Backend::start(1, Mode::Echo);
    let b_addr = b.addr;
    let p = Running::start(&config(&[a.addr, b.addr], "", FAST));
    drop(b);
    let s = p.wait_for("B out", |s| !s.pool("p").unwrap().backends[1].up);
    assert!(s.pool("p").unwrap().backends[1].checks_failed >= 2);
    for _ in 0..4 {
        assert_eq!(Client::connect(p.addr()).greeting(), "B0", "only the live backend gets connections");
    }
    let s = p.stats();
    assert_eq!(s.listener("l").unwrap().errors.get(ErrorKind::ConnectRefused), 0, "no connect tried on B");

    let _b = Backend::restart(b_addr, 1, Mode::Echo);
    let s = p.wait_for("B back", |s| s.pool("p").unwrap().backends[1].up);
    assert_eq!(s.pool("p").unwrap().backends[1].downs, 1);
    let seen: Vec<_> = (0..4).map(|_| Client::connect(p.addr()).greeting()).collect();
    assert!(seen.contains(&"B1".to_string()), "B takes connections again: {seen:?}");
}

#[test]
fn a_send_expect_check_fails_a_backend_that_answers_wrong() {
    let right = Backend::start(0, Mode::Answer("PONG\r\n"));
    let wrong = Backend::start(1, Mode::Answer("NOPE\r\n"));
    let check = format!("{FAST}\nsend = \"PING\\r\\n\"\nexpect = \"PONG\"");
    let p = Running::start(&config(&[right.addr, wrong.addr], "", &check));
    let s = p.wait_for("the wrong one out", |s| !s.pool("p").unwrap().backends[1].up);
    assert!(s.pool("p").unwrap().backends[0].up, "{s:?}");
    let s = p.wait_for("a few more checks", |s| s.pool("p").unwrap().backends[1].checks_failed >= 4);
    assert!(
        s.pool("p").unwrap().backends[0].up && s.pool("p").unwrap().backends[0].checks_failed == 0,
        "{s:?}"
    );
    let mut c = Client::connect(p.addr());
    use std::io::Write;
    c.reader.get_mut().write_all(b"hello!").unwrap();
    assert_eq!(c.greeting(), "B0");
}
