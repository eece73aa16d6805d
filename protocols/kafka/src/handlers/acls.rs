//! CreateAcls, DescribeAcls and DeleteAcls over the [`crate::acl::Authorizer`]'s bindings.
//!
//! Without `kafka.authorizer` each answers SECURITY_DISABLED (54), as Kafka without an
//! authorizer does. With it, DescribeAcls needs DESCRIBE on the cluster and CreateAcls /
//! DeleteAcls need ALTER on the cluster (CLUSTER_AUTHORIZATION_FAILED otherwise); a binding
//! Kafka would refuse (an unknown code, a cluster named other than `kafka-cluster`, a principal
//! not `User:...`) gets INVALID_REQUEST with the reason, and the others of the request still apply.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, RequestContext};
use crate::acl::model::{AclBinding, AclFilter, CLUSTER_NAME, operation, resource};

const SECURITY_DISABLED: i16 = ResponseError::SecurityDisabled.code();
const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
const INVALID_REQUEST: i16 = ResponseError::InvalidRequest.code();
const UNKNOWN: i16 = ResponseError::UnknownServerError.code();

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

fn binding_of(creation: &AclCreation) -> AclBinding {
    AclBinding {
        resource_type: creation.resource_type,
        pattern_type: creation.resource_pattern_type,
        resource_name: creation.resource_name.to_string(),
        principal: creation.principal.to_string(),
        host: creation.host.to_string(),
        operation: creation.operation,
        permission: creation.permission_type,
    }
}

fn filter_of(
    resource_type: i8,
    name: &Option<StrBytes>,
    pattern_type: i8,
    principal: &Option<StrBytes>,
    host: &Option<StrBytes>,
    operation: i8,
    permission: i8,
) -> AclFilter {
    AclFilter {
        resource_type,
        resource_name: name.as_ref().map(ToString::to_string),
        pattern_type,
        principal: principal.as_ref().map(ToString::to_string),
        host: host.as_ref().map(ToString::to_string),
        operation,
        permission,
    }
}

impl Broker {
    /// Whether the caller may do `operation` on the cluster.
    async fn on_cluster(&self, context: &RequestContext, operation: i8) -> bool {
        self.authorizer
            .allows(
                &context.principal,
                &context.host,
                operation,
                resource::CLUSTER,
                CLUSTER_NAME,
            )
            .await
    }

    pub(super) async fn create_acls(
        &self,
        context: &RequestContext,
        request: CreateAclsRequest,
    ) -> CreateAclsResponse {
        let refuse = |code: i16, message: &str| {
            let results = request
                .creations
                .iter()
                .map(|_| {
                    AclCreationResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(text(message)))
                })
                .collect();
            CreateAclsResponse::default().with_results(results)
        };
        if !self.authorizer.enabled() {
            return refuse(
                SECURITY_DISABLED,
                "No Authorizer is configured (kafka.authorizer).",
            );
        }
        if !self.on_cluster(context, operation::ALTER).await {
            return refuse(CLUSTER_DENIED, "Cluster authorization failed.");
        }
        let mut results = Vec::with_capacity(request.creations.len());
        for creation in &request.creations {
            let binding = binding_of(creation);
            let result = match binding.invalid() {
                Some(reason) => Err((INVALID_REQUEST, reason.to_owned())),
                None => self
                    .authorizer
                    .create(&binding)
                    .await
                    .map_err(|error| (UNKNOWN, error.to_string())),
            };
            results.push(match result {
                Ok(()) => AclCreationResult::default(),
                Err((code, message)) => AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(&message))),
            });
        }
        CreateAclsResponse::default().with_results(results)
    }

    pub(super) async fn describe_acls(
        &self,
        context: &RequestContext,
        request: DescribeAclsRequest,
    ) -> DescribeAclsResponse {
        let refuse = |code: i16, message: &str| {
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(Some(text(message)))
        };
        if !self.authorizer.enabled() {
            return refuse(
                SECURITY_DISABLED,
                "No Authorizer is configured (kafka.authorizer).",
            );
        }
        if !self.on_cluster(context, operation::DESCRIBE).await {
            return refuse(CLUSTER_DENIED, "Cluster authorization failed.");
        }
        let filter = filter_of(
            request.resource_type_filter,
            &request.resource_name_filter,
            request.pattern_type_filter,
            &request.principal_filter,
            &request.host_filter,
            request.operation,
            request.permission_type,
        );
        if let Some(reason) = filter.invalid() {
            return refuse(INVALID_REQUEST, reason);
        }
        let bindings = match self.authorizer.describe(&filter).await {
            Ok(bindings) => bindings,
            Err(error) => return refuse(UNKNOWN, &error.to_string()),
        };
        // One resource entry per (type, name, pattern), in a stable order.
        let mut resources: Vec<DescribeAclsResource> = Vec::new();
        let mut sorted = bindings;
        sorted.sort();
        for binding in sorted {
            let acl = AclDescription::default()
                .with_principal(text(&binding.principal))
                .with_host(text(&binding.host))
                .with_operation(binding.operation)
                .with_permission_type(binding.permission);
            match resources.last_mut() {
                Some(last)
                    if last.resource_type == binding.resource_type
                        && last.pattern_type == binding.pattern_type
                        && *last.resource_name == *binding.resource_name =>
                {
                    last.acls.push(acl);
                }
                _ => resources.push(
                    DescribeAclsResource::default()
                        .with_resource_type(binding.resource_type)
                        .with_resource_name(text(&binding.resource_name))
                        .with_pattern_type(binding.pattern_type)
                        .with_acls(vec![acl]),
                ),
            }
        }
        DescribeAclsResponse::default().with_resources(resources)
    }

    pub(super) async fn delete_acls(
        &self,
        context: &RequestContext,
        request: DeleteAclsRequest,
    ) -> DeleteAclsResponse {
        let refuse = |code: i16, message: &str| {
            let results = request
                .filters
                .iter()
                .map(|_| {
                    DeleteAclsFilterResult::default()
                        .with_error_code(code)
                        .with_error_message(Some(text(message)))
                })
                .collect();
            DeleteAclsResponse::default().with_filter_results(results)
        };
        if !self.authorizer.enabled() {
            return refuse(
                SECURITY_DISABLED,
                "No Authorizer is configured (kafka.authorizer).",
            );
        }
        if !self.on_cluster(context, operation::ALTER).await {
            return refuse(CLUSTER_DENIED, "Cluster authorization failed.");
        }
        let mut results = Vec::with_capacity(request.filters.len());
        for wanted in &request.filters {
            let filter = filter_of(
                wanted.resource_type_filter,
                &wanted.resource_name_filter,
                wanted.pattern_type_filter,
                &wanted.principal_filter,
                &wanted.host_filter,
                wanted.operation,
                wanted.permission_type,
            );
            let deleted = match filter.invalid() {
                Some(reason) => Err((INVALID_REQUEST, reason.to_owned())),
                None => self
                    .authorizer
                    .delete(&filter)
                    .await
                    .map_err(|error| (UNKNOWN, error.to_string())),
            };
            results.push(match deleted {
                Ok(bindings) => DeleteAclsFilterResult::default().with_matching_acls(
                    bindings
                        .into_iter()
                        .map(|binding| {
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(binding.resource_type)
                                .with_resource_name(text(&binding.resource_name))
                                .with_pattern_type(binding.pattern_type)
                                .with_principal(text(&binding.principal))
                                .with_host(text(&binding.host))
                                .with_operation(binding.operation)
                                .with_permission_type(binding.permission)
                        })
                        .collect(),
                ),
                Err((code, message)) => DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(text(&message))),
            });
        }
        DeleteAclsResponse::default().with_filter_results(results)
    }
}
