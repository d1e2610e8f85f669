//! The `file` sink: an append-only JSON Lines file, one event per line in
//! the export's format, so a copy of it verifies with `hallpass audit
//! verify --file` like an export.
//!
//! The file is its own cursor: at start-up its last complete line says
//! which event was written last, and the database is then compared with it
//! (see the parent module). A crash in the middle of a write can leave a
//! torn last line; it is cut off (and logged), and written again whole.
//! Writes append (`O_APPEND`) and are fsync'd before the batch counts as
//! delivered.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hallpass_core::audit::AuditEvent;
use tokio::io::AsyncWriteExt;

use super::lines;

/// How much of the file's end is read at a time when looking for its last
/// line (doubled until the line is whole).
const TAIL_CHUNK: u64 = 64 * 1024;

/// Why the file cannot be used.
#[derive(Debug, thiserror::Error)]
pub(super) enum FileError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error(
        "the last line of {} is not an audit event ({reason}): this file was not written by an audit sink, \
         or was edited; move it aside and the sink starts a new one from seq 1",
        path.display()
    )]
    Foreign { path: PathBuf, reason: String },
}

fn io_error(path: &Path, error: impl std::fmt::Display) -> FileError {
    FileError::Io {
        path: path.to_path_buf(),
        message: error.to_string(),
    }
}

/// The open file and what it held.
pub(super) struct Opened {
    pub writer: FileWriter,
    /// Its last event, if it holds any.
    pub last: Option<AuditEvent>,
    /// Bytes of a torn last line that were cut off.
    pub cut: u64,
}

/// Appends batches to the file.
pub(super) struct FileWriter {
    path: PathBuf,
    file: Option<tokio::fs::File>,
    /// The newest seq in the file: events up to it are not written again.
    written: u64,
}

/// Opens (or creates, mode 0600) the file for appending, in a directory
/// checked like the data directory, and recovers its end.
pub(super) fn open(path: &Path) -> Result<Opened, FileError> {
    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        hallpass_store::prepare_data_dir(dir).map_err(|error| match error {
            hallpass_store::StoreError::Io { message, .. } => {
                io_error(path, format!("its directory {}: {message}", dir.display()))
            }
            other => io_error(path, other),
        })?;
    }
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| io_error(path, e))?;
    let mode = file.metadata().map_err(|e| io_error(path, e))?.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        let message = format!(
            "it is group- or world-writable (mode {mode:04o}), so others could rewrite the copy; run `chmod 600 {}`",
            path.display()
        );
        return Err(io_error(path, message));
    }
    if !existed && let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        // The new entry must survive a crash as much as what goes in it.
        File::open(dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io_error(path, e))?;
    }
    let (line, cut) = recover(&mut file).map_err(|e| io_error(path, e))?;
    let last = match line {
        None => None,
        Some(line) => Some(
            serde_json::from_slice::<AuditEvent>(&line).map_err(|e| FileError::Foreign {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?,
        ),
    };
    let writer = FileWriter {
        path: path.to_path_buf(),
        file: Some(tokio::fs::File::from_std(file)),
        written: last.as_ref().map_or(0, |event| event.seq),
    };
    Ok(Opened { writer, last, cut })
}

/// Cuts a torn last line (bytes after the last `\n`) off `file` and
/// returns its last complete line, if any, with the number of bytes cut.
pub(super) fn recover(file: &mut File) -> io::Result<(Option<Vec<u8>>, u64)> {
    let len = file.metadata()?.len();
    let mut chunk = TAIL_CHUNK;
    loop {
        let start = len.saturating_sub(chunk);
        let mut tail = Vec::new();
        file.seek(SeekFrom::Start(start))?;
        file.by_ref().take(len - start).read_to_end(&mut tail)?;
        let Some(end) = tail.iter().rposition(|byte| *byte == b'\n') else {
            if start == 0 {
                // No complete line at all: whatever is there is torn.
                file.set_len(0)?;
                file.sync_all()?;
                return Ok((None, len));
            }
            chunk = chunk.saturating_mul(2);
            continue;
        };
        let begin = tail[..end].iter().rposition(|byte| *byte == b'\n').map(|at| at + 1);
        if begin.is_none() && start > 0 {
            chunk = chunk.saturating_mul(2);
            continue;
        }
        let cut = tail.len() as u64 - (end as u64 + 1);
        if cut > 0 {
            file.set_len(len - cut)?;
            file.sync_all()?;
        }
        return Ok((Some(tail[begin.unwrap_or(0)..end].to_vec()), cut));
    }
}

impl FileWriter {
    /// Appends the events not in the file yet and fsyncs. After a failure
    /// the file is opened again on the next call, which cuts whatever
    /// part of a line the failed write left.
    pub(super) async fn send(&mut self, events: &[AuditEvent]) -> Result<(), String> {
        let fresh: Vec<AuditEvent> = events.iter().filter(|e| e.seq > self.written).cloned().collect();
        let Some(last) = fresh.last().map(|event| event.seq) else {
            return Ok(());
        };
        let mut file = match self.file.take() {
            Some(file) => file,
            None => self.reopen().await?,
        };
        let body = lines(&fresh);
        let written = async {
            file.write_all(&body).await?;
            file.flush().await?;
            file.sync_data().await
        };
        match written.await {
            Ok(()) => {
                self.file = Some(file);
                self.written = last;
                Ok(())
            }
            Err(error) => Err(format!("cannot append to {}: {error}", self.path.display())),
        }
    }

    async fn reopen(&mut self) -> Result<tokio::fs::File, String> {
        let path = self.path.clone();
        let opened = tokio::task::spawn_blocking(move || open(&path))
            .await
            .map_err(|e| format!("reopening {} failed: {e}", self.path.display()))?
            .map_err(|e| e.to_string())?;
        if opened.cut > 0 {
            tracing::warn!(
                file = %self.path.display(), bytes = opened.cut,
                "cut the part of a line a failed write left at the end of the audit sink file"
            );
        }
        self.written = opened.writer.written;
        opened
            .writer
            .file
            .ok_or_else(|| format!("{} could not be opened", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, bytes).unwrap();
        (dir, path)
    }

    fn recovered(bytes: &[u8]) -> (Option<String>, u64, Vec<u8>) {
        let (_dir, path) = file_with(bytes);
        let mut file = OpenOptions::new().read(true).append(true).open(&path).unwrap();
        let (line, cut) = recover(&mut file).unwrap();
        let line = line.map(|line| String::from_utf8(line).unwrap());
        (line, cut, std::fs::read(&path).unwrap())
    }

    #[test]
    fn a_torn_last_line_is_cut_and_the_last_whole_one_found() {
        assert_eq!(recovered(b""), (None, 0, b"".to_vec()));
        assert_eq!(recovered(b"{\"seq\":1"), (None, 8, b"".to_vec()));
        assert_eq!(recovered(b"one\n"), (Some("one".into()), 0, b"one\n".to_vec()));
        assert_eq!(
            recovered(b"one\ntwo\n{\"seq\":3,\"ti"),
            (Some("two".into()), 12, b"one\ntwo\n".to_vec())
        );
        assert_eq!(
            recovered(b"one\ntwo\n"),
            (Some("two".into()), 0, b"one\ntwo\n".to_vec())
        );
    }

    #[test]
    fn a_last_line_longer_than_a_chunk_is_read_whole() {
        let long = "x".repeat(3 * TAIL_CHUNK as usize + 17);
        let text = format!("first\n{long}\n{}", "y".repeat(TAIL_CHUNK as usize + 5));
        let (line, cut, rest) = recovered(text.as_bytes());
        assert_eq!(line.as_deref(), Some(long.as_str()));
        assert_eq!(cut, TAIL_CHUNK + 5);
        assert_eq!(rest, format!("first\n{long}\n").into_bytes());
        let (line, _, _) = recovered(format!("{long}\n").as_bytes());
        assert_eq!(line.as_deref(), Some(long.as_str()));
    }

    fn event(seq: u64) -> AuditEvent {
        hallpass_core::audit::AuditDraft::new("alice", "token.created", None, serde_json::json!({"n": seq})).seal(
            seq,
            "2026-11-21T10:00:00.000000Z".into(),
            &"0".repeat(64),
        )
    }

    #[tokio::test]
    async fn appends_resume_after_the_last_event_and_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sink").join("audit.jsonl");
        let mut opened = open(&path).unwrap();
        assert!(opened.last.is_none());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        opened.writer.send(&[event(1), event(2)]).await.unwrap();
        drop(opened);
        // A crash in the middle of the next write.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"seq\":3,\"time\":").unwrap();
        let mut opened = open(&path).unwrap();
        assert_eq!((opened.last.as_ref().map(|e| e.seq), opened.cut), (Some(2), 16));
        // Events already in the file are not written twice.
        opened.writer.send(&[event(2), event(3)]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let seqs: Vec<u64> = text
            .lines()
            .map(|line| serde_json::from_str::<AuditEvent>(line).unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[test]
    fn a_shared_directory_or_file_and_a_foreign_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = open(&shared.join("audit.jsonl")).err().unwrap().to_string();
        assert!(error.contains("group- or world-writable"), "{error}");
        let (_dir, path) = file_with(b"");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let error = open(&path).err().unwrap().to_string();
        assert!(error.contains("chmod 600"), "{error}");
        let (_dir, path) = file_with(b"not json\n");
        let error = open(&path).err().unwrap().to_string();
        assert!(error.contains("is not an audit event"), "{error}");
    }
}
