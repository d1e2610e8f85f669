//! Length-prefixed frames on a pipe: how the sandbox and its worker
//! processes delimit their JSON messages.
//!
//! A frame is the body's length as a little-endian `u32`, then the body.
//! The parent reads with a deadline (`poll` before each `read`), so a worker
//! that stops answering cannot block it; the worker reads without one, since
//! its only job is to wait for the next request.
//!
//! The protocol is strictly one request, one answer, so a reader never sees
//! the start of the next frame: the parent reads whatever the pipe holds in
//! one `read` (usually the whole answer) and treats bytes beyond the frame as
//! a broken worker.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use serde::Serialize;

/// Bytes of the length prefix.
const HEADER_BYTES: usize = 4;

/// The largest body either side accepts: far above any policy set or input
/// the server takes, low enough that a garbled length cannot make the reader
/// allocate without bound.
pub(crate) const MAX_FRAME_BYTES: usize = 64 << 20;

/// Bytes asked of each `read` beyond what is still missing, so a whole small
/// answer arrives in one system call.
const READ_CHUNK: usize = 16 << 10;

#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The other side closed the pipe (at a frame boundary or inside one).
    #[error("the pipe was closed")]
    Closed,
    #[error("no answer before the deadline")]
    TimedOut,
    #[error("a frame of {0} bytes is larger than the {MAX_FRAME_BYTES} allowed")]
    TooLarge(usize),
    #[error("{0} bytes arrived after the frame, which the protocol never sends")]
    Trailing(usize),
    #[error("the message could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Replaces `buf` with `message` as one frame, reusing its allocation.
pub(crate) fn encode(buf: &mut Vec<u8>, message: &impl Serialize) -> Result<(), FrameError> {
    buf.clear();
    buf.extend_from_slice(&[0; HEADER_BYTES]);
    serde_json::to_writer(&mut *buf, message)?;
    let body = buf.len() - HEADER_BYTES;
    let length = u32::try_from(body)
        .ok()
        .filter(|_| body <= MAX_FRAME_BYTES)
        .ok_or(FrameError::TooLarge(body))?;
    buf[..HEADER_BYTES].copy_from_slice(&length.to_le_bytes());
    Ok(())
}

/// The body of the frame at the start of `frame`, as [`encode`] wrote it or
/// a read function left it.
pub(crate) fn body(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_BYTES..).unwrap_or_default()
}

/// Reads one frame into `buf` (header included), blocking as long as it
/// takes. `Ok(false)` is a clean end of input before any byte of a frame.
pub(crate) fn read_blocking(reader: &mut impl Read, buf: &mut Vec<u8>) -> Result<bool, FrameError> {
    let mut header = [0; HEADER_BYTES];
    let mut filled = 0;
    while filled < HEADER_BYTES {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(FrameError::Closed),
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
    let length = body_length(header)?;
    buf.clear();
    buf.extend_from_slice(&header);
    buf.resize(HEADER_BYTES + length, 0);
    reader
        .read_exact(&mut buf[HEADER_BYTES..])
        .map_err(|error| match error.kind() {
            io::ErrorKind::UnexpectedEof => FrameError::Closed,
            _ => FrameError::Io(error),
        })?;
    Ok(true)
}

/// Reads one frame into `buf` (header included), giving up at `deadline`.
pub(crate) fn read_before(
    reader: &mut (impl Read + AsFd),
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), FrameError> {
    buf.clear();
    fill(reader, buf, HEADER_BYTES, deadline)?;
    let mut header = [0; HEADER_BYTES];
    header.copy_from_slice(&buf[..HEADER_BYTES]);
    let wanted = HEADER_BYTES + body_length(header)?;
    fill(reader, buf, wanted, deadline)?;
    match buf.len() - wanted {
        0 => Ok(()),
        extra => Err(FrameError::Trailing(extra)),
    }
}

fn body_length(header: [u8; HEADER_BYTES]) -> Result<usize, FrameError> {
    let length = u32::from_le_bytes(header) as usize;
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge(length));
    }
    Ok(length)
}

/// Reads until `buf` holds at least `wanted` bytes. Each `read` asks for a
/// chunk beyond what is missing, so a whole answer usually takes one call.
fn fill(
    reader: &mut (impl Read + AsFd),
    buf: &mut Vec<u8>,
    wanted: usize,
    deadline: Instant,
) -> Result<(), FrameError> {
    while buf.len() < wanted {
        wait_readable(reader, deadline)?;
        let start = buf.len();
        buf.resize(start + (wanted - start).max(READ_CHUNK), 0);
        let read = reader.read(&mut buf[start..]);
        buf.truncate(start + read.as_ref().map_or(0, |n| *n));
        match read {
            Ok(0) => return Err(FrameError::Closed),
            Ok(_) => {}
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Waits until `fd` can be read (data, end of file or an error to report)
/// or `deadline` passes.
fn wait_readable(fd: &impl AsFd, deadline: Instant) -> Result<(), FrameError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(FrameError::TimedOut);
        }
        // Only a wait of over 292 billion years fails to convert.
        let timeout = Timespec::try_from(left).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => {}
            Ok(_) => return Ok(()),
            Err(error) => return Err(io::Error::from(error).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::*;

    fn frame(message: &serde_json::Value) -> Vec<u8> {
        let mut buf = Vec::new();
        encode(&mut buf, message).unwrap();
        buf
    }

    #[test]
    fn a_frame_is_a_little_endian_length_then_json() {
        let buf = frame(&serde_json::json!({"a": 1}));
        assert_eq!(&buf[..4], &7u32.to_le_bytes());
        assert_eq!(body(&buf), br#"{"a":1}"#);
    }

    #[test]
    fn encode_reuses_the_buffer() {
        let mut buf = Vec::with_capacity(1024);
        let before = buf.as_ptr();
        encode(&mut buf, &"first, longer message").unwrap();
        encode(&mut buf, &"second").unwrap();
        assert_eq!(body(&buf), br#""second""#);
        assert_eq!(buf.as_ptr(), before);
    }

    #[test]
    fn blocking_reads_round_trip_several_frames_and_end_cleanly() {
        let mut stream = Vec::new();
        for message in ["one", "", "three"] {
            stream.extend(frame(&serde_json::json!(message)));
        }
        let mut reader = &stream[..];
        let mut buf = Vec::new();
        for expected in [r#""one""#, r#""""#, r#""three""#] {
            assert!(read_blocking(&mut reader, &mut buf).unwrap());
            assert_eq!(body(&buf), expected.as_bytes());
        }
        assert!(!read_blocking(&mut reader, &mut buf).unwrap(), "clean end");
    }

    #[test]
    fn a_cut_frame_is_closed_not_a_clean_end() {
        let whole = frame(&serde_json::json!("message"));
        for cut in [2, 6] {
            let mut reader = &whole[..cut];
            let error = read_blocking(&mut reader, &mut Vec::new()).unwrap_err();
            assert!(matches!(error, FrameError::Closed), "cut at {cut}: {error}");
        }
    }

    #[test]
    fn a_length_over_the_maximum_is_refused_before_allocating() {
        let mut reader = &u32::MAX.to_le_bytes()[..];
        let mut buf = Vec::new();
        let error = read_blocking(&mut reader, &mut buf).unwrap_err();
        assert!(
            matches!(error, FrameError::TooLarge(n) if n == u32::MAX as usize),
            "{error}"
        );
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn deadline_reads_take_a_frame_written_in_pieces() {
        let (mut writer, mut reader) = UnixStream::pair().unwrap();
        let whole = frame(&serde_json::json!({"deny": vec!["x"; 100]}));
        let sender = std::thread::spawn(move || {
            for piece in whole.chunks(5) {
                writer.write_all(piece).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
            whole
        });
        let mut buf = Vec::new();
        read_before(&mut reader, &mut buf, Instant::now() + Duration::from_secs(10)).unwrap();
        assert_eq!(buf, sender.join().unwrap());
    }

    #[test]
    fn deadline_reads_time_out_when_nothing_comes() {
        let (_writer, mut reader) = UnixStream::pair().unwrap();
        let started = Instant::now();
        let error = read_before(&mut reader, &mut Vec::new(), started + Duration::from_millis(50)).unwrap_err();
        assert!(matches!(error, FrameError::TimedOut), "{error}");
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn deadline_reads_see_a_closed_pipe_and_trailing_bytes() {
        let (writer, mut reader) = UnixStream::pair().unwrap();
        drop(writer);
        let error = read_before(&mut reader, &mut Vec::new(), Instant::now() + Duration::from_secs(10)).unwrap_err();
        assert!(matches!(error, FrameError::Closed), "{error}");

        let (mut writer, mut reader) = UnixStream::pair().unwrap();
        let mut bytes = frame(&serde_json::json!("answer"));
        bytes.extend_from_slice(b"junk");
        writer.write_all(&bytes).unwrap();
        let error = read_before(&mut reader, &mut Vec::new(), Instant::now() + Duration::from_secs(10)).unwrap_err();
        assert!(matches!(error, FrameError::Trailing(4)), "{error}");
    }
}
