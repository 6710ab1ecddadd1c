//! The coroutine view (`c`): a table of the monitored runtime's coroutines, one
//! coroutine's detail, the deadlock banner and report overlay (`d`), and the stuck lint's
//! marks. A pure function of [`App`], like the channel view.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};

use super::corostate::{CoroSort, Stuck, duration};
use super::sample::CoroutineSample;
use super::view::App;

/// What the user chose in the coroutine view.
#[derive(Debug, Default)]
pub struct CoroView {
    pub sort: CoroSort,
    /// The selected coroutine (by id: the selection follows it when the order changes);
    /// `None` or a coroutine not in the table: its first row.
    pub selected: Option<u64>,
    /// The table's first visible row, kept between frames (set while drawing).
    pub offset: std::cell::Cell<usize>,
    /// The coroutine whose detail is open.
    pub detail: Option<u64>,
}

impl App {
    fn coro_rows(&self) -> Vec<&CoroutineSample> {
        self.state.coros.rows(self.coro.sort, &self.filter)
    }

    fn coro_index(&self, rows: &[&CoroutineSample]) -> usize {
        self.coro.selected.and_then(|id| rows.iter().position(|c| c.id == id)).unwrap_or(0)
    }

    /// The id of the selected coroutine, if the table has rows.
    pub fn coro_selected_id(&self) -> Option<u64> {
        let rows = self.coro_rows();
        rows.get(self.coro_index(&rows)).map(|c| c.id)
    }

    /// Moves the coroutine selection `by` rows (clamped to the table).
    pub fn move_coro_selection(&mut self, by: isize) {
        let rows = self.coro_rows();
        if rows.is_empty() {
            return;
        }
        let at = self.coro_index(&rows).saturating_add_signed(by).min(rows.len() - 1);
        self.coro.selected = Some(rows[at].id);
    }
}

/// The title's count for this view: shown, of how many live, the word, the sort.
pub fn counts(app: &App) -> (usize, u64, &'static str, &'static str) {
    let total = app.state.coros.now.as_ref().map_or(0, |r| r.total);
    (app.coro_rows().len(), total, "coroutines", app.coro.sort.label())
}

/// The line under the title when something is wrong: a deadlock (red), or coroutines
/// the stuck lint flags (yellow).
pub fn banner(app: &App) -> Option<Line<'static>> {
    let coros = &app.state.coros;
    if let Some(d) = coros.deadlock() {
        let who = match d.key.len() {
            0 => "the coroutines".to_string(),
            1 => "1 coroutine".to_string(),
            n => format!("{n} coroutines"),
        };
        let dash = if app.ascii { "-" } else { "—" };
        let held = coros.deadlock_held().unwrap_or_default();
        let text =
            format!("DEADLOCK for {}: {who} wait for each other {dash} d shows the report", duration(held));
        return Some(Line::from(Span::styled(text, bold(app, Color::Red))));
    }
    let stuck = coros.all_stuck(coros.stuck_after);
    let (first, s) = stuck.first()?;
    let name = first.name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default();
    let more = if stuck.len() > 1 { format!(" (and {} more)", stuck.len() - 1) } else { String::new() };
    let text = format!("stuck: coroutine {}{name}: {}{more}", first.id, s.why());
    Some(Line::from(Span::styled(text, bold(app, Color::Yellow))))
}

fn bold(app: &App, color: Color) -> Style {
    app.style(color).add_modifier(Modifier::BOLD)
}

/// The coroutine table, or the selected coroutine's detail.
pub fn body(f: &mut Frame<'_>, app: &App, area: Rect) {
    match app.coro.detail.and_then(|id| app.state.coros.get(id)) {
        Some(c) => detail(f, app, c, area),
        None => table(f, app, area),
    }
}

/// The columns after `id` and `name`: header, width (0: shares what is left), and rank
/// (given up when the terminal is narrow, highest first).
const COLUMNS: [(&str, u16, u8); 6] = [
    ("worker", 6, 4),
    ("state", 8, 2),
    ("waits on", 0, 0),
    ("for", 7, 1),
    ("deadline", 8, 3),
    ("spawned at", 0, 5),
];

/// Which of [`COLUMNS`] fit in `width` after `fixed` cells, leaving the wait `room`.
fn visible_columns(width: u16, fixed: u16, room: u16) -> [bool; 6] {
    let mut shown = [true; 6];
    let need = |shown: &[bool; 6]| {
        let cols = COLUMNS.iter().zip(shown).filter(|(_, on)| **on);
        fixed + cols.map(|(c, _)| if c.1 == 0 { room + 1 } else { c.1 + 1 }).sum::<u16>()
    };
    let mut by_rank: Vec<usize> = (0..COLUMNS.len()).collect();
    by_rank.sort_by_key(|&i| std::cmp::Reverse(COLUMNS[i].2));
    for i in by_rank {
        if need(&shown) <= width {
            break;
        }
        shown[i] = COLUMNS[i].2 == 0;
    }
    shown
}

/// The last `width` characters of `s`, with `…` where it was cut.
fn tail(s: &str, width: usize, ascii: bool) -> String {
    let n = s.chars().count();
    if n <= width || width == 0 {
        return s.to_string();
    }
    let rest: String = s.chars().skip(n - width + 1).collect();
    format!("{}{rest}", if ascii { "<" } else { "…" })
}

fn table(f: &mut Frame<'_>, app: &App, area: Rect) {
    let coros = &app.state.coros;
    let rows = app.coro_rows();
    let inner = area.width.saturating_sub(2);
    let id_width = rows.iter().map(|c| c.id.to_string().len()).max().unwrap_or(0).clamp(2, 12) as u16;
    let name_width =
        rows.iter().map(|c| c.name.as_deref().map_or(1, |n| n.chars().count())).max().unwrap_or(0);
    let name_width = (name_width.clamp(4, 24) as u16).min(inner / 5).max(4);
    let fixed = id_width + 1 + name_width + 1;
    let shown = visible_columns(inner, fixed, 30);
    let spawned_len = rows.iter().map(|c| c.spawned_at.chars().count()).max().unwrap_or(0) as u16;
    let used: u16 =
        fixed + COLUMNS.iter().zip(shown).filter(|(c, on)| *on && c.1 > 0).map(|(c, _)| c.1 + 1).sum::<u16>();
    let left = inner.saturating_sub(used + 1 + u16::from(shown[5]));
    let spawned_width = if shown[5] { (left * 2 / 5).min(spawned_len.max(10)) } else { 0 };
    let wait_width = left.saturating_sub(spawned_width);
    let selected = app.coro_index(&rows);
    let body: Vec<Row<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let stuck = coros.stuck(c, coros.stuck_after);
            let mut style = match (&stuck, c.in_deadlock) {
                (_, true) => app.style(Color::Red),
                (Some(_), false) => app.style(Color::Yellow),
                (None, false) => Style::default(),
            };
            if i == selected {
                style = style.add_modifier(Modifier::REVERSED);
            }
            let cells = row_cells(app, c, stuck.as_ref(), usize::from(spawned_width));
            Row::new(pick(cells, shown)).style(style)
        })
        .collect();
    let empty = body.is_empty();
    let mut widths = vec![Constraint::Length(id_width), Constraint::Length(name_width)];
    for (c, on) in COLUMNS.iter().zip(shown) {
        if on {
            widths.push(Constraint::Length(match c.0 {
                "waits on" => wait_width,
                "spawned at" => spawned_width,
                _ => c.1,
            }));
        }
    }
    let header_style = Style::default().add_modifier(Modifier::BOLD);
    let header: Vec<Cell<'static>> = ["id", "name"]
        .into_iter()
        .chain(COLUMNS.iter().map(|c| c.0))
        .map(|h| Cell::from(h).style(header_style))
        .collect();
    let block = Block::default().borders(Borders::ALL).title(" coroutines ");
    let table = Table::new(body, widths).header(Row::new(pick(header, shown))).block(block).column_spacing(1);
    let mut scroll = TableState::default().with_offset(app.coro.offset.get()).with_selected(Some(selected));
    f.render_stateful_widget(table, area, &mut scroll);
    app.coro.offset.set(scroll.offset());
    if empty {
        let msg = if coros.now.is_none() {
            "this source reports no coroutines (a server without the monitor, or an older recording)"
        } else if app.filter.is_empty() {
            "no coroutines"
        } else {
            "no coroutine matches the filter"
        };
        let inner = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        f.render_widget(Paragraph::new(msg), inner);
    }
}

/// `id`, `name` and the [`COLUMNS`] shown.
fn pick(cells: Vec<Cell<'static>>, shown: [bool; 6]) -> Vec<Cell<'static>> {
    let mut it = cells.into_iter();
    let mut out: Vec<Cell<'static>> = it.by_ref().take(2).collect();
    out.extend(it.zip(shown).filter(|(_, on)| *on).map(|(c, _)| c));
    out
}

fn row_cells(
    app: &App,
    c: &CoroutineSample,
    stuck: Option<&Stuck>,
    spawned_width: usize,
) -> Vec<Cell<'static>> {
    let coros = &app.state.coros;
    let wait = match stuck {
        Some(s) => s.to_string(),
        None => c.wait.clone().unwrap_or_default(),
    };
    let deadline = c.deadline_in_ns.map_or_else(String::new, |ns| duration(Duration::from_nanos(ns)));
    vec![
        Cell::from(c.id.to_string()),
        Cell::from(c.name.clone().unwrap_or_else(|| "-".into())),
        Cell::from(c.worker.map_or_else(|| "-".into(), |w| w.to_string())),
        Cell::from(c.state.clone()),
        Cell::from(wait),
        Cell::from(coros.parked_for(c).map_or_else(String::new, duration)),
        Cell::from(deadline),
        Cell::from(tail(&c.spawned_at, spawned_width, app.ascii)),
    ]
}

fn detail(f: &mut Frame<'_>, app: &App, c: &CoroutineSample, area: Rect) {
    let coros = &app.state.coros;
    let name = c.name.as_deref().map(|n| format!(" {n:?}")).unwrap_or_default();
    let block = Block::default().borders(Borders::ALL).title(format!(" coroutine {}{name} ", c.id));
    let yes = |b: bool| if b { "yes" } else { "no" };
    let channel = c.wait_channel.map(|w| {
        let dir = if w.send { "to send" } else { "to receive" };
        match app.state.channel(w.id) {
            Some(t) => format!(
                "{} (id {}), waiting {dir}: {} sent, {} received, {} buffered",
                t.now.name, w.id, t.now.sends, t.now.recvs, t.now.len
            ),
            None => format!("id {} (not listed: unnamed), waiting {dir}", w.id),
        }
    });
    let mut lines = vec![
        format!("name          {}", c.name.as_deref().unwrap_or("-")),
        format!("state         {}", c.state),
        format!("worker        {}", c.worker.map_or_else(|| "not started".into(), |w| w.to_string())),
        format!("waits on      {}", c.wait.as_deref().unwrap_or("-")),
        format!(
            "for           {}",
            coros.parked_for(c).map_or_else(
                || "-".into(),
                |d| format!("{} (counted from the first look at this park)", duration(d))
            )
        ),
        format!(
            "deadline      {}",
            c.deadline_in_ns
                .map_or_else(|| "none".into(), |ns| format!("in {}", duration(Duration::from_nanos(ns))))
        ),
        format!("park          number {}", c.park_seq),
        format!("spawned at    {}", c.spawned_at),
        format!("daemon        {}", yes(c.daemon)),
    ];
    if let Some(ch) = channel {
        lines.push(format!("channel       {ch}"));
    }
    lines.push(format!("in deadlock   {}", yes(c.in_deadlock)));
    let mut text: Vec<Line<'_>> = lines.into_iter().map(Line::from).collect();
    if let Some(s) = coros.stuck(c, coros.stuck_after) {
        text.push(Line::from(Span::styled(format!("stuck         {}", s.why()), bold(app, Color::Yellow))));
    }
    f.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: false }), area);
}

/// The deadlock report overlay (`d`).
pub fn report(f: &mut Frame<'_>, app: &App) {
    let coros = &app.state.coros;
    let text: Vec<Line<'_>> = match (coros.deadlock(), &coros.now) {
        (Some(d), _) => {
            let held = coros.deadlock_held().unwrap_or_default();
            let mut lines = vec![Line::from(Span::styled(
                format!("reported in {} samples, for {}", d.samples, duration(held)),
                bold(app, Color::Red),
            ))];
            lines.extend(d.report.lines().map(|l| Line::from(l.to_string())));
            lines
        }
        (None, Some(_)) => vec![Line::from("no deadlock: the source reports none now")],
        (None, None) => vec![Line::from("this source reports no coroutines")],
    };
    let area = f.area();
    let w = area.width.saturating_sub(4).min(120);
    let h = (text.len() as u16 + 2).max(5).min(area.height.saturating_sub(2));
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    f.render_widget(Clear, r);
    let block = Block::default().borders(Borders::ALL).title(" deadlock report (d or Esc closes) ");
    f.render_widget(Paragraph::new(text).block(block).wrap(Wrap { trim: false }), r);
}

#[cfg(test)]
mod tests {
    use ratatui::crossterm::event::KeyCode;

    use super::super::corostate::tests::{chan, parked_on, report as coro_report};
    use super::super::sample::{CoroutineSample, SCHEMA, Sample};
    use super::super::view::Pane;
    use super::super::view::tests::{key, render};
    use super::*;

    const S: u64 = 1_000_000_000;

    /// A program's coroutines: a producer running, a router runnable, a worker waiting on
    /// `jobs` that nobody sends on (stuck after two samples), a sleeper with a deadline,
    /// an unnamed select, a daemon on a socket.
    fn coroutines(second: bool) -> Vec<CoroutineSample> {
        let at = |file: &str, line: u32| format!("crates/app/src/{file}.rs:{line}:9");
        let named = |mut c: CoroutineSample, name: &str| {
            c.name = Some(name.into());
            c
        };
        let mut producer = named(parked_on(1, 40, 2, true, 0), "producer-0");
        (producer.state, producer.wait, producer.wait_channel) = ("running".into(), None, None);
        producer.spawned_at = at("pipeline", 31);
        let mut router = named(producer.clone(), "router");
        (router.id, router.state, router.worker) = (2, "runnable".into(), Some(1));
        router.spawned_at = at("pipeline", 44);
        let mut worker =
            named(parked_on(3, 7, 1, false, if second { 12_000 } else { 11_000 }), "jobs-worker");
        worker.wait = Some("recv on jobs".into());
        worker.spawned_at = at("workers", 12);
        let mut sleeper = named(parked_on(4, 9, 0, false, 400), "sleeper");
        (sleeper.wait, sleeper.wait_channel, sleeper.deadline_in_ns) =
            (Some("sleep".into()), None, Some(1_500_000_000));
        sleeper.spawned_at = at("main", 20);
        let mut select = parked_on(5, 2, 0, false, 2_000);
        (select.name, select.wait, select.wait_channel) =
            (None, Some("select over 2: recv a, recv b".into()), None);
        select.spawned_at = at("main", 27);
        let mut listener = named(parked_on(6, 1, 0, false, 30_000), "monitor-accept");
        (listener.wait, listener.wait_channel, listener.daemon) =
            (Some("socket fd 7 readable".into()), None, true);
        listener.spawned_at = "/home/u/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/kcoro-ipc-0.1.0/src/server/mod.rs:120:9".into();
        vec![producer, router, worker, sleeper, select, listener]
    }

    fn sample(secs: u64, list: Vec<CoroutineSample>, deadlock: Option<&str>) -> Sample {
        let coros = coro_report(list, deadlock);
        Sample {
            schema: SCHEMA,
            taken_ns: secs * S,
            source: "unix:/run/app.sock".into(),
            channels: vec![chan(1, "jobs", 5, 5), chan(2, "results", 100 * secs, 100 * secs)],
            sched: None,
            coroutines: Some(coros),
            metrics: vec![],
        }
    }

    /// The coroutine view after two samples one second apart.
    fn app() -> App {
        let mut app = App::new(false, false);
        app.state.update(sample(1, coroutines(false), None));
        app.state.update(sample(2, coroutines(true), None));
        key(&mut app, KeyCode::Char('c'));
        app
    }

    /// Coroutines "a" and "b" deadlocked on `left` and `right`, in two samples.
    fn deadlocked() -> App {
        let report = "deadlock: all 2 coroutines are parked and nothing can wake them (no timer armed, no socket waited on)\n  coroutine 3 \"a\" waits on recv on left (spawned at examples/deadlock.rs:40:9)\n  coroutine 4 \"b\" waits on recv on right (spawned at examples/deadlock.rs:45:9)\n";
        let list = || {
            let mut a = parked_on(3, 1, 1, false, 0);
            (a.name, a.wait, a.in_deadlock) = (Some("a".into()), Some("recv on left".into()), true);
            let mut b = parked_on(4, 1, 2, false, 0);
            (b.name, b.wait, b.in_deadlock) = (Some("b".into()), Some("recv on right".into()), true);
            vec![a, b]
        };
        let mut app = App::new(false, false);
        for secs in 1..=3 {
            app.state.update(sample(secs, list(), Some(report)));
        }
        app
    }

    #[test]
    fn coroutine_view_80x24() {
        let a = app();
        let screen = render(&a, 80, 24);
        insta::assert_snapshot!("coroutines_80x24", screen);
        let bar = screen.lines().last().unwrap_or_default();
        assert!(bar.ends_with("q quit") && bar.contains("c channels"), "{bar:?}");
    }

    #[test]
    fn coroutine_view_120x30() {
        let screen = render(&app(), 120, 30);
        insta::assert_snapshot!("coroutines_120x30", screen);
        let row = |id: &str| {
            screen.lines().find(|l| l.starts_with(&format!("│{id} "))).unwrap_or_default().to_string()
        };
        assert!(row("3").contains("stuck: no sender on jobs for 12s"), "{}", row("3"));
        assert!(row("4").contains("sleep") && row("4").contains("1.5s"), "the deadline: {}", row("4"));
        assert!(row("6").contains("…"), "a long spawn site is cut from the left: {}", row("6"));
        assert!(screen.contains("running 1  runnable 1  parked 4"), "{screen}");
        assert!(screen.contains("6 coroutines") && screen.contains("sort: id"), "{screen}");
        assert!(screen.contains("stuck: coroutine 3 \"jobs-worker\": no sender on jobs for 12s"), "{screen}");
    }

    #[test]
    fn deadlock_banner_and_report() {
        let mut a = deadlocked();
        let screen = render(&a, 100, 24);
        let banner = screen.lines().nth(1).unwrap_or_default();
        assert_eq!(banner, "DEADLOCK for 2.0s: 2 coroutines wait for each other — d shows the report");
        key(&mut a, KeyCode::Char('d'));
        let screen = render(&a, 120, 30);
        insta::assert_snapshot!("deadlock_report", screen);
        assert!(screen.contains("reported in 3 samples, for 2.0s"), "{screen}");
        key(&mut a, KeyCode::Esc);
        assert!(!a.report);
        key(&mut a, KeyCode::Char('d'));
        key(&mut a, KeyCode::Char('d'));
        assert!(!a.report, "d closes it too");
        let healthy = app();
        let mut h = healthy;
        key(&mut h, KeyCode::Char('d'));
        assert!(render(&h, 100, 24).contains("no deadlock: the source reports none now"));
    }

    #[test]
    fn sorting_selecting_filtering_and_the_detail() {
        let mut a = app();
        assert_eq!(a.pane, Pane::Coroutines);
        key(&mut a, KeyCode::Char('s'));
        assert_eq!(a.coro.sort, CoroSort::ParkedFor);
        let ids: Vec<u64> = a.state.coros.rows(a.coro.sort, "").iter().map(|c| c.id).collect();
        assert_eq!(ids, [6, 3, 5, 4, 1, 2], "longest parked first");
        key(&mut a, KeyCode::Down);
        assert_eq!(a.coro_selected_id(), Some(3));
        key(&mut a, KeyCode::Char('s'));
        key(&mut a, KeyCode::Char('s'));
        assert_eq!(a.coro.sort, CoroSort::Name);
        assert_eq!(a.coro_selected_id(), Some(3), "the selection follows its coroutine");
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.coro.detail, Some(3));
        let screen = render(&a, 120, 30);
        for want in [
            "coroutine 3 \"jobs-worker\"",
            "waits on      recv on jobs",
            "for           12s (counted from the first look at this park)",
            "spawned at    crates/app/src/workers.rs:12:9",
            "channel       jobs (id 1), waiting to receive: 5 sent, 5 received",
            "stuck         no sender on jobs for 12s",
        ] {
            assert!(screen.contains(want), "{want:?} in the detail:\n{screen}");
        }
        key(&mut a, KeyCode::Esc);
        assert_eq!(a.coro.detail, None);
        key(&mut a, KeyCode::Char('/'));
        for c in "select".chars() {
            key(&mut a, KeyCode::Char(c));
        }
        key(&mut a, KeyCode::Enter);
        let screen = render(&a, 120, 30);
        assert!(screen.contains("1 of 6 coroutines") && screen.contains("select over 2"), "{screen}");
        assert!(!screen.contains("jobs-worker  "), "{screen}");
        key(&mut a, KeyCode::Tab);
        assert_eq!(a.pane, Pane::Channels, "Tab switches back");
    }

    #[test]
    fn the_table_scrolls_and_a_source_without_coroutines_says_so() {
        let mut a = App::new(true, false);
        let many: Vec<CoroutineSample> = (1..=30).map(|i| parked_on(i, 1, 1, false, 0)).collect();
        a.state.update(sample(1, many, None));
        key(&mut a, KeyCode::Char('c'));
        key(&mut a, KeyCode::End);
        assert_eq!(a.coro_selected_id(), Some(30));
        let screen = render(&a, 100, 20);
        assert!(screen.contains("c30") && !screen.contains("c1 "), "{screen}");
        let mut none = App::new(false, false);
        none.state.update(Sample { coroutines: None, ..sample(1, vec![], None) });
        key(&mut none, KeyCode::Char('c'));
        assert!(render(&none, 100, 24).contains("this source reports no coroutines"));
    }
}
