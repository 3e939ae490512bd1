//! A followed alert file (`--follow`): read as it grows, across rotations, resumed after a
//! restart from a saved position without losing or repeating a case.
//!
//! In: the file's path, what it holds ([`FeedConfig`]) and the position saved by the last run.
//! Out: batches of feed lines (ticket-format alerts, or raw alerts grouped as they arrive by a
//! [`StreamGrouper`]: a case at its first alert, its repeats as updates), each with the
//! position to resume from once the batch is published.
//!
//! Rotation: at the end of the file, the path is looked at again; when it names another file
//! (renamed away and re-created, as logrotate and Suricata do) the old file is read to its end
//! and the new one from its start; when it is the same file but shorter (copy-truncate) it is
//! read again from its start. Only complete lines are read: a line being written is left
//! until its newline arrives.
//!
//! Restart: the saved position names the file (device and inode) and an offset. The resume
//! offset is the first record of the oldest open case (or the end of what was published, when
//! no case is open), so re-reading rebuilds every open case: the cases and updates published
//! before are dropped by the bus as duplicates. If the file was rotated while the runtime was
//! down, the saved file is found beside it by its inode and read to its end first. What a
//! crash can lose: the counts of open cases whose first alerts were in a file rotated away
//! before the crash (the cases themselves were published).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::format::{Decoder, FeedConfig, FeedFormat};
use super::group::{CSV_HEADER, StreamGrouper};
use super::jsonl::{FeedLine, LineError, MAX_LINE_BYTES, UPDATE_EVERY, grouped_line, ticket_line};

/// A position in a followed file: which file, and how far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FilePos {
    /// Device of the file.
    pub(crate) dev: u64,
    /// Inode of the file.
    pub(crate) ino: u64,
    /// Byte offset.
    pub(crate) offset: u64,
    /// The format the file turned out to hold (a resumed CSV has no header to recognise).
    #[serde(default)]
    pub(crate) format: FeedFormat,
}

/// Where a followed feed's position is saved, under the data directory.
pub(crate) fn state_path(data_dir: &Path, feed: &Path) -> PathBuf {
    let name: String = feed
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    data_dir.join("feeds").join(format!("{name}.json"))
}

/// The saved position, if any (a damaged file is reported and read from the start).
pub(crate) fn load_pos(state: &Path) -> Option<FilePos> {
    let bytes = std::fs::read(state).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(pos) => Some(pos),
        Err(e) => {
            tracing::warn!(state = %state.display(), error = %e, "the saved feed position is unreadable; reading the feed from its start");
            None
        }
    }
}

/// Saves `pos` atomically (a temporary file renamed over the old one).
pub(crate) fn save_pos(state: &Path, pos: FilePos) -> io::Result<()> {
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = state.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&pos).map_err(io::Error::other)?)?;
    std::fs::rename(tmp, state)
}

/// How the followed file's lines are read.
enum Mode {
    Start,
    Tickets,
    Raw(StreamGrouper, Decoder),
}

/// A file followed as it grows.
pub(crate) struct Follower {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes of the current file read (a line not complete yet included).
    offset: u64,
    /// A line not complete yet, and where it starts.
    partial: Vec<u8>,
    line_no: u64,
    config: FeedConfig,
    mode: Mode,
    /// The format decided at the first record.
    decided: FeedFormat,
    last_updates: Instant,
    /// Skip lines until the next newline (the rest of a line past the length bound).
    skipping: bool,
    /// The files read since the start (device, inode), so a rotation never goes back.
    read: Vec<(u64, u64)>,
    /// The read buffer, kept between polls.
    chunk: Vec<u8>,
}

/// Bytes read from the file at a time.
const CHUNK: usize = 64 * 1024;

fn identity(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

impl Follower {
    /// Opens `path`, resuming from `saved` when it names this file or one rotated beside it.
    pub(crate) fn open(
        path: &Path,
        config: &FeedConfig,
        saved: Option<FilePos>,
    ) -> io::Result<Self> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let (dev, ino) = identity(&meta);
        let mut follower = Follower {
            path: path.to_owned(),
            file,
            dev,
            ino,
            offset: 0,
            partial: Vec::new(),
            line_no: 0,
            config: config.clone(),
            mode: Mode::Start,
            decided: FeedFormat::Auto,
            last_updates: Instant::now(),
            skipping: false,
            read: vec![(dev, ino)],
            chunk: Vec::new(),
        };
        let Some(saved) = saved else {
            return Ok(follower);
        };
        if follower.config.format == FeedFormat::Auto {
            follower.config.format = saved.format;
        }
        if (saved.dev, saved.ino) == (dev, ino) {
            if saved.offset <= meta.len() {
                follower.seek(saved.offset)?;
            }
        } else if let Some(rotated) = find_by_inode(path, saved) {
            tracing::info!(file = %rotated.display(), "the followed file was rotated while stopped: reading the rest of the old one first");
            let file = File::open(&rotated)?;
            let meta = file.metadata()?;
            (follower.dev, follower.ino) = identity(&meta);
            follower.read = vec![(follower.dev, follower.ino)];
            follower.file = file;
            if saved.offset <= meta.len() {
                follower.seek(saved.offset)?;
            }
        }
        Ok(follower)
    }

    fn seek(&mut self, offset: u64) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.partial.clear();
        self.skipping = false;
        // A resumed ticket or CSV feed is past its header: its format is decided by the next
        // record, as at a start.
        Ok(())
    }

    /// Where to resume after a restart, once everything handed on so far is published.
    pub(crate) fn resume_pos(&self) -> FilePos {
        // The bytes of a line not complete yet are read again.
        let consumed = self.offset - self.partial.len() as u64;
        let offset = match &self.mode {
            Mode::Raw(grouper, _) => grouper.resume_pos().unwrap_or(consumed).min(consumed),
            _ => consumed,
        };
        FilePos {
            dev: self.dev,
            ino: self.ino,
            offset,
            format: match self.mode {
                Mode::Start => self.config.format,
                _ => self.decided,
            },
        }
    }

    /// Reads the complete lines there are now (at most `max`); `true` when it reached the end
    /// of the file with nothing held back (caught up).
    pub(crate) fn poll(&mut self, max: usize) -> io::Result<(Vec<FeedLine>, bool)> {
        let mut out = Vec::new();
        let mut chunk = std::mem::take(&mut self.chunk);
        chunk.resize(CHUNK, 0);
        while out.len() < max {
            let n = match self.file.read(&mut chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.chunk = chunk;
                    return Err(e);
                }
            };
            if n == 0 {
                match self.rotated() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        self.chunk = chunk;
                        return Err(e);
                    }
                }
            }
            self.take(&chunk[..n], &mut out);
        }
        self.chunk = chunk;
        if self.last_updates.elapsed() >= UPDATE_EVERY {
            self.last_updates = Instant::now();
            if let Mode::Raw(grouper, _) = &mut self.mode {
                out.extend(grouper.updates().into_iter().map(|g| grouped_line(0, g)));
            }
        }
        let caught_up = out.is_empty()
            && match &self.mode {
                Mode::Raw(grouper, _) => grouper.len() == 0 || !grouper.has_updates(),
                _ => true,
            };
        Ok((out, caught_up))
    }

    /// Splits `bytes` into complete lines, handing each on.
    fn take(&mut self, bytes: &[u8], out: &mut Vec<FeedLine>) {
        let mut rest = bytes;
        while let Some(i) = rest.iter().position(|&b| b == b'\n') {
            let start = self.offset;
            let (head, tail) = rest.split_at(i);
            rest = &tail[1..];
            self.offset += (head.len() + 1) as u64;
            if self.skipping {
                self.skipping = false;
                self.partial.clear();
                continue;
            }
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(head);
            let line_start = start - (line.len() - head.len()) as u64;
            self.line(line_start, &line, out);
        }
        if self.skipping {
            self.offset += rest.len() as u64;
            return;
        }
        self.partial.extend_from_slice(rest);
        self.offset += rest.len() as u64;
        if self.partial.len() > MAX_LINE_BYTES {
            self.line_no += 1;
            out.push(refused(self.line_no, LineError::TooLong(MAX_LINE_BYTES)));
            self.partial.clear();
            self.skipping = true;
        }
    }

    /// One complete line starting at byte `start`.
    fn line(&mut self, start: u64, line: &[u8], out: &mut Vec<FeedLine>) {
        self.line_no += 1;
        let line = line.trim_ascii();
        if line.is_empty() {
            return;
        }
        if matches!(self.mode, Mode::Start) {
            let format = self.config.format.resolve(line);
            self.decided = format;
            self.mode =
                match Decoder::of(format, self.config.mapping.as_ref(), self.config.eve_host) {
                    Some(decoder) => Mode::Raw(
                        StreamGrouper::new(
                            self.config.grouping.clone(),
                            i64::from(self.config.keep_open_hours) * 3600,
                        ),
                        decoder,
                    ),
                    None => Mode::Tickets,
                };
        }
        let line_no = self.line_no;
        match &mut self.mode {
            Mode::Raw(grouper, decoder) => {
                if matches!(decoder, Decoder::Csv) && line.starts_with(CSV_HEADER.as_bytes()) {
                    return;
                }
                match decoder.parse_in(line, self.config.site.as_ref()) {
                    Ok(raw) => {
                        if let Some(g) = grouper.push(raw, start, line) {
                            out.push(grouped_line(line_no, g));
                        }
                    }
                    Err(e) => out.push(refused(line_no, LineError::Row(e))),
                }
            }
            _ => out.push(ticket_line(line_no, line, self.config.site.as_ref())),
        }
    }

    /// At the end of the file: whether the path now names another file (or this one was
    /// truncated), in which case reading goes on there from its start.
    fn rotated(&mut self) -> io::Result<bool> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(meta) => meta,
            // Renamed away and not re-created yet: keep reading the old one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if identity(&meta) != (self.dev, self.ino) {
            // The next file of the rotation: the path's, unless other rotated files came in
            // between (rotated more than once since this file was current).
            let next = self.successor().unwrap_or_else(|| self.path.clone());
            let file = File::open(&next)?;
            (self.dev, self.ino) = identity(&file.metadata()?);
            if self.read.len() >= 64 {
                self.read.remove(0);
            }
            self.read.push((self.dev, self.ino));
            tracing::info!(file = %next.display(), "the followed file was rotated: reading the next one from its start");
            self.file = file;
            self.offset = 0;
            self.partial.clear();
            self.skipping = false;
            if let Mode::Raw(grouper, _) = &mut self.mode {
                // The open cases' first alerts are in the old file: a restart resumes from the
                // new file's start.
                grouper.rebase(0);
            }
            return Ok(true);
        }
        if meta.len() < self.offset {
            tracing::info!(file = %self.path.display(), "the followed file was truncated: reading it again from its start");
            self.seek(0)?;
            if let Mode::Raw(grouper, _) = &mut self.mode {
                grouper.rebase(0);
            }
            return Ok(true);
        }
        Ok(false)
    }
}

impl Follower {
    /// The rotated file written after the current one: beside the path, its name starting
    /// with the path's, not read yet, the first modified after the current file.
    fn successor(&self) -> Option<PathBuf> {
        let current = self.file.metadata().ok()?.modified().ok()?;
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let stem = self.path.file_name()?.to_string_lossy().into_owned();
        std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&stem))
            .filter_map(|e| {
                let meta = std::fs::metadata(e.path()).ok()?;
                let modified = meta.modified().ok()?;
                // File times are coarse (a few ms): on a tie the path's own file, the newest
                // by definition, comes last.
                let newest = e.path() == self.path;
                (meta.is_file() && modified >= current && !self.read.contains(&identity(&meta)))
                    .then(|| (modified, newest, e.path()))
            })
            .min()
            .map(|(.., path)| path)
    }
}

/// A file beside `path` that is the saved one (same device and inode).
fn find_by_inode(path: &Path, saved: FilePos) -> Option<PathBuf> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::read_dir(dir).ok()?.flatten().find_map(|entry| {
        let meta = entry.metadata().ok()?;
        (meta.is_file() && identity(&meta) == (saved.dev, saved.ino)).then(|| entry.path())
    })
}

fn refused(line_no: u64, error: LineError) -> FeedLine {
    FeedLine {
        line_no,
        alert: Err(error),
        looks_like: None,
        update: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tickets(lines: &[FeedLine]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.alert.as_ref().ok())
            .map(|a| a.ticket_id.clone())
            .collect()
    }

    fn ticket(n: u32) -> String {
        format!(
            r#"{{"ticket_id":"t{n}","source":"s","rule_id":"r","rule_name":"n","host":"h","first_seen":"2024-01-01T00:00:00Z","last_seen":"2024-01-01T00:00:00Z","alert_count":1}}"#
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn growth_partial_lines_rotation_and_a_restart_read_every_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("feed.jsonl");
        append(&path, &format!("{}\n{}\n", ticket(1), ticket(2)));
        let mut f = Follower::open(&path, &FeedConfig::default(), None).unwrap();
        let mut seen = tickets(&f.poll(100).unwrap().0);
        // Half a line: held back until its newline comes.
        let third = ticket(3);
        append(&path, &third[..20]);
        assert!(f.poll(100).unwrap().0.is_empty());
        // A restart now re-reads the half line, not what follows it.
        let two = (ticket(1).len() + ticket(2).len() + 2) as u64;
        assert_eq!(f.resume_pos().offset, two);
        append(&path, &format!("{}\n", &third[20..]));
        seen.extend(tickets(&f.poll(100).unwrap().0));
        // Rotation: the old file gets one more line before the new one appears.
        std::fs::rename(&path, dir.path().join("feed.jsonl.1")).unwrap();
        append(
            &dir.path().join("feed.jsonl.1"),
            &format!("{}\n", ticket(4)),
        );
        append(&path, &format!("{}\n", ticket(5)));
        seen.extend(tickets(&f.poll(100).unwrap().0));
        append(&path, &format!("{}\n", ticket(6)));
        seen.extend(tickets(&f.poll(100).unwrap().0));
        let saved = f.resume_pos();
        // Stopped; meanwhile more lines, and another rotation.
        append(&path, &format!("{}\n", ticket(7)));
        std::fs::rename(&path, dir.path().join("feed.jsonl.2")).unwrap();
        append(&path, &format!("{}\n", ticket(8)));
        let mut f = Follower::open(&path, &FeedConfig::default(), Some(saved)).unwrap();
        seen.extend(tickets(&f.poll(100).unwrap().0));
        seen.extend(tickets(&f.poll(100).unwrap().0));
        let want: Vec<String> = (1..=8).map(|n| format!("t{n}")).collect();
        assert_eq!(seen, want);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// However a file's bytes arrive (any cut, mid-line included), the follower hands on
        /// the lines a whole read of the file gives, in order, once each.
        #[test]
        fn any_arrival_of_the_bytes_gives_the_lines_of_a_whole_read(
            picks in proptest::collection::vec(0usize..5, 0..12),
            cuts in proptest::collection::vec(0usize..400, 0..6),
        ) {
            let pieces = [ticket(1), ticket(2), String::new(), "{broken".to_owned(), "\u{1F600} x".to_owned()];
            let text: String = picks.iter().map(|&i| pieces[i].clone() + "\n").collect();
            let whole: Vec<(u64, String)> = super::super::jsonl::read_all(std::io::Cursor::new(text.clone().into_bytes()))
                .into_iter()
                .map(|l| l.unwrap())
                .map(|l| (l.line_no, l.alert.map_or_else(|e| e.to_string(), |a| a.ticket_id)))
                .collect();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("f.jsonl");
            std::fs::write(&path, "").unwrap();
            let mut f = Follower::open(&path, &FeedConfig::default(), None).unwrap();
            let mut got = Vec::new();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(text.len())).collect();
            cuts.push(text.len());
            cuts.sort_unstable();
            let bytes = text.as_bytes();
            let mut at = 0;
            for cut in cuts {
                append_bytes(&path, &bytes[at..cut]);
                at = cut;
                let (lines, _) = f.poll(1000).unwrap();
                got.extend(lines.into_iter().map(|l| (l.line_no, l.alert.map_or_else(|e| e.to_string(), |a| a.ticket_id))));
            }
            proptest::prop_assert_eq!(got, whole);
        }
    }

    fn append_bytes(path: &Path, bytes: &[u8]) {
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        f.write_all(bytes).unwrap();
    }

    #[test]
    fn raw_alerts_open_a_case_at_once_update_it_and_resume_rebuilds_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.csv");
        append(
            &path,
            "site,time,name,ip,host,rule_id\nfox,1642212000,scan,10.0.0.9,web,S-Scan\nfox,1642212100,scan,10.0.0.9,web,S-Scan\n",
        );
        let mut f = Follower::open(&path, &FeedConfig::default(), None).unwrap();
        let (lines, _) = f.poll(100).unwrap();
        // The case is handed on at its first alert; the repeat waits for the update tick.
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].update);
        assert_eq!(lines[0].alert.as_ref().unwrap().alert_count, 1);
        f.last_updates = Instant::now() - UPDATE_EVERY;
        let (lines, _) = f.poll(100).unwrap();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].update);
        assert_eq!(lines[0].alert.as_ref().unwrap().alert_count, 2);
        // The case is open: a restart re-reads from its first alert (past the header).
        let saved = f.resume_pos();
        assert_eq!(
            saved.offset,
            "site,time,name,ip,host,rule_id\n".len() as u64
        );
        let mut f = Follower::open(&path, &FeedConfig::default(), Some(saved)).unwrap();
        let (lines, _) = f.poll(100).unwrap();
        assert_eq!(
            lines[0].alert.as_ref().unwrap().ticket_id,
            "fox:web:S-Scan:20220115T02"
        );
    }
}
