//! Host ownership between namespaces. Pure: claims and the time come in,
//! owners and the claims to remember go out.
//!
//! - A host belongs to one namespace at a time. Only that namespace's
//!   Ingresses serve paths on it (and only its TLS Secrets are served for
//!   it), unless one of them delegates a path to another namespace
//!   (`delegate_paths`).
//! - Ingresses and Gateway API HTTPRoutes both claim the hosts they name.
//!   The owner is the namespace holding the remembered claim, else the
//!   namespace of the oldest Ingress or HTTPRoute naming the host. An
//!   HTTPRoute of another namespace is not served on a host its owner serves
//!   with an Ingress; among HTTPRoutes alone, the Gateway's listeners
//!   (`allowedRoutes`) decide who shares a host, as the Gateway API says
//!   ([`super::gateway_hosts`]). A claim outlives the
//!   owner's Ingresses for a grace period, so deleting and re-applying an
//!   Ingress (an ordinary redeploy) never hands the host to another
//!   namespace; meanwhile the host answers 403 for everyone.
//! - An administrator may say which namespaces may claim which hosts
//!   ([`HostRules`]); a namespace that may not is never the owner.
//!
//! Claims are remembered where every replica and a restarted controller see
//! them (the controller keeps them in a ConfigMap); only those that carry
//! something live objects do not say are stored ([`Assignment::stored`]):
//! hosts claimed by more than one namespace, and hosts whose owner has gone.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Who holds a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostClaim {
    pub namespace: String,
    /// When the owner's last Ingress naming the host went away (unix
    /// seconds); `None` while it has one.
    pub released: Option<i64>,
}

/// Claims by host (lower case; `*.suffix` for a wildcard, empty for "any host").
pub type HostClaims = BTreeMap<String, HostClaim>;

impl HostClaim {
    /// The stored form: `namespace`, or `namespace released=<unix seconds>`.
    pub fn to_text(&self) -> String {
        match self.released {
            None => self.namespace.clone(),
            Some(t) => format!("{} released={t}", self.namespace),
        }
    }

    /// Reads [`HostClaim::to_text`]'s form; `None` for anything else.
    pub fn from_text(text: &str) -> Option<HostClaim> {
        let mut parts = text.split_whitespace();
        let namespace = parts.next()?.to_string();
        let released = match parts.next() {
            None => None,
            Some(p) => Some(p.strip_prefix("released=")?.parse().ok()?),
        };
        if parts.next().is_some() {
            return None;
        }
        Some(HostClaim {
            namespace,
            released,
        })
    }
}

/// A ConfigMap key for a host (keys allow letters, digits, `-`, `_`, `.`;
/// host names never hold `_`): `*` becomes `_`, the empty host `_`.
pub fn host_key(host: &str) -> String {
    if host.is_empty() {
        "_".into()
    } else {
        host.replace('*', "_")
    }
}

/// The host a [`host_key`] stands for.
pub fn key_host(key: &str) -> String {
    if key == "_" {
        String::new()
    } else {
        key.replace('_', "*")
    }
}

/// Which hosts an administrator reserves for which namespaces.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostRules {
    rules: Vec<HostRule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct HostRule {
    pattern: HostPattern,
    namespaces: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum HostPattern {
    /// One host name (a wildcard Ingress host is named as `*.example.com`).
    Exact(String),
    /// `*.example.com`: every name below `example.com`, at any depth,
    /// wildcard hosts included.
    Below(String),
    /// `*`: every host, the empty one too.
    Any,
}

impl HostPattern {
    /// How specific a match is (higher wins), if it matches.
    fn matches(&self, host: &str) -> Option<usize> {
        match self {
            HostPattern::Exact(h) => (h == host).then_some(usize::MAX),
            HostPattern::Below(suffix) => host
                .strip_suffix(suffix.as_str())
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1)
                .then_some(suffix.len() + 1),
            HostPattern::Any => Some(0),
        }
    }
}

/// A rule that could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "host rule {rule:?}: {why} (expected HOST=NAMESPACE[,NAMESPACE...], HOST being a name, *.domain or *)"
)]
pub struct HostRuleError {
    rule: String,
    why: &'static str,
}

impl HostRules {
    /// Reads rules of the form `HOST=NAMESPACE[,NAMESPACE...]`, where HOST
    /// is a name, `*.domain` (every name below the domain) or `*`.
    pub fn parse<S: AsRef<str>>(rules: &[S]) -> Result<HostRules, HostRuleError> {
        let mut out = HostRules::default();
        for rule in rules {
            let rule = rule.as_ref();
            let bad = |why| HostRuleError {
                rule: rule.to_string(),
                why,
            };
            let (host, namespaces) = rule.split_once('=').ok_or_else(|| bad("no '='"))?;
            let full = host.trim().to_ascii_lowercase();
            if full == "*." {
                return Err(bad("a wildcard must be *.domain"));
            }
            let host = full.strip_suffix('.').unwrap_or(&full);
            let pattern = match host {
                "" => return Err(bad("no host")),
                "*" => HostPattern::Any,
                h => match h.strip_prefix("*.") {
                    Some(s) if !s.is_empty() && !s.contains('*') => HostPattern::Below(s.into()),
                    Some(_) => return Err(bad("a wildcard must be *.domain")),
                    None if h.contains('*') => return Err(bad("a wildcard must be *.domain")),
                    None => HostPattern::Exact(h.into()),
                },
            };
            let namespaces: Vec<String> = namespaces
                .split(',')
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            if namespaces.is_empty() {
                return Err(bad("no namespace"));
            }
            out.rules.push(HostRule {
                pattern,
                namespaces,
            });
        }
        Ok(out)
    }

    /// The namespaces that may claim `host`, if a rule names it (the most
    /// specific rule decides); `None`: any namespace may.
    pub fn allowed(&self, host: &str) -> Option<&[String]> {
        self.rules
            .iter()
            .filter_map(|r| r.pattern.matches(host).map(|rank| (rank, r)))
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, r)| r.namespaces.as_slice())
    }
}

/// One Ingress or HTTPRoute naming a host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claimant {
    /// `Ingress` or `HTTPRoute`.
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub created: i64,
}

/// Why a host has the owner it has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// The owner's Ingress (its oldest naming the host) serves it.
    Served { by: Claimant },
    /// The owner has no Ingress naming the host any more; the claim is
    /// kept until `until` (unix seconds), and the host answers 403.
    Held { until: i64 },
}

/// A host's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub namespace: String,
    pub ownership: Ownership,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ownership {
            Ownership::Served { by } => {
                write!(
                    f,
                    "namespace {} ({} {}/{})",
                    self.namespace, by.kind, by.namespace, by.name
                )
            }
            Ownership::Held { until } => write!(
                f,
                "namespace {}, whose claim is held until {} after its last Ingress for it went away",
                self.namespace,
                rfc3339(*until)
            ),
        }
    }
}

/// `2026-12-07T04:00:00Z` for unix seconds.
fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("unix time {t}"))
}

/// The result of [`assign`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignment {
    /// The owner of every host that has one.
    pub owners: BTreeMap<String, Owner>,
    /// Every claim to remember for the next translation.
    pub claims: HostClaims,
    /// Hosts named by more than one eligible namespace.
    pub contested: BTreeSet<String>,
}

impl Assignment {
    /// The claims worth storing: contested hosts and held ones (the rest
    /// follow from the live Ingresses alone).
    pub fn stored(&self) -> HostClaims {
        self.claims
            .iter()
            .filter(|(h, c)| c.released.is_some() || self.contested.contains(*h))
            .map(|(h, c)| (h.clone(), c.clone()))
            .collect()
    }
}

/// Decides each host's owner. `claimants` holds, per host, the Ingresses
/// naming it; `remembered` the claims of the previous translation and the
/// stored ones; a released claim older than `grace` seconds is forgotten.
pub fn assign(
    claimants: &BTreeMap<String, Vec<Claimant>>,
    remembered: &HostClaims,
    rules: &HostRules,
    now: i64,
    grace: i64,
) -> Assignment {
    let mut out = Assignment::default();
    let hosts: BTreeSet<&String> = claimants.keys().chain(remembered.keys()).collect();
    for host in hosts {
        let allowed = rules.allowed(host);
        let eligible = |ns: &str| allowed.is_none_or(|a| a.iter().any(|n| n == ns));
        let mut live: Vec<&Claimant> = claimants
            .get(host)
            .into_iter()
            .flatten()
            .filter(|c| eligible(&c.namespace))
            .collect();
        live.sort_by(|a, b| {
            (a.created, &a.namespace, &a.name, a.kind).cmp(&(
                b.created,
                &b.namespace,
                &b.name,
                b.kind,
            ))
        });
        let namespaces: BTreeSet<&str> = live.iter().map(|c| c.namespace.as_str()).collect();
        if namespaces.len() > 1 {
            out.contested.insert(host.clone());
        }
        let kept = remembered.get(host).filter(|c| {
            eligible(&c.namespace) && c.released.is_none_or(|t| now < t.saturating_add(grace))
        });
        let namespace = match (kept, live.first()) {
            (Some(c), _) => c.namespace.clone(),
            (None, Some(first)) => first.namespace.clone(),
            (None, None) => continue,
        };
        let ownership = match live.iter().find(|c| c.namespace == namespace) {
            Some(by) => {
                out.claims.insert(
                    host.clone(),
                    HostClaim {
                        namespace: namespace.clone(),
                        released: None,
                    },
                );
                Ownership::Served { by: (*by).clone() }
            }
            None => {
                let released = kept.and_then(|c| c.released).unwrap_or(now);
                out.claims.insert(
                    host.clone(),
                    HostClaim {
                        namespace: namespace.clone(),
                        released: Some(released),
                    },
                );
                Ownership::Held {
                    until: released.saturating_add(grace),
                }
            }
        };
        out.owners.insert(
            host.clone(),
            Owner {
                namespace,
                ownership,
            },
        );
    }
    out
}

/// Paths an owner lets other namespaces serve on its hosts
/// (`delegate_paths: "team2=/api, team3=/docs"`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delegations(Vec<(String, String)>);

/// An item of a delegation list that is not `NAMESPACE=/PATH`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?}: expected NAMESPACE=/PATH")]
pub struct DelegationError(pub String);

impl Delegations {
    /// Reads `NAMESPACE=/PATH` items separated by commas or white space.
    pub fn parse(text: &str) -> Result<Delegations, DelegationError> {
        let mut out = Vec::new();
        for item in text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let bad = || DelegationError(item.to_string());
            let (ns, path) = item.split_once('=').ok_or_else(bad)?;
            if ns.is_empty() || !path.starts_with('/') {
                return Err(bad());
            }
            out.push((ns.to_string(), path.trim_end_matches('/').to_string()));
        }
        Ok(Delegations(out))
    }

    /// Adds another Ingress's delegations.
    pub fn extend(&mut self, other: &Delegations) {
        self.0.extend(other.0.iter().cloned());
    }

    /// Whether `namespace` may serve `path` (an Exact or Prefix rule path):
    /// the path is a delegated path or below one, element by element.
    pub fn covers(&self, namespace: &str, path: &str) -> bool {
        self.0.iter().any(|(ns, p)| {
            ns == namespace
                && (p.is_empty()
                    || path == p
                    || path
                        .strip_prefix(p.as_str())
                        .is_some_and(|r| r.starts_with('/')))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ns: &str, name: &str, created: i64) -> Claimant {
        Claimant {
            kind: "Ingress",
            namespace: ns.into(),
            name: name.into(),
            created,
        }
    }

    fn one(host: &str, list: Vec<Claimant>) -> BTreeMap<String, Vec<Claimant>> {
        BTreeMap::from([(host.to_string(), list)])
    }

    #[test]
    fn the_oldest_namespace_owns_a_new_host_and_a_contested_claim_is_stored() {
        let a = assign(
            &one(
                "app.test",
                vec![c("team2", "late", 20), c("apps", "web", 10)],
            ),
            &HostClaims::new(),
            &HostRules::default(),
            100,
            60,
        );
        assert_eq!(a.owners["app.test"].namespace, "apps");
        assert_eq!(a.stored().len(), 1);
    }

    #[test]
    fn an_uncontested_host_stores_nothing() {
        let a = assign(
            &one("app.test", vec![c("apps", "web", 10), c("apps", "api", 5)]),
            &HostClaims::new(),
            &HostRules::default(),
            100,
            60,
        );
        assert_eq!(a.owners["app.test"].namespace, "apps");
        assert!(a.stored().is_empty());
    }

    #[test]
    fn a_redeployed_owner_keeps_its_host_through_the_gap_and_after() {
        let rules = HostRules::default();
        let first = assign(
            &one("app.test", vec![c("apps", "web", 10), c("team2", "t", 20)]),
            &HostClaims::new(),
            &rules,
            100,
            60,
        );
        // The owner's Ingress is deleted: held, nobody serves it.
        let gap = assign(
            &one("app.test", vec![c("team2", "t", 20)]),
            &first.claims,
            &rules,
            110,
            60,
        );
        assert_eq!(gap.owners["app.test"].namespace, "apps");
        assert_eq!(
            gap.owners["app.test"].ownership,
            Ownership::Held { until: 170 }
        );
        // Re-applied: newer than team2's, still the owner.
        let back = assign(
            &one("app.test", vec![c("apps", "web", 120), c("team2", "t", 20)]),
            &gap.claims,
            &rules,
            120,
            60,
        );
        assert_eq!(back.owners["app.test"].namespace, "apps");
        assert_eq!(back.claims["app.test"].released, None);
    }

    #[test]
    fn a_released_claim_ends_after_the_grace_period() {
        let held = HostClaims::from([(
            "app.test".to_string(),
            HostClaim {
                namespace: "apps".into(),
                released: Some(100),
            },
        )]);
        let during = assign(
            &one("app.test", vec![c("team2", "t", 20)]),
            &held,
            &HostRules::default(),
            159,
            60,
        );
        assert_eq!(during.owners["app.test"].namespace, "apps");
        let after = assign(
            &one("app.test", vec![c("team2", "t", 20)]),
            &held,
            &HostRules::default(),
            160,
            60,
        );
        assert_eq!(after.owners["app.test"].namespace, "team2");
        // Nobody left at all: forgotten.
        let gone = assign(&BTreeMap::new(), &held, &HostRules::default(), 160, 60);
        assert!(gone.owners.is_empty() && gone.claims.is_empty());
    }

    #[test]
    fn administrator_rules_pick_the_most_specific_pattern() {
        let rules = HostRules::parse(&[
            "*=platform",
            "*.apps.test=apps,apps-staging",
            "admin.apps.test=ops",
        ])
        .unwrap();
        assert_eq!(rules.allowed("admin.apps.test").unwrap(), ["ops"]);
        assert_eq!(
            rules.allowed("x.y.apps.test").unwrap(),
            ["apps", "apps-staging"]
        );
        assert_eq!(
            rules.allowed("*.apps.test").unwrap(),
            ["apps", "apps-staging"]
        );
        assert_eq!(rules.allowed("apps.test").unwrap(), ["platform"]);
        assert_eq!(rules.allowed("").unwrap(), ["platform"]);
        assert_eq!(
            HostRules::parse(&["a.test=x"]).unwrap().allowed("b.test"),
            None
        );
        for bad in ["a.test", "=x", "a.test=", "a.*.test=x", "*.=x"] {
            assert!(HostRules::parse(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_namespace_the_rules_exclude_never_owns_even_when_oldest_or_remembered() {
        let rules = HostRules::parse(&["app.test=apps"]).unwrap();
        let remembered = HostClaims::from([(
            "app.test".to_string(),
            HostClaim {
                namespace: "team2".into(),
                released: None,
            },
        )]);
        let a = assign(
            &one("app.test", vec![c("team2", "t", 1), c("apps", "web", 10)]),
            &remembered,
            &rules,
            100,
            60,
        );
        assert_eq!(a.owners["app.test"].namespace, "apps");
        let none = assign(
            &one("app.test", vec![c("team2", "t", 1)]),
            &HostClaims::new(),
            &rules,
            100,
            60,
        );
        assert!(none.owners.is_empty());
    }

    #[test]
    fn stored_claims_read_back_and_keys_round_trip() {
        for claim in [
            HostClaim {
                namespace: "apps".into(),
                released: None,
            },
            HostClaim {
                namespace: "apps".into(),
                released: Some(1_700_000_000),
            },
        ] {
            assert_eq!(HostClaim::from_text(&claim.to_text()), Some(claim));
        }
        for bad in ["", "apps since=3", "apps released=x", "a released=1 more"] {
            assert_eq!(HostClaim::from_text(bad), None, "{bad}");
        }
        for host in ["app.test", "*.app.test", ""] {
            assert_eq!(key_host(&host_key(host)), host);
        }
    }

    #[test]
    fn delegated_paths_cover_whole_elements_only() {
        let d = Delegations::parse("team2=/api, team3=/docs/").unwrap();
        assert!(d.covers("team2", "/api"));
        assert!(d.covers("team2", "/api/v1"));
        assert!(!d.covers("team2", "/apiv2"));
        assert!(!d.covers("team2", "/"));
        assert!(!d.covers("team3", "/api"));
        assert!(d.covers("team3", "/docs"));
        assert!(
            Delegations::parse("team2=/")
                .unwrap()
                .covers("team2", "/anything")
        );
        for bad in ["team2", "team2=api", "=/api"] {
            assert!(Delegations::parse(bad).is_err(), "{bad}");
        }
    }
}
