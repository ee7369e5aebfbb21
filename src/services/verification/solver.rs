//! The cvc5 solver: finding it, checking its version, and running it as cedar-policy-symcc
//! expects (an interactive SMT-LIB session on stdin/stdout).
//!
//! Which command (`verification.cvc5`, also set by `ACGS_CVC5`):
//!
//! * empty (the default): `cvc5` on `PATH`. None there, or one older than [`MIN_VERSION`]: no
//!   solver, and every check falls back to bounded enumeration (never `proved`); start-up logs why.
//! * a path: that command. It must exist and report version [`MIN_VERSION`] or newer, or start-up
//!   stops with one line naming the key: an operator who named a solver wants proofs, not a quiet
//!   fallback.
//! * `none`: no solver, on purpose (bounded enumeration only).
//!
//! [`Cvc5Process`] is our own implementation of symcc's `Solver` trait rather than symcc's
//! `LocalSolver`, for three reasons: the process runs in its own process group and the whole
//! group is killed when the session is dropped (a time-out drops it), so no solver outlives its
//! check; stderr is not piped (nobody would read it, and a full pipe would block the solver); and
//! `--tlimit-per` makes the solver itself answer `unknown` at the check's time-out.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cedar_policy_symcc::solver::{Decision, DecisionWithModel, Solver, SolverError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// The oldest cvc5 accepted (cedar-policy-symcc 0.8 is documented against 1.3).
pub const MIN_VERSION: (u32, u32) = (1, 3);

/// How long `cvc5 --version` may take (the Python adapter imports the library first).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// A cvc5 command that answered `--version` with an acceptable version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cvc5 {
    pub path: PathBuf,
    /// `1.4.2`
    pub version: String,
}

/// What the service proves with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SolverChoice {
    Cvc5(Cvc5),
    /// No solver: checks enumerate (`bounded`). The reason is logged at start and served in
    /// every bounded result.
    Missing {
        reason: String,
    },
}

/// Why a configured solver cannot be used: start-up stops.
#[derive(Debug, thiserror::Error)]
#[error("verification.cvc5 (ACGS_CVC5) = {path:?}: {reason}")]
pub struct SolverSetupError {
    pub path: String,
    pub reason: String,
}

/// Finds the solver as the module documentation describes.
pub async fn locate(setting: &str) -> Result<SolverChoice, SolverSetupError> {
    let setting = setting.trim();
    if setting.eq_ignore_ascii_case("none") {
        return Ok(SolverChoice::Missing { reason: "no solver: verification.cvc5 (ACGS_CVC5) is \"none\"".into() });
    }
    if setting.is_empty() {
        let Some(path) = find_on_path("cvc5") else {
            return Ok(SolverChoice::Missing {
                reason: "no solver: no cvc5 on PATH and verification.cvc5 (ACGS_CVC5) is not set".into(),
            });
        };
        return Ok(match probe(&path).await {
            Ok(cvc5) => SolverChoice::Cvc5(cvc5),
            Err(reason) => SolverChoice::Missing { reason: format!("no solver: {} {reason}", path.display()) },
        });
    }
    let fail = |reason: String| SolverSetupError { path: setting.to_string(), reason };
    let path = PathBuf::from(setting);
    if !path.is_file() {
        return Err(fail("no such file".into()));
    }
    probe(&path).await.map(SolverChoice::Cvc5).map_err(fail)
}

/// `name` in a directory of `PATH`, if it is an executable file there.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Runs `path --version` and checks the version it names.
async fn probe(path: &Path) -> Result<Cvc5, String> {
    let mut command = Command::new(path);
    command.arg("--version").stdin(Stdio::null()).stderr(Stdio::null()).kill_on_drop(true);
    let output = match tokio::time::timeout(PROBE_TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => return Err(format!("cannot run it: {e}")),
        Err(_) => return Err(format!("`--version` did not answer within {} s", PROBE_TIMEOUT.as_secs())),
    };
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!("`--version` failed ({})", output.status));
    }
    let Some((version, numbers)) = parse_version(&text) else {
        return Err(format!("`--version` does not name a cvc5 version: {:?}", text.lines().next().unwrap_or("")));
    };
    if numbers < MIN_VERSION {
        return Err(format!(
            "is cvc5 {version}; {}.{} or newer is needed (scripts/test.sh installs one)",
            MIN_VERSION.0, MIN_VERSION.1
        ));
    }
    Ok(Cvc5 { path: path.to_path_buf(), version })
}

/// `This is cvc5 version 1.4.2 [git …]` → ("1.4.2", (1, 4)).
fn parse_version(text: &str) -> Option<(String, (u32, u32))> {
    let line = text.lines().find(|l| l.contains("cvc5 version"))?;
    let rest = line.split("cvc5 version").nth(1)?.trim_start();
    let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((version.trim_end_matches('.').to_string(), (major, minor)))
}

/// One running cvc5 session, used for one check (symcc resets it between queries).
pub struct Cvc5Process {
    child: Child,
    stdin: BufWriter<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Cvc5Process {
    /// Starts `cvc5 --lang smt --tlimit-per=<ms>` in a process group of its own.
    pub fn spawn(cvc5: &Cvc5, per_query: Duration) -> Result<Self, SolverError> {
        let ms = per_query.as_millis().max(1);
        let mut command = Command::new(&cvc5.path);
        command
            .args(["--lang", "smt"])
            .arg(format!("--tlimit-per={ms}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(SolverError::Solver("the solver's pipes are missing".into()));
        };
        Ok(Cvc5Process { child, stdin: BufWriter::new(stdin), stdout: BufReader::new(stdout) })
    }

    async fn read_line(&mut self) -> Result<String, SolverError> {
        let mut line = String::new();
        let n = self.stdout.read_line(&mut line).await?;
        if n == 0 {
            let status = self.child.try_wait()?;
            return Err(SolverError::Solver(format!("the solver stopped (exit status {status:?})")));
        }
        Ok(line)
    }

    fn error(line: &str) -> SolverError {
        match line.strip_prefix("(error \"").and_then(|s| s.strip_suffix("\")")) {
            Some(message) => SolverError::Solver(message.to_string()),
            None => SolverError::UnrecognizedSolverOutput(line.to_string()),
        }
    }
}

impl Drop for Cvc5Process {
    fn drop(&mut self) {
        // Still running (a time-out, an abandoned check): stop its whole process group. Only
        // then, so the group id cannot have been reused by someone else's processes.
        if let Ok(None) = self.child.try_wait() {
            if let Some(id) =
                self.child.id().and_then(|id| i32::try_from(id).ok()).and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process_group(id, rustix::process::Signal::KILL);
            }
            let _ = self.child.start_kill();
        }
    }
}

impl Solver for Cvc5Process {
    fn smtlib_input(&mut self) -> &mut (dyn tokio::io::AsyncWrite + Unpin + Send) {
        &mut self.stdin
    }

    async fn enable_models(&mut self) -> Result<(), SolverError> {
        self.stdin.write_all(b"(set-option :produce-models true)\n").await?;
        Ok(())
    }

    async fn check_sat(&mut self) -> Result<Decision, SolverError> {
        self.stdin.write_all(b"(check-sat)\n").await?;
        self.stdin.flush().await?;
        let line = self.read_line().await?;
        match line.trim() {
            "sat" => Ok(Decision::Sat),
            "unsat" => Ok(Decision::Unsat),
            // Some builds add the reason: `unknown (TIMEOUT)`.
            s if s.starts_with("unknown") => Ok(Decision::Unknown),
            s => Err(Self::error(s)),
        }
    }

    async fn check_sat_with_model(&mut self) -> Result<DecisionWithModel, SolverError> {
        match self.check_sat().await? {
            Decision::Unsat => Ok(DecisionWithModel::Unsat),
            Decision::Unknown => Ok(DecisionWithModel::Unknown),
            Decision::Sat => {
                self.stdin.write_all(b"(get-model)\n").await?;
                self.stdin.flush().await?;
                let first = self.read_line().await?;
                if first.trim() != "(" {
                    return Err(Self::error(first.trim()));
                }
                let mut model = first;
                loop {
                    let line = self.read_line().await?;
                    let end = line.trim() == ")";
                    model.push_str(&line);
                    if end {
                        break;
                    }
                }
                Ok(DecisionWithModel::Sat { model })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_the_banner() {
        assert_eq!(
            parse_version("This is cvc5 version 1.4.2 [git tag 1.4.2 branch HEAD]\ncompiled with GCC"),
            Some(("1.4.2".into(), (1, 4)))
        );
        assert_eq!(parse_version("This is cvc5 version 1.0.3\n").map(|v| v.1), Some((1, 0)));
        assert_eq!(parse_version("z3 version 4.8"), None);
        assert!(parse_version("This is cvc5 version 1.0.3").is_some_and(|v| v.1 < MIN_VERSION));
    }

    #[tokio::test]
    async fn none_means_no_solver_and_a_missing_path_is_an_error() {
        assert!(matches!(locate("none").await, Ok(SolverChoice::Missing { .. })));
        let err = locate("/nonexistent/cvc5").await.unwrap_err();
        assert!(err.to_string().contains("ACGS_CVC5") && err.to_string().contains("no such file"), "{err}");
    }

    #[tokio::test]
    async fn an_old_or_foreign_solver_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, banner) in [("old", "This is cvc5 version 1.0.3"), ("z3", "Z3 version 4.12.1")] {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\necho '{banner}'\n")).expect("write");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
            let err = locate(path.to_str().expect("utf-8")).await.unwrap_err();
            assert!(err.reason.contains("1.3 or newer") || err.reason.contains("does not name"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_dropped_session_kills_its_whole_process_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let path = dir.path().join("slow");
        // A "solver" that starts a grandchild and never answers.
        std::fs::write(&path, format!("#!/bin/sh\nsleep 300 &\necho $! > {}\nwait\n", pid_file.display()))
            .expect("write");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let cvc5 = Cvc5 { path, version: "test".into() };
        let mut session = Cvc5Process::spawn(&cvc5, Duration::from_millis(10)).expect("spawn");
        let answer = tokio::time::timeout(Duration::from_millis(300), session.check_sat()).await;
        assert!(answer.is_err(), "it never answers");
        let mut grandchild = String::new();
        for _ in 0..100 {
            grandchild = std::fs::read_to_string(&pid_file).unwrap_or_default();
            if !grandchild.trim().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let grandchild = grandchild.trim().to_string();
        assert!(!grandchild.is_empty());
        drop(session);
        let proc_dir = PathBuf::from(format!("/proc/{grandchild}"));
        for _ in 0..100 {
            let alive = std::fs::read_to_string(proc_dir.join("stat"))
                .is_ok_and(|stat| !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')));
            if !alive {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the solver's child {grandchild} outlived the session");
    }
}
