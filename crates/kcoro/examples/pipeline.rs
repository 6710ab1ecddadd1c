//! A three-stage channel pipeline: a producer, a pool of workers, a collector that selects
//! over results and a control channel, with a timeout that fires when the work runs dry.
//!
//! ```sh
//! cargo run --release -p kcoro --example pipeline
//! ```

use std::time::Duration;

use kcoro::chan::{self, ChanError, Rate};

const JOBS: u64 = 100_000;
const WORKERS: usize = 4;

fn main() {
    kcoro::run(|| {
        let (jobs_tx, jobs_rx) = chan::buffered::<u64>(256);
        let (results_tx, results_rx) = chan::buffered::<u64>(256);
        let (stop_tx, stop_rx) = chan::rendezvous::<&'static str>();

        drop(kcoro::spawn(move || {
            for n in 1..=JOBS {
                jobs_tx.send(n).unwrap(); // parks while the buffer is full
            }
        })); // last sender dropped: the channel closes, workers drain it and stop
        for _ in 0..WORKERS {
            let (rx, tx) = (jobs_rx.clone(), results_tx.clone());
            drop(kcoro::spawn(move || {
                for n in &rx {
                    tx.send(n * n).unwrap();
                }
            }));
        }
        drop(results_tx);

        let before = results_rx.snapshot();
        let (mut sum, mut count) = (0u64, 0u64);
        loop {
            kcoro::select! {
                recv(results_rx) -> r => match r {
                    Ok(sq) => {
                        sum += sq;
                        count += 1;
                        if count == JOBS / 2 {
                            // Ask ourselves to report halfway, through the other clause.
                            let tx = stop_tx.clone();
                            drop(kcoro::spawn(move || tx.send("halfway").unwrap()));
                        }
                    }
                    Err(ChanError::Closed) => break, // every worker finished
                    Err(e) => panic!("{e}"),
                },
                // `stop_tx` lives as long as this loop, so this clause never sees `Closed`
                // (a closed channel is always ready: selecting on it would spin).
                recv(stop_rx) -> msg => println!("{}: {count} results so far", msg.unwrap()),
                timeout(Duration::from_secs(5)) => panic!("pipeline stalled at {count} results"),
            }
        }
        let expected: u64 = (1..=JOBS).map(|n| n * n).sum();
        assert_eq!((count, sum), (JOBS, expected));
        let rate = Rate::between(&before, &results_rx.snapshot());
        println!("pipeline: {count} squares summed exactly ({:.0} results/s)", rate.recvs_per_sec);
    });
}
