use std::time::{Duration, Instant};
fn main() {
    let rt = kcoro::Runtime::builder().workers(2).build().unwrap();
    let v = rt.block_on(|| {
        let hs: Vec<_> = (0..1000u64)
            .map(|i| {
                kcoro::spawn(move || {
                    kcoro::yield_now();
                    i
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
    });
    println!("sum {v}");
    let t = Instant::now();
    rt.block_on(|| kcoro::sleep(Duration::from_millis(20)));
    println!("slept {:?}", t.elapsed());
    let t = Instant::now();
    let n = rt.block_on(|| {
        let hs: Vec<_> = (0..100_000u64).map(|i| kcoro::spawn(move || i)).collect();
        hs.into_iter().map(|h| h.join().unwrap()).count()
    });
    println!("100k spawn+join {n} in {:?}", t.elapsed());
    let r = rt.block_on(|| kcoro::spawn(|| panic!("boom")).join());
    println!("panic -> {:?}", r.err());
    println!("{:?}", rt.stats());
}
