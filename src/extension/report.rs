//! Writing the status and reporting what changed (I/O on Kubernetes): server-side apply of
//! the status subresource only when it differs from the stored one, and Events for condition
//! transitions and actions.

use crate::controller::events::EventType;

use super::reconcile::CONTROLLER;
use super::render::{DEPLOYED, PREREQUISITES_MET, READY};
use crate::azure::AzureClients;
use crate::controller::Context;
use crate::controller::conditions::find;
use crate::crd::{
    Condition, ConditionStatus, GuestAttestationExtension, GuestAttestationExtensionStatus,
};

/// Applies the status when it differs from the stored one, and reports condition transitions.
pub(super) async fn write_status<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    ns: &str,
    status: GuestAttestationExtensionStatus,
) -> Result<(), crate::controller::Error> {
    let manager = &ctx.settings.field_manager;
    if ctx
        .apply_status(obj, ns, obj.status.as_ref(), &status, CONTROLLER, manager)
        .await?
    {
        report_transitions(obj, ctx, &status).await;
    }
    Ok(())
}

/// Publishes the Events of `transition_events`.
async fn report_transitions<C: AzureClients>(
    obj: &GuestAttestationExtension,
    ctx: &Context<C>,
    new: &GuestAttestationExtensionStatus,
) {
    let old = obj
        .status
        .as_ref()
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let events = transition_events(old, &new.conditions);
    for (type_, reason, note) in events {
        ctx.publish(obj, type_, &reason, "Reconcile", &note).await;
    }
}

/// The Events a change of conditions deserves (pure): Deployed turning True is Normal; a
/// condition turning False (or changing its False reason) is a Warning with its reason and
/// message, except NotDeployed, which only follows from another condition. Ready is reported only
/// for its own blockers (credentials, Azure errors, an invalid spec), not to repeat the others.
fn transition_events(old: &[Condition], new: &[Condition]) -> Vec<(EventType, String, String)> {
    let changed = |type_: &str| {
        let n = find(new, type_)?;
        let unchanged =
            find(old, type_).is_some_and(|o| o.status == n.status && o.reason == n.reason);
        (!unchanged).then_some(n)
    };
    let mut events = Vec::new();
    for type_ in [PREREQUISITES_MET, DEPLOYED] {
        if let Some(c) = changed(type_) {
            match c.status {
                ConditionStatus::False if c.reason != "NotDeployed" => {
                    events.push((EventType::Warning, c.reason.clone(), c.message.clone()));
                }
                ConditionStatus::True if type_ == DEPLOYED => {
                    events.push((EventType::Normal, c.reason.clone(), c.message.clone()));
                }
                _ => {}
            }
        }
    }
    if let Some(r) = changed(READY) {
        let echoed = [PREREQUISITES_MET, DEPLOYED]
            .iter()
            .filter_map(|t| find(new, t))
            .any(|c| c.reason == r.reason);
        if r.status == ConditionStatus::False && !echoed {
            events.push((EventType::Warning, r.reason.clone(), r.message.clone()));
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::conditions::{Desired, merge};

    fn conditions(list: &[(&'static str, ConditionStatus, &str)]) -> Vec<Condition> {
        let desired = list
            .iter()
            .map(|(t, s, r)| Desired::new(t, *s, *r, format!("{r} message")))
            .collect();
        merge(
            &[],
            desired,
            Some(1),
            "2026-01-01T00:00:00Z".parse().unwrap(),
        )
    }

    fn reasons(events: &[(EventType, String, String)]) -> Vec<(bool, &str)> {
        events
            .iter()
            .map(|(t, r, _)| (*t == EventType::Warning, r.as_str()))
            .collect()
    }

    #[test]
    fn events_on_transitions_only() {
        use ConditionStatus::{False, True, Unknown};
        let busy = conditions(&[
            (PREREQUISITES_MET, True, "PrerequisitesMet"),
            (DEPLOYED, Unknown, "InProgress"),
            (READY, Unknown, "Reconciling"),
        ]);
        let done = conditions(&[
            (PREREQUISITES_MET, True, "PrerequisitesMet"),
            (DEPLOYED, True, "Deployed"),
            (READY, True, "Deployed"),
        ]);
        assert_eq!(
            reasons(&transition_events(&busy, &done)),
            [(false, "Deployed")]
        );
        assert!(transition_events(&done, &done).is_empty());
        let failed = conditions(&[
            (PREREQUISITES_MET, True, "PrerequisitesMet"),
            (DEPLOYED, False, "DeploymentFailed"),
            (READY, False, "DeploymentFailed"),
        ]);
        assert_eq!(
            reasons(&transition_events(&busy, &failed)),
            [(true, "DeploymentFailed")],
            "Ready does not repeat Deployed"
        );
        let unmet = conditions(&[
            (PREREQUISITES_MET, False, "PrerequisitesNotMet"),
            (DEPLOYED, False, "NotDeployed"),
            (READY, False, "PrerequisitesNotMet"),
        ]);
        assert_eq!(
            reasons(&transition_events(&[], &unmet)),
            [(true, "PrerequisitesNotMet")]
        );
        let blocked = conditions(&[
            (PREREQUISITES_MET, True, "PrerequisitesMet"),
            (DEPLOYED, True, "Deployed"),
            (READY, False, "CredentialsInvalid"),
        ]);
        assert_eq!(
            reasons(&transition_events(&done, &blocked)),
            [(true, "CredentialsInvalid")]
        );
    }
}
