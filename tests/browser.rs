//! `orchestrator dashboard` in a real browser: headless Chromium, driven
//! through chromedriver (WebDriver), against a run going on in the sandbox.
//! The batch page's live numbers move while the run goes on, a failed job's
//! page shows its history, and buttons clicked in the page reach the store.
//! Each page is saved as a screenshot for review under
//! `$CARGO_TARGET_TMPDIR/screenshots/`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use orchestrator_store::{JobState, ReadStore, SqliteStore};

use crate::crash::wait_for_process;
use crate::support::{Fixture, orchestrator};

/// Debian's Chromium (the `chromium` package; `chromium-driver` brings
/// chromedriver).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser window: a laptop's screen.
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 1000;

/// Four accounts that post, slowly, and one whose every post is refused
/// as suspended. At 200 ms a post and two workers the batch would take a
/// minute: the run is live for as long as the test looks at it, and the
/// test stops it.
const SLOW_WITH_FAILURES: &str = r#"
[[account]]
name = "alpha"
token = "alpha-token"
delay_ms = 200

[[account]]
name = "bravo"
token = "bravo-token"
delay_ms = 200

[[account]]
name = "suspended"
token = "suspended-token"
delay_ms = 200
then = { respond = "suspended" }

[[account]]
name = "charlie"
token = "charlie-token"
delay_ms = 200

[[account]]
name = "delta"
token = "delta-token"
delay_ms = 200
"#;

const JOBS_PER_ACCOUNT: usize = 60;

/// Every wait for the browser, the run or a server: generous, for a
/// machine busy with other builds.
const PATIENCE: Duration = Duration::from_secs(60);

/// Whether chromedriver and Chromium are here; outside CI a missing one
/// skips the test, loudly (`.ci/run` installs both).
fn browser_available() -> bool {
    let driver = Command::new("chromedriver")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let missing = match driver {
        Ok(s) if s.success() && Path::new(CHROMIUM).exists() => return true,
        Ok(_) => format!("{CHROMIUM} is missing"),
        Err(e) => format!("chromedriver does not start ({e})"),
    };
    if std::env::var_os("CI").is_some() {
        panic!("{missing} in CI; .ci/run installs chromium and chromium-driver");
    }
    eprintln!(
        "\n*** SKIPPED: the browser test needs Chromium and chromedriver: {missing}; \
         install them with `apt-get install chromium chromium-driver` ***\n"
    );
    false
}

/// The processes the test starts, ended when it ends, whether it passed or
/// not: the run, the dashboard, and chromedriver with the browser it
/// started (its own process group, so no Chromium outlives the test).
#[derive(Default)]
struct Children(Vec<(Child, bool)>);

impl Children {
    fn add(&mut self, child: Child) -> &mut Child {
        self.0.push((child, false));
        &mut self.0.last_mut().unwrap().0
    }

    fn add_group(&mut self, child: Child) -> &mut Child {
        self.0.push((child, true));
        &mut self.0.last_mut().unwrap().0
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (child, group) in self.0.iter_mut().rev() {
            if *group {
                let _ = rustix::process::kill_process_group(
                    rustix::process::Pid::from_child(child),
                    rustix::process::Signal::KILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every line `from` writes, as it comes, on a thread that reads to the
/// end, so a chatty child never blocks on a full pipe.
fn lines_of(from: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { return };
            // Nobody listens any more: keep reading, so the child can write.
            let _ = send.send(line);
        }
    });
    receive
}

/// The first of `lines` for which `wanted` gives a value.
fn first_line<T>(
    what: &str,
    lines: &mpsc::Receiver<String>,
    mut wanted: impl FnMut(&str) -> Option<T>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {what} in:\n{}", seen.join("\n")));
        if let Some(found) = wanted(&line) {
            return found;
        }
        seen.push(line);
    }
}

/// `orchestrator dashboard` over `state` on a port of its choosing; its
/// address, from the line it prints once it listens.
fn start_dashboard(f: &Fixture, state: &Path, children: &mut Children) -> String {
    let child = children.add(
        orchestrator()
            .current_dir(f.dir.path())
            .args(["dashboard", "--listen", "127.0.0.1:0", "--state-file"])
            .arg(state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the orchestrator binary starts"),
    );
    let lines = lines_of(child.stderr.take().unwrap());
    first_line("dashboard address", &lines, |line| {
        let rest = line.strip_prefix("Dashboard of ")?;
        let (_, url) = rest.split_once(" on ")?;
        let url = url.strip_suffix(" (Ctrl-C stops it)")?;
        Some(url.trim_end_matches('/').to_owned())
    })
}

/// chromedriver on a port of its choosing; the WebDriver URL, from the
/// line it prints once it listens.
fn start_chromedriver(children: &mut Children) -> String {
    use std::os::unix::process::CommandExt;
    let child = children.add_group(
        Command::new("chromedriver")
            .arg("--port=0")
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let lines = lines_of(child.stdout.take().unwrap());
    let port: u16 = first_line("chromedriver port", &lines, |line| {
        line.strip_prefix("ChromeDriver was started successfully on port ")?
            .trim_end_matches('.')
            .parse()
            .ok()
    });
    format!("http://127.0.0.1:{port}")
}

/// A session of headless Chromium.
async fn browser(webdriver: &str) -> Client {
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            // Root in a container: no sandbox; no GPU either.
            "args": [
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                format!("--window-size={WIDTH},{HEIGHT}"),
            ],
        },
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(webdriver)
        .await
        .unwrap_or_else(|e| panic!("no browser session at {webdriver}: {e}"))
}

/// Where the screenshots go.
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The whole page as a PNG: the window grows to the page's height for the
/// shot (a screenshot holds only what the window shows), then shrinks back.
async fn screenshot(client: &Client, name: &str) -> PathBuf {
    let heights = client
        .execute(
            "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]",
            vec![],
        )
        .await
        .unwrap();
    let height = |i: usize| heights[i].as_u64().unwrap_or(0) as u32;
    let (page, frame) = (height(0), height(1));
    client
        .set_window_size(WIDTH, (page + frame).max(HEIGHT))
        .await
        .unwrap();
    let png = client.screenshot().await.unwrap();
    client.set_window_size(WIDTH, HEIGHT).await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
    let path = screenshots().join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap();
    path
}

async fn text(client: &Client, css: &str) -> String {
    client
        .wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
        .text()
        .await
        .unwrap()
}

/// A live tile's number, as the page shows it now.
async fn tile(client: &Client, key: &str) -> u64 {
    let shown = text(client, &format!("[data-live={key}]")).await;
    shown
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("tile {key} shows {shown:?}"))
}

/// Waits until `ready` holds for the page as it is, re-reading it without
/// reloading; what it last saw when it gives up.
async fn until<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        let last = match ready().await {
            Ok(()) => return,
            Err(last) => last,
        };
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} to click: {e}"))
        .click()
        .await
        .unwrap();
}

#[test]
fn the_dashboard_in_a_browser_follows_a_run_and_acts_on_the_store() {
    if !browser_available() {
        return;
    }
    let f = Fixture::new(SLOW_WITH_FAILURES, JOBS_PER_ACCOUNT);
    let state = f.path("orchestrator-state.sqlite");
    let mut children = Children::default();
    let run = children.add(f.spawn(&["--workers", "2"]));
    let run_log = lines_of(run.stderr.take().unwrap());
    wait_for_process(&f, 1);
    let dashboard = start_dashboard(&f, &state, &mut children);
    let webdriver = start_chromedriver(&mut children);

    let mut shots = Vec::new();
    let (job_id, run_exit) = f.runtime.block_on(async {
        let client = browser(&webdriver).await;

        // The batch page: its live tiles follow the run with no reload.
        client.goto(&format!("{dashboard}/")).await.unwrap();
        assert_eq!(client.title().await.unwrap(), "Batch · orchestrator");
        let first = tile(&client, "succeeded").await;
        until("the succeeded tile to move", || async {
            let now = tile(&client, "succeeded").await;
            let failed = tile(&client, "failed").await;
            if now > first && failed > 0 {
                Ok(())
            } else {
                Err(format!("succeeded {now} (was {first}), failed {failed}"))
            }
        })
        .await;
        let updated = client
            .execute("return document.body.dataset.updated || null", vec![])
            .await
            .unwrap();
        assert!(updated.is_string(), "the script never refreshed: {updated}");
        shots.push(screenshot(&client, "batch").await);

        // Stop all, from the page: the run stops, the page says so.
        click(&client, "form[action='/actions/stop'] button").await;
        let said = text(&client, ".flash").await;
        assert_eq!(said, "asked 1 running process(es) to stop");
        let deadline = Instant::now() + PATIENCE;
        let run_exit = loop {
            if let Some(status) = children.0[0].0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the run did not stop");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        shots.push(screenshot(&client, "batch-stopped").await);

        client.goto(&format!("{dashboard}/accounts")).await.unwrap();
        assert_eq!(client.title().await.unwrap(), "Accounts · orchestrator");
        let accounts = text(&client, "table").await;
        for name in ["alpha", "bravo", "charlie", "delta", "suspended"] {
            assert!(accounts.contains(name), "{name} missing in:\n{accounts}");
        }
        // Each count carries its state's class (and so its colour).
        let styled = client.find_all(Locator::Css("td.n.failed")).await.unwrap();
        assert_eq!(styled.len(), 5, "one failed count per account");
        shots.push(screenshot(&client, "accounts").await);

        // The failed jobs, and the first one's page from its link.
        client
            .goto(&format!("{dashboard}/jobs?state=failed"))
            .await
            .unwrap();
        assert_eq!(client.title().await.unwrap(), "Jobs · orchestrator");
        let failed = text(&client, "table").await;
        assert!(failed.contains("suspended-"), "{failed}");
        for account in ["alpha", "bravo", "charlie", "delta"] {
            assert!(!failed.contains(&format!("{account}-")), "{failed}");
        }
        shots.push(screenshot(&client, "jobs-failed").await);
        let link = client
            .find(Locator::Css("table a[href^='/jobs/']"))
            .await
            .unwrap();
        let job_id = link.text().await.unwrap();
        link.click().await.unwrap();
        until("the job's page", || async {
            let title = client.title().await.unwrap();
            if title == format!("Job {job_id} · orchestrator") {
                Ok(())
            } else {
                Err(title)
            }
        })
        .await;
        let history = text(&client, "pre").await;
        assert!(
            history.starts_with(&format!("Job {job_id} (account suspended): failed\n")),
            "{history}"
        );
        assert!(history.contains("\nAttempt 1 (run 1, pass 1): "), "{history}");
        assert!(!history.contains("Attempt 2"), "{history}");

        // Retry, from the page: it comes back saying what the store did.
        click(&client, "form[action$='/retry'] button").await;
        let said = text(&client, ".flash").await;
        assert_eq!(
            said,
            format!(
                "{job_id}: will be retried (was failed); a run going on takes it, otherwise the next --run"
            )
        );
        let history = text(&client, "pre").await;
        assert!(
            history.starts_with(&format!("Job {job_id} (account suspended): retry\n")),
            "{history}"
        );
        shots.push(screenshot(&client, "job").await);

        client.close().await.unwrap();
        (job_id, run_exit)
    });
    let log: Vec<String> = run_log.try_iter().collect();
    assert_eq!(run_exit.code(), Some(3), "{}", log.join("\n"));

    // The click reached the store.
    let store = SqliteStore::open_read_only(&state).unwrap();
    let job = store.job(&job_id).unwrap().unwrap();
    assert_eq!(job.state, JobState::Retry);
    let explain = f.tool(&["explain", &job_id]);
    assert_eq!(explain.code, 0, "{}", explain.stderr);
    assert!(
        explain
            .stdout
            .starts_with(&format!("Job {job_id} (account suspended): retry\n")),
        "{}",
        explain.stdout
    );
    drop(children);

    println!("Screenshots of the dashboard:");
    for shot in &shots {
        println!("  {}", shot.display());
    }
}
