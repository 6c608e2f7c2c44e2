//! Reads a child's output line by line, with a cap on what one item may hold.
//!
//! A line longer than the cap is cut into consecutive pieces of at most `max` bytes (cut on a
//! UTF-8 character boundary when the text is valid UTF-8), so one output item — and the frame
//! carrying it — never exceeds `MAX_FRAME`, and nothing is dropped. Invalid UTF-8 is replaced
//! with U+FFFD. The newline (and a `\r` before it) is not part of the line; a last line without
//! a newline is returned at end of file.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Largest piece of a plain stdout/stderr line (256 KiB).
pub const LINE_MAX: usize = 256 * 1024;

/// Largest line of a JSON-lines tool read as one JSON item (768 KiB); longer lines arrive as
/// `stdout` pieces of this size.
pub const JSON_LINE_MAX: usize = 768 * 1024;

/// One line, or one piece of a longer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text.
    pub text: String,
    /// False when the line goes on in the next piece.
    pub complete: bool,
}

/// Line reader over a child's pipe.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: BufReader<R>,
    max: usize,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader cutting lines at `max` bytes.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner: BufReader::with_capacity(64 * 1024, inner),
            max: max.max(4),
            buf: Vec::new(),
        }
    }

    /// The next line or piece; `None` at end of file.
    pub async fn next(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            let avail = self.inner.fill_buf().await?;
            if avail.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let bytes = std::mem::take(&mut self.buf);
                return Ok(Some(Line {
                    text: text(bytes),
                    complete: true,
                }));
            }
            let room = self.max - self.buf.len();
            let window = &avail[..avail.len().min(room)];
            if let Some(i) = window.iter().position(|b| *b == b'\n') {
                self.buf.extend_from_slice(&window[..i]);
                self.inner.consume(i + 1);
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
                let bytes = std::mem::take(&mut self.buf);
                return Ok(Some(Line {
                    text: text(bytes),
                    complete: true,
                }));
            }
            let n = window.len();
            self.buf.extend_from_slice(window);
            self.inner.consume(n);
            if self.buf.len() >= self.max {
                let cut = char_boundary(&self.buf);
                let rest = self.buf.split_off(cut);
                let piece = std::mem::replace(&mut self.buf, rest);
                return Ok(Some(Line {
                    text: text(piece),
                    complete: false,
                }));
            }
        }
    }
}

/// The bytes as text, invalid UTF-8 replaced.
fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// The length of the longest prefix of `b` that does not end inside a multi-byte UTF-8
/// character (all of `b` when it does not, or when the tail is not UTF-8 anyway).
fn char_boundary(b: &[u8]) -> usize {
    for back in 1..=3.min(b.len()) {
        let i = b.len() - back;
        let byte = b[i];
        if byte & 0xC0 == 0x80 {
            continue; // continuation byte: look further back
        }
        let width = match byte {
            0x00..=0x7F => 1,
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if width > back && i > 0 { i } else { b.len() };
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next().await.unwrap() {
            out.push(l);
        }
        out
    }

    fn line(text: &str, complete: bool) -> Line {
        Line {
            text: text.into(),
            complete,
        }
    }

    #[tokio::test]
    async fn lines_crlf_and_a_last_line_without_newline() {
        let lines = read_all(b"one\ntwo\r\n\nlast", 100).await;
        assert_eq!(
            lines,
            [
                line("one", true),
                line("two", true),
                line("", true),
                line("last", true)
            ]
        );
    }

    #[tokio::test]
    async fn long_lines_are_cut_without_splitting_characters() {
        // "é" is 2 bytes: with max 5, "aaaé" (5 bytes) fits, "aaaaé" would split the é.
        let lines = read_all("aaaaébb\nx\n".as_bytes(), 5).await;
        assert_eq!(
            lines,
            [line("aaaa", false), line("ébb", true), line("x", true)]
        );
        let joined: String = lines[..2].iter().map(|l| l.text.as_str()).collect();
        assert_eq!(joined, "aaaaébb");
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced() {
        let lines = read_all(b"ok \xff\xfe end\n", 100).await;
        assert_eq!(lines, [line("ok \u{fffd}\u{fffd} end", true)]);
    }

    #[test]
    fn boundaries() {
        assert_eq!(char_boundary(b"abc"), 3);
        assert_eq!(char_boundary("aé".as_bytes()), 3);
        assert_eq!(char_boundary(&"aé".as_bytes()[..2]), 1);
        assert_eq!(char_boundary(&"a€".as_bytes()[..3]), 1);
        assert_eq!(char_boundary(b"\xff\xff"), 2);
    }
}
