//! The `[telemetry]` section of `host.toml`: where the host's OpenTelemetry traces go (an
//! OTLP/HTTP collector), under which service name, and in which encoding. Without the section
//! (or without `otlp_endpoint`) nothing is traced or exported.
//!
//! Errors name fields relative to the section (`otlp_endpoint`); `crate::config` adds
//! `telemetry.`.

use serde::Deserialize;

use crate::config::FieldError;

/// The path OTLP/HTTP collectors take traces on, added to an endpoint given as a base URL.
const TRACES_PATH: &str = "/v1/traces";
/// The service name spans carry when `service_name` is not set.
pub(crate) const DEFAULT_SERVICE_NAME: &str = "fedmcp";

/// `[telemetry]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTelemetry {
    otlp_endpoint: Option<String>,
    service_name: Option<String>,
    protocol: Option<String>,
}

/// How spans are encoded on their way to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// `http/protobuf`, what every OTLP/HTTP collector takes.
    #[default]
    HttpProtobuf,
    /// `http/json`.
    HttpJson,
}

/// `[telemetry]` checked: the host traces its requests and exports the spans here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetrySettings {
    /// The full URL spans are posted to (`…/v1/traces`).
    pub traces_url: String,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
    pub protocol: OtlpProtocol,
}

impl TelemetrySettings {
    /// Export to the collector at `endpoint` (a base URL such as `http://127.0.0.1:4318`, or
    /// the full `…/v1/traces` URL), as `service_name`, in protobuf.
    pub fn new(endpoint: &str, service_name: &str) -> Result<Self, String> {
        Ok(Self {
            traces_url: traces_url(endpoint)?,
            service_name: service_name.to_owned(),
            protocol: OtlpProtocol::HttpProtobuf,
        })
    }
}

impl RawTelemetry {
    /// `None`: the section names no endpoint, so nothing is exported (a section with only a
    /// service name or a protocol is refused rather than silently doing nothing).
    pub(crate) fn parse(self) -> Result<Option<TelemetrySettings>, FieldError> {
        let Some(endpoint) = self.otlp_endpoint else {
            if self.service_name.is_some() || self.protocol.is_some() {
                let message =
                    "is required when [telemetry] sets service_name or protocol (traces go nowhere without it)";
                return Err(FieldError::new("otlp_endpoint", message));
            }
            return Ok(None);
        };
        let mut settings =
            TelemetrySettings::new(&endpoint, DEFAULT_SERVICE_NAME).map_err(|e| FieldError::new("otlp_endpoint", e))?;
        if let Some(name) = self.service_name {
            if name.trim().is_empty() || name.len() > 255 || name.chars().any(char::is_control) {
                let message = format!("{name:?} is not a service name (1 to 255 printable characters)");
                return Err(FieldError::new("service_name", message));
            }
            settings.service_name = name;
        }
        if let Some(protocol) = self.protocol {
            settings.protocol = match protocol.as_str() {
                "http/protobuf" => OtlpProtocol::HttpProtobuf,
                "http/json" => OtlpProtocol::HttpJson,
                "grpc" => {
                    let message = "\"grpc\" is not supported: fedmcp exports over OTLP/HTTP (http/protobuf or http/json; collectors take it on port 4318)";
                    return Err(FieldError::new("protocol", message));
                }
                other => {
                    return Err(FieldError::new("protocol", format!("{other:?} is not http/protobuf or http/json")));
                }
            };
        }
        Ok(Some(settings))
    }
}

/// The URL spans are posted to: `endpoint` itself when it already ends in `/v1/traces`, else
/// `endpoint` with that path added (as `OTEL_EXPORTER_OTLP_ENDPOINT` is read).
fn traces_url(endpoint: &str) -> Result<String, String> {
    let parsed = endpoint
        .parse::<http::Uri>()
        .map_err(|e| format!("{endpoint:?} is not a URL like http://127.0.0.1:4318 ({e})"))?;
    match parsed.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{endpoint:?} is not an http:// or https:// URL")),
    }
    if parsed.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} names no host"));
    }
    if parsed.query().is_some() {
        return Err(format!("{endpoint:?} has a query; give the collector's base URL"));
    }
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        return Ok(base.to_owned());
    }
    Ok(format!("{base}{TRACES_PATH}"))
}

#[cfg(test)]
mod tests {
    use super::{OtlpProtocol, RawTelemetry};

    fn parse(text: &str) -> Result<Option<super::TelemetrySettings>, String> {
        let raw: RawTelemetry = toml::from_str(text).map_err(|e| e.to_string())?;
        raw.parse().map_err(|e| e.to_string())
    }

    #[test]
    fn an_endpoint_turns_tracing_on_with_defaults() {
        let settings = parse("otlp_endpoint = \"http://127.0.0.1:4318\"").unwrap().unwrap();
        assert_eq!(settings.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(settings.service_name, "fedmcp");
        assert_eq!(settings.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(parse("").unwrap(), None);
    }

    #[test]
    fn a_full_traces_url_is_kept_and_the_rest_is_read() {
        let text = "otlp_endpoint = \"https://collector.example:4318/v1/traces/\"\nservice_name = \"gateway-a\"\nprotocol = \"http/json\"";
        let settings = parse(text).unwrap().unwrap();
        assert_eq!(settings.traces_url, "https://collector.example:4318/v1/traces");
        assert_eq!(settings.service_name, "gateway-a");
        assert_eq!(settings.protocol, OtlpProtocol::HttpJson);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            ("otlp_endpoint = \"127.0.0.1:4318\"", "otlp_endpoint"),
            ("otlp_endpoint = \"ftp://x\"", "otlp_endpoint"),
            ("otlp_endpoint = \"http://x?a=b\"", "otlp_endpoint"),
            ("service_name = \"a\"", "otlp_endpoint"),
            ("otlp_endpoint = \"http://x\"\nservice_name = \" \"", "service_name"),
            ("otlp_endpoint = \"http://x\"\nprotocol = \"grpc\"", "protocol"),
            ("otlp_endpoint = \"http://x\"\nprotocol = \"thrift\"", "protocol"),
            ("otlp_endpoint = \"http://x\"\nsampler = \"always\"", "sampler"),
        ];
        for (text, field) in cases {
            let error = parse(text).unwrap_err();
            assert!(error.contains(field), "{text:?} gave {error:?}");
        }
    }
}
