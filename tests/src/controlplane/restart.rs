//! Restarting one component of the control plane (the fault tests kill kube-apiserver and
//! etcd and start them again).

use super::ControlPlane;
use anyhow::Context as _;
use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A component as it was started, to start it again.
pub(super) struct Restarted {
    pub(super) name: String,
    pub(super) program: std::ffi::OsString,
    pub(super) args: Vec<std::ffi::OsString>,
    /// The process started by [`ControlPlane::restart`], if any.
    pub(super) process: Option<Child>,
}

impl ControlPlane {
    /// The process id of the component `name` (`kube-apiserver`, `etcd`, ...), restarted or not.
    #[must_use]
    pub fn pid(&self, name: &str) -> Option<u32> {
        let restarted = self.started.lock().ok().and_then(|started| {
            started
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.process.as_ref().map(Child::id))
        });
        restarted.or_else(|| {
            self.children
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.id())
        })
    }

    /// Kills the component `name` (`kube-apiserver`, `etcd`, ...) with SIGKILL and starts it
    /// again as it was started, its log appended to; returns once it is healthy again, with how
    /// long it was gone.
    ///
    /// # Errors
    /// When it does not come back within 90 s.
    pub fn restart(&self, name: &str) -> anyhow::Result<Duration> {
        let down = Instant::now();
        let mut started = self
            .started
            .lock()
            .map_err(|_| anyhow::anyhow!("a restart panicked"))?;
        let component = started
            .iter_mut()
            .find(|c| c.name == name)
            .with_context(|| format!("no component {name}"))?;
        let pid = match component.process.as_mut() {
            Some(process) => process.id(),
            None => self
                .children
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, c)| c.id())
                .context("its process")?,
        };
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
        if let Some(mut old) = component.process.take() {
            let _ = old.wait();
        }
        // The first process is reaped by Drop; wait here until its port is free.
        std::thread::sleep(Duration::from_millis(500));
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join(format!("{name}.log")))?;
        let child = Command::new(&component.program)
            .args(&component.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut pids = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("pids"))?;
        writeln!(pids, "{}", child.id())?;
        component.process = Some(child);
        drop(started);
        let deadline = Instant::now() + Duration::from_secs(90);
        while !self.kubectl_ok(&["get", "--raw", "/readyz"]) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the API is not ready 90 s after restarting {name}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(down.elapsed())
    }
}
