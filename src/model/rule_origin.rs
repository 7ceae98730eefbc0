//! Where the rules of a route's compiled program came from: a `Policy`
//! object, or a setting of the route itself (its `policy`, the legacy
//! `allowed_*` shorthands, `allow_any_authenticated_user`). Recorded when
//! the route is built, beside its program, so a decision can name the
//! Policy and the rule that made it without reading the policy again.

/// A run of consecutive rule numbers of a route's program and where they
/// were written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The first rule number of the run in the route's program (from 1).
    pub first: usize,
    /// How many rule numbers the run holds.
    pub rules: usize,
    /// The `Policy` object the rules come from (`namespace/name`), or
    /// `None` for rules the route sets itself.
    pub policy: Option<String>,
    /// The setting that holds the rules: `policy`, `allowed_users`,
    /// `allow_any_authenticated_user`, or `Policy` for a Policy object.
    pub setting: &'static str,
}

/// The origin of rule `number` of a program whose runs are `origins`, and
/// the rule's number within its run (from 1).
pub fn locate(origins: &[RuleOrigin], number: usize) -> Option<(&RuleOrigin, usize)> {
    origins
        .iter()
        .find(|o| number >= o.first && number < o.first + o.rules)
        .map(|o| (o, number - o.first + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_number_is_found_in_its_run_and_renumbered_from_one() {
        let runs = [
            RuleOrigin {
                first: 1,
                rules: 2,
                policy: None,
                setting: "policy",
            },
            RuleOrigin {
                first: 3,
                rules: 3,
                policy: Some("default/staff".into()),
                setting: "Policy",
            },
        ];
        assert_eq!(
            locate(&runs, 2).map(|(o, n)| (o.setting, n)),
            Some(("policy", 2))
        );
        let (o, n) = locate(&runs, 5).unwrap();
        assert_eq!((o.policy.as_deref(), n), (Some("default/staff"), 3));
        assert!(locate(&runs, 6).is_none());
        assert!(locate(&runs, 0).is_none());
    }
}
