//! The structural check of an attestation policy text, run before anything is sent to MAA (pure).
//!
//! It catches the typos that would otherwise travel to Azure and come back as a bare HTTP 400:
//! a missing or malformed `version=1.x;` line, an unknown or repeated section name, a section
//! without its `{ ... };`, unbalanced braces, brackets or parentheses, a rule without its
//! terminating `;`, an unterminated string or comment. Every problem names its line (1-based;
//! `\r\n`, `\n` and a lone `\r` each end a line).
//!
//! It deliberately does not judge what MAA may accept or refuse on semantic grounds (section order,
//! `configurationrules` in version 1.0, claim names, functions): those are MAA's to decide, and a
//! refusal ends in `PolicyInSync=False / PolicyRejected` with MAA's message.

/// The policy versions MAA documents (policy-version-1-0, -1-1, -1-2).
pub const VERSIONS: &[&str] = &["1.0", "1.1", "1.2"];

/// The section names of the policy language.
pub const SECTIONS: &[&str] = &["configurationrules", "authorizationrules", "issuancerules"];

/// Sections every policy must have.
const REQUIRED: &[&str] = &["authorizationrules", "issuancerules"];

/// What is wrong with a policy text, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    /// Nothing but whitespace and comments.
    #[error("the policy is empty")]
    Empty,
    /// The text does not start with `version=...;`.
    #[error("line {line}: the policy must start with a version statement such as 'version=1.0;'")]
    MissingVersion {
        /// Where the first statement is.
        line: usize,
    },
    /// The version is not one MAA documents.
    #[error("line {line}: unsupported policy version '{found}' (expected 1.0, 1.1 or 1.2)")]
    UnsupportedVersion {
        /// Where.
        line: usize,
        /// The version written.
        found: String,
    },
    /// A statement or section is not followed by `;`.
    #[error("line {line}: expected ';' after {after}")]
    MissingSemicolon {
        /// Where the statement or section ends.
        line: usize,
        /// What should have been terminated.
        after: String,
    },
    /// A word where a section name is expected that is not one.
    #[error(
        "line {line}: unknown section '{found}' (expected configurationrules, authorizationrules or issuancerules)"
    )]
    UnknownSection {
        /// Where.
        line: usize,
        /// The word written.
        found: String,
    },
    /// Punctuation where a section name is expected.
    #[error(
        "line {line}: unexpected '{found}' where a section such as 'issuancerules {{ ... }};' was expected"
    )]
    Unexpected {
        /// Where.
        line: usize,
        /// The character.
        found: char,
    },
    /// A section appears twice.
    #[error("line {line}: section '{name}' appears twice")]
    DuplicateSection {
        /// Where the second one starts.
        line: usize,
        /// The section.
        name: String,
    },
    /// A section name without its `{`.
    #[error("line {line}: expected '{{' after '{name}'")]
    MissingBody {
        /// Where the section name is.
        line: usize,
        /// The section.
        name: String,
    },
    /// A required section is absent.
    #[error("line {line}: the policy ends without an '{name}' section")]
    MissingSection {
        /// The last line of the policy.
        line: usize,
        /// The section.
        name: &'static str,
    },
    /// A closing bracket of the wrong kind.
    #[error("line {line}: '{found}' closes the '{open}' opened on line {open_line}")]
    Mismatched {
        /// Where the closing bracket is.
        line: usize,
        /// The closing bracket.
        found: char,
        /// The bracket it meets.
        open: char,
        /// Where that one was opened.
        open_line: usize,
    },
    /// A closing bracket with nothing open.
    #[error("line {line}: '{found}' has no matching opening bracket")]
    UnmatchedClose {
        /// Where.
        line: usize,
        /// The closing bracket.
        found: char,
    },
    /// An opening bracket never closed.
    #[error("line {line}: '{open}' is never closed")]
    Unclosed {
        /// Where it was opened.
        line: usize,
        /// The bracket.
        open: char,
    },
    /// A string literal never closed.
    #[error("line {line}: the string literal starting here is never closed")]
    UnterminatedString {
        /// Where it starts.
        line: usize,
    },
    /// A `/* */` comment never closed.
    #[error("line {line}: the comment starting here is never closed")]
    UnterminatedComment {
        /// Where it starts.
        line: usize,
    },
    /// A rule inside a section without its terminating `;`.
    #[error("line {line}: the rule starting here is not terminated by ';'")]
    UnterminatedRule {
        /// Where the rule starts.
        line: usize,
    },
}

impl PolicyProblem {
    /// The line the problem is on (none for an empty policy).
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Empty => None,
            Self::MissingVersion { line }
            | Self::UnsupportedVersion { line, .. }
            | Self::MissingSemicolon { line, .. }
            | Self::UnknownSection { line, .. }
            | Self::Unexpected { line, .. }
            | Self::DuplicateSection { line, .. }
            | Self::MissingBody { line, .. }
            | Self::MissingSection { line, .. }
            | Self::Mismatched { line, .. }
            | Self::UnmatchedClose { line, .. }
            | Self::Unclosed { line, .. }
            | Self::UnterminatedString { line }
            | Self::UnterminatedComment { line }
            | Self::UnterminatedRule { line } => Some(*line),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// Letters, digits, `_` and `.` (`version`, `1.0`, `permit`, `c.value`).
    Word(String),
    /// A string literal (its content is never interpreted).
    Str,
    /// Any other character.
    Punct(char),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Token {
    kind: Kind,
    line: usize,
}

impl Token {
    fn is(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }
}

/// Splits the text into tokens, skipping whitespace and `//` / `/* */` comments.
fn lex(text: &str) -> Result<Vec<Token>, PolicyProblem> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            // A lone \r ends a line; \r\n is counted once, at the \n.
            '\r' if chars.peek() != Some(&'\n') => line += 1,
            c if c.is_whitespace() => {}
            '/' if chars.peek() == Some(&'/') => {
                while chars.peek().is_some_and(|&n| n != '\n' && n != '\r') {
                    chars.next();
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let start = line;
                chars.next();
                let mut prev = ' ';
                let mut closed = false;
                while let Some(n) = chars.next() {
                    if n == '\n' || (n == '\r' && chars.peek() != Some(&'\n')) {
                        line += 1;
                    }
                    if prev == '*' && n == '/' {
                        closed = true;
                        break;
                    }
                    prev = n;
                }
                if !closed {
                    return Err(PolicyProblem::UnterminatedComment { line: start });
                }
            }
            '"' => {
                let start = line;
                let mut closed = false;
                while let Some(n) = chars.next() {
                    match n {
                        // an escaped line end still ends a line
                        '\\' => match chars.next() {
                            Some('\n') => line += 1,
                            Some('\r') if chars.peek() != Some(&'\n') => line += 1,
                            _ => {}
                        },
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' => line += 1,
                        '\r' if chars.peek() != Some(&'\n') => line += 1,
                        _ => {}
                    }
                }
                if !closed {
                    return Err(PolicyProblem::UnterminatedString { line: start });
                }
                out.push(Token {
                    kind: Kind::Str,
                    line: start,
                });
            }
            c if is_word_char(c) => {
                let mut word = String::from(c);
                while let Some(&n) = chars.peek().filter(|&&n| is_word_char(n)) {
                    word.push(n);
                    chars.next();
                }
                out.push(Token {
                    kind: Kind::Word(word),
                    line,
                });
            }
            c => out.push(Token {
                kind: Kind::Punct(c),
                line,
            }),
        }
    }
    Ok(out)
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '.'
}

fn opener_of(close: char) -> Option<char> {
    match close {
        '}' => Some('{'),
        ']' => Some('['),
        ')' => Some('('),
        _ => None,
    }
}

/// Braces, brackets and parentheses balance, outside strings and comments.
fn check_balance(tokens: &[Token]) -> Result<(), PolicyProblem> {
    let mut stack: Vec<(char, usize)> = Vec::new();
    for t in tokens {
        let Kind::Punct(c) = t.kind else { continue };
        if matches!(c, '{' | '[' | '(') {
            stack.push((c, t.line));
        } else if let Some(want) = opener_of(c) {
            match stack.pop() {
                Some((open, _)) if open == want => {}
                Some((open, open_line)) => {
                    return Err(PolicyProblem::Mismatched {
                        line: t.line,
                        found: c,
                        open,
                        open_line,
                    });
                }
                None => {
                    return Err(PolicyProblem::UnmatchedClose {
                        line: t.line,
                        found: c,
                    });
                }
            }
        }
    }
    match stack.pop() {
        Some((open, line)) => Err(PolicyProblem::Unclosed { line, open }),
        None => Ok(()),
    }
}

/// Checks the structure of a policy text. `Ok` says nothing about whether MAA will accept its
/// rules, only that no structural typo will reach it.
pub fn check_policy(text: &str) -> Result<(), PolicyProblem> {
    let tokens = lex(text)?;
    check_balance(&tokens)?;
    let mut p = Parser {
        tokens: &tokens,
        pos: 0,
    };
    p.version()?;
    let mut seen: Vec<&'static str> = Vec::new();
    while let Some(t) = p.next() {
        let line = t.line;
        let name = match &t.kind {
            Kind::Word(w) => SECTIONS
                .iter()
                .find(|s| s.eq_ignore_ascii_case(w))
                .copied()
                .ok_or_else(|| PolicyProblem::UnknownSection {
                    line,
                    found: w.clone(),
                })?,
            Kind::Str => return Err(PolicyProblem::Unexpected { line, found: '"' }),
            Kind::Punct(c) => return Err(PolicyProblem::Unexpected { line, found: *c }),
        };
        if seen.contains(&name) {
            return Err(PolicyProblem::DuplicateSection {
                line,
                name: name.to_owned(),
            });
        }
        seen.push(name);
        if !p.peek().is_some_and(|t| t.is('{')) {
            return Err(PolicyProblem::MissingBody {
                line,
                name: name.to_owned(),
            });
        }
        p.pos += 1;
        let close_line = p.rules()?;
        if !p.peek().is_some_and(|t| t.is(';')) {
            return Err(PolicyProblem::MissingSemicolon {
                line: close_line,
                after: format!("the '{name}' section"),
            });
        }
        p.pos += 1;
    }
    let last_line = tokens.last().map_or(1, |t| t.line);
    for required in REQUIRED {
        if !seen.contains(required) {
            return Err(PolicyProblem::MissingSection {
                line: last_line,
                name: required,
            });
        }
    }
    Ok(())
}

struct Parser<'a> {
    tokens: &'a [Token],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<&'a Token> {
        let t = self.tokens.get(self.pos);
        self.pos += 1;
        t
    }

    /// `version = 1.x ;`
    fn version(&mut self) -> Result<(), PolicyProblem> {
        let first = self.next().ok_or(PolicyProblem::Empty)?;
        let missing = PolicyProblem::MissingVersion { line: first.line };
        if !matches!(&first.kind, Kind::Word(w) if w.eq_ignore_ascii_case("version")) {
            return Err(missing);
        }
        if !self.next().is_some_and(|t| t.is('=')) {
            return Err(missing);
        }
        let Some(value) = self.next() else {
            return Err(missing);
        };
        match &value.kind {
            Kind::Word(v) if VERSIONS.contains(&v.as_str()) => {}
            Kind::Word(v) => {
                return Err(PolicyProblem::UnsupportedVersion {
                    line: value.line,
                    found: v.clone(),
                });
            }
            Kind::Str | Kind::Punct(_) => return Err(missing),
        }
        if !self.peek().is_some_and(|t| t.is(';')) {
            return Err(PolicyProblem::MissingSemicolon {
                line: value.line,
                after: "the version statement".to_owned(),
            });
        }
        self.pos += 1;
        Ok(())
    }

    /// The rules of a section, after its `{`: every rule ends with `;` at the section's own depth.
    /// Returns the line of the closing `}` (balance was checked before, so it exists).
    fn rules(&mut self) -> Result<usize, PolicyProblem> {
        let mut depth = 0usize;
        let mut rule_start: Option<usize> = None;
        while let Some(t) = self.next() {
            match t.kind {
                Kind::Punct('}') if depth == 0 => {
                    return match rule_start {
                        Some(line) => Err(PolicyProblem::UnterminatedRule { line }),
                        None => Ok(t.line),
                    };
                }
                Kind::Punct(';') if depth == 0 => rule_start = None,
                _ => {
                    rule_start.get_or_insert(t.line);
                    match t.kind {
                        Kind::Punct('{' | '[' | '(') => depth += 1,
                        Kind::Punct('}' | ']' | ')') => depth = depth.saturating_sub(1),
                        _ => {}
                    }
                }
            }
        }
        // Unreachable after check_balance; reported rather than assumed.
        Err(PolicyProblem::Unclosed {
            line: self.tokens.last().map_or(1, |t| t.line),
            open: '{',
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "version=1.0;authorizationrules{=> permit();};issuancerules{};";

    /// MicrosoftDocs tpm-attestation-sample-policies.md (CONTRACTS.md §2).
    const TPM: &str = "version=1.0;\n\nauthorizationrules { \n    => permit();\n};\n\nissuancerules\n{\n[type==\"aikValidated\", value==true]&& \n[type==\"secureBootEnabled\", value==true] &&\n[type==\"bootDebuggingDisabled\", value==true] && \n[type==\"vbsEnabled\", value==true] && \n[type==\"notWinPE\", value==true] && \n[type==\"notSafeMode\", value==true] => issue(type=\"PlatformAttested\", value=true);\n};\n";

    const V12: &str = "version=1.2;\n\nconfigurationrules{\n};\n\nauthorizationrules { \n\t=> permit();\n};\n\nissuancerules{\n\nc:[type == \"aikValidated\", issuer==\"AttestationService\"] =>issue(type=\"aikValidated\", value=c.value);\n\n// SecureBoot enabled \nc:[type == \"events\", issuer==\"AttestationService\"] => add(type = \"efiConfigVariables\", value = JmesPath(c.value, \"Events[?EventTypeString == 'EV_EFI_VARIABLE_DRIVER_CONFIG' && ProcessedData.VariableGuid == '8BE4DF61-93CA-11D2-AA0D-00E098032B8C']\"));\nc:[type == \"efiConfigVariables\", issuer==\"AttestationPolicy\"]=> issue(type = \"SecureBootEnabled\", value = JsonToClaimValue(JmesPath(c.value, \"[?ProcessedData.UnicodeName == 'SecureBoot'] | length(@) == `1` && @[0].ProcessedData.VariableData == 'AQ'\")));\n![type==\"SecureBootEnabled\", issuer==\"AttestationPolicy\"] => issue(type=\"SecureBootEnabled\", value=false);\n};\n";

    fn problem(text: &str) -> PolicyProblem {
        check_policy(text).expect_err("the policy should be rejected")
    }

    #[test]
    fn accepts_the_documented_policies() {
        check_policy(MINIMAL).unwrap();
        check_policy(TPM).unwrap();
        check_policy(V12).unwrap();
        // Get_Policy.json's default policy, CRLF and all
        check_policy(
            "\r\nversion=1.0;\r\nauthorizationrules { => permit(); };\r\nissuancerules {};",
        )
        .unwrap();
        // comments anywhere, brackets inside strings and comments do not count
        check_policy(
            "// header\nversion = 1.1 ; /* { ( [ */\nauthorizationrules { => permit(); // ]\n};\nissuancerules { [type==\"}\"] => issue(type=\"x\", value=\"{\\\"\"); };",
        )
        .unwrap();
        // section order is MAA's call, not a structural problem
        check_policy("version=1.0;issuancerules{};authorizationrules{=> permit();};").unwrap();
    }

    #[test]
    fn version_line() {
        assert_eq!(problem(""), PolicyProblem::Empty);
        assert_eq!(problem("  // only a comment\n"), PolicyProblem::Empty);
        assert_eq!(
            problem("\n\nauthorizationrules{};issuancerules{};"),
            PolicyProblem::MissingVersion { line: 3 }
        );
        assert_eq!(
            problem("versoin=1.0;authorizationrules{};issuancerules{};"),
            PolicyProblem::MissingVersion { line: 1 }
        );
        assert_eq!(
            problem("version=2.0;authorizationrules{};issuancerules{};"),
            PolicyProblem::UnsupportedVersion {
                line: 1,
                found: "2.0".into()
            }
        );
        let p = problem("version=1.0\nauthorizationrules{};issuancerules{};");
        assert_eq!(
            p,
            PolicyProblem::MissingSemicolon {
                line: 1,
                after: "the version statement".into()
            }
        );
        assert_eq!(
            p.to_string(),
            "line 1: expected ';' after the version statement"
        );
    }

    #[test]
    fn sections() {
        let p = problem("version=1.0;\nauthorizationrules{=> permit();};\nissuancerule{};");
        assert_eq!(
            p,
            PolicyProblem::UnknownSection {
                line: 3,
                found: "issuancerule".into()
            }
        );
        assert!(
            p.to_string()
                .starts_with("line 3: unknown section 'issuancerule'")
        );
        assert_eq!(
            problem("version=1.0;\nauthorizationrules{};\nauthorizationrules{};issuancerules{};"),
            PolicyProblem::DuplicateSection {
                line: 3,
                name: "authorizationrules".into()
            }
        );
        assert_eq!(
            problem("version=1.0;\nauthorizationrules => permit();"),
            PolicyProblem::MissingBody {
                line: 2,
                name: "authorizationrules".into()
            }
        );
        assert_eq!(
            problem("version=1.0;\nauthorizationrules{=> permit();}\nissuancerules{};"),
            PolicyProblem::MissingSemicolon {
                line: 2,
                after: "the 'authorizationrules' section".into()
            }
        );
        assert_eq!(
            problem("version=1.0;\nauthorizationrules{=> permit();};\n"),
            PolicyProblem::MissingSection {
                line: 2,
                name: "issuancerules"
            }
        );
        assert_eq!(
            problem("version=1.0;\nauthorizationrules{=> permit();};\n;"),
            PolicyProblem::Unexpected {
                line: 3,
                found: ';'
            }
        );
        // names are matched case-insensitively, as MAA does
        check_policy("Version=1.0;AuthorizationRules{};IssuanceRules{};").unwrap();
    }

    #[test]
    fn brackets_and_literals() {
        assert_eq!(
            problem("version=1.0;\nauthorizationrules{\n=> permit();\n\nissuancerules{};"),
            PolicyProblem::Unclosed { line: 2, open: '{' }
        );
        assert_eq!(
            problem(
                "version=1.0;authorizationrules{=> permit();};\nissuancerules{\n[type==\"x\", value==true) => issue(type=\"y\", value=true);\n};"
            ),
            PolicyProblem::Mismatched {
                line: 3,
                found: ')',
                open: '[',
                open_line: 3
            }
        );
        assert_eq!(
            problem("version=1.0;authorizationrules{=> permit();}};issuancerules{};"),
            PolicyProblem::UnmatchedClose {
                line: 1,
                found: '}'
            }
        );
        assert_eq!(
            problem(
                "version=1.0;\nauthorizationrules{=> permit();};\nissuancerules{ [type==\"x\"] => issue(type=\"y, value=true); };"
            ),
            PolicyProblem::UnterminatedString { line: 3 }
        );
        assert_eq!(
            problem("version=1.0; /* open\n\nauthorizationrules{};issuancerules{};"),
            PolicyProblem::UnterminatedComment { line: 1 }
        );
    }

    #[test]
    fn every_rule_ends_with_a_semicolon() {
        let p = problem(
            "version=1.0;\nauthorizationrules { => permit(); };\nissuancerules {\n  [type==\"a\", value==true] => issue(type=\"b\", value=true);\n  [type==\"c\", value==true] => issue(type=\"d\", value=true)\n};",
        );
        assert_eq!(p, PolicyProblem::UnterminatedRule { line: 5 });
        assert_eq!(p.line(), Some(5));
        assert_eq!(
            p.to_string(),
            "line 5: the rule starting here is not terminated by ';'"
        );
        // a rule spanning lines is reported where it starts
        assert_eq!(
            problem(
                "version=1.0;authorizationrules{=> permit();};\nissuancerules{\n[type==\"a\"]\n=> issue(type=\"b\", value=true)\n};"
            ),
            PolicyProblem::UnterminatedRule { line: 3 }
        );
    }

    #[test]
    fn an_escaped_line_end_in_a_string_counts() {
        // Regression (property tests, issue 11): the line end after a backslash was skipped with it.
        for end in ["\n", "\r\n", "\r"] {
            let text = format!(
                "version=1.0;authorizationrules{{[type==\"a\\{end}b\"] => permit();}};{end}foo{{}};"
            );
            assert_eq!(
                problem(&text),
                PolicyProblem::UnknownSection {
                    line: 3,
                    found: "foo".into()
                },
                "{end:?}"
            );
        }
    }

    #[test]
    fn line_numbers_follow_every_line_ending() {
        // CRLF counts once, a lone CR counts as a line end
        assert_eq!(
            problem("version=1.0;\r\n\r\nauthorizationrules{};\rissuancerul{};"),
            PolicyProblem::UnknownSection {
                line: 4,
                found: "issuancerul".into()
            }
        );
        // lines inside comments and strings are counted
        assert_eq!(
            problem(
                "/*\n\n*/version=1.0;authorizationrules{[type==\"a\nb\"] => permit();};\nfoo{};"
            ),
            PolicyProblem::UnknownSection {
                line: 5,
                found: "foo".into()
            }
        );
    }
}
