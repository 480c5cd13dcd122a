//! The status page in a real headless browser (Debian's chromium): it signs in with the token
//! from the URL, reads the admin API and shows integrations, intake and plugins.

mod common;

use std::process::Command;

use common::{Completed, post_ndjson, start};
use wasmtel_tests::Receiver;

/// The browser, when the machine has one; CI installs it and requires it.
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs chromium for the status page test"
        );
        eprintln!("chromium is not installed: the status page test is skipped");
    }
    found
}

/// The page's DOM after its scripts ran, as headless chromium renders it.
fn rendered(browser: &str, url: &str) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=3000", "--dump-dom"])
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_integrations_intake_and_plugins_live() {
    let Some(browser) = chromium() else { return };
    let receiver = Receiver::start().await;
    let data = tempfile::tempdir().expect("tempdir");
    let host = start(&format!(
        "data_dir = \"{}\"\n[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
        data.path().display(),
        receiver.endpoint()
    ))
    .await;
    let ok = Completed::ok("m1", "vllm");
    post_ndjson(&host, &[ok.event(1), ok.event(2), ok.event(3)]).await;
    receiver
        .wait_until("the forwarded events", |r| !r.logs.is_empty())
        .await;
    let connected = || {
        host.integrations().iter().any(|r| {
            r.signal == "logs" && r.status.state == wasmtel::export::delivery::State::Connected
        })
    };
    while !connected() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let token = std::fs::read_to_string(data.path().join("admin.token")).expect("token");
    let base = format!("http://{}/", host.admin_addr().expect("admin on"));

    let page = tokio::task::spawn_blocking({
        let (browser, url) = (browser.to_owned(), format!("{base}#token={}", token.trim()));
        move || rendered(&browser, &url)
    })
    .await
    .expect("browser");
    assert!(
        page.contains("<td>otlp</td><td>logs</td><td class=\"state connected\">connected</td>"),
        "{page}"
    );
    assert!(
        page.contains("<td>Events accepted</td><td>3</td>"),
        "{page}"
    );
    assert!(
        page.contains("<p id=\"updated\">updated "),
        "the page refreshed from the API: {page}"
    );
    assert!(
        page.contains("<p id=\"error\" hidden=\"\"></p>"),
        "no error shown: {page}"
    );

    // Without the token the page asks for it and shows nothing.
    let page = tokio::task::spawn_blocking({
        let browser = browser.to_owned();
        move || rendered(&browser, &base)
    })
    .await
    .expect("browser");
    assert!(
        page.contains("<p id=\"updated\">sign in with the admin token</p>"),
        "{page}"
    );
    assert!(!page.contains("<td>otlp</td>"), "{page}");
    host.shutdown().await;
}
