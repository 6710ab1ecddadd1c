//! `LocalServer`'s own lifetime: a server dies with the program that started it, even one
//! killed without running its destructors, and lives on when the thread that started it
//! ends.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use crate::common::{eventually, server, spawn_child, watchdog};
use kcoro_nats::server::find_binary;

/// A child process's work; run only by the test below (ignored otherwise): start a server,
/// say its pid, wait to be killed.
#[test]
#[ignore = "a child role, started by the test below"]
fn child() {
    let Some(srv) = server() else { return };
    println!("server pid {}", srv.pid().unwrap());
    std::thread::sleep(Duration::from_secs(60));
    drop(srv);
}

/// True while `pid` is a process that has not exited (a zombie has: only its parent, or
/// init, has not reaped it yet).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn a_server_dies_with_the_program_that_started_it() {
    if find_binary().is_none() {
        eprintln!("note: nats-server not found; skipping");
        return;
    }
    let _w = watchdog("server dies with its program", Duration::from_secs(30));
    let mut program = spawn_child("local_server::child", "serve", &[]);
    let mut line = String::new();
    let stdout = program.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout);
    while !line.starts_with("server pid ") {
        line.clear();
        assert!(lines.read_line(&mut line).unwrap() > 0, "the child ended before its server started");
    }
    let pid: u32 = line["server pid ".len()..].trim().parse().unwrap();
    assert!(running(pid), "the server runs while its program does");

    // SIGKILL: no destructor runs, so only the kernel can end the server.
    program.kill().unwrap();
    program.wait().unwrap();
    eventually("the server exits with its program", || !running(pid));
}

#[test]
fn a_server_outlives_the_thread_that_started_it() {
    let Some(srv) = std::thread::spawn(server).join().unwrap() else { return };
    let _w = watchdog("server outlives its thread", Duration::from_secs(30));
    let pid = srv.pid().unwrap();
    // A parent-death signal tied to the starting thread would have killed it by now; give
    // the kernel a moment to deliver one.
    std::thread::sleep(Duration::from_millis(200));
    assert!(running(pid), "the server died with the thread that started it");
    let nats = kcoro_nats::connect(&srv.url()).expect("the server still serves");
    nats.flush().unwrap();
}
