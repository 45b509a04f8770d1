//! The operator's container image, built without a container engine by `hack/build-image.sh`
//! (or taken from `$ENCLAVE_IMAGE_DIR`, the OCI image layout it prints): its configuration (a
//! non-root user, the binary as entrypoint, the OCI labels), a root filesystem with no shell and
//! no executable but the operator, and the static binary running alone in that root filesystem
//! (a chroot), as root and as the image's user.
//!
//! The layout is read as a runtime reads it: index.json, the manifest tagged with the crate's
//! version, its config blob; the root filesystem is what `umoci unpack` makes of the layers.

use anyhow::{Context as _, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The tag of the image in the layout, and the version the binary prints.
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The binary, the image's entrypoint.
const BINARY: &str = "/usr/local/bin/enclave-operator";
/// The image's user and group: nonroot, as in distroless images.
const USER: &str = "65532:65532";

/// The image layout: `$ENCLAVE_IMAGE_DIR`, else what `hack/build-image.sh` builds, once for
/// every test here.
fn layout() -> Result<PathBuf> {
    static LAYOUT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    LAYOUT
        .get_or_init(|| {
            enclave_tests::controlplane::built("ENCLAVE_IMAGE_DIR", "hack/build-image.sh")
                .map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The JSON blob a descriptor points at, checked against the descriptor's media type and size.
fn blob(layout: &Path, descriptor: &Value, media_type: &str) -> Result<Value> {
    ensure!(
        descriptor["mediaType"] == media_type,
        "descriptor of a {} where a {media_type} belongs: {descriptor}",
        descriptor["mediaType"]
    );
    let digest = descriptor["digest"]
        .as_str()
        .with_context(|| format!("descriptor without a digest: {descriptor}"))?;
    let (algorithm, hex) = digest
        .split_once(':')
        .with_context(|| format!("digest without an algorithm: {digest}"))?;
    let path = layout.join("blobs").join(algorithm).join(hex);
    let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        Some(u64::try_from(bytes.len())?) == descriptor["size"].as_u64(),
        "{digest}: {} bytes, the descriptor says {}",
        bytes.len(),
        descriptor["size"]
    );
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {digest}"))
}

/// The manifest tagged with the crate's version, and its image configuration.
fn manifest_and_config(layout: &Path) -> Result<(Value, Value)> {
    let path = layout.join("index.json");
    let index: Value = serde_json::from_slice(
        &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    let tagged: Vec<&Value> = index["manifests"]
        .as_array()
        .context("index.json without manifests")?
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == VERSION)
        .collect();
    let [descriptor] = tagged.as_slice() else {
        bail!(
            "{} manifests tagged {VERSION} in {}",
            tagged.len(),
            path.display()
        );
    };
    let manifest = blob(
        layout,
        descriptor,
        "application/vnd.oci.image.manifest.v1+json",
    )?;
    let config = blob(
        layout,
        &manifest["config"],
        "application/vnd.oci.image.config.v1+json",
    )?;
    Ok((manifest, config))
}

/// A directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("enclave-image-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Whether this process runs as root (else it unpacks rootless and enters the root filesystem
/// through a user namespace).
fn is_root() -> Result<bool> {
    let status = fs::read_to_string("/proc/self/status")?;
    let uids = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .context("no Uid in /proc/self/status")?;
    Ok(uids.split_whitespace().nth(1) == Some("0"))
}

/// Runs a command, failing with its output when it fails; returns its stdout.
fn run(command: &mut Command) -> Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    ensure!(
        output.status.success(),
        "{command:?}: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?)
}

/// The image unpacked by umoci into `<scratch>/bundle`: the root filesystem in `rootfs/`, the
/// runtime configuration umoci derives from the image's in `config.json`.
fn unpack(scratch: &Scratch) -> Result<PathBuf> {
    let layout = layout()?;
    let bundle = scratch.0.join("bundle");
    let mut umoci = Command::new("umoci");
    umoci.arg("unpack");
    if !is_root()? {
        umoci.arg("--rootless");
    }
    umoci
        .arg(format!("--image={}:{VERSION}", layout.display()))
        .arg(&bundle);
    run(&mut umoci)?;
    Ok(bundle)
}

/// Every entry below `dir`, by its path relative to `root`.
fn walk(root: &Path, dir: &Path, entries: &mut Vec<(PathBuf, Metadata)>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        let metadata = fs::symlink_metadata(&path)?;
        if metadata.is_dir() {
            walk(root, &path, entries)?;
        }
        entries.push((path.strip_prefix(root)?.to_path_buf(), metadata));
    }
    Ok(())
}

/// The path of a program on this process's `PATH` (the command runs with no environment).
fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{program} not found on PATH"))
}

/// Runs `argv` with `rootfs` as its root directory, an empty environment, as root or as
/// `user` (`uid:gid`): chroot(8) as root, else unshare(1) mapping this user to root or to
/// `user` in a new user namespace.
fn run_in(rootfs: &Path, user: Option<&str>, argv: &[&str]) -> Result<String> {
    let mut command;
    if is_root()? {
        command = Command::new(which("chroot")?);
        if let Some(user) = user {
            command.arg(format!("--userspec={user}"));
        }
        command.arg(rootfs);
    } else {
        command = Command::new(which("unshare")?);
        match user {
            Some(user) => {
                let (uid, gid) = user
                    .split_once(':')
                    .with_context(|| format!("user {user} is not uid:gid"))?;
                command.args(["--map-user", uid, "--map-group", gid]);
            }
            None => {
                command.arg("--map-root-user");
            }
        }
        command.arg(format!("--root={}", rootfs.display()));
    }
    command.args(argv).env_clear();
    run(&mut command)
}

#[test]
fn config_runs_the_binary_as_nonroot() -> Result<()> {
    let layout = layout()?;
    let (manifest, config) = manifest_and_config(&layout)?;

    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    ensure!(
        config["os"] == "linux" && config["architecture"] == arch,
        "image for {}/{}, not linux/{arch}",
        config["os"],
        config["architecture"]
    );
    let layers = manifest["layers"].as_array().context("no layers")?;
    ensure!(
        layers.len() == 1
            && layers[0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip",
        "one gzipped layer expected: {}",
        manifest["layers"]
    );

    let run_config = &config["config"];
    ensure!(
        run_config["User"] == USER,
        "user {}, not {USER}",
        run_config["User"]
    );
    // Exec form: the binary itself, no shell wrapping it.
    ensure!(
        run_config["Entrypoint"] == json!([BINARY]),
        "entrypoint {}, not [{BINARY}]",
        run_config["Entrypoint"]
    );
    ensure!(
        run_config["Cmd"] == json!(["run"]),
        "cmd {}, not [run]",
        run_config["Cmd"]
    );
    ensure!(
        run_config["WorkingDir"] == "/",
        "working dir {}",
        run_config["WorkingDir"]
    );
    let ports: BTreeSet<&str> = run_config["ExposedPorts"]
        .as_object()
        .context("no exposed ports")?
        .keys()
        .map(String::as_str)
        .collect();
    ensure!(
        ports == BTreeSet::from(["8080/tcp", "9443/tcp"]),
        "exposed ports {ports:?}, not 8080/tcp (admin) and 9443/tcp (guard)"
    );

    let labels = &run_config["Labels"];
    for (key, expected) in [
        ("title", "enclave-operator"),
        ("version", VERSION),
        ("licenses", env!("CARGO_PKG_LICENSE")),
        ("source", "https://github.com/enclave-dev/enclave"),
    ] {
        let key = format!("org.opencontainers.image.{key}");
        ensure!(
            labels[&key] == expected,
            "label {key}: {}, not {expected}",
            labels[&key]
        );
        // The manifest carries the same, for registries that show annotations.
        ensure!(
            manifest["annotations"][&key] == expected,
            "manifest annotation {key}: {}, not {expected}",
            manifest["annotations"][&key]
        );
    }
    let description = labels["org.opencontainers.image.description"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        !description.is_empty(),
        "no org.opencontainers.image.description label"
    );
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .unwrap_or_default();
    ensure!(
        revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "org.opencontainers.image.revision {revision:?} is not a commit"
    );
    Ok(())
}

#[test]
fn root_filesystem_holds_the_binary_alone() -> Result<()> {
    let scratch = Scratch::new("rootfs")?;
    let bundle = unpack(&scratch)?;
    let rootfs = bundle.join("rootfs");

    // No shell, where a shell would be.
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/sh"] {
        ensure!(
            fs::symlink_metadata(rootfs.join(shell)).is_err(),
            "/{shell} in the image"
        );
    }
    // Nor anywhere else: the only executable is the operator, and nothing links elsewhere.
    let mut entries = Vec::new();
    walk(&rootfs, &rootfs, &mut entries)?;
    let mut executables = BTreeSet::new();
    for (path, metadata) in &entries {
        ensure!(
            !metadata.is_symlink(),
            "symbolic link /{} in the image",
            path.display()
        );
        if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 {
            executables.insert(Path::new("/").join(path));
        }
    }
    ensure!(
        executables == BTreeSet::from([PathBuf::from(BINARY)]),
        "executables in the image: {executables:?}, not {BINARY} alone"
    );
    let files: BTreeSet<PathBuf> = entries
        .iter()
        .filter(|(_, metadata)| !metadata.is_dir())
        .map(|(path, _)| Path::new("/").join(path))
        .collect();
    ensure!(
        files == BTreeSet::from([BINARY, "/etc/passwd", "/etc/group"].map(PathBuf::from)),
        "files in the image: {files:?}"
    );

    let binary = fs::symlink_metadata(rootfs.join(BINARY.trim_start_matches('/')))?;
    ensure!(
        binary.permissions().mode() & 0o7777 == 0o755,
        "{BINARY} has mode {:o}, not 755",
        binary.permissions().mode()
    );
    if is_root()? {
        ensure!(
            binary.uid() == 0 && binary.gid() == 0,
            "{BINARY} owned by {}:{}, not root (the user could rewrite it)",
            binary.uid(),
            binary.gid()
        );
    }
    let home = fs::symlink_metadata(rootfs.join("home/nonroot"))?;
    ensure!(
        home.is_dir() && (!is_root()? || home.uid() == 65532 && home.gid() == 65532),
        "/home/nonroot: a directory owned by {}:{}, not nonroot's home",
        home.uid(),
        home.gid()
    );
    let tmp = fs::symlink_metadata(rootfs.join("tmp"))?;
    ensure!(
        tmp.is_dir() && tmp.permissions().mode() & 0o7777 == 0o1777,
        "/tmp has mode {:o}, not 1777",
        tmp.permissions().mode()
    );
    let passwd = fs::read_to_string(rootfs.join("etc/passwd"))?;
    ensure!(
        passwd
            .lines()
            .any(|line| line.starts_with("nonroot:x:65532:65532:")),
        "no nonroot 65532 in /etc/passwd:\n{passwd}"
    );
    let group = fs::read_to_string(rootfs.join("etc/group"))?;
    ensure!(
        group
            .lines()
            .any(|line| line.starts_with("nonroot:x:65532:")),
        "no nonroot 65532 in /etc/group:\n{group}"
    );

    // What a runtime makes of the image's configuration (umoci writes the runtime spec).
    let path = bundle.join("config.json");
    let runtime: Value = serde_json::from_slice(&fs::read(&path)?)?;
    let process = &runtime["process"];
    ensure!(
        process["user"]["uid"] == 65532 && process["user"]["gid"] == 65532,
        "the runtime would run as {}",
        process["user"]
    );
    ensure!(
        process["args"] == json!([BINARY, "run"]),
        "the runtime would run {}",
        process["args"]
    );
    Ok(())
}

#[test]
fn binary_runs_alone_in_the_image_as_root_and_as_its_user() -> Result<()> {
    let layout = layout()?;
    let (_, config) = manifest_and_config(&layout)?;
    let scratch = Scratch::new("run")?;
    let rootfs = unpack(&scratch)?.join("rootfs");
    let expected = format!("enclave-operator {VERSION}");

    // No loader, no libc, no environment in there: only a static binary runs.
    let out = run_in(&rootfs, None, &[BINARY, "--version"])?;
    ensure!(
        out.trim_end() == expected,
        "as root: {out:?}, not {expected:?}"
    );

    // As the image's user, through the image's entrypoint.
    let mut argv: Vec<&str> = config["config"]["Entrypoint"]
        .as_array()
        .context("the image has no entrypoint")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    argv.push("--version");
    let out = run_in(&rootfs, Some(USER), &argv)?;
    ensure!(
        out.trim_end() == expected,
        "as {USER}: {out:?}, not {expected:?}"
    );
    Ok(())
}
