//! Pods, pod templates and pod specs (`pkg/apis/core/validation`: `ValidatePodSpec` and friends).
//! Validation expects a defaulted object, as Kubernetes validates after defaulting.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvVar, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Toleration, TopologySpreadConstraint,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::field::{BadValue, FieldError, Path};
use super::meta::{self, invalid_each, validate_nonnegative, Scope};
use super::names;
use crate::defaults::volume_sources;
use crate::quantity::Quantity;

pub const SUPPORTED_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
pub const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const TERMINATION_MESSAGE_POLICIES: [&str; 2] = ["File", "FallbackToLogsOnError"];
const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
/// Pod fields an environment variable can take (`fieldRef`), sorted as Kubernetes lists them;
/// `metadata.labels['k']` and `metadata.annotations['k']` are accepted besides.
const FIELD_REF_PATHS: [&str; 9] = [
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
];

pub fn validate_pod(pod: &Pod) -> Vec<FieldError> {
    let mut errs = meta::validate_object_meta(
        &pod.metadata,
        Scope::Namespaced,
        names::name_is_dns_subdomain,
        &Path::new("metadata"),
    );
    match &pod.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, &Path::new("spec"))),
        None => errs.push(FieldError::required(&Path::new("spec"), "")),
    }
    errs
}

/// A pod template inside a workload (path is e.g. `spec.template`).
pub fn validate_pod_template_spec(template: &PodTemplateSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(m) = &template.metadata {
        // Kubernetes reports template labels at `<path>.labels`, without `metadata`.
        errs.extend(meta::validate_labels(
            m.labels.as_ref(),
            &path.child("labels"),
        ));
        errs.extend(meta::validate_annotations(
            m.annotations.as_ref(),
            &path.child("annotations"),
        ));
    }
    match &template.spec {
        Some(spec) => errs.extend(validate_pod_spec(spec, &path.child("spec"))),
        None => errs.push(FieldError::required(&path.child("spec"), "")),
    }
    errs
}

pub fn validate_pod_spec(spec: &PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    errs.extend(validate_volumes(volumes, &path.child("volumes")));
    let volume_names: BTreeSet<&str> = volumes.iter().map(|v| v.name.as_str()).collect();

    if spec.containers.is_empty() {
        errs.push(FieldError::required(&path.child("containers"), ""));
    }
    let mut container_names = BTreeSet::new();
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let groups = [
        (&spec.containers[..], "containers", false),
        (init_containers, "initContainers", true),
    ];
    for (containers, field, init) in groups {
        for (i, c) in containers.iter().enumerate() {
            let p = path.child(field).index(i);
            if !c.name.is_empty() && !container_names.insert(c.name.as_str()) {
                errs.push(FieldError::duplicate(&p.child("name"), c.name.as_str()));
            }
            errs.extend(validate_container(c, &volume_names, init, &p));
        }
    }

    if spec.host_network == Some(true) {
        errs.extend(validate_host_network(
            &spec.containers,
            &path.child("containers"),
        ));
    }
    errs.extend(validate_enum(
        spec.restart_policy.as_deref(),
        &RESTART_POLICIES,
        &path.child("restartPolicy"),
    ));
    errs.extend(validate_enum(
        spec.dns_policy.as_deref(),
        &DNS_POLICIES,
        &path.child("dnsPolicy"),
    ));
    if spec.dns_policy.as_deref() == Some("None") && spec.dns_config.is_none() {
        errs.push(FieldError::required(
            &path.child("dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        ));
    }
    errs.extend(meta::validate_labels(
        spec.node_selector.as_ref(),
        &path.child("nodeSelector"),
    ));
    let dns_subdomain_fields = [
        ("serviceAccountName", &spec.service_account_name),
        ("nodeName", &spec.node_name),
    ];
    for (field, value) in dns_subdomain_fields {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(invalid_each(
                &path.child(field),
                value,
                names::is_dns1123_subdomain(value),
            ));
        }
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(invalid_each(
                &path.child(field),
                value,
                names::is_dns1123_label(value),
            ));
        }
    }
    if let Some(seconds) = spec.active_deadline_seconds {
        if !(1..=i32::MAX as i64).contains(&seconds) {
            errs.push(FieldError::invalid(
                &path.child("activeDeadlineSeconds"),
                seconds,
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    if let Some(affinity) = &spec.affinity {
        errs.extend(validate_affinity(affinity, &path.child("affinity")));
    }
    errs.extend(validate_tolerations(
        spec.tolerations.as_deref().unwrap_or_default(),
        &path.child("tolerations"),
    ));
    errs.extend(validate_topology_spread(
        spec.topology_spread_constraints
            .as_deref()
            .unwrap_or_default(),
        &path.child("topologySpreadConstraints"),
    ));
    errs
}

fn validate_topology_spread(
    constraints: &[TopologySpreadConstraint],
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, c) in constraints.iter().enumerate() {
        let p = path.index(i);
        if c.max_skew <= 0 {
            errs.push(FieldError::invalid(
                &p.child("maxSkew"),
                c.max_skew,
                "must be greater than zero",
            ));
        }
        if c.topology_key.is_empty() {
            errs.push(FieldError::required(
                &p.child("topologyKey"),
                "can not be empty",
            ));
        } else {
            errs.extend(meta::validate_label_name(
                &c.topology_key,
                &p.child("topologyKey"),
            ));
        }
        let action = c.when_unsatisfiable.as_str();
        if !matches!(action, "DoNotSchedule" | "ScheduleAnyway") {
            errs.push(FieldError::not_supported(
                &p.child("whenUnsatisfiable"),
                action,
                &["DoNotSchedule", "ScheduleAnyway"],
            ));
        }
        let repeated = constraints[i + 1..].iter().any(|other| {
            other.topology_key == c.topology_key && other.when_unsatisfiable == c.when_unsatisfiable
        });
        if repeated {
            errs.push(FieldError::duplicate(
                &p.child("{topologyKey, whenUnsatisfiable}"),
                format!("{{{}, {}}}", c.topology_key, action),
            ));
        }
        if let Some(min_domains) = c.min_domains {
            let mp = p.child("minDomains");
            if min_domains <= 0 {
                errs.push(FieldError::invalid(
                    &mp,
                    min_domains,
                    "must be greater than 0",
                ));
            }
            if action != "DoNotSchedule" {
                errs.push(FieldError::invalid(
                    &mp,
                    min_domains,
                    &format!(
                        "can only use minDomains if whenUnsatisfiable=DoNotSchedule, not {action}"
                    ),
                ));
            }
        }
        if let Some(selector) = &c.label_selector {
            errs.extend(meta::validate_label_selector(
                selector,
                &p.child("labelSelector"),
            ));
        }
    }
    errs
}

/// An optional enum field that defaulting fills: Required when empty, else one of `allowed`.
fn validate_enum(value: Option<&str>, allowed: &[&str], path: &Path) -> Vec<FieldError> {
    match value.unwrap_or("") {
        "" => vec![FieldError::required(path, "")],
        v if allowed.contains(&v) => Vec::new(),
        v => vec![FieldError::not_supported(path, v, allowed)],
    }
}

fn validate_volumes(volumes: &[Volume], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, volume) in volumes.iter().enumerate() {
        let p = path.index(i);
        errs.extend(validate_volume_source(volume, &p));
        let name_path = p.child("name");
        if volume.name.is_empty() {
            errs.push(FieldError::required(&name_path, ""));
        } else {
            errs.extend(invalid_each(
                &name_path,
                &volume.name,
                names::is_dns1123_label(&volume.name),
            ));
        }
        if !seen.insert(volume.name.as_str()) {
            errs.push(FieldError::duplicate(&name_path, volume.name.as_str()));
        }
    }
    errs
}

/// Exactly one source per volume, and the basic fields of the common sources.
fn validate_volume_source(volume: &Volume, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match volume_sources(volume).as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [_] => {}
        [_, extra @ ..] => {
            for source in extra {
                errs.push(FieldError::forbidden(
                    &path.child(source),
                    "may not specify more than 1 volume type",
                ));
            }
        }
    }
    let mut check_mode = |mode: Option<i32>, p: Path| {
        if let Some(mode) = mode.filter(|m| !(0..=0o777).contains(m)) {
            errs.push(FieldError::invalid(
                &p.child("defaultMode"),
                mode,
                FILE_MODE_ERROR,
            ));
        }
    };
    if let Some(cm) = &volume.config_map {
        check_mode(cm.default_mode, path.child("configMap"));
    }
    if let Some(secret) = &volume.secret {
        check_mode(secret.default_mode, path.child("secret"));
    }
    if let Some(d) = &volume.downward_api {
        check_mode(d.default_mode, path.child("downwardAPI"));
    }
    if let Some(pr) = &volume.projected {
        check_mode(pr.default_mode, path.child("projected"));
    }
    if let Some(cm) = &volume.config_map {
        if cm.name.is_empty() {
            errs.push(FieldError::required(
                &path.child("configMap").child("name"),
                "",
            ));
        }
    }
    if let Some(secret) = &volume.secret {
        if secret.secret_name.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(
                &path.child("secret").child("secretName"),
                "",
            ));
        }
    }
    if let Some(host_path) = &volume.host_path {
        if host_path.path.is_empty() {
            errs.push(FieldError::required(
                &path.child("hostPath").child("path"),
                "",
            ));
        }
    }
    if let Some(claim) = &volume.persistent_volume_claim {
        if claim.claim_name.is_empty() {
            errs.push(FieldError::required(
                &path.child("persistentVolumeClaim").child("claimName"),
                "",
            ));
        }
    }
    errs
}

fn validate_container(
    c: &Container,
    volumes: &BTreeSet<&str>,
    init: bool,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(&path.child("name"), ""));
    } else {
        errs.extend(invalid_each(
            &path.child("name"),
            &c.name,
            names::is_dns1123_label(&c.name),
        ));
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(&path.child("image"), ""));
    }
    errs.extend(validate_container_ports(
        c.ports.as_deref().unwrap_or_default(),
        &path.child("ports"),
    ));
    errs.extend(validate_env(
        c.env.as_deref().unwrap_or_default(),
        &path.child("env"),
    ));
    errs.extend(validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
        &path.child("volumeMounts"),
    ));
    if let Some(resources) = &c.resources {
        errs.extend(validate_resources(resources, &path.child("resources")));
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    let restartable_init = c.restart_policy.as_deref() == Some("Always");
    for (field, probe, success_must_be_one) in probes {
        let Some(probe) = probe else { continue };
        let p = path.child(field);
        if init && !restartable_init {
            errs.push(FieldError::forbidden(
                &p,
                "may not be set for init containers without restartPolicy=Always",
            ));
            continue;
        }
        errs.extend(validate_probe(probe, success_must_be_one, &p));
    }
    errs.extend(validate_enum(
        c.image_pull_policy.as_deref(),
        &PULL_POLICIES,
        &path.child("imagePullPolicy"),
    ));
    errs.extend(validate_enum(
        c.termination_message_policy.as_deref(),
        &TERMINATION_MESSAGE_POLICIES,
        &path.child("terminationMessagePolicy"),
    ));
    errs
}

fn validate_container_ports(ports: &[ContainerPort], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = names::is_valid_port_name(name);
            if !msgs.is_empty() {
                errs.extend(invalid_each(&p.child("name"), name, msgs));
            } else if !seen.insert(name) {
                errs.push(FieldError::duplicate(&p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(&p.child("containerPort"), ""));
        } else {
            for msg in names::is_valid_port_num(port.container_port.into()) {
                errs.push(FieldError::invalid(
                    &p.child("containerPort"),
                    port.container_port,
                    &msg,
                ));
            }
        }
        if let Some(host_port) = port.host_port.filter(|&h| h != 0) {
            for msg in names::is_valid_port_num(host_port.into()) {
                errs.push(FieldError::invalid(&p.child("hostPort"), host_port, &msg));
            }
        }
        errs.extend(validate_protocol(
            port.protocol.as_deref(),
            &p.child("protocol"),
        ));
    }
    errs
}

pub(crate) fn validate_protocol(protocol: Option<&str>, path: &Path) -> Vec<FieldError> {
    validate_enum(protocol, &SUPPORTED_PROTOCOLS, path)
}

fn validate_host_network(containers: &[Container], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, port) in c.ports.iter().flatten().enumerate() {
            let host_port = port.host_port.unwrap_or(0);
            if host_port != 0 && host_port != port.container_port {
                errs.push(FieldError::invalid(
                    &path.index(i).child("ports").index(j).child("hostPort"),
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ));
            }
        }
    }
    errs
}

fn validate_env(vars: &[EnvVar], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, var) in vars.iter().enumerate() {
        let p = path.index(i);
        if var.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        } else {
            errs.extend(invalid_each(
                &p.child("name"),
                &var.name,
                names::is_env_var_name(&var.name),
            ));
        }
        let Some(from) = &var.value_from else {
            continue;
        };
        let from_path = p.child("valueFrom");
        let sources = [
            from.field_ref.is_some(),
            from.resource_field_ref.is_some(),
            from.config_map_key_ref.is_some(),
            from.secret_key_ref.is_some(),
        ];
        let count = sources.iter().filter(|s| **s).count();
        if count == 0 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !var.value.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if count > 1 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
        if let Some(field_ref) = &from.field_ref {
            errs.extend(validate_field_ref(
                &field_ref.field_path,
                field_ref.api_version.as_deref(),
                &from_path.child("fieldRef"),
            ));
        }
        let key_refs = [
            (
                "configMapKeyRef",
                from.config_map_key_ref.as_ref().map(|r| (&r.name, &r.key)),
            ),
            (
                "secretKeyRef",
                from.secret_key_ref.as_ref().map(|r| (&r.name, &r.key)),
            ),
        ];
        for (field, key_ref) in key_refs {
            let Some((name, key)) = key_ref else { continue };
            let p = from_path.child(field);
            if name.is_empty() {
                errs.push(FieldError::required(&p.child("name"), ""));
            }
            if key.is_empty() {
                errs.push(FieldError::required(&p.child("key"), ""));
            } else {
                errs.extend(invalid_each(
                    &p.child("key"),
                    key,
                    names::is_config_map_key(key),
                ));
            }
        }
    }
    errs
}

/// A `fieldRef` of the downward API: a known field, or a label or annotation by key.
fn validate_field_ref(field_path: &str, api_version: Option<&str>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if api_version.unwrap_or("").is_empty() {
        errs.push(FieldError::required(&path.child("apiVersion"), ""));
    }
    let subscripted = field_path
        .strip_suffix("']")
        .and_then(|p| p.split_once("['"));
    match subscripted {
        _ if field_path.is_empty() => errs.push(FieldError::required(&path.child("fieldPath"), "")),
        Some(("metadata.labels", key)) => errs.extend(meta::validate_label_name(key, path)),
        Some(("metadata.annotations", key)) => {
            errs.extend(meta::validate_label_name(&key.to_lowercase(), path))
        }
        Some((other, _)) => errs.push(FieldError::invalid(
            path,
            other,
            "does not support subscript",
        )),
        None if !FIELD_REF_PATHS.contains(&field_path) => errs.push(FieldError::not_supported(
            &path.child("fieldPath"),
            field_path,
            &FIELD_REF_PATHS,
        )),
        None => {}
    }
    errs
}

fn validate_volume_mounts(
    mounts: &[VolumeMount],
    volumes: &BTreeSet<&str>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_points = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let p = path.index(i);
        if mount.name.is_empty() {
            errs.push(FieldError::required(&p.child("name"), ""));
        }
        if !volumes.contains(mount.name.as_str()) {
            errs.push(FieldError::not_found(&p.child("name"), mount.name.as_str()));
        }
        if mount.mount_path.is_empty() {
            errs.push(FieldError::required(&p.child("mountPath"), ""));
        }
        if !mount_points.insert(mount.mount_path.as_str()) {
            errs.push(FieldError::invalid(
                &p.child("mountPath"),
                mount.mount_path.as_str(),
                "must be unique",
            ));
        }
    }
    errs
}

fn is_standard_container_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}

/// Parses each quantity of a resource list, reporting bad names and values.
fn check_resource_list(
    list: Option<&BTreeMap<String, ApiQuantity>>,
    path: &Path,
    errs: &mut Vec<FieldError>,
) -> BTreeMap<String, Quantity> {
    let mut parsed = BTreeMap::new();
    for (name, quantity) in list.into_iter().flatten() {
        let p = path.key(name);
        if !name.contains('/') && !is_standard_container_resource(name) {
            errs.push(FieldError::invalid(
                &p,
                name.as_str(),
                "must be a standard resource for containers",
            ));
        } else if name.contains('/') {
            errs.extend(meta::validate_label_name(name, &p));
        }
        match Quantity::try_from(quantity) {
            Ok(q) if q.is_negative() => errs.push(FieldError::invalid(
                &p,
                q.to_string(),
                meta::IS_NEGATIVE_ERROR_MSG,
            )),
            Ok(q) => {
                parsed.insert(name.clone(), q);
            }
            Err(e) => errs.push(FieldError::invalid(&p, quantity.0.as_str(), &e.to_string())),
        }
    }
    parsed
}

pub fn validate_resources(resources: &ResourceRequirements, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let limits = check_resource_list(resources.limits.as_ref(), &limits_path, &mut errs);
    let requests = check_resource_list(resources.requests.as_ref(), &requests_path, &mut errs);
    for (name, request) in &requests {
        if let Some(limit) = limits.get(name).filter(|limit| request > *limit) {
            errs.push(FieldError::invalid(
                &requests_path,
                request.to_string(),
                &format!("must be less than or equal to {name} limit of {limit}"),
            ));
        }
    }
    errs
}

fn validate_probe(probe: &Probe, success_must_be_one: bool, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let handlers = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ];
    let present: Vec<&str> = handlers
        .iter()
        .filter(|(_, set)| *set)
        .map(|(name, _)| *name)
        .collect();
    match present.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a handler type")),
        [_] => {}
        [_, extra @ ..] => {
            for name in extra {
                errs.push(FieldError::forbidden(
                    &path.child(name),
                    "may not specify more than 1 handler type",
                ));
            }
        }
    }
    let numbers = [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ];
    for (field, value) in numbers {
        errs.extend(validate_nonnegative(
            value.unwrap_or(0).into(),
            &path.child(field),
        ));
    }
    if success_must_be_one {
        if let Some(v) = probe.success_threshold.filter(|&v| v != 1) {
            errs.push(FieldError::invalid(
                &path.child("successThreshold"),
                v,
                "must be 1",
            ));
        }
    }
    if let Some(exec) = &probe.exec {
        if exec.command.as_deref().unwrap_or_default().is_empty() {
            errs.push(FieldError::required(
                &path.child("exec").child("command"),
                "",
            ));
        }
    }
    if let Some(http) = &probe.http_get {
        let p = path.child("httpGet");
        if http.path.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(&p.child("path"), ""));
        }
        errs.extend(validate_port_num_or_name(&http.port, &p.child("port")));
        if let Some(scheme) = http
            .scheme
            .as_deref()
            .filter(|s| !matches!(*s, "HTTP" | "HTTPS"))
        {
            errs.push(FieldError::not_supported(
                &p.child("scheme"),
                scheme,
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(tcp) = &probe.tcp_socket {
        errs.extend(validate_port_num_or_name(
            &tcp.port,
            &path.child("tcpSocket").child("port"),
        ));
    }
    if let Some(grpc) = &probe.grpc {
        for msg in names::is_valid_port_num(grpc.port.into()) {
            errs.push(FieldError::invalid(
                &path.child("grpc").child("port"),
                grpc.port,
                &msg,
            ));
        }
    }
    errs
}

/// A port given by number (1-65535) or by name (an IANA service name).
pub fn validate_port_num_or_name(port: &IntOrString, path: &Path) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) => names::is_valid_port_num((*n).into())
            .iter()
            .map(|msg| FieldError::invalid(path, *n, msg))
            .collect(),
        IntOrString::String(name) => invalid_each(path, name, names::is_valid_port_name(name)),
    }
}

fn validate_affinity(affinity: &Affinity, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(node) = &affinity.node_affinity {
        let p = path.child("nodeAffinity");
        if let Some(required) = &node.required_during_scheduling_ignored_during_execution {
            let rp = p
                .child("requiredDuringSchedulingIgnoredDuringExecution")
                .child("nodeSelectorTerms");
            if required.node_selector_terms.is_empty() {
                errs.push(FieldError::required(
                    &rp,
                    "must have at least one node selector term",
                ));
            }
            for (i, term) in required.node_selector_terms.iter().enumerate() {
                errs.extend(validate_node_selector_term(term, &rp.index(i)));
            }
        }
        let preferred = node
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten();
        for (i, term) in preferred.enumerate() {
            let tp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            if !(1..=100).contains(&term.weight) {
                errs.push(FieldError::invalid(
                    &tp.child("weight"),
                    term.weight,
                    "must be in the range 1-100",
                ));
            }
            errs.extend(validate_node_selector_term(
                &term.preference,
                &tp.child("preference"),
            ));
        }
    }
    let pod_affinities = [
        (
            "podAffinity",
            affinity.pod_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
        (
            "podAntiAffinity",
            affinity.pod_anti_affinity.as_ref().map(|a| {
                (
                    &a.required_during_scheduling_ignored_during_execution,
                    &a.preferred_during_scheduling_ignored_during_execution,
                )
            }),
        ),
    ];
    for (field, terms) in pod_affinities {
        let Some((required, preferred)) = terms else {
            continue;
        };
        let p = path.child(field);
        let required = required.iter().flatten().enumerate().map(|(i, t)| {
            (
                p.child("requiredDuringSchedulingIgnoredDuringExecution")
                    .index(i),
                t,
            )
        });
        let preferred = preferred.iter().flatten().enumerate().map(|(i, w)| {
            let wp = p
                .child("preferredDuringSchedulingIgnoredDuringExecution")
                .index(i);
            if !(1..=100).contains(&w.weight) {
                errs.push(FieldError::invalid(
                    &wp.child("weight"),
                    w.weight,
                    "must be in the range 1-100",
                ));
            }
            (wp.child("podAffinityTerm"), &w.pod_affinity_term)
        });
        let terms: Vec<_> = required.chain(preferred).collect();
        for (tp, term) in terms {
            if term.topology_key.is_empty() {
                errs.push(FieldError::required(
                    &tp.child("topologyKey"),
                    "can not be empty",
                ));
            } else {
                errs.extend(meta::validate_label_name(
                    &term.topology_key,
                    &tp.child("topologyKey"),
                ));
            }
            if let Some(selector) = &term.label_selector {
                errs.extend(meta::validate_label_selector(
                    selector,
                    &tp.child("labelSelector"),
                ));
            }
        }
    }
    errs
}

fn validate_node_selector_term(term: &NodeSelectorTerm, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, req) in term.match_expressions.iter().flatten().enumerate() {
        errs.extend(validate_node_selector_requirement(
            req,
            &path.child("matchExpressions").index(i),
        ));
    }
    for (i, req) in term.match_fields.iter().flatten().enumerate() {
        errs.extend(validate_node_field_selector_requirement(
            req,
            &path.child("matchFields").index(i),
        ));
    }
    errs
}

/// `matchFields` select nodes by `metadata.name` only, with In or NotIn and one value.
fn validate_node_field_selector_requirement(
    req: &NodeSelectorRequirement,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match req.operator.as_str() {
        "In" | "NotIn" => {
            if req.values.as_ref().is_none_or(|v| v.len() != 1) {
                errs.push(FieldError::required(
                    &path.child("values"),
                    "must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                ));
            }
        }
        op => errs.push(FieldError::invalid(
            &path.child("operator"),
            op,
            "not a valid selector operator",
        )),
    }
    if req.key != "metadata.name" {
        errs.push(FieldError::invalid(
            &path.child("key"),
            req.key.as_str(),
            "not a valid field selector key",
        ));
    }
    errs
}

pub fn validate_node_selector_requirement(
    req: &NodeSelectorRequirement,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let values = req.values.as_deref().unwrap_or_default();
    let values_path = path.child("values");
    match req.operator.as_str() {
        "In" | "NotIn" => {
            if values.is_empty() {
                errs.push(FieldError::required(
                    &values_path,
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ));
            }
        }
        "Exists" | "DoesNotExist" => {
            if !values.is_empty() {
                errs.push(FieldError::forbidden(
                    &values_path,
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ));
            }
        }
        "Gt" | "Lt" => {
            if values.len() != 1 {
                errs.push(FieldError::required(
                    &values_path,
                    "must be specified single value when `operator` is 'Lt' or 'Gt'",
                ));
            }
        }
        op => errs.push(FieldError::invalid(
            &path.child("operator"),
            op,
            "not a valid selector operator",
        )),
    }
    errs.extend(meta::validate_label_name(&req.key, &path.child("key")));
    errs
}

pub fn validate_tolerations(tolerations: &[Toleration], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = t.key.as_deref().unwrap_or("");
        let operator = t.operator.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        if !key.is_empty() {
            errs.extend(meta::validate_label_name(key, &p.child("key")));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                &p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                &p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "Equal" | "" => {
                let msgs = names::is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        value,
                        &msgs.join(";"),
                    ));
                }
            }
            "Exists" => {
                if !value.is_empty() {
                    errs.push(FieldError::invalid(
                        &p.child("operator"),
                        value,
                        "value must be empty when `operator` is 'Exists'",
                    ));
                }
            }
            op => errs.push(FieldError::not_supported(
                &p.child("operator"),
                op,
                &["Equal", "Exists"],
            )),
        }
        if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
            errs.push(FieldError::not_supported(
                &p.child("effect"),
                effect,
                &TAINT_EFFECTS,
            ));
        }
    }
    errs
}

pub(crate) fn validate_taint_effect(effect: &str, path: &Path) -> Vec<FieldError> {
    validate_enum(Some(effect), &TAINT_EFFECTS, path)
}

const UPDATABLE_POD_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A pod's spec may only change in its images, activeDeadlineSeconds,
/// added tolerations and scheduling gates.
pub fn validate_pod_update(new: &Pod, old: &Pod) -> Vec<FieldError> {
    let mut errs =
        meta::validate_object_meta_update(&new.metadata, &old.metadata, &Path::new("metadata"));
    errs.extend(validate_pod(new));
    let (Some(new_spec), Some(old_spec)) = (&new.spec, &old.spec) else {
        return errs;
    };
    let spec_path = Path::new("spec");
    if let (Some(new_deadline), Some(old_deadline)) = (
        new_spec.active_deadline_seconds,
        old_spec.active_deadline_seconds,
    ) {
        if new_deadline > old_deadline {
            errs.push(FieldError::invalid(
                &spec_path.child("activeDeadlineSeconds"),
                new_deadline,
                &format!("must be less than or equal to previous value ({old_deadline})"),
            ));
        }
    }
    if old_spec.active_deadline_seconds.is_some() && new_spec.active_deadline_seconds.is_none() {
        errs.push(FieldError::invalid(
            &spec_path.child("activeDeadlineSeconds"),
            BadValue::Null,
            "must not update from a positive integer to nil value",
        ));
    }
    let old_tolerations = old_spec.tolerations.as_deref().unwrap_or_default();
    let new_tolerations = new_spec.tolerations.as_deref().unwrap_or_default();
    if old_tolerations.iter().any(|t| !new_tolerations.contains(t)) {
        errs.push(FieldError::forbidden(
            &spec_path.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    // Everything else must stay: compare with the mutable fields taken from the old spec.
    let mut munged = new_spec.clone();
    let copy_images = |new: &mut [Container], old: &[Container]| {
        if new.len() == old.len() {
            for (n, o) in new.iter_mut().zip(old) {
                n.image.clone_from(&o.image);
            }
        }
    };
    copy_images(&mut munged.containers, &old_spec.containers);
    if let (Some(new_init), Some(old_init)) = (
        munged.init_containers.as_mut(),
        old_spec.init_containers.as_ref(),
    ) {
        copy_images(new_init, old_init);
    }
    munged.active_deadline_seconds = old_spec.active_deadline_seconds;
    munged.tolerations.clone_from(&old_spec.tolerations);
    munged
        .scheduling_gates
        .clone_from(&old_spec.scheduling_gates);
    if old_spec
        .termination_grace_period_seconds
        .is_some_and(|s| s < 0)
        && munged.termination_grace_period_seconds == Some(1)
    {
        munged.termination_grace_period_seconds = old_spec.termination_grace_period_seconds;
    }
    if &munged != old_spec {
        errs.push(FieldError::forbidden(
            &spec_path,
            &format!("pod updates may not change fields other than {UPDATABLE_POD_FIELDS}"),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        let mut pod: Pod = serde_json::from_value(value).expect("test pod");
        defaults::default_namespace_field(&mut pod.metadata);
        defaults::default_pod(&mut pod);
        pod
    }

    fn messages(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn web_pod() -> serde_json::Value {
        json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}})
    }

    #[test]
    fn a_valid_pod_has_no_errors() {
        assert_eq!(
            messages(validate_pod(&pod(web_pod()))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn table_of_invalid_pods() {
        let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": []}}),
                vec!["spec.containers: Required value"],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": [
                    {"name": "web", "image": "a"}, {"name": "web", "image": "b"}]}}),
                vec!["spec.containers[1].name: Duplicate value: \"web\""],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {
                    "initContainers": [{"name": "web", "image": "a"}],
                    "containers": [{"name": "web", "image": "b"}]}}),
                vec!["spec.initContainers[0].name: Duplicate value: \"web\""],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"restartPolicy": "Sometimes",
                    "containers": [{"name": "web", "image": "a"}]}}),
                vec!["spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web"}]}}),
                vec!["spec.containers[0].image: Required value"],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "a", "ports": [
                    {"containerPort": 0}, {"containerPort": 70000, "name": "http"}, {"containerPort": 80, "name": "http", "protocol": "ICMP"},
                    {"containerPort": 81, "hostPort": 70000}]}]}}),
                vec![
                    "spec.containers[0].ports[0].containerPort: Required value",
                    "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                    "spec.containers[0].ports[2].name: Duplicate value: \"http\"",
                    "spec.containers[0].ports[2].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                    "spec.containers[0].ports[3].hostPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                ],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "a", "resources": {
                    "limits": {"cpu": "500m", "memory": "1Gix"}, "requests": {"cpu": "1", "gpu": "1"}}}]}}),
                vec![
                    "spec.containers[0].resources.limits[memory]: Invalid value: \"1Gix\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers",
                    // defaulting copied the bad limit into the requests
                    "spec.containers[0].resources.requests[memory]: Invalid value: \"1Gix\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    "spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m",
                ],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"volumes": [
                    {"name": "data", "emptyDir": {}, "hostPath": {"path": "/x"}}, {"name": "data", "configMap": {"name": "c"}}],
                    "containers": [{"name": "web", "image": "a", "volumeMounts": [
                        {"name": "data", "mountPath": "/d"}, {"name": "nope", "mountPath": "/d"}]}]}}),
                vec![
                    "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type",
                    "spec.volumes[1].name: Duplicate value: \"data\"",
                    "spec.containers[0].volumeMounts[1].name: Not found: \"nope\"",
                    "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique",
                ],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "a",
                    "env": [{"name": "A=B", "value": "x"}, {"name": "OK", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                        {"name": "M", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels"}}}],
                    "livenessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}, "successThreshold": 2},
                    "readinessProbe": {"periodSeconds": 5}}]}}),
                vec![
                    "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                    "spec.containers[0].env[1].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty",
                    "spec.containers[0].env[3].valueFrom.fieldRef.fieldPath: Unsupported value: \"metadata.labels\": supported values: \"metadata.name\", \"metadata.namespace\", \"metadata.uid\", \"spec.nodeName\", \"spec.serviceAccountName\", \"status.hostIP\", \"status.hostIPs\", \"status.podIP\", \"status.podIPs\"",
                    "spec.containers[0].livenessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type",
                    "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
                    "spec.containers[0].readinessProbe: Required value: must specify a handler type",
                ],
            ),
            (
                json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "a"}],
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "zone", "operator": "In"},
                        {"key": "gpu", "operator": "Exists", "values": ["x"]},
                        {"key": "cores", "operator": "Gt", "values": ["1", "2"]},
                        {"key": "x", "operator": "Like", "values": ["1"]}]},
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}, {"key": "spec.x", "operator": "In", "values": ["a"]}]}]}}},
                    "topologySpreadConstraints": [
                        {"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"},
                        {"maxSkew": 1, "topologyKey": "", "whenUnsatisfiable": "Maybe", "minDomains": 2}],
                    "tolerations": [{"operator": "Equal", "value": "x"}, {"key": "k", "operator": "Maybe"}, {"key": "k", "effect": "Never"},
                        {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 5}]}}),
                vec![
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[1].values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[2].values: Required value: must be specified single value when `operator` is 'Lt' or 'Gt'",
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[3].operator: Invalid value: \"Like\": not a valid selector operator",
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchFields[0].values: Required value: must be only one value when `operator` is 'In' or 'NotIn' for node field selector",
                    "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[1].matchFields[1].key: Invalid value: \"spec.x\": not a valid field selector key",
                    "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                    "spec.tolerations[1].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\"",
                    "spec.tolerations[2].effect: Unsupported value: \"Never\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
                    "spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set",
                    "spec.topologySpreadConstraints[0].maxSkew: Invalid value: 0: must be greater than zero",
                    "spec.topologySpreadConstraints[0].{topologyKey, whenUnsatisfiable}: Duplicate value: \"{zone, DoNotSchedule}\"",
                    "spec.topologySpreadConstraints[2].topologyKey: Required value: can not be empty",
                    "spec.topologySpreadConstraints[2].whenUnsatisfiable: Unsupported value: \"Maybe\": supported values: \"DoNotSchedule\", \"ScheduleAnyway\"",
                    "spec.topologySpreadConstraints[2].minDomains: Invalid value: 2: can only use minDomains if whenUnsatisfiable=DoNotSchedule, not Maybe",
                ],
            ),
        ];
        for (input, want) in cases {
            let got = messages(validate_pod(&pod(input.clone())));
            assert_eq!(got, want, "for {input}");
        }
    }

    #[test]
    fn pod_updates_may_change_only_images() {
        let old = pod(web_pod());
        let mut new_image = old.clone();
        new_image.spec.as_mut().unwrap().containers[0].image = Some("nginx:1.26".into());
        assert!(validate_pod_update(&new_image, &old).is_empty());
        let mut new_policy = old.clone();
        new_policy.spec.as_mut().unwrap().restart_policy = Some("Never".into());
        let errs = messages(validate_pod_update(&new_policy, &old));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"));
    }
}
