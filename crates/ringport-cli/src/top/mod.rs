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
    let mut last_frame: Option<Instant> = None;
    loop {
        for u in updates.try_iter() {
            match u {
                Update::Snapshot(s) => st.update(*s),
                Update::Gone(why) => st.gone = Some(why),
            }
            dirty = true;
        }
        let due = last_frame.map_or(Duration::ZERO, |t| FRAME.saturating_sub(t.elapsed()));
        if dirty && due.is_zero() {
            terminal.draw(|f| draw::frame(f, &st))?;
            last_frame = Some(Instant::now());
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
