//! `byol data fetch` against a tiny HTTP server on 127.0.0.1: a download is checked against its
//! MD5, unpacked and moved into place; a corrupted or missing download leaves nothing behind.

use byol::data::fetch::{fetch, fetch_from, sources, Limits, Unpack};
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("byol-data-fetch-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A .tar.gz holding `fake_binary/a.txt` and `fake_binary/sub/b.bin`, built in memory.
fn archive() -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, body) in [
        ("fake_binary/a.txt", b"hello".to_vec()),
        ("fake_binary/sub/b.bin", (0..=255u8).collect()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, path, body.as_slice()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// The limits of a download that must be exactly `body`.
fn exact(body: &[u8]) -> Limits {
    Limits::exact(body.len() as u64)
}

/// Serves `routes` (path -> body, anything else 404) to at most `requests` connections, and
/// stops by itself after 10 s whatever happens. Returns the base URL and the thread.
fn serve(routes: Vec<(&'static str, Vec<u8>)>, requests: usize) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut served = 0;
        while served < requests && Instant::now() < deadline {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            };
            served += 1;
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let path = text.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match routes.iter().find(|(p, _)| *p == path) {
                Some((_, body)) => ("200 OK", body.clone()),
                None => ("404 Not Found", b"not here".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    (base, handle)
}

#[test]
fn fetch_downloads_checks_and_unpacks() {
    let good = archive();
    let md5 = md5_hex(&good);
    let limits = exact(&good);
    let (base, server) = serve(vec![("/fake.tar.gz", good)], 1);
    let tmp = TempDir::new("good");
    let dir = tmp.0.join("data");
    let out = fetch_from(
        &format!("{base}/fake.tar.gz"),
        &md5,
        limits,
        Unpack::TarGz,
        &dir,
    )
    .unwrap();
    server.join().unwrap();
    assert_eq!(out, dir);
    // Only the unpacked folder is left: no archive, no .part, no staging folder.
    assert_eq!(entries(&dir), ["fake_binary"]);
    assert_eq!(
        std::fs::read(dir.join("fake_binary/a.txt")).unwrap(),
        b"hello"
    );
    assert_eq!(
        std::fs::read(dir.join("fake_binary/sub/b.bin")).unwrap(),
        (0..=255u8).collect::<Vec<_>>()
    );
}

#[test]
fn corrupted_download_is_rejected_and_deleted() {
    let good = archive();
    let md5 = md5_hex(&good);
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x40;
    let actual = md5_hex(&bad);
    let (base, server) = serve(vec![("/fake.tar.gz", bad)], 1);
    let tmp = TempDir::new("bad");
    let e = fetch_from(
        &format!("{base}/fake.tar.gz"),
        &md5,
        exact(&good),
        Unpack::TarGz,
        &tmp.0,
    )
    .unwrap_err()
    .to_string();
    server.join().unwrap();
    assert!(e.contains(&md5) && e.contains(&actual), "{e}");
    assert!(e.contains("MD5 mismatch"), "{e}");
    assert!(entries(&tmp.0).is_empty(), "left {:?}", entries(&tmp.0));
}

#[test]
fn kept_files_and_missing_files() {
    let body = b"\x1f\x8b pretend gzip".to_vec();
    let md5 = md5_hex(&body);
    let (base, server) = serve(vec![("/x/file.gz", body.clone())], 2);
    let tmp = TempDir::new("keep");
    let kept = fetch_from(
        &format!("{base}/x/file.gz"),
        &md5,
        exact(&body),
        Unpack::Keep,
        &tmp.0,
    )
    .unwrap();
    assert_eq!(kept, tmp.0.join("file.gz"));
    assert_eq!(std::fs::read(&kept).unwrap(), body);
    // A 404 is an error naming the URL and leaves nothing new.
    let e = fetch_from(
        &format!("{base}/x/gone.gz"),
        &md5,
        exact(&body),
        Unpack::Keep,
        &tmp.0,
    )
    .unwrap_err()
    .to_string();
    server.join().unwrap();
    assert!(e.contains("gone.gz") && e.contains("404"), "{e}");
    assert_eq!(entries(&tmp.0), ["file.gz"]);
}

#[test]
fn sources_use_official_urls_or_the_mirror() {
    let (files, folder) = sources("stl10", None).unwrap();
    assert_eq!(folder, "stl10_binary");
    assert_eq!(
        files[0].url,
        "http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz"
    );
    assert_eq!(files[0].md5, "91f7769df0f17e558f3565bffb0c7dfb");
    let (files, folder) = sources("cifar10", Some("http://127.0.0.1:9/m/")).unwrap();
    assert_eq!(folder, "cifar-10-batches-bin");
    assert_eq!(files[0].url, "http://127.0.0.1:9/m/cifar-10-binary.tar.gz");
    assert_eq!(files[0].md5, "c32a1d4ab5d03f1284b67883e8d87530");
    let (files, _) = sources("fashion-mnist", None).unwrap();
    assert_eq!(files.len(), 4);
    assert!(files.iter().all(|f| f.unpack == Unpack::Keep));
    assert!(files[0].url.ends_with("/train-images-idx3-ubyte.gz"));
    assert_eq!(files[3].md5, "bb300cfdad3c16e7a12a480ee83cd310");
    let e = sources("imagenet", None).unwrap_err().to_string();
    assert!(e.contains("stl10") && e.contains("fashion-mnist"), "{e}");
}

#[test]
fn fetch_skips_a_dataset_already_there() {
    let tmp = TempDir::new("there");
    std::fs::create_dir_all(tmp.0.join("cifar-10-batches-bin")).unwrap();
    // No server: an attempt to download would fail.
    let out = fetch("cifar10", &tmp.0).unwrap();
    assert_eq!(out, tmp.0.join("cifar-10-batches-bin"));
    assert!(fetch("imagenet", &tmp.0).is_err());
}

/// The command line end to end: `BYOL_DATA_MIRROR` points `byol data fetch` at the local server,
/// whose file is not the published one (its size says so before a byte is kept), so the command
/// fails and leaves nothing behind.
#[test]
fn cli_fetch_uses_the_mirror_and_rejects_a_wrong_file() {
    let (base, server) = serve(
        vec![(
            "/mirror/train-images-idx3-ubyte.gz",
            b"not the real file".to_vec(),
        )],
        1,
    );
    let tmp = TempDir::new("cli");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_byol"))
        .args(["data", "fetch", "fashion-mnist", "--dir"])
        .arg(&tmp.0)
        .env("BYOL_DATA_MIRROR", format!("{base}/mirror"))
        .output()
        .unwrap();
    server.join().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("/mirror/train-images-idx3-ubyte.gz") && stderr.contains("26421880"),
        "{stderr}"
    );
    assert!(entries(&tmp.0).is_empty(), "left {:?}", entries(&tmp.0));
}

/// Answers one connection with `head` then `body`, sent in pieces `gap` apart, then stalls for
/// `stall` before closing: a server that trickles, stops or never ends.
fn serve_raw(
    head: String,
    body: Vec<u8>,
    pieces: usize,
    gap: Duration,
    stall: Duration,
) -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = stream.write_all(head.as_bytes());
        for piece in body.chunks(body.len().div_ceil(pieces.max(1)).max(1)) {
            if stream.write_all(piece).is_err() {
                return;
            }
            let _ = stream.flush();
            std::thread::sleep(gap);
        }
        std::thread::sleep(stall);
    });
    (base, handle)
}

#[test]
fn a_stalled_server_times_out_and_an_endless_one_is_cut_off() {
    let tmp = TempDir::new("stall");
    let idle = Duration::from_millis(300);
    let limits = |bytes| Limits { bytes, idle };
    // Half the body, then silence: abandoned after the idle timeout, nothing kept.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n".to_string();
    let (base, server) = serve_raw(
        head,
        vec![7u8; 500],
        1,
        Duration::ZERO,
        Duration::from_millis(1500),
    );
    let started = Instant::now();
    let e = fetch_from(
        &format!("{base}/f.gz"),
        "0",
        limits(1000),
        Unpack::Keep,
        &tmp.0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert!(
        e.contains("sent nothing") && e.contains("500 of 1000"),
        "{e}"
    );
    assert!(entries(&tmp.0).is_empty(), "left {:?}", entries(&tmp.0));
    server.join().unwrap();

    // A slow but steady server is not idle: pieces 100 ms apart arrive whole.
    let body: Vec<u8> = (0..=255u8).cycle().take(600).collect();
    let md5 = md5_hex(&body);
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let (base, server) = serve_raw(
        head,
        body.clone(),
        6,
        Duration::from_millis(100),
        Duration::ZERO,
    );
    let kept = fetch_from(
        &format!("{base}/slow.gz"),
        &md5,
        limits(600),
        Unpack::Keep,
        &tmp.0,
    )
    .unwrap();
    assert_eq!(std::fs::read(kept).unwrap(), body);
    server.join().unwrap();

    // No length announced and more body than the file has: cut off at the published size.
    let tmp = TempDir::new("endless");
    let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
    let (base, server) = serve_raw(head, vec![1u8; 1 << 20], 16, Duration::ZERO, Duration::ZERO);
    let e = fetch_from(
        &format!("{base}/big.gz"),
        "0",
        limits(4096),
        Unpack::Keep,
        &tmp.0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("more than the published 4096 bytes"), "{e}");
    assert!(entries(&tmp.0).is_empty(), "left {:?}", entries(&tmp.0));
    server.join().unwrap();

    // An announced length that is not the file's is refused before a byte is written.
    let head = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\n".to_string();
    let (base, server) = serve_raw(head, vec![0u8; 10], 1, Duration::ZERO, Duration::ZERO);
    let e = fetch_from(
        &format!("{base}/short.gz"),
        "0",
        limits(4096),
        Unpack::Keep,
        &tmp.0,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("announces 10 bytes") && e.contains("4096"),
        "{e}"
    );
    server.join().unwrap();
}
