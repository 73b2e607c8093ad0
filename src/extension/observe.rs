//! One look at Azure (I/O): the machine, its VM instance, the cluster the settings come from
//! (the "surroundings", reused between full looks), one poll of the operation in flight (if
//! any), and the extension. Every read is a GET; the only writes are in `reconcile` (PUT,
//! DELETE).

use std::time::Duration;

use crate::azure::{
    AzureApi, ClusterId, Error as AzureError, Lro, LroPoll, Machine, MachineExtension, MachineId,
};
use crate::controller::{Digest, digest};

use super::desired::EXTENSION_NAME;
use super::preflight::VmFacts;
use super::settings::{Endpoints, SourceProblem, endpoints_from_cluster};

/// Where the settings' endpoints come from, resolved on the Kubernetes side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// spec.clusterId.
    Cluster(ClusterId),
    /// A Ready AttestationProvider: its attestUri and its cluster.
    Provider {
        /// The provider's name.
        name: String,
        /// Its status.attestUri.
        attest_uri: String,
        /// Its spec.clusterRef.
        cluster: ClusterId,
    },
    /// The provider cannot be used (yet).
    Problem(SourceProblem),
}

impl Source {
    /// Words for the PrerequisitesMet message.
    pub fn describe(&self) -> String {
        match self {
            Self::Cluster(c) => format!("the Azure Local cluster {}", c.name()),
            Self::Provider { name, cluster, .. } => format!(
                "the AttestationProvider {name} and the Azure Local cluster {}",
                cluster.name()
            ),
            Self::Problem(p) => p.to_string(),
        }
    }

    /// What a change of the source is recognised by (a changed source means the desired
    /// settings may have changed, so Azure is looked at again at once): a digest, because each
    /// object's memory keeps it.
    pub fn fingerprint(&self) -> Digest {
        match self {
            Self::Cluster(c) => digest(&["cluster", &c.to_string()]),
            Self::Provider {
                attest_uri,
                cluster,
                ..
            } => digest(&["provider", attest_uri, &cluster.to_string()]),
            Self::Problem(p) => digest(&["problem", &p.to_string()]),
        }
    }
}

/// An operation the controller started and follows across reconciles.
#[derive(Clone, Debug)]
pub enum Operation {
    /// A PUT of the extension.
    Put(Lro<MachineExtension>),
    /// A DELETE of the extension.
    Delete(Lro<()>),
}

impl Operation {
    /// How long to wait before the first poll (Azure's Retry-After).
    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Put(l) => l.retry_after(),
            Self::Delete(l) => l.retry_after(),
        }
    }

    /// The URL polled, if any.
    pub fn status_url(&self) -> Option<String> {
        match self {
            Self::Put(l) => l.status_url().map(str::to_owned),
            Self::Delete(l) => l.status_url().map(str::to_owned),
        }
    }

    /// Whether this is a deletion.
    pub fn is_delete(&self) -> bool {
        matches!(self, Self::Delete(_))
    }
}

/// The result of one poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still running; poll again after this long.
    Pending(Duration),
    /// Finished successfully.
    Succeeded,
    /// Ended Failed or Canceled, with Azure's error.
    Failed(String),
    /// The handle can no longer tell (the operation expired, its URL answers 404, or the
    /// resource vanished under it): it is dropped and the extension's own state is followed.
    Lost,
}

/// Poll errors that asking again cannot fix. Throttling, 5xx, broken connections and
/// authorization failures are not among them: those are reported and retried.
fn lost(e: &AzureError) -> bool {
    match e {
        AzureError::InvalidResponse { .. }
        | AzureError::Decode { .. }
        | AzureError::OperationTimeout { .. } => true,
        AzureError::Api { status, .. } => {
            (400..500).contains(status) && !matches!(status, 401 | 403 | 408 | 429)
        }
        _ => false,
    }
}

/// Polls `op` once, with the extension a finished PUT's final GET read. A failed operation is
/// a result, not an error; errors are about the poll.
async fn poll<A: AzureApi>(
    azure: &A,
    op: &Operation,
) -> Result<(Progress, Option<MachineExtension>), AzureError> {
    let result = match op {
        Operation::Put(lro) => azure.poll_operation(lro).await.map(|p| match p {
            LroPoll::Pending { retry_after, .. } => (Progress::Pending(retry_after), None),
            LroPoll::Done(ext) => (Progress::Succeeded, Some(ext)),
        }),
        Operation::Delete(lro) => azure.poll_operation(lro).await.map(|p| match p {
            LroPoll::Pending { retry_after, .. } => (Progress::Pending(retry_after), None),
            LroPoll::Done(()) => (Progress::Succeeded, None),
        }),
    };
    match result {
        Err(AzureError::OperationFailed {
            code,
            message,
            status,
            ..
        }) => Ok((
            Progress::Failed(match (code, message) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (None, Some(m)) => m,
                (Some(c), None) => c,
                (None, None) => format!("the operation ended {status}"),
            }),
            None,
        )),
        Err(e) if lost(&e) => {
            tracing::info!(error = %e, "dropping the operation handle; following the extension itself");
            Ok((Progress::Lost, None))
        }
        other => other,
    }
}

/// One poll of `op` (if any), then the extension (when `read_extension`), unless the poll's
/// final GET of a finished PUT has just read it: at most two reads, the poll and one extension.
pub async fn progress_and_extension<A: AzureApi>(
    azure: &A,
    machine_id: &MachineId,
    op: Option<&Operation>,
    read_extension: bool,
) -> Result<(Option<Progress>, Option<MachineExtension>), AzureError> {
    let (progress, done) = match op {
        Some(op) => {
            let (progress, done) = poll(azure, op).await?;
            (Some(progress), done)
        }
        None => (None, None),
    };
    let actual = match done {
        Some(ext) => Some(ext),
        None if read_extension => azure.get_extension(machine_id, EXTENSION_NAME).await?,
        None => None,
    };
    Ok((progress, actual))
}

/// The machine, its VM instance and the settings' endpoints: what a full look reads besides the
/// extension. They change rarely, so a drift check of a settled extension reuses them and reads
/// the extension alone (T5); `plan::full_look_due` decides.
#[derive(Clone, Debug)]
pub struct Surroundings {
    /// The Arc machine, trimmed to what the desired extension needs (location, OS type).
    pub machine: Option<Machine>,
    /// Its VM instance's facts (None: no VM instance).
    pub vm: Option<VmFacts>,
    /// The settings' endpoints (read only when the machine exists).
    pub endpoints: Result<Endpoints, SourceProblem>,
}

/// Everything one look at Azure found.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The machine, VM and endpoints (read now, or remembered from the last full look).
    pub around: Surroundings,
    /// The poll of the operation in flight, if one was held.
    pub progress: Option<Progress>,
    /// The extension, read after the poll.
    pub actual: Option<MachineExtension>,
}

/// Reads the endpoints from the source's cluster.
async fn endpoints<A: AzureApi>(
    azure: &A,
    source: &Source,
) -> Result<Result<Endpoints, SourceProblem>, AzureError> {
    let (cluster_id, maa) = match source {
        Source::Cluster(c) => (c, None),
        Source::Provider {
            attest_uri,
            cluster,
            ..
        } => (cluster, Some(attest_uri.as_str())),
        Source::Problem(p) => return Ok(Err(p.clone())),
    };
    Ok(match azure.get_cluster(cluster_id).await? {
        None => Err(SourceProblem::ClusterNotFound {
            cluster: cluster_id.to_string(),
        }),
        Some(cluster) => endpoints_from_cluster(&cluster_id.to_string(), &cluster, maa),
    })
}

/// Only what `desired::target` uses, so remembering it costs little per object.
fn trim(machine: Machine) -> Machine {
    Machine {
        location: machine.location,
        properties: crate::azure::MachineProperties {
            os_type: machine.properties.os_type,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Reads the machine, its VM instance and the cluster. A missing machine ends the read early
/// (nothing else can exist).
async fn surroundings<A: AzureApi>(
    azure: &A,
    machine_id: &MachineId,
    source: &Source,
) -> Result<Surroundings, AzureError> {
    let Some(machine) = azure.get_machine(machine_id).await? else {
        return Ok(Surroundings {
            machine: None,
            vm: None,
            endpoints: Err(SourceProblem::ClusterNotFound {
                cluster: String::new(),
            }),
        });
    };
    let vm = azure
        .get_vm_instance(machine_id)
        .await?
        .as_ref()
        .map(VmFacts::from_instance);
    let endpoints = endpoints(azure, source).await?;
    Ok(Surroundings {
        machine: Some(trim(machine)),
        vm,
        endpoints,
    })
}

/// The ARM reads of one [`read`] at most: machine, VM instance and cluster unless they are known,
/// the operation poll when one is in flight, and the extension (read by the poll's final GET when
/// a PUT has just finished). Booking fewer could keep a look from ever finishing under a saturated
/// budget; booking more wastes the budget, since an unused token is not given back.
pub fn reads_needed(surroundings_known: bool, operation: bool) -> u32 {
    let around = if surroundings_known { 0 } else { 3 };
    around + u32::from(operation) + 1
}

/// One look at Azure for a machine: its surroundings (unless `known` is given), one poll of
/// `op`, then the extension (skipped when the machine is missing).
pub async fn read<A: AzureApi>(
    azure: &A,
    machine_id: &MachineId,
    source: &Source,
    op: Option<&Operation>,
    known: Option<&Surroundings>,
) -> Result<Facts, AzureError> {
    let around = match known {
        Some(k) => k.clone(),
        None => surroundings(azure, machine_id, source).await?,
    };
    let (progress, actual) =
        progress_and_extension(azure, machine_id, op, around.machine.is_some()).await?;
    Ok(Facts {
        around,
        progress,
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::Service;

    #[test]
    fn a_source_is_recognised_by_its_cluster_and_endpoint() {
        let cluster = |n: &str| {
            format!("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.AzureStackHCI/clusters/{n}")
                .parse::<ClusterId>()
                .unwrap()
        };
        let named = |name: &str, uri: &str, c: &str| Source::Provider {
            name: name.to_owned(),
            attest_uri: uri.to_owned(),
            cluster: cluster(c),
        };
        let provider = |uri: &str, c: &str| named("p", uri, c);
        let a = Source::Cluster(cluster("c1"));
        assert_eq!(
            a.fingerprint(),
            Source::Cluster(cluster("c1")).fingerprint()
        );
        assert_ne!(
            a.fingerprint(),
            Source::Cluster(cluster("c2")).fingerprint()
        );
        let p = provider("https://a.attest.azure.net", "c1");
        assert_ne!(p.fingerprint(), a.fingerprint());
        assert_ne!(
            p.fingerprint(),
            provider("https://b.attest.azure.net", "c1").fingerprint()
        );
        assert_eq!(
            p.fingerprint(),
            named("renamed", "https://a.attest.azure.net", "c1").fingerprint(),
            "the name changes no settings"
        );
    }

    #[test]
    fn reads_of_a_look() {
        assert_eq!(reads_needed(false, false), 4);
        assert_eq!(reads_needed(false, true), 5);
        assert_eq!(reads_needed(true, false), 1);
        assert_eq!(reads_needed(true, true), 2);
    }

    #[test]
    fn lost_handles() {
        let api = |status| AzureError::Api {
            service: Service::Arm,
            operation: "put_extension",
            status,
            code: None,
            message: None,
            retry_after: None,
            request_id: None,
        };
        assert!(lost(&api(404)));
        assert!(lost(&AzureError::InvalidResponse {
            service: Service::Arm,
            operation: "put_extension",
            reason: "the resource is missing after its operation succeeded",
        }));
        for s in [401, 403, 429, 500, 503] {
            assert!(!lost(&api(s)), "{s}");
        }
    }
}
