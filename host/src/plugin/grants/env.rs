//! `capabilities.env`: host environment variables the plugin may read, by name, capped by
//! `plugins.env_allowed`.

use wasmtime_wasi::WasiCtxBuilder;

/// Refuse entries that cannot be variable names.
pub(super) fn parse(names: &[String]) -> Result<(), String> {
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() || name.contains('=') {
            return Err(format!("capabilities.env[{i}]: {name:?} is not a variable name"));
        }
    }
    Ok(())
}

/// Refuse names the host does not let plugins read (`None`: any).
pub(super) fn check_ceiling(names: &[String], allowed: Option<&[String]>) -> Result<(), String> {
    let Some(allowed) = allowed else { return Ok(()) };
    for (i, name) in names.iter().enumerate() {
        if !allowed.contains(name) {
            return Err(format!(
                "capabilities.env[{i}]: {name} is not among the variables this host lets plugins read \
                 (plugins.env_allowed)"
            ));
        }
    }
    Ok(())
}

/// Copy each granted variable the host has into the plugin's environment; no other variable
/// reaches it.
pub(in crate::plugin) fn wire(names: &[String], wasi: &mut WasiCtxBuilder) {
    for (name, value) in granted_values(names) {
        wasi.env(name, value);
    }
}

/// The granted variables the host has, with their values.
fn granted_values(names: &[String]) -> impl Iterator<Item = (&str, String)> {
    names.iter().filter_map(|name| Some((name.as_str(), std::env::var(name).ok()?)))
}

pub(super) fn describe(names: &[String], out: &mut Vec<String>) {
    if !names.is_empty() {
        out.push(format!("env {}", names.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::{check_ceiling, granted_values, parse};

    #[test]
    fn only_allowed_names_pass_the_ceiling() {
        let allowed = ["API_KEY".to_owned()];
        assert_eq!(check_ceiling(&["API_KEY".to_owned()], Some(&allowed)), Ok(()));
        let error = check_ceiling(&["API_KEY".to_owned(), "HOME".to_owned()], Some(&allowed)).unwrap_err();
        assert!(error.starts_with("capabilities.env[1]: HOME") && error.contains("plugins.env_allowed"), "{error}");
        assert_eq!(check_ceiling(&["HOME".to_owned()], None), Ok(()));
    }

    #[test]
    fn names_must_be_variable_names() {
        assert!(parse(&["A=B".to_owned()]).unwrap_err().starts_with("capabilities.env[0]"));
        assert!(parse(&[String::new()]).is_err());
        assert_eq!(parse(&["PATH".to_owned()]), Ok(()));
    }

    #[test]
    fn only_granted_variables_reach_the_plugin() {
        // PATH is set wherever the tests run; the granted name the host lacks is skipped.
        let names = ["FEDMCP_SURELY_UNSET_VARIABLE".to_owned(), "PATH".to_owned()];
        let values: Vec<&str> = granted_values(&names).map(|(name, _)| name).collect();
        assert_eq!(values, ["PATH"]);
        assert_eq!(granted_values(&[]).count(), 0, "nothing granted, nothing passed");
    }
}
