//! Reading a pipe or FIFO so that a stop loses nothing read: [`StoppableRead`] waits for data
//! with `poll` (so it never sits inside a `read` it cannot leave), and once asked to stop it
//! reads no more than the rest of the line under way, then reports the end of input. What it
//! handed on before is published, or spooled ([`Spool`]) and published on the next start.
//!
//! What is still in the kernel's pipe buffer when the process exits was never read: a writer
//! that keeps its own place (`tail -F` of a file) sends it again, and dedupe keys drop repeats.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::event::{PollFd, PollFlags, Timespec, poll};

use crate::proto::Alert;

/// How often a reader waiting for data looks at its stop flag.
const STOP_CHECK: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// A pipe that stops being read once `stop` is set and its current line is complete.
pub(crate) struct StoppableRead {
    file: File,
    stop: Arc<AtomicBool>,
    /// Whether the last byte handed on ended a line (or nothing was read yet).
    at_line_end: bool,
}

impl StoppableRead {
    pub(crate) fn new(file: File, stop: Arc<AtomicBool>) -> Self {
        Self {
            file,
            stop,
            at_line_end: true,
        }
    }
}

impl Read for StoppableRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.at_line_end && self.stop.load(Ordering::Acquire) {
                return Ok(0);
            }
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match poll(&mut fds, Some(&STOP_CHECK)) {
                Ok(0) => continue,
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        // Stopping mid-line: no further than the line's end, a byte at a time.
        let stopping = self.stop.load(Ordering::Acquire);
        let buf = if stopping && !buf.is_empty() {
            &mut buf[..1]
        } else {
            buf
        };
        let n = self.file.read(buf)?;
        if n > 0 {
            self.at_line_end = buf[n - 1] == b'\n';
        }
        Ok(n)
    }
}

/// A pipe as a buffered reader that stops on `stop`.
pub(crate) fn stoppable(file: File, stop: Arc<AtomicBool>) -> Box<dyn BufRead + Send> {
    Box::new(io::BufReader::new(StoppableRead::new(file, stop)))
}

/// What a stream feed read but could not publish before a stop, kept under the data
/// directory and published first on the next start.
#[derive(Debug, Clone)]
pub(crate) struct Spool {
    path: PathBuf,
}

/// One spooled case.
#[derive(serde::Serialize, serde::Deserialize)]
struct Spooled {
    update: bool,
    alert: Alert,
}

impl Spool {
    /// The spool of the feed at `feed`, under `data_dir`.
    pub(crate) fn for_feed(data_dir: &Path, feed: &Path) -> Self {
        let name: String = feed
            .display()
            .to_string()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        Self {
            path: data_dir.join("spool").join(format!("{name}.jsonl")),
        }
    }

    /// Appends `cases` and syncs the file.
    pub(crate) fn save(&self, cases: &[(Alert, bool)]) -> io::Result<()> {
        if cases.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut out = Vec::new();
        for (alert, update) in cases {
            serde_json::to_writer(
                &mut out,
                &Spooled {
                    update: *update,
                    alert: alert.clone(),
                },
            )?;
            out.push(b'\n');
        }
        file.write_all(&out)?;
        file.sync_all()
    }

    /// The spooled cases (none when there is no spool); a damaged line is reported and
    /// skipped.
    pub(crate) fn load(&self) -> io::Result<Vec<(Alert, bool)>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut cases = Vec::new();
        for (i, line) in text.lines().enumerate() {
            match serde_json::from_str::<Spooled>(line) {
                Ok(s) => cases.push((s.alert, s.update)),
                Err(e) => tracing::error!(spool = %self.path.display(), line = i + 1, error = %e,
                    "a spooled alert is unreadable; it is skipped"),
            }
        }
        Ok(cases)
    }

    /// Removes the spool once its cases are published.
    pub(crate) fn clear(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Where it is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_pipe_ends_at_a_line_boundary_and_reads_nothing_more() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        // A second handle on the read end: what a restarted reader would find.
        let reader_again = reader.try_clone().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let file = File::from(std::os::fd::OwnedFd::from(reader));
        let mut r = stoppable(file, stop.clone());
        writer.write_all(b"one\ntw").unwrap();
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "one\n");
        stop.store(true, Ordering::Release);
        // Mid-line: the rest of the line is still read, and not a byte more.
        writer.write_all(b"o\nthree\n").unwrap();
        line.clear();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "two\n");
        // Then the end, though the pipe is open and holds more: that stays for the next reader.
        line.clear();
        assert_eq!(r.read_line(&mut line).unwrap(), 0);
        drop(r);
        let mut rest = String::new();
        let reader = File::from(std::os::fd::OwnedFd::from(reader_again));
        drop(writer);
        io::BufReader::new(reader).read_line(&mut rest).unwrap();
        assert_eq!(rest, "three\n");
    }
}
