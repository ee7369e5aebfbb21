//! The bootstrap's progress display on stderr: a spinner with the current step and its elapsed
//! time on a terminal (indicatif), plain `==> step` lines otherwise (CI logs, pipes), and a
//! `✓ step (1.2 s)` line as each step ends either way.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// The display of one bootstrap run.
pub struct Progress {
    started: Instant,
    current: Option<(String, Instant, Option<ProgressBar>)>,
    terminal: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress { started: Instant::now(), current: None, terminal: std::io::stderr().is_terminal() }
    }

    /// Since the run began.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts a step (ending the previous one).
    pub fn step(&mut self, what: impl Into<String>) {
        self.finish();
        let what = what.into();
        let bar = if self.terminal {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_message(what.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            eprintln!("==> {what}");
            None
        };
        self.current = Some((what, Instant::now(), bar));
    }

    /// Updates the current step's detail (e.g. which services are still starting).
    pub fn detail(&self, detail: &str) {
        if let Some((what, _, Some(bar))) = &self.current {
            bar.set_message(format!("{what}: {detail}"));
        }
    }

    /// A line of its own, above the spinner.
    pub fn say(&self, line: &str) {
        match &self.current {
            Some((_, _, Some(bar))) => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    /// Ends the current step as done.
    pub fn finish(&mut self) {
        if let Some((what, started, bar)) = self.current.take() {
            let line = format!("  ✓ {what} ({:.1} s)", started.elapsed().as_secs_f64());
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            eprintln!("{line}");
        }
    }

    /// Ends the current step as failed.
    pub fn fail(&mut self) {
        if let Some((what, started, bar)) = self.current.take() {
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
            eprintln!("  ✗ {what} (after {:.1} s)", started.elapsed().as_secs_f64());
        }
    }
}
