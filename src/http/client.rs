//! Where a request came from, and the correlation id its answer and log lines share.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use super::AppState;

/// The value of the cookie `name` the request carries, among all its `Cookie` headers.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[derive(Debug, Clone)]
pub struct RequestMeta {
    /// The client: the peer, or what a trusted proxy's `X-Forwarded-For` names.
    pub client_address: Option<IpAddr>,
    pub correlation_id: String,
}

impl FromRequestParts<AppState> for RequestMeta {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        let client_address = match peer {
            Some(peer) if state.config.http.trusted_proxies.contains(&peer) => {
                forwarded_for(&parts.headers).or(Some(peer))
            }
            other => other,
        };
        Ok(RequestMeta {
            client_address,
            correlation_id: super::error::correlation_id(),
        })
    }
}

/// The address a trusted proxy appended last to `X-Forwarded-For`: the one that connected to
/// it. Earlier entries were written by whoever sent the request and prove nothing.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()?
        .trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_last_forwarded_address_is_the_client() {
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 10.0.0.1"),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("192.0.2.7"));
        assert_eq!(forwarded_for(&headers), "192.0.2.7".parse().ok());
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(forwarded_for(&headers), "2001:db8::1".parse().ok());
        assert_eq!(forwarded_for(&HeaderMap::new()), None);
    }
}
