//! The Docker runtime against a real dockerd.
//!
//! `scripts/dockerd.sh` starts a daemon if none answers (installing docker.io if needed) and
//! `scripts/test-image.sh` builds `warden-test-node:1` locally, so this needs no registry and
//! no internet. If Docker cannot run here the tests FAIL with the scripts' reason; they never
//! skip. Containers run the repo's nmp backend (`tests/peers/backend.js`) with the host's
//! node, and everything created is named `warden-test-…` and removed afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failed test

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use warden_runtime::docker::{discover, DockerClient, DockerEndpoint, DEFAULT_CALL_LIMIT};
use warden_runtime::{DockerRuntime, DockerSpec, Runtime, RuntimeError};
use warden_testkit::{
    docker, docker_ok, docker_ready, fake_rcon, free_port, incompressible, peers_dir,
    DockerCleanup, TEST_IMAGE,
};
use warden_wire::{FrameDecoder, Handshake, Intent, PacketReader, PacketWriter};

fn unique(what: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("warden-test-{what}-{}-{n}", std::process::id())
}

/// A spec running the nmp backend on `port`, and a guard that removes its container+volume.
fn backend_spec(what: &str, port: u16) -> (DockerSpec, DockerCleanup) {
    let name = unique(what);
    let mut spec = DockerSpec::new(&name, TEST_IMAGE, format!("{name}-data"));
    spec.memory_gb = 0.5;
    spec.binds = vec![
        "/usr:/usr:ro".into(),
        format!(
            "{}:/peers:ro",
            peers_dir().canonicalize().unwrap().display()
        ),
    ];
    spec.cmd = Some(
        [
            "node",
            "/peers/backend.js",
            "--version",
            "1.20.4",
            "--port",
            &port.to_string(),
        ]
        .map(String::from)
        .to_vec(),
    );
    spec.stop_timeout = Duration::from_secs(10);
    let cleanup = DockerCleanup::new(&spec.container, &spec.volume);
    (spec, cleanup)
}

async fn runtime(spec: DockerSpec) -> DockerRuntime {
    let client = DockerClient::connect(&DockerEndpoint::LocalSocket, DEFAULT_CALL_LIMIT)
        .await
        .unwrap();
    DockerRuntime::new(client, spec).unwrap()
}

/// One server-list ping; returns the status JSON.
async fn status_ping(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    let hs = Handshake {
        protocol: 765,
        address: "localhost".into(),
        port,
        intent: Intent::Status,
    };
    s.write_all(&hs.encode()).await?;
    s.write_all(&PacketWriter::new(0x00).into_frame()).await?;
    let mut dec = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        if let Some(frame) = dec.next_frame(1 << 20).map_err(std::io::Error::other)? {
            let mut r = PacketReader::new(&frame);
            let id = r.varint().map_err(std::io::Error::other)?;
            assert_eq!(id, 0x00, "status response id");
            return Ok(r
                .string(1 << 20)
                .map_err(std::io::Error::other)?
                .to_string());
        }
        buf.clear();
        if s.read_buf(&mut buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        dec.extend(&buf);
    }
}

async fn wait_for_status(port: u16, limit: Duration) -> String {
    let until = Instant::now() + limit;
    loop {
        match tokio::time::timeout(Duration::from_secs(3), status_ping(port)).await {
            Ok(Ok(json)) => return json,
            other if Instant::now() > until => {
                panic!("no status answer on 127.0.0.1:{port} within {limit:?}: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

fn docker_inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, name])
}

fn volume_exists(name: &str) -> bool {
    docker_ok(&["volume", "inspect", name])
}

#[tokio::test]
async fn start_ping_stop_and_remove() {
    docker_ready();
    let port = free_port();
    let (mut spec, _cleanup) = backend_spec("life", port);
    let (rcon_addr, mut rcon_cmds) = fake_rcon(None).await;
    spec.rcon = Some((rcon_addr, "pw".into()));
    let rt = runtime(spec.clone()).await;
    assert_eq!(
        rt.data(),
        warden_runtime::DataLocation::Volume(spec.volume.clone())
    );

    assert!(!rt.running().await.unwrap());
    rt.stop(Duration::from_secs(1)).await.unwrap(); // stopping a missing server is fine
    rt.start().await.unwrap();
    let json = wait_for_status(port, Duration::from_secs(60)).await;
    assert!(json.contains("1.20.4"), "{json}");
    assert!(rt.running().await.unwrap());
    rt.start().await.unwrap(); // starting a running server is fine
    assert_eq!(rt.docker_health().await.unwrap(), None); // the image has no healthcheck

    assert_eq!(
        docker_inspect(&spec.container, "{{.HostConfig.Memory}}"),
        (512 * 1024 * 1024).to_string()
    );
    assert_eq!(
        docker_inspect(&spec.container, "{{.HostConfig.NetworkMode}}"),
        "host"
    );
    assert_eq!(
        docker_inspect(
            &spec.container,
            "{{index .Config.Labels \"warden.managed\"}}"
        ),
        "true"
    );

    let t = Instant::now();
    rt.stop(Duration::from_secs(10)).await.unwrap();
    assert!(!rt.running().await.unwrap());
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(rcon_cmds.recv().await.as_deref(), Some("save-all"));
    assert_eq!(rcon_cmds.recv().await.as_deref(), Some("stop"));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).await.is_err(),
        "backend still listening after stop"
    );
    rt.stop(Duration::from_secs(1)).await.unwrap(); // stopping a stopped server is fine

    // Same data, new spec (the lifecycle's swap): the stopped container is recreated.
    let old_id = docker_inspect(&spec.container, "{{.Id}}");
    let mut bigger = spec.clone();
    bigger.memory_gb = 0.75;
    let rt2 = runtime(bigger).await;
    rt2.start().await.unwrap();
    wait_for_status(port, Duration::from_secs(60)).await;
    assert_ne!(docker_inspect(&spec.container, "{{.Id}}"), old_id);
    assert_eq!(
        docker_inspect(&spec.container, "{{.HostConfig.Memory}}"),
        (768 * 1024 * 1024).to_string()
    );
    match rt2.remove_data().await {
        Err(RuntimeError::Other(m)) => assert!(m.contains("running"), "{m}"),
        other => panic!("remove_data of a running server must fail, got {other:?}"),
    }
    rt2.stop(Duration::from_secs(10)).await.unwrap();

    rt2.remove_data().await.unwrap();
    assert!(rt2.inspect().await.unwrap().is_none());
    assert!(!volume_exists(&spec.volume));
    rt2.remove_data().await.unwrap(); // already gone is fine
}

/// A deterministic, incompressible-looking payload.
fn payload(len: usize) -> Vec<u8> {
    incompressible(len, 0x9e37_79b9_7f4a_7c15)
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

#[tokio::test]
async fn import_then_export_round_trips_bytes() {
    docker_ready();
    let port = free_port();
    let (spec, _cleanup) = backend_spec("archive", port);
    let rt = runtime(spec.clone()).await;

    let level = payload(1234);
    let region = payload(6 * 1024 * 1024 + 7);
    let tar = tar_of(&[
        ("world/level.dat", &level),
        ("world/region/r.0.0.mca", &region),
    ]);
    rt.import_data(std::io::Cursor::new(tar)).await.unwrap();
    assert!(
        !rt.running().await.unwrap(),
        "import must leave the server stopped"
    );

    let mut reader = rt.export_data().await.unwrap();
    let mut exported = Vec::new();
    reader.read_to_end(&mut exported).await.unwrap();
    let mut found = BTreeMap::new();
    for entry in tar::Archive::new(exported.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().display().to_string();
        let uid = entry.header().uid().unwrap();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        found.insert(path, (uid, data));
    }
    let (uid, got) = found
        .get("./world/level.dat")
        .unwrap_or_else(|| panic!("no ./world/level.dat in {:?}", found.keys()));
    assert_eq!(got, &level);
    assert_eq!(*uid, 1000, "ownership comes from the tar");
    assert_eq!(found["./world/region/r.0.0.mca"].1, region);

    // The server sees the imported world in its data directory.
    rt.start().await.unwrap();
    wait_for_status(port, Duration::from_secs(60)).await;
    match rt.import_data(std::io::Cursor::new(Vec::new())).await {
        Err(RuntimeError::Other(m)) => assert!(m.contains("running"), "{m}"),
        other => panic!("import into a running server must fail, got {other:?}"),
    }
    match rt.export_data().await {
        Err(RuntimeError::Other(m)) => assert!(m.contains("running"), "{m}"),
        Err(e) => panic!("export of a running server must fail with Other, got {e:?}"),
        Ok(_) => panic!("export of a running server must fail"),
    }
    rt.stop(Duration::from_secs(10)).await.unwrap();

    // A corrupt tar is reported, not half-applied silently.
    let err = rt
        .import_data(std::io::Cursor::new(
            b"definitely not a tar archive".repeat(40),
        ))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&spec.container), "{err}");

    rt.remove_data().await.unwrap();
}

#[tokio::test]
async fn discover_finds_labelled_containers() {
    docker_ready();
    let (mut spec, _cleanup) = backend_spec("disc", free_port());
    let host = format!("{}.example.org", spec.container);
    spec.labels.insert("warden.host".into(), host.clone());
    spec.labels.insert("warden.port".into(), "25599".into());
    spec.labels
        .insert("warden.sleep_after".into(), "10m".into());
    spec.labels.insert("warden.memory_gb".into(), "2.5".into());
    let (mut bad, _cleanup_bad) = backend_spec("disc-bad", free_port());
    bad.labels.insert(
        "warden.host".into(),
        format!("{}.example.org", bad.container),
    );
    bad.labels.insert("warden.port".into(), "not-a-port".into());

    let rt = runtime(spec.clone()).await;
    let rt_bad = runtime(bad.clone()).await;
    // Created but never started: discovery must include stopped containers.
    rt.import_data(std::io::Cursor::new(tar_of(&[])))
        .await
        .unwrap();
    rt_bad
        .import_data(std::io::Cursor::new(tar_of(&[])))
        .await
        .unwrap();

    let found = discover(rt.client()).await.unwrap();
    let mine = found
        .iter()
        .find(|d| d.container == spec.container)
        .unwrap_or_else(|| panic!("{} not discovered in {found:?}", spec.container));
    assert_eq!(mine.host, host);
    assert_eq!(mine.port, Some(25599));
    assert_eq!(mine.sleep_after.as_deref(), Some("10m"));
    assert_eq!(mine.memory_gb, Some(2.5));
    assert!(!mine.running);
    let other = found.iter().find(|d| d.container == bad.container).unwrap();
    assert_eq!(other.port, None);

    rt.remove_data().await.unwrap();
    rt_bad.remove_data().await.unwrap();
    let found = discover(rt.client()).await.unwrap();
    assert!(found.iter().all(|d| d.container != spec.container));
}

#[tokio::test]
async fn missing_image_is_a_clear_error() {
    docker_ready();
    let (mut spec, _cleanup) = backend_spec("noimg", free_port());
    spec.image = "warden-test-absent:0".into();
    let rt = runtime(spec).await;
    match rt.start().await {
        Err(RuntimeError::Other(m)) => {
            assert!(
                m.contains("warden-test-absent:0") && m.contains("not on this node"),
                "{m}"
            )
        }
        other => panic!("expected a missing-image error, got {other:?}"),
    }
}

/// Test PKI made with the openssl CLI: a CA, a server cert for 127.0.0.1, a client cert, and
/// a client cert from another CA that the daemon must refuse.
fn make_pki(dir: &Path) {
    let script = r#"
set -e
ec() { openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null; }
ca() { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" 2>/dev/null; }
sign() { openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" -days 2 -extfile "$1.ext" 2>/dev/null; }
ca ca; ca rogue-ca
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
cp client.ext rogue.ext
ec server; sign server ca
ec client; sign client ca
ec rogue; sign rogue rogue-ca
"#;
    let out = Command::new("bash")
        .args(["-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A stand-in for `dockerd --tlsverify -H tcp://…`: terminates mutual TLS and forwards to
/// the local socket, so the remote-daemon path runs against the real daemon.
async fn tls_front(dir: &Path) -> String {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{self, server::WebPkiClientVerifier};

    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider.clone())
            .build()
            .unwrap();
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut unix) = tokio::net::UnixStream::connect("/var/run/docker.sock").await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut unix).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn remote_daemon_over_mutual_tls() {
    docker_ready();
    let dir = std::env::temp_dir().join(unique("pki"));
    std::fs::create_dir_all(&dir).unwrap();
    make_pki(&dir);
    let addr = tls_front(&dir).await;
    let endpoint = |who: &str| DockerEndpoint::Tls {
        addr: addr.clone(),
        ca: dir.join("ca.pem"),
        cert: dir.join(format!("{who}.pem")),
        key: dir.join(format!("{who}.key")),
    };

    let port = free_port();
    let (spec, _cleanup) = backend_spec("tls", port);
    let client = DockerClient::connect(&endpoint("client"), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(client.endpoint(), addr);
    let rt = DockerRuntime::new(client, spec.clone()).unwrap();
    rt.start().await.unwrap();
    wait_for_status(port, Duration::from_secs(60)).await;
    assert!(rt.running().await.unwrap());
    rt.stop(Duration::from_secs(10)).await.unwrap();
    assert!(!rt.running().await.unwrap());
    let mut tar = Vec::new();
    rt.export_data()
        .await
        .unwrap()
        .read_to_end(&mut tar)
        .await
        .unwrap();
    assert!(!tar.is_empty());
    rt.remove_data().await.unwrap();

    // A client certificate from another CA is refused: unreachable, naming the daemon.
    match DockerClient::connect(&endpoint("rogue"), Duration::from_secs(10)).await {
        Err(RuntimeError::Unreachable(m)) => assert!(m.contains(&addr), "{m}"),
        other => panic!("expected the daemon to refuse the rogue cert, got {other:?}"),
    }
    // Missing key material is a configuration error that names the file.
    match DockerClient::connect(&endpoint("absent"), Duration::from_secs(10)).await {
        Err(RuntimeError::Other(m)) => assert!(m.contains("absent.pem"), "{m}"),
        other => panic!("expected a missing-cert error, got {other:?}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
