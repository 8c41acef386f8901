//! The agent as its own process (the real binary, killed for real), services a test turns
//! on and off, and file systems that fill up or turn read-only. Every guard cleans up in
//! `Drop`, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::receivers::free_port;

/// The iocwatch binary, running on a config and a storage directory.
pub struct AgentProcess {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl AgentProcess {
    pub fn start(config: &Path, data: &Path) -> AgentProcess {
        Self::start_with(config, data, &[])
    }

    /// Starts it with extra flags; its log goes to a file beside the config.
    pub fn start_with(config: &Path, data: &Path, extra: &[&str]) -> AgentProcess {
        static RUN: AtomicU32 = AtomicU32::new(0);
        let port = free_port();
        let dir = config.parent().unwrap_or(Path::new("."));
        let log = dir.join(format!(
            "agent-{port}-{}.log",
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let stderr = std::fs::File::create(&log).expect("log file");
        let stdout = stderr.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_iocwatch"))
            .args(["run", "-c"])
            .arg(config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--storage.path"])
            .arg(data)
            .args(extra)
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("spawn iocwatch");
        AgentProcess { child, port, log }
    }

    pub fn kill_9(mut self) {
        self.child.kill().expect("SIGKILL");
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let response = super::http_client().get(url).send().await.ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    }

    pub async fn json(&self, path: &str) -> Option<serde_json::Value> {
        let (_, body) = self.get(path).await?;
        serde_json::from_str(&body).ok()
    }

    pub async fn metrics(&self) -> Option<super::Metrics> {
        Some(super::Metrics(self.get("/metrics").await?.1))
    }

    /// Waits until the agent answers `/-/healthy`.
    pub async fn serving(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        while self.get("/-/healthy").await.is_none_or(|(s, _)| s != 200) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the agent did not start:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Scrapes until `condition` holds, or panics with the last scrape and the log.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        condition: impl Fn(&super::Metrics) -> bool,
    ) -> super::Metrics {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(m) = self.metrics().await {
                if condition(&m) {
                    return m;
                }
                if tokio::time::Instant::now() > deadline {
                    panic!(
                        "timed out waiting for {what}; last scrape:\n{}\nlog:\n{}",
                        m.0,
                        self.log()
                    );
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP service on a loopback port that the test turns on (connections accepted) and off
/// (refused): a link or server that comes and goes.
pub struct Toggle {
    pub port: u16,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Toggle {
    pub fn new() -> Toggle {
        Toggle {
            port: free_port(),
            task: None,
        }
    }

    pub async fn up(&mut self) {
        if self.task.is_some() {
            return;
        }
        // The port was just released by us or by free_port; SO_REUSEADDR lets it rebind.
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", self.port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        };
        self.task = Some(tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        }));
    }

    pub async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    pub fn is_up(&self) -> bool {
        self.task.is_some()
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A tmpfs of a few MiB mounted on a temp directory: a disk that fills up.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn new(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().to_string_lossy().into_owned();
        run(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &path],
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // What is left is smaller than a block: fill it byte by byte.
        while file.write_all(&[0]).is_ok() {}
        let _ = file.sync_all();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// An ext4 file system in an image on a loop device, mounted on a temp directory: a disk
/// that can turn read-only under a running process (`abort`) and come back (`remount`).
pub struct Ext4 {
    pub dir: tempfile::TempDir,
    image: PathBuf,
    loop_devs: std::sync::Mutex<Vec<String>>,
}

impl Ext4 {
    pub fn new() -> Ext4 {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = std::env::temp_dir().join(format!(
            "iocwatch-ext4-{}-{}.img",
            std::process::id(),
            free_port()
        ));
        run("truncate", &["-s", "64M", &image.to_string_lossy()]);
        run("mkfs.ext4", &["-q", "-F", &image.to_string_lossy()]);
        let fs = Ext4 {
            dir,
            image,
            loop_devs: std::sync::Mutex::new(Vec::new()),
        };
        fs.attach_and_mount();
        fs
    }

    /// A fresh loop device on the image, checked and mounted. Fresh, because a namespace
    /// that another test's `ip netns exec` copied while this file system was mounted keeps
    /// its aborted superblock alive on the old device; mounting that device again would
    /// hand back the same read-only superblock.
    fn attach_and_mount(&self) {
        let dev = run("losetup", &["-f", "--show", &self.image.to_string_lossy()]);
        // A loop device may keep the read-only flag of an earlier user.
        run("blockdev", &["--setrw", &dev]);
        // After an abort the superblock records an error: repair it as an operator would.
        let _ = Command::new("e2fsck")
            .args(["-f", "-y", &dev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        run(
            "mount",
            &[
                "-o",
                "errors=remount-ro",
                &dev,
                &self.dir.path().to_string_lossy(),
            ],
        );
        self.loop_devs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(dev);
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The file system aborts, as after an I/O error: from now on every write of every
    /// process fails with EROFS, even through files it has open.
    pub fn abort(&self) {
        run(
            "mount",
            &["-o", "remount,abort", &self.dir.path().to_string_lossy()],
        );
    }

    /// Unmounted and mounted again: writable again. Nothing here may have it open.
    pub fn remount(&self) {
        run("umount", &[&self.dir.path().to_string_lossy()]);
        let old = self
            .loop_devs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last()
            .cloned();
        if let Some(old) = old {
            // Detached once no namespace holds it any more.
            let _ = Command::new("losetup").args(["-d", &old]).status();
        }
        self.attach_and_mount();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let line = mounts
            .lines()
            .find(|l| l.contains(&*self.dir.path().to_string_lossy()))
            .unwrap_or("")
            .to_owned();
        assert!(
            line.contains(" rw,") && !line.contains("abort"),
            "not writable after remount: {line:?}"
        );
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
        for dev in self
            .loop_devs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = Command::new("losetup").args(["-d", dev]).status();
        }
        let _ = std::fs::remove_file(&self.image);
    }
}
