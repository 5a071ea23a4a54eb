//! The most recent messages `ringport log` received, for its stats socket
//! (the list box of seed 004's dialog). Kept only when a stats socket is
//! asked for; one short lock per message, beside the stdout lock the log
//! takes for the same message anyway.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::stats_wire::LoggedMessage;

/// Messages kept.
pub const KEPT: usize = 100;
/// Bytes of a message's text kept (the rest is cut).
pub const TEXT_MAX: usize = 300;

/// A bounded list of the latest messages, oldest first.
#[derive(Default)]
pub struct RecentMessages {
    list: Mutex<VecDeque<LoggedMessage>>,
}

impl RecentMessages {
    /// Adds a message, dropping the oldest beyond [`KEPT`].
    pub fn push(&self, time: String, peer: String, mut text: String) {
        if text.len() > TEXT_MAX {
            let mut cut = TEXT_MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if list.len() == KEPT {
            list.pop_front();
        }
        list.push_back(LoggedMessage { time, peer, text });
    }

    /// A copy of the list, oldest first.
    pub fn list(&self) -> Vec<LoggedMessage> {
        let list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_and_cuts_long_text() {
        let r = RecentMessages::default();
        for i in 0..KEPT + 5 {
            r.push(i.to_string(), "p".into(), "é".repeat(TEXT_MAX));
        }
        let l = r.list();
        assert_eq!(l.len(), KEPT);
        assert_eq!(l[0].time, "5");
        assert!(l[0].text.len() <= TEXT_MAX + '…'.len_utf8());
        assert!(l[0].text.ends_with('…'));
    }
}
