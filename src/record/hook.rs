//! `on_record_done`: a command run when a recording's file is complete, as
//! nginx-rtmp's `exec_record_done`, but as an argument list (no shell, so no
//! file name can inject anything).

use std::path::Path;
use std::time::Duration;

use tokio_util::task::TaskTracker;

/// How long a hook may run before it is killed: a hook that hangs must not pile
/// up one process per file.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(600);

/// The command for `file` of `app`/`name`: `template` with `{path}`,
/// `{filename}`, `{app}` and `{name}` replaced in each argument.
pub fn command_for(template: &[String], file: &Path, app: &str, name: &str) -> Vec<String> {
    let path = file.display().to_string();
    let filename = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    template
        .iter()
        .map(|arg| {
            arg.replace("{path}", &path)
                .replace("{filename}", &filename)
                .replace("{app}", app)
                .replace("{name}", name)
        })
        .collect()
}

/// Runs `command` as a task of `tracker` (so shutdown waits for it, up to
/// [`HOOK_TIMEOUT`]), logging how it ended. Its output goes to prism's stderr.
pub fn run(command: Vec<String>, tracker: &TaskTracker) {
    let Some((program, args)) = command.split_first() else {
        return;
    };
    let mut child = match tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            tracing::warn!(program = %program, "on_record_done could not start: {err}");
            return;
        }
    };
    let program = program.clone();
    tracker.spawn(async move {
        match tokio::time::timeout(HOOK_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) if status.success() => {
                tracing::debug!(program = %program, "on_record_done finished");
            }
            Ok(Ok(status)) => tracing::warn!(program = %program, %status, "on_record_done failed"),
            Ok(Err(err)) => tracing::warn!(program = %program, "on_record_done: {err}"),
            Err(_) => {
                tracing::warn!(program = %program, "on_record_done ran over {HOOK_TIMEOUT:?}: killed");
                let _ = child.kill().await;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced_in_each_argument_and_nothing_is_split() {
        let template =
            ["/bin/upload", "--file={path}", "{filename}", "{app}/{name}"].map(String::from);
        let got = command_for(&template, Path::new("/rec/live/a b-1.flv"), "live", "alice");
        assert_eq!(
            got,
            [
                "/bin/upload",
                "--file=/rec/live/a b-1.flv",
                "a b-1.flv",
                "live/alice"
            ]
        );
    }
}
