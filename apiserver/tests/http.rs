//! Every verb and error of the REST API, over HTTP, against a MemStore.

mod common;

use common::{deployment, pod, start};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn create_get_and_not_found() {
    let server = start().await;
    let created = server.post(PODS, pod("web")).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let metadata = &created.body["metadata"];
    assert_eq!(metadata["namespace"], "default");
    assert_eq!(metadata["uid"].as_str().unwrap().len(), 36);
    assert!(metadata["creationTimestamp"].is_string());
    assert!(metadata["resourceVersion"].as_str().unwrap().parse::<i64>().unwrap() > 0);
    assert_eq!(created.body["status"]["phase"], "Pending");
    assert_eq!(created.body["status"]["qosClass"], "BestEffort");

    let got = server.get(&format!("{PODS}/web")).await;
    assert_eq!(got.code, 200);
    assert_eq!(got.body["kind"], "Pod");
    assert_eq!(got.body["apiVersion"], "v1");
    assert_eq!(got.body["metadata"]["resourceVersion"], metadata["resourceVersion"]);

    let missing = server.get(&format!("{PODS}/nope")).await;
    assert_eq!(missing.code, 404);
    assert_eq!(missing.body["kind"], "Status");
    assert_eq!(missing.body["message"], "pods \"nope\" not found");
    assert_eq!(missing.body["reason"], "NotFound");

    let again = server.post(PODS, pod("web")).await;
    assert_eq!(again.code, 409);
    assert_eq!(again.body["reason"], "AlreadyExists");
    assert_eq!(again.body["message"], "pods \"web\" already exists");
}

#[tokio::test]
async fn generate_name_dry_run_and_missing_namespace() {
    let server = start().await;
    let mut generated = pod("");
    generated["metadata"] = json!({"generateName": "web-"});
    let created = server.post(PODS, generated).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let name = created.body["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");

    let dry = server.post(&format!("{PODS}?dryRun=All"), pod("dry")).await;
    assert_eq!(dry.code, 201);
    assert_eq!(server.get(&format!("{PODS}/dry")).await.code, 404);

    let nowhere = server.post("/api/v1/namespaces/nowhere/pods", pod("x")).await;
    assert_eq!(nowhere.code, 404);
    assert_eq!(nowhere.body["message"], "namespaces \"nowhere\" not found");

    let mismatched = server.post(PODS, json!({"kind": "Service", "apiVersion": "v1", "metadata": {"name": "x"}})).await;
    assert_eq!(mismatched.code, 400);
    let garbage = server.call("POST", PODS, "application/json", Some(Value::String("{not json".into()))).await;
    assert_eq!(garbage.code, 400);
}

#[tokio::test]
async fn system_namespaces_exist() {
    let server = start().await;
    let list = server.get("/api/v1/namespaces").await;
    let names: Vec<&str> = list.body["items"].as_array().unwrap().iter().map(|n| n["metadata"]["name"].as_str().unwrap()).collect();
    for expected in ["default", "kube-system", "kube-node-lease", "kube-public"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert_eq!(list.body["kind"], "NamespaceList");
}

#[tokio::test]
async fn update_conflicts_generation_and_status() {
    let server = start().await;
    let created = server.post(DEPLOYMENTS, deployment("web", 1)).await.body;
    assert_eq!(created["metadata"]["generation"], 1);

    // A label change does not bump the generation; a spec change does.
    let mut labeled = created.clone();
    labeled["metadata"]["labels"] = json!({"tier": "front"});
    let updated = server.put(&format!("{DEPLOYMENTS}/web"), labeled).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    assert_eq!(updated.body["metadata"]["generation"], 1);
    let mut scaled = updated.body.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["status"] = json!({"replicas": 99});
    let updated = server.put(&format!("{DEPLOYMENTS}/web"), scaled).await;
    assert_eq!(updated.body["metadata"]["generation"], 2);
    assert_eq!(updated.body["status"], json!({}), "status is ignored on the main resource");

    // A stale resourceVersion is a conflict with Kubernetes' message.
    let stale = server.put(&format!("{DEPLOYMENTS}/web"), created.clone()).await;
    assert_eq!(stale.code, 409);
    assert_eq!(
        stale.body["message"],
        "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"
    );

    // /status changes the status only.
    let mut with_status = updated.body.clone();
    with_status["status"] = json!({"replicas": 3, "readyReplicas": 3});
    with_status["spec"]["replicas"] = json!(7);
    with_status["metadata"]["labels"] = json!({"ignored": "yes"});
    let status = server.put(&format!("{DEPLOYMENTS}/web/status"), with_status).await;
    assert_eq!(status.code, 200, "{}", status.body);
    assert_eq!(status.body["status"]["readyReplicas"], 3);
    assert_eq!(status.body["spec"]["replicas"], 3);
    assert_eq!(status.body["metadata"]["labels"], json!({"tier": "front"}));
    assert_eq!(status.body["metadata"]["generation"], 2);

    let renamed = server.put(&format!("{DEPLOYMENTS}/web"), deployment("other", 1)).await;
    assert_eq!(renamed.code, 400);
}

#[tokio::test]
async fn patches_of_every_kind() {
    let server = start().await;
    server.post(PODS, pod("web")).await;
    let path = format!("{PODS}/web");

    let merged = server.patch(&path, "application/merge-patch+json", json!({"metadata": {"labels": {"extra": "1"}}})).await;
    assert_eq!(merged.code, 200, "{}", merged.body);
    assert_eq!(merged.body["metadata"]["labels"], json!({"app": "web", "extra": "1"}));

    let strategic = server
        .patch(&path, "application/strategic-merge-patch+json", json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}))
        .await;
    assert_eq!(strategic.code, 200, "{}", strategic.body);
    assert_eq!(strategic.body["spec"]["containers"][0]["image"], "nginx:1.27");
    assert_eq!(strategic.body["spec"]["containers"][0]["name"], "app");

    // Pods forbid other spec changes, with Kubernetes' validation error.
    let forbidden = server
        .patch(&path, "application/strategic-merge-patch+json", json!({"spec": {"containers": [{"name": "side", "image": "busybox"}]}}))
        .await;
    assert_eq!(forbidden.code, 422);
    assert_eq!(forbidden.body["reason"], "Invalid");
    assert_eq!(forbidden.body["details"]["causes"][0]["field"], "spec");

    let deployment_path = "/apis/apps/v1/namespaces/default/deployments/web";
    server.post("/apis/apps/v1/namespaces/default/deployments", common::deployment("web", 1)).await;
    let added = server
        .patch(deployment_path, "application/strategic-merge-patch+json", json!({"spec": {"template": {"spec": {"containers": [{"name": "side", "image": "busybox"}]}}}}))
        .await;
    assert_eq!(added.code, 200, "{}", added.body);
    assert_eq!(added.body["spec"]["template"]["spec"]["containers"].as_array().unwrap().len(), 2);

    let json_patch = server
        .patch(&path, "application/json-patch+json", json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:1.26"}]))
        .await;
    assert_eq!(json_patch.code, 200);
    assert_eq!(json_patch.body["spec"]["containers"][0]["image"], "nginx:1.26");

    let failed_test = server.patch(&path, "application/json-patch+json", json!([{"op": "test", "path": "/spec/nodeName", "value": "x"}])).await;
    assert_eq!(failed_test.code, 422);

    let unsupported = server.patch(&path, "application/json", json!({})).await;
    assert_eq!(unsupported.code, 415);
    assert_eq!(unsupported.body["reason"], "UnsupportedMediaType");
    let apply = server.patch(&path, "application/apply-patch+yaml", json!({})).await;
    assert_eq!(apply.code, 415);

    let stale = server.patch(&path, "application/merge-patch+json", json!({"metadata": {"resourceVersion": "1"}})).await;
    assert_eq!(stale.code, 409);

    let missing = server.patch(&format!("{PODS}/nope"), "application/merge-patch+json", json!({})).await;
    assert_eq!(missing.code, 404);

    let status = server.patch(&format!("{path}/status"), "application/merge-patch+json", json!({"status": {"phase": "Running"}, "spec": {"nodeName": "sneaky"}})).await;
    assert_eq!(status.code, 200);
    assert_eq!(status.body["status"]["phase"], "Running");
    assert!(status.body["spec"].get("nodeName").is_none());
}

#[tokio::test]
async fn list_with_selectors_and_pages() {
    let server = start().await;
    for i in 0..7 {
        let mut p = pod(&format!("p{i}"));
        p["metadata"]["labels"] = json!({"app": if i % 2 == 0 { "even" } else { "odd" }});
        server.post(PODS, p).await;
    }
    let even = server.get(&format!("{PODS}?labelSelector=app%3Deven")).await;
    assert_eq!(even.body["items"].as_array().unwrap().len(), 4);
    assert_eq!(even.body["kind"], "PodList");
    assert!(even.body["metadata"]["resourceVersion"].is_string());

    let one = server.get(&format!("{PODS}?fieldSelector=metadata.name%3Dp3")).await;
    assert_eq!(one.body["items"].as_array().unwrap().len(), 1);
    let not_one = server.get(&format!("{PODS}?fieldSelector=metadata.name!%3Dp3")).await;
    assert_eq!(not_one.body["items"].as_array().unwrap().len(), 6);
    let bad = server.get(&format!("{PODS}?fieldSelector=spec.bogus%3Dx")).await;
    assert_eq!(bad.code, 400);

    // Pages of 3 cover every pod once, at one resourceVersion.
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &token {
            Some(t) => format!("{PODS}?limit=3&continue={}", urlencode(t)),
            None => format!("{PODS}?limit=3"),
        };
        let page = server.get(&path).await;
        assert_eq!(page.code, 200, "{}", page.body);
        pages += 1;
        names.extend(page.body["items"].as_array().unwrap().iter().map(|p| p["metadata"]["name"].as_str().unwrap().to_string()));
        match page.body["metadata"]["continue"].as_str() {
            Some(next) => token = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, vec!["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);

    // A token from before a compaction is gone.
    let first = server.get(&format!("{PODS}?limit=2")).await;
    let token = first.body["metadata"]["continue"].as_str().unwrap().to_string();
    server.post(PODS, pod("late")).await;
    let current = server.store.as_ref();
    let revision = store::Store::current_revision(current).await.unwrap();
    store::Store::compact(current, revision).await.unwrap();
    let expired = server.get(&format!("{PODS}?limit=2&continue={}", urlencode(&token))).await;
    assert_eq!(expired.code, 410);
    assert_eq!(expired.body["reason"], "Expired");
    let garbage = server.get(&format!("{PODS}?continue=garbage")).await;
    assert_eq!(garbage.code, 400);

    // All namespaces.
    let all = server.get("/api/v1/pods").await;
    assert_eq!(all.body["items"].as_array().unwrap().len(), 8);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn delete_with_finalizers_grace_and_preconditions() {
    let server = start().await;
    // Plain delete returns the object and removes it.
    server.post(PODS, pod("plain")).await;
    let deleted = server.delete(&format!("{PODS}/plain"), Some(json!({"propagationPolicy": "Background"}))).await;
    assert_eq!(deleted.code, 200);
    assert_eq!(deleted.body["metadata"]["name"], "plain");
    assert_eq!(server.get(&format!("{PODS}/plain")).await.code, 404);
    assert_eq!(server.delete(&format!("{PODS}/plain"), None).await.code, 404);

    // Finalizers hold an object until they are removed.
    let mut held = pod("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    server.post(PODS, held).await;
    let marked = server.delete(&format!("{PODS}/held"), None).await;
    assert_eq!(marked.code, 200);
    assert!(marked.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(server.get(&format!("{PODS}/held")).await.code, 200);
    let released = server.patch(&format!("{PODS}/held"), "application/merge-patch+json", json!({"metadata": {"finalizers": null}})).await;
    assert_eq!(released.code, 200, "{}", released.body);
    assert_eq!(server.get(&format!("{PODS}/held")).await.code, 404);

    // A bound pod is marked with its grace period; a forced delete removes it.
    server.post(PODS, pod("bound")).await;
    let bind = server.post(&format!("{PODS}/bound/binding"), json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "bound"}, "target": {"kind": "Node", "name": "n1"}})).await;
    assert_eq!(bind.code, 201, "{}", bind.body);
    let marked = server.delete(&format!("{PODS}/bound"), None).await;
    assert_eq!(marked.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(server.get(&format!("{PODS}/bound")).await.code, 200);
    let forced = server.delete(&format!("{PODS}/bound?gracePeriodSeconds=0"), None).await;
    assert_eq!(forced.code, 200);
    assert_eq!(server.get(&format!("{PODS}/bound")).await.code, 404);

    // Preconditions.
    server.post(PODS, pod("pre")).await;
    let wrong = server.delete(&format!("{PODS}/pre"), Some(json!({"preconditions": {"uid": "nope"}}))).await;
    assert_eq!(wrong.code, 409);
    assert!(wrong.body["message"].as_str().unwrap().contains("Precondition failed: UID in precondition: nope"));

    // Foreground adds its finalizer.
    server.post(DEPLOYMENTS, deployment("fg", 1)).await;
    let foreground = server.delete(&format!("{DEPLOYMENTS}/fg"), Some(json!({"propagationPolicy": "Foreground"}))).await;
    assert_eq!(foreground.body["metadata"]["finalizers"], json!(["foregroundDeletion"]));

    // Collections.
    server.post(PODS, pod("c1")).await;
    server.post(PODS, pod("c2")).await;
    let collection = server.delete(&format!("{PODS}?labelSelector=app%3Dweb"), None).await;
    assert_eq!(collection.code, 200);
    assert!(collection.body["items"].as_array().unwrap().len() >= 2);
    assert_eq!(server.get(&format!("{PODS}/c1")).await.code, 404);
}

#[tokio::test]
async fn binding_once_and_scale() {
    let server = start().await;
    server.post(PODS, pod("web")).await;
    let binding = json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n1"}});
    assert_eq!(server.post(&format!("{PODS}/web/binding"), binding.clone()).await.code, 201);
    let pod = server.get(&format!("{PODS}/web")).await.body;
    assert_eq!(pod["spec"]["nodeName"], "n1");
    assert_eq!(pod["status"]["conditions"][0]["type"], "PodScheduled");
    let again = server.post(&format!("{PODS}/web/binding"), binding).await;
    assert_eq!(again.code, 409);
    assert_eq!(
        again.body["message"],
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n1\""
    );
    let nowhere = server.post(&format!("{PODS}/web/binding"), json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": "web"}, "target": {}})).await;
    assert_eq!(nowhere.code, 422);

    server.post(DEPLOYMENTS, deployment("web", 1)).await;
    let scale = server.get(&format!("{DEPLOYMENTS}/web/scale")).await;
    assert_eq!(scale.body["kind"], "Scale");
    assert_eq!(scale.body["apiVersion"], "autoscaling/v1");
    assert_eq!(scale.body["spec"]["replicas"], 1);
    assert_eq!(scale.body["status"]["selector"], "app=web");
    let patched = server.patch(&format!("{DEPLOYMENTS}/web/scale"), "application/merge-patch+json", json!({"spec": {"replicas": 3}})).await;
    assert_eq!(patched.code, 200, "{}", patched.body);
    assert_eq!(patched.body["spec"]["replicas"], 3);
    let mut put = patched.body.clone();
    put["spec"]["replicas"] = json!(5);
    let put = server.put(&format!("{DEPLOYMENTS}/web/scale"), put).await;
    assert_eq!(put.code, 200, "{}", put.body);
    let deployment = server.get(&format!("{DEPLOYMENTS}/web")).await.body;
    assert_eq!(deployment["spec"]["replicas"], 5);
    assert_eq!(deployment["metadata"]["generation"], 3);
    let negative = server.patch(&format!("{DEPLOYMENTS}/web/scale"), "application/merge-patch+json", json!({"spec": {"replicas": -1}})).await;
    assert_eq!(negative.code, 422, "{}", negative.body);
}

#[tokio::test]
async fn namespaces_terminate_with_their_contents() {
    let server = start().await;
    let created = server.post("/api/v1/namespaces", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}})).await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(created.body["status"]["phase"], "Active");
    assert_eq!(server.post("/api/v1/namespaces/team/pods", pod("x")).await.code, 201);
    let protected = server.delete("/api/v1/namespaces/default", None).await;
    assert_eq!(protected.code, 403);
    assert_eq!(protected.body["message"], "namespaces \"default\" is forbidden: this namespace may not be deleted");
    assert_eq!(server.delete("/api/v1/namespaces", None).await.code, 405, "namespaces have no deletecollection");
    let deleting = server.delete("/api/v1/namespaces/team", None).await;
    assert_eq!(deleting.code, 200);
    assert_eq!(deleting.body["status"]["phase"], "Terminating");
    for _ in 0..100 {
        if server.get("/api/v1/namespaces/team").await.code == 404 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(server.get("/api/v1/namespaces/team").await.code, 404);
    assert_eq!(server.get("/api/v1/namespaces/team/pods/x").await.code, 404);
}

#[tokio::test]
async fn errors_for_bad_requests() {
    let server = start().await;
    assert_eq!(server.get("/api/v1/bogus").await.code, 404);
    assert_eq!(server.get("/apis/nope/v1").await.code, 404);
    let not_allowed = server.call("PUT", PODS, "application/json", Some(json!({}))).await;
    assert_eq!(not_allowed.code, 405);
    assert_eq!(not_allowed.body["reason"], "MethodNotAllowed");

    let huge = "x".repeat(3 * 1024 * 1024 + 10);
    let mut big = pod("big");
    big["metadata"]["annotations"] = json!({"a": huge});
    let too_large = server.post(PODS, big).await;
    assert_eq!(too_large.code, 413);
    assert_eq!(too_large.body["reason"], "RequestEntityTooLarge");

    let bad_query = server.get(&format!("{PODS}?limit=abc")).await;
    assert_eq!(bad_query.code, 400);
}

#[tokio::test]
async fn discovery_version_and_health() {
    let server = start().await;
    let version = server.get("/version").await.body;
    assert_eq!(version["major"], "1");
    assert_eq!(version["minor"], "32");
    assert_eq!(version["gitVersion"], "v1.32.0-r8s");
    for path in ["/healthz", "/livez", "/readyz"] {
        assert_eq!(server.get(path).await.body, Value::String("ok".into()));
    }
    let api = server.get("/api").await.body;
    assert_eq!(api["versions"], json!(["v1"]));
    let apis = server.get("/apis").await.body;
    assert!(apis["groups"].as_array().unwrap().iter().any(|g| g["name"] == "apps"));
    let apps = server.get("/apis/apps/v1").await.body;
    let resources = apps["resources"].as_array().unwrap();
    let deployments = resources.iter().find(|r| r["name"] == "deployments").unwrap();
    assert_eq!(deployments["shortNames"], json!(["deploy"]));
    assert_eq!(deployments["categories"], json!(["all"]));
    let scale = resources.iter().find(|r| r["name"] == "deployments/scale").unwrap();
    assert_eq!(scale["group"], "autoscaling");
    assert_eq!(scale["kind"], "Scale");

    let aggregated = server
        .client
        .get(format!("{}/apis", server.base))
        .header("accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(
        aggregated.headers()["content-type"],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    let body: Value = aggregated.json().await.unwrap();
    let apps = body["items"].as_array().unwrap().iter().find(|g| g["metadata"]["name"] == "apps").unwrap();
    let deployments = apps["versions"][0]["resources"].as_array().unwrap().iter().find(|r| r["resource"] == "deployments").unwrap();
    let scale = deployments["subresources"].as_array().unwrap().iter().find(|s| s["subresource"] == "scale").unwrap();
    assert_eq!(scale["responseKind"], json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}));

    let index = server.get("/openapi/v3").await.body;
    assert_eq!(index["paths"]["api/v1"]["serverRelativeURL"], "/openapi/v3/api/v1");
    let document = server.get("/openapi/v3/apis/apps/v1").await.body;
    let operation = &document["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(operation["x-kubernetes-group-version-kind"]["kind"], "Deployment");
    assert!(operation["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));

    server.get("/api/v1/namespaces/default/pods").await;
    let metrics = server.get("/metrics").await.body;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("apiserver_request_total{verb=\"list\",resource=\"pods\",code=\"200\"} 1"), "{text}");
    assert!(text.contains("apiserver_store_request_duration_seconds_count{operation=\"range\"}"));
    assert!(text.contains("apiserver_registered_watchers 0"));
}

#[tokio::test]
async fn tables_for_kubectl_get() {
    let server = start().await;
    server.post(PODS, pod("web")).await;
    let table = server
        .client
        .get(format!("{}{PODS}?limit=500", server.base))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns[..5], ["Name", "Ready", "Status", "Restarts", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "web");
    assert_eq!(table["rows"][0]["cells"][1], "0/1");
    assert_eq!(table["rows"][0]["cells"][2], "Pending");
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(table["rows"][0]["object"]["metadata"]["namespace"], "default");
    assert!(table["metadata"]["resourceVersion"].is_string());
}

#[tokio::test]
async fn field_validation_modes() {
    let server = start().await;
    let mut unknown = pod("strict");
    unknown["spec"]["bogus"] = json!(1);
    let strict = server.post(&format!("{PODS}?fieldValidation=Strict"), unknown.clone()).await;
    assert_eq!(strict.code, 400);
    assert_eq!(strict.body["message"], "strict decoding error: unknown field \"spec.bogus\"");

    unknown["metadata"]["name"] = json!("warned");
    let warned = server.post(&format!("{PODS}?fieldValidation=Warn"), unknown.clone()).await;
    assert_eq!(warned.code, 201);
    assert_eq!(warned.headers["warning"], "299 - \"unknown field \\\"spec.bogus\\\"\"");
    assert!(warned.body["spec"].get("bogus").is_none(), "unknown fields are dropped");

    unknown["metadata"]["name"] = json!("ignored");
    let ignored = server.post(&format!("{PODS}?fieldValidation=Ignore"), unknown).await;
    assert_eq!(ignored.code, 201);
    assert!(ignored.headers.get("warning").is_none());

    let patched = server
        .patch(&format!("{PODS}/ignored?fieldValidation=Strict"), "application/merge-patch+json", json!({"spec": {"nope": true}}))
        .await;
    assert_eq!(patched.code, 400);
    assert_eq!(patched.body["message"], "strict decoding error: unknown field \"spec.nope\"");
    assert_eq!(server.get(&format!("{PODS}?fieldValidation=Sloppy")).await.code, 400);
}

#[tokio::test]
async fn invalid_objects_are_422_with_causes() {
    let server = start().await;
    let no_containers = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "empty"}, "spec": {"containers": []}});
    let invalid = server.post(PODS, no_containers).await;
    assert_eq!(invalid.code, 422, "{}", invalid.body);
    assert_eq!(invalid.body["reason"], "Invalid");
    assert_eq!(invalid.body["message"], "Pod \"empty\" is invalid: spec.containers: Required value");
    assert_eq!(invalid.body["details"]["causes"][0]["field"], "spec.containers");
    assert_eq!(invalid.body["details"]["causes"][0]["reason"], "FieldValueRequired");

    let mut bad_name = pod("Not_A_Name");
    bad_name["spec"]["containers"][0]["name"] = json!("");
    let invalid = server.post(PODS, bad_name).await;
    assert_eq!(invalid.code, 422);
    let message = invalid.body["message"].as_str().unwrap();
    assert!(message.starts_with("Pod \"Not_A_Name\" is invalid: ["), "{message}");
    assert!(invalid.body["details"]["causes"].as_array().unwrap().len() >= 2);

    let wrong_type = server.post(DEPLOYMENTS, json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"}, "spec": {"replicas": "many"}})).await;
    assert_eq!(wrong_type.code, 400, "{}", wrong_type.body);
}

#[tokio::test]
async fn lists_at_an_exact_resource_version() {
    let server = start().await;
    let first = server.post(PODS, pod("a")).await.body;
    let revision = first["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    server.post(PODS, pod("b")).await;
    let then = server.get(&format!("{PODS}?resourceVersion={revision}&resourceVersionMatch=Exact")).await;
    assert_eq!(then.code, 200, "{}", then.body);
    assert_eq!(then.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(then.body["metadata"]["resourceVersion"], revision.as_str());
    let now = server.get(&format!("{PODS}?resourceVersion=0")).await;
    assert_eq!(now.body["items"].as_array().unwrap().len(), 2);
    let future = server.get(&format!("{PODS}?resourceVersion=999999&resourceVersionMatch=Exact")).await;
    assert_eq!(future.code, 504);
    assert_eq!(server.get(&format!("{PODS}?resourceVersionMatch=Sometimes")).await.code, 400);
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports() {
    let server = start().await;
    let services = "/api/v1/namespaces/default/services";
    let service = |name: &str, spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec});

    let web = server.post(services, service("web", json!({"selector": {"app": "web"}, "ports": [{"port": 80}]}))).await;
    assert_eq!(web.code, 201, "{}", web.body);
    let ip: std::net::Ipv4Addr = web.body["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(ip.octets()[0], 10);
    assert!((96..112).contains(&ip.octets()[1]), "{ip}");
    assert_eq!(web.body["spec"]["clusterIPs"], json!([ip.to_string()]));
    assert_eq!(web.body["spec"]["type"], "ClusterIP");

    let fixed = server.post(services, service("fixed", json!({"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}))).await;
    assert_eq!(fixed.code, 201, "{}", fixed.body);
    let taken = server.post(services, service("taken", json!({"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}))).await;
    assert_eq!(taken.code, 422);
    assert!(taken.body["message"].as_str().unwrap().contains("provided IP is already allocated"), "{}", taken.body);
    let outside = server.post(services, service("outside", json!({"clusterIP": "192.168.1.1", "ports": [{"port": 80}]}))).await;
    assert_eq!(outside.code, 422);

    // Deleting a Service frees its IP.
    assert_eq!(server.delete(&format!("{services}/fixed"), None).await.code, 200);
    let again = server.post(services, service("again", json!({"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}))).await;
    assert_eq!(again.code, 201, "{}", again.body);

    let headless = server.post(services, service("headless", json!({"clusterIP": "None", "ports": [{"port": 80}]}))).await;
    assert_eq!(headless.body["spec"]["clusterIP"], "None");

    let node_port = server.post(services, service("np", json!({"type": "NodePort", "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443, "nodePort": 30443}]}))).await;
    assert_eq!(node_port.code, 201, "{}", node_port.body);
    let allocated = node_port.body["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    assert!((30000..=32767).contains(&allocated));
    assert_eq!(node_port.body["spec"]["ports"][1]["nodePort"], 30443);
    let clash = server.post(services, service("clash", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30443}]}))).await;
    assert_eq!(clash.code, 422);
    assert_eq!(clash.body["details"]["causes"][0]["field"], "spec.ports[0].nodePort");
    // Failed creates give back what they took: only web, again and np hold an IP,
    // only np holds ports.
    let held = |prefix: &'static str| {
        let store = server.store.clone();
        async move {
            let request = store::RangeRequest { prefix: prefix.into(), ..Default::default() };
            store::Store::range(store.as_ref(), request).await.unwrap().kvs.len()
        }
    };
    assert_eq!(held("/registry/ranges/serviceips/").await, 3);
    assert_eq!(held("/registry/ranges/servicenodeports/").await, 2);
}

#[tokio::test]
async fn bad_input_is_an_error_never_a_crash() {
    let server = start().await;
    server.post(PODS, pod("web")).await;
    server.post(DEPLOYMENTS, deployment("web", 1)).await;
    let bodies = [
        json!(null),
        json!(42),
        json!("text"),
        json!([1, 2]),
        json!({"metadata": "nope"}),
        json!({"metadata": {"name": 7}}),
        json!({"metadata": {"name": "web", "labels": "x"}, "spec": []}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}, "spec": {"containers": "many"}}),
        json!({"spec": {"replicas": {"deep": [null, {"x": []}]}}}),
        json!([{"op": "explode"}]),
        json!({"$patch": "delete"}),
        json!({"spec": {"containers": [{"$patch": "delete"}]}}),
        json!({"status": null, "metadata": {"finalizers": "x"}}),
    ];
    let paths = [
        PODS.to_string(),
        format!("{PODS}/web"),
        format!("{PODS}/web/status"),
        format!("{PODS}/web/binding"),
        format!("{DEPLOYMENTS}/web/scale"),
        "/api/v1/namespaces".to_string(),
    ];
    let content_types = ["application/json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/json-patch+json", "application/yaml"];
    for path in &paths {
        for body in &bodies {
            for method in ["POST", "PUT", "PATCH", "DELETE"] {
                for content_type in content_types {
                    let reply = server.call(method, path, content_type, Some(body.clone())).await;
                    assert!(reply.code < 500, "{method} {path} {content_type} {body}: {} {}", reply.code, reply.body);
                    assert!(reply.body["kind"].as_str().is_some(), "{method} {path}: {}", reply.body);
                }
            }
        }
    }
    for query in ["?labelSelector=a%20in%20(", "?fieldSelector==", "?continue=%00", "?resourceVersion=x", "?watch=maybe", "?timeoutSeconds=-1", "?limit=-5"] {
        let reply = server.get(&format!("{PODS}{query}")).await;
        assert_eq!(reply.code, 400, "{query}: {}", reply.body);
    }
    // Still serving.
    assert_eq!(server.post(PODS, pod("after")).await.code, 201);
}

/// Logs come from the node agent of the pod's node. A stand-in for the agent's
/// `/containerLogs` endpoint (the real one needs a container runtime) answers here.
#[tokio::test]
async fn pod_logs_are_proxied_to_the_node_agent() {
    let server = start().await;
    let agent = axum::Router::new().route(
        "/containerLogs/{namespace}/{pod}/{container}",
        axum::routing::get(
            |axum::extract::Path((namespace, pod, container)): axum::extract::Path<(String, String, String)>,
             axum::extract::RawQuery(query): axum::extract::RawQuery| async move {
                if pod == "gone" {
                    return (axum::http::StatusCode::NOT_FOUND, "container \"app\" in pod \"gone\" not found".to_string());
                }
                (axum::http::StatusCode::OK, format!("{namespace}/{pod}/{container}?{}\n", query.unwrap_or_default()))
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let agent_task = tokio::spawn(async move {
        let _ = axum::serve(listener, agent).await;
    });
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}], "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    assert_eq!(server.post("/api/v1/nodes", node).await.code, 201);
    for name in ["web", "gone", "unbound"] {
        server.post(PODS, pod(name)).await;
    }
    for name in ["web", "gone"] {
        let binding = json!({"kind": "Binding", "apiVersion": "v1", "metadata": {"name": name}, "target": {"kind": "Node", "name": "n1"}});
        server.post(&format!("{PODS}/{name}/binding"), binding).await;
    }

    let logs = server.get(&format!("{PODS}/web/log?tailLines=5&follow=false")).await;
    assert_eq!(logs.code, 200, "{}", logs.body);
    assert_eq!(logs.body, Value::String("default/web/app?tailLines=5&follow=false\n".into()));
    let wrong = server.get(&format!("{PODS}/web/log?container=nope")).await;
    assert_eq!(wrong.code, 400);
    let gone = server.get(&format!("{PODS}/gone/log")).await;
    assert_eq!(gone.code, 404);
    assert_eq!(gone.body["message"], "container \"app\" in pod \"gone\" not found");
    let unbound = server.get(&format!("{PODS}/unbound/log")).await;
    assert_eq!(unbound.code, 400);
    assert_eq!(unbound.body["message"], "pod unbound does not have a host assigned");
    agent_task.abort();
}
