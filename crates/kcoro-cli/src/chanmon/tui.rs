//! The live screen: samples on a tick, redraws after each sample or key, and sleeps in
//! the terminal's event poll in between (never a busy loop).

use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::source::Source;
use super::view::{self, App};

/// What a key asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Continue,
    Quit,
}

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
        app.selected = 0;
        return Action::Continue;
    }
    match key.code {
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Char('?') => app.help = !app.help,
        KeyCode::Esc if app.help => app.help = false,
        KeyCode::Esc => app.detail = None,
        KeyCode::Char('/') => {
            app.editing_filter = true;
            app.detail = None;
        }
        KeyCode::Char('s') => {
            app.sort = app.sort.next();
            app.selected = 0;
        }
        KeyCode::Char(' ') => app.paused = !app.paused,
        KeyCode::Char('r') => app.state.reset_peaks(),
        KeyCode::Down | KeyCode::Char('j') => {
            let n = app.state.rows(app.sort, &app.filter).len();
            app.selected = (app.selected + 1).min(n.saturating_sub(1));
        }
        KeyCode::Up | KeyCode::Char('k') => app.selected = app.selected.saturating_sub(1),
        KeyCode::Enter => app.detail = app.selected_id(),
        _ => {}
    }
    Action::Continue
}

/// Runs the screen until `q`. Returns the source's error, if sampling stopped on one.
pub fn run(source: &mut dyn Source, mut app: App, interval: Duration) -> Result<Option<String>, String> {
    let mut terminal = ratatui::try_init().map_err(|e| format!("cannot open the terminal: {e}"))?;
    let result = screen(&mut terminal, source, &mut app, interval);
    ratatui::restore();
    result.map(|()| app.error)
}

fn screen(
    terminal: &mut ratatui::DefaultTerminal,
    source: &mut dyn Source,
    app: &mut App,
    interval: Duration,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.to_string();
    let mut next = Instant::now();
    loop {
        if Instant::now() >= next {
            next += interval;
            if !app.paused && app.error.is_none() {
                match source.next_sample() {
                    Ok(Some(s)) => app.state.update(s),
                    Ok(None) => app.error = Some("the recording ended".into()),
                    Err(e) => app.error = Some(e),
                }
            }
        }
        terminal.draw(|f| view::draw(f, app)).map_err(io)?;
        let wait = next.saturating_duration_since(Instant::now());
        if event::poll(wait).map_err(io)?
            && let Event::Key(k) = event::read().map_err(io)?
            && on_key(app, k) == Action::Quit
        {
            return Ok(());
        }
    }
}
