//! `select!`, `select_unbiased!` and the dynamic `Select`: one winner, losers withdrawn,
//! closed channels ready, default and timeout, from coroutines and threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use kcoro::chan::{self, ChanError, Select};
use kcoro::sync::CancelToken;

const WATCHDOG: Duration = Duration::from_secs(30);

fn runtime() -> kcoro::Runtime {
    kcoro::Runtime::builder().workers(2).build().expect("runtime")
}

#[test]
fn biased_select_takes_the_first_ready_clause() {
    let (tx1, rx1) = chan::buffered::<u32>(1);
    let (tx2, rx2) = chan::buffered::<u32>(1);
    tx1.send(1).unwrap();
    tx2.send(2).unwrap();
    for _ in 0..100 {
        let got = kcoro::select! {
            recv(rx1) -> m => m.unwrap(),
            recv(rx2) -> m => m.unwrap(),
        };
        assert_eq!(got, 1);
        tx1.send(1).unwrap();
    }
}

#[test]
fn unbiased_select_picks_every_ready_clause() {
    let (tx1, rx1) = chan::buffered::<u32>(1);
    let (tx2, rx2) = chan::buffered::<u32>(1);
    let mut seen = [0u32; 2];
    for _ in 0..400 {
        // Refill whichever is empty so both are always ready.
        let _ = tx1.try_send(0);
        let _ = tx2.try_send(1);
        let i = kcoro::select_unbiased! {
            recv(rx1) -> m => m.unwrap(),
            recv(rx2) -> m => m.unwrap(),
        };
        seen[i as usize] += 1;
    }
    assert!(seen[0] > 0 && seen[1] > 0, "both clauses win sometimes: {seen:?}");
}

#[test]
fn default_runs_when_nothing_is_ready() {
    let (_tx, rx) = chan::rendezvous::<u32>();
    let (txf, _rxf) = chan::buffered::<u32>(1);
    txf.send(0).unwrap(); // full
    let r = kcoro::select! {
        recv(rx) -> _m => "recv",
        send(txf, 1) -> _r => "send",
        default => "default",
    };
    assert_eq!(r, "default");
    assert_eq!(txf.len(), 1, "the losing send left the channel untouched");
}

#[test]
fn timeout_fires_and_withdraws_every_clause() {
    let (tx, rx) = chan::rendezvous::<u32>();
    let r = kcoro::select! {
        recv(rx) -> _m => false,
        timeout(Duration::from_millis(5)) => true,
    };
    assert!(r);
    // The select's entry is gone: a try_send finds no waiting receiver.
    assert_eq!(tx.try_send(1).unwrap_err().kind(), ChanError::WouldBlock);
}

#[test]
fn closed_channel_makes_its_clause_ready() {
    let (tx, rx) = chan::rendezvous::<u32>();
    let (_tx2, rx2) = chan::rendezvous::<u32>();
    tx.close();
    let r = kcoro::select! {
        recv(rx2) -> _m => None,
        recv(rx) -> m => Some(m),
    };
    assert_eq!(r, Some(Err(ChanError::Closed)));
    let (tx3, rx3) = chan::buffered::<u32>(1);
    drop(rx3); // cancelled: sends fail
    let r = kcoro::select! { send(tx3, 9) -> r => r };
    let err = r.unwrap_err();
    assert!(err.is_closed());
    assert_eq!(err.into_inner(), 9, "the value comes back");
}

#[test]
fn parked_select_wakes_on_close() {
    let rt = runtime();
    let (tx, rx) = chan::rendezvous::<u32>();
    let (_tx2, rx2) = chan::rendezvous::<u32>();
    let (ready_tx, ready_rx) = chan::rendezvous::<()>();
    let h = rt.spawn(move || {
        ready_tx.send(()).unwrap();
        kcoro::select! {
            recv(rx) -> m => m,
            recv(rx2) -> _m => Ok(0),
        }
    });
    ready_rx.recv().unwrap();
    // Parked or about to be: either way nothing but the close can end the select.
    tx.close();
    let got = h.join_timeout(WATCHDOG).expect("select woke").expect("no panic");
    assert_eq!(got, Err(ChanError::Closed));
}

/// Many selecting receivers on two rendezvous channels, many senders: every value is
/// received exactly once, none is lost to a withdrawn clause.
fn exactly_once_through_selects(spawn: impl Fn(Box<dyn FnOnce() + Send>) -> Box<dyn FnOnce()>) {
    let per_sender = 2_000u64;
    let (tx_a, rx_a) = chan::rendezvous::<u64>();
    let (tx_b, rx_b) = chan::rendezvous::<u64>();
    let (tx_out, rx_out) = chan::unlimited::<u64>();
    let mut joins = Vec::new();
    for s in 0..4u64 {
        let tx = if s % 2 == 0 { tx_a.clone() } else { tx_b.clone() };
        joins.push(spawn(Box::new(move || {
            for i in 0..per_sender {
                tx.send(s * per_sender + i).unwrap();
            }
        })));
    }
    drop((tx_a, tx_b));
    for _ in 0..3 {
        let (rx_a, rx_b, out) = (rx_a.clone(), rx_b.clone(), tx_out.clone());
        joins.push(spawn(Box::new(move || {
            let (mut a_open, mut b_open) = (true, true);
            while a_open || b_open {
                let mut sel = Select::new();
                let ia = a_open.then(|| sel.recv(&rx_a));
                let ib = b_open.then(|| sel.recv(&rx_b));
                let op = sel.wait().unwrap();
                let (i, r) = if Some(op.index()) == ia {
                    (0, op.recv(&rx_a))
                } else {
                    assert_eq!(Some(op.index()), ib);
                    (1, op.recv(&rx_b))
                };
                match r {
                    Ok(v) => out.send(v).unwrap(),
                    Err(ChanError::Closed) if i == 0 => a_open = false,
                    Err(ChanError::Closed) => b_open = false,
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
        })));
    }
    drop((rx_a, rx_b, tx_out));
    for j in joins {
        j();
    }
    let mut got: Vec<u64> = rx_out.iter().collect();
    got.sort_unstable();
    assert_eq!(got, (0..4 * per_sender).collect::<Vec<_>>());
}

#[test]
fn select_exactly_once_coroutines() {
    let rt = runtime();
    let handle = rt.handle();
    exactly_once_through_selects(|f| {
        let h = handle.spawn(f);
        Box::new(move || h.join_timeout(WATCHDOG).expect("in time").expect("no panic"))
    });
}

#[test]
fn select_exactly_once_threads() {
    exactly_once_through_selects(|f| {
        let h = std::thread::spawn(f);
        Box::new(move || h.join().expect("no panic"))
    });
}

#[test]
fn select_send_and_recv_on_one_channel_never_matches_itself() {
    // Go's TestSelfSelect: a select with both a send and a receive on the same
    // rendezvous channel must pair with another party, not with itself.
    let rt = runtime();
    let (tx, rx) = chan::rendezvous::<u32>();
    let matched = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..2u32)
        .map(|p| {
            let (tx, rx, matched) = (tx.clone(), rx.clone(), Arc::clone(&matched));
            rt.spawn(move || {
                for i in 0..500u32 {
                    kcoro::select! {
                        send(tx, p * 1000 + i) -> r => r.unwrap(),
                        recv(rx) -> m => {
                            let v = m.unwrap();
                            assert_ne!(v / 1000, p, "a select received its own value");
                            matched.fetch_add(1, SeqCst);
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join_timeout(WATCHDOG).expect("in time").expect("no panic");
    }
    assert_eq!(matched.load(SeqCst), 500, "each pair is one send and one receive");
}

#[test]
fn dynamic_select_cancel_wins_over_timeout() {
    let token = CancelToken::new();
    token.cancel();
    let (_tx, rx) = chan::rendezvous::<u32>();
    let mut sel = Select::new();
    sel.recv(&rx);
    sel.timeout(Duration::ZERO).cancel_on(&token);
    assert_eq!(sel.wait().unwrap_err(), ChanError::Canceled);
}

#[test]
fn dynamic_select_cancel_wakes_a_parked_select() {
    let rt = runtime();
    let token = CancelToken::new();
    let (tx, rx) = chan::rendezvous::<u32>();
    let (ready_tx, ready_rx) = chan::rendezvous::<()>();
    let t2 = token.clone();
    let h = rt.spawn(move || {
        let mut sel = Select::new();
        sel.recv(&rx);
        sel.cancel_on(&t2);
        ready_tx.send(()).unwrap();
        sel.wait().map(|op| op.index())
    });
    ready_rx.recv().unwrap();
    // Whether or not the select has parked yet, no value is ever sent: only the token
    // can end it, and it must (the watchdog turns a missed wake into a failure).
    token.cancel();
    let r = h.join_timeout(WATCHDOG).expect("woke at once").expect("no panic");
    assert_eq!(r.unwrap_err(), ChanError::Canceled);
    assert_eq!(tx.snapshot().recvs, 0);
}

#[test]
fn select_reused_keeps_recv_clauses_armed_and_spends_sends() {
    let (tx, rx) = chan::buffered::<u32>(4);
    let (tx_out, rx_out) = chan::buffered::<u32>(4);
    let mut sel = Select::new();
    let irx = sel.recv(&rx);
    let isend = sel.send(&tx_out, 7);
    let op = sel.wait().unwrap();
    assert_eq!(op.index(), isend);
    op.send(&tx_out).unwrap();
    tx.send(1).unwrap();
    let op = sel.wait().unwrap();
    assert_eq!(op.index(), irx);
    assert_eq!(op.recv(&rx), Ok(1));
    assert_eq!(sel.try_wait().unwrap_err(), ChanError::WouldBlock, "the send clause is spent");
    assert_eq!(rx_out.try_recv(), Ok(7));
}

#[test]
#[should_panic(expected = "is not a recv on this channel")]
fn selected_operation_checks_the_channel() {
    let (tx, rx) = chan::buffered::<u32>(1);
    let (_tx2, rx2) = chan::buffered::<u32>(1);
    tx.send(1).unwrap();
    let mut sel = Select::new();
    sel.recv(&rx);
    let op = sel.wait().unwrap();
    let _ = op.recv(&rx2);
}

#[test]
fn contended_selects_on_both_sides_make_progress() {
    // Go's BenchmarkSelectSyncContended shape: selecting senders (three rendezvous
    // channels and a done channel) against selecting receivers; every receive completes.
    let rt = runtime();
    for _round in 0..20 {
        let chans = [chan::rendezvous::<u64>(), chan::rendezvous::<u64>(), chan::rendezvous::<u64>()];
        let txs: Vec<_> = chans.iter().map(|(tx, _)| tx.clone()).collect();
        let rxs: Vec<_> = chans.iter().map(|(_, rx)| rx.clone()).collect();
        let (done_tx, done_rx) = chan::rendezvous::<()>();
        let senders: Vec<_> = (0..2)
            .map(|_| {
                let (txs, done_rx) = (txs.clone(), done_rx.clone());
                rt.spawn(move || {
                    let mut sent = 0u64;
                    loop {
                        let more = kcoro::select! {
                            send(txs[0], 0) -> r => r.is_ok(),
                            send(txs[1], 1) -> r => r.is_ok(),
                            send(txs[2], 2) -> r => r.is_ok(),
                            recv(done_rx) -> _m => false,
                        };
                        if !more {
                            return sent;
                        }
                        sent += 1;
                    }
                })
            })
            .collect();
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let rxs = rxs.clone();
                rt.spawn(move || {
                    for _ in 0..2_000 {
                        kcoro::select! {
                            recv(rxs[0]) -> m => m.unwrap(),
                            recv(rxs[1]) -> m => m.unwrap(),
                            recv(rxs[2]) -> m => m.unwrap(),
                        };
                    }
                })
            })
            .collect();
        for r in receivers {
            r.join_timeout(WATCHDOG).expect("receivers finish").expect("no panic");
        }
        drop(done_tx);
        let sent: u64 = senders
            .into_iter()
            .map(|s| s.join_timeout(WATCHDOG).expect("senders see done").expect("no panic"))
            .sum();
        assert_eq!(sent, 4_000, "every completed send was received");
    }
}
