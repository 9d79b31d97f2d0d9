//! The key layout under a namespace (see DESIGN.md): building keys from
//! validated segments, and parsing keys read back from etcd.

use crate::record::Status;

/// Builds and parses the keys of one namespace.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    /// `NS/services/`
    root: String,
    /// `NS/os-lively/region-census`: outside `services/`, which the Python
    /// library reads and deletes in, so only we ever touch it.
    census: String,
}

/// A key in the namespace, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParsedKey {
    /// `by-uuid/<uuid>`: the record.
    Record(String),
    /// `by-type-host/<type>/<host>`: value is the uuid.
    TypeHost(String, String),
    /// `by-region/<region>/<uuid>`; the Python library omits the uuid.
    Region(String, Option<String>),
    /// `by-status/<UP|DOWN>/<uuid>`.
    Status(Status, String),
}

impl Keys {
    /// `namespace` is `""` or `"/name"` as `Config` normalizes it (a name
    /// may end in `/`, as the Python library allows).
    pub(crate) fn new(namespace: &str) -> Keys {
        Keys {
            root: format!("{namespace}/services/"),
            census: format!("{namespace}/os-lively/region-census"),
        }
    }

    /// Every key of the namespace starts with this.
    pub(crate) fn root(&self) -> &str {
        &self.root
    }

    pub(crate) fn record(&self, uuid: &str) -> String {
        format!("{}by-uuid/{uuid}", self.root)
    }

    pub(crate) fn records_prefix(&self) -> String {
        format!("{}by-uuid/", self.root)
    }

    pub(crate) fn type_host(&self, service_type: &str, host: &str) -> String {
        format!("{}by-type-host/{service_type}/{host}", self.root)
    }

    pub(crate) fn type_prefix(&self, service_type: &str) -> String {
        format!("{}by-type-host/{service_type}/", self.root)
    }

    pub(crate) fn region(&self, region: &str, uuid: &str) -> String {
        format!("{}by-region/{region}/{uuid}", self.root)
    }

    pub(crate) fn region_prefix(&self, region: &str) -> String {
        format!("{}by-region/{region}/", self.root)
    }

    pub(crate) fn region_root(&self) -> String {
        format!("{}by-region/", self.root)
    }

    /// `by-region/<region>`: the key the Python library writes (and
    /// deletes) for every service of a region.
    pub(crate) fn legacy_region(&self, region: &str) -> String {
        format!("{}by-region/{region}", self.root)
    }

    /// `NS/services/progress`: the progress mark older versions wrote
    /// behind etcd's gRPC proxy; never written now, skipped silently by
    /// `watch::apply`.
    pub(crate) fn progress_mark(&self) -> String {
        format!("{}progress", self.root)
    }

    /// The region index's census (see `store::census`).
    pub(crate) fn census(&self) -> &str {
        &self.census
    }

    pub(crate) fn status(&self, status: Status, uuid: &str) -> String {
        format!("{}by-status/{}/{uuid}", self.root, status.as_str())
    }

    pub(crate) fn status_prefix(&self, status: Status) -> String {
        format!("{}by-status/{}/", self.root, status.as_str())
    }

    /// Parses a key read from etcd. `None` for anything we do not understand
    /// (written by another tool): callers skip it and log once.
    pub(crate) fn parse(&self, key: &[u8]) -> Option<ParsedKey> {
        let key = std::str::from_utf8(key).ok()?;
        let rest = key.strip_prefix(self.root.as_str())?;
        let (index, rest) = rest.split_once('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        let nonempty = |s: &&str| !s.is_empty();
        match (index, parts.as_slice()) {
            ("by-uuid", [uuid]) if is_stored_uuid(uuid) => {
                Some(ParsedKey::Record(uuid.to_string()))
            }
            ("by-type-host", [t, h]) if nonempty(t) && nonempty(h) => {
                Some(ParsedKey::TypeHost(t.to_string(), h.to_string()))
            }
            ("by-region", [r]) if nonempty(r) => Some(ParsedKey::Region(r.to_string(), None)),
            ("by-region", [r, uuid]) if nonempty(r) && is_stored_uuid(uuid) => {
                Some(ParsedKey::Region(r.to_string(), Some(uuid.to_string())))
            }
            ("by-status", [s, uuid]) if is_stored_uuid(uuid) => {
                let status = match *s {
                    "UP" => Status::Up,
                    "DOWN" => Status::Down,
                    _ => return None,
                };
                Some(ParsedKey::Status(status, uuid.to_string()))
            }
            _ => None,
        }
    }
}

/// The stored uuid form: 32 lowercase hex digits. The Python library stored
/// `uuid.uuid4().hex`, which is the same.
fn is_stored_uuid(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const U: &str = "3b059e33bbc44bc8b0d37df6e8d70223";

    #[test]
    fn layout_matches_design() {
        let k = Keys::new("/ns");
        assert_eq!(k.record(U), format!("/ns/services/by-uuid/{U}"));
        assert_eq!(
            k.type_host("nova", "h1"),
            "/ns/services/by-type-host/nova/h1"
        );
        assert_eq!(k.region("r1", U), format!("/ns/services/by-region/r1/{U}"));
        assert_eq!(k.region_prefix("r1"), "/ns/services/by-region/r1/");
        assert_eq!(k.legacy_region("r1"), "/ns/services/by-region/r1");
        assert_eq!(k.census(), "/ns/os-lively/region-census");
        assert!(!k.census().starts_with(k.root()));
        assert_eq!(
            k.status(Status::Up, U),
            format!("/ns/services/by-status/UP/{U}")
        );
        assert_eq!(Keys::new("").record(U), format!("/services/by-uuid/{U}"));
        // The Python library's keys for namespace "ns/".
        assert_eq!(
            Keys::new("/ns/").record(U),
            format!("/ns//services/by-uuid/{U}")
        );
    }

    #[test]
    fn parse_round_trips_and_tolerates_python_keys() {
        let k = Keys::new("");
        assert_eq!(
            k.parse(k.record(U).as_bytes()),
            Some(ParsedKey::Record(U.into()))
        );
        assert_eq!(
            k.parse(k.type_host("t", "h").as_bytes()),
            Some(ParsedKey::TypeHost("t".into(), "h".into()))
        );
        assert_eq!(
            k.parse(b"/services/by-region/r1"),
            Some(ParsedKey::Region("r1".into(), None))
        );
        assert_eq!(
            k.parse(k.status(Status::Down, U).as_bytes()),
            Some(ParsedKey::Status(Status::Down, U.into()))
        );
        for junk in [
            &b"/services/by-uuid/xyz"[..],
            b"/services/other/a",
            b"/services/by-status/MAYBE/3b059e33bbc44bc8b0d37df6e8d70223",
            b"/elsewhere",
            b"/services/by-uuid/\xff",
        ] {
            assert_eq!(k.parse(junk), None, "{}", String::from_utf8_lossy(junk));
        }
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any key written into the namespace by another tool parses to
        /// something well-formed or to nothing; it never panics.
        #[test]
        fn parse_never_panics_and_yields_clean_segments(suffix in proptest::collection::vec(any::<u8>(), 0..80)) {
            let k = Keys::new("/ns");
            let mut key = b"/ns/services/".to_vec();
            key.extend_from_slice(&suffix);
            if let Some(parsed) = k.parse(&key) {
                let segs: Vec<String> = match parsed {
                    ParsedKey::Record(u) => vec![u],
                    ParsedKey::TypeHost(t, h) => vec![t, h],
                    ParsedKey::Region(r, u) => vec![r].into_iter().chain(u).collect(),
                    ParsedKey::Status(_, u) => vec![u],
                };
                for s in segs {
                    prop_assert!(!s.is_empty() && !s.contains('/'));
                }
            }
        }
    }
}
