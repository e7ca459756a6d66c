//! Records framed as `length (u32 LE) | crc32 of the payload (u32 LE) | payload`,
//! the payload being a value encoded with postcard. The same framing is used for
//! the log segments, the snapshot file and the TCP protocol, so a torn or
//! corrupted record is always detected instead of being decoded into nonsense.

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const HEADER_LEN: usize = 8;

/// The largest payload read from a stream: a snapshot chunk or a batch of log
/// entries carrying 2 MiB values stays far below this, so a bigger length from
/// the network is corruption and must not make us allocate it.
pub const MAX_STREAM_PAYLOAD: usize = 256 * 1024 * 1024;

/// The largest payload a record can describe at all (its length is a u32).
/// Files hold records this large: a snapshot of a big store is one record,
/// and decoding from memory cannot over-allocate.
pub const MAX_PAYLOAD: usize = u32::MAX as usize;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("record of {0} bytes is over the limit of {1} bytes")]
    TooLarge(usize, usize),
    #[error("checksum mismatch: expected {expected:#010x}, computed {actual:#010x}")]
    Checksum { expected: u32, actual: u32 },
    #[error("cannot encode record: {0}")]
    Encode(postcard::Error),
    #[error("cannot decode record: {0}")]
    Decode(postcard::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Appends one framed record holding `value` to `buf`.
pub fn encode<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<(), FrameError> {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER_LEN]);
    let mut encoded =
        postcard::to_extend(value, std::mem::take(buf)).map_err(FrameError::Encode)?;
    let payload_len = encoded.len() - start - HEADER_LEN;
    if payload_len > MAX_PAYLOAD {
        encoded.truncate(start);
        *buf = encoded;
        return Err(FrameError::TooLarge(payload_len, MAX_PAYLOAD));
    }
    let crc = crc32fast::hash(&encoded[start + HEADER_LEN..]);
    encoded[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    encoded[start + 4..start + HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    *buf = encoded;
    Ok(())
}

/// What the start of a buffer holds.
pub enum Decoded<T> {
    /// A whole record and how many bytes of the buffer it used.
    Record(T, usize),
    /// The buffer ends inside a record (a torn write, or more bytes to come).
    Incomplete,
}

/// Decodes the record at the start of `buf`.
pub fn decode<T: DeserializeOwned>(buf: &[u8]) -> Result<Decoded<T>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(Decoded::Incomplete);
    }
    let (len, expected) = parse_header(buf[..HEADER_LEN].try_into().expect("8 bytes"), MAX_PAYLOAD)?;
    let Some(payload) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(Decoded::Incomplete);
    };
    let value = decode_payload(payload, expected)?;
    Ok(Decoded::Record(value, HEADER_LEN + len))
}

/// Reads one record from a stream; `Ok(None)` at a clean end of stream.
pub async fn read<T, R>(reader: &mut R, buf: &mut Vec<u8>) -> Result<Option<T>, FrameError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin,
{
    let mut header = [0; HEADER_LEN];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let (len, expected) = parse_header(header, MAX_STREAM_PAYLOAD)?;
    buf.resize(len, 0);
    reader.read_exact(buf).await?;
    decode_payload(buf, expected).map(Some)
}

fn parse_header(header: [u8; HEADER_LEN], limit: usize) -> Result<(usize, u32), FrameError> {
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    if len > limit {
        return Err(FrameError::TooLarge(len, limit));
    }
    Ok((len, crc))
}

fn decode_payload<T: DeserializeOwned>(payload: &[u8], expected: u32) -> Result<T, FrameError> {
    let actual = crc32fast::hash(payload);
    if actual != expected {
        return Err(FrameError::Checksum { expected, actual });
    }
    postcard::from_bytes(payload).map_err(FrameError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_detects_damage() {
        let mut buf = Vec::new();
        encode(&mut buf, &("a".to_string(), 7u64)).unwrap();
        encode(&mut buf, &("b".to_string(), 8u64)).unwrap();
        let Decoded::Record((k, v), used) = decode::<(String, u64)>(&buf).unwrap() else {
            panic!("expected a record")
        };
        assert_eq!((k.as_str(), v), ("a", 7));
        assert!(matches!(
            decode::<(String, u64)>(&buf[used..]).unwrap(),
            Decoded::Record(_, _)
        ));
        assert!(matches!(
            decode::<(String, u64)>(&buf[..used - 1]).unwrap(),
            Decoded::Incomplete
        ));
        buf[HEADER_LEN] ^= 0xff;
        assert!(matches!(
            decode::<(String, u64)>(&buf),
            Err(FrameError::Checksum { .. })
        ));
    }

    #[tokio::test]
    async fn streams_refuse_huge_lengths_that_files_may_hold() {
        // A snapshot of a big store is one record of more than 256 MiB in its
        // file; the same length arriving from the network is refused unread.
        let len = (MAX_STREAM_PAYLOAD + 1) as u32;
        let mut header = len.to_le_bytes().to_vec();
        header.extend_from_slice(&0u32.to_le_bytes());
        let mut reader = &header[..];
        let mut buf = Vec::new();
        let refused = read::<u64, _>(&mut reader, &mut buf).await;
        assert!(matches!(refused, Err(FrameError::TooLarge(n, MAX_STREAM_PAYLOAD)) if n == len as usize));
        assert!(buf.capacity() < 1024, "nothing was allocated for the claimed length");
        assert!(matches!(decode::<u64>(&header), Ok(Decoded::Incomplete)));
    }
}
