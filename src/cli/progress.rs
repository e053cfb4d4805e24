//! Progress of long work: a live counter on a terminal, a line every tenth otherwise (CI, pipes).

use std::io::{IsTerminal, Write};
use std::time::Instant;

/// Counts finished items out of a known total and reports on stderr.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    tty: bool,
    start: Instant,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: u64) -> Self {
        Progress {
            label: label.into(),
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    /// Marks one more item done.
    pub fn tick(&mut self) {
        self.done += 1;
        let tenth = (self.total / 10).max(1);
        if self.tty {
            eprint!(
                "\r{}: {}/{} ({:.0}s)",
                self.label,
                self.done,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
            let _ = std::io::stderr().flush();
        } else if self.done.is_multiple_of(tenth) || self.done == self.total {
            eprintln!(
                "{}: {}/{} ({:.0}s)",
                self.label,
                self.done,
                self.total,
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Ends the live line.
    pub fn finish(self) {
        if self.tty {
            eprintln!();
        }
    }
}
