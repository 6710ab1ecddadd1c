//! The load-balancer rows (`lb_<w>_c<n>`, `lb1m_<w>_c<n>`): one kcoro HTTP backend behind
//! three TCP proxies configured alike — kcoro's own (`kcoro proxy --config FILE`),
//! HAProxy and nginx's `stream` module — each loaded by `wrk` through the proxy.
//!
//! | setting | proxy                                                       | backend and `wrk`   |
//! |---------|-------------------------------------------------------------|---------------------|
//! | `1w`    | one worker (`workers = 1`, `nbthread 1`, `worker_processes 1`), pinned to the first allowed CPU | pinned to the second |
//! | `2w`    | two workers / threads / processes, unpinned                 | unpinned            |
//!
//! The backend is the suite's kcoro server with one worker in both settings (`http`
//! for `lb`, `big` — 1 MiB per answer — for `lb1m`), started as its own process
//! ([`Server`]). Every proxy gets the same plan ([`Plan`]): one listener on a loopback
//! port (kcoro binds port 0 and says which; HAProxy and nginx get one that was free a
//! moment before), one backend, round robin, connect timeout 2 s, idle timeout 30 s, no
//! health checks, no logging, room for 4096 client connections.
//!
//! # Protocol
//! 1. Start the backend; write the proxy's configuration into a directory of its own
//!    and start the proxy in the foreground ([`Balancer::start`]).
//! 2. Wait until one `GET` through the proxy comes back whole (proxy and backend up).
//! 3. Read the proxy's CPU time — every process of it: nginx's workers are children of
//!    its master — load it, read the CPU time again.
//! 4. Stop the proxy (its whole process group), then the backend.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::balancer::Balancer;
use super::{Server, Service, Setup, load, server_command, sys, wrk};
use crate::harness::Selection;
use crate::harness::{KCORO, Measurement, NetStats};

/// The HAProxy implementation's name (Debian's `haproxy` package).
pub const HAPROXY: &str = "haproxy";

/// The nginx implementation's name (Debian's `nginx` with its `stream` module).
pub const NGINX: &str = "nginx";

/// Client connections a proxy must take: four times the largest case, so no limit binds.
const MAX_CLIENTS: usize = 4096;

/// Where Debian's `libnginx-mod-stream` puts the module when `nginx -V` names no
/// `--modules-path`.
const NGINX_MODULES: &str = "/usr/lib/nginx/modules";

/// What every proxy is told, in its own syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Worker threads (kcoro, HAProxy) or worker processes (nginx).
    pub workers: usize,
    /// The loopback port the proxy listens on.
    pub port: u16,
    /// The backend's loopback port.
    pub backend_port: u16,
}

/// `kcoro proxy --config` TOML. No `[pool.health]`, so no health checks; a short
/// `shutdown_grace`, because HAProxy and nginx stop at once on `SIGTERM` too.
pub fn kcoro_config(plan: &Plan) -> String {
    let Plan { workers, port, backend_port } = plan;
    format!(
        r#"# kcoro-bench lb row
workers = {workers}
shutdown_grace = "1s"

[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
pool = "backend"
max_connections = {MAX_CLIENTS}
idle_timeout = "30s"

[[pool]]
name = "backend"
balance = "round-robin"
backends = ["127.0.0.1:{backend_port}"]
connect_timeout = "2s"
"#
    )
}

/// `haproxy -f` configuration: TCP mode; no `log` line anywhere, so nothing is logged; no
/// `check` on the server, so no health checks.
pub fn haproxy_config(plan: &Plan) -> String {
    let Plan { workers, port, backend_port } = plan;
    format!(
        "# kcoro-bench lb row
global
    nbthread {workers}
    maxconn {MAX_CLIENTS}

defaults
    mode tcp
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend bench
    bind 127.0.0.1:{port}
    default_backend backend

backend backend
    balance roundrobin
    server b1 127.0.0.1:{backend_port}
"
    )
}

/// `nginx -c` configuration. `dir` holds the pid file and the error log (level `crit`:
/// only what stops nginx); `module` is the `stream` module to load when nginx has it as
/// a dynamic module; `root`: running as root, where nginx would otherwise switch its
/// workers to `nobody`. Each proxied connection takes two of a worker's connections, so
/// `worker_connections` is twice [`MAX_CLIENTS`]. `max_fails=0` turns off the passive
/// failure accounting (open-source nginx has no active health checks).
pub fn nginx_config(plan: &Plan, dir: &Path, module: Option<&Path>, root: bool) -> String {
    let Plan { workers, port, backend_port } = plan;
    let module = module.map_or(String::new(), |m| format!("load_module {};\n", m.display()));
    let user = if root { "user root;\n" } else { "" };
    let dir = dir.display();
    let (conns, files) = (2 * MAX_CLIENTS, 4 * MAX_CLIENTS);
    format!(
        "# kcoro-bench lb row
{module}{user}worker_processes {workers};
worker_rlimit_nofile {files};
pid {dir}/nginx.pid;
error_log {dir}/error.log crit;

events {{
    worker_connections {conns};
}}

stream {{
    access_log off;
    upstream backend {{
        server 127.0.0.1:{backend_port} max_fails=0;
    }}
    server {{
        listen 127.0.0.1:{port};
        proxy_pass backend;
        proxy_connect_timeout 2s;
        proxy_timeout 30s;
    }}
}}
"
    )
}

/// The `stream` module nginx must load (`None` when it is built in), or why there is none.
pub fn nginx_stream_module() -> Result<Option<PathBuf>, String> {
    let out = Command::new(program("nginx"))
        .arg("-V")
        .output()
        .map_err(|e| format!("cannot run nginx: {e} (apt-get install nginx)"))?;
    stream_module_from(&String::from_utf8_lossy(&out.stderr), |p| p.exists())
}

/// [`nginx_stream_module`] from `nginx -V`'s text; `exists` checks a module file.
fn stream_module_from(v: &str, exists: impl Fn(&Path) -> bool) -> Result<Option<PathBuf>, String> {
    let flags: Vec<&str> = v.split_whitespace().collect();
    if flags.contains(&"--with-stream") {
        return Ok(None);
    }
    if !flags.contains(&"--with-stream=dynamic") {
        return Err("nginx is built without the stream module".to_string());
    }
    let dir = flags.iter().find_map(|f| f.strip_prefix("--modules-path=")).unwrap_or(NGINX_MODULES);
    let module = Path::new(dir).join("ngx_stream_module.so");
    if exists(&module) {
        Ok(Some(module))
    } else {
        Err(format!("{} is missing (apt-get install libnginx-mod-stream)", module.display()))
    }
}

/// The command that starts `imp` in the foreground with its configuration in `dir`.
pub fn command(imp: &str, plan: &Plan, dir: &Path) -> Result<Command, String> {
    let write = |name: &str, text: String| -> Result<PathBuf, String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let cmd = match imp {
        KCORO => {
            let bin = kcoro_bin()?;
            if !bin.exists() {
                return Err(format!("{} is not built (see the suite's kcoro proxy note)", bin.display()));
            }
            let mut cmd = Command::new(bin);
            cmd.arg("proxy").arg("--config").arg(write("kcoro-proxy.toml", kcoro_config(plan))?);
            cmd
        }
        HAPROXY => {
            let mut cmd = Command::new(program("haproxy"));
            cmd.arg("-f").arg(write("haproxy.cfg", haproxy_config(plan))?).arg("-db");
            cmd
        }
        NGINX => {
            let module = nginx_stream_module()?;
            // SAFETY: `geteuid` only reads the caller's credentials.
            let root = unsafe { libc::geteuid() } == 0;
            let config = write("nginx.conf", nginx_config(plan, dir, module.as_deref(), root))?;
            let mut cmd = Command::new(program("nginx"));
            // `-e`: the log nginx writes before it has read `error_log`.
            cmd.arg("-p").arg(dir).arg("-c").arg(config).arg("-e").arg(dir.join("error.log"));
            cmd.args(["-g", "daemon off;"]);
            cmd
        }
        _ => return Err(format!("net: no load balancer {imp:?}")),
    };
    Ok(cmd)
}

/// `name` from the `PATH`, or from `/usr/sbin` (where Debian puts both daemons) when the
/// `PATH` lacks it.
fn program(name: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| Path::new("/usr/sbin").join(name))
}

/// `target/release/kcoro`, beside this binary's profile directory.
fn kcoro_bin() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find own binary: {e}"))?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in a target dir", exe.display()))?;
    Ok(target.join("release").join("kcoro"))
}

/// Builds `kcoro` and installs HAProxy and nginx's stream module when they are missing, for
/// the lb rows that run only (`rows`).
/// Nothing here ends the suite: each line says what the lb rows get, and a row whose
/// proxy is missing fails with the reason.
pub fn prepare(rows: &Selection) -> Vec<String> {
    let lb_row = |imp: &str| rows.any(imp, |case| Setup::parse(case).is_ok_and(|s| s.lb));
    let mut notes = Vec::new();
    if lb_row(KCORO) {
        notes.push(match build_kcoro() {
            Ok(bin) => format!("lb: kcoro proxy from {}", bin.display()),
            Err(why) => format!("lb: kcoro proxy rows will fail: {why}"),
        });
    }
    if lb_row(HAPROXY) {
        let haproxy = version(HAPROXY).or_else(|_| {
            sys::apt_install(&["haproxy"])?;
            version(HAPROXY)
        });
        notes.push(match haproxy {
            Ok(v) => format!("lb: HAProxy {v}"),
            Err(why) => format!("lb: haproxy rows will fail: {why}"),
        });
    }
    if lb_row(NGINX) {
        let nginx = version(NGINX).and_then(|v| nginx_stream_module().map(|_| v)).or_else(|_| {
            sys::apt_install(&["nginx", "libnginx-mod-stream"])?;
            let v = version(NGINX)?;
            nginx_stream_module().map(|_| v)
        });
        notes.push(match nginx {
            Ok(v) => format!("lb: nginx {v} (stream module)"),
            Err(why) => format!("lb: nginx rows will fail: {why}"),
        });
    }
    notes
}

/// `cargo build --release -p kcoro-cli --bin kcoro` into this binary's target directory.
fn build_kcoro() -> Result<PathBuf, String> {
    let bin = kcoro_bin()?;
    let target = bin.parent().and_then(Path::parent).ok_or("release dir has no parent")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build.args(["build", "--release", "-q", "-p", "kcoro-cli", "--bin", "kcoro", "--manifest-path"]);
    build.arg(root.join("Cargo.toml")).arg("--target-dir").arg(target);
    match build.output() {
        Ok(out) if out.status.success() => Ok(bin),
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let first = stderr.lines().find(|l| l.starts_with("error")).unwrap_or("").trim();
            Err(format!("building kcoro-cli failed ({}): {first}", out.status))
        }
        Err(e) => Err(format!("cannot run {cargo:?} to build kcoro-cli: {e}")),
    }
}

/// The version `haproxy -v` / `nginx -v` prints (nginx on stderr).
fn version(imp: &str) -> Result<String, String> {
    let out = Command::new(program(imp)).arg("-v").output().map_err(|e| format!("{imp} not found: {e}"))?;
    let text = [out.stdout, out.stderr].concat();
    let text = String::from_utf8_lossy(&text);
    let v = match imp {
        HAPROXY => text.split_whitespace().skip_while(|w| *w != "version").nth(1),
        _ => text.split_whitespace().find_map(|w| w.strip_prefix("nginx/")),
    };
    v.map(str::to_string).ok_or_else(|| format!("{imp} -v printed no version: {}", text.trim()))
}

/// One run of an lb case on proxy `imp`; `cpus` are the proxy's and the backend's and
/// load's CPUs in the `1w` setting.
pub fn run(
    setup: Setup,
    imp: &str,
    secs: u64,
    cpus: (Option<usize>, Option<usize>),
) -> Result<Measurement, String> {
    let (proxy_cpu, load_cpu) = cpus;
    // Step 1: the backend has one worker whatever the proxy has.
    let backend_setup = Setup { workers: 1, lb: false, ..setup };
    let backend = Server::start(server_command(KCORO, backend_setup)?, load_cpu)?;
    // kcoro binds port 0 and says where: no port picked, released and raced for.
    let port = if imp == KCORO { 0 } else { free_port()? };
    let plan = Plan { workers: setup.workers, port, backend_port: backend.port };
    // Step 2.
    let proxy = Balancer::start(imp, &plan, proxy_cpu)?;
    let plan = Plan { port: proxy.port(), ..plan };
    // Step 3.
    let cpu_before = proxy.cpu_ns()?;
    let result = if wrk::available() {
        wrk::run(false, plan.port, setup.conns, secs, load_cpu)
    } else {
        load::run(plan.port, setup.service, setup.conns, secs, load_cpu)
    };
    let cpu_after = proxy.cpu_ns();
    // Step 4.
    let stopped = proxy.stop();
    let report = backend.stop();
    let (result, cpu_used) = (result?, cpu_after?.saturating_sub(cpu_before));
    stopped?;
    report?;
    let requests = result.requests as f64;
    Ok(Measurement {
        ns_per_op: result.elapsed.as_nanos() as f64 / requests,
        bytes_per_op: (setup.service == Service::Big).then_some(super::proto::BIG_BODY_LEN as f64),
        allocs_per_op: None,
        net: Some(NetStats {
            p50_ns: result.p50_ns,
            p99_ns: result.p99_ns,
            cpu_ns_per_op: cpu_used as f64 / requests,
            // A proxy counts no requests per worker.
            max_worker_share: None,
            load: result.load,
        }),
        latency: None,
    })
}

/// A loopback port free a moment ago: bound, read, released, for HAProxy and nginx, whose
/// configurations name a port. Another process may take it before the proxy binds; the
/// proxy then fails to start and the run says so.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    Ok(listener.local_addr().map_err(|e| format!("local_addr: {e}"))?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: Plan = Plan { workers: 2, port: 41234, backend_port: 42345 };

    #[test]
    fn kcoro_config_names_ports_and_workers() {
        let c = kcoro_config(&PLAN);
        assert!(c.contains("\nworkers = 2\n"), "{c}");
        assert!(c.contains(r#"bind = "127.0.0.1:41234""#), "{c}");
        assert!(c.contains(r#"backends = ["127.0.0.1:42345"]"#), "{c}");
        assert!(c.contains(r#"idle_timeout = "30s""#) && c.contains(r#"connect_timeout = "2s""#), "{c}");
        assert!(c.contains(r#"balance = "round-robin""#) && c.contains("max_connections = 4096"), "{c}");
        assert!(!c.contains("health"), "{c}");
    }

    #[test]
    fn haproxy_config_names_ports_and_threads() {
        let c = haproxy_config(&Plan { workers: 1, ..PLAN });
        assert!(c.contains("    nbthread 1\n"), "{c}");
        assert!(c.contains("    bind 127.0.0.1:41234\n"), "{c}");
        assert!(c.contains("    server b1 127.0.0.1:42345\n"), "{c}");
        assert!(c.contains("timeout connect 2s") && c.contains("timeout client 30s"), "{c}");
        // No logging, no health checks.
        assert!(!c.contains("log") && !c.contains("check"), "{c}");
    }

    #[test]
    fn nginx_config_names_ports_processes_and_paths() {
        let dir = Path::new("/tmp/lb-test");
        let module = Path::new("/m/ngx_stream_module.so");
        let c = nginx_config(&PLAN, dir, Some(module), true);
        assert!(
            c.starts_with("# kcoro-bench lb row\nload_module /m/ngx_stream_module.so;\nuser root;\n"),
            "{c}"
        );
        assert!(c.contains("worker_processes 2;\n"), "{c}");
        assert!(
            c.contains("listen 127.0.0.1:41234;") && c.contains("server 127.0.0.1:42345 max_fails=0;"),
            "{c}"
        );
        assert!(
            c.contains("pid /tmp/lb-test/nginx.pid;") && c.contains("error_log /tmp/lb-test/error.log crit;")
        );
        assert!(c.contains("access_log off;") && c.contains("proxy_connect_timeout 2s;"), "{c}");
        let plain = nginx_config(&PLAN, dir, None, false);
        assert!(!plain.contains("load_module") && !plain.contains("user "), "{plain}");
    }

    #[test]
    fn nginx_stream_module_from_its_build_flags() {
        let debian = "nginx version: nginx/1.22.1\nconfigure arguments: --prefix=/usr/share/nginx \
                      --modules-path=/usr/lib/nginx/modules --with-stream=dynamic --with-stream_ssl_module";
        assert_eq!(
            stream_module_from(debian, |_| true),
            Ok(Some(PathBuf::from("/usr/lib/nginx/modules/ngx_stream_module.so")))
        );
        let missing = stream_module_from(debian, |_| false).unwrap_err();
        assert!(missing.contains("libnginx-mod-stream"), "{missing}");
        assert_eq!(stream_module_from("--with-stream --with-http_ssl_module", |_| false), Ok(None));
        assert!(stream_module_from("--with-stream_ssl_module", |_| true).is_err());
    }

    #[test]
    fn commands_start_in_the_foreground_with_their_config() {
        let dir = std::env::temp_dir().join(format!("kcoro-bench-lb-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cmd = command(HAPROXY, &PLAN, &dir).unwrap();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-f", &dir.join("haproxy.cfg").to_string_lossy(), "-db"]);
        assert_eq!(std::fs::read_to_string(dir.join("haproxy.cfg")).unwrap(), haproxy_config(&PLAN));
        assert!(command("envoy", &PLAN, &dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
