//! The spinner a load run shows on a terminal: the stage, the rate since the
//! last draw and the run's own counters, redrawn at most four times a second.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// A load run's spinner (`None` inside when progress is off).
pub(super) struct Progress {
    bar: Option<ProgressBar>,
    /// When it was last drawn, and the count of completed messages then.
    last: (Instant, u64),
}

impl Progress {
    /// A spinner if `show`, else one that draws nothing.
    pub(super) fn new(show: bool) -> Progress {
        let bar = show.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed} {msg}").expect("style"),
            );
            bar
        });
        Progress {
            bar,
            last: (Instant::now(), 0),
        }
    }

    /// Redraws if a quarter second passed: the stage, the rate of `done`
    /// since the last draw, then what `counters` says (e.g. "3 up, 0
    /// errors"; called only when drawing).
    pub(super) fn draw(
        &mut self,
        now: Instant,
        done: u64,
        stage: impl Debug,
        counters: impl FnOnce() -> String,
    ) {
        let Some(bar) = &self.bar else { return };
        let dt = now.duration_since(self.last.0);
        if dt >= Duration::from_millis(250) {
            let rate = (done - self.last.1) as f64 / dt.as_secs_f64();
            bar.set_message(format!("{stage:?}: {rate:.0}/s, {}", counters()));
            bar.tick();
            self.last = (now, done);
        }
    }

    /// Clears the spinner at the run's end.
    pub(super) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
