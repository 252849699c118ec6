//! The command sequences: connect, the courtesy calls, publish and play, and the commands
//! that end a stream.

use super::*;

#[test]
fn release_stream_gets_no_answer_and_no_reply_carries_undefined() {
    let mut client = Client::new();
    client.command(0, "connect", 1.0, vec![]);
    let connect = client.commands();
    assert_eq!(
        connect
            .iter()
            .map(|(id, name, txn, _)| (*id, name.as_str(), *txn))
            .collect::<Vec<_>>(),
        [(0, "_result", 1.0)]
    );
    // xiu's relay sends these with connect's transaction id: a `_result` for 1
    // would look like connect's answer again.
    client.command(0, "releaseStream", 1.0, vec!["key".into()]);
    assert_eq!(client.commands(), [], "nginx-rtmp answers nothing either");
    client.command(0, "FCPublish", 1.0, vec!["key".into()]);
    let fc_publish = client.commands();
    assert_eq!(
        fc_publish
            .iter()
            .map(|(id, name, txn, _)| (*id, name.as_str(), *txn))
            .collect::<Vec<_>>(),
        [(0, "onFCPublish", 0.0)],
        "a notification, never a `_result` for the client's transaction"
    );
    client.command(0, "createStream", 2.0, vec![]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 2.0, vec![1.0.into()])]
    );
    client.command(0, "getStreamLength", 3.0, vec!["key".into()]);
    assert_eq!(
        client.commands(),
        [(0, "_result".to_owned(), 3.0, vec![0.0.into()])]
    );
}
