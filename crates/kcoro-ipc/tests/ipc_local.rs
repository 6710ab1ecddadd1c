//! Client and server in one process: the channel API over a real socket, for every kind.

use std::time::Duration;

use kcoro::chan::{self, ChanError, Kind};
use kcoro_ipc::{ConnectOptions, Connection, Server};

fn sock(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("kcoro-ipc-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("unix:{}", dir.join(name).display())
}

#[test]
fn send_and_recv_over_unix() {
    let (tx, rx) = chan::buffered::<Vec<u8>>(16);
    let addr = sock("basic.sock");
    let server = Server::bind(&addr).unwrap().serve_channel("jobs", tx.clone(), rx.clone()).start().unwrap();
    let conn = Connection::connect(&addr, ConnectOptions::new()).unwrap();
    let jobs = conn.sender::<Vec<u8>>("jobs").unwrap();
    for i in 0..100u8 {
        jobs.send(vec![i; 10]).unwrap();
    }
    for i in 0..100u8 {
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), vec![i; 10]);
    }
    let rjobs = conn.receiver::<Vec<u8>>("jobs").unwrap();
    tx.send(b"back".to_vec()).unwrap();
    assert_eq!(rjobs.recv().unwrap(), b"back");
    assert_eq!(rjobs.try_recv(), Err(ChanError::WouldBlock));
    assert_eq!(rjobs.recv_timeout(Duration::from_millis(20)), Err(ChanError::Timeout));
    let (mtx, mrx) = conn.make::<String>("made", Kind::Rendezvous, 0).unwrap();
    let h = std::thread::spawn(move || mrx.recv());
    mtx.send("hello".into()).unwrap();
    assert_eq!(h.join().unwrap().unwrap(), "hello");
    let names: Vec<_> = conn.list().unwrap().into_iter().filter_map(|s| s.name).collect();
    assert_eq!(names, ["jobs", "made"]);
    drop(server);
}
