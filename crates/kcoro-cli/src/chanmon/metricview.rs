//! The metrics view (`m`): the monitored program's own counters and gauges (a proxy's
//! connections, bytes and errors per listener and backend, say), one row per sample, in
//! the program's order, with each counter's rate over the last interval.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};

use super::sample::MetricSample;
use super::view::{App, si};

/// One metric sample as the monitor tracks it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackedMetric {
    pub now: MetricSample,
    /// Per second over the latest interval: counters only, from their second sample on,
    /// and not when the counter went backwards (a restarted program).
    pub rate: Option<f64>,
}

impl TrackedMetric {
    /// `name=value` pairs, comma separated.
    pub fn labels(&self) -> String {
        let pairs: Vec<String> = self.now.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.join(",")
    }

    fn matches(&self, filter: &str) -> bool {
        filter.is_empty()
            || self.now.name.contains(filter)
            || self.now.labels.iter().any(|(_, v)| v.contains(filter))
    }
}

/// The latest metric samples.
#[derive(Debug, Default)]
pub struct Metrics {
    rows: Vec<TrackedMetric>,
}

impl Metrics {
    /// Takes in a sample's metrics, `seconds` after the previous sample (0 for the first).
    pub fn update(&mut self, metrics: Vec<MetricSample>, seconds: f64) {
        let previous = std::mem::take(&mut self.rows);
        self.rows = metrics
            .into_iter()
            .map(|now| {
                let prev = previous.iter().find(|p| p.now.name == now.name && p.now.labels == now.labels);
                let rate = match (prev.and_then(|p| p.now.value), now.value) {
                    (Some(a), Some(b)) if now.is_counter() && seconds > 0.0 && b >= a => {
                        Some((b - a) / seconds)
                    }
                    _ => None,
                };
                TrackedMetric { now, rate }
            })
            .collect();
    }

    /// The rows whose name or a label value contains `filter`.
    pub fn rows(&self, filter: &str) -> Vec<&TrackedMetric> {
        self.rows.iter().filter(|m| m.matches(filter)).collect()
    }

    /// Samples tracked now.
    pub fn len(&self) -> usize {
        self.rows.len()
    }
}

/// `(shown, of, "metrics", order)` for the title.
pub fn counts(app: &App) -> (usize, u64, &'static str, &'static str) {
    let m = &app.state.metrics;
    (m.rows(&app.filter).len(), m.len() as u64, "metrics", "program's order")
}

/// The table, scrolled to [`App::metric_offset`].
pub fn body(f: &mut Frame<'_>, app: &App, area: Rect) {
    let rows = app.state.metrics.rows(&app.filter);
    if rows.is_empty() {
        let text = if app.state.metrics.len() > 0 {
            "no metric matches the filter (Esc clears it)"
        } else {
            "this program reports no metrics of its own: a program adds them with \
             kcoro_ipc::ServerBuilder::metrics (kcoro proxy --monitor does)"
        };
        let block = Block::default().borders(Borders::ALL).title(" metrics ");
        f.render_widget(Paragraph::new(text).wrap(Wrap { trim: true }).block(block), area);
        return;
    }
    let visible = usize::from(area.height.saturating_sub(3));
    let offset = app.metric_offset.min(rows.len().saturating_sub(visible.max(1)));
    let inner = area.width.saturating_sub(2);
    let name_w = rows.iter().map(|m| m.now.name.chars().count()).max().unwrap_or(8).clamp(8, 48) as u16;
    let name_w = name_w.min(inner / 2);
    let labels_w = rows.iter().map(|m| m.labels().chars().count()).max().unwrap_or(6).clamp(6, 48) as u16;
    let labels_w = labels_w.min(inner.saturating_sub(name_w + 24));
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let header = Row::new(["metric", "labels", "value", "per s"].map(|h| Cell::from(h).style(bold)));
    let body: Vec<Row<'_>> = rows
        .iter()
        .skip(offset)
        .take(visible.max(1))
        .map(|m| {
            let value = m.now.value.map_or_else(|| "-".to_string(), exact_or_si);
            let rate = match (m.now.is_counter(), m.rate) {
                (true, Some(r)) => si(r),
                (true, None) => "-".to_string(),
                (false, _) => String::new(),
            };
            Row::new([
                Cell::from(m.now.name.clone()),
                Cell::from(m.labels()),
                Cell::from(value),
                Cell::from(rate),
            ])
        })
        .collect();
    let title = if offset > 0 || rows.len() > visible {
        format!(" metrics {}-{} of {} ", offset + 1, (offset + visible).min(rows.len()), rows.len())
    } else {
        " metrics ".to_string()
    };
    let widths = [
        Constraint::Length(name_w),
        Constraint::Length(labels_w),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    let table =
        Table::new(body, widths).header(header).block(Block::default().borders(Borders::ALL).title(title));
    f.render_widget(table, area);
}

/// A whole number below 10 million as it is (`42`, `1048576`: a counter read exactly),
/// anything else shortened (`1.2G`, `0.25`).
fn exact_or_si(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e7 { format!("{v:.0}") } else { si(v) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chanmon::sample::{SCHEMA, Sample};
    use crate::chanmon::view::Pane;
    use crate::chanmon::view::tests::{key, render};
    use kcoro::monitor::Metric;
    use ratatui::crossterm::event::KeyCode;

    fn sample(taken_ns: u64, accepted: f64, open: f64) -> Sample {
        let metrics = [
            Metric::counter("kcoro_proxy_connections_total", "Connections accepted.", accepted)
                .label("listener", "web"),
            Metric::gauge("kcoro_proxy_connections_open", "Connections open now.", open)
                .label("listener", "web"),
            Metric::gauge("kcoro_proxy_backend_up", "1 if up.", 1.0)
                .label("pool", "app")
                .label("backend", "127.0.0.1:8081"),
        ];
        Sample {
            schema: SCHEMA,
            taken_ns,
            source: "tcp:127.0.0.1:7000".into(),
            channels: vec![],
            sched: None,
            coroutines: None,
            metrics: metrics.iter().map(MetricSample::from_metric).collect(),
        }
    }

    #[test]
    fn whole_values_show_exactly_and_the_rest_shortened() {
        assert_eq!(exact_or_si(1_048_576.0), "1048576");
        assert_eq!(exact_or_si(3.0), "3");
        assert_eq!(exact_or_si(2.5e9), si(2.5e9));
        assert_eq!(exact_or_si(0.25), si(0.25));
    }

    #[test]
    fn counters_get_rates_from_their_deltas_and_gauges_none() {
        let mut m = Metrics::default();
        m.update(sample(0, 100.0, 3.0).metrics, 0.0);
        assert!(m.rows("").iter().all(|r| r.rate.is_none()), "no rate before a second sample");
        m.update(sample(2_000_000_000, 160.0, 5.0).metrics, 2.0);
        let rows = m.rows("");
        assert_eq!(rows[0].rate, Some(30.0));
        assert_eq!(rows[1].rate, None, "a gauge has no rate");
        m.update(sample(3_000_000_000, 10.0, 5.0).metrics, 1.0);
        assert_eq!(m.rows("")[0].rate, None, "a counter that went backwards: a restart, no rate");
        assert_eq!(m.rows("8081").len(), 1, "the filter matches label values");
        assert_eq!(m.rows("connections").len(), 2, "and names");
    }

    #[test]
    fn m_shows_the_programs_metrics_with_rates_and_m_or_tab_leaves_them() {
        let mut a = App::new(false, false);
        a.state.update(sample(0, 100.0, 3.0));
        a.state.update(sample(1_000_000_000, 150.0, 4.0));
        key(&mut a, KeyCode::Char('m'));
        let screen = render(&a, 100, 24);
        assert!(screen.contains("3 metrics"), "{screen}");
        let row = screen.lines().find(|l| l.contains("kcoro_proxy_connections_total")).unwrap_or_default();
        let cells: Vec<&str> = row.split(['│', ' ']).filter(|c| !c.is_empty()).collect();
        assert_eq!(cells, ["kcoro_proxy_connections_total", "listener=web", "150", "50"], "{screen}");
        assert!(screen.contains("pool=app,backend=127.0.0.1:8081"), "{screen}");
        key(&mut a, KeyCode::Tab);
        assert_eq!(a.pane, Pane::Channels, "Tab from the metrics goes back to the channels");
        key(&mut a, KeyCode::Char('c'));
        key(&mut a, KeyCode::Char('m'));
        assert!(render(&a, 100, 24).contains("3 metrics"), "m from the coroutines too");
        key(&mut a, KeyCode::Char('m'));
        assert_eq!(a.pane, Pane::Channels, "m again leaves the view");
    }

    #[test]
    fn a_program_without_metrics_says_how_to_add_them_and_long_lists_scroll() {
        let mut a = App::new(false, false);
        key(&mut a, KeyCode::Char('m'));
        assert!(render(&a, 100, 24).contains("reports no metrics"));
        let many: Vec<MetricSample> = (0..60)
            .map(|i| {
                MetricSample::from_metric(&Metric::gauge("g", "", f64::from(i)).label("i", &i.to_string()))
            })
            .collect();
        a.state.update(Sample { metrics: many, ..sample(1, 0.0, 0.0) });
        key(&mut a, KeyCode::End);
        let screen = render(&a, 100, 24);
        assert!(screen.contains("i=59") && !screen.contains("i=0 "), "{screen}");
        assert!(screen.contains("of 60"), "{screen}");
        key(&mut a, KeyCode::Home);
        assert!(render(&a, 100, 24).contains("i=0 "));
    }
}
