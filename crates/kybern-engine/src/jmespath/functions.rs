//! The function table: Kyverno's custom functions with their signatures, registration into the
//! runtime, helpers shared by the implementations, and the documentation list.

use ::jmespath::functions::{ArgumentType, CustomFunction, Signature};
use ::jmespath::{ErrorReason, JmespathError, Rcvar, Runtime, Variable};

use super::FunctionDoc;
use super::{arithmetic, image, strings, time, x509, yaml};

/// An implementation: arguments (already type-checked against the signature) to a value, or a message.
pub(super) type Impl = fn(&[Rcvar]) -> Result<Rcvar, String>;

/// Argument types as Kyverno declares them.
#[derive(Clone, Copy)]
pub(super) enum Arg {
    Any,
    String,
    Number,
    Object,
    Array,
    StringOrNumber,
    ObjectOrArray,
}

impl Arg {
    fn to_type(self) -> ArgumentType {
        match self {
            Arg::Any => ArgumentType::Any,
            Arg::String => ArgumentType::String,
            Arg::Number => ArgumentType::Number,
            Arg::Object => ArgumentType::Object,
            Arg::Array => ArgumentType::Array,
            Arg::StringOrNumber => {
                ArgumentType::Union(vec![ArgumentType::String, ArgumentType::Number])
            }
            Arg::ObjectOrArray => {
                ArgumentType::Union(vec![ArgumentType::Object, ArgumentType::Array])
            }
        }
    }

    fn text(self) -> &'static str {
        match self {
            Arg::Any => "any",
            Arg::String => "string",
            Arg::Number => "number",
            Arg::Object => "object",
            Arg::Array => "array",
            Arg::StringOrNumber => "string|number",
            Arg::ObjectOrArray => "object|array",
        }
    }
}

struct Spec {
    name: &'static str,
    args: &'static [Arg],
    returns: &'static str,
    description: &'static str,
    f: Impl,
}

use Arg::{Any, Array, Number, Object, ObjectOrArray, String as Str, StringOrNumber};

const SPECS: &[Spec] = &[
    Spec {
        name: "compare",
        args: &[Str, Str],
        returns: "number",
        description: "compares two strings lexicographically (-1, 0 or 1)",
        f: strings::compare,
    },
    Spec {
        name: "equal_fold",
        args: &[Str, Str],
        returns: "bool",
        description: "reports whether two strings are equal under Unicode case folding",
        f: strings::equal_fold,
    },
    Spec {
        name: "replace",
        args: &[Str, Str, Str, Number],
        returns: "string",
        description: "replaces the first n occurrences of a substring (all when n is negative)",
        f: strings::replace,
    },
    Spec {
        name: "replace_all",
        args: &[Str, Str, Str],
        returns: "string",
        description: "replaces all occurrences of a substring",
        f: strings::replace_all,
    },
    Spec {
        name: "to_upper",
        args: &[Str],
        returns: "string",
        description: "converts a string to upper case",
        f: strings::to_upper,
    },
    Spec {
        name: "to_lower",
        args: &[Str],
        returns: "string",
        description: "converts a string to lower case",
        f: strings::to_lower,
    },
    Spec {
        name: "trim",
        args: &[Str, Str],
        returns: "string",
        description: "removes leading and trailing characters found in the cutset",
        f: strings::trim,
    },
    Spec {
        name: "trim_prefix",
        args: &[Str, Str],
        returns: "string",
        description: "removes a prefix when present",
        f: strings::trim_prefix,
    },
    Spec {
        name: "split",
        args: &[Str, Str],
        returns: "array[string]",
        description: "splits a string around a separator",
        f: strings::split,
    },
    Spec {
        name: "regex_replace_all",
        args: &[Str, StringOrNumber, StringOrNumber],
        returns: "string",
        description: "replaces regex matches, expanding $1 and ${name} in the replacement",
        f: strings::regex_replace_all,
    },
    Spec {
        name: "regex_replace_all_literal",
        args: &[Str, StringOrNumber, StringOrNumber],
        returns: "string",
        description: "replaces regex matches with a literal replacement",
        f: strings::regex_replace_all_literal,
    },
    Spec {
        name: "regex_match",
        args: &[Str, StringOrNumber],
        returns: "bool",
        description: "reports whether the regex matches anywhere in the value",
        f: strings::regex_match,
    },
    Spec {
        name: "pattern_match",
        args: &[Str, StringOrNumber],
        returns: "bool",
        description: "matches a value against a wildcard pattern (* and ?)",
        f: strings::pattern_match,
    },
    Spec {
        name: "label_match",
        args: &[Object, Object],
        returns: "bool",
        description: "reports whether every key/value of the selector is present in the labels",
        f: strings::label_match,
    },
    Spec {
        name: "to_boolean",
        args: &[Str],
        returns: "bool",
        description: "converts 'true' or 'false' (any case) to a boolean",
        f: strings::to_boolean,
    },
    Spec {
        name: "add",
        args: &[Any, Any],
        returns: "any",
        description: "adds numbers, quantities or durations",
        f: arithmetic::add,
    },
    Spec {
        name: "sum",
        args: &[Array],
        returns: "any",
        description: "adds all numbers, quantities or durations of a non-empty array",
        f: arithmetic::sum,
    },
    Spec {
        name: "subtract",
        args: &[Any, Any],
        returns: "any",
        description: "subtracts numbers, quantities or durations",
        f: arithmetic::subtract,
    },
    Spec {
        name: "multiply",
        args: &[Any, Any],
        returns: "any",
        description: "multiplies a number, quantity or duration by a number",
        f: arithmetic::multiply,
    },
    Spec {
        name: "divide",
        args: &[Any, Any],
        returns: "any",
        description: "divides numbers, quantities or durations",
        f: arithmetic::divide,
    },
    Spec {
        name: "modulo",
        args: &[Any, Any],
        returns: "any",
        description: "remainder of integer numbers, quantities or durations",
        f: arithmetic::modulo,
    },
    Spec {
        name: "round",
        args: &[Number, Number],
        returns: "number",
        description: "rounds a number to the given number of decimal places",
        f: arithmetic::round,
    },
    Spec {
        name: "base64_decode",
        args: &[Str],
        returns: "string",
        description: "decodes a standard base64 string",
        f: strings::base64_decode,
    },
    Spec {
        name: "base64_encode",
        args: &[Str],
        returns: "string",
        description: "encodes a string with standard base64",
        f: strings::base64_encode,
    },
    Spec {
        name: "time_since",
        args: &[Str, Str, Str],
        returns: "string",
        description: "duration from the first to the second time (now when empty), parsed with a Go layout (RFC3339 when empty)",
        f: time::time_since,
    },
    Spec {
        name: "time_now",
        args: &[],
        returns: "string",
        description: "current local time in RFC3339",
        f: time::time_now,
    },
    Spec {
        name: "time_now_utc",
        args: &[],
        returns: "string",
        description: "current UTC time in RFC3339",
        f: time::time_now_utc,
    },
    Spec {
        name: "path_canonicalize",
        args: &[Str],
        returns: "string",
        description: "cleans a file path (collapses separators, resolves . and ..)",
        f: strings::path_canonicalize,
    },
    Spec {
        name: "truncate",
        args: &[Str, Number],
        returns: "string",
        description: "truncates a string to at most the given number of characters",
        f: strings::truncate,
    },
    Spec {
        name: "semver_compare",
        args: &[Str, Str],
        returns: "bool",
        description: "reports whether a semantic version satisfies a range such as '>=1.2.0 <2.0.0 || 3.x'",
        f: strings::semver_compare,
    },
    Spec {
        name: "parse_json",
        args: &[Str],
        returns: "any",
        description: "decodes a JSON string",
        f: strings::parse_json,
    },
    Spec {
        name: "parse_yaml",
        args: &[Str],
        returns: "any",
        description: "decodes a YAML string",
        f: yaml::parse_yaml,
    },
    Spec {
        name: "lookup",
        args: &[ObjectOrArray, StringOrNumber],
        returns: "any",
        description: "looks up an object key or array index (null when absent)",
        f: strings::lookup,
    },
    Spec {
        name: "items",
        args: &[ObjectOrArray, Str, Str],
        returns: "array",
        description: "converts an object or array into an array of key/value objects",
        f: strings::items,
    },
    Spec {
        name: "object_from_lists",
        args: &[Array, Array],
        returns: "object",
        description: "builds an object from a list of keys and a list of values",
        f: strings::object_from_lists,
    },
    Spec {
        name: "random",
        args: &[Str],
        returns: "string",
        description: "generates a random string matching a regular expression",
        f: strings::random,
    },
    Spec {
        name: "x509_decode",
        args: &[Str],
        returns: "object",
        description: "decodes a PEM certificate or certificate request",
        f: x509::x509_decode,
    },
    Spec {
        name: "time_to_cron",
        args: &[Str],
        returns: "string",
        description: "converts an RFC3339 time into a cron expression",
        f: time::time_to_cron,
    },
    Spec {
        name: "time_add",
        args: &[Str, Str],
        returns: "string",
        description: "adds a duration to an RFC3339 time",
        f: time::time_add,
    },
    Spec {
        name: "time_parse",
        args: &[Str, Str],
        returns: "string",
        description: "parses a time with a Go layout (epoch seconds when the layout is numeric) into RFC3339",
        f: time::time_parse,
    },
    Spec {
        name: "time_utc",
        args: &[Str],
        returns: "string",
        description: "converts an RFC3339 time to UTC",
        f: time::time_utc,
    },
    Spec {
        name: "time_diff",
        args: &[Str, Str],
        returns: "string",
        description: "duration from the first to the second RFC3339 time",
        f: time::time_diff,
    },
    Spec {
        name: "time_before",
        args: &[Str, Str],
        returns: "bool",
        description: "reports whether the first RFC3339 time is before the second",
        f: time::time_before,
    },
    Spec {
        name: "time_after",
        args: &[Str, Str],
        returns: "bool",
        description: "reports whether the first RFC3339 time is after the second",
        f: time::time_after,
    },
    Spec {
        name: "time_between",
        args: &[Str, Str, Str],
        returns: "bool",
        description: "reports whether an RFC3339 time is strictly between two others",
        f: time::time_between,
    },
    Spec {
        name: "time_truncate",
        args: &[Str, Str],
        returns: "string",
        description: "rounds an RFC3339 time down to a multiple of a duration",
        f: time::time_truncate,
    },
    Spec {
        name: "image_normalize",
        args: &[Str],
        returns: "string",
        description: "normalizes an image reference with the default registry and tag",
        f: image::image_normalize,
    },
    Spec {
        name: "is_external_url",
        args: &[Str],
        returns: "bool",
        description: "reports whether a URL's host is not a loopback or private address",
        f: image::is_external_url,
    },
    Spec {
        name: "sha256",
        args: &[Str],
        returns: "string",
        description: "hex SHA-256 digest of a string",
        f: strings::sha256,
    },
    Spec {
        name: "sha1",
        args: &[Str],
        returns: "string",
        description: "hex SHA-1 digest of a string",
        f: strings::sha1,
    },
    Spec {
        name: "md5",
        args: &[Str],
        returns: "string",
        description: "hex MD5 digest of a string",
        f: strings::md5,
    },
];

/// The standard JMESPath functions (Kyverno's `sum` replaces the standard one).
const BUILTINS: &[(&str, &str, &str)] = &[
    ("abs", "abs(number) number", "absolute value of a number"),
    (
        "avg",
        "avg(array[number]) number",
        "average of an array of numbers",
    ),
    (
        "ceil",
        "ceil(number) number",
        "smallest integer not less than the number",
    ),
    (
        "contains",
        "contains(array|string, any) bool",
        "reports whether an array or string contains a value",
    ),
    (
        "ends_with",
        "ends_with(string, string) bool",
        "reports whether a string ends with a suffix",
    ),
    (
        "floor",
        "floor(number) number",
        "largest integer not greater than the number",
    ),
    (
        "join",
        "join(string, array[string]) string",
        "joins strings with a separator",
    ),
    ("keys", "keys(object) array", "keys of an object"),
    (
        "length",
        "length(string|array|object) number",
        "length of a string, array or object",
    ),
    (
        "map",
        "map(expref, array) array",
        "applies an expression to every element",
    ),
    (
        "max",
        "max(array[number]|array[string]) number|string",
        "largest element",
    ),
    (
        "max_by",
        "max_by(array, expref) any",
        "element with the largest expression value",
    ),
    (
        "merge",
        "merge(object...) object",
        "merges objects, later keys win",
    ),
    (
        "min",
        "min(array[number]|array[string]) number|string",
        "smallest element",
    ),
    (
        "min_by",
        "min_by(array, expref) any",
        "element with the smallest expression value",
    ),
    (
        "not_null",
        "not_null(any...) any",
        "first argument that is not null",
    ),
    (
        "reverse",
        "reverse(array|string) array|string",
        "reverses an array or string",
    ),
    (
        "sort",
        "sort(array[number]|array[string]) array",
        "sorts numbers or strings",
    ),
    (
        "sort_by",
        "sort_by(array, expref) array",
        "sorts by an expression value",
    ),
    (
        "starts_with",
        "starts_with(string, string) bool",
        "reports whether a string starts with a prefix",
    ),
    (
        "to_array",
        "to_array(any) array",
        "wraps a non-array value in an array",
    ),
    (
        "to_number",
        "to_number(any) number",
        "converts a value to a number (null when impossible)",
    ),
    (
        "to_string",
        "to_string(any) string",
        "converts a value to its JSON text (strings unchanged)",
    ),
    ("type", "type(any) string", "JMESPath type name of a value"),
    ("values", "values(object) array", "values of an object"),
];

/// Registers Kyverno's functions (after the built-ins, so `sum` is Kyverno's).
pub(super) fn register(runtime: &mut Runtime) {
    for spec in SPECS {
        let name = spec.name;
        let f = spec.f;
        let signature = Signature::new(spec.args.iter().map(|a| a.to_type()).collect(), None);
        let call = move |args: &[Rcvar], ctx: &mut ::jmespath::Context<'_>| {
            f(args).map_err(|message| {
                JmespathError::new(
                    ctx.expression,
                    ctx.offset,
                    ErrorReason::Parse(format!("JMESPath function '{name}': {message}")),
                )
            })
        };
        runtime.register_function(
            name,
            Box::new(CustomFunction::new(signature, Box::new(call))),
        );
    }
}

pub(super) fn docs() -> Vec<FunctionDoc> {
    let mut out: Vec<FunctionDoc> = SPECS
        .iter()
        .map(|s| FunctionDoc {
            name: s.name,
            signature: format!(
                "{}({}) {}",
                s.name,
                s.args
                    .iter()
                    .map(|a| a.text())
                    .collect::<Vec<_>>()
                    .join(", "),
                s.returns
            ),
            description: s.description,
        })
        .collect();
    for (name, signature, description) in BUILTINS {
        if !out.iter().any(|d| d.name == *name) {
            out.push(FunctionDoc {
                name,
                signature: (*signature).to_string(),
                description,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(b.name));
    out
}

// Helpers shared by the implementations. Signatures are checked before a call, so a wrong type
// here means a bug in the table; it still reports an error rather than panicking.

pub(super) fn arg(args: &[Rcvar], i: usize) -> Result<&Rcvar, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {}", i + 1))
}

pub(super) fn arg_str(args: &[Rcvar], i: usize) -> Result<&str, String> {
    arg(args, i)?
        .as_string()
        .map(String::as_str)
        .ok_or_else(|| format!("argument {} is expected of string type", i + 1))
}

pub(super) fn arg_num(args: &[Rcvar], i: usize) -> Result<f64, String> {
    arg(args, i)?
        .as_number()
        .ok_or_else(|| format!("argument {} is expected of number type", i + 1))
}

pub(super) fn string(s: impl Into<String>) -> Rcvar {
    Rcvar::new(Variable::String(s.into()))
}

pub(super) fn boolean(b: bool) -> Rcvar {
    Rcvar::new(Variable::Bool(b))
}

pub(super) fn number(f: f64) -> Result<Rcvar, String> {
    serde_json::Number::from_f64(f)
        .map(|n| Rcvar::new(Variable::Number(n)))
        .ok_or_else(|| format!("result {f} is not a finite number"))
}

/// Kyverno's `ifaceToString`: strings as-is, numbers as float32 in plain decimal (`'f', -1, 32`),
/// booleans as `true`/`false`.
pub(super) fn stringify(v: &Variable) -> Option<String> {
    match v {
        Variable::String(s) => Some(s.clone()),
        Variable::Number(n) => n.as_f64().map(|f| format!("{}", f as f32)),
        Variable::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
