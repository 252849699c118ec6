//! The HTTP side against hostile clients, written here as real TCP clients: one
//! that trickles header lines, one that trickles a body, idle keep-alive
//! connections, more connections than the cap. And stream identity: two real
//! ffmpeg publishers whose keys have the same mask, told apart by id in the API
//! and the metrics, with control by id acting on exactly one of them.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sinks::NginxSink;
use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};

const TOKEN: &str = "hardening-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn http_addr(prism: &Prism) -> SocketAddr {
    prism.app.as_ref().unwrap().http_addr()
}

fn api(prism: &Prism, path: &str) -> String {
    format!("http://{}{path}", http_addr(prism))
}

fn http_connections(prism: &Prism) -> usize {
    prism.app.as_ref().unwrap().http_connections()
}

/// Reads what the server sends until it closes the connection (EOF or reset).
/// Returns the bytes and how long that took.
async fn read_until_closed(stream: &mut TcpStream, bound: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match timeout(
            bound.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, started.elapsed()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the connection was still open after {bound:?}; it sent: {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

/// One GET with `Connection: close` over a raw socket; returns the whole answer.
async fn raw_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: prism\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let (answer, _) = read_until_closed(&mut stream, WAIT).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_header_lines_is_closed_while_honest_requests_are_answered() {
    // The default header deadline (10 s); a short request deadline for the body case.
    let prism = Prism::start_with(|c| c.http.request_timeout_secs = 4).await;
    let addr = http_addr(&prism);
    let client = common::http_client();

    // An idle keep-alive connection after one request, and a silent one: both
    // closed by the same header deadline.
    let idle = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: prism\r\n\r\n")
            .await
            .unwrap();
        let (answer, elapsed) = read_until_closed(&mut stream, Duration::from_secs(40)).await;
        (String::from_utf8_lossy(&answer).into_owned(), elapsed)
    });
    let silent = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        read_until_closed(&mut stream, Duration::from_secs(40)).await
    });

    // Slowloris: a request line, then one header line every 5 s, never the end.
    let trickler = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /api/v1/streams HTTP/1.1\r\nHost: prism\r\n")
            .await
            .unwrap();
        let started = Instant::now();
        let mut lines = 0u32;
        let mut buf = [0u8; 1024];
        let mut got = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    lines += 1;
                    let line = format!("X-Slow-{lines}: still coming\r\n");
                    if stream.write_all(line.as_bytes()).await.is_err() {
                        break;
                    }
                    assert!(lines < 12, "still open after {lines} header lines (60 s)");
                }
            }
        }
        (started.elapsed(), lines, got)
    });

    // A trickled body: the head is complete, the body never is.
    let body_trickler = tokio::spawn(async move {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                b"POST /api/v1/streams/live/x/destinations HTTP/1.1\r\nHost: prism\r\n\
                  Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
            )
            .await
            .unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                },
                _ = tick.tick() => {
                    if stream.write_all(b" ").await.is_err() {
                        break;
                    }
                    assert!(started.elapsed() < Duration::from_secs(60), "body trickle still open");
                }
            }
        }
        (
            started.elapsed(),
            String::from_utf8_lossy(&got).into_owned(),
        )
    });

    // Honest requests are answered meanwhile, again and again.
    for _ in 0..10 {
        let response = client
            .get(api(&prism, "/api/v1/streams"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (elapsed, lines, got) = trickler.await.unwrap();
    assert!(lines >= 1, "it did trickle before being closed");
    assert!(
        elapsed < Duration::from_secs(30),
        "closed by the header deadline, not after {elapsed:?}"
    );
    assert!(
        got.is_empty(),
        "it was never answered: {:?}",
        String::from_utf8_lossy(&got)
    );

    let (elapsed, answer) = body_trickler.await.unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "a trickled body gets 408: {answer}"
    );
    assert!(answer.contains("request_timeout_secs"), "{answer}");
    assert!(
        elapsed < Duration::from_secs(30),
        "closed after {elapsed:?}"
    );

    let (answer, elapsed) = idle.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with("ok"),
        "answered, then kept alive: {answer}"
    );
    assert!(elapsed < Duration::from_secs(30), "idle for {elapsed:?}");
    let (answer, elapsed) = silent.await.unwrap();
    assert!(answer.is_empty());
    assert!(elapsed < Duration::from_secs(30), "silent for {elapsed:?}");

    let response = client.get(api(&prism, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200, "still serving");
    let logs = captured_logs();
    assert!(
        logs.contains("http connection closed: request head not received in time"),
        "the trickler's closing is logged"
    );
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_until_held_ones_go() {
    const CAP: usize = 4;
    const EXTRA: usize = 24;
    let prism = Prism::start_with(|c| {
        c.http.max_connections = CAP;
        // Long enough that only the test lets the holders go.
        c.http.header_timeout_secs = 120;
    })
    .await;
    let addr = http_addr(&prism);

    // CAP connections that hold a slot each with an unfinished request head.
    let mut holders = Vec::new();
    for _ in 0..CAP {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        holders.push(stream);
    }
    let deadline = Instant::now() + WAIT;
    while http_connections(&prism) < CAP {
        assert!(Instant::now() < deadline, "the holders are served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // More connections, each with a whole request: none is served while the
    // holders hold every slot, and prism serves no more than the cap.
    let mut waiting = Vec::new();
    for _ in 0..EXTRA {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: prism\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        waiting.push(stream);
    }
    let honest = tokio::spawn({
        let url = api(&prism, "/api/v1/streams");
        async move {
            let response = common::http_client().get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(http_connections(&prism), CAP, "never more than the cap");
    }
    let mut buf = [0u8; 64];
    for stream in &mut waiting {
        match timeout(Duration::from_millis(50), stream.read(&mut buf)).await {
            Err(_) => {}
            Ok(read) => panic!("a connection over the cap was served: {read:?}"),
        }
    }
    assert!(!honest.is_finished(), "the honest request waits too");

    // The holders go: everyone waiting is answered, the cap still holds.
    drop(holders);
    let (status, body) = timeout(WAIT, honest).await.unwrap().unwrap();
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"streams": []})
    );
    let mut served = Vec::new();
    for mut stream in waiting {
        served.push(tokio::spawn(async move {
            let (answer, _) = read_until_closed(&mut stream, WAIT).await;
            String::from_utf8_lossy(&answer).into_owned()
        }));
    }
    let watch_cap = async {
        loop {
            assert!(http_connections(&prism) <= CAP, "never more than the cap");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let answers = tokio::select! {
        answers = futures_join(served) => answers,
        () = watch_cap => unreachable!(),
    };
    for answer in answers {
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
    }
    assert!(raw_get(addr, "/healthz").await.ends_with("ok"));
    let response = common::http_client()
        .get(api(&prism, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(response.contains("prism_http_connections"), "{response}");
    prism.stop().await;
}

/// Awaits every task, in order.
async fn futures_join<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let prism = Prism::start_with(|c| {
        c.http.token = Some(TOKEN.to_owned());
        c.http.protect_reads = true;
    })
    .await;
    let client = common::http_client();
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let value = format!("{scheme} {TOKEN}");
        let response = client
            .post(api(&prism, "/api/v1/reload"))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "control with `{scheme}`");
        let response = client
            .get(api(&prism, "/api/v1/streams"))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "a protected read with `{scheme}`");
    }
    for value in [
        format!("Basic {TOKEN}"),
        format!("Bearer{TOKEN}"),
        "bearer wrong-token-0000000000".to_owned(),
        TOKEN.to_owned(),
    ] {
        let response = client
            .post(api(&prism, "/api/v1/reload"))
            .header("authorization", &value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "refused: {value}");
    }
    prism.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_request_heads_are_refused() {
    let prism = Prism::start_with(|c| c.http.token = Some(TOKEN.to_owned())).await;
    let client = common::http_client();
    let huge = "x".repeat(80 * 1024);
    let response = client
        .post(api(&prism, "/api/v1/streams/live/x/destinations"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(format!("{{\"url\": \"{huge}\"}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "a body over the limit");
    assert!(response.json::<Value>().await.unwrap()["error"].is_string());
    let response = client
        .get(api(&prism, "/api/v1/streams"))
        .header("x-padding", &huge)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431, "a request head over the limit");
    let response = client.get(api(&prism, "/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200, "still serving");
    prism.stop().await;
}

/// Two stream keys with the same mask: the pair from the issue.
const VICTIM: &str = "VICTIM-key-8842";
const EVIL: &str = "evil46109";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_whose_masks_collide_are_told_apart_and_controlled_by_id() {
    assert_eq!(
        prism::mask::Masked(VICTIM).to_string(),
        prism::mask::Masked(EVIL).to_string(),
        "the two keys share a mask"
    );
    let twitch = NginxSink::start("app").await;
    let prism = Prism::start_with(|c| {
        point_preset(c, "twitch", twitch.url());
        c.http.token = Some(TOKEN.to_owned());
    })
    .await;
    let client = common::http_client();
    let destination_key = "collide-twitch-key";

    let victim_clip = clip(30);
    let victim = publish(&victim_clip, &prism.url(&format!("live/{VICTIM}")));
    prism.wait_live("live", VICTIM).await;
    let player = play_framemd5(&prism.url(&format!("live/{VICTIM}")));
    prism.wait_subscribers("live", VICTIM, 1).await;
    let evil = publish(&clip(30), &prism.url(&format!("live/{EVIL}")));
    prism.wait_live("live", EVIL).await;

    // Two entries, the same name, distinct ids.
    let list: Value = client
        .get(api(&prism, "/api/v1/streams"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let streams = list["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{list:#}");
    assert_eq!(streams[0]["name"], streams[1]["name"], "the masks collide");
    let mask = streams[0]["name"].as_str().unwrap().to_owned();
    let ids: Vec<String> = streams
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_ne!(ids[0], ids[1]);
    for id in &ids {
        assert_eq!(id.len(), 32, "128 bits in hex: {id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    // Which id is whose: prism's relay knows the key behind each id (the test
    // asks it in-process; no output shows a key).
    let relay = prism.app.as_ref().unwrap().relay();
    let key_of = |id: &str| relay.find_by_id(id).unwrap().key().to_owned();
    let (victim_id, evil_id) = if key_of(&ids[0]) == VICTIM {
        (ids[0].clone(), ids[1].clone())
    } else {
        (ids[1].clone(), ids[0].clone())
    };
    assert_eq!(key_of(&victim_id), VICTIM);
    assert_eq!(key_of(&evil_id), EVIL);

    // The ambiguous name is refused for every operation, acting on neither.
    let by_name = api(&prism, &format!("/api/v1/streams/live/{mask}"));
    let response = client.get(&by_name).send().await.unwrap();
    assert_eq!(response.status(), 409);
    let error = response.json::<Value>().await.unwrap()["error"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        error.contains("id"),
        "the answer says to use the id: {error}"
    );
    let response = client
        .delete(&by_name)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409, "no kick by an ambiguous name");
    let response = client
        .post(format!("{by_name}/destinations"))
        .bearer_auth(TOKEN)
        .json(&json!({"preset": "twitch", "key": destination_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        409,
        "no destination by an ambiguous name"
    );
    assert!(prism.hub().is_live("live", VICTIM) && prism.hub().is_live("live", EVIL));

    // By id: exactly that stream.
    let one: Value = client
        .get(api(&prism, &format!("/api/v1/streams/{evil_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], evil_id.as_str());
    let response = client
        .get(api(
            &prism,
            "/api/v1/streams/0123456789abcdef0123456789abcdef",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "an unknown id");

    // Destinations by id: add, restart, remove, on the victim's stream only.
    let destinations = api(&prism, &format!("/api/v1/streams/{victim_id}/destinations"));
    let response = client
        .post(&destinations)
        .bearer_auth(TOKEN)
        .json(&json!({"preset": "twitch", "key": destination_key}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    twitch.wait_publishing(destination_key, WAIT).await;
    let stream_of = |list: &Value, id: &str| {
        list["streams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no stream {id} in {list:#}"))
    };
    let list: Value = client
        .get(api(&prism, "/api/v1/streams"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stream_of(&list, &victim_id)["destinations"][0]["id"],
        "twitch"
    );
    assert_eq!(stream_of(&list, &evil_id)["destinations"], json!([]));
    let response = client
        .post(format!("{destinations}/twitch/restart"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let deadline = Instant::now() + WAIT;
    loop {
        let list: Value = client
            .get(api(&prism, "/api/v1/streams"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let twitch_leg = &stream_of(&list, &victim_id)["destinations"][0];
        if twitch_leg["state"] == "live" && twitch_leg["reconnects"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "restarted by id: {list:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(twitch.publishes(destination_key).len(), 2, "restarted once");

    // /metrics: one series per stream, told apart by stream_id.
    let text = client
        .get(api(&prism, "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text format");
    let bytes_in: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "prism_stream_bytes_in_total")
        .collect();
    assert_eq!(bytes_in.len(), 2, "{text}");
    let mut labelled: Vec<&str> = bytes_in
        .iter()
        .map(|s| s.labels.get("stream_id").expect("a stream_id label"))
        .collect();
    labelled.sort_unstable();
    let mut expected = vec![victim_id.as_str(), evil_id.as_str()];
    expected.sort_unstable();
    assert_eq!(labelled, expected);
    assert!(
        bytes_in
            .iter()
            .all(|s| s.labels.get("stream") == Some(&*mask))
    );
    let twitch_series = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "prism_destination_bytes_out_total")
        .map(|s| s.labels.get("stream_id"))
        .collect::<Vec<_>>();
    assert_eq!(twitch_series, [Some(victim_id.as_str())]);

    let response = client
        .delete(format!("{destinations}/twitch"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(twitch.saw_clean_unpublish(destination_key).await);

    // Kick by id: exactly the evil publisher.
    assert!(
        prism.hub().is_live("live", VICTIM),
        "the victim still publishes"
    );
    let response = client
        .delete(api(&prism, &format!("/api/v1/streams/{evil_id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let (exit, _) = finish(evil).await;
    assert!(
        !exit.success(),
        "the kicked publisher's connection was closed"
    );
    let list: Value = client
        .get(api(&prism, "/api/v1/streams"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["streams"].as_array().unwrap().len(), 1, "{list:#}");
    assert_eq!(list["streams"][0]["id"], victim_id.as_str());
    let response = client.get(&by_name).send().await.unwrap();
    assert_eq!(response.status(), 200, "the name is unambiguous again");

    // The victim publishes to its end and its player loses nothing.
    let (exit, _) = finish(victim).await;
    assert!(exit.success(), "the victim was never kicked: {exit}");
    let (exit, out) = finish(player).await;
    assert!(exit.success(), "the victim's player ended cleanly: {exit}");
    assert_source_from_keyframe(&victim_clip, &parse_framemd5(&out));

    let everything = format!("{list}{text}{error}{}", captured_logs());
    for key in [VICTIM, EVIL, destination_key] {
        assert!(!everything.contains(key), "a key leaked");
    }
    prism.stop().await;
}
