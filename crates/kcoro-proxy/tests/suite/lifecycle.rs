//! Reloads and shutdowns: what changes for new connections, and that open ones go on.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use kcoro_proxy::Error;

use crate::common::{Backend, Client, Mode, PATIENCE, Running, config};

#[test]
fn a_reload_moves_new_connections_and_leaves_open_ones_where_they_are() {
    let (a, b) = (Backend::start(0, Mode::Echo), Backend::start(1, Mode::Echo));
    let p = Running::start(&config(&[a.addr], "", ""));
    let addr = p.addr();
    let mut open = Client::connect(addr);
    assert_eq!(open.greeting(), "B0");

    let report = p.reload(&config(&[b.addr], "", "")).expect("reload");
    assert_eq!((report.kept, report.added, report.removed), (vec!["l".to_string()], vec![], vec![]));
    assert_eq!(p.addr(), addr, "same socket");
    open.echo(b"still on A");
    assert_eq!(Client::connect(addr).greeting(), "B1");

    // A second listener comes and goes with the file.
    let two = format!(
        "{}\n[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:0\"\npool = \"p\"\n",
        config(&[b.addr], "", "")
    );
    let report = p.reload(&two).expect("reload with a second listener");
    assert_eq!(report.added, ["extra"]);
    let extra = p.proxy.local_addr("extra").expect("bound");
    let mut on_extra = Client::connect(extra);
    assert_eq!(on_extra.greeting(), "B1");
    let report = p.reload(&config(&[b.addr], "", "")).expect("reload without it");
    assert_eq!(report.removed, ["extra"]);
    assert!(TcpStream::connect(extra).is_err(), "its port is closed");
    on_extra.echo(b"its open connection goes on");
    open.echo(b"and so does the first");
}

#[test]
fn a_reload_that_cannot_bind_changes_nothing() {
    let (a, b) = (Backend::start(0, Mode::Echo), Backend::start(1, Mode::Echo));
    let p = Running::start(&config(&[a.addr], "", ""));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bad = format!(
        "{}\n[[listener]]\nname = \"clash\"\nbind = \"{}\"\npool = \"p\"\n",
        config(&[b.addr], "", ""),
        taken.local_addr().unwrap()
    );
    match p.reload(&bad) {
        Err(Error::Bind { name, .. }) => assert_eq!(name, "clash"),
        other => panic!("expected a bind error, got {other:?}"),
    }
    assert_eq!(p.proxy.listeners().len(), 1);
    assert_eq!(Client::connect(p.addr()).greeting(), "B0", "still the old pool");
}

#[test]
fn a_shutdown_stops_accepting_and_waits_for_open_connections() {
    let a = Backend::start(0, Mode::Echo);
    let p = Running::start(&config(&[a.addr], "", ""));
    let addr = p.addr();
    let mut open = Client::connect(addr);
    assert_eq!(open.greeting(), "B0");
    let proxy = p.proxy.clone();
    let handle = p.rt.handle();
    let shutdown = std::thread::spawn(move || handle.spawn(move || proxy.shutdown(PATIENCE)).join());
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).is_ok() {
        assert!(Instant::now() < deadline, "still accepting");
        std::thread::sleep(Duration::from_millis(5));
    }
    open.echo(b"served while draining");
    assert!(!shutdown.is_finished(), "waits for the open connection");
    drop(open);
    let report = shutdown.join().unwrap().expect("shutdown coroutine");
    // The probes above may have been accepted before the listener closed: at least ours.
    assert!(report.open_at_start >= 1, "{report:?}");
    assert_eq!(report.forced, 0);
}

#[test]
fn a_shutdown_closes_what_is_left_when_the_grace_runs_out() {
    let a = Backend::start(0, Mode::Echo);
    let p = Running::start(&config(&[a.addr], "", ""));
    let mut open = Client::connect(p.addr());
    assert_eq!(open.greeting(), "B0");
    let proxy = p.proxy.clone();
    let report = p.rt.block_on(move || proxy.shutdown(Duration::from_millis(100)));
    assert_eq!((report.open_at_start, report.forced), (1, 1));
    assert_eq!(open.read_to_end(), 0, "closed by the proxy");
    assert!(matches!(p.reload(&config(&[a.addr], "", "")), Err(Error::ShutDown)));
}
