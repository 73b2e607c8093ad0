//! The attestation policy check: never panics; every problem names a line of the text (`\r\n`, `\n` and a lone
//! `\r` each end one), and only an empty policy names none.
#![no_main]

use guest_attestation_operator::provider::policy_check::{PolicyProblem, check_policy};
use libfuzzer_sys::fuzz_target;

fn line_count(text: &str) -> usize {
    let mut chars = text.chars().peekable();
    let mut lines = 1;
    while let Some(c) = chars.next() {
        if c == '\n' || (c == '\r' && chars.peek() != Some(&'\n')) {
            lines += 1;
        }
    }
    lines
}

fuzz_target!(|text: &str| {
    if let Err(problem) = check_policy(text) {
        match problem.line() {
            Some(line) => assert!((1..=line_count(text)).contains(&line), "{problem}"),
            None => assert_eq!(problem, PolicyProblem::Empty),
        }
    }
});
