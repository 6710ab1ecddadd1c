//! Which backend a connection reaches, and the counts the proxy keeps of it.

use crate::common::{Backend, Client, Mode, Running, config};

#[test]
fn round_robin_takes_each_backend_in_turn_and_counts_every_byte() {
    let backends: Vec<_> = (0..3).map(|i| Backend::start(i, Mode::Echo)).collect();
    let addrs: Vec<_> = backends.iter().map(|b| b.addr).collect();
    let p = Running::start(&config(&addrs, "", "balance = \"round-robin\""));
    let mut seen = Vec::new();
    for i in 0..6u8 {
        let mut c = Client::connect(p.addr());
        seen.push(c.greeting());
        c.echo(&[i; 100]);
    }
    assert_eq!(seen, ["B0", "B1", "B2", "B0", "B1", "B2"]);
    let s = p.wait_for("six closed", |s| s.listener("l").is_some_and(|l| l.closed == 6));
    let l = s.listener("l").unwrap();
    assert_eq!((l.accepted, l.active, l.errors.total()), (6, 0, 0), "{l:?}");
    assert_eq!(l.bytes_in, 600, "what clients sent");
    assert_eq!(l.bytes_out, 600 + 6 * 3, "echoes and greetings");
    let pool = s.pool("p").unwrap();
    assert!(pool.backends.iter().all(|b| b.connections == 2 && b.active == 0 && b.up), "{pool:?}");
}

#[test]
fn least_connections_sends_a_new_connection_to_the_emptiest_backend() {
    let (a, b) = (Backend::start(0, Mode::Echo), Backend::start(1, Mode::Echo));
    let p = Running::start(&config(&[a.addr, b.addr], "", "balance = \"least-connections\""));
    let mut held = Client::connect(p.addr());
    let first = held.greeting();
    // Round-robin would send the next two to the other backend and then back to `first`;
    // with one held open, least-connections sends both to the other one.
    for _ in 0..2 {
        let mut c = Client::connect(p.addr());
        assert_ne!(c.greeting(), first);
        drop(c);
        p.wait_for("the short connection gone", |s| {
            s.pool("p").unwrap().backends.iter().map(|b| b.active).sum::<u64>() == 1
        });
    }
    held.echo(b"still here");
}
