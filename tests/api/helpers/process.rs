//! The service as a process of its own, for tests where the process is the point.

use super::*;

/// The service's own binary, for its command line (SPEC §2 "Command line").
pub const BINARY: &str = env!("CARGO_BIN_EXE_user-auth-service");

/// A free TCP port on the loopback interface, for a server process started with `PORT`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

/// The real binary with nothing of this process's environment but PATH, run in `dir`. The
/// management listener takes a free port unless `vars` name one: tests run side by side.
pub fn binary_command(
    dir: &std::path::Path,
    vars: &[(&str, &str)],
    args: &[&str],
) -> std::process::Command {
    let mut command = std::process::Command::new(BINARY);
    command.env_clear().current_dir(dir).args(args);
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.env("MANAGEMENT_PORT", "0");
    for (name, value) in vars {
        command.env(name, value);
    }
    command
}

/// A server process of the real binary; killed when dropped, so a failed assertion never
/// leaves one running.
pub struct ServerProcess {
    pub child: Option<std::process::Child>,
    /// `http://127.0.0.1:<port>`
    pub base: String,
}

impl ServerProcess {
    /// `serve` from the real binary in `dir` with `vars`, on 127.0.0.1 and a free port, its
    /// output discarded; answers once it is ready.
    pub async fn serve_quietly(dir: &std::path::Path, vars: &[(&str, &str)]) -> ServerProcess {
        ServerProcess::serve(dir, vars, None).await
    }

    /// `serve_quietly`, with the output (stdout and stderr) written to `log` when given.
    pub async fn serve(
        dir: &std::path::Path,
        vars: &[(&str, &str)],
        log: Option<&std::path::Path>,
    ) -> ServerProcess {
        use std::process::Stdio;
        let port = free_port().to_string();
        let mut all = vec![("HOST", "127.0.0.1"), ("PORT", port.as_str())];
        all.extend_from_slice(vars);
        let (stdout, stderr) = match log {
            Some(path) => {
                let file = std::fs::File::create(path).expect("create the log");
                let copy = file.try_clone().expect("share the log");
                (Stdio::from(file), Stdio::from(copy))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = binary_command(dir, &all, &["serve"])
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("start the server");
        let mut server = ServerProcess {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
        };
        server.wait_ready().await;
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("a running child").id()
    }

    /// Waits for the process to exit; `None` if it still runs after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + within;
        let child = self.child.as_mut().expect("a running child");
        while std::time::Instant::now() < deadline {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits until `/readyz` answers 200, failing if the process dies first or 60 s pass.
    pub async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the server at {} stopped before it was ready: {status}",
                    self.base
                );
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server at {} was not ready within 60 s",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
