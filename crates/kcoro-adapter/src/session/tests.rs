//! Behaviour of the session manager, each test on a deterministic runtime
//! (`kcoro::sim::run`), so a lost wake-up panics as a deadlock instead of hanging.

use super::*;

/// Yields up to 1000 times until `cond` holds; whether it did.
fn yield_until(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..1000 {
        if cond() {
            return true;
        }
        kcoro::yield_now();
    }
    cond()
}

/// Recognisable bytes for frame `seq` of stream `id`.
fn payload(id: u64, seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (id as usize * 31 + seq as usize * 7 + i) as u8).collect()
}

fn cfg(max_streams: usize, window: u64) -> SessionConfig {
    SessionConfig { max_streams, window }
}

fn sim<T: Send + 'static>(seed: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    kcoro::sim::run(seed, f).0
}

fn parked_now() -> u64 {
    kcoro::Handle::try_current().expect("inside a runtime").stats().parked
}

#[test]
fn backpressure_parks_the_producer() {
    for seed in 0..20 {
        sim(seed, move || {
            let (session, acceptor) = Session::new(cfg(4, 100)).unwrap();
            let c = session.open(0).unwrap();
            let mut s = acceptor.accept().unwrap();
            let probe = c.tx.wait_probe();
            let mut tx = c.tx;
            let producer = kcoro::spawn(move || {
                for seq in 1..=3 {
                    tx.send(seq, payload(1, seq, 60))?;
                }
                tx.finish()
            });

            // 60 bytes fit, the second 60 do not: the producer parks for credit.
            assert!(yield_until(|| probe.is_waiting()), "seed {seed}: producer never waited for credit");
            assert!(parked_now() >= 1, "seed {seed}: the waiting producer is not a parked coroutine");
            assert!(!producer.is_finished());
            let st = session.stats();
            assert_eq!(st.backpressure_events, 1);
            assert_eq!(st.data_frames, 1);
            assert_eq!(st.data_bytes, 60);

            // Returning 60 bytes lets frame 2 through; frame 3 parks again: a second event.
            assert_eq!(s.rx.recv(), Event::Data { seq: 1, bytes: payload(1, 1, 60) });
            assert!(yield_until(|| session.stats().data_frames == 2 && probe.is_waiting()));
            assert!(!producer.is_finished());
            assert_eq!(session.stats().backpressure_events, 2);

            for seq in 2..=3 {
                assert_eq!(s.rx.recv(), Event::Data { seq, bytes: payload(1, seq, 60) });
            }
            assert_eq!(s.rx.recv(), Event::Fin);
            assert_eq!(producer.join().unwrap(), Ok(()));
            assert!(!probe.is_waiting());

            let st = session.stats();
            assert_eq!(st.backpressure_events, 2);
            assert_eq!(st.window_violations, 0);
            assert_eq!((st.data_frames, st.data_bytes), (3, 180));
            drop(c.rx);
            drop(s);
            assert_eq!(session.stats().streams_closed, 1);
        });
    }
}

#[test]
fn no_backpressure_event_while_credit_suffices() {
    sim(1, || {
        let (session, acceptor) = Session::new(cfg(1, 100)).unwrap();
        let mut c = session.open(0).unwrap();
        let mut s = acceptor.accept().unwrap();
        for seq in 0..10 {
            // Read each frame before the next send: credit always comes back in time.
            c.tx.send(seq, payload(1, seq, 100)).unwrap();
            assert!(matches!(s.rx.recv(), Event::Data { seq: got, .. } if got == seq));
        }
        assert!(!c.tx.is_waiting_for_credit());
        let st = session.stats();
        assert_eq!(st.backpressure_events, 0);
        assert_eq!((st.data_frames, st.data_bytes, st.window_violations), (10, 1000, 0));
    });
}

/// Client side of one echo stream: a reader coroutine checks the echo while this one sends.
fn echo_client(session: &Session, frames: u64) -> StreamId {
    let c = session.open(0).unwrap();
    let id = c.id;
    let (mut tx, mut rx) = (c.tx, c.rx);
    let reader = kcoro::spawn(move || {
        for seq in 0..frames {
            let len = 1 + (seq as usize * 13) % 64;
            assert_eq!(rx.recv(), Event::Data { seq, bytes: payload(id, seq, len) }, "stream {id}");
        }
        assert_eq!(rx.recv(), Event::Fin, "stream {id}");
        assert!(rx.is_done());
    });
    for seq in 0..frames {
        let len = 1 + (seq as usize * 13) % 64;
        tx.send(seq, payload(id, seq, len)).unwrap();
    }
    tx.finish().unwrap();
    reader.join().unwrap();
    id
}

/// Server: one coroutine per accepted stream, echoing every frame, then `Fin` after `Fin`.
fn echo_server(acceptor: Acceptor) -> kcoro::JoinHandle<usize> {
    kcoro::spawn(move || {
        let mut workers = Vec::new();
        while let Some(mut s) = acceptor.accept() {
            workers.push(kcoro::spawn(move || {
                loop {
                    match s.rx.recv() {
                        Event::Data { seq, bytes } => s.tx.send(seq, bytes).unwrap(),
                        Event::Fin => break,
                        Event::Reset(code) => panic!("stream {} reset {code}", s.id),
                    }
                }
                s.tx.finish().unwrap();
            }));
        }
        let n = workers.len();
        workers.into_iter().for_each(|w| w.join().unwrap());
        n
    })
}

#[test]
fn echo_many_streams_concurrently() {
    const STREAMS: u64 = 8;
    const FRAMES: u64 = 20;
    for seed in 0..20 {
        sim(seed, move || {
            // A small window so both directions run into backpressure.
            let (session, acceptor) = Session::new(cfg(16, 96)).unwrap();
            let server = echo_server(acceptor);
            let clients: Vec<_> = (0..STREAMS)
                .map(|_| {
                    let session = session.clone();
                    kcoro::spawn(move || echo_client(&session, FRAMES))
                })
                .collect();
            let mut ids: Vec<_> = clients.into_iter().map(|h| h.join().unwrap()).collect();
            session.close();
            assert_eq!(server.join().unwrap(), STREAMS as usize);

            ids.sort_unstable();
            assert_eq!(ids, (0..STREAMS).map(|i| 2 * i + 1).collect::<Vec<_>>(), "odd ids, each once");
            let bytes_one_way: u64 = (0..FRAMES).map(|seq| 1 + (seq * 13) % 64).sum::<u64>() * STREAMS;
            let st = session.stats();
            assert_eq!(st.streams_opened, STREAMS);
            assert_eq!(st.streams_closed, STREAMS);
            assert!(st.peak_open >= 1 && st.peak_open <= STREAMS);
            assert_eq!(st.data_frames, 2 * STREAMS * FRAMES);
            assert_eq!(st.data_bytes, 2 * bytes_one_way);
            assert_eq!(st.window_violations, 0);
            assert_eq!(st.resets, 0);
            assert_eq!(st.slot_waits, 0);
        });
    }
}

#[test]
fn half_close_lets_the_server_still_answer() {
    for seed in 0..10 {
        sim(seed, move || {
            let (session, acceptor) = Session::new(SessionConfig::default()).unwrap();
            let server = kcoro::spawn(move || {
                let mut s = acceptor.accept().unwrap();
                let mut request = Vec::new();
                loop {
                    match s.rx.recv() {
                        Event::Data { bytes, .. } => request.extend(bytes),
                        Event::Fin => break,
                        other => panic!("unexpected {other:?}"),
                    }
                }
                assert!(s.rx.is_done());
                // The client's half is closed; this half is still open.
                request.reverse();
                s.tx.send(100, request).unwrap();
                s.tx.finish().unwrap();
            });
            let mut c = session.open(3).unwrap();
            assert_eq!(c.priority, 3);
            c.tx.send(1, b"abc".to_vec()).unwrap();
            c.tx.send(2, b"def".to_vec()).unwrap();
            c.tx.finish().unwrap();
            assert!(c.tx.is_finished());
            assert_eq!(c.tx.send(3, b"late".to_vec()), Err(StreamError::Finished));
            assert_eq!(c.tx.finish(), Err(StreamError::Finished));

            assert_eq!(c.rx.recv(), Event::Data { seq: 100, bytes: b"fedcba".to_vec() });
            assert_eq!(c.rx.recv(), Event::Fin);
            server.join().unwrap();
            let st = session.stats();
            assert_eq!((st.streams_opened, st.streams_closed), (1, 1));
            assert_eq!((st.data_frames, st.data_bytes), (3, 12));
        });
    }
}

#[test]
fn reset_delivers_earlier_data_then_the_code() {
    sim(2, || {
        let (session, acceptor) = Session::new(SessionConfig::default()).unwrap();
        let mut c = session.open(0).unwrap();
        let mut s = acceptor.accept().unwrap();
        c.tx.send(1, b"one".to_vec()).unwrap();
        c.tx.send(2, b"two".to_vec()).unwrap();
        c.tx.reset(42).unwrap();
        assert_eq!(c.tx.send(3, b"three".to_vec()), Err(StreamError::Finished));
        assert_eq!(c.tx.reset(43), Err(StreamError::Finished));
        assert_eq!(c.tx.finish(), Err(StreamError::Finished));

        assert_eq!(s.rx.recv(), Event::Data { seq: 1, bytes: b"one".to_vec() });
        assert_eq!(s.rx.recv(), Event::Data { seq: 2, bytes: b"two".to_vec() });
        assert_eq!(s.rx.recv(), Event::Reset(42));
        assert!(s.rx.is_done());
        // The half stays done and repeats its terminal event: no further data, no second close.
        assert_eq!(s.rx.recv(), Event::Reset(42));
        assert_eq!(session.stats().resets, 1);
        assert_eq!(session.stats().streams_closed, 0, "the other half is still open");

        s.tx.finish().unwrap();
        assert_eq!(c.rx.recv(), Event::Fin);
        let st = session.stats();
        assert_eq!((st.streams_closed, st.resets, st.data_frames), (1, 1, 2));
    });
}

#[test]
fn stop_wakes_a_sender_parked_for_credit() {
    for seed in 0..20 {
        sim(seed, move || {
            let (session, acceptor) = Session::new(cfg(1, 100)).unwrap();
            let c = session.open(0).unwrap();
            let mut s = acceptor.accept().unwrap();
            let probe = c.tx.wait_probe();
            let mut tx = c.tx;
            let producer = kcoro::spawn(move || {
                tx.send(1, vec![1; 60]).unwrap();
                let parked = tx.send(2, vec![2; 60]);
                let after = tx.send(3, vec![3; 1]);
                (parked, after, tx.is_finished())
            });
            assert!(yield_until(|| probe.is_waiting()), "seed {seed}");
            assert!(!producer.is_finished());

            s.rx.stop(7);
            assert!(s.rx.is_done());
            let (parked, after, finished) = producer.join().unwrap();
            assert_eq!(parked, Err(StreamError::Reset(7)));
            assert_eq!(after, Err(StreamError::Finished), "a failed half stays failed");
            assert!(finished);

            let st = session.stats();
            assert_eq!((st.data_frames, st.data_bytes), (1, 60), "failed sends are not counted");
            assert_eq!(st.backpressure_events, 1);
            // Stopping again is a no-op; the stream closes when the other half is done.
            s.rx.stop(8);
            assert_eq!(session.stats().streams_closed, 0);
            s.tx.finish().unwrap();
            let mut rx = c.rx;
            assert_eq!(rx.recv(), Event::Fin);
            assert_eq!(session.stats().streams_closed, 1);
        });
    }
}

#[test]
fn stop_before_send_fails_the_next_send() {
    sim(3, || {
        let (session, acceptor) = Session::new(cfg(1, 100)).unwrap();
        let mut c = session.open(0).unwrap();
        let mut s = acceptor.accept().unwrap();
        s.rx.stop(11);
        // Credit is on hand, but the stop is seen first.
        assert_eq!(c.tx.send(1, vec![0; 10]), Err(StreamError::Reset(11)));
        assert_eq!(session.stats().data_frames, 0);
    });
}

#[test]
fn frame_larger_than_the_window_is_too_large() {
    sim(4, || {
        let (session, acceptor) = Session::new(cfg(1, 100)).unwrap();
        let mut c = session.open(0).unwrap();
        let mut s = acceptor.accept().unwrap();
        assert_eq!(c.tx.send(1, vec![0; 101]), Err(StreamError::TooLarge { len: 101, window: 100 }));
        // Refused before anything moved: the half is still usable, a full-window frame fits.
        assert!(!c.tx.is_finished());
        c.tx.send(2, vec![9; 100]).unwrap();
        assert_eq!(s.rx.recv(), Event::Data { seq: 2, bytes: vec![9; 100] });
        let st = session.stats();
        assert_eq!((st.data_frames, st.data_bytes, st.backpressure_events), (1, 100, 0));
    });
}

#[test]
fn open_parks_for_a_slot_until_a_stream_closes() {
    for seed in 0..20 {
        sim(seed, move || {
            let (session, acceptor) = Session::new(cfg(2, 1024)).unwrap();
            let mut a = session.open(0).unwrap();
            let b = session.open(0).unwrap();
            let mut sa = acceptor.accept().unwrap();
            let sb = acceptor.accept().unwrap();
            assert_eq!((a.id, b.id), (1, 3));

            let opener = {
                let session = session.clone();
                kcoro::spawn(move || session.open(0).map(|s| s.id))
            };
            assert!(yield_until(|| session.stats().slot_waits == 1), "seed {seed}");
            // However long it is given, the third open stays parked while two are open.
            for _ in 0..50 {
                kcoro::yield_now();
            }
            assert!(!opener.is_finished(), "seed {seed}: a third stream opened past max_streams");
            assert!(parked_now() >= 1);
            assert_eq!(session.stats().streams_opened, 2);

            // Close stream a cleanly in both directions.
            a.tx.finish().unwrap();
            assert_eq!(sa.rx.recv(), Event::Fin);
            sa.tx.finish().unwrap();
            assert_eq!(a.rx.recv(), Event::Fin);
            assert_eq!(session.stats().streams_closed, 1);

            assert_eq!(opener.join().unwrap().unwrap(), 5);
            let c3 = acceptor.accept().unwrap();
            assert_eq!(c3.id, 5);
            let st = session.stats();
            assert_eq!((st.streams_opened, st.streams_closed), (3, 1));
            assert_eq!(st.peak_open, 2);
            assert_eq!(st.slot_waits, 1);
            drop((b, sb, c3));
            assert_eq!(session.stats().streams_closed, 3);
        });
    }
}

#[test]
fn dropped_receiver_resets_the_sender_and_closes_once() {
    for seed in 0..10 {
        sim(seed, move || {
            let (session, acceptor) = Session::new(cfg(4, 100)).unwrap();
            let c = session.open(0).unwrap();
            let s = acceptor.accept().unwrap();
            let (mut ctx, mut crx) = (c.tx, c.rx);
            let probe = ctx.wait_probe();
            let producer = kcoro::spawn(move || {
                let mut sent = 0u64;
                for seq in 0.. {
                    match ctx.send(seq, vec![0; 40]) {
                        Ok(()) => sent += 1,
                        Err(e) => return (sent, e),
                    }
                }
                unreachable!()
            });
            assert!(yield_until(|| probe.is_waiting()), "seed {seed}");

            // The server drops its receiving half unread (and its sending half unfinished).
            let (stx, srx) = (s.tx, s.rx);
            drop(srx);
            let (sent, err) = producer.join().unwrap();
            assert_eq!(err, StreamError::Reset(RESET_SENDER_GONE));
            assert_eq!(sent, 2, "100-byte window holds two 40-byte frames");
            assert_eq!(session.stats().streams_closed, 0);

            drop(stx);
            assert_eq!(crx.recv(), Event::Reset(RESET_SENDER_GONE), "sender vanished without Fin");
            assert_eq!(session.stats().streams_closed, 1);
            crx.stop(5);
            drop(crx);
            let st = session.stats();
            assert_eq!((st.streams_opened, st.streams_closed), (1, 1), "closed once, not twice");
            assert_eq!(st.data_frames, 2);
        });
    }
}

#[test]
fn dropping_both_ends_closes_once_and_frees_the_slot() {
    sim(5, || {
        let (session, acceptor) = Session::new(cfg(1, 100)).unwrap();
        for round in 0..3u64 {
            let mut c = session.open(0).unwrap();
            c.tx.send(1, vec![1; 10]).unwrap();
            let s = acceptor.accept().unwrap();
            drop(s);
            drop(c);
            let st = session.stats();
            assert_eq!((st.streams_opened, st.streams_closed), (round + 1, round + 1));
        }
        // One slot, reused three times without waiting.
        assert_eq!(session.stats().slot_waits, 0);
        assert_eq!(session.stats().peak_open, 1);
    });
}

#[test]
fn accept_ends_after_close() {
    sim(6, || {
        let (session, acceptor) = Session::new(SessionConfig::default()).unwrap();
        let c = session.open(0).unwrap();
        session.close();
        // Streams opened before the close are still delivered, then `None`.
        assert_eq!(acceptor.accept().map(|s| s.id), Some(c.id));
        assert!(acceptor.accept().is_none());
        assert!(matches!(session.open(0), Err(AdapterError::Stream { .. })));
    });
}

#[test]
fn refused_open_is_not_counted_and_returns_its_slot() {
    sim(7, || {
        let (session, acceptor) = Session::new(cfg(1, 100)).unwrap();
        drop(acceptor);
        for _ in 0..3 {
            // With one slot, a leaked slot would park the second open forever (a deadlock).
            assert!(matches!(session.open(0), Err(AdapterError::Stream { .. })));
        }
        let st = session.stats();
        assert_eq!((st.streams_opened, st.streams_closed, st.slot_waits), (0, 0, 0));
    });
}

#[test]
fn the_tag_reaches_the_acceptor() {
    sim(8, || {
        let (session, acceptor) = Session::new(SessionConfig::default()).unwrap();
        let c = session.open_with(2, "route/a").unwrap();
        let s = acceptor.accept().unwrap();
        assert_eq!((c.id, c.priority, c.tag.as_str()), (s.id, s.priority, s.tag.as_str()));
        assert_eq!(s.tag, "route/a");
        assert_eq!(session.open(0).unwrap().tag, "");
    });
}

#[test]
fn config_is_validated() {
    let bad = |c: SessionConfig| matches!(Session::new(c), Err(AdapterError::InvalidConfig(_)));
    assert!(bad(cfg(0, 1024)));
    assert!(bad(cfg(MAX_STREAMS + 1, 1024)));
    assert!(bad(cfg(4, 0)));
    assert!(bad(cfg(4, MAX_WINDOW + 1)));
    assert!(Session::new(cfg(1, 1)).is_ok());
    assert!(Session::new(cfg(MAX_STREAMS, MAX_WINDOW)).is_ok());
    let (session, _acceptor) = Session::new(SessionConfig::default()).unwrap();
    assert_eq!(session.config(), &SessionConfig::default());
    assert_eq!(session.stats(), SessionStats::default());
}

#[test]
fn stats_count_each_frame_once() {
    for seed in 0..10 {
        sim(seed, move || {
            let (session, acceptor) = Session::new(cfg(4, 64)).unwrap();
            let mut c = session.open(0).unwrap();
            let mut s = acceptor.accept().unwrap();
            let sizes = [0usize, 1, 63, 64, 17, 0, 40];
            let consumer = kcoro::spawn(move || {
                let mut got = Vec::new();
                while let Event::Data { bytes, .. } = s.rx.recv() {
                    got.push(bytes.len());
                }
                s.tx.send(0, vec![5; 9]).unwrap();
                s.tx.finish().unwrap();
                got
            });
            for (seq, &n) in sizes.iter().enumerate() {
                c.tx.send(seq as u64, vec![0; n]).unwrap();
            }
            // Refused sends do not count.
            assert!(c.tx.send(99, vec![0; 65]).is_err());
            c.tx.finish().unwrap();
            assert!(c.tx.send(100, vec![0; 1]).is_err());
            assert_eq!(consumer.join().unwrap(), sizes);
            assert_eq!(c.rx.recv(), Event::Data { seq: 0, bytes: vec![5; 9] });
            assert_eq!(c.rx.recv(), Event::Fin);

            let st = session.stats();
            assert_eq!(st.data_frames, sizes.len() as u64 + 1);
            assert_eq!(st.data_bytes, sizes.iter().sum::<usize>() as u64 + 9);
            assert_eq!((st.window_violations, st.resets), (0, 0));
            assert_eq!((st.streams_opened, st.streams_closed), (1, 1));
        });
    }
}

#[test]
fn both_ends_know_the_worker_the_stream_was_opened_from() {
    let rt = kcoro::Runtime::builder().workers(2).build().unwrap();
    let (session, acceptor) = Session::new(cfg(4, 100)).unwrap();
    for worker in [1, 0, 1] {
        let session = session.clone();
        let open = kcoro::SpawnOptions::new().on_worker(worker);
        let c = rt
            .block_on(move || kcoro::spawn_with(open, move || session.open(0)).unwrap().join().unwrap())
            .unwrap();
        let s = acceptor.accept().unwrap();
        assert_eq!((c.id, c.opened_on, s.opened_on), (s.id, Some(worker), Some(worker)));
        // The server party placed by it starts beside the client.
        let beside = kcoro::SpawnOptions::new().on_worker(s.opened_on.unwrap());
        let ran_on =
            rt.block_on(move || kcoro::spawn_with(beside, kcoro::worker_index).unwrap().join().unwrap());
        assert_eq!(ran_on, Some(worker));
    }
    // Off the workers there is no worker to name.
    assert_eq!(session.open(0).unwrap().opened_on, None);
}

#[test]
fn data_counters_are_exact_with_senders_on_every_worker_and_off_them() {
    let rt = kcoro::Runtime::builder().workers(3).build().unwrap();
    let (session, acceptor) = Session::new(cfg(8, 1 << 20)).unwrap();
    let drain = rt.spawn(move || {
        let mut parties = Vec::new();
        while let Some(mut s) = acceptor.accept() {
            parties.push(kcoro::spawn(move || while let Event::Data { .. } = s.rx.recv() {}));
        }
        parties.into_iter().for_each(|p| p.join().unwrap());
    });
    let send = |session: &Session, frames: u64| {
        let mut c = session.open(0).unwrap();
        for seq in 0..frames {
            c.tx.send(seq, vec![1; seq as usize % 7]).unwrap();
        }
        c.tx.finish().unwrap();
    };
    let senders: Vec<_> = (0..3)
        .map(|w| {
            let session = session.clone();
            rt.handle()
                .spawn_with(kcoro::SpawnOptions::new().on_worker(w), move || send(&session, 100 + w as u64))
                .unwrap()
        })
        .collect();
    send(&session, 50); // from this thread, off the workers
    senders.into_iter().for_each(|s| rt.block_on(move || s.join().unwrap()));
    session.close();
    rt.block_on(move || drain.join().unwrap());
    let bytes = |frames: u64| (0..frames).map(|seq| seq % 7).sum::<u64>();
    let st = session.stats();
    assert_eq!(st.data_frames, 100 + 101 + 102 + 50);
    assert_eq!(st.data_bytes, bytes(100) + bytes(101) + bytes(102) + bytes(50));
}
