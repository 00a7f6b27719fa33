//! The anteroom against a hand-written client: the paths a real client rarely takes
//! (silence, garbage, oversize frames, early failure, giving up) and the memory a hold costs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use support::{dest, pair, settings, RawClient, KEY};
use tokio::sync::watch;
use warden_anteroom::{Anteroom, Outcome, WaitStatus, Waiting};
use warden_wire::{Intent, PacketReader, PacketWriter};

fn waiting() -> WaitStatus {
    WaitStatus::Waiting {
        why: Waiting::Waking,
        eta: Some(Duration::from_secs(30)),
    }
}

async fn hold_with(
    anteroom: Anteroom,
    protocol: i32,
    intent: Intent,
) -> (
    tokio::task::JoinHandle<Outcome>,
    RawClient,
    watch::Sender<WaitStatus>,
) {
    let (guest, client) = pair(protocol, intent).await;
    let (tx, rx) = watch::channel(waiting());
    let task = tokio::spawn(async move { anteroom.hold(guest, dest(), rx).await });
    (task, client, tx)
}

async fn outcome(task: tokio::task::JoinHandle<Outcome>) -> Outcome {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("hold ends in time")
        .expect("hold task did not panic")
}

#[tokio::test]
async fn silent_guest_is_dropped() {
    let (task, mut client, _tx) = hold_with(Anteroom::new(settings()), 770, Intent::Login).await;
    client.log_in().await;
    // Never answer: the hold must end on its own within keepalive_timeout.
    let started = std::time::Instant::now();
    assert_eq!(outcome(task).await, Outcome::TimedOut);
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// `proven` is told only once a keep-alive is answered: a guest that logs in and stays
/// silent never proves itself, one that echoes the keep-alive does at once.
#[tokio::test]
async fn only_an_answered_keepalive_proves_a_real_client() {
    for answer in [false, true] {
        let (guest, mut client) = pair(770, Intent::Login).await;
        let (_tx, rx) = watch::channel(waiting());
        let (proven_tx, mut proven) = tokio::sync::oneshot::channel();
        let anteroom = Anteroom::new(settings());
        let task = tokio::spawn(async move {
            anteroom
                .hold_proving(guest, dest(), rx, Some(proven_tx))
                .await
        });
        client.log_in().await;
        let body = client.read_frame().await.expect("a keep-alive");
        let mut r = PacketReader::new(&body);
        assert_eq!(r.varint().unwrap(), 0x04);
        let id = r.i64().unwrap();
        if answer {
            // A wrong id first: not an answer.
            client
                .send_raw(&PacketWriter::new(0x04).i64(id + 1).into_frame())
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(proven.try_recv().is_err(), "a wrong id proved the client");
            client
                .send_raw(&PacketWriter::new(0x04).i64(id).into_frame())
                .await;
            let told = tokio::time::timeout(Duration::from_secs(5), proven).await;
            assert!(matches!(told, Ok(Ok(()))), "{told:?}");
            task.abort();
        } else {
            assert_eq!(outcome(task).await, Outcome::TimedOut);
            assert!(proven.await.is_err(), "a silent guest proved itself");
        }
    }
}

#[tokio::test]
async fn guest_that_never_acknowledges_login_is_dropped() {
    let mut s = settings();
    s.login_timeout = Duration::from_millis(300);
    let (task, _client, _tx) = hold_with(Anteroom::new(s), 767, Intent::Login).await;
    assert_eq!(outcome(task).await, Outcome::TimedOut);
}

/// Intent 3 (a client coming back from a Transfer) is held exactly like intent 2; the client
/// answers keep-alives by hand for longer than the keep-alive timeout, then gets its ticket.
#[tokio::test]
async fn intent_3_guest_answering_keepalives_is_transferred() {
    let (task, mut client, tx) = hold_with(Anteroom::new(settings()), 774, Intent::Transfer).await;
    client.log_in().await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let _ = tx.send(WaitStatus::Ready);
        // Keep the sender alive until the hold has acted on Ready.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut keepalives = 0;
    let mut dialogs = 0;
    let (cookie, host, port) = loop {
        let body = client.read_frame().await.expect("server keeps talking");
        let mut r = PacketReader::new(&body);
        match r.varint().unwrap() {
            0x04 => {
                keepalives += 1;
                let id = r.i64().unwrap();
                client
                    .send_raw(&PacketWriter::new(0x04).i64(id).into_frame())
                    .await;
            }
            0x12 => dialogs += 1,
            0x0A => {
                assert_eq!(r.string(32767).unwrap(), "warden:ticket");
                let cookie = r.byte_array(5120).unwrap().to_vec();
                let body = client.read_frame().await.expect("transfer");
                let mut r = PacketReader::new(&body);
                assert_eq!(r.varint().unwrap(), 0x0B);
                let host = r.string(32767).unwrap().to_owned();
                let port = r.varint().unwrap();
                break (cookie, host, port);
            }
            other => panic!("unexpected packet {other:#x}"),
        }
    };
    assert_eq!(outcome(task).await, Outcome::Transferred);
    assert!(keepalives >= 5, "kept alive past the timeout: {keepalives}");
    assert_eq!(dialogs, 1, "774 gets one dialog; the status never changed");
    assert_eq!((host.as_str(), port), ("play.example.com", 25599));
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let server = warden_wire::ticket::verify(KEY, &cookie, ip, SystemTime::now()).unwrap();
    assert_eq!(server, "survival");
}

#[tokio::test]
async fn oversize_frame_is_a_protocol_error() {
    let (task, mut client, _tx) = hold_with(Anteroom::new(settings()), 766, Intent::Login).await;
    client.log_in().await;
    // A length prefix of 1 MiB, far over the 32 KiB limit; the body never needs to arrive.
    let mut prefix = Vec::new();
    warden_wire::write_varint(&mut prefix, 1 << 20);
    client.send_raw(&prefix).await;
    assert!(matches!(outcome(task).await, Outcome::ProtocolError(_)));
}

#[tokio::test]
async fn garbage_ends_the_guest_with_a_protocol_error() {
    let cases: Vec<(&str, bool, Vec<u8>)> = vec![
        ("length prefix too long", true, vec![0xff; 6]),
        ("zero length", true, vec![0x00]),
        ("truncated keep-alive", true, vec![0x03, 0x04, 0x01, 0x02]),
        (
            "bad packet id varint",
            true,
            vec![0x06, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ),
        ("wrong packet instead of login ack", false, vec![0x01, 0x42]),
        (
            "login ack with trailing bytes",
            false,
            vec![0x02, 0x03, 0x00],
        ),
    ];
    for (what, logged_in, bytes) in cases {
        let (task, mut client, _tx) =
            hold_with(Anteroom::new(settings()), 772, Intent::Login).await;
        if logged_in {
            client.log_in().await;
        } else {
            client.read_frame().await.expect("login success");
        }
        client.send_raw(&bytes).await;
        let got = outcome(task).await;
        assert!(matches!(got, Outcome::ProtocolError(_)), "{what}: {got:?}");
    }
}

#[tokio::test]
async fn packet_flood_is_a_protocol_error() {
    let (task, mut client, _tx) = hold_with(Anteroom::new(settings()), 775, Intent::Login).await;
    client.log_in().await;
    let mut flood = Vec::new();
    for _ in 0..1000 {
        flood.extend_from_slice(&[0x02, 0x00, 0x00]); // client_information-sized junk
    }
    client.send_raw(&flood).await;
    assert_eq!(
        outcome(task).await,
        Outcome::ProtocolError("packet flood".into())
    );
}

#[tokio::test]
async fn random_bytes_never_panic() {
    let mut s = settings();
    s.keepalive_timeout = Duration::from_millis(400);
    s.login_timeout = Duration::from_millis(400);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut tasks = Vec::new();
    for i in 0..48 {
        let mut bytes = Vec::new();
        for _ in 0..(x % 300) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(x as u8);
        }
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (task, mut client, _tx) =
                hold_with(Anteroom::new(s), 766 + i % 10, Intent::Login).await;
            if i % 2 == 0 {
                client.log_in().await;
            }
            client.send_raw(&bytes).await;
            outcome(task).await
        }));
    }
    for t in tasks {
        let got = t.await.expect("no panic");
        assert!(
            matches!(
                got,
                Outcome::ProtocolError(_) | Outcome::TimedOut | Outcome::ClientLeft
            ),
            "{got:?}"
        );
    }
}

#[tokio::test]
async fn already_failed_gets_a_login_disconnect() {
    let (guest, mut client) = pair(768, Intent::Login).await;
    let (_tx, rx) = watch::channel(WaitStatus::Failed("disk full".into()));
    let anteroom = Anteroom::new(settings());
    let task = tokio::spawn(async move { anteroom.hold(guest, dest(), rx).await });
    let body = client.read_frame().await.expect("disconnect");
    let mut r = PacketReader::new(&body);
    assert_eq!(r.varint().unwrap(), 0x00, "login disconnect");
    assert!(r.string(32767).unwrap().contains("disk full"));
    assert!(client.read_frame().await.is_none(), "then closed");
    assert_eq!(outcome(task).await, Outcome::Failed("disk full".into()));
}

#[tokio::test]
async fn gives_up_after_max_wait() {
    let mut s = settings();
    s.max_wait = Duration::from_millis(500);
    s.keepalive = Duration::from_secs(60);
    s.keepalive_timeout = Duration::from_secs(60);
    let (task, mut client, _tx) = hold_with(Anteroom::new(s), 769, Intent::Login).await;
    client.log_in().await;
    let disconnect = loop {
        let body = client.read_frame().await.expect("disconnect before close");
        if body[0] == 0x02 {
            break body;
        }
    };
    let text = String::from_utf8_lossy(&disconnect);
    assert!(text.contains("taking too long"), "{text}");
    assert!(matches!(outcome(task).await, Outcome::Failed(r) if r.contains("not ready")));
}

#[tokio::test]
async fn lost_status_source_disconnects() {
    let (task, mut client, tx) = hold_with(Anteroom::new(settings()), 771, Intent::Login).await;
    client.log_in().await;
    drop(tx);
    assert_eq!(
        outcome(task).await,
        Outcome::Failed("status channel closed".into())
    );
}

/// The per-guest cost that does not depend on traffic: the hold future itself (the socket
/// and its tokio registration, status receiver, timers and an empty read buffer are inside
/// or next to it). Printed so the bench can quote it; bounded so it cannot quietly grow.
#[tokio::test]
async fn hold_future_is_small() {
    let (guest, _client) = pair(771, Intent::Login).await;
    let (_tx, rx) = watch::channel(waiting());
    let anteroom = Anteroom::new(settings());
    let fut = anteroom.hold(guest, dest(), rx);
    let size = std::mem::size_of_val(&fut);
    eprintln!("hold future: {size} bytes");
    assert!(size <= 2048, "hold future grew to {size} bytes");
}
