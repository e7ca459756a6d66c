//! CRI container events (GetContainerEvents) from r8s's runtime, as root
//! with real containers: a subscriber sees a sandbox made and started, then
//! a container created, started and stopped with its exit, each event
//! carrying the whole sandbox's statuses, in the order they happened; and a
//! removal; and the runtime passes the conformance suite the fake runtime
//! passes too. Build first: `cargo build -p r8s`.

mod cri_support;

use std::time::Duration;

use cri::api::{ContainerEventResponse, ContainerEventType, ContainerState};
use cri_support::Node;
use futures::StreamExt;

async fn next(events: &mut cri::EventStream) -> ContainerEventResponse {
    tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("an event within 30 s").expect("the stream goes on").expect("an event")
}

fn kind(event: &ContainerEventResponse) -> ContainerEventType {
    ContainerEventType::try_from(event.container_event_type).expect("a known event type")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subscriber_sees_every_change_with_the_sandbox_snapshot() {
    let node = Node::new(None).await;
    let mut cri = node.start().await;
    let subscribe = cri.client.runtime.get_container_events();
    let mut events = tokio::time::timeout(Duration::from_secs(10), subscribe).await.expect("subscribed within 10 s").expect("subscribe");

    let pod = cri.run_pod("evented", |_| {}).await.unwrap();
    let created = next(&mut events).await;
    assert_eq!((kind(&created), created.container_id.as_str()), (ContainerEventType::ContainerCreatedEvent, pod.as_str()));
    let started = next(&mut events).await;
    assert_eq!((kind(&started), started.container_id.as_str()), (ContainerEventType::ContainerStartedEvent, pod.as_str()));
    assert_eq!(started.pod_sandbox_status.as_ref().map(|s| s.id.as_str()), Some(pod.as_str()));

    let id = cri.run(&pod, "quitter", &["sh", "-c", "sleep 0.3; exit 3"]).await;
    let mut seen = Vec::new();
    let mut last_stamp = started.created_at;
    while seen.last() != Some(&ContainerEventType::ContainerStoppedEvent) {
        let event = next(&mut events).await;
        assert_eq!(event.container_id, id);
        assert!(event.created_at > last_stamp, "events come in the order they happened");
        last_stamp = event.created_at;
        let status = event.containers_statuses.iter().find(|s| s.id == id).expect("the snapshot holds the container");
        if kind(&event) == ContainerEventType::ContainerStoppedEvent {
            assert_eq!((status.state, status.exit_code, status.reason.as_str()), (ContainerState::ContainerExited as i32, 3, "Error"));
        }
        seen.push(kind(&event));
    }
    assert_eq!(seen, [ContainerEventType::ContainerCreatedEvent, ContainerEventType::ContainerStartedEvent, ContainerEventType::ContainerStoppedEvent]);

    cri.client.runtime.remove_container(&id).await.unwrap();
    let deleted = next(&mut events).await;
    assert_eq!((kind(&deleted), deleted.container_id.as_str()), (ContainerEventType::ContainerDeletedEvent, id.as_str()));
    assert!(deleted.containers_statuses.is_empty(), "a deleted container leaves the snapshot");
    cri.shutdown().await;
    assert!(events.next().await.is_none(), "the stream ends when the service stops");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_runtime_passes_the_conformance_suite() {
    let node = Node::new(None).await;
    let cri = node.start().await;
    cri::conformance::run(&cri.client, &cri::conformance::Fixture { image: cri_support::IMAGE.into(), prefix: "conf-".into() }).await;
    cri.shutdown().await;
}
