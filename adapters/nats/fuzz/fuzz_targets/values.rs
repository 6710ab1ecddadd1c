//! Payloads from the broker: any bytes a foreign publisher puts on a bridged subject.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kcoro_nats::fuzzing::decode_any(data);
});
