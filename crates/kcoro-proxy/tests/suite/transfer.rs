//! Large transfers, copied and spliced: every byte arrives, in order, counted once.

use std::io::{Read, Write};
use std::net::Shutdown;

use crate::common::{Backend, Client, Mode, Running, config};

#[test]
fn eight_megabytes_each_way_arrive_whole_copied_and_spliced() {
    const LEN: usize = 8 << 20;
    for splice in [false, true] {
        let b = Backend::start(0, Mode::Echo);
        let p = Running::start(&config(&[b.addr], &format!("splice = {splice}"), ""));
        let mut c = Client::connect(p.addr());
        assert_eq!(c.greeting(), "B0");
        let data: Vec<u8> = (0..LEN as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut tx = c.reader.get_ref().try_clone().unwrap();
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            tx.write_all(&sent).unwrap();
            tx.shutdown(Shutdown::Write).unwrap();
        });
        let mut got = Vec::with_capacity(LEN);
        c.reader.read_to_end(&mut got).unwrap();
        writer.join().unwrap();
        assert!(
            got == data,
            "splice = {splice}: {} bytes back, first difference at {:?}",
            got.len(),
            got.iter().zip(&data).position(|(a, b)| a != b)
        );
        drop(c);
        let s = p.wait_for("closed", |s| s.listener("l").unwrap().closed == 1);
        let l = s.listener("l").unwrap();
        assert_eq!((l.bytes_in, l.bytes_out), (LEN as u64, LEN as u64 + 3), "splice = {splice}");
        assert_eq!(l.errors.total(), 0, "splice = {splice}: {l:?}");
    }
}
