//! A rule's `validate` block as ValidatingPolicy `validations` (and, for `foreach`, the
//! condition that some element is checked at all): pattern, anyPattern, deny, foreach, cel.

use super::cel_text::lit;
use super::conditions::{Scope, conditions, expression, list_expression};
use super::pattern::pattern;
use super::unsupported;
use crate::variables::has_variables;
use serde_json::{Value, json};

/// What a validate block became.
#[derive(Default)]
pub(super) struct Validations {
    pub validations: Vec<Value>,
    /// Extra `matchConditions` (a foreach with no element to check is not applied).
    pub conditions: Vec<Value>,
    pub variables: Option<Value>,
    pub audit_annotations: Option<Value>,
}

/// `message`, or `messageExpression` when the message holds `{{ }}` variables.
fn message_fields(message: &str) -> Result<(String, Option<String>), String> {
    if !has_variables(message) {
        return Ok((message.to_string(), None));
    }
    let mut parts = Vec::new();
    let mut rest = message;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest.get(start..).and_then(|r| r.find("}}")) else {
            return unsupported("a message with an unclosed `{{` is not converted");
        };
        if start > 0 {
            parts.push(lit(rest.get(..start).unwrap_or_default()));
        }
        let inner = rest.get(start + 2..start + len).unwrap_or_default();
        let op = expression(inner.trim_start_matches('-'), Scope::default())
            .map_err(|e| format!("the message: {e}"))?;
        parts.push(format!("string({})", op.cel));
        rest = rest.get(start + len + 2..).unwrap_or_default();
    }
    if !rest.is_empty() {
        parts.push(lit(rest));
    }
    let plain = crate::variables::replace_variables(message, "…");
    Ok((plain, Some(parts.join(" + "))))
}

fn entry(expression: String, message: &str) -> Result<Value, String> {
    let (message, message_expression) = message_fields(message)?;
    let mut v = json!({"expression": expression, "message": message});
    if let (Some(m), Value::Object(o)) = (message_expression, &mut v) {
        o.insert("messageExpression".into(), Value::String(m));
    }
    Ok(v)
}

/// `pattern` or `anyPattern` over the value at `root`.
fn patterns(block: &Value, root: &str) -> Result<Option<String>, String> {
    if let Some(p) = block.get("pattern") {
        return pattern(p, root, 0, 0).map(Some);
    }
    if let Some(ps) = block.get("anyPattern").and_then(Value::as_array) {
        let alts: Result<Vec<String>, String> = ps.iter().map(|p| pattern(p, root, 0, 0)).collect();
        return Ok(Some(format!("(({}))", alts?.join(") || ("))));
    }
    Ok(None)
}

fn deny(block: &Value, scope: Scope) -> Result<String, String> {
    match block.get("conditions") {
        None | Some(Value::Null) => Ok("false".into()),
        Some(c) => Ok(format!("!({})", conditions(c, scope)?)),
    }
}

/// One `foreach` entry: (every element passes, some element is checked).
fn foreach_entry(e: &Value) -> Result<(String, String), String> {
    for part in ["context", "foreach"] {
        if e.get(part).is_some_and(|v| !v.is_null()) {
            return unsupported(format!("foreach.{part} is not converted"));
        }
    }
    let list = e
        .get("list")
        .and_then(Value::as_str)
        .ok_or("a foreach entry without list")?;
    if has_variables(list) {
        return unsupported("a foreach list with variables is not converted");
    }
    let items = list_expression(list, Scope::default())?;
    let scope = Scope {
        element: Some("element"),
        lenient: false,
    };
    // A precondition that cannot be evaluated leaves the element out, as a missing value does.
    let pre = match e.get("preconditions") {
        Some(p) if !p.is_null() => conditions(
            p,
            Scope {
                lenient: true,
                ..scope
            },
        )?,
        _ => "true".into(),
    };
    let check = match e.get("elementScope").and_then(Value::as_bool) {
        _ if e.get("deny").is_some() => deny(e.get("deny").unwrap_or(&Value::Null), scope)?,
        Some(true) => patterns(e, "element")?.ok_or("a foreach entry without a check")?,
        Some(false) => patterns(e, "object")?.ok_or("a foreach entry without a check")?,
        None => {
            let on_element = patterns(e, "element")?.ok_or("a foreach entry without a check")?;
            let on_object = patterns(e, "object")?.unwrap_or_default();
            // A pattern applies to an element that is an object, else to the resource.
            format!("(type(element) == map ? {on_element} : {on_object})")
        }
    };
    let pre_clause = if pre == "true" {
        String::new()
    } else {
        format!(" && {pre}")
    };
    Ok((
        format!(
            "{items}.all(element, type(element) == null_type || !(true{pre_clause}) || {check})"
        ),
        format!("{items}.exists(element, type(element) != null_type{pre_clause})"),
    ))
}

pub(super) fn validations(validate: &Value) -> Result<Validations, String> {
    if validate.get("manifests").is_some() {
        return unsupported("validate.manifests is not converted");
    }
    let message = validate
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("validation failed");
    let mut out = Validations::default();
    if let Some(cel) = validate.get("cel") {
        return cel_block(cel);
    }
    let expression = if let Some(p) = patterns(validate, "object")? {
        p
    } else if let Some(d) = validate.get("deny") {
        deny(d, Scope::default())?
    } else if let Some(list) = validate.get("foreach").and_then(Value::as_array) {
        let mut all = Vec::new();
        let mut some = Vec::new();
        for e in list {
            let (a, s) = foreach_entry(e)?;
            all.push(a);
            some.push(s);
        }
        out.conditions.push(json!({
            "name": "foreach-applies",
            "expression": some.join(" || "),
        }));
        all.join(" && ")
    } else {
        return unsupported("the rule has no pattern, anyPattern, deny, foreach or cel");
    };
    out.validations.push(entry(expression, message)?);
    Ok(out)
}

/// `validate.cel`: already CEL; params have no ValidatingPolicy counterpart.
fn cel_block(cel: &Value) -> Result<Validations, String> {
    for part in ["paramKind", "paramRef"] {
        if cel.get(part).is_some_and(|v| !v.is_null()) {
            return unsupported(format!(
                "validate.cel.{part} is not converted (a ValidatingPolicy has no params)"
            ));
        }
    }
    let list = cel
        .get("expressions")
        .and_then(Value::as_array)
        .ok_or("validate.cel without expressions")?;
    if list.iter().any(|e| {
        e.get("expression")
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("params"))
    }) {
        return unsupported("validate.cel expressions reading params are not converted");
    }
    Ok(Validations {
        validations: list.clone(),
        conditions: Vec::new(),
        variables: cel.get("variables").filter(|v| !v.is_null()).cloned(),
        audit_annotations: cel
            .get("auditAnnotations")
            .filter(|v| !v.is_null())
            .cloned(),
    })
}
