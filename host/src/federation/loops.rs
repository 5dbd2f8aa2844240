//! The loop guard: the path an entry took, and the hosts a request crossed.

use rmcp::model::MetaObject;
use serde_json::Value;

/// In an entry's `_meta`: the ids of the hosts it passed through, origin first.
pub(crate) const PATH_KEY: &str = "dev.fedmcp/path";
/// In a forwarded request's `_meta`: the ids of the hosts it crossed, first caller first.
pub(crate) const VIA_KEY: &str = "dev.fedmcp/via";
/// Hops a request may take by default before it is refused.
pub(crate) const DEFAULT_MAX_HOPS: usize = 8;

fn ids(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The path recorded in an entry's `_meta` (empty for entries not served by fedmcp).
pub(crate) fn path(meta: Option<&MetaObject>) -> Vec<String> {
    ids(meta.and_then(|meta| meta.get(PATH_KEY)))
}

/// Record that `host_id` serves the entry, after the hosts it already passed through.
pub(crate) fn stamp(meta: &mut Option<MetaObject>, host_id: &str) {
    let meta = meta.get_or_insert_with(MetaObject::default);
    let mut path = ids(meta.get(PATH_KEY));
    path.push(host_id.to_owned());
    meta.insert(PATH_KEY.to_owned(), Value::from(path));
}

/// The hosts a request crossed, from its `_meta`.
pub(crate) fn via(meta: &serde_json::Map<String, Value>) -> Vec<String> {
    ids(meta.get(VIA_KEY))
}

/// Whether a request that crossed `via` may be served here; the reason if not.
pub(crate) fn check_request(via: &[String], host_id: &str, max_hops: usize) -> Result<(), String> {
    if via.iter().any(|id| id == host_id) {
        return Err(format!("the request already passed through this host (via {})", via.join(" -> ")));
    }
    if via.len() >= max_hops {
        return Err(format!("the request crossed {} hosts, the limit is {max_hops}", via.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_refused_when_it_comes_back_or_goes_too_far() {
        let via = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(check_request(&via(&[]), "a", 8).is_ok());
        assert!(check_request(&via(&["b", "c"]), "a", 8).is_ok());
        assert!(check_request(&via(&["a", "b"]), "a", 8).unwrap_err().contains("already passed through"));
        assert!(check_request(&via(&["b", "c"]), "a", 2).unwrap_err().contains("limit is 2"));
    }

    #[test]
    fn stamping_extends_the_path() {
        let mut meta = None;
        stamp(&mut meta, "origin");
        stamp(&mut meta, "middle");
        assert_eq!(path(meta.as_ref()), ["origin", "middle"]);
    }
}
