//! Kafka framing: a 4-byte big-endian size, then the message. Requests are read whole (they
//! are small for consumers, and bounded by a limit); responses are read whole only when the
//! gateway changes them, and otherwise copied through in pieces.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the peer closed the connection")]
    Closed,
    #[error("a frame of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge { size: i64, limit: usize },
    #[error("a frame with a negative size ({0})")]
    Negative(i32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads one frame's size; `Closed` on a clean end of stream before it.
pub async fn read_size<R: AsyncRead + Unpin>(r: &mut R, limit: usize) -> Result<usize, FrameError> {
    let mut size = [0u8; 4];
    match r.read_exact(&mut size).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = i32::from_be_bytes(size);
    let size = usize::try_from(size).map_err(|_| FrameError::Negative(size))?;
    if size > limit {
        return Err(FrameError::TooLarge {
            size: size as i64,
            limit,
        });
    }
    Ok(size)
}

/// Reads one whole frame (without its size).
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    limit: usize,
) -> Result<Bytes, FrameError> {
    let size = read_size(r, limit).await?;
    let mut buf = BytesMut::zeroed(size);
    r.read_exact(&mut buf).await?;
    Ok(buf.freeze())
}

/// Writes one frame (the size, then `body`).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> std::io::Result<()> {
    let size = u32::try_from(body.len())
        .map_err(|_| std::io::Error::other("a frame larger than 4 GiB"))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(body);
    w.write_all(&out).await
}

/// A request: its header and the bytes of its body.
#[derive(Debug, Clone)]
pub struct Request {
    pub key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
    /// The whole frame as received (header and body).
    pub raw: Bytes,
}

/// Why a request could not be understood.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("a request shorter than its header")]
    Short,
    #[error("unknown API key {0}")]
    UnknownKey(i16),
    #[error("a malformed {key:?} v{version} request: {reason}")]
    Malformed {
        key: ApiKey,
        version: i16,
        reason: String,
    },
}

impl Request {
    /// Parses a request frame's header, leaving the body as bytes.
    pub fn parse(frame: Bytes) -> Result<Self, RequestError> {
        if frame.len() < 8 {
            return Err(RequestError::Short);
        }
        let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let key = ApiKey::try_from(raw_key).map_err(|_| RequestError::UnknownKey(raw_key))?;
        let raw = frame.clone();
        let mut buf = frame;
        let header =
            RequestHeader::decode(&mut buf, key.request_header_version(version)).map_err(|e| {
                RequestError::Malformed {
                    key,
                    version,
                    reason: e.to_string(),
                }
            })?;
        Ok(Self {
            key,
            header,
            body: buf,
            raw,
        })
    }

    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// Decodes the body as `T`.
    pub fn decode<T: Decodable>(&self) -> Result<T, RequestError> {
        let mut body = self.body.clone();
        T::decode(&mut body, self.version()).map_err(|e| RequestError::Malformed {
            key: self.key,
            version: self.version(),
            reason: e.to_string(),
        })
    }

    /// This request's header with `body` re-encoded, as a frame body.
    pub fn reencode<T: Encodable>(&self, body: &T) -> anyhow::Result<Bytes> {
        let mut buf = BytesMut::new();
        self.header
            .encode(&mut buf, self.key.request_header_version(self.version()))?;
        body.encode(&mut buf, self.version())?;
        Ok(buf.freeze())
    }

    /// The frame body of a response to this request.
    pub fn respond<T: Encodable>(&self, body: &T) -> anyhow::Result<Bytes> {
        response(self.key, self.version(), self.correlation_id(), body)
    }
}

/// The frame body of a response: header (v0, or v1 with tagged fields for flexible versions;
/// ApiVersions always v0) and body.
pub fn response<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::new();
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut buf, key.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// A response frame body split into header and body, for the responses the gateway changes.
pub fn parse_response<T: Decodable>(
    key: ApiKey,
    version: i16,
    frame: Bytes,
) -> anyhow::Result<(ResponseHeader, T)> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))?;
    let body = T::decode(&mut buf, version)?;
    Ok((header, body))
}

/// Encodes a response with an already decoded header.
pub fn encode_response<T: Encodable>(
    key: ApiKey,
    version: i16,
    header: &ResponseHeader,
    body: &T,
) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.response_header_version(version))?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// A request frame body the gateway makes itself (to the upstream broker).
pub fn request<T: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> anyhow::Result<Bytes> {
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some("ferry-gateway".into());
    let mut buf = BytesMut::new();
    header.encode(&mut buf, key.request_header_version(version))?;
    body.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::MetadataRequest;

    #[tokio::test]
    async fn frames_over_the_limit_or_negative_are_refused() {
        let mut big: &[u8] = &[0, 0, 4, 1, 0];
        assert!(matches!(
            read_frame(&mut big, 1024).await,
            Err(FrameError::TooLarge { size: 1025, .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 1024).await,
            Err(FrameError::Negative(-1))
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, 1024).await,
            Err(FrameError::Closed)
        ));
        let mut short: &[u8] = &[0, 0, 0, 9, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 1024).await,
            Err(FrameError::Io(_))
        ));
    }

    #[test]
    fn requests_round_trip_and_garbage_is_named() {
        let mut m = MetadataRequest::default();
        m.topics = Some(vec![]);
        let frame = request(ApiKey::Metadata, 12, 7, &m).unwrap();
        let req = Request::parse(frame).unwrap();
        assert_eq!(
            (req.key, req.version(), req.correlation_id()),
            (ApiKey::Metadata, 12, 7)
        );
        let back: MetadataRequest = req.decode().unwrap();
        assert_eq!(back.topics, Some(vec![]));
        assert!(matches!(
            Request::parse(Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 1])),
            Err(RequestError::UnknownKey(0x7f7f))
        ));
        assert!(matches!(
            Request::parse(Bytes::from_static(&[0, 3])),
            Err(RequestError::Short)
        ));
    }
}
