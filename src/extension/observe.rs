//! One look at Azure (I/O): the machine, its VM instance, the cluster the settings come from,
//! one poll of the operation in flight (if any), and the extension. Every read is a GET; the
//! only writes are in `reconcile` (PUT, DELETE).

use std::time::Duration;

use crate::azure::{
    AzureApi, ClusterId, Error as AzureError, Lro, LroPoll, Machine, MachineExtension, MachineId,
    VmInstance,
};

use super::desired::EXTENSION_NAME;
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
    /// settings may have changed, so Azure is looked at again at once).
    pub fn fingerprint(&self) -> String {
        match self {
            Self::Cluster(c) => c.to_string(),
            Self::Provider {
                attest_uri,
                cluster,
                ..
            } => format!("{attest_uri}|{cluster}"),
            Self::Problem(p) => p.to_string(),
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

/// Polls `op` once. A failed operation is a result, not an error; errors are about the poll.
pub async fn poll<A: AzureApi>(azure: &A, op: &Operation) -> Result<Progress, AzureError> {
    let result = match op {
        Operation::Put(lro) => azure.poll_operation(lro).await.map(|p| match p {
            LroPoll::Pending { retry_after, .. } => Progress::Pending(retry_after),
            LroPoll::Done(_) => Progress::Succeeded,
        }),
        Operation::Delete(lro) => azure.poll_operation(lro).await.map(|p| match p {
            LroPoll::Pending { retry_after, .. } => Progress::Pending(retry_after),
            LroPoll::Done(()) => Progress::Succeeded,
        }),
    };
    match result {
        Err(AzureError::OperationFailed {
            code,
            message,
            status,
            ..
        }) => Ok(Progress::Failed(match (code, message) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (None, Some(m)) => m,
            (Some(c), None) => c,
            (None, None) => format!("the operation ended {status}"),
        })),
        Err(e) if lost(&e) => {
            tracing::info!(error = %e, "dropping the operation handle; following the extension itself");
            Ok(Progress::Lost)
        }
        other => other,
    }
}

/// Everything one look at Azure found.
#[derive(Clone, Debug)]
pub struct Facts {
    /// The Arc machine.
    pub machine: Option<Machine>,
    /// Its VM instance.
    pub vm: Option<VmInstance>,
    /// The settings' endpoints (read only when the machine exists).
    pub endpoints: Result<Endpoints, SourceProblem>,
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

/// One look at Azure for a machine: machine, VM instance, cluster, one poll of `op`, extension.
/// A missing machine ends the look early (nothing else can exist).
pub async fn read<A: AzureApi>(
    azure: &A,
    machine_id: &MachineId,
    source: &Source,
    op: Option<&Operation>,
) -> Result<Facts, AzureError> {
    let Some(machine) = azure.get_machine(machine_id).await? else {
        let progress = match op {
            Some(op) => Some(poll(azure, op).await?),
            None => None,
        };
        return Ok(Facts {
            machine: None,
            vm: None,
            endpoints: Err(SourceProblem::ClusterNotFound {
                cluster: String::new(),
            }),
            progress,
            actual: None,
        });
    };
    let vm = azure.get_vm_instance(machine_id).await?;
    let endpoints = endpoints(azure, source).await?;
    let progress = match op {
        Some(op) => Some(poll(azure, op).await?),
        None => None,
    };
    let actual = azure.get_extension(machine_id, EXTENSION_NAME).await?;
    Ok(Facts {
        machine: Some(machine),
        vm,
        endpoints,
        progress,
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::Service;

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
