//! One frame of `ringport top`: header, throughput sparklines, connection
//! table, disconnect reasons and errors, `ringport log`'s messages, keys.

use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, List, ListItem, Paragraph, Row, Sparkline, Table};
use ratatui::Frame;

use super::state::{Input, State, HISTORY_S};

const MIB: f64 = 1024.0 * 1024.0;

/// Draws the whole screen.
pub fn frame(f: &mut Frame<'_>, st: &State) {
    let has_messages = st.messages().is_some();
    let mut rows = vec![
        Constraint::Length(4), // header
        Constraint::Length(5), // sparklines
        Constraint::Min(6),    // table + reasons
    ];
    if has_messages {
        rows.push(Constraint::Length(12));
    }
    rows.push(Constraint::Length(1)); // keys
    let area = Layout::default()
        .direction(Direction::Vertical)
        .constraints(rows)
        .split(f.area());
    header(f, area[0], st);
    sparklines(f, area[1], st);
    let middle = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(68), Constraint::Percentage(32)])
        .split(area[2]);
    connections(f, middle[0], st);
    reasons(f, middle[1], st);
    if has_messages {
        messages(f, area[3], st);
    }
    keys(f, area[area.len() - 1], st);
}

fn header(f: &mut Frame<'_>, area: Rect, st: &State) {
    let mut lines = Vec::new();
    match &st.snap {
        Some(s) => {
            let up = s.uptime_s as u64;
            lines.push(Line::from(vec![
                Span::styled(
                    format!("ringport {} ", s.server),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(
                    "on {}  up {:02}:{:02}:{:02}  {}  workers: {} running, {} waiting of {}  outstanding ops: {}",
                    s.backend,
                    up / 3600,
                    up % 3600 / 60,
                    up % 60,
                    st.path,
                    s.workers_running,
                    s.workers_waiting,
                    s.workers,
                    s.outstanding
                )),
            ]));
            let r = &st.rates;
            lines.push(Line::from(format!(
                "connections: {} open, {} total   in: {:.0} msg/s {:.2} MiB/s   out: {:.0} msg/s {:.2} MiB/s   p99: {}",
                s.connections.open,
                s.connections.total,
                r.msgs_in,
                r.bytes_in / MIB,
                r.msgs_out,
                r.bytes_out / MIB,
                s.p99_us.map_or("n/a (not measured by this server)".to_owned(), |p| format!("{p:.0} µs")),
            )));
            lines.push(Line::from(format!(
                "totals: {} B in, {} B out, {} msgs in, {} msgs out, {} completions   accept: {}",
                s.bytes.inbound,
                s.bytes.outbound,
                s.messages.inbound,
                s.messages.outbound,
                s.completions,
                if s.accept_backoff.backing_off {
                    format!(
                        "BACKING OFF ({} waiting, next delay {} ms)",
                        s.accept_backoff.parked, s.accept_backoff.next_delay_ms
                    )
                } else {
                    "ok".to_owned()
                }
            )));
        }
        None => lines.push(Line::from(format!(
            "ringport top {}: connecting...",
            st.path
        ))),
    }
    let status = match (&st.gone, st.paused) {
        (Some(why), _) => Line::from(Span::styled(
            format!("server gone: {why}; waiting for it to come back"),
            Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
        )),
        (None, true) => Line::from(Span::styled(
            "PAUSED (p resumes)",
            Style::default()
                .fg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
        )),
        (None, false) => Line::from(""),
    };
    lines.push(status);
    f.render_widget(Paragraph::new(lines), area);
}

fn sparklines(f: &mut Frame<'_>, area: Rect, st: &State) {
    let halves = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Percentage(50), Constraint::Percentage(50)])
        .split(area);
    for (i, (name, data)) in [("in", &st.spark_in), ("out", &st.spark_out)]
        .into_iter()
        .enumerate()
    {
        let peak = data.iter().copied().max().unwrap_or(0) as f64 / MIB;
        let title = format!(" MiB/s {name}, last {HISTORY_S} s (peak {peak:.2}) ");
        // The newest values, as many as fit.
        let width = halves[i].width.saturating_sub(2) as usize;
        let values: Vec<u64> = data
            .iter()
            .copied()
            .skip(data.len().saturating_sub(width))
            .collect();
        let spark = Sparkline::default()
            .block(Block::default().borders(Borders::ALL).title(title))
            .data(&values)
            .style(Style::default().fg(Color::Green));
        f.render_widget(spark, halves[i]);
    }
}

fn connections(f: &mut Frame<'_>, area: Rect, st: &State) {
    let conns = st.connections();
    let rows = conns.iter().map(|c| {
        Row::new(vec![
            c.peer.clone(),
            c.bytes_in.to_string(),
            c.bytes_out.to_string(),
            format!("{:.1}", c.age_s),
            c.send_queue.to_string(),
        ])
    });
    let title = format!(
        " connections by {} ({} shown{}) ",
        st.order.name(),
        conns.len(),
        if st.filter.is_empty() {
            String::new()
        } else {
            format!(", filter {:?}", st.filter)
        }
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(14),
            Constraint::Length(14),
            Constraint::Length(9),
            Constraint::Length(11),
        ],
    )
    .header(
        Row::new(vec!["peer", "bytes in", "bytes out", "age s", "send queue"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .block(Block::default().borders(Borders::ALL).title(title));
    f.render_widget(table, area);
}

fn reasons(f: &mut Frame<'_>, area: Rect, st: &State) {
    let mut items = Vec::new();
    if let Some(s) = &st.snap {
        items.push(ListItem::new("disconnects:"));
        for (name, n) in s.disconnects.by_reason() {
            items.push(ListItem::new(format!("  {name:<14}{n:>10}")));
        }
        items.push(ListItem::new("errors:"));
        for (name, n) in s.errors.by_kind() {
            items.push(ListItem::new(format!("  {name:<16}{n:>8}")));
        }
        items.push(ListItem::new(format!("read pauses: {}", s.read_pauses)));
    }
    let list = List::new(items).block(Block::default().borders(Borders::ALL).title(" reasons "));
    f.render_widget(list, area);
}

fn messages(f: &mut Frame<'_>, area: Rect, st: &State) {
    let list = st.messages().unwrap_or_default();
    let room = area.height.saturating_sub(2) as usize;
    // The newest at the bottom, as the dialog's list box scrolls.
    let items: Vec<ListItem<'_>> = list
        .iter()
        .skip(list.len().saturating_sub(room))
        .map(|m| ListItem::new(format!("{} {} {}", m.time, m.peer, m.text)))
        .collect();
    let title = if st.filter.is_empty() {
        " messages ".to_owned()
    } else {
        format!(" messages matching {:?} ", st.filter)
    };
    f.render_widget(
        List::new(items).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn keys(f: &mut Frame<'_>, area: Rect, st: &State) {
    let text = match st.input {
        Input::Filter => format!("filter: {}_   (Enter keeps it, Esc clears it)", st.filter),
        Input::Keys => format!(
            "q quit   s sort (now: {})   / filter   p {}",
            st.order.name(),
            if st.paused { "resume" } else { "pause" }
        ),
    };
    f.render_widget(
        Paragraph::new(text).style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}
