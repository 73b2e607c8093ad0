//! A structural check of MAA policy text: a `version=1.x;` line, then `configurationrules`
//! (1.1+), `authorizationrules` and `issuancerules` sections written `name { ... };`, with
//! balanced braces, brackets and parentheses. Rule bodies are not interpreted.

/// Why a policy text was rejected.
pub(crate) type PolicyError = String;

fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_string = false;
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '/' if chars.peek() == Some(&'/') => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for n in chars.by_ref() {
                    if prev == '*' && n == '/' {
                        break;
                    }
                    prev = n;
                }
                out.push(' ');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Index just past the bracket matching the opener at `open` (string-aware).
fn matching(chars: &[char], open: usize) -> Result<usize, PolicyError> {
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut i = open;
    while i < chars.len() {
        let c = chars[i];
        if in_string {
            if c == '\\' {
                i += 1;
            } else if c == '"' {
                in_string = false;
            }
        } else {
            match c {
                '"' => in_string = true,
                '{' | '[' | '(' => stack.push(c),
                '}' | ']' | ')' => {
                    let want = match c {
                        '}' => '{',
                        ']' => '[',
                        _ => '(',
                    };
                    if stack.pop() != Some(want) {
                        return Err(format!("unbalanced '{c}' at offset {i}"));
                    }
                    if stack.is_empty() {
                        return Ok(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    Err(if in_string {
        "unterminated string literal".into()
    } else {
        "unbalanced braces: missing '}'".into()
    })
}

fn skip_ws(chars: &[char], mut i: usize) -> usize {
    while i < chars.len() && chars[i].is_whitespace() {
        i += 1;
    }
    i
}

/// Checks the policy's structure.
pub(crate) fn validate(text: &str) -> Result<(), PolicyError> {
    let clean = strip_comments(text);
    let chars: Vec<char> = clean.chars().collect();
    let mut i = skip_ws(&chars, 0);
    let word: String = chars[i..]
        .iter()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if !word.eq_ignore_ascii_case("version") {
        return Err("the policy must start with a version statement, e.g. 'version=1.0;'".into());
    }
    i = skip_ws(&chars, i + word.len());
    if chars.get(i) != Some(&'=') {
        return Err("expected '=' after 'version'".into());
    }
    i = skip_ws(&chars, i + 1);
    let version: String = chars[i..]
        .iter()
        .take_while(|c| c.is_ascii_digit() || **c == '.')
        .collect();
    if !["1.0", "1.1", "1.2"].contains(&version.as_str()) {
        return Err(format!(
            "unsupported policy version '{version}' (supported: 1.0, 1.1, 1.2)"
        ));
    }
    i = skip_ws(&chars, i + version.len());
    if chars.get(i) != Some(&';') {
        return Err("expected ';' after the version statement".into());
    }
    i += 1;
    let mut seen: Vec<String> = Vec::new();
    loop {
        i = skip_ws(&chars, i);
        if i >= chars.len() {
            break;
        }
        let name: String = chars[i..]
            .iter()
            .take_while(|c| c.is_ascii_alphabetic())
            .collect();
        if name.is_empty() {
            return Err(format!("unexpected character '{}' at offset {i}", chars[i]));
        }
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "configurationrules" if version == "1.0" => {
                return Err("configurationrules is not supported in policy version 1.0".into());
            }
            "configurationrules" | "authorizationrules" | "issuancerules" => {}
            _ => return Err(format!("unknown section '{name}'")),
        }
        if seen.contains(&lower) {
            return Err(format!("duplicate section '{name}'"));
        }
        i = skip_ws(&chars, i + name.len());
        if chars.get(i) != Some(&'{') {
            return Err(format!("expected '{{' after '{name}'"));
        }
        i = skip_ws(&chars, matching(&chars, i)?);
        if chars.get(i) != Some(&';') {
            return Err(format!("expected ';' after the '{name}' section"));
        }
        i += 1;
        seen.push(lower);
    }
    let pos = |s: &str| seen.iter().position(|x| x == s);
    match (
        pos("configurationrules"),
        pos("authorizationrules"),
        pos("issuancerules"),
    ) {
        (_, None, _) => Err("the policy has no authorizationrules section".into()),
        (_, _, None) => Err("the policy has no issuancerules section".into()),
        (Some(c), Some(a), _) if c > a => {
            Err("configurationrules must come before authorizationrules".into())
        }
        (_, Some(a), Some(s)) if a > s => {
            Err("authorizationrules must come before issuancerules".into())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_policies() {
        validate("version=1.0;authorizationrules{=> permit();};issuancerules{};").expect("minimal");
        validate("\r\nversion=1.0;\r\nauthorizationrules { => permit(); };\r\nissuancerules {};")
            .expect("example");
        let tpm = "version=1.0;\n\nauthorizationrules { \n    => permit();\n};\n\nissuancerules\n{\n[type==\"aikValidated\", value==true]&& \n[type==\"secureBootEnabled\", value==true] => issue(type=\"PlatformAttested\", value=true);\n};";
        validate(tpm).expect("tpm sample");
        let v12 = "version=1.2;\n\nconfigurationrules{\n};\n\nauthorizationrules { \n\t=> permit();\n};\n\nissuancerules{\n// SecureBoot enabled \nc:[type == \"events\", issuer==\"AttestationService\"] => add(type = \"efiConfigVariables\", value = JmesPath(c.value, \"Events[?EventTypeString == 'EV_EFI_VARIABLE_DRIVER_CONFIG']\"));\n};";
        validate(v12).expect("1.2 sample");
    }

    #[test]
    fn rejects_broken_policies() {
        assert!(
            validate("authorizationrules{=> permit();};issuancerules{};").is_err(),
            "no version"
        );
        assert!(
            validate("version=2.0;authorizationrules{};issuancerules{};").is_err(),
            "bad version"
        );
        assert!(
            validate("version=1.0;authorizationrules{=> permit();};").is_err(),
            "no issuancerules"
        );
        assert!(
            validate("version=1.0;authorizationrules{=> permit();;issuancerules{};").is_err(),
            "unbalanced"
        );
        assert!(
            validate("version=1.0;authorizationrules{=> permit(};};issuancerules{};").is_err(),
            "paren"
        );
        assert!(
            validate("version=1.0;authorizationrules{};issuancerules{}").is_err(),
            "missing ;"
        );
        assert!(
            validate("version=1.0;configurationrules{};authorizationrules{};issuancerules{};")
                .is_err()
        );
        assert!(validate("version=1.0;foo{};authorizationrules{};issuancerules{};").is_err());
        assert!(
            validate("version=1.0;issuancerules{};authorizationrules{};").is_err(),
            "order"
        );
    }
}
