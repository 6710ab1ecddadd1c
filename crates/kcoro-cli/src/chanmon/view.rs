//! What the screen draws, as a pure function of the monitor's [`App`] state: the channel
//! table, the detail view, the scheduler panel (the coroutine view, the key bar and the
//! help are in sibling modules). No terminal here, so the screen tests render it on
//! ratatui's `TestBackend`.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use super::coroview::{self, CoroView};
use super::keys;
use super::metricview;
use super::state::{SortKey, State, Tracked};

/// Which table the screen shows (`c` and Tab switch).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Pane {
    #[default]
    Channels,
    Coroutines,
    /// The program's own metrics (`m`).
    Metrics,
}

impl Pane {
    /// The view Tab goes to: channels and coroutines in turn; from the metrics back to the
    /// channels.
    pub fn next(self) -> Pane {
        match self {
            Pane::Channels => Pane::Coroutines,
            Pane::Coroutines | Pane::Metrics => Pane::Channels,
        }
    }
}

/// Screen state besides the samples: what the user chose.
#[derive(Debug)]
pub struct App {
    pub state: State,
    pub sort: SortKey,
    pub filter: String,
    /// Typing a filter (`/` until Enter or Esc).
    pub editing_filter: bool,
    /// The selected channel (by id, so the selection follows it when the order changes);
    /// `None` or a channel not in the table: its first row.
    pub selected: Option<u64>,
    /// The table's first visible row, kept between frames so the table scrolls like a
    /// list (set while drawing; the rest of the state is read-only there).
    pub offset: std::cell::Cell<usize>,
    /// The channel whose detail view is open.
    pub detail: Option<u64>,
    pub help: bool,
    pub paused: bool,
    pub ascii: bool,
    pub color: bool,
    /// Why the last sample failed (the process went away, or stopped answering); cleared
    /// by the next sample that succeeds.
    pub error: Option<String>,
    /// The time between samples.
    pub interval: std::time::Duration,
    /// How long the screen has waited for a sample that is due (shown as a warning).
    pub waiting: Option<std::time::Duration>,
    /// The recording being replayed, if this is a replay.
    pub replay: Option<String>,
    /// The recording has been played to its end.
    pub ended: bool,
    /// The table shown.
    pub pane: Pane,
    /// The coroutine view's sort, selection and detail.
    pub coro: CoroView,
    /// The deadlock report overlay is open (`d`).
    pub report: bool,
    /// The metrics view's first row (↑↓ scroll it).
    pub metric_offset: usize,
}

impl App {
    pub fn new(ascii: bool, color: bool) -> App {
        App {
            state: State::new(),
            sort: SortKey::default(),
            filter: String::new(),
            editing_filter: false,
            selected: None,
            offset: std::cell::Cell::new(0),
            detail: None,
            help: false,
            paused: false,
            ascii,
            color,
            error: None,
            interval: std::time::Duration::from_secs(1),
            waiting: None,
            replay: None,
            ended: false,
            pane: Pane::Channels,
            coro: CoroView::default(),
            report: false,
            metric_offset: 0,
        }
    }

    pub(crate) fn style(&self, color: Color) -> Style {
        if self.color { Style::default().fg(color) } else { Style::default() }
    }

    /// The selected row's index in `rows` (0 when the selected channel is not there).
    fn selected_index(&self, rows: &[&Tracked]) -> usize {
        self.selected.and_then(|id| rows.iter().position(|t| t.now.id == id)).unwrap_or(0)
    }

    /// The id of the selected row, if the table has rows.
    pub fn selected_id(&self) -> Option<u64> {
        let rows = self.state.rows(self.sort, &self.filter);
        rows.get(self.selected_index(&rows)).map(|t| t.now.id)
    }

    /// Scrolls the metrics view by `by` rows (clamped to its rows).
    pub fn scroll_metrics(&mut self, by: isize) {
        let last = self.state.metrics.rows(&self.filter).len().saturating_sub(1);
        self.metric_offset = self.metric_offset.saturating_add_signed(by).min(last);
    }

    /// Moves the selection `by` rows (clamped to the table).
    pub fn move_selection(&mut self, by: isize) {
        let rows = self.state.rows(self.sort, &self.filter);
        if rows.is_empty() {
            return;
        }
        let at = self.selected_index(&rows).saturating_add_signed(by).min(rows.len() - 1);
        self.selected = Some(rows[at].now.id);
    }
}

/// `1234.5` → `1.2k`; rates and counts in a fixed narrow width.
pub fn si(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// Bytes per second: `4.1MB/s`.
pub fn bytes_rate(v: f64) -> String {
    format!("{}B/s", si(v))
}

/// A bar of `width` cells, `fill` of it full.
pub fn bar(fill: f64, width: usize, ascii: bool) -> String {
    let full = ((fill.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    let (on, off) = if ascii { ('#', '-') } else { ('█', '░') };
    std::iter::repeat_n(on, full).chain(std::iter::repeat_n(off, width - full)).collect()
}

/// The last `width` values as a one-line sparkline, scaled to their own maximum.
pub fn sparkline(
    values: impl DoubleEndedIterator<Item = f64> + ExactSizeIterator,
    width: usize,
    ascii: bool,
) -> String {
    let levels: &[char] = if ascii {
        &[' ', '.', ':', '-', '=', '+', '*', '#']
    } else {
        &[' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']
    };
    let skip = values.len().saturating_sub(width);
    let v: Vec<f64> = values.skip(skip).collect();
    let max = v.iter().copied().fold(0.0, f64::max);
    let s: String = v
        .iter()
        .map(|&x| {
            if max <= 0.0 {
                levels[0]
            } else {
                levels[((x / max) * (levels.len() - 1) as f64).round() as usize]
            }
        })
        .collect();
    s
}

fn kind_short(kind: &str) -> &'static str {
    match kind {
        "rendezvous" => "rdv",
        "buffered" => "buf",
        "conflated" => "cnf",
        "unlimited" => "unl",
        _ => "?",
    }
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let banner = coroview::banner(app);
    let [top, warn, body, sched, keys] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Min(5),
        Constraint::Length(4),
        Constraint::Length(1),
    ])
    .areas(f.area());
    f.render_widget(Paragraph::new(title(app)), top);
    if let Some(b) = banner {
        f.render_widget(Paragraph::new(b), warn);
    }
    match app.pane {
        Pane::Coroutines => coroview::body(f, app, body),
        Pane::Metrics => metricview::body(f, app, body),
        Pane::Channels => match app.detail.and_then(|id| app.state.channel(id)) {
            Some(t) => detail(f, app, t, body),
            None => table(f, app, body),
        },
    }
    scheduler(f, app, sched);
    f.render_widget(Paragraph::new(keys::key_bar(app, keys.width)), keys);
    if app.report {
        coroview::report(f, app);
    }
    if app.help {
        keys::help(f, app);
    }
}

fn title(app: &App) -> Line<'static> {
    let s = &app.state;
    let source = if s.source.is_empty() { "-" } else { &s.source };
    let source = match &app.replay {
        Some(file) => format!("replay of {file} (recorded from {source})"),
        None => source.to_string(),
    };
    let (shown, of, what, sort) = match app.pane {
        Pane::Channels => (s.rows(app.sort, &app.filter).len(), s.len() as u64, "channels", app.sort.label()),
        Pane::Coroutines => coroview::counts(app),
        Pane::Metrics => metricview::counts(app),
    };
    let channels =
        if shown as u64 == of { format!("{shown} {what}") } else { format!("{shown} of {of} {what}") };
    let interval = if s.samples < 2 { "-".to_string() } else { format!("{:.1}s", s.interval()) };
    // What is wrong or unusual comes first: a long socket path must never push the
    // stale warning off the right edge of the screen.
    let mut spans = vec![Span::styled("kcoro chanmon", Style::default().add_modifier(Modifier::BOLD))];
    if let Some(w) = app.waiting {
        spans.push(Span::styled(
            format!("  NO ANSWER for {:.1}s (stale)", w.as_secs_f64()),
            app.style(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if app.paused {
        spans.push(Span::styled("  PAUSED", app.style(Color::Yellow).add_modifier(Modifier::BOLD)));
    }
    if !app.filter.is_empty() || app.editing_filter {
        spans.push(Span::raw(format!(
            "  filter: {}{}",
            app.filter,
            if app.editing_filter { "_" } else { "" }
        )));
    }
    spans.push(Span::raw(format!("  {source}  {channels}  interval {interval}  sort: {sort}")));
    Line::from(spans)
}

/// The table's columns after the name, in display order: header, width, and rank (the
/// order in which they are given up when the terminal is narrow: highest rank first).
const COLUMNS: [(&str, u16, u8); 12] = [
    ("kind", 4, 6),
    ("depth/cap", 9, 1),
    ("fill", 7, 2),
    ("sends/s", 7, 0),
    ("recvs/s", 7, 3),
    ("bytes/s", 9, 3),
    ("peak/s", 7, 8),
    ("parked", 7, 4),
    ("fail/s", 6, 5),
    ("drops", 6, 7),
    ("rv", 6, 9),
    ("sends/s trend", 13, 10),
];

/// Which of [`COLUMNS`] fit in `width` after a name column of `name` cells.
fn visible_columns(width: u16, name: u16) -> [bool; 12] {
    let mut shown = [true; 12];
    let need = |shown: &[bool; 12]| {
        name + COLUMNS.iter().zip(shown).filter(|(_, on)| **on).map(|(c, _)| c.1 + 1).sum::<u16>()
    };
    let mut by_rank: Vec<usize> = (0..COLUMNS.len()).collect();
    by_rank.sort_by_key(|&i| std::cmp::Reverse(COLUMNS[i].2));
    for i in by_rank {
        if need(&shown) <= width {
            break;
        }
        shown[i] = false;
    }
    shown
}

fn table(f: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = app.state.rows(app.sort, &app.filter);
    let name_width = rows.iter().map(|t| t.now.name.chars().count()).max().unwrap_or(0).clamp(8, 40) as u16;
    let inner = area.width.saturating_sub(2);
    let name_width = name_width.min(inner / 4).max(8);
    let shown = visible_columns(inner, name_width);
    let pick = |cells: Vec<Cell<'static>>| -> Vec<Cell<'static>> {
        let mut it = cells.into_iter();
        let mut out = vec![it.next().unwrap_or_default()];
        out.extend(it.zip(shown).filter(|(_, on)| *on).map(|(c, _)| c));
        out
    };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let header: Vec<Cell<'static>> = std::iter::once("name")
        .chain(COLUMNS.iter().map(|c| c.0))
        .map(|h| Cell::from(h).style(bold))
        .collect();
    let selected = app.selected_index(&rows);
    let body: Vec<Row<'_>> = rows
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let (cells, style) = channel_cells(app, t, i == selected);
            Row::new(pick(cells)).style(style)
        })
        .collect();
    let empty = body.is_empty();
    let mut widths = vec![Constraint::Length(name_width)];
    for (c, on) in COLUMNS.iter().zip(shown) {
        if on {
            widths.push(if c.0 == "sends/s trend" { Constraint::Fill(1) } else { Constraint::Length(c.1) });
        }
    }
    let block = Block::default().borders(Borders::ALL).title(" channels ");
    let table = Table::new(body, widths).header(Row::new(pick(header))).block(block).column_spacing(1);
    // The table scrolls to keep the selected row in view.
    let mut scroll = TableState::default().with_offset(app.offset.get()).with_selected(Some(selected));
    f.render_stateful_widget(table, area, &mut scroll);
    app.offset.set(scroll.offset());
    if empty {
        let msg = if app.filter.is_empty() {
            "no named channels yet (name them with chan::Builder::name)"
        } else {
            "no channel matches the filter"
        };
        let inner = Rect { x: area.x + 2, y: area.y + 2, width: area.width.saturating_sub(4), height: 1 };
        f.render_widget(Paragraph::new(msg), inner);
    }
}

/// One channel's cells (name first, then [`COLUMNS`]) and its row style.
fn channel_cells(app: &App, t: &Tracked, selected: bool) -> (Vec<Cell<'static>>, Style) {
    let c = &t.now;
    let cap = match c.capacity {
        Some(n) => n.to_string(),
        None if app.ascii => "inf".to_string(),
        None => "∞".to_string(),
    };
    let fill = c.fill().map_or_else(String::new, |x| bar(x, 7, app.ascii));
    let rate = |f: fn(&super::state::Rates) -> f64, fmt: fn(f64) -> String| {
        t.rates.as_ref().map_or("-".into(), |r| fmt(f(r)))
    };
    let fill_style = match c.fill() {
        Some(x) if x >= 0.9 => app.style(Color::Red),
        Some(x) if x >= 0.5 => app.style(Color::Yellow),
        _ => app.style(Color::Green),
    };
    let cells = vec![
        Cell::from(c.name.clone()),
        Cell::from(kind_short(&c.kind)),
        Cell::from(format!("{}/{cap}", c.len)),
        Cell::from(fill).style(fill_style),
        Cell::from(rate(|r| r.sends, si)),
        Cell::from(rate(|r| r.recvs, si)),
        Cell::from(rate(|r| r.bytes_sent, bytes_rate)),
        Cell::from(si(t.peak_sends)),
        Cell::from(format!("{}/{}", c.parked_senders, c.parked_receivers)),
        Cell::from(rate(|r| r.failures, si)),
        Cell::from(si(c.overflow_drops as f64)),
        Cell::from(si(c.rv_matches as f64)),
        Cell::from(sparkline(t.history.iter().copied(), TREND, app.ascii)).style(app.style(Color::Cyan)),
    ];
    let mut style = Style::default();
    if c.closed {
        style = style.add_modifier(Modifier::DIM);
    }
    if selected {
        style = style.add_modifier(Modifier::REVERSED);
    }
    (cells, style)
}

fn detail(f: &mut Frame<'_>, app: &App, t: &Tracked, area: Rect) {
    let c = &t.now;
    let block = Block::default().borders(Borders::ALL).title(format!(" {} (id {}) ", c.name, c.id));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let [left, right] = Layout::horizontal([Constraint::Length(84), Constraint::Min(10)]).areas(inner);
    let r = t.rates.unwrap_or_default();
    let d = |get: fn(&super::sample::ChannelSample) -> u64| t.delta(get);
    // Each failure kind with its change over the last interval.
    let fails = |name: &str, get: fn(&super::sample::ChannelSample) -> &super::sample::FailureCounts| {
        let (now, prev) = (get(c), t.prev.as_ref().map(get));
        let kind = |label: &str, f: fn(&super::sample::FailureCounts) -> u64| {
            let delta = prev.map_or(0, |p| f(now).saturating_sub(f(p)));
            format!("{label} {} (+{delta})", f(now))
        };
        format!(
            "{name:<13} {}  {}  {}  {}",
            kind("would_block", |f| f.would_block),
            kind("timeout", |f| f.timeout),
            kind("closed", |f| f.closed),
            kind("canceled", |f| f.canceled)
        )
    };
    let mut lines = vec![
        format!("kind          {}", c.kind),
        format!("depth         {} / {}", c.len, c.capacity.map_or("unbounded".into(), |n| n.to_string())),
        format!("closed        {}", if c.closed { "yes" } else { "no" }),
        format!("parked        {} senders, {} receivers", c.parked_senders, c.parked_receivers),
        format!(
            "sends         {} (+{}, {}/s, peak {}/s)",
            c.sends,
            d(|c| c.sends),
            si(r.sends),
            si(t.peak_sends)
        ),
        format!("receives      {} (+{}, {}/s)", c.recvs, d(|c| c.recvs), si(r.recvs)),
        format!(
            "bytes sent    {} ({}, peak {})",
            c.bytes_sent,
            bytes_rate(r.bytes_sent),
            bytes_rate(t.peak_bytes)
        ),
        format!("bytes recv    {} ({})", c.bytes_recv, bytes_rate(r.bytes_recv)),
        fails("send fails", |c| &c.send_failures),
        fails("recv fails", |c| &c.recv_failures),
        format!("overflow drop {} (+{})", c.overflow_drops, d(|c| c.overflow_drops)),
        format!("rendezvous    {} matches, {} cancels", c.rv_matches, c.rv_cancels),
    ];
    if let Some(z) = c.zero_copy {
        lines.push(format!(
            "zero copy     {} sent, {} received, {} canceled, {} aborted",
            z.sent, z.received, z.canceled, z.aborted_close
        ));
    }
    let text: Vec<Line<'_>> = lines.into_iter().map(Line::from).collect();
    f.render_widget(Paragraph::new(text).wrap(Wrap { trim: false }), left);
    let data: Vec<u64> = t.history.iter().map(|&v| v.max(0.0).round() as u64).collect();
    let mut spark = Sparkline::default()
        .block(Block::default().borders(Borders::ALL).title(" sends/s history "))
        .data(&data)
        .style(app.style(Color::Cyan));
    if app.ascii {
        spark = spark.bar_set(ASCII_BARS);
    }
    f.render_widget(spark, right);
}

/// Samples shown in a row's trend.
const TREND: usize = 24;

const ASCII_BARS: ratatui::symbols::bar::Set<'static> = ratatui::symbols::bar::Set {
    full: "#",
    seven_eighths: "#",
    three_quarters: "*",
    five_eighths: "+",
    half: "=",
    three_eighths: "-",
    one_quarter: ":",
    one_eighth: ".",
    empty: " ",
};

fn scheduler(f: &mut Frame<'_>, app: &App, area: Rect) {
    let block = Block::default().borders(Borders::ALL).title(" scheduler ");
    // The coroutine report splits running from runnable; the scheduler's counters do not.
    let states = match &app.state.coros.now {
        Some(c) => format!("running {}  runnable {}  parked {}", c.running, c.runnable, c.parked),
        None => app
            .state
            .sched
            .map_or_else(String::new, |s| format!("running {}  parked {}", s.now.running, s.now.parked)),
    };
    let text = match &app.state.sched {
        None if app.state.coros.now.is_some() => vec![Line::from(states)],
        None => vec![Line::from("no scheduler counters from this source")],
        Some(s) => vec![
            Line::from(format!(
                "workers {}  {states}  stacks {} live / {} pooled",
                s.now.workers, s.now.stacks_live, s.now.stacks_pooled
            )),
            Line::from({
                let rates = [
                    s.spawned_per_sec,
                    s.completed_per_sec,
                    s.steals_per_sec,
                    s.inject_pulls_per_sec,
                    s.timer_fires_per_sec,
                ]
                .map(si);
                let [spawned, completed, steals, inject, timers] = &rates;
                let long = format!(
                    "spawned/s {spawned}  completed/s {completed}  steals/s {steals}  inject pulls/s {inject}  timer fires/s {timers}"
                );
                // Shorter words where the long line would be cut (80 columns).
                if long.chars().count() + 2 <= usize::from(area.width) {
                    long
                } else {
                    format!(
                        "spawn/s {spawned}  done/s {completed}  steal/s {steals}  inject/s {inject}  timer/s {timers}"
                    )
                }
            }),
        ],
    };
    f.render_widget(Paragraph::new(text).block(block), area);
}

#[cfg(test)]
pub(crate) mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use super::super::sample::{ChannelSample, FailureCounts, SCHEMA, Sample, SchedSample};
    use super::super::tui::{Action, on_key};
    use super::*;

    fn chan(id: u64, name: &str, kind: &str, cap: Option<u64>, len: u64, sends: u64) -> ChannelSample {
        ChannelSample {
            id,
            name: name.into(),
            kind: kind.into(),
            capacity: cap,
            len,
            closed: false,
            parked_senders: id % 3,
            parked_receivers: id % 2,
            sends,
            recvs: sends.saturating_sub(len),
            bytes_sent: sends * 64,
            bytes_recv: sends.saturating_sub(len) * 64,
            send_failures: FailureCounts { timeout: id, ..FailureCounts::default() },
            recv_failures: FailureCounts::default(),
            overflow_drops: 0,
            rv_matches: if kind == "rendezvous" { sends } else { 0 },
            rv_cancels: 0,
            zero_copy: None,
        }
    }

    fn sched(spawned: u64) -> SchedSample {
        SchedSample {
            workers: 4,
            spawned,
            completed: spawned - 10,
            running: 3,
            parked: 7,
            steals: spawned / 10,
            inject_pulls: 5,
            timer_fires: spawned * 2,
            stacks_live: 10,
            stacks_pooled: 2,
        }
    }

    /// An app after three samples one second apart: steady rates, one channel full.
    fn app() -> App {
        let mut app = App::new(false, false);
        for (i, k) in [0u64, 1, 3].into_iter().enumerate() {
            app.state.update(Sample {
                schema: SCHEMA,
                taken_ns: 1_000_000_000 * (i as u64 + 1),
                source: "unix:/run/app.sock".into(),
                channels: vec![
                    chan(1, "ingress", "buffered", Some(256), 250, 1000 * k),
                    chan(2, "work", "rendezvous", Some(0), 0, 400 * k),
                    chan(3, "results", "unlimited", None, 17, 2500 * k),
                ],
                sched: Some(sched(100 + 50 * k)),
                coroutines: None,
                metrics: vec![],
            });
        }
        app
    }

    /// The screen `draw` makes of `app` at `w`×`h`, as text.
    pub(crate) fn render(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| draw(f, app)).unwrap();
        let buf = t.backend().buffer();
        (0..h)
            .map(|y| (0..w).map(|x| buf[(x, y)].symbol()).collect::<String>().trim_end().to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub(crate) fn key(app: &mut App, code: KeyCode) -> Action {
        on_key(app, KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn main_screen_80x24() {
        insta::assert_snapshot!("main_80x24", render(&app(), 80, 24));
    }

    #[test]
    fn main_screen_200x50() {
        insta::assert_snapshot!("main_200x50", render(&app(), 200, 50));
    }

    #[test]
    fn detail_and_help() {
        let mut a = app();
        key(&mut a, KeyCode::Down);
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.detail, Some(3), "sorted by name: ingress, results, work");
        insta::assert_snapshot!("detail_results", render(&a, 120, 30));
        key(&mut a, KeyCode::Esc);
        key(&mut a, KeyCode::Char('?'));
        insta::assert_snapshot!("help", render(&a, 100, 24));
        key(&mut a, KeyCode::Esc);
        assert!(!a.help && a.detail.is_none());
        assert_eq!(key(&mut a, KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn empty_registry_says_so() {
        let mut a = App::new(true, false);
        a.state.update(Sample {
            schema: SCHEMA,
            taken_ns: 1,
            source: "demo".into(),
            channels: vec![],
            sched: None,
            coroutines: None,
            metrics: vec![],
        });
        let screen = render(&a, 80, 24);
        assert!(screen.contains("no named channels yet"), "{screen}");
        assert!(screen.contains("no scheduler counters"), "{screen}");
    }

    #[test]
    fn rates_on_screen_are_the_counter_deltas() {
        let screen = render(&app(), 200, 50);
        let row = |name: &str| screen.lines().find(|l| l.contains(name)).unwrap().to_string();
        // ingress: sends 1000 -> 3000 over 1 s = 2.0k/s; 128 kB/s of 64-byte values.
        assert!(
            row("ingress").contains("2.0k") && row("ingress").contains("128.0kB/s"),
            "{}",
            row("ingress")
        );
        // results: 2500 -> 7500: 5.0k/s.
        assert!(row("results").contains("5.0k"), "{}", row("results"));
        assert!(screen.contains("spawned/s 100"), "{screen}");
    }

    #[test]
    fn sorting_and_filtering_by_keys() {
        let mut a = app();
        key(&mut a, KeyCode::Char('s'));
        assert_eq!(a.sort, SortKey::SendRate);
        let names: Vec<String> = a.state.rows(a.sort, &a.filter).iter().map(|t| t.now.name.clone()).collect();
        assert_eq!(names, ["results", "ingress", "work"]);
        key(&mut a, KeyCode::Char('/'));
        for c in "ing".chars() {
            key(&mut a, KeyCode::Char(c));
        }
        key(&mut a, KeyCode::Enter);
        let screen = render(&a, 120, 24);
        assert!(screen.contains("filter: ing") && screen.contains("ingress"), "{screen}");
        assert!(!screen.contains("results"), "{screen}");
        key(&mut a, KeyCode::Char('/'));
        key(&mut a, KeyCode::Esc);
        assert!(a.filter.is_empty());
        key(&mut a, KeyCode::Char('/'));
        key(&mut a, KeyCode::Char('z'));
        key(&mut a, KeyCode::Enter);
        assert!(render(&a, 120, 24).contains("no channel matches"));
    }

    #[test]
    fn pause_reset_and_ascii() {
        let mut a = app();
        key(&mut a, KeyCode::Char(' '));
        assert!(render(&a, 100, 24).contains("PAUSED"));
        key(&mut a, KeyCode::Char('r'));
        assert_eq!(a.state.channel(1).unwrap().peak_sends, 0.0);
        a.ascii = true;
        let screen = render(&a, 200, 30);
        assert!(screen.contains("#######") && !screen.contains('█'), "{screen}");
        assert!(screen.contains("inf"), "unbounded capacity in ASCII: {screen}");
    }

    /// An app with `n` channels `ch00..`, the later ones busier.
    fn many(n: u64) -> App {
        let mut app = App::new(true, false);
        for step in 0..2u64 {
            app.state.update(Sample {
                schema: SCHEMA,
                taken_ns: 1_000_000_000 * (step + 1),
                source: "unix:/run/app.sock".into(),
                channels: (0..n)
                    .map(|i| chan(i + 1, &format!("ch{i:02}"), "buffered", Some(8), 0, step * i * 10))
                    .collect(),
                sched: None,
                coroutines: None,
                metrics: vec![],
            });
        }
        app
    }

    #[test]
    fn the_table_scrolls_to_keep_the_selection_in_view() {
        let mut a = many(7);
        // 100x12: the table has room for 3 rows below its header.
        for _ in 0..6 {
            key(&mut a, KeyCode::Char('j'));
        }
        assert_eq!(a.selected_id(), Some(7));
        let screen = render(&a, 100, 12);
        assert!(
            screen.contains("ch06") && !screen.contains("ch00"),
            "the last row shows, the first scrolled away:\n{screen}"
        );
        key(&mut a, KeyCode::Enter);
        assert_eq!(a.detail, Some(7), "Enter opens the channel that is shown selected");
        key(&mut a, KeyCode::Esc);
        key(&mut a, KeyCode::Home);
        let screen = render(&a, 100, 12);
        assert!(screen.contains("ch00") && !screen.contains("ch06"), "{screen}");
        key(&mut a, KeyCode::End);
        assert_eq!(a.selected_id(), Some(7));
    }

    #[test]
    fn the_selection_follows_its_channel_when_the_order_changes() {
        let mut a = many(5);
        key(&mut a, KeyCode::Char('j'));
        assert_eq!(a.selected_id(), Some(2), "ch01");
        key(&mut a, KeyCode::Char('s')); // sends/s: ch04 first, ch01 fourth
        assert_eq!(a.selected_id(), Some(2), "still ch01 in the new order");
        key(&mut a, KeyCode::Char('j'));
        assert_eq!(a.selected_id(), Some(1), "below ch01 by rate is ch00");
    }

    #[test]
    fn the_header_counts_what_is_shown_and_says_what_it_does_not_know() {
        let mut first = App::new(false, false);
        first.state.update(Sample {
            schema: SCHEMA,
            taken_ns: 1,
            source: "demo".into(),
            channels: vec![chan(1, "ingress", "buffered", Some(4), 0, 0)],
            sched: None,
            coroutines: None,
            metrics: vec![],
        });
        let screen = render(&first, 100, 24);
        assert!(screen.contains("interval -"), "no interval from one sample: {screen}");
        let mut a = app();
        a.filter = "ingr".into();
        assert!(render(&a, 120, 24).contains("1 of 3 channels"));
        a.replay = Some("rec.ndjson".into());
        a.waiting = Some(std::time::Duration::from_millis(3200));
        let top = render(&a, 160, 24).lines().next().unwrap().to_string();
        assert!(top.contains("replay of rec.ndjson (recorded from unix:/run/app.sock)"), "{top}");
        assert!(top.contains("NO ANSWER for 3.2s"), "{top}");
        let mut long = app();
        long.state.source = format!("unix:/{}/chanmon.sock", "deep/".repeat(30));
        long.waiting = Some(std::time::Duration::from_millis(1500));
        long.paused = true;
        let top = render(&long, 80, 24).lines().next().unwrap().to_string();
        assert!(top.contains("NO ANSWER for 1.5s (stale)"), "a long address hides the warning: {top}");
        assert!(top.contains("PAUSED"), "{top}");
    }

    #[test]
    fn the_key_bar_fits_80_columns_and_the_help_explains_the_columns() {
        let a = app();
        let screen = render(&a, 80, 24);
        let bar = screen.lines().last().unwrap();
        assert!(bar.ends_with("q quit"), "the footer is not cut: {bar:?}");
        let mut a = app();
        key(&mut a, KeyCode::Char('?'));
        let help = render(&a, 100, 24);
        // Rows of the help box are `{key:>16}  {text}`; the table's header behind it has
        // the same words, but never right-aligned in 16 columns.
        for term in ["parked", "drops", "rv", "fail/s", "peak/s"] {
            assert!(help.contains(&format!("{term:>16}  ")), "{term} in the help:\n{help}");
        }
    }
}
