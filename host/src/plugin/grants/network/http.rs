//! Outgoing wasi:http requests go only to the origins `capabilities.http` lists; the host
//! makes the connection (the guest's socket grants play no part in it), and a grant by name
//! is held to the private-address rule where the name points at the time of the request.

use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

use super::{HttpGrant, non_public_range};
use crate::plugin::grants::{Denials, deny};

/// The `WasiHttpHooks` of one call.
pub(in crate::plugin) struct HttpGate {
    plugin: String,
    allowed: Vec<HttpGrant>,
    denials: Denials,
    private_networks: bool,
}

impl HttpGate {
    pub(super) fn new(plugin: &str, allowed: Vec<HttpGrant>, private_networks: bool, denials: &Denials) -> Self {
        Self { plugin: plugin.to_owned(), allowed, denials: denials.clone(), private_networks }
    }
}

type PendingResponse = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                http::Response<WasiBody>,
                Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for HttpGate {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _response_errors: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> PendingResponse {
        let uri = request.uri();
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let method = request.method().clone();
        if !self.allowed.iter().any(|grant| grant.admits(&host, port)) {
            let origin = format!("{host}:{port}");
            if deny(&self.denials, format!("http {method} {origin} (not in capabilities.http)")) {
                tracing::warn!(plugin = %self.plugin, %origin, %method, "HTTP request denied");
            }
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        // A grant by name is checked where the name points now: the host resolves it, refuses
        // private answers, and (plain HTTP) connects to the address it checked, so a second
        // lookup cannot point elsewhere. HTTPS keeps the name, which TLS verifies: a rebound
        // name cannot present the origin's certificate.
        let check_name = !self.private_networks && host.parse::<std::net::IpAddr>().is_err();
        let plugin = self.plugin.clone();
        let denials = self.denials.clone();
        Box::new(async move {
            use http_body_util::BodyExt;
            let mut request = request;
            if check_name {
                let origin = format!("{host}:{port}");
                let addresses: Vec<std::net::SocketAddr> = match tokio::net::lookup_host(origin.as_str()).await {
                    Ok(addresses) => addresses.collect(),
                    Err(error) => {
                        return Err(wasmtime_wasi_http::Error::Connect(std::io::Error::other(format!(
                            "{origin} does not resolve: {error}"
                        ))));
                    }
                };
                if let Some((address, range)) =
                    addresses.iter().find_map(|a| non_public_range(a.ip()).map(|range| (a.ip(), range)))
                {
                    let what = format!(
                        "http {method} {origin} resolves to {address}, a {range} address (grant the IP literal or set \
                         plugins.allow_private_networks)"
                    );
                    if deny(&denials, what) {
                        tracing::warn!(plugin = %plugin, %origin, %address, range, %method, "HTTP request to a non-public address denied");
                    }
                    return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
                }
                if !https && let Some(address) = addresses.first() {
                    pin_authority(&mut request, *address)?;
                }
            }
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as Box<dyn Future<Output = _> + Send>))
        })
    }
}

/// Point a plain HTTP request at `address` (checked), keeping the name in its Host header
/// (wasi:http set it from the authority the guest gave).
fn pin_authority(
    request: &mut http::Request<WasiBody>,
    address: std::net::SocketAddr,
) -> wasmtime_wasi_http::Result<()> {
    let mut parts = request.uri().clone().into_parts();
    parts.authority = Some(address.to_string().parse().map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?);
    *request.uri_mut() = http::Uri::from_parts(parts).map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;

    use http_body_util::{BodyExt, Empty};
    use wasmtime_wasi_http::{WasiBody, WasiHttpHooks};

    use crate::plugin::grants::{Denials, NetworkGrants};

    fn request(uri: &str) -> http::Request<WasiBody> {
        let body: WasiBody = Empty::new().map_err(|never| match never {}).boxed_unsync();
        http::Request::get(uri).body(body).unwrap()
    }

    /// Send `uri` through a gate granting `origin`: `Err(denied)` when the gate refused it.
    async fn send(origin: &str, private_networks: bool, uri: &str) -> Result<(), String> {
        let grants = NetworkGrants::parse(Vec::new(), vec![origin.to_owned()]).unwrap();
        let denials = Denials::default();
        let mut gate = grants.http_gate("p", private_networks, &denials);
        let no_errors: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send> = Box::new(async { Ok(()) });
        let pending: Pin<Box<_>> = Box::into_pin(gate.send_request(request(uri), None, no_errors));
        let outcome = pending.await;
        let denied = denials.lock().unwrap().join("; ");
        match outcome {
            Err(wasmtime_wasi_http::Error::HttpRequestDenied) => Err(denied),
            // Allowed through; nothing listens on port 9, so the connection fails.
            _ => Ok(()),
        }
    }

    #[tokio::test]
    async fn only_granted_origins_and_public_addresses_are_reached() {
        let unlisted = send("localhost:9", true, "http://127.0.0.1:9/").await.unwrap_err();
        assert!(unlisted.contains("not in capabilities.http"), "{unlisted}");
        let private = send("localhost:9", false, "http://localhost:9/").await.unwrap_err();
        assert!(private.contains("loopback") && private.contains("plugins.allow_private_networks"), "{private}");
        assert_eq!(send("localhost:9", true, "http://localhost:9/").await, Ok(()));
        // An IP literal grant is the operator's explicit choice.
        assert_eq!(send("127.0.0.1:9", false, "http://127.0.0.1:9/").await, Ok(()));
    }
}
