//! Tests of the `wasmtel` binary itself: signals, exit codes, the demo, config errors.

use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wasmtel_tests::{Exposition, Received, Receiver, scrape};

const BIN: &str = env!("CARGO_BIN_EXE_wasmtel");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Served {
    child: Child,
    intake: String,
    prometheus: std::net::SocketAddr,
    admin: String,
    data: std::path::PathBuf,
    config: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts the binary again on the same config and data (after it was killed).
    async fn restart(&mut self) {
        self.child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wasmtel");
        let port = |url: &str| {
            url.rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .expect("port")
        };
        listening(&[port(&self.intake), port(&self.admin)]).await;
    }

    /// The admin token the host wrote.
    fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .expect("token")
            .trim()
            .to_owned()
    }
}

/// Waits until every port accepts connections.
async fn listening(ports: &[u16]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in ports {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "wasmtel did not start listening");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

/// Starts `wasmtel serve` with a config file and waits until the intake answers.
async fn serve(extra: &str) -> Served {
    serve_with_env(extra, &[]).await
}

/// Starts `wasmtel serve` with a config file and extra environment variables.
async fn serve_with_env(extra: &str, env: &[(&str, String)]) -> Served {
    serve_under(extra, env, None).await
}

/// Starts `wasmtel serve` with a config file, extra environment variables and, if given, the
/// open-file limit set by the shell that starts it (`ulimit` arguments such as `-n 256`).
async fn serve_under(extra: &str, env: &[(&str, String)], ulimit: Option<&str>) -> Served {
    let (intake, prom, admin) = (free_port(), free_port(), free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wasmtel.toml");
    let data = dir.path().join("data");
    let toml = format!(
        "data_dir = \"{}\"\n[intake]\nlisten = \"127.0.0.1:{intake}\"\ngrpc_listen = \"127.0.0.1:0\"\n[prometheus]\nlisten = \"127.0.0.1:{prom}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n{extra}",
        data.display()
    );
    std::fs::write(&path, toml).expect("write config");
    let mut command = match ulimit {
        Some(limit) => {
            let mut shell = Command::new("bash");
            shell.args(["-c", &format!("ulimit {limit} && exec \"$0\" \"$@\""), BIN]);
            shell
        }
        None => Command::new(BIN),
    };
    let child = command
        .args(["serve", "--config"])
        .arg(&path)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wasmtel");
    // The admin listener opens last, after the token file is written: wait for both.
    listening(&[intake, admin]).await;
    Served {
        child,
        intake: format!("http://127.0.0.1:{intake}"),
        prometheus: ([127, 0, 0, 1], prom).into(),
        admin: format!("http://127.0.0.1:{admin}"),
        data,
        config: path,
        _dir: dir,
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

fn wait(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "wasmtel did not exit");
        std::thread::sleep(Duration::from_millis(25));
    }
    child.wait_with_output().expect("output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_and_sigint_flush_exports_and_exit_zero() {
    for sig in ["-TERM", "-INT"] {
        let receiver = Receiver::start().await;
        // SIGTERM: configured in the file; SIGINT: configured by OpenTelemetry variables alone.
        let served = if sig == "-TERM" {
            let toml = format!(
                "[otlp]\nendpoint = \"{}\"\ndelivery.interval = \"1h\"\n",
                receiver.endpoint()
            );
            serve(&toml).await
        } else {
            let env = [
                ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
                ("OTEL_METRIC_EXPORT_INTERVAL", "3600000".to_owned()),
                ("OTEL_SERVICE_NAME", "from-env".to_owned()),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "deployment.environment=staging".to_owned(),
                ),
                ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=t%201".to_owned()),
            ];
            serve_with_env("", &env).await
        };
        let events = "{\"event_type\":\"generation_completed\",\"model\":\"m\",\"metrics\":{\"total_duration_ms\":40}}\n".repeat(3);
        let response = reqwest::Client::new()
            .post(format!("{}/v1/events", served.intake))
            .header("content-type", "application/x-ndjson")
            .body(events)
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 202);
        signal(&served.child, sig);
        let out = wait(served.child);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{sig}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        receiver.with(|r| {
            assert_eq!(r.metrics.len(), 1, "{sig}: final metrics flushed");
            let logged: usize = r
                .logs
                .iter()
                .map(|l| l.resource_logs[0].scope_logs[0].log_records.len())
                .sum();
            assert_eq!(logged, 3, "{sig}: every event forwarded as a log record");
            if sig == "-INT" {
                let resource = r.metrics[0].resource_metrics[0]
                    .resource
                    .as_ref()
                    .expect("resource");
                let attrs = wasmtel_tests::attrs(&resource.attributes);
                assert_eq!(attrs["service.name"], "from-env");
                assert_eq!(attrs["deployment.environment"], "staging");
                assert!(r.headers.iter().all(|h| h["x-tenant"] == "t 1"));
            }
        });
    }
}

#[tokio::test]
async fn demo_sends_events_that_show_up_on_metrics() {
    let served = serve("").await;
    let out = tokio::task::spawn_blocking({
        let target = served.intake.clone();
        move || {
            Command::new(BIN)
                .args([
                    "demo",
                    "--target",
                    &target,
                    "--requests",
                    "40",
                    "--rate",
                    "400",
                ])
                .output()
                .expect("demo runs")
        }
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let events: f64 = stdout
        .split_once("requests (")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected summary: {stdout}"));
    assert!(stdout.starts_with("sent 40 requests"), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("demo: 40 requests"),
        "progress line"
    );
    let m = Exposition::parse(&scrape(served.prometheus).await);
    assert_eq!(m.total("inference_requests_total"), 40.0);
    assert_eq!(
        m.value("wasmtel_intake_events_accepted_total", &[]),
        Some(events)
    );
    signal(&served.child, "-TERM");
    assert_eq!(wait(served.child).status.code(), Some(0));
}

/// Runs the binary with `args` and `config`, expecting it to refuse to start: its stderr.
fn refused_start(args: &[&str], config: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg(config)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_bad_config_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[intake]\nlisten = 4318\n").expect("write");
    let stderr = refused_start(&["serve", "--config"], &path);
    assert!(
        stderr.contains(&format!(
            "invalid config file {}: line 2, column 10",
            path.display()
        )),
        "{stderr}"
    );
}

#[test]
fn serve_strict_stops_at_a_plugin_that_cannot_be_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("strict.toml");
    std::fs::write(
        &path,
        format!(
            "data_dir = \"{}\"\n[intake]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"\"\n[prometheus]\nenabled = false\n[admin]\nenabled = false\n[plugins]\ndir = \"{}\"\n[[views]]\nplugin = \"nowhere\"\n",
            dir.path().join("data").display(),
            dir.path().display()
        ),
    )
    .expect("write");
    let stderr = refused_start(&["serve", "--strict", "--config"], &path);
    assert!(
        stderr.contains("cannot start: view `nowhere`: no plugin `nowhere`: neither "),
        "{stderr}"
    );
}

#[test]
fn a_malformed_secret_in_the_environment_is_named_by_position_never_shown() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=sk-CANARY-1,CANARY-2",
            "invalid OTEL_EXPORTER_OTLP_HEADERS: entry 2 is not key=value",
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%zzCANARY",
            "invalid OTEL_EXPORTER_OTLP_HEADERS: entry 1 (`authorization`): the value has a bad %-escape",
        ),
    ];
    for (var, value, want) in cases {
        let out = Command::new(BIN)
            .arg("serve")
            .env(var, value)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
            .current_dir(dir.path())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(1), "refused");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(want), "{stderr}");
        assert!(
            !stderr.contains("CANARY"),
            "a secret reached stderr: {stderr}"
        );
    }
    // A config file's header of the wrong type: the key and line, never the value.
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[otlp.headers]\nauthorization = [\"Bearer CANARY\"]\n",
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("line 2, column 17: `otlp.headers.authorization`: invalid type"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("CANARY"),
        "a secret reached stderr: {stderr}"
    );
}

#[test]
fn demo_against_nothing_explains_itself() {
    let port = free_port();
    let out = Command::new(BIN)
        .args([
            "demo",
            "--target",
            &format!("http://127.0.0.1:{port}"),
            "--requests",
            "1",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `wasmtel serve` running?"));
}

const STATSD: &str = env!("WASMTEL_GUEST_STATSD");

fn wasmtel(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("runs")
}

#[test]
fn plugins_check_validates_world_and_init_without_a_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("statsd.wasm");
    std::fs::copy(STATSD, &file).expect("copy");
    let path = file.to_str().expect("utf-8 path");
    let out = wasmtel(&["plugins", "check", path]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{path}: ok, exporter (signals: metrics; temporality: delta)\n")
    );

    std::fs::write(dir.path().join("statsd.toml"), "histogram = \"violin\"\n").expect("settings");
    let out = wasmtel(&["plugins", "check", path]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {path}: rejected: exporter whose init refused the configuration: config `histogram`: \"violin\" is not ms, h or d\n"
        )
    );

    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"not wasm").expect("junk");
    let out = wasmtel(&["plugins", "check", junk.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rejected: not a valid component"));

    // A component built against the 0.1 contract is refused by name, with what to do.
    let old = dir.path().join("old.wasm");
    std::fs::write(&old, old_contract()).expect("old");
    let old = old.to_str().expect("utf-8");
    let out = wasmtel(&["plugins", "check", old]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "error: {old}: rejected: built for wasmtel:plugin@0.1.0; rebuild with wasmtel-guest 0.2\n"
        )
    );
}

/// A component of the 0.1 contract: it imports its `host` interface and exports its `encoder`.
fn old_contract() -> Vec<u8> {
    wat::parse_str(
        r#"(component
            (import "wasmtel:plugin/host@0.1.0" (instance (export "now-unix-nano" (func (result u64)))))
            (core module $m)
            (core instance $i (instantiate $m))
            (instance $e)
            (export "wasmtel:plugin/encoder@0.1.0" (instance $e)))"#,
    )
    .expect("valid component text")
}

#[test]
fn plugins_list_shows_directory_files_over_embedded_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("mkdir");
    std::fs::copy(STATSD, plugins.join("statsd.wasm")).expect("copy");
    std::fs::write(plugins.join("broken.wasm"), b"nope").expect("broken");
    let config = dir.path().join("wasmtel.toml");
    std::fs::write(
        &config,
        format!(
            "[plugins]\ndir = \"{}\"\ncache_dir = \"\"\n",
            plugins.display()
        ),
    )
    .expect("config");
    let out = wasmtel(&[
        "plugins",
        "list",
        "--config",
        config.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let names: Vec<(&str, &str)> = rows.iter().map(|r| (r[0], r[1])).collect();
    assert_eq!(
        names,
        [
            ("broken", "file"),
            ("datadog", "embedded"),
            ("drop-attributes", "embedded"),
            ("prometheus-remote-write", "embedded"),
            ("redact", "embedded"),
            ("statsd", "file")
        ],
        "{text}"
    );
    let world = |i: usize| rows[i][3..].join(" ");
    assert!(world(0).starts_with("INVALID: not a valid component"));
    assert_eq!(
        world(1),
        "exporter (signals: metrics, logs; temporality: delta)"
    );
    assert_eq!(
        world(2),
        "view (needs configuration: `keys` must name at least one attribute key)"
    );
    assert_eq!(
        world(3),
        "exporter (signals: metrics; temporality: cumulative)"
    );
    assert_eq!(
        world(4),
        "transform (signals: metrics, logs, traces; reads: metrics attributes, logs attributes+entries+payload, traces attributes+entries; keys gen_ai.prompt*,gen_ai.completion*,gen_ai.input.messages,gen_ai.output.messages,gen_ai.system_instructions,gen_ai.tool.call.arguments,gen_ai.tool.call.result)"
    );
    assert_eq!(world(5), "exporter (signals: metrics; temporality: delta)");
}

/// Runs `wasmtel <command> …` (an admin API command) against `served`, with its token.
fn admin_command(served: &Served, command: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg(command)
        .args(["--admin", &served.admin, "--data-dir"])
        .arg(&served.data)
        .args(args)
        .output()
        .expect("runs")
}

/// Runs `wasmtel integrations …` against `served`.
fn integrations(served: &Served, args: &[&str]) -> Output {
    admin_command(served, "integrations", args)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_integrations_commands_connect_test_pause_and_delete_through_the_admin_api() {
    // The collector is at a path: metrics, logs and traces all go under it.
    let receiver = Receiver::start_under("/otlp").await;
    let served = serve("").await;
    let mut all = String::new();
    let endpoint = format!("{}/otlp", receiver.endpoint());
    let out = integrations(
        &served,
        &[
            "connect-otlp",
            "--endpoint",
            &endpoint,
            "--name",
            "collector",
            "--header",
            "authorization=Bearer canary-cli",
            "--interval",
            "1s",
            "--test",
        ],
    );
    all.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.starts_with("ID "), "{stdout}");
    let rows: Vec<&str> = stdout.lines().filter(|l| l.contains("collector")).collect();
    assert_eq!(
        rows.len(),
        6,
        "three table rows, three first-export lines: {stdout}"
    );
    assert!(
        rows[..3].iter().all(|r| r.contains("pending")),
        "nothing was exported yet, so nothing is connected: {stdout}"
    );
    assert!(
        stdout.contains("collector metrics: first export at ") && stdout.contains("(in 1 s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("collector logs: records are sent as they arrive")
            && stdout.contains("collector traces: records are sent as they arrive"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("ok      connected: HTTP 200").count(),
        3,
        "--test probes all three at once: {stdout}"
    );
    // Within the interval, every signal reaches the collector under its path.
    reqwest::Client::new()
        .post(format!("{}/v1/events", served.intake))
        .header("content-type", "application/json")
        .body(r#"{"event_type":"generation_completed","model":"m","metrics":{"total_duration_ms":5}}"#)
        .send()
        .await
        .expect("intake answers");
    let span = serde_json::json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "GET /"}]}]}]});
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/traces", served.intake))
        .header("content-type", "application/json")
        .body(span.to_string())
        .send()
        .await
        .expect("intake answers");
    assert_eq!(answer.status(), 200);
    receiver
        .wait_until("metrics, logs and traces under /otlp", |r| {
            !r.metrics.is_empty() && !r.logs.is_empty() && !r.traces.is_empty()
        })
        .await;
    let list = loop {
        let out = integrations(&served, &["list"]);
        let list = String::from_utf8_lossy(&out.stdout).into_owned();
        if list.matches("connected").count() == 3 {
            break list;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(
        list.contains(&format!("{endpoint}/v1/logs"))
            && list.contains(&format!("{endpoint}/v1/traces"))
            && !list.contains("/v1/metrics/v1/logs"),
        "{list}"
    );

    let out = integrations(&served, &["--json", "list"]);
    all.push_str(&text(&out));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    let ids: Vec<String> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(list[0]["headers_set"], serde_json::json!(["authorization"]));

    let out = integrations(&served, &["test", &ids[1]]);
    all.push_str(&text(&out));
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("logs    ok      connected: HTTP 200"));
    receiver.with(|r| {
        assert!(
            r.headers
                .iter()
                .all(|h| h["authorization"] == "Bearer canary-cli")
        )
    });

    let out = integrations(&served, &["disable", &ids[0]]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("disabled"));
    let out = integrations(&served, &["enable", &ids[0]]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pending"),
        "started again, it has exported nothing yet"
    );
    let out = integrations(&served, &["resume", &ids[0]]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{} was not paused\n", ids[0])
    );
    let out = integrations(&served, &["delete", &ids[0]]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("deleted {}\n", ids[0])
    );

    let out = integrations(&served, &["test", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: no integration `nope`\n"
    );
    let out = integrations(
        &served,
        &[
            "create",
            "--kind",
            "logs",
            "--type",
            "otlp",
            "--name",
            "x",
            "--endpoint",
            "ftp://x",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid integration: `endpoint`: must be an http:// or https:// URL with a host\n"
    );
    let out = Command::new(BIN)
        .args([
            "integrations",
            "--admin",
            &served.admin,
            "--token",
            "wrong",
            "list",
        ])
        .output()
        .expect("runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: invalid bearer token\n"
    );

    signal(&served.child, "-TERM");
    let host = wait(served.child);
    all.push_str(&text(&host));
    assert!(
        !all.contains("canary"),
        "a credential appeared in CLI or host output"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_otlp_integration_created_with_the_cli_delivers_over_grpc() {
    // The collector is another host: only its OTLP/gRPC listener takes what is sent.
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = wasmtel::Config::from_toml(&format!(
        "data_dir = \"{}\"\n[intake]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n[prometheus]\nlisten = \"127.0.0.1:0\"\n[admin]\nenabled = false\n[gpu]\npoll_interval = \"0s\"\n[system]\npoll_interval = \"0s\"\n",
        dir.path().display()
    ))
    .expect("sink config");
    let sink = wasmtel::Host::start(&sink).await.expect("sink starts");
    let served = serve("").await;
    let endpoint = format!("http://{}", sink.grpc_addr().expect("gRPC"));
    let out = integrations(
        &served,
        &[
            "--json",
            "connect-otlp",
            "--endpoint",
            &endpoint,
            "--name",
            "grpc-collector",
            "--protocol",
            "grpc",
            "--interval",
            "200ms",
            "--set",
            "compression=none",
            "--set",
            "delivery.retry.max_retries=5",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        created["created"][0]["endpoints"],
        serde_json::json!([["metrics", endpoint]]),
        "over gRPC the endpoint is the base, with no /v1/metrics"
    );
    reqwest::Client::new()
        .post(format!("{}/v1/events", served.intake))
        .header("content-type", "application/x-ndjson")
        .body("{\"event_type\":\"chunk_produced\",\"model\":\"m\"}\n".repeat(3))
        .send()
        .await
        .expect("intake answers");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let m = Exposition::parse(&scrape(sink.prometheus_addr().expect("prometheus")).await);
        if m.total("wasmtel_intake_events_accepted_total") == 3.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the events never arrived over gRPC"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A key no `[otlp]` section takes is refused by name.
    let out = integrations(
        &served,
        &[
            "connect-otlp",
            "--endpoint",
            &endpoint,
            "--name",
            "typo",
            "--set",
            "compresion=none",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with(
            "error: invalid integration: `compresion`: unknown field `compresion`, expected one of"
        ),
        "{}",
        text(&out)
    );
    signal(&served.child, "-TERM");
    wait(served.child);
    sink.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_using_a_renamed_key_starts_with_one_warning_naming_the_new_spelling() {
    let served = serve("[otlp]\ninterval = \"30s\"\n").await;
    signal(&served.child, "-TERM");
    let out = wait(served.child);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("is now spelled").count(),
        1,
        "one warning: {stderr}"
    );
    assert!(
        stderr.contains("`otlp.interval` is now spelled `otlp.delivery.interval`"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_flood_past_the_open_file_limit_leaves_health_and_intake_answering() {
    let served = serve_under("", &[], Some("-n 256")).await;
    let intake: std::net::SocketAddr = served
        .intake
        .trim_start_matches("http://")
        .parse()
        .expect("addr");
    let mut flood = Vec::new();
    for _ in 0..400 {
        match tokio::net::TcpStream::connect(intake).await {
            Ok(stream) => flood.push(stream),
            Err(e) => panic!("connect: {e}"),
        }
    }
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/healthz", served.admin))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("healthz answers during the flood");
    assert_eq!(health.status(), 200);
    let accepted = client
        .post(format!("{}/v1/events", served.intake))
        .header("content-type", "application/x-ndjson")
        .body("{\"event_type\":\"generation_completed\",\"model\":\"m\"}\n")
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("intake answers during the flood");
    assert_eq!(accepted.status(), 202);
    drop(flood);
    signal(&served.child, "-TERM");
    let out = wait(served.child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("connections.max_connections lowered from 1024 to 32 per listener to fit the open-file limit of 256"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_soft_open_file_limit_is_raised_to_the_hard_one_and_logged() {
    let served = serve_under("", &[], Some("-Sn 200 && ulimit -Hn 8192")).await;
    signal(&served.child, "-TERM");
    let out = wait(served.child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("raised the open-file limit from 200 to 8192"),
        "{stderr}"
    );
    assert!(!stderr.contains("lowered"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_integration_writes_leaves_the_store_intact_and_every_acknowledged_one() {
    let mut served = serve("").await;
    let client = reqwest::Client::new();
    let mut acknowledged: Vec<String> = Vec::new();
    for round in 0..8u64 {
        let (admin, token) = (served.admin.clone(), served.token());
        let creating = tokio::spawn({
            let client = client.clone();
            async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    let name = format!("r{round}-{i}");
                    let body = serde_json::json!({"kind": "metrics", "type": "otlp", "name": name,
                        "endpoint": "http://127.0.0.1:9"});
                    let sent = client
                        .post(format!("{admin}/api/v1/integrations"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.to_string())
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 201 => acked.push(name),
                        Ok(r) => panic!("{name}: {}", r.status()),
                        Err(_) => break,
                    }
                }
                acked
            }
        });
        // Killed mid-stream, at a different moment each round.
        tokio::time::sleep(Duration::from_millis(150 + round * 70)).await;
        signal(&served.child, "-KILL");
        let _ = wait(std::mem::replace(
            &mut served.child,
            Command::new("true").spawn().expect("true"),
        ));
        acknowledged.extend(creating.await.expect("join"));
        let db = rusqlite::Connection::open(served.data.join("wasmtel.db")).expect("open");
        let check: String = db
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok", "round {round}");
        drop(db);
        served.restart().await;
    }
    assert!(
        acknowledged.len() >= 8,
        "only {} creates acknowledged",
        acknowledged.len()
    );
    let listed: serde_json::Value = client
        .get(format!("{}/api/v1/integrations", served.admin))
        .bearer_auth(served.token())
        .send()
        .await
        .expect("list")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    let names: std::collections::HashSet<&str> = listed["integrations"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !names.contains(n.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost after kill -9: {lost:?}"
    );
    signal(&served.child, "-KILL");
}

/// NDJSON of completed-generation events with request ids `req-<from>` … `req-<to - 1>`.
fn completed(ids: std::ops::Range<u64>) -> String {
    ids.map(|i| {
        format!(
            "{{\"event_type\":\"generation_completed\",\"model\":\"m\",\"request_id\":\"req-{i}\",\"metrics\":{{\"total_duration_ms\":5}}}}\n"
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_with_the_disk_queue_loses_nothing_acknowledged() {
    let receiver = Receiver::start().await;
    // The backend is down while the host takes events, and comes back after the crash.
    receiver.answer(503);
    let mut served = serve(&format!(
        "[otlp]\nendpoint = \"{}\"\ncompression = \"none\"\ndelivery.interval = \"1h\"\ndelivery.queue = \"disk\"\n\
         [otlp.delivery.retry]\nmax_retries = 1000\ninitial_backoff = \"20ms\"\nmax_backoff = \"50ms\"\nbreaker_cooldown = \"20ms\"\n",
        receiver.endpoint()
    ))
    .await;
    let intake = served.intake.clone();
    let posting = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut acked = 0u64;
        loop {
            let sent = client
                .post(format!("{intake}/v1/events"))
                .header("content-type", "application/x-ndjson")
                .body(completed(acked..acked + 100))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 => acked += 100,
                // The queue is full (the backend is down): the batch is not acknowledged.
                Ok(r) if r.status() == 503 => tokio::time::sleep(Duration::from_millis(50)).await,
                Ok(r) => panic!("{}", r.status()),
                Err(_) => return acked,
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&served.child, "-KILL");
    let acked = posting.await.expect("join");
    let _ = wait(std::mem::replace(
        &mut served.child,
        Command::new("true").spawn().expect("true"),
    ));
    assert!(
        acked >= 1000,
        "only {acked} events acknowledged before the kill"
    );
    assert!(
        receiver.with(Received::request_ids).is_empty(),
        "the backend was down"
    );

    receiver.answer(200);
    served.restart().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let missing = loop {
        let got: std::collections::HashSet<String> =
            receiver.with(Received::request_ids).into_iter().collect();
        let missing: Vec<u64> = (0..acked)
            .filter(|i| !got.contains(&format!("req-{i}")))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "{} of {acked} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    // What the journal read back: every acknowledged record, and at most the one request that
    // was being written when the host died.
    let client = reqwest::Client::new();
    let reports: serde_json::Value = client
        .get(format!("{}/api/v1/integrations", served.admin))
        .bearer_auth(served.token())
        .send()
        .await
        .expect("reports")
        .bytes()
        .await
        .map(|b| serde_json::from_slice(&b).expect("json"))
        .expect("body");
    let logs = reports["integrations"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == "otlp"))
        .and_then(|i| i["signals"].as_array())
        .and_then(|s| s.iter().find(|s| s["signal"] == "logs"))
        .cloned()
        .unwrap_or_else(|| panic!("no logs report: {reports}"));
    let replayed = logs["disk_queue"]["replayed"]["items"]
        .as_u64()
        .expect("replayed");
    assert!(
        (acked..=acked + 100).contains(&replayed),
        "{replayed} read back for {acked} acknowledged: {logs}"
    );
    assert_eq!(logs["disk_queue"]["replayed"]["skipped_bytes"], 0, "{logs}");
    signal(&served.child, "-KILL");
}

/// Runs a project's `build.sh`; `false` (the check skipped, said on stderr) when its build tool
/// is missing outside CI.
fn build_project(dir: &std::path::Path, tool: &str) -> bool {
    let present = Command::new(tool).arg("--version").output().is_ok();
    if !present {
        assert!(std::env::var_os("CI").is_none(), "{tool} is required in CI");
        eprintln!("{tool} is not installed: its project is not built; .ci/run installs it");
        return false;
    }
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-new");
    let out = Command::new(dir.join("build.sh"))
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .expect("build.sh runs");
    assert!(
        out.status.success(),
        "{} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

#[test]
fn plugins_new_writes_projects_that_build_into_plugins_of_their_kind() {
    let root = tempfile::tempdir().expect("tempdir");
    for (name, kind, lang, tool, world) in [
        (
            "gpu-lines",
            "exporter",
            "rust",
            "cargo",
            "exporter (signals: metrics; temporality: cumulative)",
        ),
        // The templates' transforms say they read only the attribute table, and of it one key.
        (
            "scrub",
            "transform",
            "python",
            "componentize-py",
            "transform (signals: metrics, logs, traces; reads: metrics attributes, logs attributes, traces attributes; keys user.id)",
        ),
        (
            "scrub-js",
            "transform",
            "js",
            "componentize-js",
            "transform (signals: metrics, logs, traces; reads: metrics attributes, logs attributes, traces attributes; keys user.id)",
        ),
        ("narrow", "view", "js", "componentize-js", "view"),
    ] {
        let dir = root.path().join(name);
        let d = dir.to_str().expect("utf-8");
        let out = wasmtel(&[
            "plugins", "new", name, "--kind", kind, "--lang", lang, "--dir", d,
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).ends_with(&format!(
            "build: {d}/build.sh, then: wasmtel plugins check {d}/{name}.wasm\n"
        )));
        if !build_project(&dir, tool) {
            continue;
        }
        let wasm = dir.join(format!("{name}.wasm"));
        let file = wasm.to_str().expect("utf-8");
        let out = wasmtel(&["plugins", "check", file]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}: ok, {world}\n", wasm.display()),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if kind == "transform" {
            // Given only the attribute table, it still removes the key from every point.
            let key = "gen_ai.request.model";
            let out = wasmtel(&["plugins", "run", file, "--config", &format!("key={key}")]);
            let shown = text(&out);
            assert!(out.status.success(), "{shown}");
            let (metrics, _) = shown
                .split_once("metrics after the transform")
                .and_then(|(_, after)| after.split_once("log records after the transform"))
                .expect("both parts shown");
            assert!(metrics.contains("\"dataPoints\""), "{shown}");
            assert!(!metrics.contains(key), "{name}: {shown}");
            // And from every one of a thousand spans, each with its own attribute set.
            let spans = spans_file(&dir, 1000);
            let out = wasmtel(&[
                "plugins",
                "run",
                file,
                "--spans",
                spans.to_str().expect("utf-8"),
                "--config",
                "key=gen_ai.request.id",
            ]);
            assert!(out.status.success(), "{name}: {}", text(&out));
            assert_spans_lost_the_request_id(&String::from_utf8_lossy(&out.stdout), 1000);
            assert_probe_decides(name, &wasm);
        }
    }

    // A wrong signature under #[exporter] is a compile error pointing at the parameter.
    let lib = root.path().join("gpu-lines/src/lib.rs");
    if root.path().join("gpu-lines/gpu-lines.wasm").exists() {
        let source = std::fs::read_to_string(&lib).expect("source");
        std::fs::write(&lib, source.replace("config: &Config)", "config: Config)"))
            .expect("break it");
        let out = Command::new(root.path().join("gpu-lines/build.sh"))
            .env(
                "CARGO_TARGET_DIR",
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm-new"),
            )
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("error: #[exporter] expects `&Config` here, not `Config`"),
            "{stderr}"
        );
        assert!(stderr.contains("--> src/lib.rs:6:"), "{stderr}");
    }

    let out = wasmtel(&["plugins", "new", "Bad_Name", "--kind", "view"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"Bad_Name\" is not a plugin name"));
}

/// In an OTLP integration, a collection without the template transform's key (`user.id`)
/// leaves straight from the engine once the transform, given its cut sets, changed nothing;
/// one series with the key sends the whole batch through it.
fn assert_probe_decides(name: &str, wasm: &std::path::Path) {
    use wasmtel::plugins::{Limits, Link, Runtime, Slot, Stats, TransformPlugin, Transforms};
    let runtime = Runtime::shared().expect("runtime");
    let component = runtime
        .compile(&std::fs::read(wasm).expect("built"))
        .expect("compiles");
    let limits = Limits::default();
    let plugin = TransformPlugin::load(
        &runtime,
        name,
        &component,
        Vec::new(),
        limits,
        &Stats::default(),
    );
    let slot = std::sync::Arc::new(Slot::new(
        name,
        Default::default(),
        plugin.map(|p| (p, String::new())),
    ));
    let chain = Transforms::new(vec![Link::new(slot, wasmtel::config::OnFailure::Open)]);
    let registry = wasmtel::metrics::Registry::new(100);
    let descriptor = wasmtel::metrics::Descriptor {
        name: "requests".into(),
        unit: "{request}".into(),
        description: String::new(),
        kind: wasmtel::model::metric::InstrumentKind::Counter,
        scope: "test".into(),
    };
    let counter = registry.instrument(descriptor, &[]).expect("counter");
    let record = |key: &str, value: &str| {
        counter.record(
            &[(key, wasmtel::model::attributes::ValueRef::Str(value))],
            1.0,
        );
    };
    record("tier", "pro");
    let resource = wasmtel::sources::resource::detect(&Default::default());
    let producers = [(0, &resource, &registry)];
    let unchanged =
        || wasmtel::export::otlp::metrics::encode_unchanged(&producers, &chain, &|_| true);
    assert!(unchanged().is_some(), "{name}: no `user.id`, no edit");
    record("user.id", "u-1");
    assert!(unchanged().is_none(), "{name}: `user.id` is removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_kubernetes_the_resource_names_the_pod_from_the_downward_api() {
    let env = [
        ("K8S_NODE_NAME", "gpu-node-7".to_owned()),
        ("K8S_POD_NAME", "wasmtel-x7k2p".to_owned()),
        (
            "K8S_POD_UID",
            "7a9c1e3f-5b7d-4e9f-8a1c-3e5f7a9b1c3d".to_owned(),
        ),
        ("K8S_NAMESPACE_NAME", "telemetry".to_owned()),
    ];
    let served = serve_with_env("", &env).await;
    let m = Exposition::parse(&scrape(served.prometheus).await);
    let target: Vec<_> = m.samples("target_info").collect();
    assert_eq!(target.len(), 1);
    for (label, value) in [
        ("k8s_node_name", "gpu-node-7"),
        ("k8s_pod_name", "wasmtel-x7k2p"),
        ("k8s_pod_uid", "7a9c1e3f-5b7d-4e9f-8a1c-3e5f7a9b1c3d"),
        ("k8s_namespace_name", "telemetry"),
    ] {
        assert_eq!(
            target[0].0.get(label).map(String::as_str),
            Some(value),
            "{label}"
        );
    }
    signal(&served.child, "-TERM");
    assert_eq!(wait(served.child).status.code(), Some(0));

    // Off a cluster the resource has no k8s attribute.
    let served = serve("").await;
    let m = Exposition::parse(&scrape(served.prometheus).await);
    let target: Vec<_> = m.samples("target_info").collect();
    assert!(
        !target[0]
            .0
            .keys()
            .any(|k| k.starts_with("k8s_") || k == "container_id")
    );
    signal(&served.child, "-TERM");
    let (intake, prometheus, data) = (
        served.intake.trim_start_matches("http://").to_owned(),
        served.prometheus,
        served.data.clone(),
    );
    let out = wait(served.child);
    assert_eq!(out.status.code(), Some(0));
    // The start-up line says where everything is, in plain words.
    let log = String::from_utf8_lossy(&out.stderr);
    let line = log
        .lines()
        .find(|l| l.contains("wasmtel is serving"))
        .expect("the start-up line");
    let want =
        format!("wasmtel is serving: events and OTLP/HTTP on {intake}, OTLP/gRPC on 127.0.0.1:");
    assert!(line.contains(&want), "{line}");
    assert!(
        line.contains(&format!("Prometheus http://{prometheus}/metrics")),
        "{line}"
    );
    assert!(
        line.contains(&format!("token in {}", data.join("admin.token").display())),
        "{line}"
    );
    assert!(line.contains("; no integration active"), "{line}");
    assert!(!line.contains("Some(") && !line.contains("None"), "{line}");
}

/// Runs `wasmtel tenants …` against `served` with the operator's token.
fn tenants(served: &Served, args: &[&str]) -> Output {
    admin_command(served, "tenants", args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenants_commands_add_list_upload_select_and_remove() {
    let receiver = Receiver::start().await;
    let served = serve("[tenancy]\nkey = \"service.namespace\"\n").await;
    let out = tenants(&served, &["--json", "add", "team-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let admin = created["admin_token"]
        .as_str()
        .expect("admin token")
        .to_owned();
    let out = tenants(&served, &["add", "team-b"]);
    let shown = text(&out);
    assert!(
        shown.contains("shown only now") && shown.contains("intake token: "),
        "{shown}"
    );
    let out = tenants(&served, &["list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "team-a\nteam-b\n");
    // Options go after the subcommand too.
    let out = tenants(&served, &["list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed[1]["name"], "team-b");

    // A tenant's token: its own integration, selecting within its own data.
    let out = Command::new(BIN)
        .args([
            "integrations",
            "--admin",
            &served.admin,
            "--token",
            &admin,
            "--json",
        ])
        .args([
            "create",
            "--kind",
            "logs",
            "--type",
            "otlp",
            "--name",
            "mine",
            "--endpoint",
        ])
        .arg(receiver.endpoint())
        .args([
            "--select",
            "service.name=api-*",
            "--select",
            "service.name=web",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let select = &made["created"][0]["select"]["resource"];
    assert_eq!(select["service.name"], serde_json::json!(["api-*", "web"]));
    assert_eq!(
        select["service.namespace"], "team-a",
        "pinned to its tenant"
    );

    // Its own exporter plugin, uploaded.
    let file = served.data.join("mine.wasm");
    std::fs::write(
        &file,
        wasmtel::plugins::embedded::find("statsd").expect("embedded"),
    )
    .expect("write");
    let out = Command::new(BIN)
        .args(["plugins", "upload"])
        .arg(&file)
        .args(["--admin", &served.admin, "--token", &admin])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).starts_with("uploaded mine: exporter"),
        "{}",
        text(&out)
    );
    assert!(
        served
            .data
            .join("tenants/team-a/plugins/mine.wasm")
            .exists()
    );
    let out = Command::new(BIN)
        .args(["plugins", "upload"])
        .arg(&file)
        .args(["--admin", &served.admin, "--data-dir"])
        .arg(&served.data)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("uploads are a tenant's"),
        "{}",
        text(&out)
    );

    let out = tenants(&served, &["remove", "team-a"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !served.data.join("tenants/team-a").exists(),
        "its uploads went with it"
    );
    let out = tenants(&served, &["list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "team-b\n");
}

#[test]
fn plugins_run_without_input_uses_the_sample_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("statsd.wasm");
    std::fs::write(
        &file,
        wasmtel::plugins::embedded::find("statsd").expect("embedded"),
    )
    .expect("write");
    let out = wasmtel(&["plugins", "run", file.to_str().expect("path")]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    assert!(shown.contains("metrics: 4 outbound"), "{shown}");
    assert!(
        shown.contains("gen_ai.server.request.duration")
            || shown.contains("gen_ai_server_request_duration"),
        "the sample's requests went through the GenAI rules: {shown}"
    );
    let sample = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/events.ndjson"
    ))
    .expect("the repository's sample");
    assert_eq!(sample.lines().count(), 18);
}

/// `n` vLLM-shaped `llm_request` spans (each its own trace and request id, seven attributes and
/// an event) as an OTLP/JSON `ExportTraceServiceRequest` file in `dir`.
fn spans_file(dir: &std::path::Path, n: u64) -> std::path::PathBuf {
    use prost::Message as _;
    let body = wasmtel::load::traces_body(0, n);
    let request =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(
            body.as_slice(),
        )
        .expect("valid");
    let file = dir.join("spans.json");
    std::fs::write(&file, serde_json::to_vec(&request).expect("json")).expect("write");
    file
}

/// Checks what `plugins run … --spans` printed for `n` spans that went through a transform
/// removing `gen_ai.request.id`: every span, each keeping its other attributes and its event.
fn assert_spans_lost_the_request_id(shown: &str, n: usize) {
    let (_, json) = shown
        .split_once("spans after the transform (OTLP/JSON):\n")
        .unwrap_or_else(|| panic!("spans shown: {shown}"));
    let request: serde_json::Value =
        serde_json::from_str(json.trim_end()).unwrap_or_else(|e| panic!("{e}: {json}"));
    let spans = request["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap_or_else(|| panic!("spans: {json}"));
    assert_eq!(spans.len(), n);
    for (i, span) in spans.iter().enumerate() {
        let keys: Vec<&str> = span["attributes"]
            .as_array()
            .expect("attributes")
            .iter()
            .map(|a| a["key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys.len(), 6, "span {i}: {keys:?}");
        assert!(!keys.contains(&"gen_ai.request.id"), "span {i}: {keys:?}");
        assert!(
            keys.contains(&"gen_ai.response.model"),
            "span {i}: {keys:?}"
        );
        assert_eq!(span["name"], "llm_request");
        assert_eq!(span["events"][0]["name"], "first_token");
    }
}

#[test]
fn plugins_run_takes_spans_through_a_transform_and_says_what_it_cannot_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str| {
        let file = dir.path().join(format!("{name}.wasm"));
        std::fs::write(
            &file,
            wasmtel::plugins::embedded::find(name).expect("embedded"),
        )
        .expect("write");
        file.to_str().expect("utf-8").to_owned()
    };
    let (redact, statsd) = (write("redact"), write("statsd"));
    let spans = spans_file(dir.path(), 1000);
    let spans = spans.to_str().expect("utf-8");

    let out = wasmtel(&[
        "plugins",
        "run",
        &redact,
        "--spans",
        spans,
        "--config",
        "drop=gen_ai.request.id",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.starts_with("redact: transform ("), "{shown}");
    assert_spans_lost_the_request_id(&shown, 1000);

    // What cannot be done with spans is said, and nothing runs.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"resourceSpans\": 7}").expect("write");
    let invalid = dir.path().join("invalid.json");
    std::fs::write(
        &invalid,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"","spanId":"","name":"x"}]}]}]}"#,
    )
    .expect("write");
    for (file, args, said) in [
        (
            &statsd,
            vec!["--spans", spans],
            "statsd takes no spans (its world is not trace-exporter)",
        ),
        (
            &redact,
            vec!["--spans", bad.to_str().expect("utf-8")],
            "not an OTLP/JSON ExportTraceServiceRequest",
        ),
        (
            &redact,
            vec!["--spans", invalid.to_str().expect("utf-8")],
            "1 spans refused: ",
        ),
        (
            &redact,
            vec!["--spans", spans, "--events", spans],
            "cannot be used with",
        ),
    ] {
        let out = wasmtel(&[&["plugins", "run", file.as_str()][..], &args].concat());
        assert!(!out.status.success(), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(said), "{args:?}: {}", text(&out));
        assert!(
            !text(&out).contains("spans after the transform"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn plugins_check_and_run_compile_once_through_the_hosts_compile_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("statsd.wasm");
    std::fs::copy(STATSD, &file).expect("copy");
    let config = dir.path().join("wasmtel.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!("data_dir = {:?}\n", data.display().to_string()),
    )
    .expect("config");
    let (file, config) = (
        file.to_str().expect("utf-8"),
        config.to_str().expect("utf-8"),
    );
    let cache = data.join("plugin-cache");
    let cached = || std::fs::read_dir(&cache).map_or(0, |d| d.count());

    let out = wasmtel(&["plugins", "check", file, "--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.starts_with("(compiled in ") && said.contains(&format!("kept in {}", cache.display())),
        "{said}"
    );
    assert_eq!(cached(), 1, "one artefact kept");

    // Checked again and run: the artefact is read, nothing is compiled.
    let out = wasmtel(&["plugins", "check", file, "--config", config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        said.starts_with(&format!("(from the compile cache in {}", cache.display())),
        "{said}"
    );
    let out = wasmtel(&["plugins", "run", file, "--host-config", config]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(said.contains("(from the compile cache in"), "{said}");
    assert!(text(&out).contains("metrics: "), "{}", text(&out));
    assert_eq!(cached(), 1);
}
