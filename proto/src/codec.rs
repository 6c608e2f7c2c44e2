//! Length-delimited framing: each [`Frame`] is a varint length followed by the encoded message
//! (prost's `encode_length_delimited`). [`FrameReader`] reads frames from any [`AsyncRead`]
//! with a size cap checked *before* the body is buffered; [`encode_frame`] produces the bytes to
//! write. On WebSocket, one binary message holds one length-delimited [`Envelope`](crate::v1::Envelope).

use bytes::{Buf, BytesMut};
use prost::Message;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::v1::Frame;
use crate::MAX_FRAME;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The underlying stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer announced a frame above the cap.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// The length prefix is not a valid varint.
    #[error("malformed length prefix")]
    BadLength,
    /// The bytes are not a valid message.
    #[error("malformed frame: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
}

/// Encodes `msg` with its varint length prefix.
pub fn encode_frame<M: Message>(msg: &M) -> Vec<u8> {
    msg.encode_length_delimited_to_vec()
}

/// Decodes one length-delimited message that fills `buf` exactly (a WebSocket message).
pub fn decode_frame<M: Message + Default>(mut buf: &[u8], max: usize) -> Result<M, FrameError> {
    let len = prost::encoding::decode_varint(&mut buf).map_err(|_| FrameError::BadLength)?;
    if len > max as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    if buf.len() as u64 != len {
        return Err(FrameError::Truncated);
    }
    Ok(M::decode(buf)?)
}

/// Reads length-delimited [`Frame`]s from a byte stream.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader capped at [`MAX_FRAME`].
    pub fn new(inner: R) -> Self {
        Self::with_max(inner, MAX_FRAME)
    }

    /// A reader capped at `max` bytes per frame.
    pub fn with_max(inner: R, max: usize) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
            max,
        }
    }

    /// The next frame, or `None` at a clean end of stream (between frames).
    pub async fn next(&mut self) -> Result<Option<Frame>, FrameError> {
        self.next_message().await
    }

    /// The next message of type `M`, or `None` at a clean end of stream.
    pub async fn next_message<M: Message + Default>(&mut self) -> Result<Option<M>, FrameError> {
        loop {
            if let Some((prefix, len)) = self.parse_len()? {
                if self.buf.len() >= prefix + len {
                    self.buf.advance(prefix);
                    let body = self.buf.split_to(len);
                    if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
                        // Do not keep a large frame's buffer around on an idle stream.
                        self.buf = BytesMut::new();
                    }
                    return Ok(Some(M::decode(body.freeze())?));
                }
                self.buf.reserve(prefix + len - self.buf.len());
            }
            if self.buf.capacity() == self.buf.len() {
                self.buf.reserve(4096);
            }
            let n = self.inner.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// The length prefix when complete: (prefix bytes, body length).
    fn parse_len(&self) -> Result<Option<(usize, usize)>, FrameError> {
        let mut value: u64 = 0;
        for (i, b) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if value > self.max as u64 {
                    return Err(FrameError::TooLarge {
                        len: value,
                        max: self.max,
                    });
                }
                return Ok(Some((i + 1, value as usize)));
            }
        }
        if self.buf.len() >= 10 {
            return Err(FrameError::BadLength);
        }
        Ok(None)
    }

    /// The underlying stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{frame, Heartbeat, Ping};

    fn ping(id: u64) -> Frame {
        Frame {
            msg: Some(frame::Msg::Ping(Ping { id })),
        }
    }

    #[tokio::test]
    async fn frames_round_trip_across_split_reads() {
        let mut bytes = Vec::new();
        for id in 0..100 {
            bytes.extend(encode_frame(&ping(id)));
        }
        bytes.extend(encode_frame(&Frame {
            msg: Some(frame::Msg::Heartbeat(Heartbeat {
                cpu_percent: 12.5,
                ..Default::default()
            })),
        }));
        // A reader that hands out 3 bytes at a time.
        let (mut w, r) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            w.write_all(&bytes).await.unwrap();
        });
        let mut reader = FrameReader::new(r);
        for id in 0..100 {
            assert_eq!(reader.next().await.unwrap(), Some(ping(id)));
        }
        assert!(matches!(
            reader.next().await.unwrap().unwrap().msg,
            Some(frame::Msg::Heartbeat(_))
        ));
        writer.await.unwrap();
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_and_truncated_frames_are_errors() {
        let mut big = Vec::new();
        prost::encoding::encode_varint(2 * MAX_FRAME as u64, &mut big);
        let mut reader = FrameReader::new(&big[..]);
        assert!(matches!(
            reader.next().await,
            Err(FrameError::TooLarge { .. })
        ));
        let whole = encode_frame(&ping(7));
        let mut reader = FrameReader::new(&whole[..whole.len() - 1]);
        assert!(matches!(reader.next().await, Err(FrameError::Truncated)));
        let mut reader = FrameReader::new(&[0xffu8; 11][..]);
        assert!(matches!(reader.next().await, Err(FrameError::BadLength)));
    }

    #[test]
    fn websocket_messages_decode_exactly() {
        let bytes = encode_frame(&ping(3));
        assert_eq!(decode_frame::<Frame>(&bytes, MAX_FRAME).unwrap(), ping(3));
        assert!(decode_frame::<Frame>(&bytes[..bytes.len() - 1], MAX_FRAME).is_err());
        assert!(decode_frame::<Frame>(&bytes, 1).is_err());
    }
}
