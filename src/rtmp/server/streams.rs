//! The NetStreams a connection created, and what each one does.

use super::ServerSession;

/// What a NetStream of the connection does; publish and play are pending while the
/// application decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamRole {
    Created,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
}

impl ServerSession {
    pub(super) fn role(&self, stream_id: u32) -> Option<StreamRole> {
        self.streams
            .iter()
            .find(|(id, _)| *id == stream_id)
            .map(|(_, role)| *role)
    }

    pub(super) fn set_role(&mut self, stream_id: u32, role: StreamRole) {
        if let Some(entry) = self.streams.iter_mut().find(|(id, _)| *id == stream_id) {
            entry.1 = role;
        }
    }
}
