//! Response bodies: the layer's body type, and collecting an upstream body
//! to bytes up to a limit — past it, the frames read so far are replayed in
//! front of the rest, so a large body still reaches the caller whole.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use tower::BoxError;

/// The body of every response [`SwrService`](super::SwrService) returns:
/// stored bytes for a response from the cache, the inner service's own body
/// (boxed) for one passed through.
pub type SwrBody = UnsyncBoxBody<Bytes, BoxError>;

/// `bytes` as a [`SwrBody`].
pub(crate) fn full(bytes: Bytes) -> SwrBody {
    UnsyncBoxBody::new(Full::new(bytes).map_err(|never| match never {}))
}

/// An inner body as a [`SwrBody`].
pub(crate) fn boxed<B>(body: B) -> SwrBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    UnsyncBoxBody::new(body.map_err(Into::into))
}

/// What collecting a body gave.
pub(crate) enum Collected {
    /// All of it, within the limit and without trailers: storable.
    Whole(Bytes),
    /// Over the limit, or with trailers: not stored, passed on whole.
    Streamed(SwrBody),
}

/// Reads `body` to its end, or until it passes `limit` bytes or a trailers
/// frame comes (then the frames read are replayed in front of the rest).
pub(crate) async fn collect<B>(body: B, limit: usize) -> Result<Collected, BoxError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut body = Box::pin(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    loop {
        let frame = match body.frame().await {
            None => return Ok(Collected::Whole(concat(chunks, total))),
            Some(frame) => frame.map_err(Into::into)?,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                total = total.saturating_add(data.len());
                chunks.push(data);
                if total <= limit {
                    continue;
                }
                None
            }
            Err(trailers) => Some(trailers),
        };
        let mut head: VecDeque<Frame<Bytes>> = chunks.into_iter().map(Frame::data).collect();
        head.extend(frame);
        let rest: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>> =
            Box::pin(body.map_err(Into::into));
        return Ok(Collected::Streamed(UnsyncBoxBody::new(Resumed {
            head,
            rest,
        })));
    }
}

fn concat(mut chunks: Vec<Bytes>, total: usize) -> Bytes {
    if chunks.len() == 1 {
        return chunks.pop().unwrap_or_default();
    }
    let mut out = Vec::with_capacity(total);
    for c in &chunks {
        out.extend_from_slice(c);
    }
    Bytes::from(out)
}

/// Frames already read, then the rest of the body.
struct Resumed {
    head: VecDeque<Frame<Bytes>>,
    rest: Pin<Box<dyn Body<Data = Bytes, Error = BoxError> + Send>>,
}

impl Body for Resumed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match this.head.pop_front() {
            Some(frame) => Poll::Ready(Some(Ok(frame))),
            None => this.rest.as_mut().poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let head: u64 = self
            .head
            .iter()
            .filter_map(|f| f.data_ref())
            .map(|d| d.len() as u64)
            .sum();
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower().saturating_add(head));
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper.saturating_add(head));
        }
        hint
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::StreamBody;

    fn chunks(parts: &[&'static str]) -> impl Body<Data = Bytes, Error = BoxError> + Send {
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = parts
            .iter()
            .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
            .collect();
        StreamBody::new(futures::stream::iter(frames))
    }

    async fn all(body: SwrBody) -> Vec<u8> {
        body.collect().await.unwrap().to_bytes().to_vec()
    }

    #[tokio::test]
    async fn within_the_limit_it_is_whole_past_it_it_is_replayed() {
        match collect(chunks(&["ab", "cd"]), 4).await.unwrap() {
            Collected::Whole(b) => assert_eq!(&b[..], b"abcd"),
            Collected::Streamed(_) => panic!("4 bytes fit a limit of 4"),
        }
        match collect(chunks(&["ab", "cd", "ef"]), 3).await.unwrap() {
            Collected::Whole(_) => panic!("6 bytes do not fit a limit of 3"),
            Collected::Streamed(b) => assert_eq!(all(b).await, b"abcdef"),
        }
    }
}
