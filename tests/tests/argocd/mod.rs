//! Runs the Argo CD health check of `examples/gitops/argocd/tenant-health.lua` the way Argo CD
//! does: a fresh Lua 5.1 state (Argo CD's interpreter, gopher-lua, is Lua 5.1), the object as the
//! global `obj` (JSON `null` as `nil`, arrays as sequences), and the table `hs` the script
//! returns, read as `(hs.status, hs.message)`.

use anyhow::Context as _;
use mlua::serde::SerializeOptions;
use mlua::{Lua, LuaSerdeExt as _, Table};
use std::path::PathBuf;

/// The path of the health check script.
pub fn script_path() -> PathBuf {
    enclave_tests::controlplane::repo_root().join("examples/gitops/argocd/tenant-health.lua")
}

/// The health check script.
pub fn script() -> anyhow::Result<String> {
    let path = script_path();
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// Argo CD's health of `object` by `script`: `(status, message)`.
pub fn health(script: &str, object: &serde_json::Value) -> anyhow::Result<(String, String)> {
    let lua = Lua::new();
    let options = SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false);
    let obj = lua.to_value_with(object, options)?;
    lua.globals().set("obj", obj)?;
    let hs: Table = lua
        .load(script)
        .set_name("tenant-health.lua")
        .eval()
        .context("running tenant-health.lua")?;
    let status: String = hs.get("status").context("hs.status")?;
    let message: String = hs.get("message").context("hs.message")?;
    Ok((status, message))
}
