//! `parse_yaml`: YAML text to data the way Kyverno's `yaml.YAMLToJSON` + `json.Unmarshal` does:
//! the first document, read with Kubernetes' YAML 1.1 rules by [`crate::yaml`] (which also bounds
//! size, nesting and alias expansion).

use ::jmespath::Rcvar;

use super::functions::arg_str;

type Out = Result<Rcvar, String>;

pub(super) fn parse_yaml(args: &[Rcvar]) -> Out {
    parse(arg_str(args, 0)?)
}

pub(super) fn parse(text: &str) -> Out {
    let (docs, err) = crate::yaml::parse_documents(text, &crate::yaml::Limits::default());
    match docs.into_iter().next() {
        Some((_, first)) => Ok(super::to_variable(&first)),
        None => match err {
            Some(e) => Err(format!("failed to parse YAML: {e}")),
            None => Ok(super::null()),
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::jmespath::compile;
    use serde_json::{Value, json};

    fn yaml(text: &str) -> Result<Value, String> {
        compile("parse_yaml(@)")
            .map_err(|e| e.to_string())?
            .search(&json!(text))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn parses_yaml_like_go() {
        let cases: &[(&str, Value)] = &[
            (
                "a: 1\nb: [x, 'y', \"z\"]\n",
                json!({"a": 1, "b": ["x", "y", "z"]}),
            ),
            (
                "- yes\n- off\n- ~\n- 'yes'\n",
                json!([true, false, null, "yes"]),
            ),
            (
                "v: 0777\nh: 0x1F\nu: 1_000\nf: 1.5e3\ng: .5\n",
                json!({"v": 511, "h": 31, "u": 1000, "f": 1500, "g": 0.5}),
            ),
            ("v: 1.2.3\ns: 08\n", json!({"v": "1.2.3", "s": 8})),
            ("1: a\ntrue: b\n", json!({"1": "a", "true": "b"})),
            (
                "base: &b {a: 1, b: 2}\nderived:\n  <<: *b\n  b: 3\n",
                json!({"base": {"a": 1, "b": 2}, "derived": {"a": 1, "b": 3}}),
            ),
            // YAML 1.1: a plain `y` is a boolean, also as a key.
            ("y: 1\n", json!({"true": 1})),
            ("s: !!str 123\n", json!({"s": "123"})),
            (
                "text: |\n  line1\n  line2\n",
                json!({"text": "line1\nline2\n"}),
            ),
            ("a: 1\n---\nb: 2\n", json!({"a": 1})),
            ("", json!(null)),
            ("plain", json!("plain")),
        ];
        for (text, want) in cases {
            assert_eq!(yaml(text).as_ref(), Ok(want), "{text:?}");
        }
    }

    #[test]
    fn rejects_bad_or_hostile_yaml() {
        assert!(yaml("a: [1, 2").is_err());
        assert!(yaml("v: .nan").is_err());
        assert!(yaml("a: *nope").is_err());
        assert!(yaml(&"[".repeat(500)).is_err());
        // Billion laughs: each level multiplies the size by ten.
        let mut doc = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            doc.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let err = yaml(&doc).unwrap_err();
        assert!(err.contains("alias"), "{err}");
    }
}
