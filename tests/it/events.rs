//! Events through the real API server: a repeat within the window joins the first Event's series
//! (what `kubectl describe` shows as "x2"), another note is another Event, and an Event deleted
//! under the publisher is created anew.

use guest_attestation_operator::controller::events::{EventType, Publisher};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use kube::{
    Api, Resource,
    api::{DeleteParams, PostParams},
};

use crate::support;

#[tokio::test]
async fn repeats_join_a_series_and_other_notes_are_other_events() {
    let client = support::env().client().await;
    let ns = support::namespace(&client, "events").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("subject".into());
    let cm = cms.create(&PostParams::default(), &cm).await.unwrap();
    let about: ObjectReference = cm.object_ref(&());

    let publisher = Publisher::new(
        client.clone(),
        "guest-attestation-operator/test".into(),
        None,
    );
    let publish = |note: &'static str| {
        let (p, a) = (&publisher, &about);
        async move {
            p.publish(EventType::Warning, "DeployFailed", "Deploy", note, a)
                .await
                .unwrap();
        }
    };
    publish("Conflict: try again").await;
    publish("Conflict: try again").await;
    publish("Conflict: try again").await;
    publish("BadRequest: settings").await;
    let with_note = |events: &[Event], note: &str| {
        events
            .iter()
            .find(|e| e.note.as_deref() == Some(note))
            .cloned()
            .unwrap_or_else(|| panic!("no Event with the note {note:?} in {events:#?}"))
    };

    let events = support::events(&client, &ns, "subject").await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let first = with_note(&events, "Conflict: try again");
    assert_eq!(
        first.series.as_ref().map(|s| s.count),
        Some(3),
        "{first:#?}"
    );
    assert_eq!(first.type_.as_deref(), Some("Warning"));
    assert_eq!(first.reason.as_deref(), Some("DeployFailed"));
    assert_eq!(first.action.as_deref(), Some("Deploy"));
    assert_eq!(
        first.reporting_controller.as_deref(),
        Some("guest-attestation-operator/test")
    );
    let other = with_note(&events, "BadRequest: settings");
    assert!(other.series.is_none());

    // Deleted under the publisher (an Event's TTL on the server is shorter than a run): the next
    // repeat is a new Event, not an error.
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    api.delete(
        first.metadata.name.as_deref().unwrap(),
        &DeleteParams::default(),
    )
    .await
    .unwrap();
    publish("Conflict: try again").await;
    let events = support::events(&client, &ns, "subject").await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let again = with_note(&events, "Conflict: try again");
    assert_ne!(again.metadata.name, first.metadata.name);
    assert!(again.series.is_none());
}
