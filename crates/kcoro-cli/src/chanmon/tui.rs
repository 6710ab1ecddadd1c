//! The live screen: a sampler thread samples on a tick; the screen redraws after each
//! sample or key (and every 100 ms while it waits for one, to show how long), sleeping
//! in the terminal's event poll in between (never a busy loop).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::source::Source;
use super::tick::Ticker;
use super::view::{self, App, Pane};

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

/// Rows moved by PageUp / PageDown.
const PAGE: isize = 10;

/// Applies one key to the screen state.
pub fn on_key(app: &mut App, key: KeyEvent) -> Action {
    if key.kind == KeyEventKind::Release {
        return Action::Continue;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        return Action::Quit;
    }
    if app.editing_filter {
        match key.code {
            KeyCode::Enter => app.editing_filter = false,
            KeyCode::Esc => {
                app.editing_filter = false;
                app.filter.clear();
            }
            KeyCode::Backspace => {
                app.filter.pop();
            }
            KeyCode::Char(c) => app.filter.push(c),
            _ => {}
        }
        return Action::Continue;
    }
    let coros = app.pane == Pane::Coroutines;
    let pane = app.pane;
    let select = |app: &mut App, by: isize| match pane {
        Pane::Coroutines => app.move_coro_selection(by),
        Pane::Metrics => app.scroll_metrics(by),
        Pane::Channels => app.move_selection(by),
    };
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') => app.help = !app.help,
        KeyCode::Esc if app.help => app.help = false,
        KeyCode::Esc if app.report => app.report = false,
        KeyCode::Esc if coros => app.coro.detail = None,
        KeyCode::Esc => app.detail = None,
        KeyCode::Char('c') => app.pane = if coros { Pane::Channels } else { Pane::Coroutines },
        KeyCode::Tab => app.pane = app.pane.next(),
        KeyCode::Char('m') => {
            app.pane = if pane == Pane::Metrics { Pane::Channels } else { Pane::Metrics };
        }
        KeyCode::Char('d') => app.report = !app.report,
        KeyCode::Char('/') => {
            app.editing_filter = true;
            app.detail = None;
            app.coro.detail = None;
        }
        // The metrics view keeps the program's order and has no detail.
        KeyCode::Enter | KeyCode::Char('s') if pane == Pane::Metrics => {}
        // The selection stays on its row wherever the new order puts it.
        KeyCode::Char('s') if coros => app.coro.sort = app.coro.sort.next(),
        KeyCode::Char('s') => app.sort = app.sort.next(),
        KeyCode::Char(' ') => app.paused = !app.paused,
        KeyCode::Char('r') => app.state.reset_peaks(),
        KeyCode::Down | KeyCode::Char('j') => select(app, 1),
        KeyCode::Up | KeyCode::Char('k') => select(app, -1),
        KeyCode::PageDown => select(app, PAGE),
        KeyCode::PageUp => select(app, -PAGE),
        KeyCode::Home => select(app, isize::MIN),
        KeyCode::End => select(app, isize::MAX),
        KeyCode::Enter if coros => app.coro.detail = app.coro_selected_id(),
        KeyCode::Enter => app.detail = app.selected_id(),
        _ => {}
    }
    Action::Continue
}

/// What the sampler thread reports.
enum Report {
    Sample(Box<super::sample::Sample>),
    Failed(String),
    /// A recording ended.
    Ended,
}

/// Runs the screen until `q`. Returns the source's error, if the last sample failed.
///
/// Samples are taken on a thread of their own, so a target that stops answering (a
/// stopped process, a silent socket) never freezes the screen or its keys: the screen
/// says how long it has been waiting, and `q` quits at once.
pub fn run(source: Box<dyn Source>, mut app: App, interval: Duration) -> Result<Option<String>, String> {
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot open the terminal: {e}"))?;
    let (reports, paused, stop) = sampler(source, interval);
    app.interval = interval;
    let result = screen(&mut terminal, &reports, &paused, &mut app);
    ratatui::restore();
    // The sampler may be waiting on its target; it sees `stop` when it returns, and the
    // process exits without waiting for it.
    drop(stop);
    // Quitting while a sample is overdue is quitting on a target that stopped answering.
    let overdue =
        app.waiting.map(|w| format!("no answer from the monitored process for {:.1}s", w.as_secs_f64()));
    result.map(|()| app.error.or(overdue))
}

/// Starts the thread that samples `source` on a [`Ticker`] (while not paused) and reports
/// each result. It ends when the returned stop sender is dropped or a recording ends.
fn sampler(
    mut source: Box<dyn Source>,
    interval: Duration,
) -> (mpsc::Receiver<Report>, Arc<AtomicBool>, mpsc::Sender<()>) {
    let (tx, reports) = mpsc::channel();
    let (stop, stopped) = mpsc::channel::<()>();
    let paused = Arc::new(AtomicBool::new(false));
    let pause = Arc::clone(&paused);
    std::thread::spawn(move || {
        let mut ticker = Ticker::new(interval, Instant::now());
        loop {
            match stopped.recv_timeout(ticker.until_due(Instant::now())) {
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
            if !pause.load(Ordering::Relaxed) {
                let report = match source.next_sample() {
                    Ok(Some(s)) => Report::Sample(Box::new(s)),
                    Ok(None) => Report::Ended,
                    Err(e) => Report::Failed(e),
                };
                let ended = matches!(report, Report::Ended);
                if tx.send(report).is_err() || ended {
                    return;
                }
            }
            ticker.taken(Instant::now());
        }
    });
    (reports, paused, stop)
}

/// How often the screen looks for new samples and redraws the waiting time, at most.
const REDRAW: Duration = Duration::from_millis(100);

fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    reports: &mpsc::Receiver<Report>,
    paused: &AtomicBool,
    app: &mut App,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let mut waiting_since = Instant::now();
    loop {
        while let Ok(r) = reports.try_recv() {
            waiting_since = Instant::now();
            match r {
                Report::Sample(s) => {
                    app.state.update(*s);
                    app.error = None;
                }
                Report::Failed(e) => app.error = Some(e),
                Report::Ended => app.ended = true,
            }
        }
        let quiet = waiting_since.elapsed();
        app.waiting = (!app.paused && !app.ended && quiet > app.interval + STALE_AFTER).then_some(quiet);
        terminal.draw(|f| view::draw(f, app)).map_err(io)?;
        if event::poll(REDRAW.min(app.interval)).map_err(io)?
            && let Event::Key(k) = event::read().map_err(io)?
        {
            if on_key(app, k) == Action::Quit {
                return Ok(());
            }
            paused.store(app.paused, Ordering::Relaxed);
        }
    }
}

/// How long past its interval a sample may be late before the screen says it is waiting.
const STALE_AFTER: Duration = Duration::from_millis(500);
