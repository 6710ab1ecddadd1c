//! `kcoro plugin info | call | stream`: load a plugin library and talk to it.

use std::io::{Read, Write};
use std::process::ExitCode;

use kcoro_host::{HighLevelRequest, NrStatus, Plugin};

use crate::args::{Data, PluginAction, PluginArgs};

fn payload(data: &Data) -> Result<Vec<u8>, String> {
    match data {
        Data::Text(t) => Ok(t.as_bytes().to_vec()),
        Data::File(f) => std::fs::read(f).map_err(|e| format!("--data @{f}: {e}")),
        Data::Stdin => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf).map_err(|e| format!("--data -: {e}"))?;
            Ok(buf)
        }
    }
}

pub fn run(a: &PluginArgs) -> ExitCode {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kcoro: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(a: &PluginArgs) -> Result<ExitCode, String> {
    let plugin = Plugin::load(&a.lib).map_err(|e| e.to_string())?;
    let code = match &a.action {
        PluginAction::Info => {
            info(&plugin);
            ExitCode::SUCCESS
        }
        PluginAction::Call { entry } => call(&plugin, entry, a)?,
        PluginAction::Stream { entry } => stream(&plugin, entry, a)?,
    };
    // Flush before the plugin's `shutdown` runs, so its output cannot interleave ours.
    let _ = std::io::stdout().flush();
    Ok(code)
}

fn info(p: &Plugin) {
    println!("name:     {}", p.name());
    println!("version:  {}", p.version());
    println!("abi:      {} (info {} bytes)", p.abi_version(), p.info_size());
    let mut caps = vec!["unary", "stream"];
    if p.has_stream_input() {
        caps.push("bidirectional");
    }
    if p.is_extended() {
        caps.extend(["entry-ids", "state", "owned-replies", "backpressure"]);
    }
    println!("supports: {}", caps.join(", "));
    if p.entries().is_empty() {
        println!("entries:  (not listed: a plain version-1 plugin)");
    } else {
        println!("entries:  {}", p.entries().join(", "));
    }
}

fn call(p: &Plugin, entry: &str, a: &PluginArgs) -> Result<ExitCode, String> {
    let mut req = HighLevelRequest::new(&a.method, &a.path).query(&a.query).body(payload(&a.data)?);
    req.headers.clone_from(&a.headers);
    let reply = p.call(entry, &req).timeout(a.timeout).wait().map_err(|e| e.to_string())?;
    std::io::stdout().write_all(&reply.data).map_err(|e| e.to_string())?;
    eprintln!("status: {}", reply.status);
    Ok(if reply.status == NrStatus::Ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn stream(p: &Plugin, entry: &str, a: &PluginArgs) -> Result<ExitCode, String> {
    let mut s = p.call_stream_raw(entry, &payload(&a.data)?).map_err(|e| e.to_string())?.timeout(a.timeout);
    let mut out = std::io::stdout().lock();
    let mut end = NrStatus::Invalid;
    while let Some(frame) = s.recv().map_err(|e| e.to_string())? {
        if frame.is_terminal() {
            end = frame.status;
            if frame.data.is_empty() {
                continue;
            }
        }
        out.write_all(&frame.data).and_then(|()| out.write_all(b"\n")).map_err(|e| e.to_string())?;
    }
    eprintln!("status: {end}");
    Ok(if end == NrStatus::StreamEnd { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
