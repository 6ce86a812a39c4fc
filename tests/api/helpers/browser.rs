//! A real browser: Debian's headless Chromium, driven over WebDriver by a chromedriver of the
//! test's own on a loopback port. `.ci/run` installs both packages.

use super::*;
use std::process::{Child, Command, Stdio};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// Where Debian's `chromium-driver` package puts the WebDriver server.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// How long chromedriver may take to answer, and Chromium to open a session, on a loaded
/// 2-core machine with the rest of the suite running beside it.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A headless Chromium session. Dereferences to the `fantoccini::Client` that drives it.
///
/// `close` ends the session (Chromium quits) and stops chromedriver; dropping it without
/// (a test that panicked) kills chromedriver's whole process group, Chromium with it, and the
/// profile folder goes with the `TempDir`.
pub struct Browser {
    client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl std::ops::Deref for Browser {
    type Target = fantoccini::Client;

    fn deref(&self) -> &fantoccini::Client {
        &self.client
    }
}

impl Browser {
    /// Start chromedriver on a free loopback port and open a headless Chromium session on it.
    /// Panics, so the test fails rather than skips, when either program is not installed.
    pub async fn start() -> Browser {
        for program in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: the browser tests need Debian's chromium and \
                 chromium-driver packages; run `bash .ci/run`, which installs them, or \
                 `apt-get install -y chromium chromium-driver`"
            );
        }
        let profile = tempfile::tempdir().expect("a temporary folder for the browser profile");
        let (driver, port) = start_chromedriver(profile.path()).await;
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert("browserName".to_owned(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--window-size=800,1000",
                    format!("--user-data-dir={}", profile.path().join("chromium").display()),
                    // Only loopback: every host but localhost and 127.0.0.1 (IP literals
                    // too) fails to resolve, so the browser cannot reach anything off this
                    // machine, by accident or through one of its own background services.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-domain-reliability",
                    "--no-first-run",
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let session = fantoccini::ClientBuilder::new(connector)
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await;
        let client = match session {
            Ok(client) => client,
            Err(e) => {
                kill_process_group(&driver);
                panic!(
                    "Chromium ({CHROMIUM}) did not start a session under chromedriver: {e}\n\
                     chromedriver's log:\n{}",
                    driver_log(profile.path())
                )
            }
        };
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// End the session (Chromium quits, its profile is removed) and stop chromedriver.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        // Drop kills what is left.
    }

    /// The page's address now, as the browser's address bar shows it.
    pub async fn url(&self) -> reqwest::Url {
        self.client.current_url().await.expect("the current URL")
    }

    /// Waits until the page's address starts with `prefix` (a form submitted, a redirect
    /// followed); answers it. Panics after 10 s with the page it is on.
    pub async fn wait_for_url_starting_with(&self, prefix: &str) -> reqwest::Url {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let url = self.url().await;
            if url.as_str().starts_with(prefix) {
                return url;
            }
            if tokio::time::Instant::now() > deadline {
                let source = self.client.source().await.unwrap_or_default();
                panic!("the browser is on {url}, not {prefix}..., after 10 s; the page:\n{source}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element `css` selects, waiting up to 10 s for it to appear.
    pub async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(fantoccini::Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => {
                let url = self.url().await;
                let source = self.client.source().await.unwrap_or_default();
                panic!("no {css:?} on {url} ({e}); the page:\n{source}")
            }
        }
    }

    /// How many elements `css` selects now, without waiting.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(fantoccini::Locator::Css(css))
            .await
            .expect("find elements")
            .len()
    }

    /// Saves what the browser shows to `docs/images/<name>` when `UPDATE_SCREENSHOTS=1`, so
    /// that an ordinary test run leaves the committed pictures alone.
    pub async fn screenshot_for_docs(&self, name: &str) {
        if std::env::var("UPDATE_SCREENSHOTS").as_deref() != Ok("1") {
            return;
        }
        let png = self.client.screenshot().await.expect("a screenshot");
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/images")
            .join(name);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("docs/images exists");
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill_process_group(&self.driver);
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver in a process group of its own on a free loopback port and waits until
/// it answers `/status` as ready; answers the process and its port.
async fn start_chromedriver(profile: &std::path::Path) -> (Child, u16) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .expect("an HTTP client");
    // A port found free can be taken by another test before chromedriver binds it: try again.
    for _ in 0..3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free loopback port")
            .port();
        let mut driver = {
            use std::os::unix::process::CommandExt as _;
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!(
                    "--log-path={}",
                    profile.join("chromedriver.log").display()
                ))
                .arg("--log-level=WARNING")
                // Chromium's own temporary files go with the profile folder, not into /tmp.
                .env("TMPDIR", profile)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("start {CHROMEDRIVER}: {e}"))
        };
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = driver.try_wait() {
                eprintln!(
                    "chromedriver on port {port} exited ({status}); its log:\n{}",
                    driver_log(profile)
                );
                break;
            }
            let ready = match http
                .get(format!("http://127.0.0.1:{port}/status"))
                .send()
                .await
            {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|status| status["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return (driver, port);
            }
            if tokio::time::Instant::now() > deadline {
                kill_process_group(&driver);
                let _ = driver.wait();
                panic!(
                    "chromedriver did not answer on 127.0.0.1:{port} within {START_TIMEOUT:?}; \
                     its log:\n{}",
                    driver_log(profile)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("chromedriver exited at start three times; see its logs above")
}

fn driver_log(profile: &std::path::Path) -> String {
    std::fs::read_to_string(profile.join("chromedriver.log")).unwrap_or_default()
}

/// SIGKILL to chromedriver's process group (its id is the group's): chromedriver and the
/// Chromium it started. Nothing else is in that group.
fn kill_process_group(driver: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", driver.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
