//! What [`Store::list`](super::Store::list) is asked for and what it returns.

use crate::error::Result;
use crate::event::DownReason;
use crate::record::{Service, Status};

/// A record together with whether the service is alive now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceInfo {
    /// The stored record.
    pub service: Service,
    /// True when the record says UP *and* its lease-bound UP key exists.
    pub up: bool,
    /// True when it is DOWN because its client closed cleanly (not a
    /// crash). Known to [`Client::get`](crate::Client::get), views and
    /// unfiltered lists; lists narrowed by an index read no DOWN keys and
    /// say false.
    pub closed: bool,
}

impl ServiceInfo {
    /// Why the service is DOWN; `None` while it is UP. The same reasons a
    /// watcher is told ([`DownReason`]): `Forced`, `Missed`, `Declared`
    /// (its owner set it DOWN), `Closed`, or `Expired` (its record says UP
    /// but its client's lease is gone).
    pub fn down_reason(&self) -> Option<DownReason> {
        let s = &self.service;
        Some(if self.up {
            return None;
        } else if s.forced_down {
            DownReason::Forced
        } else if s.heartbeat_missed {
            DownReason::Missed
        } else if s.status == Status::Down {
            DownReason::Declared
        } else if self.closed {
            DownReason::Closed
        } else {
            DownReason::Expired
        })
    }
}

/// Which services [`Client::list`](crate::Client::list) returns; every field
/// set narrows the result (all unset lists everything in the namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this uuid.
    pub uuid: Option<String>,
    /// Only this type.
    pub service_type: Option<String>,
    /// Only this host.
    pub host: Option<String>,
    /// Only this region.
    pub region: Option<String>,
    /// Only services whose *effective* status is this.
    pub status: Option<Status>,
}

impl Filter {
    /// Everything in the namespace.
    pub fn all() -> Filter {
        Filter::default()
    }
    /// Narrows to one uuid.
    pub fn uuid(mut self, uuid: &str) -> Filter {
        self.uuid = Some(uuid.to_string());
        self
    }
    /// Narrows to one type.
    pub fn service_type(mut self, service_type: &str) -> Filter {
        self.service_type = Some(service_type.to_string());
        self
    }
    /// Narrows to one host.
    pub fn host(mut self, host: &str) -> Filter {
        self.host = Some(host.to_string());
        self
    }
    /// Narrows to one region.
    pub fn region(mut self, region: &str) -> Filter {
        self.region = Some(region.to_string());
        self
    }
    /// Narrows to one effective status.
    pub fn status(mut self, status: Status) -> Filter {
        self.status = Some(status);
        self
    }

    /// Validates and normalizes the fields that become key segments.
    pub(crate) fn validated(&self) -> Result<Filter> {
        let mut f = self.clone();
        if let Some(u) = &f.uuid {
            f.uuid = Some(crate::record::normalize_uuid(u)?);
        }
        for (what, v) in [
            ("type", &f.service_type),
            ("host", &f.host),
            ("region", &f.region),
        ] {
            if let Some(v) = v {
                crate::record::check_segment(what, v, false)?;
            }
        }
        Ok(f)
    }

    /// True when `info` passes every field of the filter.
    pub fn matches(&self, info: &ServiceInfo) -> bool {
        let effective = if info.up { Status::Up } else { Status::Down };
        self.matches_record(&info.service) && self.status.is_none_or(|st| st == effective)
    }

    /// True when `s` passes every field of the filter but the status.
    pub(crate) fn matches_record(&self, s: &Service) -> bool {
        self.uuid.as_ref().is_none_or(|u| *u == s.uuid)
            && self
                .service_type
                .as_ref()
                .is_none_or(|t| *t == s.service_type)
            && self.host.as_ref().is_none_or(|h| *h == s.host)
            && self.region.as_ref().is_none_or(|r| *r == s.region)
    }
}
