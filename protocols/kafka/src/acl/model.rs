//! Kafka ACL bindings and the decision rule, as Kafka's `StandardAuthorizer` has them.
//!
//! A binding is (resource type, pattern type, resource name, principal, host, operation,
//! permission). It applies to a request when its resource type is the request's, its pattern
//! matches the name (LITERAL: equal, or the name `*`; PREFIXED: the name starts with it), its
//! principal is the caller's or `User:*`, its host is the caller's address or `*`, and its
//! operation is the requested one or ALL, or implies it (READ, WRITE, DELETE and ALTER imply
//! DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS; implication is for allows only).
//!
//! Invariants: a DENY that applies wins over any ALLOW; with no applicable binding the answer
//! is "denied"; the codes are Kafka's (`AclOperation`, `ResourceType`, `PatternType`,
//! `AclPermissionType`), so bindings round-trip through CreateAcls / DescribeAcls unchanged.

/// `ResourceType` codes.
pub(crate) mod resource {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const TOPIC: i8 = 2;
    pub(crate) const GROUP: i8 = 3;
    pub(crate) const CLUSTER: i8 = 4;
    pub(crate) const TRANSACTIONAL_ID: i8 = 5;
}

/// `PatternType` codes.
pub(crate) mod pattern {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const MATCH: i8 = 2;
    pub(crate) const LITERAL: i8 = 3;
    pub(crate) const PREFIXED: i8 = 4;
}

/// `AclOperation` codes.
pub(crate) mod operation {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const ALL: i8 = 2;
    pub(crate) const READ: i8 = 3;
    pub(crate) const WRITE: i8 = 4;
    pub(crate) const CREATE: i8 = 5;
    pub(crate) const DELETE: i8 = 6;
    pub(crate) const ALTER: i8 = 7;
    pub(crate) const DESCRIBE: i8 = 8;
    pub(crate) const CLUSTER_ACTION: i8 = 9;
    pub(crate) const DESCRIBE_CONFIGS: i8 = 10;
    pub(crate) const ALTER_CONFIGS: i8 = 11;
    pub(crate) const IDEMPOTENT_WRITE: i8 = 12;
}

/// `AclPermissionType` codes.
pub(crate) mod permission {
    pub(crate) const ANY: i8 = 1;
    pub(crate) const DENY: i8 = 2;
    pub(crate) const ALLOW: i8 = 3;
}

/// The name of the one cluster resource.
pub(crate) const CLUSTER_NAME: &str = "kafka-cluster";
/// The literal name that matches every resource of its type.
pub(crate) const WILDCARD: &str = "*";

/// One stored ACL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct AclBinding {
    pub(crate) resource_type: i8,
    pub(crate) pattern_type: i8,
    pub(crate) resource_name: String,
    pub(crate) principal: String,
    pub(crate) host: String,
    pub(crate) operation: i8,
    pub(crate) permission: i8,
}

impl AclBinding {
    /// Why this binding cannot be stored (Kafka's INVALID_REQUEST message), if it cannot.
    pub(crate) fn invalid(&self) -> Option<&'static str> {
        if !matches!(
            self.resource_type,
            resource::TOPIC | resource::GROUP | resource::CLUSTER | resource::TRANSACTIONAL_ID
        ) {
            return Some("Invalid resource type: only TOPIC, GROUP, CLUSTER and TRANSACTIONAL_ID");
        }
        if !matches!(self.pattern_type, pattern::LITERAL | pattern::PREFIXED) {
            return Some("Invalid pattern type: only LITERAL and PREFIXED");
        }
        if self.resource_name.is_empty() {
            return Some("Resource name must not be empty");
        }
        if self.resource_type == resource::CLUSTER && self.resource_name != CLUSTER_NAME {
            return Some("The only valid name for the CLUSTER resource is kafka-cluster");
        }
        if !(operation::ALL..=operation::IDEMPOTENT_WRITE).contains(&self.operation) {
            return Some("Invalid operation");
        }
        if !matches!(self.permission, permission::DENY | permission::ALLOW) {
            return Some("Invalid permission type: only DENY and ALLOW");
        }
        if !self.principal.starts_with("User:") || self.principal.len() == "User:".len() {
            return Some("Invalid principal: expected User:<name> or User:*");
        }
        if self.host.is_empty() {
            return Some("Invalid host: expected an address or *");
        }
        None
    }

    fn name_matches(&self, name: &str) -> bool {
        match self.pattern_type {
            pattern::LITERAL => self.resource_name == name || self.resource_name == WILDCARD,
            pattern::PREFIXED => name.starts_with(&self.resource_name),
            _ => false,
        }
    }

    /// Whether this binding applies to `principal` from `host` on (`resource_type`, `name`),
    /// whatever the operation.
    fn applies(&self, principal: &str, host: &str, resource_type: i8, name: &str) -> bool {
        self.resource_type == resource_type
            && (self.principal == principal || self.principal == "User:*")
            && (self.host == host || self.host == WILDCARD)
            && self.name_matches(name)
    }
}

/// Operations whose allow grants `requested` too (itself, ALL, and those implying it).
fn granting(requested: i8) -> &'static [i8] {
    use operation::*;
    match requested {
        DESCRIBE => &[DESCRIBE, ALL, READ, WRITE, DELETE, ALTER],
        DESCRIBE_CONFIGS => &[DESCRIBE_CONFIGS, ALL, ALTER_CONFIGS],
        READ => &[READ, ALL],
        WRITE => &[WRITE, ALL],
        CREATE => &[CREATE, ALL],
        DELETE => &[DELETE, ALL],
        ALTER => &[ALTER, ALL],
        CLUSTER_ACTION => &[CLUSTER_ACTION, ALL],
        ALTER_CONFIGS => &[ALTER_CONFIGS, ALL],
        IDEMPOTENT_WRITE => &[IDEMPOTENT_WRITE, ALL],
        _ => &[],
    }
}

/// Whether `bindings` let `principal` from `host` do `requested` on (`resource_type`, `name`):
/// no applicable DENY and at least one applicable ALLOW.
pub(crate) fn allowed(
    bindings: &[AclBinding],
    principal: &str,
    host: &str,
    requested: i8,
    resource_type: i8,
    name: &str,
) -> bool {
    let mut allow = false;
    for binding in bindings {
        if !binding.applies(principal, host, resource_type, name) {
            continue;
        }
        match binding.permission {
            permission::DENY
                if binding.operation == requested || binding.operation == operation::ALL =>
            {
                return false;
            }
            permission::ALLOW if granting(requested).contains(&binding.operation) => {
                allow = true;
            }
            _ => {}
        }
    }
    allow
}

/// A DescribeAcls / DeleteAcls filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclFilter {
    pub(crate) resource_type: i8,
    pub(crate) resource_name: Option<String>,
    pub(crate) pattern_type: i8,
    pub(crate) principal: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) operation: i8,
    pub(crate) permission: i8,
}

impl AclFilter {
    /// Why the filter cannot be used, if it cannot (an UNKNOWN code anywhere).
    pub(crate) fn invalid(&self) -> Option<&'static str> {
        (self.resource_type < resource::ANY
            || self.pattern_type < pattern::ANY
            || self.operation < operation::ANY
            || self.permission < permission::ANY)
            .then_some("Filters with UNKNOWN codes match nothing and are refused")
    }

    /// Whether `binding` is one this filter selects. A MATCH pattern selects the bindings that
    /// would apply to the named resource (literal equal, `*`, and prefixes of the name).
    pub(crate) fn matches(&self, binding: &AclBinding) -> bool {
        let code = |filter: i8, any: i8, value: i8| filter == any || filter == value;
        let text =
            |filter: &Option<String>, value: &str| filter.as_deref().is_none_or(|f| f == value);
        let name_and_pattern = match (self.pattern_type, &self.resource_name) {
            (pattern::MATCH, Some(name)) => binding.name_matches(name),
            (pattern::MATCH, None) => true,
            (kind, name) => {
                code(kind, pattern::ANY, binding.pattern_type) && text(name, &binding.resource_name)
            }
        };
        code(self.resource_type, resource::ANY, binding.resource_type)
            && name_and_pattern
            && text(&self.principal, &binding.principal)
            && text(&self.host, &binding.host)
            && code(self.operation, operation::ANY, binding.operation)
            && code(self.permission, permission::ANY, binding.permission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(kind: i8, pattern: i8, name: &str, principal: &str, op: i8, perm: i8) -> AclBinding {
        AclBinding {
            resource_type: kind,
            pattern_type: pattern,
            resource_name: name.to_owned(),
            principal: principal.to_owned(),
            host: "*".to_owned(),
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn deny_wins_and_nothing_applicable_denies() {
        use operation::*;
        let acls = vec![
            binding(
                resource::TOPIC,
                pattern::PREFIXED,
                "orders",
                "User:alice",
                ALL,
                permission::ALLOW,
            ),
            binding(
                resource::TOPIC,
                pattern::LITERAL,
                "orders.secret",
                "User:alice",
                READ,
                permission::DENY,
            ),
            binding(
                resource::TOPIC,
                pattern::LITERAL,
                "*",
                "User:*",
                DESCRIBE,
                permission::ALLOW,
            ),
        ];
        let check =
            |principal, op, name| allowed(&acls, principal, "10.0.0.1", op, resource::TOPIC, name);
        assert!(check("User:alice", WRITE, "orders.eu"));
        assert!(check("User:alice", READ, "orders.eu"));
        assert!(!check("User:alice", READ, "orders.secret"), "deny wins");
        assert!(
            check("User:alice", WRITE, "orders.secret"),
            "only READ is denied"
        );
        assert!(!check("User:bob", READ, "orders.eu"), "no allow for bob");
        assert!(
            check("User:bob", DESCRIBE, "anything"),
            "wildcard literal, any principal"
        );
        assert!(
            !allowed(&acls, "User:alice", "h", READ, resource::GROUP, "orders"),
            "other type"
        );
    }

    #[test]
    fn implied_operations_allow_but_do_not_deny() {
        use operation::*;
        let acls = vec![
            binding(
                resource::GROUP,
                pattern::LITERAL,
                "g",
                "User:a",
                READ,
                permission::ALLOW,
            ),
            binding(
                resource::TOPIC,
                pattern::LITERAL,
                "t",
                "User:a",
                ALTER_CONFIGS,
                permission::ALLOW,
            ),
            binding(
                resource::TOPIC,
                pattern::LITERAL,
                "t",
                "User:a",
                WRITE,
                permission::DENY,
            ),
        ];
        assert!(allowed(
            &acls,
            "User:a",
            "h",
            DESCRIBE,
            resource::GROUP,
            "g"
        ));
        assert!(!allowed(&acls, "User:a", "h", DELETE, resource::GROUP, "g"));
        assert!(allowed(
            &acls,
            "User:a",
            "h",
            DESCRIBE_CONFIGS,
            resource::TOPIC,
            "t"
        ));
        assert!(!allowed(&acls, "User:a", "h", WRITE, resource::TOPIC, "t"));
    }

    #[test]
    fn filters_select_by_every_field_and_match_patterns() {
        use operation::*;
        let literal = binding(
            resource::TOPIC,
            pattern::LITERAL,
            "t1",
            "User:a",
            READ,
            permission::ALLOW,
        );
        let prefixed = binding(
            resource::TOPIC,
            pattern::PREFIXED,
            "t",
            "User:b",
            WRITE,
            permission::DENY,
        );
        let any = AclFilter {
            resource_type: resource::ANY,
            resource_name: None,
            pattern_type: pattern::ANY,
            principal: None,
            host: None,
            operation: operation::ANY,
            permission: permission::ANY,
        };
        assert!(any.matches(&literal) && any.matches(&prefixed));
        let by_match = AclFilter {
            pattern_type: pattern::MATCH,
            resource_name: Some("t1".into()),
            ..any.clone()
        };
        assert!(by_match.matches(&literal) && by_match.matches(&prefixed));
        let exact = AclFilter {
            pattern_type: pattern::LITERAL,
            resource_name: Some("t".into()),
            ..any.clone()
        };
        assert!(!exact.matches(&literal) && !exact.matches(&prefixed));
        let denies = AclFilter {
            permission: permission::DENY,
            ..any.clone()
        };
        assert!(!denies.matches(&literal) && denies.matches(&prefixed));
        assert!(
            AclFilter {
                operation: 0,
                ..any
            }
            .invalid()
            .is_some()
        );
        assert!(literal.invalid().is_none());
        let cluster = binding(
            resource::CLUSTER,
            pattern::LITERAL,
            "other",
            "User:a",
            ALTER,
            permission::ALLOW,
        );
        assert!(cluster.invalid().is_some());
    }
}
