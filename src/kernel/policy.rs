//! Cedar policy sets as every service handles them: the embedded governance schema, parsing of
//! policy text with the parser's message and position, policy ids taken from `@id("…")`
//! annotations, and strict validation against a schema.
//!
//! Errors here are the caller's (they wrote the Cedar): each names where, as `line:column` in the
//! text given, so an HTTP layer can answer 4xx with it.
//!
//! Cedar's parser, validator and evaluator recurse over the expression tree, and one level of
//! parentheses costs tens of kilobytes of stack in a debug build: 50 nested parentheses overflow
//! a 2 MiB thread stack, which aborts the whole process. So texts are checked before Cedar sees
//! them: brackets may nest at most [`MAX_NESTING`] deep and one policy may hold at most
//! [`MAX_OPERATORS`] binary operators (a chain `a + b + c …` is as deep as it is long). A text
//! beyond either is refused with the position where it went too far.

use std::str::FromStr;
use std::sync::OnceLock;

use cedar_policy::{Policy, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;

/// Path of the governance schema inside `embedded/`.
pub const SCHEMA_PATH: &str = "policies/schema.cedarschema";
/// The longest policy text or schema accepted, in bytes.
pub const MAX_TEXT: usize = 8 * 1024 * 1024;

/// How deep brackets (`(`, `[`, `{`, and `<` in schemas) may nest in a policy text or schema.
pub const MAX_NESTING: usize = 32;
/// How many binary operators one policy (or schema) may hold.
pub const MAX_OPERATORS: usize = 1024;

/// One problem in a text, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    pub message: String,
    /// 1-based line and column in the text given, when the parser or validator knows them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// The policy the problem is in, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "{line}:{column}: ")?;
        }
        if let Some(policy) = &self.policy {
            write!(f, "policy {policy}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a policy text or schema was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{what} is {len} bytes; at most {MAX_TEXT} are accepted")]
    TooLarge { what: &'static str, len: usize },
    #[error("Cedar syntax: {}", join(.0))]
    Syntax(Vec<Problem>),
    #[error("schema: {}", join(.0))]
    Schema(Vec<Problem>),
    #[error("two policies have the id {0:?}")]
    DuplicateId(String),
    #[error("strict validation against the schema failed: {}", join(.0))]
    Invalid(Vec<Problem>),
    /// The text names entity types or actions the schema does not declare: it was not written
    /// for this schema at all.
    #[error("not in the schema: {}", join(.0))]
    UnknownNames(Vec<Problem>),
}

impl PolicyError {
    /// The HTTP answer when a caller's text was refused: Cedar syntax 400 (with `line:column` in
    /// the message), a text over [`MAX_TEXT`] 413, a schema that does not parse or names the
    /// schema lacks 422, strict-validation failures 422. `what` names the text (`policies`).
    pub fn to_api_error(&self, what: &str) -> crate::kernel::error::ApiError {
        use crate::kernel::error::ApiError;
        use axum::http::StatusCode;
        let message = format!("{what}: {self}");
        let (status, code) = match self {
            PolicyError::Syntax(_) => (StatusCode::BAD_REQUEST, "cedar_syntax"),
            PolicyError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            PolicyError::Schema(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_schema"),
            PolicyError::UnknownNames(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unknown_entity_type"),
            PolicyError::DuplicateId(_) | PolicyError::Invalid(_) => return ApiError::validation(message),
        };
        ApiError::new(status, code, message)
    }

    /// The problems, for a structured answer.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            PolicyError::Syntax(p)
            | PolicyError::Schema(p)
            | PolicyError::Invalid(p)
            | PolicyError::UnknownNames(p) => p.clone(),
            other => vec![Problem { message: other.to_string(), line: None, column: None, policy: None }],
        }
    }
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// 1-based (line, column) of a byte offset in `text`.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// A problem from a miette diagnostic over `text`: its message (and help), at its first label.
fn problem(d: &dyn Diagnostic, text: &str, policy: Option<String>) -> Problem {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message = format!("{message} ({help})");
    }
    let at = d.labels().and_then(|mut labels| labels.next()).map(|l| position(text, l.offset()));
    Problem { message, line: at.map(|p| p.0), column: at.map(|p| p.1), policy }
}

fn check_len(what: &'static str, text: &str) -> Result<(), PolicyError> {
    if text.len() > MAX_TEXT {
        return Err(PolicyError::TooLarge { what, len: text.len() });
    }
    Ok(())
}

/// Refuses a text whose brackets nest deeper than [`MAX_NESTING`] or one of whose statements
/// (up to a `;` outside brackets) holds more than [`MAX_OPERATORS`] binary operators, before
/// Cedar's recursive parser sees it. Strings and `//` comments are skipped. `angle` counts `<`/`>`
/// as brackets (schemas: `Set<Set<…>>`); in policies they are comparisons.
fn check_shape(text: &str, angle: bool) -> Result<(), PolicyError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut operators = 0usize;
    let mut i = 0;
    let too_far = |offset: usize, message: String| {
        let (line, column) = position(text, offset);
        Err(PolicyError::Syntax(vec![Problem { message, line: Some(line), column: Some(column), policy: None }]))
    };
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match b {
            b'"' => {
                // A string: skip to its closing quote (a backslash escapes one byte).
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if next == Some(b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' | b'[' | b'{' => depth += 1,
            b'<' if angle => depth += 1,
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'>' if angle => depth = depth.saturating_sub(1),
            b';' if depth == 0 => operators = 0,
            b'&' | b'|' | b'=' | b'!' if next == Some(b) || next == Some(b'=') => {
                operators += 1;
                i += 1;
            }
            b'+' | b'-' | b'*' | b'.' => operators += 1,
            b'<' | b'>' => operators += 1,
            _ => {}
        }
        if depth > MAX_NESTING {
            return too_far(i, format!("brackets nest more than {MAX_NESTING} deep here; simplify the expression"));
        }
        if operators > MAX_OPERATORS {
            return too_far(
                i,
                format!("more than {MAX_OPERATORS} operators in one statement; split it into several policies"),
            );
        }
        i += 1;
    }
    Ok(())
}

/// Parses a schema in Cedar's schema syntax.
pub fn parse_schema(text: &str) -> Result<Schema, PolicyError> {
    check_len("the schema", text)?;
    check_shape(text, true).map_err(|e| match e {
        PolicyError::Syntax(p) => PolicyError::Schema(p),
        other => other,
    })?;
    match Schema::from_cedarschema_str(text) {
        Ok((schema, _warnings)) => Ok(schema),
        Err(e) => Err(PolicyError::Schema(vec![problem(&e, text, None)])),
    }
}

/// The embedded governance schema's text.
pub fn governance_schema_text() -> &'static str {
    crate::embedded::EMBEDDED
        .get_file(SCHEMA_PATH)
        .and_then(|f| f.contents_utf8())
        .expect("embedded/policies/schema.cedarschema is compiled in")
}

/// The embedded governance schema, parsed once.
pub fn governance_schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        // A test parses it; a broken embedded schema is a build defect, not a runtime condition.
        parse_schema(governance_schema_text()).expect("the embedded governance schema parses")
    })
}

/// Parses policy text. A policy's id is its `@id("…")` annotation if it has one, else
/// `policy<N>` by position; two policies with one id are refused.
pub fn parse_policies(text: &str) -> Result<PolicySet, PolicyError> {
    check_len("the policy text", text)?;
    check_shape(text, false)?;
    let parsed = PolicySet::from_str(text)
        .map_err(|e| PolicyError::Syntax(e.iter().map(|d| problem(d, text, None)).collect()))?;
    let mut out = PolicySet::new();
    for policy in parsed.policies() {
        let id = policy.annotation("id").map_or_else(|| policy.id().clone(), PolicyId::new);
        let renamed = policy.new_id(id.clone());
        if out.add(renamed).is_err() {
            return Err(PolicyError::DuplicateId(id.to_string()));
        }
    }
    if let Some(template) = parsed.templates().next() {
        return Err(PolicyError::Syntax(vec![Problem {
            message: "templates (policies with ?principal or ?resource slots) are not accepted here".into(),
            line: None,
            column: None,
            policy: Some(template.id().to_string()),
        }]));
    }
    Ok(out)
}

/// Parses one policy and gives it `id`.
pub fn parse_policy(id: &str, text: &str) -> Result<Policy, PolicyError> {
    check_len("the policy", text)?;
    check_shape(text, false)?;
    Policy::parse(Some(PolicyId::new(id)), text)
        .map_err(|e| PolicyError::Syntax(e.iter().map(|d| problem(d, text, Some(id.to_string()))).collect()))
}

/// Validates `policies` (parsed from `text`) against `schema` in strict mode. Entity types or
/// actions the schema does not declare are [`PolicyError::UnknownNames`]; every other failure is
/// [`PolicyError::Invalid`].
pub fn validate(policies: &PolicySet, text: &str, schema: &Schema) -> Result<(), PolicyError> {
    use cedar_policy::ValidationError as E;
    let result = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    if result.validation_passed() {
        return Ok(());
    }
    let (mut unknown, mut invalid) = (Vec::new(), Vec::new());
    for e in result.validation_errors() {
        let p = problem(e, text, Some(e.policy_id().to_string()));
        match e {
            E::UnrecognizedEntityType(_) | E::UnrecognizedActionId(_) => unknown.push(p),
            _ => invalid.push(p),
        }
    }
    if !unknown.is_empty() {
        return Err(PolicyError::UnknownNames(unknown));
    }
    Err(PolicyError::Invalid(invalid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::constitution::Constitution;

    #[test]
    fn the_governance_schema_parses() {
        let _ = governance_schema();
    }

    #[test]
    fn every_genesis_invariant_is_strictly_valid_over_the_governance_schema() {
        let constitution = Constitution::genesis().expect("genesis");
        let mut n = 0;
        for principle in &constitution.principles {
            for invariant in &principle.invariants {
                let policy = parse_policy(&invariant.id, &invariant.policy).expect("parses");
                let mut set = PolicySet::new();
                set.add(policy).expect("add");
                validate(&set, &invariant.policy, governance_schema())
                    .unwrap_or_else(|e| panic!("invariant {}: {e}", invariant.id));
                n += 1;
            }
        }
        assert!(n >= 6, "{n} invariants");
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let text = "permit(principal, action, resource);\npermit(principal, action resource);\n";
        let err = parse_policies(text).expect_err("syntax error");
        let problems = err.problems();
        assert_eq!(problems[0].line, Some(2), "{problems:?}");
        assert!(problems[0].column.is_some());
    }

    #[test]
    fn ids_come_from_annotations_and_must_be_unique() {
        let set =
            parse_policies("@id(\"a\") permit(principal, action, resource);\nforbid(principal, action, resource);")
                .expect("parses");
        let ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
        assert!(ids.contains(&"a".to_string()), "{ids:?}");
        let dup = "@id(\"x\") permit(principal, action, resource);\n@id(\"x\") forbid(principal, action, resource);";
        assert!(matches!(parse_policies(dup), Err(PolicyError::DuplicateId(id)) if id == "x"));
    }

    #[test]
    fn deep_nesting_and_long_chains_are_refused_before_cedar_sees_them() {
        let head = "permit(principal, action, resource) when { ";
        let deep = format!("{head}{}true{} }};", "(".repeat(10_000), ")".repeat(10_000));
        let problems = parse_policies(&deep).expect_err("too deep").problems();
        assert_eq!(problems[0].line, Some(1));
        assert_eq!(problems[0].column, Some(head.len() + MAX_NESTING), "{problems:?}");
        assert!(problems[0].message.contains("nest"), "{problems:?}");
        let chain = format!("{head}1{} == 3 }};", " + 1".repeat(MAX_OPERATORS + 1));
        assert!(parse_policies(&chain).expect_err("too long").to_string().contains("operators"));
        // At the limits, and in strings and comments, nothing is refused.
        let ok = format!(
            "// (((((\n{head}{}true{} && \"((((\\\"((\" == \"x\" }};\n{head}1{} == 3 }};",
            "(".repeat(MAX_NESTING - 1),
            ")".repeat(MAX_NESTING - 1),
            " + 1".repeat(MAX_OPERATORS - 2)
        );
        parse_policies(&ok).expect("within the limits");
        let schema = format!("entity A = {{ a: {}Long{} }};", "Set<".repeat(100), ">".repeat(100));
        assert!(matches!(parse_schema(&schema), Err(PolicyError::Schema(_))));
    }

    #[test]
    fn names_the_schema_does_not_declare_are_told_apart() {
        let text = "permit(principal is Acgs::Robot, action, resource);";
        let set = parse_policies(text).expect("parses");
        let err = validate(&set, text, governance_schema()).expect_err("unknown");
        assert!(matches!(&err, PolicyError::UnknownNames(p) if p[0].column.is_some()), "{err}");
        assert!(err.to_string().contains("Acgs::Robot"), "{err}");
    }

    #[test]
    fn strict_validation_names_the_policy_and_position() {
        let text = "@id(\"bad\")\npermit(principal is Acgs::Agent, action == Acgs::Action::\"read\", resource is Acgs::Tool)\n  when { resource.colour == \"red\" };";
        let set = parse_policies(text).expect("parses");
        let err = validate(&set, text, governance_schema()).expect_err("invalid");
        let problems = err.problems();
        assert_eq!(problems[0].policy.as_deref(), Some("bad"));
        assert_eq!(problems[0].line, Some(3), "{problems:?}");
    }
}
