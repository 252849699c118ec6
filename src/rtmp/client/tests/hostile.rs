//! Hostile input: random bytes and random commands, at every point of the sequence.

use std::time::Instant;

use proptest::prelude::*;

use super::scripted::{Script, publishing};
use super::*;
use crate::rtmp::pair::drain;
use crate::rtmp::server::status_object;

proptest! {
    #[test]
    fn random_bytes_never_panic_a_fresh_client(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        // From the first byte (the handshake first), and after a handshake done elsewhere.
        for mut client in [
            ClientSession::new(config(), Instant::now()),
            ClientSession::after_handshake(config(), Instant::now()),
        ] {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = client.poll(&mut buf) {}
        }
    }

    #[test]
    fn random_bytes_never_panic_a_publishing_client(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        let (mut client, _server) = publishing();
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = client.poll(&mut buf) {}
        client.send_media(type_id::VIDEO, 1, &Bytes::from_static(&[0x17, 1]));
        client.unpublish();
    }

    /// Well-formed chunks carrying random commands: the session must stay calm
    /// whatever the server says, at any point of the sequence.
    #[test]
    fn random_commands_never_panic(
        script in proptest::collection::vec(
            (0u32..3, 0.0f64..8.0, proptest::sample::select(vec![
                "_result", "_error", "onStatus", "onBWDone", "close", "onFCPublish",
            ]), proptest::sample::select(vec![
                "NetStream.Publish.Start", "NetConnection.Connect.Success",
                "NetStream.Publish.BadName", "NetStream.Unpublish.Success", "",
            ]), any::<bool>()),
            0..12,
        ),
    ) {
        let mut client = ClientSession::after_handshake(config(), Instant::now());
        let mut server = Script::new();
        for (stream_id, txn, name, code, error) in script {
            let level = if error { "error" } else { "status" };
            let info = status_object(level, code, "", None);
            server.command(
                stream_id,
                &[name.into(), txn.floor().into(), Amf0Value::Null, info, txn.into()],
            );
            let mut bytes = drain(&mut server.out);
            while let Ok(Some(_)) = client.poll(&mut bytes) {}
            drain(client.out());
        }
    }
}
