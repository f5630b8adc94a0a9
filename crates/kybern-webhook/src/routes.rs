//! Admission paths: which policies each path serves. kybern's own `/validate` and `/mutate`
//! serve every policy kind; Kyverno's paths keep Kyverno's meaning so that a webhook
//! configuration written for Kyverno can point at kybern without evaluating a policy twice.

use crate::decision::{Endpoint, FailurePolicyFilter, Families, Route};
use kybern_engine::cel::policy_set::CelKinds;

/// The route of an admission path, or `None` when the path is not an admission path.
///
/// | path | serves |
/// |---|---|
/// | `/validate`, `/mutate` | every policy kind |
/// | `/validate/{fail,ignore}[/finegrained/<policy>]`, same under `/mutate` | ClusterPolicy/Policy of that failurePolicy |
/// | `/vpol`, `/nvpol`, `/ivpol/validate`, `/nivpol/validate` `[/{fail,ignore}][/finegrained]/<policy>...` | validating CEL kinds |
/// | `/mpol`, `/nmpol`, `/ivpol/mutate`, `/nivpol/mutate` `[...]` | mutating CEL kinds |
/// | `/gpol`, `/ngpol` `[...]` | GeneratingPolicies: admitted, generation is background work |
pub fn route_for(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (head, rest) = segments.split_first()?;
    use CelKinds::{ImageValidating, Mutating, Validating};
    let (endpoint, families, cel_kinds, rest) = match *head {
        "validate" => (Endpoint::Validate, Families::Kyverno, CelKinds::All, rest),
        "mutate" => (Endpoint::Mutate, Families::Kyverno, CelKinds::All, rest),
        "vpol" | "nvpol" => (Endpoint::Validate, Families::Cel, Validating, rest),
        "mpol" | "nmpol" => (Endpoint::Mutate, Families::Cel, Mutating, rest),
        "gpol" | "ngpol" => (
            Endpoint::Validate,
            Families::Background,
            CelKinds::All,
            rest,
        ),
        // Image verification itself needs a registry; the mutate path (digests) changes nothing.
        "ivpol" | "nivpol" => match rest.split_first() {
            Some((&"validate", rest)) => (Endpoint::Validate, Families::Cel, ImageValidating, rest),
            Some((&"mutate", rest)) => (Endpoint::Mutate, Families::Cel, ImageValidating, rest),
            _ => return None,
        },
        _ => return None,
    };
    let (filter, rest) = match rest.split_first() {
        Some((&"fail", rest)) => (FailurePolicyFilter::Fail, rest),
        Some((&"ignore", rest)) => (FailurePolicyFilter::Ignore, rest),
        _ => (FailurePolicyFilter::All, rest),
    };
    let (fine_grained, rest) = match rest.split_first() {
        Some((&"finegrained", rest)) => (true, rest),
        _ => (false, rest),
    };
    if families == Families::Kyverno {
        // kybern's bare `/validate` and `/mutate` serve every kind.
        let families = if filter == FailurePolicyFilter::All && !fine_grained {
            Families::All
        } else {
            Families::Kyverno
        };
        // `finegrained/<policy>` or `finegrained/<namespace>/<policy>`.
        let names = match (fine_grained, rest) {
            (false, []) => Vec::new(),
            (true, [.., name]) => vec![(*name).to_string()],
            _ => return None,
        };
        return Some(Route {
            endpoint,
            filter,
            families,
            names,
            cel_kinds,
        });
    }
    Some(Route {
        endpoint,
        filter,
        families,
        names: rest.iter().map(|s| (*s).to_string()).collect(),
        cel_kinds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        endpoint: Endpoint,
        filter: FailurePolicyFilter,
        families: Families,
        names: &[&str],
    ) -> Route {
        let cel_kinds = match (families, endpoint) {
            (Families::Cel, Endpoint::Validate) => CelKinds::Validating,
            (Families::Cel, Endpoint::Mutate) => CelKinds::Mutating,
            _ => CelKinds::All,
        };
        Route {
            endpoint,
            filter,
            families,
            names: names.iter().map(|s| s.to_string()).collect(),
            cel_kinds,
        }
    }

    fn images(mut route: Route) -> Route {
        route.cel_kinds = CelKinds::ImageValidating;
        route
    }

    #[test]
    fn paths_map_to_the_policies_they_serve() {
        use Endpoint::{Mutate, Validate};
        use FailurePolicyFilter::{All, Fail, Ignore};
        use Families::{Background, Cel, Kyverno};
        let cases = [
            ("/validate", Some(r(Validate, All, Families::All, &[]))),
            ("/mutate", Some(r(Mutate, All, Families::All, &[]))),
            ("/validate/fail", Some(r(Validate, Fail, Kyverno, &[]))),
            ("/mutate/ignore", Some(r(Mutate, Ignore, Kyverno, &[]))),
            (
                "/validate/fail/finegrained/p",
                Some(r(Validate, Fail, Kyverno, &["p"])),
            ),
            (
                "/validate/ignore/finegrained/ns/p",
                Some(r(Validate, Ignore, Kyverno, &["p"])),
            ),
            ("/vpol", Some(r(Validate, All, Cel, &[]))),
            ("/vpol/a/b", Some(r(Validate, All, Cel, &["a", "b"]))),
            (
                "/nvpol/fail/finegrained/a",
                Some(r(Validate, Fail, Cel, &["a"])),
            ),
            ("/mpol/x", Some(r(Mutate, All, Cel, &["x"]))),
            (
                "/ivpol/validate/x",
                Some(images(r(Validate, All, Cel, &["x"]))),
            ),
            ("/ivpol/mutate", Some(images(r(Mutate, All, Cel, &[])))),
            ("/gpol/g", Some(r(Validate, All, Background, &["g"]))),
            ("/validate/other", None),
            ("/ivpol", None),
            ("/nope", None),
            ("/", None),
        ];
        for (path, want) in cases {
            assert_eq!(route_for(path), want, "{path}");
        }
    }
}
