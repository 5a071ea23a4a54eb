//! `ringport top PATH`: a running server seen through its stats socket, in
//! the terminal (ratatui on crossterm).
//!
//! Keys: `q` quits, `s` changes the connection table's order (bytes, age,
//! send queue), `/` types a filter (on peers and messages; Enter keeps it,
//! Esc clears it), `p` pauses. The screen is redrawn at most four times a
//! second. When the server goes away, it says so and waits for it to come
//! back. `--once --json` prints one snapshot line and exits (for scripts).

mod draw;
mod fetch;
mod state;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use ringport_server::SortBy;

use fetch::{SharedOrder, StatsClient, Update};
use state::{Input, State};

/// The shortest time between two frames (at most 4 a second).
pub const FRAME: Duration = Duration::from_millis(250);

/// Flags of `ringport top`.
///
/// ```text
/// ringport top /tmp/echo.sock
/// ringport top /tmp/echo.sock --once --json
/// ```
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The server's stats socket (`ringport echo --stats-socket PATH`).
    pub path: PathBuf,
    /// Print one snapshot and exit (needs --json).
    #[arg(long)]
    pub once: bool,
    /// With --once: the snapshot as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// With --once: connections listed.
    #[arg(long, default_value_t = fetch::TOP, value_name = "N")]
    pub top: usize,
}

/// Runs the subcommand; returns the process exit code.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.once || args.json {
        if !(args.once && args.json) {
            bail!("--once and --json go together (one JSON snapshot, then exit)");
        }
        let mut client = StatsClient::connect(&args.path)?;
        let (line, _) = client.get(SortBy::Bytes, args.top)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let order = Arc::new(SharedOrder::default());
    let quit = Arc::new(AtomicBool::new(false));
    let (tx, rx) = channel();
    let fetcher = {
        let (path, order, quit) = (args.path.clone(), order.clone(), quit.clone());
        std::thread::Builder::new()
            .name("ringport-top-fetch".into())
            .spawn(move || fetch::run(path, order, quit, tx))
            .context("starting the fetch thread")?
    };
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    let result = ui(&mut terminal, &rx, &order, args.path.display().to_string());
    ratatui::restore();
    quit.store(true, Ordering::Relaxed);
    drop(rx);
    let _ = fetcher.join();
    result.map(|()| ExitCode::SUCCESS)
}

/// The screen's loop: keys at once, snapshots as they come, a frame when
/// something changed and the last frame is at least [`FRAME`] old.
fn ui(
    terminal: &mut DefaultTerminal,
    updates: &Receiver<Update>,
    order: &SharedOrder,
    path: String,
) -> anyhow::Result<()> {
    let mut st = State::new(path);
    let mut dirty = true;
    let mut clock = FrameClock::default();
    loop {
        for u in updates.try_iter() {
            match u {
                Update::Snapshot(s) => st.update(*s),
                Update::Gone(why) => st.gone = Some(why),
            }
            dirty = true;
        }
        let due = clock.wait(Instant::now());
        if dirty && due.is_zero() {
            terminal.draw(|f| draw::frame(f, &st))?;
            clock.drawn(Instant::now());
            dirty = false;
        }
        // Wake for a key, for the next frame, or to look at the updates.
        let wait = if dirty { due } else { FRAME };
        if event::poll(wait.max(Duration::from_millis(10)))? {
            if let Event::Key(k) = event::read()? {
                if k.kind == KeyEventKind::Release {
                    continue;
                }
                if !key(&mut st, k.code, k.modifiers, order) {
                    return Ok(());
                }
                dirty = true;
            }
        }
    }
}

/// When the next frame may be drawn: at least [`FRAME`] after the last.
#[derive(Default)]
struct FrameClock {
    last: Option<Instant>,
}

impl FrameClock {
    /// How long to wait at `now` before a frame may be drawn.
    fn wait(&self, now: Instant) -> Duration {
        self.last.map_or(Duration::ZERO, |t| {
            FRAME.saturating_sub(now.saturating_duration_since(t))
        })
    }

    fn drawn(&mut self, at: Instant) {
        self.last = Some(at);
    }
}

/// Handles a key; false means quit.
fn key(st: &mut State, code: KeyCode, mods: KeyModifiers, order: &SharedOrder) -> bool {
    if mods.contains(KeyModifiers::CONTROL) && code == KeyCode::Char('c') {
        return false;
    }
    match st.input {
        Input::Filter => match code {
            KeyCode::Enter => st.input = Input::Keys,
            KeyCode::Esc => {
                st.filter.clear();
                st.input = Input::Keys;
            }
            KeyCode::Backspace => {
                st.filter.pop();
            }
            KeyCode::Char(c) => st.filter.push(c),
            _ => {}
        },
        Input::Keys => match code {
            KeyCode::Char('q') | KeyCode::Esc => return false,
            KeyCode::Char('s') => {
                st.order = st.order.next();
                order.set(st.order);
            }
            KeyCode::Char('/') => st.input = Input::Filter,
            KeyCode::Char('p') => st.paused = !st.paused,
            _ => {}
        },
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_four_frames_a_second() {
        let mut clock = FrameClock::default();
        let t0 = Instant::now();
        assert_eq!(clock.wait(t0), Duration::ZERO);
        clock.drawn(t0);
        assert_eq!(
            clock.wait(t0 + Duration::from_millis(100)),
            Duration::from_millis(150)
        );
        assert_eq!(clock.wait(t0 + FRAME), Duration::ZERO);
        // Drawing whenever allowed for a second gives at most 4 frames.
        let (mut frames, mut t) = (0, t0 + FRAME);
        while t < t0 + FRAME + Duration::from_secs(1) {
            if clock.wait(t).is_zero() {
                clock.drawn(t);
                frames += 1;
            }
            t += Duration::from_millis(10);
        }
        assert_eq!(frames, 4);
    }

    #[test]
    fn keys() {
        let order = SharedOrder::default();
        let mut st = State::new("p".into());
        let none = KeyModifiers::NONE;
        assert!(key(&mut st, KeyCode::Char('s'), none, &order));
        assert_eq!((st.order, order.get()), (SortBy::Age, SortBy::Age));
        assert!(key(&mut st, KeyCode::Char('p'), none, &order));
        assert!(st.paused);
        assert!(key(&mut st, KeyCode::Char('/'), none, &order));
        for c in "q:1".chars() {
            assert!(
                key(&mut st, KeyCode::Char(c), none, &order),
                "q types while filtering"
            );
        }
        assert!(key(&mut st, KeyCode::Backspace, none, &order));
        assert!(key(&mut st, KeyCode::Enter, none, &order));
        assert_eq!((st.filter.as_str(), st.input), ("q:", Input::Keys));
        assert!(!key(&mut st, KeyCode::Char('q'), none, &order));
        assert!(!key(
            &mut st,
            KeyCode::Char('c'),
            KeyModifiers::CONTROL,
            &order
        ));
    }
}
