//! A node's listener and an edge's dialer on loopback, with certificates from a real CA
//! made by `pki`: a stream carries its Open frame and bytes both ways; a peer whose
//! certificate comes from another CA, is expired, or was revoked, a peer without one, and
//! one speaking another version of the link (ALPN) are refused and counted by reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use warden_link::dial::Dialer;
use warden_link::listen::{Land, Listener};
use warden_link::metrics::LinkMetrics;
use warden_link::pki::{self, Role};
use warden_link::tls::{Material, Tls};
use warden_wire::link::{Open, Reply};

/// Answers Connected, then echoes what arrives, prefixed by the server id.
struct Echo;

#[async_trait::async_trait]
impl Land for Echo {
    async fn land(
        &self,
        _edge: SocketAddr,
        open: Open,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        send.write_all(&Reply::connected().encode()).await.unwrap();
        send.write_all(open.server.as_bytes()).await.unwrap();
        send.write_all(&open.join).await.unwrap();
        let mut buf = vec![0u8; 1024];
        while let Ok(Some(n)) = recv.read(&mut buf).await {
            send.write_all(&buf[..n]).await.unwrap();
        }
        let _ = send.finish();
    }
}

fn material(dir: &Path, id: &str) -> Material {
    Material {
        ca: dir.join("ca.crt"),
        cert: dir.join(format!("{id}.crt")),
        key: dir.join(format!("{id}.key")),
        crl: Some(dir.join("crl.pem")),
    }
}

async fn node(ca: &Path, out: &Path) -> (SocketAddr, LinkMetrics) {
    pki::issue(ca, Role::Node, "node-a", out, 30).unwrap();
    let tls = Tls::load(&material(out, "node-a")).unwrap();
    let metrics = LinkMetrics::new().unwrap();
    let l = Listener::bind("127.0.0.1:0".parse().unwrap(), &tls, metrics.clone()).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(l.run(Arc::new(Echo)));
    (addr, metrics)
}

/// An edge `edge-1` with a certificate from `ca` (written to `dir`).
fn edge(ca: &Path, dir: &Path) -> Arc<Dialer> {
    pki::issue(ca, Role::Edge, "edge-1", dir, 30).unwrap();
    let tls = Tls::load(&material(dir, "edge-1")).unwrap();
    Dialer::new(&tls, LinkMetrics::new().unwrap()).unwrap()
}

async fn roundtrip(dialer: &Arc<Dialer>, addr: SocketAddr) -> Result<Vec<u8>, String> {
    let (mut send, mut recv) = dialer
        .open("node-a", &addr.to_string())
        .await
        .map_err(|e| e.to_string())?;
    let open = Open {
        server: "lobby".into(),
        player: "203.0.113.9:40000".parse().unwrap(),
        join: Bytes::from_static(b"JOIN"),
    };
    send.write_all(&open.encode().unwrap())
        .await
        .map_err(|e| e.to_string())?;
    send.write_all(b"ping").await.map_err(|e| e.to_string())?;
    send.finish().map_err(|e| e.to_string())?;
    recv.read_to_end(1 << 20).await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn streams_carry_players_and_strangers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, other) = (dir.path().join("ca"), dir.path().join("other-ca"));
    pki::init_ca(&ca, "fleet").unwrap();
    pki::init_ca(&other, "strangers").unwrap();
    let (addr, node_metrics) = node(&ca, &dir.path().join("node")).await;

    let edge = edge(&ca, &dir.path().join("edge"));
    let got = roundtrip(&edge, addr).await.unwrap();
    assert_eq!(got, b"\0\0\0lobbyJOINping");
    assert!(edge.is_up("node-a"));
    // A second player rides the same connection.
    assert_eq!(
        roundtrip(&edge, addr).await.unwrap(),
        b"\0\0\0lobbyJOINping"
    );
    assert_eq!(
        edge.metrics()
            .reconnects
            .with_label_values(&["node-a"])
            .get(),
        0
    );

    // Another CA's edge, an expired edge certificate, a revoked one: refused by the node.
    let stranger_dir = dir.path().join("stranger");
    pki::issue(&other, Role::Edge, "edge-2", &stranger_dir, 30).unwrap();
    let mut m = material(&stranger_dir, "edge-2");
    m.ca = ca.join("ca.crt"); // it trusts the fleet, but the fleet does not trust it
    m.crl = None;
    let stranger = Dialer::new(&Tls::load(&m).unwrap(), LinkMetrics::new().unwrap()).unwrap();
    assert!(roundtrip(&stranger, addr).await.is_err());

    let expired_dir = dir.path().join("expired");
    let now = time::OffsetDateTime::now_utc();
    pki::issue_between(
        &ca,
        Role::Edge,
        "edge-3",
        &expired_dir,
        now - time::Duration::days(10),
        now - time::Duration::days(1),
    )
    .unwrap();
    let expired = Dialer::new(
        &Tls::load(&material(&expired_dir, "edge-3")).unwrap(),
        LinkMetrics::new().unwrap(),
    )
    .unwrap();
    assert!(roundtrip(&expired, addr).await.is_err());

    let failures = |reason: &str| {
        node_metrics
            .handshake_failures
            .with_label_values(&[reason])
            .get()
    };
    assert_eq!(failures("unknown_ca"), 1, "another CA");
    assert_eq!(failures("expired"), 1, "expired");

    // No certificate at all.
    let roots = {
        let mut r = rustls::RootCertStore::empty();
        let pem = std::fs::read(ca.join("ca.crt")).unwrap();
        use rustls::pki_types::pem::PemObject;
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem) {
            r.add(c.unwrap()).unwrap();
        }
        r
    };
    let mut bare = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    // Another version of the link first: refused in the handshake, before anything else.
    let mut newer = bare.clone();
    newer.alpn_protocols = vec![b"warden-link/2".to_vec()];
    bare.alpn_protocols = vec![warden_link::ALPN.to_vec()];
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(newer).unwrap(),
    )));
    assert!(ep
        .connect(addr, "node-a.node.warden")
        .unwrap()
        .await
        .is_err());
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(bare).unwrap(),
    )));
    let refused = async {
        let conn = ep.connect(addr, "node-a.node.warden").unwrap().await?;
        let (mut send, mut recv) = conn.open_bi().await?;
        send.write_all(b"hello").await?;
        let _ = send.finish();
        recv.read_to_end(1024).await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    };
    assert!(
        refused.await.is_err(),
        "a peer without a certificate got through"
    );

    // A revoked certificate, once the node has the new revocation list.
    let revoked_dir = dir.path().join("revoked");
    let issued = pki::issue(&ca, Role::Edge, "edge-4", &revoked_dir, 30).unwrap();
    pki::revoke(&ca, &issued.serial).unwrap();
    let node2 = dir.path().join("node2");
    pki::issue(&ca, Role::Node, "node-a", &node2, 30).unwrap();
    let l = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        &Tls::load(&material(&node2, "node-a")).unwrap(),
        node_metrics.clone(),
    )
    .unwrap();
    let addr2 = l.local_addr().unwrap();
    tokio::spawn(l.run(Arc::new(Echo)));
    let revoked = Dialer::new(
        &Tls::load(&material(&revoked_dir, "edge-4")).unwrap(),
        LinkMetrics::new().unwrap(),
    )
    .unwrap();
    assert!(roundtrip(&revoked, addr2).await.is_err());
    for _ in 0..50 {
        if failures("no_certificate") == 1 && failures("revoked") == 1 && failures("alpn") == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(failures("no_certificate"), 1, "no certificate");
    assert_eq!(failures("revoked"), 1, "revoked");
    assert_eq!(failures("alpn"), 1, "another version of the link");
}

/// A node's servers as a test sets them, and the requests it was asked.
struct Servers {
    showing: tokio::sync::watch::Sender<warden_link::control::Showing>,
    asked: parking_lot::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl warden_link::control::Tell for Servers {
    fn showing(&self) -> tokio::sync::watch::Receiver<warden_link::control::Showing> {
        self.showing.subscribe()
    }
    async fn wake(&self, server: &str) -> Result<(), String> {
        self.asked.lock().push(format!("wake {server}"));
        match server {
            "lobby" => Ok(()),
            other => Err(format!("no server `{other}` here")),
        }
    }
    async fn sleep(&self, server: &str, force: bool) -> Result<(), String> {
        self.asked.lock().push(format!("sleep {server} {force}"));
        Ok(())
    }
}

fn shown(state: &str, status: &[u8]) -> warden_link::control::Shown {
    warden_link::control::Shown {
        state: state.into(),
        status: Bytes::copy_from_slice(status),
    }
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 5 s");
}

/// The control stream: the edge learns the node's servers as they change (a status it
/// can serve, a state, a server that leaves), and its wake and sleep requests reach the
/// node and come back answered, refusals with their reason.
#[tokio::test]
async fn the_control_stream_tells_the_edge_and_carries_requests() {
    use warden_link::control::Ask;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    pki::init_ca(&ca, "fleet").unwrap();
    let node_dir = dir.path().join("node");
    pki::issue(&ca, Role::Node, "node-a", &node_dir, 30).unwrap();
    let tls = Tls::load(&material(&node_dir, "node-a")).unwrap();
    let servers = Arc::new(Servers {
        showing: tokio::sync::watch::Sender::new(Default::default()),
        asked: Default::default(),
    });
    // A Status Response frame as a server sends it: length, packet 0, the JSON.
    let json = br#"{"version":{"name":"1.21","protocol":767},"players":{"max":20,"online":3},"description":"hello"}"#;
    let mut status = vec![(json.len() + 2) as u8, 0x00, json.len() as u8];
    status.extend_from_slice(json);
    servers.showing.send_modify(|s| {
        let mut m = (**s).clone();
        m.insert("lobby".into(), shown("active", &status));
        m.insert("survival".into(), shown("sleeping", b""));
        *s = Arc::new(m);
    });
    let l = Listener::bind(
        "127.0.0.1:0".parse().unwrap(),
        &tls,
        LinkMetrics::new().unwrap(),
    )
    .unwrap()
    .telling(servers.clone());
    let addr = l.local_addr().unwrap();
    tokio::spawn(l.run(Arc::new(Echo)));

    let edge = edge(&ca, &dir.path().join("edge"));
    edge.keep(&[("node-a".into(), addr.to_string())]);
    until("the edge to hear of lobby", || {
        edge.told("node-a", "lobby").is_some()
    })
    .await;
    let lobby = edge.told("node-a", "lobby").unwrap();
    assert_eq!(lobby.state, "active");
    let doc = lobby.status.as_ref().expect("lobby's status parsed");
    assert_eq!(
        (
            doc.online,
            doc.max,
            doc.version_name.as_str(),
            doc.motd_text.as_str()
        ),
        (3, 20, "1.21", "hello")
    );
    let survival = edge.told("node-a", "survival").unwrap();
    assert_eq!(
        (survival.state.as_str(), survival.status.is_none()),
        ("sleeping", true)
    );
    // Players still ride their own streams beside it.
    assert_eq!(
        roundtrip(&edge, addr).await.unwrap(),
        b"\0\0\0lobbyJOINping"
    );

    // A change is pushed; a server no longer shown is forgotten.
    servers.showing.send_modify(|s| {
        let mut m = (**s).clone();
        m.remove("survival");
        m.insert("lobby".into(), shown("stopping", b""));
        *s = Arc::new(m);
    });
    until("the edge to hear lobby stopping and survival gone", || {
        edge.told("node-a", "lobby")
            .is_some_and(|t| t.state == "stopping")
            && edge.told("node-a", "survival").is_none()
    })
    .await;

    let wake = |s: &str| Ask::Wake { server: s.into() };
    assert_eq!(edge.ask("node-a", &wake("lobby")).await.unwrap(), Ok(()));
    assert_eq!(
        edge.ask("node-a", &wake("nether")).await.unwrap(),
        Err("no server `nether` here".to_string())
    );
    let sleep = Ask::Sleep {
        server: "lobby".into(),
        force: true,
    };
    assert_eq!(edge.ask("node-a", &sleep).await.unwrap(), Ok(()));
    assert_eq!(
        *servers.asked.lock(),
        ["wake lobby", "wake nether", "sleep lobby true"]
    );
    // A node the edge has no link to cannot be asked: the caller goes another way.
    assert!(edge.ask("node-b", &wake("lobby")).await.is_err());
    let counted = |result: &str| {
        edge.metrics()
            .requests
            .with_label_values(&["node-a", "wake", result])
            .get()
    };
    assert_eq!((counted("taken"), counted("refused")), (1, 1));
}
