//! One rung of a stream's ladder: a rendition with its own packager, fed by
//! the ladder encoder ([`super::ladder`]) and read by requests.

use std::sync::{Mutex, MutexGuard};

use super::packager::Packager;

/// One rung of a stream's ladder: a rendition fed by the ladder encoder.
#[derive(Debug)]
pub struct Rung {
    /// Its name in URLs (the profile's).
    pub name: String,
    /// Its profile's nominal bit rate, until it made a part.
    pub nominal_bps: u64,
    packager: Mutex<Packager>,
}

impl Rung {
    /// Its packager's window, to read.
    pub fn packager(&self) -> MutexGuard<'_, Packager> {
        self.packager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds one of its packets (see [`Packager::push`]).
    pub fn push(
        &self,
        packet: &crate::hub::Packet,
        dts: u64,
    ) -> Result<bool, crate::fmp4::Fmp4Error> {
        self.packager().push(packet, dts)
    }
}

impl Rung {
    /// A rung named `name` (its profile) with an empty packager.
    pub fn new(name: String, nominal_bps: u64, packager: Packager) -> Self {
        Self {
            name,
            nominal_bps,
            packager: Mutex::new(packager),
        }
    }
}
