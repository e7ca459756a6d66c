//! `sha256:<hex>` digests, checked so that a digest is always a safe file name.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid digest {0:?}: only sha256:<64 lowercase hex digits> is supported")]
pub struct BadDigest(pub String);

impl Digest {
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn of(bytes: &[u8]) -> Self {
        Self { hex: hex::encode(Sha256::digest(bytes)) }
    }
}

impl FromStr for Digest {
    type Err = BadDigest;
    fn from_str(s: &str) -> Result<Self, BadDigest> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| BadDigest(s.to_string()))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(BadDigest(s.to_string()));
        }
        Ok(Self { hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new() }
    }

    pub fn finish(self) -> (W, Digest) {
        (self.inner, Digest { hex: hex::encode(self.hasher.finalize()) })
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_refuse_paths() {
        let d = Digest::of(b"hello");
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert!("sha256:../../etc".parse::<Digest>().is_err());
        assert!("md5:abc".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64)).parse::<Digest>().is_err());
    }
}
