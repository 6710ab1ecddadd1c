//! The key bar at the bottom of the screen and the help overlay (`?`).

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Modifier};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};

use super::view::{App, Pane};

/// The key bar: what went wrong, or the keys that fit in `width`.
pub fn key_bar(app: &App, width: u16) -> Line<'static> {
    if let Some(e) = &app.error {
        return Line::from(Span::styled(
            format!("{e}  (retrying; q quits)"),
            app.style(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if app.ended {
        return Line::from(Span::styled(
            format!("the replay ended after {} samples  (q quits)", app.state.samples),
            app.style(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    if app.editing_filter {
        return Line::from("type a filter  Enter keep  Esc clear");
    }
    // The longest that fits: the full bar, then shorter words, then the essentials.
    let choices: &[&str] = match app.pane {
        _ if app.report => &["d or Esc close the report  ? help  q quit"],
        Pane::Channels if app.detail.is_some() => {
            &["Esc back  space pause  r reset peaks  ? help  q quit", "Esc back  ? help  q quit"]
        }
        Pane::Coroutines if app.coro.detail.is_some() => {
            &["Esc back  c channels  space pause  ? help  q quit", "Esc back  ? help  q quit"]
        }
        Pane::Channels => &[
            "? help  / filter  s sort  ↑↓ select  Enter detail  c coroutines  m metrics  space pause  r reset peaks  q quit",
            "? help  / filter  s sort  ↑↓ select  Enter detail  c coroutines  m metrics  space pause  q quit",
            "? help  / filter  s sort  ↑↓ select  Enter detail  c coroutines  m metrics  q quit",
            "? help  / filter  s sort  ↑↓ select  Enter detail  c coroutines  q quit",
            "? help  / filter  s sort  Enter detail  c coroutines  q quit",
        ],
        Pane::Metrics => &[
            "? help  / filter  ↑↓ scroll  m channels  c coroutines  space pause  q quit",
            "? help  / filter  ↑↓ scroll  m channels  q quit",
        ],
        Pane::Coroutines => &[
            "? help  / filter  s sort  ↑↓ select  Enter detail  c channels  d deadlock  space pause  q quit",
            "? help  / filter  s sort  ↑↓ select  Enter detail  c channels  d deadlock  q quit",
            "? help  / filter  s sort  ↑↓ select  Enter detail  c channels  q quit",
            "? help  / filter  s sort  Enter detail  c channels  q quit",
        ],
    };
    let keys = |k: &str| if app.ascii { k.replace("↑↓", "up/down") } else { k.to_string() };
    let fits = choices.iter().map(|k| keys(k)).find(|k| k.chars().count() <= usize::from(width));
    Line::from(fits.unwrap_or_else(|| keys(choices[choices.len() - 1])))
}

/// Every key, and what the less obvious columns mean, in the help overlay.
pub const KEYS: [(&str, &str); 21] = [
    ("?", "show or hide this help"),
    ("c, Tab", "switch between the channels and the coroutines"),
    ("m", "show the program's own metrics (a proxy's counters), or leave them"),
    ("/", "filter by name, or a coroutine's wait (Enter keeps it, Esc clears it)"),
    ("s", "sort by the next key (the title says which)"),
    ("up / down, k / j", "select a row (PgUp / PgDn, Home / End too)"),
    ("Enter", "open the selected row's detail view"),
    ("Esc", "close the detail view, the report or the help"),
    ("d", "show or hide the deadlock report"),
    ("space", "pause or resume sampling"),
    ("r", "reset peak rates"),
    ("q, Ctrl-C", "quit"),
    ("", "rates: exact counter deltas over the process's own clock"),
    ("parked", "senders / receivers waiting on the channel now"),
    ("fail/s", "failed operations per second (Enter: by reason)"),
    ("drops", "values dropped by an overflow policy or by conflation"),
    ("rv", "rendezvous hand-offs from a sender to a receiver"),
    ("peak/s", "highest sends/s seen (r resets it)"),
    ("-", "no rate yet: a channel's first sample"),
    ("for", "a coroutine's time in this park, from the first look at it"),
    ("stuck", "parked on a channel whose other side did not move (--stuck-after)"),
];

/// The help overlay.
pub fn help(f: &mut Frame<'_>, app: &App) {
    let area = f.area();
    let w = area.width.min(90);
    let h = (KEYS.len() as u16 + 2).min(area.height);
    let r = Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h };
    let lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|(k, what)| {
            Line::from(vec![Span::styled(format!("{k:>16}  "), app.style(Color::Yellow)), Span::raw(*what)])
        })
        .collect();
    f.render_widget(Clear, r);
    f.render_widget(Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" keys ")), r);
}
