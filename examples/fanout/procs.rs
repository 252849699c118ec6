//! Processes: starting the programs under test so that they die with the benchmark,
//! stopping them by PID, and reading what the kernel knows about them (CPU time,
//! peak memory) from /proc.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::BenchError;

/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(20);

/// Makes this process the reaper of its orphaned descendants (an nginx master's
/// workers if the master dies first), so that [`reap_orphans`] can collect them.
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes plain integers.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Starts `command` with stdout and stderr appended to `log`. The child gets
/// `death_signal` when the benchmark dies (PR_SET_PDEATHSIG), so an interrupted
/// benchmark leaves nothing running. Must be called from the main thread: the
/// signal fires when the thread that forked exits.
pub fn spawn(
    mut command: Command,
    log: &Path,
    death_signal: libc::c_int,
) -> Result<Child, BenchError> {
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| BenchError::io(log, e))?;
    let err = out.try_clone().map_err(|e| BenchError::io(log, e))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    // SAFETY: the closure only calls prctl(2), which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .spawn()
        .map_err(|source| BenchError::Spawn { program, source })
}

/// Sends `signal` to one process, by PID.
pub fn signal(pid: u32, signal: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, signal);
        }
    }
}

/// Stops a child: `first` (SIGTERM, SIGINT...), then SIGKILL after `grace`.
/// Returns whether it exited on its own within `grace`.
pub fn stop(child: &mut Child, first: libc::c_int, grace: Duration) -> bool {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return true;
    }
    signal(child.id(), first);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

/// Kills and reaps `pids` (workers left behind by a master that is gone).
pub fn kill_and_reap(pids: &[u32]) {
    for &pid in pids {
        if alive(pid) {
            signal(pid, libc::SIGKILL);
        }
    }
    for &pid in pids {
        if let Ok(raw) = libc::pid_t::try_from(pid) {
            let mut status = 0;
            // SAFETY: waitpid(2) writes only to `status`. Not our child: ECHILD.
            unsafe {
                libc::waitpid(raw, &mut status, 0);
            }
        }
    }
}

/// Alive and not a zombie.
pub fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|f| f.state != 'Z' && f.state != 'X')
}

/// The PIDs whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(pid).is_some_and(|f| f.parent == parent))
        .collect();
    pids.sort_unstable();
    pids
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp, so that no
/// probe connection disturbs the server or the capture).
pub fn listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3 && fields[1] == local && fields[3] == "0A"
        })
}

/// Waits until `port` listens, failing early if `child` exits.
pub fn wait_listening(
    child: &mut Child,
    port: u16,
    what: &str,
    timeout: Duration,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::Setup(format!(
                "{what} exited at start ({status})"
            )));
        }
        if listening(port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(BenchError::Setup(format!(
                "{what} did not listen on 127.0.0.1:{port} within {timeout:?}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// `count` distinct free ports on 127.0.0.1, drawn at random below the kernel's
/// ephemeral range, so that no outgoing connection is handed one of them between
/// this check and the server's bind.
pub fn pick_ports(count: usize) -> Result<Vec<u16>, BenchError> {
    let ephemeral_low: u16 = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    if ephemeral_low <= LOW + 1_000 {
        return Err(BenchError::Setup(format!(
            "the ephemeral port range starts at {ephemeral_low}: no room for fixed ports"
        )));
    }
    let span = u32::from(ephemeral_low - LOW);
    let mut ports = Vec::new();
    let mut tries = 0;
    while ports.len() < count {
        tries += 1;
        if tries > 1000 {
            return Err(BenchError::Setup("no free port on 127.0.0.1".into()));
        }
        let port = LOW + (rand::random::<u32>() % span) as u16;
        if !ports.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    Ok(ports)
}

struct StatFields {
    state: char,
    parent: u32,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
    /// stime + cstime (in the kernel on the process's behalf), in clock ticks.
    system_ticks: u64,
}

/// /proc/PID/stat after the command name (which may hold spaces and parentheses).
fn stat_fields(pid: u32) -> Option<StatFields> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    // Field numbers of proc(5) minus 3: state is field 3, utime 14 ... cstime 17.
    let number = |i: usize| fields.get(i)?.parse::<u64>().ok();
    Some(StatFields {
        state: fields.first()?.chars().next()?,
        parent: number(1)? as u32,
        ticks: number(11)? + number(12)? + number(13)? + number(14)?,
        system_ticks: number(12)? + number(14)?,
    })
}

/// CPU time of a whole process (every thread, living or exited) in nanoseconds,
/// from its CPU-time clock: the kernel's exact runtime, where /proc/PID/stat only
/// has 10 ms ticks (too coarse for a relay that uses 50 ms in 30 s).
fn cpu_clock_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: clock_getcpuclockid writes one clockid_t; clock_gettime one timespec.
    unsafe {
        if libc::clock_getcpuclockid(pid, &mut clock) != 0 {
            return None;
        }
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if libc::clock_gettime(clock, &mut ts) != 0 {
            return None;
        }
        Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
}

/// A `kB` field of /proc/PID/status (VmHWM, VmRSS).
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

/// Proportional set size (shared pages divided among their users) in KiB.
fn pss_kib(pid: u32) -> Option<u64> {
    let rollup = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    rollup
        .lines()
        .find_map(|line| line.strip_prefix("Pss:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
}

/// What the kernel says about a group of processes (a relay's master and
/// workers, the sinks...) at one instant, summed over the group.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct GroupSample {
    /// CPU time from the processes' CPU-time clocks, ns.
    pub cpu_ns: u64,
    /// utime + stime + cutime + cstime from /proc/PID/stat, in ms (10 ms steps):
    /// a cross-check of `cpu_ns` that also counts reaped children.
    pub stat_cpu_ms: u64,
    /// The kernel's part of `stat_cpu_ms` (stime + cstime), in ms: system calls, and
    /// on loopback the receivers' TCP processing that a send runs in softirq.
    pub stat_system_ms: u64,
    /// Sum of VmHWM (peak resident set) in KiB.
    pub peak_rss_kib: u64,
    /// Sum of VmRSS in KiB.
    pub rss_kib: u64,
    /// Sum of Pss in KiB (shared pages counted once across the group).
    pub pss_kib: u64,
    /// Processes that could be read.
    pub processes: usize,
}

/// Samples `pids` (gone ones are skipped).
pub fn sample_group(pids: &[u32]) -> GroupSample {
    let tick_ms = 1000 / clock_ticks_per_sec();
    let mut sample = GroupSample::default();
    for &pid in pids {
        let (Some(cpu), Some(stat)) = (cpu_clock_ns(pid), stat_fields(pid)) else {
            continue;
        };
        sample.processes += 1;
        sample.cpu_ns += cpu;
        sample.stat_cpu_ms += stat.ticks * tick_ms;
        sample.stat_system_ms += stat.system_ticks * tick_ms;
        sample.peak_rss_kib += status_kib(pid, "VmHWM").unwrap_or(0);
        sample.rss_kib += status_kib(pid, "VmRSS").unwrap_or(0);
        sample.pss_kib += pss_kib(pid).unwrap_or(0);
    }
    sample
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Machine-wide CPU counters from the first line of /proc/stat, in ms.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct MachineSample {
    /// Time any CPU spent busy (everything but idle and iowait), summed over CPUs.
    pub busy_ms: u64,
    /// Busy + idle + iowait, summed over CPUs.
    pub total_ms: u64,
}

/// Reads /proc/stat.
pub fn sample_machine() -> MachineSample {
    let tick_ms = 1000 / clock_ticks_per_sec();
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().next() else {
        return MachineSample::default();
    };
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let field = |i: usize| values.get(i).copied().unwrap_or(0);
    let idle = field(3) + field(4);
    let busy = field(0) + field(1) + field(2) + field(5) + field(6) + field(7);
    MachineSample {
        busy_ms: busy * tick_ms,
        total_ms: (busy + idle) * tick_ms,
    }
}

/// TCP payload bytes received so far by every established socket whose local
/// port is `port` (`tcpi_bytes_received`, via `ss -ti`), and how many sockets.
/// On the sinks' port this is what the relay delivered, counted by the kernel
/// without a capture.
pub fn tcp_bytes_received(port: u16) -> Result<(u64, usize), BenchError> {
    let filter = format!("( sport = :{port} )");
    let output = Command::new("ss")
        .args(["-tinH", "state", "established", &filter])
        .output()
        .map_err(|source| BenchError::Spawn {
            program: "ss".into(),
            source,
        })?;
    if !output.status.success() {
        return Err(BenchError::Setup(format!(
            "ss failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut bytes = 0;
    let mut sockets = 0;
    for token in text.split_whitespace() {
        if let Some(value) = token.strip_prefix("bytes_received:") {
            bytes += value.parse::<u64>().unwrap_or(0);
            sockets += 1;
        }
    }
    Ok((bytes, sockets))
}

/// Bytes available to this user on the file system holding `path` (0 when unknown).
pub fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return 0;
    };
    // SAFETY: statvfs fills the zeroed struct; c_path is a valid C string.
    unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(c_path.as_ptr(), &mut stat) != 0 {
            return 0;
        }
        stat.f_bavail as u64 * stat.f_frsize as u64
    }
}

/// The kernel's softirq threads (`ksoftirqd/<cpu>`): loopback TCP work that does not
/// run in the sending process's context lands here, not in any program's CPU time.
pub fn softirq_threads() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("ksoftirqd/"))
        })
        .collect()
}
