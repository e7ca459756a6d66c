//! Pod and pod template defaults (`SetDefaults_PodSpec`, `SetDefaults_Container`,
//! `SetDefaults_Probe`, `SetDefaults_Volume`, ...).

use k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, EmptyDirVolumeSource, EnvVar, Pod, PodSecurityContext,
    PodSpec, Probe, ResourceRequirements, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;
use std::collections::BTreeMap;

use crate::quantity::Quantity;

/// Mode 0644 of projected files.
const DEFAULT_FILE_MODE: i32 = 0o644;

fn set_if_none<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

/// An empty string counts as unset, as Go's zero value does.
fn set_if_empty(field: &mut Option<String>, value: &str) {
    if field.as_deref().unwrap_or("").is_empty() {
        *field = Some(value.to_string());
    }
}

/// Defaults of a pod: its spec as in any template, plus what only pods get
/// (requests from limits, service links, host-network ports).
pub fn default_pod(pod: &mut Pod) {
    let spec = pod.spec.get_or_insert_with(Default::default);
    default_pod_spec(spec);
    let init = spec.init_containers.iter_mut().flatten();
    for container in spec.containers.iter_mut().chain(init) {
        if let Some(resources) = container.resources.as_mut() {
            default_requests_to_limits(resources);
        }
        if spec.host_network == Some(true) {
            for port in container.ports.iter_mut().flatten() {
                if port.host_port.unwrap_or(0) == 0 {
                    port.host_port = Some(port.container_port);
                }
            }
        }
    }
    set_if_none(&mut spec.enable_service_links, true);
}

/// Requests not given take the limit's value.
fn default_requests_to_limits(resources: &mut ResourceRequirements) {
    let Some(limits) = &resources.limits else {
        return;
    };
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    for (name, limit) in limits {
        requests
            .entry(name.clone())
            .or_insert_with(|| limit.clone());
    }
}

/// Defaults of a pod spec, also inside Deployment, ReplicaSet, DaemonSet and Job templates.
pub fn default_pod_spec(spec: &mut PodSpec) {
    set_if_empty(&mut spec.dns_policy, "ClusterFirst");
    set_if_empty(&mut spec.restart_policy, "Always");
    set_if_none(&mut spec.security_context, PodSecurityContext::default());
    set_if_none(&mut spec.termination_grace_period_seconds, 30);
    set_if_empty(&mut spec.scheduler_name, "default-scheduler");
    for volume in spec.volumes.iter_mut().flatten() {
        default_volume(volume);
    }
    let init = spec.init_containers.iter_mut().flatten();
    for container in spec.containers.iter_mut().chain(init) {
        default_container(container);
    }
    for container in spec.ephemeral_containers.iter_mut().flatten() {
        set_if_empty(
            &mut container.termination_message_path,
            "/dev/termination-log",
        );
        set_if_empty(&mut container.termination_message_policy, "File");
        set_if_empty(
            &mut container.image_pull_policy,
            &pull_policy_for(container.image.as_deref()),
        );
    }
}

/// `Always` for `:latest` or an untagged image, else `IfNotPresent`.
pub fn pull_policy_for(image: Option<&str>) -> String {
    let image = image.unwrap_or("");
    let (name, has_digest) = match image.split_once('@') {
        Some((name, _)) => (name, true),
        None => (image, false),
    };
    // A tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last_part = name.rsplit('/').next().unwrap_or(name);
    let tag = last_part.rsplit_once(':').map(|(_, tag)| tag);
    let policy = match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if has_digest => "IfNotPresent",
        None => "Always",
    };
    policy.to_string()
}

fn default_container(c: &mut Container) {
    // Kubernetes always shows `resources`, `{}` when empty (a Go struct field).
    c.resources.get_or_insert_with(Default::default);
    set_if_empty(
        &mut c.image_pull_policy,
        &pull_policy_for(c.image.as_deref()),
    );
    set_if_empty(&mut c.termination_message_path, "/dev/termination-log");
    set_if_empty(&mut c.termination_message_policy, "File");
    for port in c.ports.iter_mut().flatten() {
        set_if_empty(&mut port.protocol, "TCP");
    }
    for probe in [
        &mut c.liveness_probe,
        &mut c.readiness_probe,
        &mut c.startup_probe,
    ]
    .into_iter()
    .flatten()
    {
        default_probe(probe);
    }
    if let Some(lifecycle) = c.lifecycle.as_mut() {
        for handler in [&mut lifecycle.post_start, &mut lifecycle.pre_stop]
            .into_iter()
            .flatten()
        {
            if let Some(http) = handler.http_get.as_mut() {
                set_if_empty(&mut http.path, "/");
                set_if_empty(&mut http.scheme, "HTTP");
            }
        }
    }
    for var in c.env.iter_mut().flatten() {
        default_env_var(var);
    }
    if let Some(resources) = c.resources.as_mut() {
        canonicalize_resource_list(resources.limits.as_mut());
        canonicalize_resource_list(resources.requests.as_mut());
    }
}

/// Kubernetes stores quantities in canonical form (`0.5` becomes `500m`).
/// Unparsable ones are left for validation to report.
fn canonicalize_resource_list(list: Option<&mut BTreeMap<String, ApiQuantity>>) {
    for quantity in list.into_iter().flat_map(|l| l.values_mut()) {
        if let Ok(parsed) = Quantity::try_from(&*quantity) {
            *quantity = parsed.into();
        }
    }
}

fn default_env_var(var: &mut EnvVar) {
    if let Some(field_ref) = var
        .value_from
        .as_mut()
        .and_then(|from| from.field_ref.as_mut())
    {
        set_if_empty(&mut field_ref.api_version, "v1");
    }
}

fn default_probe(probe: &mut Probe) {
    let zero_to = |field: &mut Option<i32>, value: i32| {
        if field.unwrap_or(0) == 0 {
            *field = Some(value);
        }
    };
    zero_to(&mut probe.timeout_seconds, 1);
    zero_to(&mut probe.period_seconds, 10);
    zero_to(&mut probe.success_threshold, 1);
    zero_to(&mut probe.failure_threshold, 3);
    if let Some(http) = probe.http_get.as_mut() {
        set_if_empty(&mut http.path, "/");
        set_if_empty(&mut http.scheme, "HTTP");
    }
    if let Some(grpc) = probe.grpc.as_mut() {
        set_if_none(&mut grpc.service, String::new());
    }
}

/// The names of the sources a volume has (`emptyDir`, `configMap`, ...).
pub(crate) fn volume_sources(volume: &Volume) -> Vec<String> {
    // Every field of a Volume but `name` is a source; reading the serialized
    // keys covers all of them.
    match serde_json::to_value(volume) {
        Ok(serde_json::Value::Object(map)) => map
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| k != "name")
            .collect(),
        _ => Vec::new(),
    }
}

fn default_volume(volume: &mut Volume) {
    if volume_sources(volume).is_empty() {
        volume.empty_dir = Some(EmptyDirVolumeSource::default());
    }
    if let Some(host_path) = volume.host_path.as_mut() {
        set_if_none(&mut host_path.type_, String::new());
    }
    if let Some(secret) = volume.secret.as_mut() {
        set_if_none(&mut secret.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(config_map) = volume.config_map.as_mut() {
        set_if_none(&mut config_map.default_mode, DEFAULT_FILE_MODE);
    }
    if let Some(downward) = volume.downward_api.as_mut() {
        set_if_none(&mut downward.default_mode, DEFAULT_FILE_MODE);
        default_downward_items(downward.items.as_deref_mut());
    }
    if let Some(projected) = volume.projected.as_mut() {
        set_if_none(&mut projected.default_mode, DEFAULT_FILE_MODE);
        for source in projected.sources.iter_mut().flatten() {
            if let Some(downward) = source.downward_api.as_mut() {
                default_downward_items(downward.items.as_deref_mut());
            }
            if let Some(token) = source.service_account_token.as_mut() {
                set_if_none(&mut token.expiration_seconds, 3600);
            }
        }
    }
}

fn default_downward_items(items: Option<&mut [DownwardAPIVolumeFile]>) {
    for item in items.into_iter().flatten() {
        if let Some(field_ref) = item.field_ref.as_mut() {
            set_if_empty(&mut field_ref.api_version, "v1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pull_policy_follows_the_tag() {
        let cases = [
            ("nginx", "Always"),
            ("nginx:latest", "Always"),
            ("nginx:1.25", "IfNotPresent"),
            ("localhost:5000/nginx", "Always"),
            ("localhost:5000/nginx:1.0", "IfNotPresent"),
            ("nginx@sha256:abcd", "IfNotPresent"),
            ("nginx:latest@sha256:abcd", "Always"),
        ];
        for (image, want) in cases {
            assert_eq!(pull_policy_for(Some(image)), want, "{image}");
        }
    }

    #[test]
    fn a_minimal_pod_gets_kubernetes_defaults() {
        let mut pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{
                    "name": "web", "image": "nginx",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "0.5", "memory": "1.5Gi"}},
                    "livenessProbe": {"httpGet": {"port": 80}},
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}]
                }],
                "volumes": [{"name": "cache"}, {"name": "conf", "configMap": {"name": "conf"}}, {"name": "s", "secret": {"secretName": "s"}}]
            }
        }))
        .unwrap();
        default_pod(&mut pod);
        let got = serde_json::to_value(&pod).unwrap();
        let want = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "containers": [{
                    "name": "web", "image": "nginx",
                    "imagePullPolicy": "Always",
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "resources": {"limits": {"cpu": "500m", "memory": "1536Mi"}, "requests": {"cpu": "500m", "memory": "1536Mi"}},
                    "livenessProbe": {"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"},
                        "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                    "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "spec.nodeName"}}}],
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"
                }],
                "volumes": [
                    {"name": "cache", "emptyDir": {}},
                    {"name": "conf", "configMap": {"name": "conf", "defaultMode": 420}},
                    {"name": "s", "secret": {"secretName": "s", "defaultMode": 420}}
                ],
                "dnsPolicy": "ClusterFirst",
                "enableServiceLinks": true,
                "restartPolicy": "Always",
                "schedulerName": "default-scheduler",
                "securityContext": {},
                "terminationGracePeriodSeconds": 30
            }
        });
        assert_eq!(got, want);
    }

    #[test]
    fn given_values_are_kept_and_host_network_ports_copied() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "hostNetwork": true, "restartPolicy": "Never", "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "web", "image": "nginx:1.25", "imagePullPolicy": "Never",
                    "ports": [{"containerPort": 8080, "protocol": "UDP"}]}]
            }
        }))
        .unwrap();
        default_pod(&mut pod);
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.termination_grace_period_seconds, Some(5));
        let c = &spec.containers[0];
        assert_eq!(c.image_pull_policy.as_deref(), Some("Never"));
        let port = &c.ports.as_ref().unwrap()[0];
        assert_eq!(
            (port.protocol.as_deref(), port.host_port),
            (Some("UDP"), Some(8080))
        );
    }
}
