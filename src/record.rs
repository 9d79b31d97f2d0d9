//! The service record: the public Rust type, its validation, and conversion
//! to and from the protobuf wire format shared with the Python library.

use std::time::Duration;

use prost::Message;

use crate::error::{Error, ErrorKind, Result};

/// The generated protobuf types (`proto/os_lively/service.proto`), for callers
/// that already speak protobuf.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/oslively.rs"));
}

/// Longest `type`, `host` or `region` accepted: long enough for any real
/// host name (253), short enough that keys stay small.
pub const MAX_SEGMENT_LEN: usize = 255;
/// Longest maintenance note accepted.
pub const MAX_NOTE_LEN: usize = 4096;

/// A service's declared status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Status {
    /// The service says it is working. It is *effectively* up only while its
    /// registering client keeps its lease alive.
    #[default]
    Up,
    /// Forced down (maintenance) or declared down.
    Down,
}

impl Status {
    /// `"UP"` or `"DOWN"`, as in the key layout.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
        }
    }
}

/// A service record: what a daemon registers about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Service {
    /// 32 lowercase hex digits (hyphenated form accepted on input); empty to
    /// let [`Client::update`](crate::Client::update) generate one.
    pub uuid: String,
    /// What the service is, e.g. `nova-compute`.
    pub service_type: String,
    /// Where it runs, e.g. `host-7`.
    pub host: String,
    /// Declared status.
    pub status: Status,
    /// Optional region; empty for none.
    pub region: String,
    /// Maintenance window start (seconds since the epoch; 0 for none).
    pub maintenance_start: u64,
    /// Maintenance window end (seconds since the epoch; 0 for none).
    pub maintenance_end: u64,
    /// Why the service is down for maintenance.
    pub maintenance_note: String,
    /// Heartbeat deadline: with `Some(d)` the service is UP only while its
    /// owner also checks in ([`Client::heartbeat`](crate::Client::heartbeat)
    /// or [`Client::update`](crate::Client::update)) at least every `d`;
    /// without one it stays UP while its process lives. Stored in whole
    /// milliseconds, between [`MIN_HEARTBEAT`] and [`MAX_HEARTBEAT`].
    ///
    /// In an update, `None` keeps the deadline the service has (so changing
    /// the region does not silently drop hang detection) and
    /// `Some(Duration::ZERO)` removes it ([`Service::without_heartbeat`]).
    /// A record read back has `None` when it has no deadline.
    pub heartbeat: Option<Duration>,
    /// True, with status DOWN, when the owner's client took the service
    /// down because its owner missed the heartbeat deadline. Set only by
    /// the library: ignored by [`Client::update`](crate::Client::update).
    pub heartbeat_missed: bool,
    /// True while an operator's [`Client::down`](crate::Client::down) holds
    /// the service DOWN: its owner's updates change the other fields but not
    /// that, until [`Client::up`](crate::Client::up) or the end of the
    /// maintenance window lifts it. Read-only: `update()` ignores it.
    pub forced_down: bool,
    /// True, with `forced_down`, when the owner itself set the service DOWN
    /// while an operator held it: lifting the hold leaves it DOWN. Set only
    /// by the library: ignored by [`Client::update`](crate::Client::update).
    pub owner_down: bool,
    /// A request, not stored: with `exclusive`, [`Client::update`](crate::Client::update)
    /// refuses ([`ErrorKind::Conflict`](crate::ErrorKind::Conflict)) to take
    /// a service over while another holder's lease is alive, instead of
    /// taking it over (the default: identity is type+host, and a restarted
    /// daemon takes its service back from its dead self). Always false in
    /// records read back.
    pub exclusive: bool,
}

/// Shortest heartbeat deadline accepted: a deadline must leave room for
/// the transaction that enforces it.
pub const MIN_HEARTBEAT: Duration = Duration::from_millis(100);
/// Longest heartbeat deadline accepted (a week).
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(7 * 24 * 3600);

impl Service {
    /// A new UP record with no uuid yet.
    pub fn new(service_type: &str, host: &str) -> Service {
        Service {
            service_type: service_type.to_string(),
            host: host.to_string(),
            ..Service::default()
        }
    }

    /// Sets the region (builder style).
    pub fn with_region(mut self, region: &str) -> Service {
        self.region = region.to_string();
        self
    }

    /// Sets the uuid (builder style).
    pub fn with_uuid(mut self, uuid: &str) -> Service {
        self.uuid = uuid.to_string();
        self
    }

    /// Sets the heartbeat deadline (builder style): the service is UP only
    /// while its owner checks in at least every `deadline`
    /// ([`Client::heartbeat`](crate::Client::heartbeat)). `Duration::ZERO`
    /// removes it.
    pub fn with_heartbeat(mut self, deadline: Duration) -> Service {
        self.heartbeat = Some(deadline);
        self
    }

    /// Removes the service's heartbeat deadline in the next update (builder
    /// style); an update that says nothing about it keeps it.
    pub fn without_heartbeat(mut self) -> Service {
        self.heartbeat = Some(Duration::ZERO);
        self
    }

    /// Refuses to take the service over from another live holder (builder
    /// style): see [`Service::exclusive`](Service#structfield.exclusive).
    pub fn exclusive(mut self) -> Service {
        self.exclusive = true;
        self
    }

    /// Checks every field that becomes part of a key and returns the record
    /// with its uuid normalized (generated when empty).
    pub(crate) fn validated(&self) -> Result<Service> {
        let mut s = self.clone();
        s.uuid = if s.uuid.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()
        } else {
            normalize_uuid(&s.uuid)?
        };
        check_segment("type", &s.service_type, false)?;
        check_segment("host", &s.host, false)?;
        check_segment("region", &s.region, true)?;
        if s.maintenance_note.len() > MAX_NOTE_LEN || s.maintenance_note.contains('\0') {
            return Err(Error::invalid(format!(
                "maintenance note: at most {MAX_NOTE_LEN} bytes and no NUL"
            )));
        }
        s.heartbeat = match s.heartbeat {
            None => None,
            // Removes the deadline (see `Service::heartbeat`).
            Some(d) if d.is_zero() => Some(Duration::ZERO),
            Some(d) if d < MIN_HEARTBEAT || d > MAX_HEARTBEAT => {
                return Err(Error::invalid(format!(
                    "heartbeat deadline {d:?}: must be between {MIN_HEARTBEAT:?} and {MAX_HEARTBEAT:?}"
                )));
            }
            // Whole milliseconds, as stored, so an unchanged record compares equal.
            Some(d) => Some(Duration::from_millis(
                d.as_nanos().div_ceil(1_000_000) as u64
            )),
        };
        // Only the library sets these.
        s.heartbeat_missed = false;
        s.forced_down = false;
        s.owner_down = false;
        Ok(s)
    }

    /// Serializes to the protobuf wire format.
    pub fn to_bytes(&self) -> Vec<u8> {
        pb::Service::from(self).encode_to_vec()
    }

    /// Parses the protobuf wire format. Does not validate key segments; use
    /// [`Client::update`](crate::Client::update) for that.
    pub fn from_bytes(bytes: &[u8]) -> Result<Service> {
        let msg = pb::Service::decode(bytes).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("not a Service message: {e}"),
            )
        })?;
        Ok(Service::from(msg))
    }
}

impl From<&Service> for pb::Service {
    fn from(s: &Service) -> pb::Service {
        pb::Service {
            uuid: s.uuid.clone(),
            r#type: s.service_type.clone(),
            host: s.host.clone(),
            status: match s.status {
                Status::Up => pb::Status::Up as i32,
                Status::Down => pb::Status::Down as i32,
            },
            region: s.region.clone(),
            maintenance_start: s.maintenance_start,
            maintenance_end: s.maintenance_end,
            maintenance_note: s.maintenance_note.clone(),
            heartbeat_ms: s
                .heartbeat
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            heartbeat_missed: s.heartbeat_missed,
            forced_down: s.forced_down,
            owner_down: s.owner_down,
        }
    }
}

impl From<pb::Service> for Service {
    fn from(m: pb::Service) -> Service {
        Service {
            uuid: m.uuid,
            service_type: m.r#type,
            host: m.host,
            // An unknown enum value from a newer writer is not UP: be
            // conservative about liveness.
            status: if m.status == pb::Status::Up as i32 {
                Status::Up
            } else {
                Status::Down
            },
            region: m.region,
            maintenance_start: m.maintenance_start,
            maintenance_end: m.maintenance_end,
            maintenance_note: m.maintenance_note,
            heartbeat: (m.heartbeat_ms > 0).then(|| Duration::from_millis(m.heartbeat_ms)),
            heartbeat_missed: m.heartbeat_missed,
            forced_down: m.forced_down,
            owner_down: m.owner_down,
            exclusive: false,
        }
    }
}

/// Decodes a stored record; `key` names it in the error.
pub(crate) fn decode_stored(key: &[u8], bytes: &[u8]) -> Result<Service> {
    pb::Service::decode(bytes).map(Service::from).map_err(|e| {
        Error::new(
            ErrorKind::CorruptRecord,
            format!("{}: {e}", String::from_utf8_lossy(key)),
        )
    })
}

/// Accepts 32 hex digits or the hyphenated 8-4-4-4-12 form, any case, and
/// returns 32 lowercase hex digits.
pub fn normalize_uuid(uuid: &str) -> Result<String> {
    let bad = || {
        Error::invalid(format!(
            "uuid {:?}: expected 32 hex digits (hyphens allowed)",
            truncate(uuid)
        ))
    };
    if uuid.len() != 32 && uuid.len() != 36 {
        return Err(bad());
    }
    let parsed = uuid::Uuid::try_parse(uuid).map_err(|_| bad())?;
    Ok(parsed.simple().to_string())
}

/// Validates one key segment (`type`, `host`, `region`).
pub(crate) fn check_segment(what: &str, value: &str, may_be_empty: bool) -> Result<()> {
    if value.is_empty() {
        if may_be_empty {
            return Ok(());
        }
        return Err(Error::invalid(format!("{what} must not be empty")));
    }
    if value.len() > MAX_SEGMENT_LEN {
        return Err(Error::invalid(format!(
            "{what} {:?}: {} bytes, at most {MAX_SEGMENT_LEN}",
            truncate(value),
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| *c == '/' || c.is_control()) {
        return Err(Error::invalid(format!(
            "{what} {:?}: must not contain {c:?}",
            truncate(value)
        )));
    }
    Ok(())
}

/// Keeps error messages short when the input is huge.
fn truncate(s: &str) -> String {
    if s.len() <= 64 {
        return s.to_string();
    }
    let mut cut = 64;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_forms() {
        let want = "3b059e33bbc44bc8b0d37df6e8d70223";
        assert_eq!(normalize_uuid(want).unwrap(), want);
        assert_eq!(
            normalize_uuid("3B059E33-BBC4-4BC8-B0D3-7DF6E8D70223").unwrap(),
            want
        );
        for bad in [
            "",
            "xyz",
            "3b059e33bbc44bc8b0d37df6e8d7022",
            "{3b059e33-bbc4-4bc8-b0d3-7df6e8d70223}",
            "urn:uuid:3b059e33-bbc4-4bc8-b0d3-7df6e8d70223",
        ] {
            assert_eq!(
                normalize_uuid(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
    }

    #[test]
    fn segments_are_checked() {
        for (t, h, r) in [
            ("", "h", ""),
            ("t", "", ""),
            ("a/b", "h", ""),
            ("t", "h\0", ""),
            ("t", "h", "r/1"),
        ] {
            let err = Service::new(t, h).with_region(r).validated().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        }
        let long = "x".repeat(MAX_SEGMENT_LEN + 1);
        let err = Service::new(&long, "h").validated().unwrap_err();
        assert!(err.message().contains("type"));
        assert!(Service::new("t", "h").validated().unwrap().uuid.len() == 32);
    }

    #[test]
    fn wire_round_trip_and_python_compat() {
        let s = Service {
            uuid: "3b059e33bbc44bc8b0d37df6e8d70223".into(),
            service_type: "nova-compute".into(),
            host: "h7".into(),
            status: Status::Down,
            region: "r1".into(),
            maintenance_start: 5,
            maintenance_end: 9,
            maintenance_note: "disk".into(),
            heartbeat: Some(Duration::from_millis(2500)),
            heartbeat_missed: true,
            forced_down: true,
            owner_down: true,
            exclusive: false,
        };
        assert_eq!(Service::from_bytes(&s.to_bytes()).unwrap(), s);
        // Field numbers as written by the Python library: type = 2, status = 4.
        let bytes = s.to_bytes();
        assert!(bytes.windows(2).any(|w| w == [0x12, 12])); // field 2, len 12
        assert!(bytes.windows(2).any(|w| w == [0x20, 1])); // field 4 = DOWN
        // forced_down is field 30 (varint): tag (30 << 3) = 240 = [0xf0, 0x01].
        assert!(bytes.windows(3).any(|w| w == [0xf0, 0x01, 1]));
        assert_eq!(
            decode_stored(b"k", b"\xff\xff").unwrap_err().kind(),
            ErrorKind::CorruptRecord
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes under `by-uuid/` are a corrupt-record error or a
        /// record, never a panic.
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            match decode_stored(b"/services/by-uuid/x", &bytes) {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::CorruptRecord),
            }
        }

        /// Whatever strings a caller passes, validation either accepts a
        /// record whose key segments are safe, or refuses it as invalid.
        #[test]
        fn validation_accepts_only_safe_segments(t in ".{0,300}", h in ".{0,40}", r in ".{0,40}", u in ".{0,40}") {
            let s = Service { uuid: u, service_type: t, host: h, region: r, ..Service::default() };
            match s.validated() {
                Ok(v) => {
                    for seg in [&v.service_type, &v.host] {
                        prop_assert!(!seg.is_empty() && seg.len() <= MAX_SEGMENT_LEN);
                    }
                    for seg in [&v.service_type, &v.host, &v.region, &v.uuid] {
                        prop_assert!(!seg.contains('/') && !seg.contains('\0'));
                    }
                    prop_assert_eq!(v.uuid.len(), 32);
                }
                Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidArgument),
            }
        }
    }
}
