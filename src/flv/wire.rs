//! Bounds-checked reading of tag header fields and the Enhanced RTMP pieces
//! audio and video share (ModEx blocks, Multitrack prefix).
//!
//! Every read names the field it wanted so a truncation error says where the
//! payload ended; nothing here can index out of bounds or allocate.

use super::FlvError;

/// A forward-only view of a payload; each read consumes from the front.
pub(super) struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    /// Reads `N` bytes, or reports `field` as truncated.
    fn take<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], FlvError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(FlvError::Truncated(field))?;
        self.rest = rest;
        Ok(*head)
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, FlvError> {
        let [byte] = self.take::<1>(field)?;
        Ok(byte)
    }

    pub(super) fn u16(&mut self, field: &'static str) -> Result<u16, FlvError> {
        Ok(u16::from_be_bytes(self.take::<2>(field)?))
    }

    pub(super) fn u24(&mut self, field: &'static str) -> Result<u32, FlvError> {
        let [a, b, c] = self.take::<3>(field)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }

    /// Signed 24-bit big-endian (FLV's SI24, used for composition offsets
    /// which may be negative).
    pub(super) fn si24(&mut self, field: &'static str) -> Result<i32, FlvError> {
        let [a, b, c] = self.take::<3>(field)?;
        // Place the 24 bits at the top, then an arithmetic shift sign-extends.
        Ok(i32::from_be_bytes([a, b, c, 0]) >> 8)
    }

    pub(super) fn fourcc(&mut self) -> Result<u32, FlvError> {
        Ok(u32::from_be_bytes(self.take::<4>("FourCC")?))
    }

    /// The bytes not read yet (a packet's body after its header).
    pub(super) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub(super) fn skip(&mut self, len: usize, field: &'static str) -> Result<(), FlvError> {
        self.rest = self.rest.get(len..).ok_or(FlvError::Truncated(field))?;
        Ok(())
    }
}

/// Builds a FourCC code as the big-endian `u32` of its four ASCII bytes, the
/// form E-RTMP puts on the wire and in onMetaData's codec ids.
pub(super) const fn fourcc(code: &[u8; 4]) -> u32 {
    u32::from_be_bytes(*code)
}

/// E-RTMP packet type (audio and video alike) announcing ModEx blocks.
const PACKET_TYPE_MOD_EX: u8 = 7;

/// Skips any chain of E-RTMP ModEx blocks and returns the real packet type.
///
/// Each block is: size byte + 1 (the value 256, i.e. byte 0xFF, escapes to a
/// following UI16 + 1), that many data bytes, then a byte whose high nibble
/// is the ModEx type and low nibble the next packet type, which may be ModEx
/// again. The loop always consumes at least two bytes per round, so it ends
/// on any finite input. The data (e.g. TimestampOffsetNano) is not needed to
/// classify a packet and is ignored.
pub(super) fn skip_mod_ex(cur: &mut Cursor<'_>, mut packet_type: u8) -> Result<u8, FlvError> {
    while packet_type == PACKET_TYPE_MOD_EX {
        let size = match cur.u8("ModEx data size")? {
            0xFF => usize::from(cur.u16("ModEx extended data size")?) + 1,
            short => usize::from(short) + 1,
        };
        cur.skip(size, "ModEx data")?;
        packet_type = cur.u8("ModEx type and packet type")? & 0x0F;
    }
    Ok(packet_type)
}

/// E-RTMP AvMultitrackType: how tracks are laid out after the prefix.
#[derive(Clone, Copy, PartialEq, Eq)]
enum MultitrackLayout {
    /// One track, one FourCC; no per-track size.
    OneTrack,
    /// Several tracks sharing one FourCC; each track has a UI24 size.
    ManyTracks,
    /// Several tracks, each with its own FourCC and UI24 size.
    ManyTracksManyCodecs,
}

impl MultitrackLayout {
    fn from_nibble(value: u8) -> Result<Self, FlvError> {
        match value {
            0 => Ok(Self::OneTrack),
            1 => Ok(Self::ManyTracks),
            2 => Ok(Self::ManyTracksManyCodecs),
            other => Err(FlvError::UnknownMultitrackType(other)),
        }
    }
}

/// What the enhanced header says about the (first) track of a packet.
pub(super) struct TrackPrefix {
    /// The real packet type (after ModEx and the Multitrack indirection).
    pub(super) packet_type: u8,
    /// FourCC of the (first) track's codec.
    pub(super) fourcc: u32,
    /// Whether the packet used the Multitrack wrapper.
    pub(super) multitrack: bool,
    /// Track id of the first track; 0 (the default track) when not multitrack.
    pub(super) track_id: u8,
}

/// Reads the FourCC and, for Multitrack packets, the multitrack prefix and
/// the first track's id (and size, which is skipped). Leaves the cursor at
/// the first track's body so codec-specific fields (composition time) follow.
///
/// `multitrack_type` is the packet type value meaning Multitrack: 6 for
/// video, 5 for audio.
pub(super) fn read_track_prefix(
    cur: &mut Cursor<'_>,
    packet_type: u8,
    multitrack_type: u8,
) -> Result<TrackPrefix, FlvError> {
    if packet_type != multitrack_type {
        return Ok(TrackPrefix {
            packet_type,
            fourcc: cur.fourcc()?,
            multitrack: false,
            track_id: 0,
        });
    }
    let byte = cur.u8("multitrack type and packet type")?;
    let layout = MultitrackLayout::from_nibble(byte >> 4)?;
    // With ManyTracksManyCodecs the FourCC moves into each track; either way
    // exactly one FourCC precedes the first track id.
    let fourcc = cur.fourcc()?;
    let track_id = cur.u8("multitrack track id")?;
    if layout != MultitrackLayout::OneTrack {
        cur.u24("multitrack track size")?;
    }
    Ok(TrackPrefix {
        packet_type: byte & 0x0F,
        fourcc,
        multitrack: true,
        track_id,
    })
}
