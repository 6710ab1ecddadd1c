//! A monitored runtime's coroutines on the wire (GET_COROS): counts by state, the
//! coroutines themselves (at most [`MAX_LISTED`], the longest parked first), and the
//! deadlock the server sees right now, if any.
//!
//! The reply's one `COROS` attribute holds a list of attributes in the frame's TLV form:
//!
//! ```text
//!   1 TOTAL u64   2 RUNNING u64   3 RUNNABLE u64   4 PARKED u64   5 DEADLOCK str (report)
//!   6 CORO bytes (repeated; itself TLV:
//!       1 ID u64            2 NAME str           3 WORKER u64 (MAX: none)
//!       4 STATE u32 (0 running, 1 runnable, 2 parked)      5 WAIT str
//!       6 DEADLINE_IN_NS u64 (MAX: none)   7 PARKED_FOR_NS u64 (MAX: unknown)
//!       8 PARK_SEQ u32      9 SPAWNED_AT str    10 DAEMON u32
//!      11 WAIT_CHAN u64 (the channel a send or receive waits on, server's id)
//!      12 WAIT_SEND u32     13 IN_DEADLOCK u32)
//!   7 THREAD str (repeated: a thread outside the runtime waiting, "name: wait")
//! ```

use std::time::Duration;

use kcoro::inspect::{Coroutine, State, WaitOn};

use crate::proto::{Attr, FrameBuf, FrameRef, Header, ProtoError};

/// Most coroutines one reply lists (the counts cover all of them).
pub const MAX_LISTED: usize = 2000;
/// Most attributes one list or record may carry when decoded.
const MAX_ATTRS: usize = 2 * MAX_LISTED + 64;

/// One coroutine as a monitor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoroutineInfo {
    /// Its id in the monitored runtime.
    pub id: u64,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// The worker it runs on, once started.
    pub worker: Option<u64>,
    /// `running`, `runnable` or `parked`.
    pub state: String,
    /// What it waits on (`recv on jobs`), when parked.
    pub wait: Option<String>,
    /// Time left before its park's deadline.
    pub deadline_in: Option<Duration>,
    /// How long it has been in this park, as far as the server has seen.
    pub parked_for: Option<Duration>,
    /// Changes with every park.
    pub park_seq: u32,
    /// `file:line:column` of its spawn.
    pub spawned_at: String,
    /// Left out of deadlock detection.
    pub daemon: bool,
    /// The channel a send or receive waits on (the server's channel id), and whether it
    /// sends.
    pub wait_channel: Option<(u64, bool)>,
    /// Part of the deadlock the server reports.
    pub in_deadlock: bool,
}

/// What GET_COROS answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoroutineReport {
    /// Live coroutines.
    pub total: u64,
    /// Of which running, runnable, parked.
    pub running: u64,
    /// Ready to run.
    pub runnable: u64,
    /// Parked.
    pub parked: u64,
    /// The coroutines (at most [`MAX_LISTED`]: the longest parked first).
    pub coroutines: Vec<CoroutineInfo>,
    /// The deadlock report, when the server sees one now.
    pub deadlock: Option<String>,
    /// Threads outside the runtime waiting in kcoro primitives (`name: what`).
    pub threads: Vec<String>,
}

impl CoroutineReport {
    /// The report of a runtime, now.
    pub fn of(handle: &kcoro::Handle) -> CoroutineReport {
        let all = handle.coroutines();
        let deadlock = handle.deadlock_among(&all);
        let stuck: Vec<u64> = deadlock.iter().flat_map(|d| d.coroutines.iter().map(|c| c.id)).collect();
        let count = |s: State| all.iter().filter(|c| c.state == s).count() as u64;
        let mut report = CoroutineReport {
            total: all.len() as u64,
            running: count(State::Running),
            runnable: count(State::Runnable),
            parked: count(State::Parked),
            deadlock: deadlock.as_ref().map(ToString::to_string),
            threads: kcoro::inspect::threads_waiting()
                .iter()
                .map(|t| format!("{}: {}", t.thread, t.wait))
                .collect(),
            coroutines: Vec::new(),
        };
        let mut listed: Vec<&Coroutine> = all.iter().collect();
        listed.sort_by_key(|c| std::cmp::Reverse(c.parked_for));
        listed.truncate(MAX_LISTED);
        report.coroutines = listed.into_iter().map(|c| info(c, stuck.contains(&c.id))).collect();
        report
    }

    /// Appends this as one `COROS` attribute.
    pub fn encode(&self, f: &mut FrameBuf<'_>) {
        f.bytes(Attr::COROS, &self.value());
    }

    /// The value of the `COROS` attribute.
    fn value(&self) -> Vec<u8> {
        let mut v = Vec::new();
        tlv(&mut v, 1, &self.total.to_be_bytes());
        tlv(&mut v, 2, &self.running.to_be_bytes());
        tlv(&mut v, 3, &self.runnable.to_be_bytes());
        tlv(&mut v, 4, &self.parked.to_be_bytes());
        if let Some(d) = &self.deadlock {
            tlv(&mut v, 5, d.as_bytes());
        }
        for c in &self.coroutines {
            tlv(&mut v, 6, &encode_one(c));
        }
        for t in &self.threads {
            tlv(&mut v, 7, t.as_bytes());
        }
        v
    }

    /// Reads one `COROS` value; unknown attributes are skipped.
    pub fn decode(value: &[u8]) -> Result<CoroutineReport, ProtoError> {
        let bad = || ProtoError::BadValue(Attr::COROS.0);
        let list = parse(value)?;
        let n = |t: u16| list.u64(Attr(t)).map(|v| v.unwrap_or(0)).map_err(|_| bad());
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad());
        Ok(CoroutineReport {
            total: n(1)?,
            running: n(2)?,
            runnable: n(3)?,
            parked: n(4)?,
            deadlock: list.get(Attr(5)).map(text).transpose()?,
            coroutines: list.all(Attr(6)).map(decode_one).collect::<Result<_, _>>()?,
            threads: list.all(Attr(7)).map(text).collect::<Result<_, _>>()?,
        })
    }
}

fn info(c: &Coroutine, in_deadlock: bool) -> CoroutineInfo {
    CoroutineInfo {
        id: c.id,
        name: c.name.clone(),
        worker: c.worker.map(|w| w as u64),
        state: c.state.as_str().to_string(),
        wait: c.wait.as_ref().map(ToString::to_string),
        deadline_in: c.deadline_in,
        parked_for: c.parked_for,
        park_seq: c.park_seq,
        spawned_at: c.spawned_at.to_string(),
        daemon: c.daemon,
        wait_channel: match &c.wait {
            Some(WaitOn::Send(ch)) => Some((ch.id, true)),
            Some(WaitOn::Recv(ch)) => Some((ch.id, false)),
            _ => None,
        },
        in_deadlock,
    }
}

pub(crate) fn tlv(out: &mut Vec<u8>, t: u16, value: &[u8]) {
    match u16::try_from(value.len()) {
        Ok(len) => {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&len.to_be_bytes());
        }
        Err(_) => {
            out.extend_from_slice(&(t | crate::proto::LONG_FORM).to_be_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(value);
}

fn parse(value: &[u8]) -> Result<FrameRef<'_>, ProtoError> {
    let len = u32::try_from(value.len()).map_err(|_| ProtoError::BadValue(Attr::COROS.0))?;
    FrameRef::parse(Header { cmd: crate::proto::Cmd(0), flags: 0, len }, value, MAX_ATTRS)
}

const NONE: u64 = u64::MAX;

fn encode_one(c: &CoroutineInfo) -> Vec<u8> {
    let mut v = Vec::with_capacity(96);
    let ns = |d: Option<Duration>| d.map_or(NONE, |d| u64::try_from(d.as_nanos()).unwrap_or(NONE - 1));
    tlv(&mut v, 1, &c.id.to_be_bytes());
    if let Some(n) = &c.name {
        tlv(&mut v, 2, n.as_bytes());
    }
    tlv(&mut v, 3, &c.worker.unwrap_or(NONE).to_be_bytes());
    let state: u32 = match c.state.as_str() {
        "running" => 0,
        "runnable" => 1,
        _ => 2,
    };
    tlv(&mut v, 4, &state.to_be_bytes());
    if let Some(w) = &c.wait {
        tlv(&mut v, 5, w.as_bytes());
    }
    tlv(&mut v, 6, &ns(c.deadline_in).to_be_bytes());
    tlv(&mut v, 7, &ns(c.parked_for).to_be_bytes());
    tlv(&mut v, 8, &c.park_seq.to_be_bytes());
    tlv(&mut v, 9, c.spawned_at.as_bytes());
    tlv(&mut v, 10, &u32::from(c.daemon).to_be_bytes());
    if let Some((chan, send)) = c.wait_channel {
        tlv(&mut v, 11, &chan.to_be_bytes());
        tlv(&mut v, 12, &u32::from(send).to_be_bytes());
    }
    tlv(&mut v, 13, &u32::from(c.in_deadlock).to_be_bytes());
    v
}

fn decode_one(value: &[u8]) -> Result<CoroutineInfo, ProtoError> {
    let bad = || ProtoError::BadValue(Attr::COROS.0);
    let r = parse(value)?;
    let n = |t: u16| r.u64(Attr(t)).map_err(|_| bad());
    let flag = |t: u16| r.u32(Attr(t)).map(|v| v == Some(1)).map_err(|_| bad());
    let text = |t: u16| r.str(Attr(t)).map(|s| s.map(str::to_string)).map_err(|_| bad());
    let dur = |t: u16| n(t).map(|v| v.filter(|&v| v != NONE).map(Duration::from_nanos));
    let state = match r.u32(Attr(4)).map_err(|_| bad())? {
        Some(0) => "running",
        Some(1) => "runnable",
        Some(2) => "parked",
        _ => return Err(bad()),
    };
    Ok(CoroutineInfo {
        id: n(1)?.ok_or_else(bad)?,
        name: text(2)?,
        worker: n(3)?.filter(|&w| w != NONE),
        state: state.to_string(),
        wait: text(5)?,
        deadline_in: dur(6)?,
        parked_for: dur(7)?,
        park_seq: r.u32(Attr(8)).map_err(|_| bad())?.unwrap_or(0),
        spawned_at: text(9)?.unwrap_or_default(),
        daemon: flag(10)?,
        wait_channel: match n(11)? {
            Some(chan) => Some((chan, flag(12)?)),
            None => None,
        },
        in_deadlock: flag(13)?,
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn sample() -> CoroutineReport {
        CoroutineReport {
            total: 3,
            running: 1,
            runnable: 0,
            parked: 2,
            deadlock: Some("deadlock: all 2 coroutines are parked".into()),
            coroutines: vec![
                CoroutineInfo {
                    id: 7,
                    name: Some("worker \"a\"".into()),
                    worker: Some(1),
                    state: "parked".into(),
                    wait: Some("recv on jobs".into()),
                    deadline_in: None,
                    parked_for: Some(Duration::from_millis(1500)),
                    park_seq: 42,
                    spawned_at: "src/main.rs:10:5".into(),
                    daemon: false,
                    wait_channel: Some((3, false)),
                    in_deadlock: true,
                },
                CoroutineInfo {
                    id: 9,
                    state: "running".into(),
                    spawned_at: "src/lib.rs:1:1".into(),
                    ..CoroutineInfo::default()
                },
            ],
            threads: vec!["main: join of coroutine 1".into()],
        }
    }

    #[test]
    fn a_report_survives_the_wire() {
        let r = sample();
        assert_eq!(CoroutineReport::decode(&r.value()), Ok(r.clone()));
        let mut out = Vec::new();
        let mut f = FrameBuf::begin(&mut out, crate::proto::Cmd(8), 0);
        r.encode(&mut f);
        assert!(f.finish(1 << 20).is_ok());
    }

    /// The GET_COROS replies in the fuzz corpus (which `fuzz_frames` replays): one that
    /// decodes whole, one whose records a hostile server cut or filled with a bad state.
    #[test]
    fn the_corpus_replies_decode_or_fail_as_they_should() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frames");
        let coros = |file: &str| -> Result<CoroutineReport, ProtoError> {
            let bytes = std::fs::read(corpus.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let limits = crate::proto::Limits::default();
            let Ok(Some((f, _))) = crate::proto::split_frame(&bytes, &limits) else {
                panic!("{file}: no frame")
            };
            CoroutineReport::decode(f.need(Attr::COROS)?)
        };
        let good = coros("get_coros_reply").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((good.total, good.parked, good.coroutines.len()), (2, 2, 1));
        let c = &good.coroutines[0];
        assert_eq!(
            (c.id, c.wait.as_deref(), c.wait_channel, c.in_deadlock),
            (7, Some("recv on jobs"), Some((3, false)), true)
        );
        assert_eq!(c.parked_for, Some(Duration::from_millis(1500)));
        assert_eq!(c.deadline_in, None, "u64::MAX is no deadline");
        assert!(good.deadlock.is_some() && good.threads.len() == 1);
        assert!(coros("get_coros_bad_record").is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_report() {
        assert!(CoroutineReport::decode(&[0, 6, 0, 3, 1, 2]).is_err(), "a truncated record");
        let mut v = Vec::new();
        tlv(&mut v, 6, &[0, 4, 0, 4, 0, 0, 0, 9]); // a record with an unknown state
        assert!(CoroutineReport::decode(&v).is_err());
    }
}
