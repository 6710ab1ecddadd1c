//! `kcoro plugin info | call | stream | bidi`: load a plugin library and talk to it. With
//! `--raw` a call carries the payload alone (`call_raw`, `call_stream_raw`), which reaches
//! the entries a plugin serves only through `handle_raw`.

use std::io::{BufRead, Read, Write};
use std::process::ExitCode;

use kcoro_host::{HighLevelRequest, LoadOptions, NrStatus, Plugin};

use crate::args::{CallArgs, Data, PluginArgs, PluginCommand};

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

/// The request a call's flags describe, without its body.
fn request_head(a: &CallArgs) -> HighLevelRequest {
    let mut req = HighLevelRequest::new(&a.method, &a.path).query(&a.query);
    req.headers.clone_from(&a.headers);
    req
}

/// The request a call's flags describe.
fn request(a: &CallArgs) -> Result<HighLevelRequest, String> {
    Ok(request_head(a).body(payload(&a.data)?))
}

pub fn run(args: &PluginArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kcoro: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: &PluginArgs) -> Result<ExitCode, String> {
    let cmd = &args.command;
    let lib = match cmd {
        PluginCommand::Info { lib } => lib,
        PluginCommand::Call(a) | PluginCommand::Stream(a) | PluginCommand::Bidi(a) => &a.lib,
    };
    let plugin =
        Plugin::load_with(lib, LoadOptions::default().layout(args.abi)).map_err(|e| e.to_string())?;
    let code = match cmd {
        PluginCommand::Info { .. } => {
            info(&plugin);
            ExitCode::SUCCESS
        }
        PluginCommand::Call(a) => call(&plugin, a)?,
        PluginCommand::Stream(a) => stream(&plugin, a)?,
        PluginCommand::Bidi(a) => bidi(&plugin, a)?,
    };
    // Flush before the plugin's `shutdown` runs, so its output cannot interleave ours.
    let _ = std::io::stdout().flush();
    Ok(code)
}

fn info(p: &Plugin) {
    println!("name:     {}", p.name());
    println!("version:  {}", p.version());
    println!("abi:      {} (info {} bytes)", p.abi_version(), p.info_size());
    println!("layout:   {} ({})", p.layout(), p.layout().describe());
    println!("supports: {}", p.capabilities().names().join(", "));
    if p.entries().is_empty() {
        println!("entries:  (the plugin does not list them)");
    } else {
        println!("entries:  {}", p.entries().join(", "));
    }
}

fn call(p: &Plugin, a: &CallArgs) -> Result<ExitCode, String> {
    let entry = a.entry.as_str();
    let reply = if a.raw {
        p.call_raw(entry, &payload(&a.data)?).timeout(a.timeout).wait()
    } else {
        p.call(entry, &request(a)?).timeout(a.timeout).wait()
    }
    .map_err(|e| e.to_string())?;
    std::io::stdout().write_all(&reply.data).map_err(|e| e.to_string())?;
    eprintln!("status: {}", reply.status);
    Ok(if reply.status == NrStatus::Ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Prints each frame's bytes and a newline as it arrives; returns the terminal status.
fn print_frames(s: &mut kcoro_host::StreamCall) -> Result<NrStatus, String> {
    let mut out = std::io::stdout().lock();
    let mut end = NrStatus::Invalid;
    while let Some(frame) = s.recv().map_err(|e| e.to_string())? {
        if frame.is_terminal() {
            end = frame.status;
            if frame.data.is_empty() {
                continue;
            }
        }
        out.write_all(&frame.data)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    eprintln!("status: {end}");
    Ok(end)
}

/// Opens a stream with the call's request, or its payload alone (`--raw`).
fn open_stream(p: &Plugin, a: &CallArgs, body: Vec<u8>) -> Result<kcoro_host::StreamCall, String> {
    let entry = a.entry.as_str();
    let s = if a.raw {
        p.call_stream_raw(entry, &body)
    } else {
        let mut req = request_head(a);
        req.body = body;
        p.call_stream(entry, &req)
    };
    Ok(s.map_err(|e| e.to_string())?.timeout(a.timeout))
}

fn stream(p: &Plugin, a: &CallArgs) -> Result<ExitCode, String> {
    let mut s = open_stream(p, a, payload(&a.data)?)?;
    let end = print_frames(&mut s)?;
    Ok(if end == NrStatus::StreamEnd { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Stdin lines go to the plugin as stream data from a second thread while this one prints
/// the frames coming back; end of input closes our side.
fn bidi(p: &Plugin, a: &CallArgs) -> Result<ExitCode, String> {
    if !p.has_stream_input() {
        return Err(format!("{} does not accept stream input (no bidirectional slots)", p.name()));
    }
    if a.data == Data::Stdin {
        return Err("bidi reads stream data from stdin: --data - cannot also read it".into());
    }
    let mut s = open_stream(p, a, payload(&a.data)?)?;
    let (sid, plugin) = (s.sid(), p.clone());
    let feeder = std::thread::spawn(move || -> Result<(), String> {
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| format!("stdin: {e}"))?;
            plugin.send_stream_data(sid, line.as_bytes()).map_err(|e| e.to_string())?;
        }
        plugin.close_stream(sid).map(|_| ()).map_err(|e| e.to_string())
    });
    let end = print_frames(&mut s)?;
    if let Ok(Err(e)) = feeder.join()
        && end != NrStatus::StreamEnd
    {
        eprintln!("kcoro: {e}");
    }
    Ok(if end == NrStatus::StreamEnd { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
