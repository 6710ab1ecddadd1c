//! A program's own counters and gauges on the wire (GET_METRICS): what it registered with
//! [`ServerBuilder::metrics`](crate::ServerBuilder::metrics), such as a proxy's
//! connections and bytes per listener, for `kcoro chanmon`.
//!
//! The reply's one `METRICS` attribute holds a list in the frame's TLV form (so the
//! frame's attribute limit does not bound the samples; [`MAX_METRICS`] does):
//!
//! ```text
//!   1 METRIC bytes (repeated; itself TLV:
//!       1 NAME str   2 HELP str   3 KIND u32 (0 counter, 1 gauge)   4 VALUE u64 (f64 bits)
//!       5 LABEL bytes (repeated; itself TLV: 1 NAME str, 2 VALUE str))
//! ```

use kcoro::monitor::{Metric, MetricKind};

use crate::proto::{Attr, FrameBuf, FrameRef, Header, ProtoError};

/// Most samples one reply carries (the rest are left out; the frame limit applies too).
pub const MAX_METRICS: usize = 4096;
/// Most labels one sample may carry when decoded.
pub const MAX_LABELS: usize = 16;

/// Appends `metrics` (at most [`MAX_METRICS`]) as one `METRICS` attribute.
pub fn encode(metrics: &[Metric], f: &mut FrameBuf<'_>) {
    let mut v = Vec::with_capacity(96 * metrics.len().min(MAX_METRICS));
    for m in metrics.iter().take(MAX_METRICS) {
        tlv(&mut v, 1, &value(m));
    }
    f.bytes(Attr::METRICS, &v);
}

/// Reads the `METRICS` attribute of a GET_METRICS reply.
pub fn decode_all(reply: &FrameRef<'_>) -> Result<Vec<Metric>, ProtoError> {
    let list = parse(reply.need(Attr::METRICS)?, MAX_METRICS)?;
    list.all(Attr(1)).map(decode).collect()
}

/// One sample, as a `METRIC` record.
fn value(m: &Metric) -> Vec<u8> {
    let mut v = Vec::with_capacity(48 + m.name.len() + m.help.len());
    tlv(&mut v, 1, m.name.as_bytes());
    tlv(&mut v, 2, m.help.as_bytes());
    let kind: u32 = match m.kind {
        MetricKind::Counter => 0,
        MetricKind::Gauge => 1,
    };
    tlv(&mut v, 3, &kind.to_be_bytes());
    tlv(&mut v, 4, &m.value.to_bits().to_be_bytes());
    for (name, value) in &m.labels {
        let mut l = Vec::with_capacity(8 + name.len() + value.len());
        tlv(&mut l, 1, name.as_bytes());
        tlv(&mut l, 2, value.as_bytes());
        tlv(&mut v, 5, &l);
    }
    v
}

/// Reads one `METRIC` record: a name, a kind and a value are required, unknown attributes
/// are skipped.
pub fn decode(value: &[u8]) -> Result<Metric, ProtoError> {
    let bad = || ProtoError::BadValue(Attr::METRICS.0);
    let r = parse(value, 2 * MAX_LABELS + 8)?;
    let text = |r: &FrameRef<'_>, t: u16| r.str(Attr(t)).map(|s| s.map(str::to_string)).map_err(|_| bad());
    let kind = match r.u32(Attr(3)).map_err(|_| bad())? {
        Some(0) => MetricKind::Counter,
        Some(1) => MetricKind::Gauge,
        _ => return Err(bad()),
    };
    let labels: Vec<&[u8]> = r.all(Attr(5)).collect();
    if labels.len() > MAX_LABELS {
        return Err(bad());
    }
    let labels = labels
        .into_iter()
        .map(|l| {
            let l = parse(l, 8)?;
            Ok((text(&l, 1)?.ok_or_else(bad)?, text(&l, 2)?.unwrap_or_default()))
        })
        .collect::<Result<Vec<_>, ProtoError>>()?;
    let name = text(&r, 1)?.filter(|n| !n.is_empty()).ok_or_else(bad)?;
    Ok(Metric {
        name,
        help: text(&r, 2)?.unwrap_or_default(),
        kind,
        labels,
        value: f64::from_bits(r.u64(Attr(4)).map_err(|_| bad())?.ok_or_else(bad)?),
    })
}

fn parse(value: &[u8], max_attrs: usize) -> Result<FrameRef<'_>, ProtoError> {
    let len = u32::try_from(value.len()).map_err(|_| ProtoError::BadValue(Attr::METRICS.0))?;
    FrameRef::parse(Header { cmd: crate::proto::Cmd(0), flags: 0, len }, value, max_attrs)
}

/// One attribute in the frame's TLV form (short or long, by length).
fn tlv(out: &mut Vec<u8>, t: u16, v: &[u8]) {
    crate::coros::tlv(out, t, v);
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::proto::{Cmd, Limits, split_frame};

    fn reply(metrics: &[Metric]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = FrameBuf::begin(&mut out, Cmd::GET_METRICS, 0);
        encode(metrics, &mut f);
        assert!(f.finish(1 << 20).is_ok());
        out
    }

    #[test]
    fn samples_survive_the_wire_with_their_labels_and_exact_values() {
        let metrics = vec![
            Metric::counter("kcoro_proxy_connections_total", "Connections accepted.", 12_345_678_901.0)
                .label("listener", "we\"b"),
            Metric::gauge("app_ratio", "", 0.1).label("a", "").label("b", "ü"),
            Metric::gauge("app_nan", "not a number", f64::NAN),
        ];
        let bytes = reply(&metrics);
        let Ok(Some((f, used))) = split_frame(&bytes, &Limits::default()) else { panic!("no frame") };
        assert_eq!(used, bytes.len());
        let back = decode_all(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back[..2], metrics[..2]);
        assert!(back[2].value.is_nan() && back[2].name == "app_nan");
    }

    #[test]
    fn a_sample_without_a_name_kind_or_value_or_with_too_many_labels_is_refused() {
        let good = value(&Metric::counter("n", "h", 1.0));
        assert!(decode(&good).is_ok());
        let mut no_name = Vec::new();
        tlv(&mut no_name, 3, &0u32.to_be_bytes());
        tlv(&mut no_name, 4, &1f64.to_bits().to_be_bytes());
        assert!(decode(&no_name).is_err());
        let mut bad_kind = Vec::new();
        tlv(&mut bad_kind, 1, b"n");
        tlv(&mut bad_kind, 3, &7u32.to_be_bytes());
        tlv(&mut bad_kind, 4, &1f64.to_bits().to_be_bytes());
        assert!(decode(&bad_kind).is_err());
        let mut no_value = Vec::new();
        tlv(&mut no_value, 1, b"n");
        tlv(&mut no_value, 3, &0u32.to_be_bytes());
        assert!(decode(&no_value).is_err());
        let mut many = Metric::counter("n", "h", 1.0);
        for i in 0..=MAX_LABELS {
            many = many.label(&format!("l{i}"), "v");
        }
        assert!(decode(&value(&many)).is_err());
        let mut not_utf8 = Vec::new();
        tlv(&mut not_utf8, 1, &[0xff, 0xfe]);
        tlv(&mut not_utf8, 3, &0u32.to_be_bytes());
        tlv(&mut not_utf8, 4, &1f64.to_bits().to_be_bytes());
        assert!(decode(&not_utf8).is_err());
        assert!(decode(&[0xff; 3]).is_err(), "a cut attribute");
    }

    /// The GET_METRICS replies in the fuzz corpus (which `fuzz_frames` replays): one that
    /// decodes whole, one with a record of an unknown kind from a hostile server.
    #[test]
    fn the_corpus_replies_decode_or_fail_as_they_should() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frames");
        let metrics = |file: &str| -> Result<Vec<Metric>, ProtoError> {
            let bytes = std::fs::read(corpus.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let Ok(Some((f, _))) = split_frame(&bytes, &Limits::default()) else {
                panic!("{file}: no frame")
            };
            assert_eq!(f.cmd, Cmd::GET_METRICS);
            decode_all(&f)
        };
        let good = metrics("get_metrics_reply").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            good[0],
            Metric::counter("kcoro_proxy_connections_total", "Connections accepted.", 7.0)
                .label("listener", "web")
        );
        assert_eq!((good[1].kind, good[1].labels.len(), good[1].value), (MetricKind::Gauge, 2, 1.0));
        assert_eq!(metrics("get_metrics_bad_record"), Err(ProtoError::BadValue(Attr::METRICS.0)));
    }

    #[test]
    fn a_reply_carries_at_most_max_metrics_within_the_default_frame_limits() {
        let many: Vec<Metric> = (0..MAX_METRICS + 5).map(|i| Metric::gauge("g", "", i as f64)).collect();
        let bytes = reply(&many);
        let Ok(Some((f, _))) = split_frame(&bytes, &Limits::default()) else { panic!("no frame") };
        let back = decode_all(&f).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.len(), MAX_METRICS);
        assert_eq!(back[MAX_METRICS - 1].value, (MAX_METRICS - 1) as f64);
        let mut more = Vec::new();
        for _ in 0..=MAX_METRICS {
            tlv(&mut more, 1, &value(&many[0]));
        }
        assert!(parse(&more, MAX_METRICS).is_err(), "a hostile server's longer list");
    }
}
