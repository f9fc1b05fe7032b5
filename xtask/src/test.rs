//! `cargo xtask test`: every test of the project, the one test command of the README and CI.
//!
//! Steps: Debian packages; unit tests of the whole workspace; the privileged tests of `/init`
//! (as root, in namespaces); the test image (the normal image plus the harness's test
//! overlay); the whole-system QEMU scenarios on it. A failing step does not stop the steps
//! that do not depend on it, so one run shows every failure; the summary line at the end
//! says which failed, and the exit status is non-zero if any did.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::build::{self, BuiltImage};
use crate::util::TestCounts;
use crate::{deps, util};

/// Where the test image, its overlay and the console logs go (relative to the root).
const TEST_OUT: &str = "target/pxen-test";

/// How one step ended.
enum Outcome {
    Passed,
    Failed(String),
    Skipped(&'static str),
}

struct Step {
    name: &'static str,
    outcome: Outcome,
    took: Duration,
}

/// Runs every step and prints the summary.
pub fn run(root: &Path) -> anyhow::Result<()> {
    let mut steps = Vec::new();
    let mut counts = TestCounts::default();
    let deps_ok = record(&mut steps, "deps", deps::ensure);
    record(&mut steps, "unit tests", || unit_tests(root, &mut counts));
    record(&mut steps, "privileged tests", || {
        privileged_tests(root, &mut counts)
    });
    let out = root.join(TEST_OUT);
    let mut image = None;
    if deps_ok {
        record(&mut steps, "test image", || {
            image = Some(test_image(&out)?);
            Ok(())
        });
    } else {
        skip(&mut steps, "test image", "the Debian packages are missing");
    }
    match &image {
        Some(image) => {
            record(&mut steps, "QEMU scenarios", || {
                qemu_scenarios(root, &out, image, &mut counts)
            });
        }
        None => skip(&mut steps, "QEMU scenarios", "no test image"),
    }
    print_failures(&steps);
    println!("\n{}", summary(&steps));
    // The last line, in the plain form CI reads: every test of every step.
    println!("tests: {} passed, {} failed", counts.passed, counts.failed);
    if steps
        .iter()
        .any(|step| !matches!(step.outcome, Outcome::Passed))
    {
        bail!("some tests did not pass: see above");
    }
    Ok(())
}

/// Runs one step, records its outcome and duration, and says whether it passed.
fn record(
    steps: &mut Vec<Step>,
    name: &'static str,
    step: impl FnOnce() -> anyhow::Result<()>,
) -> bool {
    println!("\n==> xtask test: {name}");
    let started = Instant::now();
    let outcome = match step() {
        Ok(()) => Outcome::Passed,
        Err(error) => Outcome::Failed(format!("{error:#}")),
    };
    let passed = matches!(outcome, Outcome::Passed);
    steps.push(Step {
        name,
        outcome,
        took: started.elapsed(),
    });
    passed
}

fn skip(steps: &mut Vec<Step>, name: &'static str, reason: &'static str) {
    println!("\n==> xtask test: {name} skipped: {reason}");
    steps.push(Step {
        name,
        outcome: Outcome::Skipped(reason),
        took: Duration::ZERO,
    });
}

fn unit_tests(root: &Path, counts: &mut TestCounts) -> anyhow::Result<()> {
    util::run_tests(
        util::cargo()
            .current_dir(root)
            .args(["test", "--workspace"]),
        counts,
    )
}

/// The `/init` tests that need root (mounts, namespaces); they are `#[ignore]`d otherwise.
fn privileged_tests(root: &Path, counts: &mut TestCounts) -> anyhow::Result<()> {
    if !util::is_root() {
        bail!("the privileged tests need root: run `cargo xtask test` as root");
    }
    util::run_tests(
        util::cargo().current_dir(root).args([
            "test",
            "-p",
            "pxen",
            "--test",
            "*",
            "--",
            "--include-ignored",
        ]),
        counts,
    )
}

/// The normal image plus the test overlay (a root shell on the Xen console).
fn test_image(out: &Path) -> anyhow::Result<BuiltImage> {
    let overlay = out.join("overlay");
    pxen_qemu_tests::overlay::write_test_overlay(&overlay)
        .context("cannot write the test overlay")?;
    build::build(out, Some(overlay))
}

/// The harness's own test and the scenarios, one machine at a time (2 cores), output shown so
/// the boot timelines appear in the log.
fn qemu_scenarios(
    root: &Path,
    out: &Path,
    image: &BuiltImage,
    counts: &mut TestCounts,
) -> anyhow::Result<()> {
    util::run_tests(
        util::cargo()
            .current_dir(root)
            .args([
                "test",
                "-p",
                "pxen-qemu-tests",
                "--tests",
                "--",
                "--include-ignored",
                "--test-threads=1",
                "--nocapture",
            ])
            .env("PXEN_TEST_IMAGE", &image.image)
            .env("PXEN_TEST_DOM0_MEM_MIB", image.dom0_mem_mib.to_string())
            .env("PXEN_TEST_LOG_DIR", out.join("logs")),
        counts,
    )
}

/// Repeats the error of every failed step, so they are together at the end of a long log.
fn print_failures(steps: &[Step]) {
    for step in steps {
        if let Outcome::Failed(error) = &step.outcome {
            eprintln!("\nxtask test: {} failed: {error}", step.name);
        }
    }
}

/// One line: the verdict, then every step with its outcome and duration.
fn summary(steps: &[Step]) -> String {
    let passed = steps
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Passed))
        .count();
    let verdict = if passed == steps.len() {
        "PASSED"
    } else {
        "FAILED"
    };
    let parts: Vec<String> = steps
        .iter()
        .map(|step| {
            let outcome = match &step.outcome {
                Outcome::Passed => "ok".to_string(),
                Outcome::Failed(_) => "FAILED".to_string(),
                Outcome::Skipped(reason) => format!("skipped ({reason})"),
            };
            format!("{} {outcome} {:.0}s", step.name, step.took.as_secs_f64())
        })
        .collect();
    format!(
        "xtask test {verdict}: {passed}/{} steps passed: {}",
        steps.len(),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &'static str, outcome: Outcome, secs: u64) -> Step {
        Step {
            name,
            outcome,
            took: Duration::from_secs(secs),
        }
    }

    #[test]
    fn the_summary_names_every_step_and_the_verdict() {
        let steps = [
            step("unit tests", Outcome::Passed, 61),
            step("test image", Outcome::Failed("no network".into()), 5),
            step("QEMU scenarios", Outcome::Skipped("no test image"), 0),
        ];
        assert_eq!(
            summary(&steps),
            "xtask test FAILED: 1/3 steps passed: unit tests ok 61s, test image FAILED 5s, \
             QEMU scenarios skipped (no test image) 0s"
        );
    }

    #[test]
    fn all_steps_passing_is_a_pass() {
        let steps = [step("deps", Outcome::Passed, 1)];
        assert!(summary(&steps).starts_with("xtask test PASSED: 1/1"));
    }
}
