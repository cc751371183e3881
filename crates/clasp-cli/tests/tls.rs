//! `wss://`: `clasp server --tls-self-signed`, the CLI tools and the Rust client over TLS.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Command;

use clasp_client::{Client, Error, ReconnectPolicy, Value};
use common::{signal, start};

fn tool(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_clasp"))
        .args(args)
        .args(["--url", url])
        .env_remove("CLASP_URL")
        .env_remove("CLASP_CA_CERT")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn self_signed_wss_works_for_the_tools_and_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let mut p = start(&["--data-dir", d, "--tls-self-signed"]);
    assert!(p.url.starts_with("wss://"), "{}", p.url);
    let cert = dir.path().join("tls").join("self-signed.crt");
    let cert_s = cert.to_str().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = dir.path().join("tls").join("self-signed.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the private key is readable by others");
    }

    // The tools, trusting the certificate.
    let o = tool(&p.url, &["set", "/tls/x", "42", "--ca-cert", cert_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = tool(&p.url, &["get", "/tls/x", "--ca-cert", cert_s]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "42\n");
    // Without it: refused, with a clear reason.
    let o = tool(&p.url, &["get", "/tls/x"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("certificate"), "{err}");

    // The Rust client, trusting only that certificate.
    let pem = std::fs::read(&cert).unwrap();
    let c = Client::builder(&p.url)
        .add_root_certificate_pem(pem)
        .only_added_roots()
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap();
    assert_eq!(c.get("/tls/x").await.unwrap(), Value::Int(42));
    assert_eq!(c.set_confirmed("/tls/y", 1).await.unwrap(), 1);
    c.close().await;
    // A client that does not trust it cannot connect.
    let e = Client::builder(&p.url)
        .only_added_roots()
        .reconnect(ReconnectPolicy::disabled())
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");

    // The certificate is kept: a restart serves the same one, so clients keep trusting it.
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
    let mut p = start(&["--data-dir", d, "--tls-self-signed"]);
    let o = tool(&p.url, &["get", "/tls/y", "--ca-cert", cert_s]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1\n");
    signal(&p, "-TERM");
    assert!(p.child.wait().unwrap().success());
}
