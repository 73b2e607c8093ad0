//! The emulator handle: start/stop, and the Rust API for seeding, inspecting, faults and the clock.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::clock::Clock;
use crate::config::{EmulatorConfig, LroConfig, ThrottleConfig};
use crate::faults::{Fault, FaultId, FaultSet};
use crate::jwt::{b64std, b64url, sha256};
use crate::keys::{RsaKey, cached_key};
use crate::log::{RequestLog, RequestRecord};
use crate::seed::Seed;
use crate::server::{Listener, accept_loop};
use crate::state::{
    ArmId, AttestationStatusProps, Client, ClusterSpec, ExtensionBehavior, ExtensionPatch,
    ExtensionSpec, FederatedCredential, GuestState, Machine, ProviderSpec, StatusSource,
    StoredPolicy, Tenant, Vm, VmSpec, World,
};
use crate::throttle::Buckets;
use crate::tls::TlsMaterial;

/// Shared state of a running emulator.
pub(crate) struct Inner {
    cfg: Mutex<EmulatorConfig>,
    pub(crate) endpoint: String,
    world: Mutex<World>,
    faults: Mutex<FaultSet>,
    log: Mutex<RequestLog>,
    pub(crate) clock: Clock,
    rng: Mutex<ChaCha20Rng>,
    buckets: Mutex<Buckets>,
    pub(crate) entra_key: Arc<RsaKey>,
    pub(crate) entra_kid: String,
    pub(crate) maa_key: Arc<RsaKey>,
    pub(crate) ca_pem: String,
    pub(crate) initial_seed: Mutex<Option<Seed>>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A UUID-shaped string derived from `s` (stable across runs).
pub(crate) fn stable_uuid(s: &str) -> String {
    uuid_from(&sha256(s.as_bytes()))
}

fn uuid_from(b: &[u8]) -> String {
    let mut x = [0u8; 16];
    for (d, s) in x.iter_mut().zip(b.iter()) {
        *d = *s;
    }
    x[6] = (x[6] & 0x0F) | 0x40;
    x[8] = (x[8] & 0x3F) | 0x80;
    let h = x.iter().fold(String::with_capacity(32), |mut acc, v| {
        let _ = std::fmt::Write::write_fmt(&mut acc, format_args!("{v:02x}"));
        acc
    });
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl Inner {
    pub(crate) fn cfg(&self) -> EmulatorConfig {
        lock(&self.cfg).clone()
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    pub(crate) fn faults(&self) -> MutexGuard<'_, FaultSet> {
        lock(&self.faults)
    }

    pub(crate) fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.log)
    }

    pub(crate) fn buckets(&self) -> MutexGuard<'_, Buckets> {
        lock(&self.buckets)
    }

    /// A random UUID from the seeded generator.
    pub(crate) fn random_id(&self) -> String {
        let mut b = [0u8; 16];
        lock(&self.rng).fill_bytes(&mut b);
        uuid_from(&b)
    }

    /// JWK of the Entra signing key.
    pub(crate) fn entra_jwk(&self) -> Value {
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.entra_kid,
            "n": self.entra_key.n_b64(), "e": self.entra_key.e_b64(),
        })
    }

    /// attestUri of a provider.
    pub(crate) fn attest_uri(&self, name: &str) -> String {
        format!("{}/attest/{}", self.endpoint, name)
    }
}

/// A running emulator. Dropping it does not stop the server; call [`Emulator::shutdown`].
///
/// All seeding, inspection, fault and clock methods live on [`Control`], which `Emulator`
/// dereferences to; [`Emulator::control`] gives a cloneable handle for other tasks.
#[derive(Debug)]
pub struct Emulator {
    control: Control,
    admin_endpoint: Option<String>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Cloneable handle to a running emulator's state (seeding, inspection, faults, clock).
#[derive(Debug, Clone)]
pub struct Control {
    inner: Arc<Inner>,
}

impl std::ops::Deref for Emulator {
    type Target = Control;

    fn deref(&self) -> &Control {
        &self.control
    }
}

fn machine_arm_id(id: &str) -> Result<ArmId, Error> {
    ArmId::parse(id, "Microsoft.HybridCompute", "machines").ok_or_else(|| {
        Error::InvalidSeed(format!("not a Microsoft.HybridCompute/machines id: {id}"))
    })
}

fn machine_key(id: &str) -> Result<String, Error> {
    Ok(machine_arm_id(id)?.key("Microsoft.HybridCompute", "machines"))
}

impl Emulator {
    /// Starts the emulator: generates the CA and keys, binds the listeners and serves in the
    /// background on the current tokio runtime.
    pub async fn start(config: EmulatorConfig) -> Result<Self, Error> {
        let seed = config.seed;
        let bits = config.rsa_bits;
        let join = |e: tokio::task::JoinError| Error::Crypto(e.to_string());
        let entra = tokio::task::spawn_blocking(move || cached_key(seed, 1, bits));
        let maa = tokio::task::spawn_blocking(move || cached_key(seed, 2, bits));
        let tls = tokio::task::spawn_blocking(TlsMaterial::generate);
        let (entra_key, maa_key, tls) = (
            entra.await.map_err(join)??,
            maa.await.map_err(join)??,
            tls.await.map_err(join)??,
        );
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let endpoint = format!("https://{addr}");
        let admin = match config.admin_bind {
            Some(a) => Some(TcpListener::bind(a).await?),
            None => None,
        };
        let admin_endpoint = admin
            .as_ref()
            .map(|l| l.local_addr().map(|a| format!("http://{a}")))
            .transpose()?;
        let entra_kid = b64url(&sha256(entra_key.public_key_der()))[..27].to_owned();
        let inner = Arc::new(Inner {
            endpoint,
            world: Mutex::new(World::default()),
            faults: Mutex::new(FaultSet::default()),
            log: Mutex::new(RequestLog::new(config.request_log_capacity)),
            clock: Clock::default(),
            rng: Mutex::new(ChaCha20Rng::seed_from_u64(config.seed)),
            buckets: Mutex::new(Buckets::default()),
            entra_key,
            entra_kid,
            maa_key,
            ca_pem: tls.ca_pem.clone(),
            initial_seed: Mutex::new(None),
            cfg: Mutex::new(config),
        });
        let (tx, rx) = watch::channel(false);
        let acceptor = TlsAcceptor::from(Arc::clone(&tls.server_config));
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            Some(acceptor),
            Arc::clone(&inner),
            Listener::Azure,
            rx.clone(),
        ))];
        if let Some(admin) = admin {
            tasks.push(tokio::spawn(accept_loop(
                admin,
                None,
                Arc::clone(&inner),
                Listener::Admin,
                rx,
            )));
        }
        tracing::info!(endpoint = %inner.endpoint, "azure emulator listening");
        Ok(Self {
            control: Control { inner },
            admin_endpoint,
            shutdown: tx,
            tasks,
        })
    }

    /// Stops accepting, closes connections and waits for the server tasks.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A cloneable handle to the emulator's state.
    pub fn control(&self) -> Control {
        self.control.clone()
    }

    /// `http://127.0.0.1:PORT` of the control API, when `admin_bind` was set.
    pub fn admin_endpoint(&self) -> Option<String> {
        self.admin_endpoint.clone()
    }
}

impl Control {
    pub(crate) fn from_inner(inner: &Arc<Inner>) -> Self {
        Self {
            inner: Arc::clone(inner),
        }
    }

    /// `https://127.0.0.1:PORT` — Entra (`/{tenant}/oauth2/v2.0/token`), IMDS
    /// (`/metadata/identity/oauth2/token`), ARM (`/subscriptions/...`) and MAA (`/attest/{name}`).
    pub fn endpoint(&self) -> String {
        self.inner.endpoint.clone()
    }

    /// PEM of the CA that signed the server certificate (trust only this in clients).
    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }

    /// Writes [`Emulator::ca_pem`] to `path`.
    pub fn write_ca(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        std::fs::write(path, self.inner.ca_pem.as_bytes())?;
        Ok(())
    }

    /// The attestUri a provider named `name` gets: `{endpoint}/attest/{name}`.
    pub fn attest_uri(&self, name: &str) -> String {
        self.inner.attest_uri(name)
    }

    /// The configuration in force.
    pub fn config(&self) -> EmulatorConfig {
        self.inner.cfg()
    }

    /// Changes how long-running operations progress (affects operations started afterwards and
    /// the completion rule of running ones).
    pub fn set_lro_config(&self, lro: LroConfig) {
        lock(&self.inner.cfg).lro = lro;
    }

    /// Changes server-side throttling.
    pub fn set_throttle_config(&self, throttle: ThrottleConfig) {
        lock(&self.inner.cfg).throttle = throttle;
        self.inner.buckets().clear();
    }

    // ----- identities -----

    /// Registers a tenant (tenants are also created implicitly by the calls below).
    pub fn add_tenant(&self, tenant: &str) {
        self.inner
            .world()
            .tenants
            .entry(tenant.to_ascii_lowercase())
            .or_default();
    }

    fn with_client(&self, tenant: &str, client_id: &str, f: impl FnOnce(&mut Client)) {
        let mut w = self.inner.world();
        let t: &mut Tenant = w.tenants.entry(tenant.to_ascii_lowercase()).or_default();
        f(t.clients.entry(client_id.to_ascii_lowercase()).or_default());
    }

    /// Adds an app registration with a client secret.
    pub fn add_service_principal(&self, tenant: &str, client_id: &str, secret: &str) {
        self.with_client(tenant, client_id, |c| c.secrets.push(secret.to_owned()));
    }

    /// Rotates an app registration's client secret: `secret` becomes its only secret, so tokens
    /// can no longer be requested with the old one (tokens already issued stay valid).
    pub fn rotate_client_secret(&self, tenant: &str, client_id: &str, secret: &str) {
        self.with_client(tenant, client_id, |c| c.secrets = vec![secret.to_owned()]);
    }

    /// Adds an app registration that accepts any unexpired client assertion whose audience is
    /// `api://AzureADTokenExchange` (workload identity federation).
    pub fn add_federated_client(&self, tenant: &str, client_id: &str) {
        self.add_federated_credential(tenant, client_id, FederatedCredential::default());
    }

    /// Adds a federated credential with optional issuer/subject constraints.
    pub fn add_federated_credential(
        &self,
        tenant: &str,
        client_id: &str,
        cred: FederatedCredential,
    ) {
        self.with_client(tenant, client_id, |c| c.federated.push(cred));
    }

    /// Enables a managed identity for IMDS: `None` = system-assigned (a client id is derived
    /// from the seed), `Some(id)` = a user-assigned identity with that client id. Returns the
    /// client id.
    pub fn enable_managed_identity(&self, client_id: Option<&str>) -> String {
        let mut w = self.inner.world();
        if let Some(id) = client_id {
            let id = id.to_ascii_lowercase();
            if !w.managed_identities.user.contains(&id) {
                w.managed_identities.user.push(id.clone());
            }
            id
        } else {
            let id = stable_uuid(&format!("system-mi|{}", self.inner.cfg().seed));
            w.managed_identities.system = Some(id.clone());
            id
        }
    }

    /// Mints an access token directly (for tests): `lifetime_secs` may be negative to get an
    /// already-expired token. `audience` e.g. `https://management.azure.com`.
    pub fn mint_token(
        &self,
        tenant: &str,
        client_id: &str,
        audience: &str,
        lifetime_secs: i64,
    ) -> Result<String, Error> {
        let now = crate::timefmt::unix_seconds(SystemTime::now());
        let claims = json!({
            "aud": audience, "iss": format!("https://sts.windows.net/{tenant}/"),
            "iat": now.min(now + lifetime_secs) - 60, "nbf": now.min(now + lifetime_secs) - 60,
            "exp": now + lifetime_secs, "appid": client_id, "appidacr": "1", "idtyp": "app",
            "tid": tenant, "oid": stable_uuid(&format!("{tenant}|{client_id}")), "ver": "1.0",
        });
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": self.inner.entra_kid});
        crate::jwt::sign_jwt(&self.inner.entra_key, &header, &claims)
    }

    // ----- inventory -----

    /// Creates or replaces a cluster.
    pub fn put_cluster(&self, spec: ClusterSpec) -> Result<(), Error> {
        let id = ArmId::parse(&spec.id, "Microsoft.AzureStackHCI", "clusters")
            .ok_or_else(|| Error::InvalidSeed(format!("not a cluster id: {}", spec.id)))?;
        let key = id.key("Microsoft.AzureStackHCI", "clusters");
        let cloud_id = stable_uuid(&format!("cloud|{key}"));
        let spec = ClusterSpec {
            id: id.render("Microsoft.AzureStackHCI", "clusters"),
            ..spec
        };
        self.inner
            .world()
            .clusters
            .insert(key, crate::state::Cluster { spec, cloud_id });
        Ok(())
    }

    /// Creates (or updates the location/OS of) an Arc machine.
    pub fn put_machine(&self, id: &str, location: &str, os_type: &str) -> Result<(), Error> {
        let arm = machine_arm_id(id)?;
        let key = arm.key("Microsoft.HybridCompute", "machines");
        let mut w = self.inner.world();
        let m = w.machines.entry(key).or_insert_with(|| Machine {
            id: arm.render("Microsoft.HybridCompute", "machines"),
            subscription: arm.subscription.clone(),
            resource_group: arm.resource_group.clone(),
            name: arm.name.clone(),
            location: location.to_owned(),
            os_type: os_type.to_owned(),
            vm: None,
            extensions: std::collections::BTreeMap::new(),
            behavior: None,
            guest: GuestState::default(),
        });
        location.clone_into(&mut m.location);
        os_type.clone_into(&mut m.os_type);
        Ok(())
    }

    /// Deletes a machine and everything under it. Returns whether it existed.
    pub fn delete_machine(&self, id: &str) -> bool {
        machine_key(id).is_ok_and(|k| self.inner.world().machines.remove(&k).is_some())
    }

    fn with_machine<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Machine, &EmulatorConfig, SystemTime) -> T,
    ) -> Result<T, Error> {
        let key = machine_key(id)?;
        let cfg = self.inner.cfg();
        let now = self.inner.clock.now();
        let mut w = self.inner.world();
        crate::sim::sync_machine(&mut w, &cfg, &key, now);
        let m = w
            .machines
            .get_mut(&key)
            .ok_or_else(|| Error::NotFound(id.to_owned()))?;
        let out = f(m, &cfg, now);
        crate::sim::sync_guest(m, &cfg, now);
        Ok(out)
    }

    /// Creates or replaces the VM instance (`virtualMachineInstances/default`) of a machine.
    pub fn put_vm_instance(&self, machine_id: &str, spec: VmSpec) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, _| {
            let compromised = m.vm.as_ref().is_some_and(|v| v.compromised);
            let vm_id = stable_uuid(&format!("vm|{}", m.id.to_ascii_lowercase()));
            m.vm = Some(Vm {
                spec,
                compromised,
                vm_id,
            });
        })
    }

    /// Removes the VM instance of a machine.
    pub fn remove_vm_instance(&self, machine_id: &str) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, _| m.vm = None)
    }

    fn with_vm(&self, machine_id: &str, f: impl FnOnce(&mut Vm)) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, _| m.vm.as_mut().map(f))?
            .ok_or_else(|| Error::NotFound(format!("{machine_id} has no VM instance")))
    }

    /// Sets `status.powerState` (`Running`, `Stopped`, ...). A stopped VM stops reporting.
    pub fn set_power_state(&self, machine_id: &str, power_state: &str) -> Result<(), Error> {
        self.with_vm(machine_id, |vm| {
            power_state.clone_into(&mut vm.spec.power_state);
        })
    }

    /// Marks the VM compromised (boot integrity invalid → Unhealthy from its next report).
    pub fn set_compromised(&self, machine_id: &str, compromised: bool) -> Result<(), Error> {
        self.with_vm(machine_id, |vm| vm.compromised = compromised)
    }

    /// Changes the VM's security settings (take effect at the next report).
    pub fn set_vm_security(
        &self,
        machine_id: &str,
        secure_boot: bool,
        enable_tpm: bool,
    ) -> Result<(), Error> {
        self.with_vm(machine_id, |vm| {
            vm.spec.secure_boot_enabled = secure_boot;
            vm.spec.enable_tpm = enable_tpm;
        })
    }

    /// Starts or stops the guest extension's reporting (stopped → the status freezes and goes
    /// stale). `true` also hands a manually set status back to the simulation.
    pub fn set_guest_reporting(&self, machine_id: &str, reporting: bool) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, _| {
            m.guest.reporting = reporting;
            if reporting {
                m.guest.manual = false;
            }
        })
    }

    /// Makes the simulated guest report immediately (if it can report).
    pub fn report_attestation_now(&self, machine_id: &str) -> Result<(), Error> {
        self.with_machine(machine_id, |m, cfg, now| {
            m.guest.was_active = false;
            m.guest.last_report = None;
            crate::sim::sync_guest(m, cfg, now);
        })
    }

    /// Sets the attestation status by hand (`None` removes it: GET answers 404). This takes the
    /// machine out of the guest simulation until `set_guest_reporting(id, true)`.
    pub fn set_attestation_status(
        &self,
        machine_id: &str,
        status: Option<AttestationStatusProps>,
    ) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, _| {
            m.guest.manual = true;
            m.guest.status = status.map(StatusSource::Manual);
        })
    }

    /// The `properties` the attestationStatus GET would return now (`None` = 404).
    pub fn attestation_status(
        &self,
        machine_id: &str,
    ) -> Result<Option<AttestationStatusProps>, Error> {
        let clock = &self.inner.clock;
        self.with_machine(machine_id, |m, _, _| {
            crate::arm::hci::status_props(m, clock)
        })
    }

    /// How extension operations on this machine end.
    pub fn set_extension_behavior(
        &self,
        machine_id: &str,
        behavior: ExtensionBehavior,
    ) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, _| m.behavior = Some(behavior))
    }

    /// How extension operations end on machines without their own behaviour.
    pub fn set_default_extension_behavior(&self, behavior: ExtensionBehavior) {
        self.inner.world().default_behavior = behavior;
    }

    /// Re-decides how the operations still in progress on a machine end (e.g. a `Stuck` one that
    /// Azure finally completes or times out): they end with `behavior` at their next observation.
    /// Returns how many operations were changed.
    pub fn resolve_operations(
        &self,
        machine_id: &str,
        behavior: &ExtensionBehavior,
    ) -> Result<usize, Error> {
        let key = machine_key(machine_id)?;
        let mut w = self.inner.world();
        let mut n = 0;
        for op in w.operations.values_mut() {
            if op.machine == key && op.status == crate::state::OpStatus::InProgress {
                op.behavior = behavior.clone();
                n += 1;
            }
        }
        Ok(n)
    }

    /// Places an extension directly (no LRO), e.g. one installed by hand before the operator.
    pub fn put_extension(&self, machine_id: &str, spec: ExtensionSpec) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, now| {
            let ext = crate::arm::extensions::from_spec(m, spec, now);
            m.extensions.insert(ext.name.to_ascii_lowercase(), ext);
        })
    }

    /// The extension as ARM would return it (without counting as a poll).
    pub fn extension(&self, machine_id: &str, name: &str) -> Option<Value> {
        let clock = &self.inner.clock;
        self.with_machine(machine_id, |m, _, _| {
            m.extensions
                .get(&name.to_ascii_lowercase())
                .map(|e| crate::arm::extensions::render(m, e, clock))
        })
        .ok()
        .flatten()
    }

    /// Removes an extension behind ARM's back. Returns whether it existed.
    pub fn remove_extension(&self, machine_id: &str, name: &str) -> bool {
        self.with_machine(machine_id, |m, _, _| {
            m.extensions.remove(&name.to_ascii_lowercase()).is_some()
        })
        .unwrap_or(false)
    }

    /// Changes an extension behind ARM's back (drift).
    pub fn modify_extension(
        &self,
        machine_id: &str,
        name: &str,
        patch: ExtensionPatch,
    ) -> Result<(), Error> {
        self.with_machine(machine_id, |m, _, now| {
            let e = m.extensions.get_mut(&name.to_ascii_lowercase())?;
            crate::arm::extensions::apply_patch(e, patch, now);
            Some(())
        })?
        .ok_or_else(|| Error::NotFound(format!("extension {name} on {machine_id}")))
    }

    /// Number of extension operations (PUT/PATCH/DELETE accepted by ARM) seen for a machine.
    pub fn extension_operations(&self, machine_id: &str) -> usize {
        let Ok(key) = machine_key(machine_id) else {
            return 0;
        };
        self.inner
            .world()
            .operations
            .values()
            .filter(|o| o.machine == key)
            .count()
    }

    // ----- attestation providers -----

    /// Creates (or updates) an attestation provider directly, bypassing ARM. Returns its ARM JSON.
    pub fn put_attestation_provider(&self, spec: &ProviderSpec) -> Result<Value, Error> {
        let id = ArmId::parse(&spec.id, "Microsoft.Attestation", "attestationProviders")
            .ok_or_else(|| {
                Error::InvalidSeed(format!("not an attestation provider id: {}", spec.id))
            })?;
        let certs = spec
            .policy_signing_certificates
            .iter()
            .map(|c| {
                crate::jwt::b64std_decode(c)
                    .ok_or_else(|| Error::InvalidSeed("bad base64 certificate".into()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let tags = (!spec.tags.is_empty()).then(|| json!(spec.tags));
        let mut w = self.inner.world();
        crate::arm::providers::upsert(
            &self.inner,
            &mut w,
            &id,
            &spec.location,
            tags,
            certs,
            None,
            None,
        )
        .map_err(Error::InvalidSeed)?;
        let key = id.key("Microsoft.Attestation", "attestationProviders");
        Ok(w.providers
            .get(&key)
            .map(|p| crate::arm::providers::render(&self.inner, p))
            .unwrap_or_default())
    }

    /// Deletes a provider behind ARM's back ("deleted by accident"). Returns whether it existed.
    pub fn delete_attestation_provider(&self, id: &str) -> bool {
        ArmId::parse(id, "Microsoft.Attestation", "attestationProviders").is_some_and(|a| {
            self.inner
                .world()
                .providers
                .remove(&a.key("Microsoft.Attestation", "attestationProviders"))
                .is_some()
        })
    }

    /// The provider as ARM would return it.
    pub fn attestation_provider(&self, id: &str) -> Option<Value> {
        let a = ArmId::parse(id, "Microsoft.Attestation", "attestationProviders")?;
        let w = self.inner.world();
        w.providers
            .get(&a.key("Microsoft.Attestation", "attestationProviders"))
            .map(|p| crate::arm::providers::render(&self.inner, p))
    }

    /// The effective policy of a provider (the default when never set).
    pub fn policy(
        &self,
        provider_name: &str,
        attestation_type: &str,
    ) -> Result<StoredPolicy, Error> {
        let w = self.inner.world();
        let p = w
            .provider_by_name(provider_name)
            .ok_or_else(|| Error::NotFound(provider_name.to_owned()))?;
        Ok(crate::maa::effective_policy(p, attestation_type))
    }

    /// Sets a provider's policy text directly (stored as an unsigned JWS).
    pub fn set_policy(
        &self,
        provider_name: &str,
        attestation_type: &str,
        text: &str,
    ) -> Result<(), Error> {
        let mut w = self.inner.world();
        let p = w
            .provider_by_name_mut(provider_name)
            .ok_or_else(|| Error::NotFound(provider_name.to_owned()))?;
        let jws = crate::maa::unsigned_policy_jws(text);
        p.policies.insert(
            attestation_type.to_ascii_lowercase(),
            StoredPolicy {
                text: text.to_owned(),
                jws,
                signed: false,
                is_default: false,
            },
        );
        Ok(())
    }

    // ----- seed, reset, clock -----

    /// Applies a seed document (adds to what exists).
    pub fn apply_seed(&self, seed: &Seed) -> Result<(), Error> {
        crate::seed::apply(self, seed)
    }

    /// Remembers a seed to re-apply on [`Emulator::reset`].
    pub fn set_initial_seed(&self, seed: Option<Seed>) {
        *lock(&self.inner.initial_seed) = seed;
    }

    /// Clears the world, faults, request log, throttling state and clock offset, then re-applies
    /// the initial seed (if any).
    pub fn reset(&self) -> Result<(), Error> {
        *self.inner.world() = World::default();
        self.inner.faults().clear();
        self.inner.log().clear();
        self.inner.buckets().clear();
        self.inner.clock.reset();
        let seed = lock(&self.inner.initial_seed).clone();
        match seed {
            Some(s) => self.apply_seed(&s),
            None => Ok(()),
        }
    }

    /// Advances virtual time (LROs with a duration complete, guests report, statuses age).
    pub fn advance_clock(&self, by: Duration) {
        self.inner.clock.advance(by);
        let cfg = self.inner.cfg();
        let now = self.inner.clock.now();
        crate::sim::sync_all(&mut self.inner.world(), &cfg, now);
    }

    /// How far virtual time is ahead of real time.
    pub fn clock_offset(&self) -> Duration {
        self.inner.clock.offset()
    }

    /// Current virtual time.
    pub fn virtual_now(&self) -> SystemTime {
        self.inner.clock.now()
    }

    // ----- faults and the request log -----

    /// Arms a fault. Faults are checked in order; the first live match shapes the response.
    pub fn add_fault(&self, fault: Fault) -> Result<FaultId, Error> {
        self.inner.faults().add(fault)
    }

    /// Disarms a fault. Returns whether it existed.
    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.inner.faults().remove(id)
    }

    /// Disarms all faults.
    pub fn clear_faults(&self) {
        self.inner.faults().clear();
    }

    /// How many requests a fault has shaped.
    pub fn fault_hits(&self, id: FaultId) -> Option<u32> {
        self.inner.faults().applied(id)
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.inner.log().snapshot()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.inner.log().clear();
    }

    /// The base64 DER of the MAA instance certificate of a provider (what `/certs` publishes).
    pub fn provider_signing_certificate(&self, provider_name: &str) -> Option<String> {
        self.inner
            .world()
            .provider_by_name(provider_name)
            .map(|p| b64std(&p.instance_cert))
    }
}
