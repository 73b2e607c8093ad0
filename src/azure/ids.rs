//! ARM resource ids: parsing, validation and case-insensitive comparison (no I/O).
//!
//! An id is `/subscriptions/{sub}[/resourceGroups/{rg}]` followed by one or more provider segments
//! `/providers/{Namespace}/{type}/{name}[/{type}/{name}...]`; extension resources nest another provider segment
//! (`.../machines/{vm}/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default`). ARM treats ids, types
//! and names case-insensitively, so equality and hashing here do too; the original spelling is kept for display.

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest id accepted.
const MAX_ID_LEN: usize = 2048;

/// Why a resource id, name or argument was rejected. It holds the rejected input (ids are not secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {reason}")]
pub struct IdError {
    /// What was being parsed (`resource id`, `extension name`, ...).
    pub what: &'static str,
    /// The rejected input, bounded in length.
    pub input: String,
    /// Why it was rejected.
    pub reason: &'static str,
}

impl IdError {
    pub(crate) fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        let mut input = input.to_owned();
        if input.len() > 300 {
            let mut end = 300;
            while !input.is_char_boundary(end) {
                end -= 1;
            }
            input.truncate(end);
        }
        IdError {
            what,
            input,
            reason,
        }
    }
}

/// One `/providers/{namespace}/{type}/{name}...` segment of a resource id.
#[derive(Debug, Clone)]
struct ProviderSegment {
    namespace: String,
    /// `(type, name)` pairs, outermost first.
    types: Vec<(String, String)>,
}

/// A parsed, validated ARM resource id.
#[derive(Debug, Clone)]
pub struct ResourceId {
    subscription: String,
    resource_group: Option<String>,
    providers: Vec<ProviderSegment>,
}

fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Validates a resource name: 1–260 characters, no path or query delimiters, no whitespace or control
/// characters, not `.` or `..`.
pub(crate) fn validate_name(what: &'static str, name: &str) -> Result<(), IdError> {
    if name.is_empty() {
        return Err(IdError::new(what, name, "empty"));
    }
    if name.chars().count() > 260 {
        return Err(IdError::new(what, name, "longer than 260 characters"));
    }
    if name == "." || name == ".." {
        return Err(IdError::new(what, name, "a dot segment"));
    }
    if name.chars().any(|c| {
        c.is_control() || c.is_whitespace() || matches!(c, '/' | '\\' | '?' | '#' | '%' | '&' | '"')
    }) {
        return Err(IdError::new(what, name, "contains a forbidden character"));
    }
    Ok(())
}

fn validate_resource_group(name: &str) -> Result<(), IdError> {
    const WHAT: &str = "resource group";
    if name.is_empty() || name.chars().count() > 90 {
        return Err(IdError::new(WHAT, name, "must have 1 to 90 characters"));
    }
    if name.ends_with('.') {
        return Err(IdError::new(WHAT, name, "must not end with a period"));
    }
    if !name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '(' | ')'))
    {
        return Err(IdError::new(WHAT, name, "contains a forbidden character"));
    }
    Ok(())
}

fn validate_namespace(ns: &str) -> Result<(), IdError> {
    let ok = ns.split('.').count() >= 2
        && ns
            .split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if ok {
        Ok(())
    } else {
        Err(IdError::new(
            "provider namespace",
            ns,
            "must look like Microsoft.Name",
        ))
    }
}

fn validate_type(t: &str) -> Result<(), IdError> {
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Err(IdError::new("resource type", t, "must be alphanumeric"))
    } else if t.eq_ignore_ascii_case("providers") {
        // the parser reads it as the start of an extension resource: the id would not round-trip
        Err(IdError::new("resource type", t, "is the providers keyword"))
    } else {
        Ok(())
    }
}

impl ResourceId {
    /// Parses and validates an ARM resource id. A missing leading `/` and a trailing `/` are tolerated (some
    /// Azure examples omit the leading slash); the subscription must be a GUID; keywords match case-insensitively.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        const WHAT: &str = "resource id";
        if input.len() > MAX_ID_LEN {
            return Err(IdError::new(WHAT, input, "too long"));
        }
        let trimmed = input.trim_start_matches('/').trim_end_matches('/');
        let segs: Vec<&str> = trimmed.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(IdError::new(WHAT, input, "empty path segment"));
        }
        let mut it = segs.into_iter().peekable();
        match it.next() {
            Some(s) if s.eq_ignore_ascii_case("subscriptions") => {}
            _ => return Err(IdError::new(WHAT, input, "must start with /subscriptions/")),
        }
        let subscription = it
            .next()
            .ok_or_else(|| IdError::new(WHAT, input, "missing subscription id"))?;
        if !is_guid(subscription) {
            return Err(IdError::new(WHAT, input, "subscription is not a GUID"));
        }
        let mut resource_group = None;
        if it
            .peek()
            .is_some_and(|s| s.eq_ignore_ascii_case("resourceGroups"))
        {
            it.next();
            let rg = it
                .next()
                .ok_or_else(|| IdError::new(WHAT, input, "missing resource group name"))?;
            validate_resource_group(rg)?;
            resource_group = Some(rg.to_owned());
        }
        let mut providers = Vec::new();
        while let Some(kw) = it.next() {
            if !kw.eq_ignore_ascii_case("providers") {
                return Err(IdError::new(WHAT, input, "expected /providers/"));
            }
            let namespace = it
                .next()
                .ok_or_else(|| IdError::new(WHAT, input, "missing provider namespace"))?;
            validate_namespace(namespace)?;
            let mut types = Vec::new();
            while let Some(t) = it.next_if(|s| !s.eq_ignore_ascii_case("providers")) {
                let name = it
                    .next()
                    .ok_or_else(|| IdError::new(WHAT, input, "resource type without a name"))?;
                validate_type(t)?;
                validate_name("resource name", name)?;
                types.push((t.to_owned(), name.to_owned()));
            }
            if types.is_empty() {
                return Err(IdError::new(
                    WHAT,
                    input,
                    "provider without a resource type",
                ));
            }
            providers.push(ProviderSegment {
                namespace: namespace.to_owned(),
                types,
            });
        }
        Ok(ResourceId {
            subscription: subscription.to_owned(),
            resource_group,
            providers,
        })
    }

    /// The subscription id (a GUID).
    pub fn subscription(&self) -> &str {
        &self.subscription
    }

    /// The resource group name, if the id is under one.
    pub fn resource_group(&self) -> Option<&str> {
        self.resource_group.as_deref()
    }

    /// The namespace of the innermost provider, e.g. `Microsoft.AzureStackHCI`.
    pub fn provider_namespace(&self) -> Option<&str> {
        self.providers.last().map(|p| p.namespace.as_str())
    }

    /// The full type of the innermost resource, e.g. `Microsoft.HybridCompute/machines/extensions`.
    pub fn resource_type(&self) -> Option<String> {
        self.providers.last().map(|p| {
            let mut s = p.namespace.clone();
            for (t, _) in &p.types {
                s.push('/');
                s.push_str(t);
            }
            s
        })
    }

    /// The name of the innermost resource.
    pub fn name(&self) -> Option<&str> {
        self.providers
            .last()
            .and_then(|p| p.types.last())
            .map(|(_, n)| n.as_str())
    }

    /// Whether the innermost resource has the given full type (case-insensitive).
    pub fn is_type(&self, full_type: &str) -> bool {
        self.resource_type()
            .is_some_and(|t| t.eq_ignore_ascii_case(full_type))
    }

    /// The id of a child resource of the innermost resource.
    pub fn child(&self, resource_type: &str, name: &str) -> Result<ResourceId, IdError> {
        validate_type(resource_type)?;
        validate_name("resource name", name)?;
        let mut id = self.clone();
        match id.providers.last_mut() {
            Some(p) => p.types.push((resource_type.to_owned(), name.to_owned())),
            None => {
                return Err(IdError::new(
                    "resource id",
                    &self.to_string(),
                    "has no resource",
                ));
            }
        }
        Ok(id)
    }

    /// The id of an extension resource of another provider on this resource.
    pub fn extension(
        &self,
        namespace: &str,
        resource_type: &str,
        name: &str,
    ) -> Result<Self, IdError> {
        validate_namespace(namespace)?;
        validate_type(resource_type)?;
        validate_name("resource name", name)?;
        let mut id = self.clone();
        id.providers.push(ProviderSegment {
            namespace: namespace.to_owned(),
            types: vec![(resource_type.to_owned(), name.to_owned())],
        });
        Ok(id)
    }

    /// The path segments of the id, without the leading empty segment (for URL building).
    pub(crate) fn segments(&self) -> Vec<&str> {
        let mut v = vec!["subscriptions", self.subscription.as_str()];
        if let Some(rg) = &self.resource_group {
            v.push("resourceGroups");
            v.push(rg);
        }
        for p in &self.providers {
            v.push("providers");
            v.push(&p.namespace);
            for (t, n) in &p.types {
                v.push(t);
                v.push(n);
            }
        }
        v
    }

    fn canonical_lower(&self) -> String {
        self.to_string().to_lowercase()
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in self.segments() {
            write!(f, "/{s}")?;
        }
        Ok(())
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.canonical_lower() == other.canonical_lower()
    }
}

impl Eq for ResourceId {}

impl Hash for ResourceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.canonical_lower().hash(state);
    }
}

impl std::str::FromStr for ResourceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ResourceId::parse(s)
    }
}

impl Serialize for ResourceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResourceId::parse(&s).map_err(serde::de::Error::custom)
    }
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $ty:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub struct $name(ResourceId);

        impl $name {
            /// The resource type this id must have.
            pub const RESOURCE_TYPE: &'static str = $ty;

            /// Parses an id and checks that it names a resource of [`Self::RESOURCE_TYPE`] directly under a
            /// resource group.
            pub fn parse(input: &str) -> Result<Self, IdError> {
                let id = ResourceId::parse(input)?;
                Self::try_from(id)
            }

            /// Builds the id from its parts.
            pub fn new(subscription: &str, resource_group: &str, name: &str) -> Result<Self, IdError> {
                let (ns, ty) = $ty.split_once('/').unwrap_or(($ty, ""));
                Self::parse(&format!(
                    "/subscriptions/{subscription}/resourceGroups/{resource_group}/providers/{ns}/{ty}/{name}"
                ))
            }

            /// The generic resource id.
            pub fn as_resource_id(&self) -> &ResourceId {
                &self.0
            }

            /// The subscription id.
            pub fn subscription(&self) -> &str {
                self.0.subscription()
            }

            /// The resource group.
            pub fn resource_group(&self) -> &str {
                self.0.resource_group().unwrap_or_default()
            }

            /// The resource name.
            pub fn name(&self) -> &str {
                self.0.name().unwrap_or_default()
            }
        }

        impl TryFrom<ResourceId> for $name {
            type Error = IdError;
            fn try_from(id: ResourceId) -> Result<Self, IdError> {
                if id.resource_group.is_none()
                    || id.providers.len() != 1
                    || id.providers[0].types.len() != 1
                    || !id.is_type($ty)
                {
                    return Err(IdError::new($what, &id.to_string(), concat!("not a ", $ty, " id")));
                }
                Ok($name(id))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// The id of a `Microsoft.Attestation/attestationProviders` resource.
    ProviderId,
    "Microsoft.Attestation/attestationProviders",
    "attestation provider id"
);
typed_id!(
    /// The id of an Azure Local cluster (`Microsoft.AzureStackHCI/clusters`).
    ClusterId,
    "Microsoft.AzureStackHCI/clusters",
    "cluster id"
);
typed_id!(
    /// The id of an Arc machine (`Microsoft.HybridCompute/machines`), which is also the `resourceUri` of its
    /// Azure Local VM instance.
    MachineId,
    "Microsoft.HybridCompute/machines",
    "machine id"
);

impl MachineId {
    /// The id of a machine extension, e.g. `GuestAttestation`.
    pub fn extension_id(&self, extension: &str) -> Result<ResourceId, IdError> {
        validate_name("extension name", extension)?;
        self.0.child("extensions", extension)
    }

    /// The id of the machine's Azure Local VM instance (`virtualMachineInstances/default`).
    pub fn vm_instance_id(&self) -> ResourceId {
        let mut id = self.0.clone();
        id.providers.push(ProviderSegment {
            namespace: "Microsoft.AzureStackHCI".into(),
            types: vec![("virtualMachineInstances".into(), "default".into())],
        });
        id
    }

    /// The id of the VM instance's attestation status (`.../attestationStatus/default`).
    pub fn attestation_status_id(&self) -> ResourceId {
        let mut id = self.vm_instance_id();
        if let Some(p) = id.providers.last_mut() {
            p.types.push(("attestationStatus".into(), "default".into()));
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB: &str = "fd3c3665-1729-4b7b-9a38-238e83b0f98b";

    #[test]
    fn parses_a_nested_extension_resource() {
        let s = format!(
            "/subscriptions/{SUB}/resourceGroups/testrg/providers/Microsoft.HybridCompute/machines/DemoVM/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default/attestationStatus/default"
        );
        let id = ResourceId::parse(&s).unwrap();
        assert_eq!(id.subscription(), SUB);
        assert_eq!(id.resource_group(), Some("testrg"));
        assert_eq!(id.provider_namespace(), Some("Microsoft.AzureStackHCI"));
        assert_eq!(
            id.resource_type().unwrap(),
            "Microsoft.AzureStackHCI/virtualMachineInstances/attestationStatus"
        );
        assert_eq!(id.name(), Some("default"));
        assert_eq!(id.to_string(), s);
    }

    #[test]
    fn comparison_is_case_insensitive() {
        let a = ResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/RG/providers/Microsoft.HybridCompute/machines/vm1/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default/AttestationStatus/default"
        ))
        .unwrap();
        let m = MachineId::new(SUB, "rg", "VM1").unwrap();
        assert_eq!(a, m.attestation_status_id());
        let mut set = std::collections::HashSet::new();
        set.insert(a);
        assert!(set.contains(&m.attestation_status_id()));
        // keywords too
        let lower = ResourceId::parse(&format!(
            "/SUBSCRIPTIONS/{SUB}/resourcegroups/rg/PROVIDERS/microsoft.hybridcompute/machines/vm1"
        ))
        .unwrap();
        assert!(MachineId::try_from(lower).is_ok());
    }

    #[test]
    fn tolerates_missing_leading_slash() {
        let id = ProviderId::parse(&format!(
            "subscriptions/{SUB}/resourceGroups/MyResourceGroup/providers/Microsoft.Attestation/attestationProviders/myattestationprovider"
        ))
        .unwrap();
        assert_eq!(id.name(), "myattestationprovider");
        assert_eq!(id.resource_group(), "MyResourceGroup");
        assert!(id.to_string().starts_with("/subscriptions/"));
    }

    #[test]
    fn rejects_malformed_ids() {
        let bad = [
            String::new(),
            "/".into(),
            "/subscriptions".into(),
            "/subscriptions/not-a-guid/resourceGroups/rg".into(),
            format!("/subscriptions/{SUB}/resourceGroups//providers/Microsoft.X/y/z"),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines"
            ),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute"),
            format!("/subscriptions/{SUB}/resourceGroups/rg/providers/NoDot/machines/vm"),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/.."
            ),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/a?b"
            ),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/a%2Fb"
            ),
            format!("/subscriptions/{SUB}/resourceGroups/rg/things/x"),
            format!("/subscriptions/{SUB}/resourceGroups/bad rg/providers/Microsoft.A/b/c"),
        ];
        for b in &bad {
            assert!(ResourceId::parse(b).is_err(), "accepted {b:?}");
        }
    }

    #[test]
    fn typed_ids_check_the_type() {
        let cluster = format!(
            "/subscriptions/{SUB}/resourceGroups/test-rg/providers/Microsoft.AzureStackHCI/clusters/myCluster"
        );
        assert!(ClusterId::parse(&cluster).is_ok());
        let err = MachineId::parse(&cluster).unwrap_err();
        assert_eq!(err.what, "machine id");
        let nested = format!(
            "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm/extensions/x"
        );
        assert!(MachineId::parse(&nested).is_err());
    }

    #[test]
    fn machine_children() {
        let m = MachineId::new(SUB, "rg", "vm-01").unwrap();
        assert_eq!(
            m.extension_id("GuestAttestation").unwrap().to_string(),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm-01/extensions/GuestAttestation"
            )
        );
        assert!(m.extension_id("a/b").is_err());
        assert_eq!(
            m.vm_instance_id().to_string(),
            format!(
                "/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.HybridCompute/machines/vm-01/providers/Microsoft.AzureStackHCI/virtualMachineInstances/default"
            )
        );
    }

    #[test]
    fn a_child_type_cannot_be_the_providers_keyword() {
        // Regression (property tests, issue 11): child("providers", x) built an id whose text parses
        // as another provider segment, so it did not round-trip.
        let m = MachineId::new(SUB, "rg", "vm").unwrap();
        assert!(m.as_resource_id().child("Providers", "x").is_err());
        assert!(
            m.as_resource_id()
                .extension("Microsoft.X", "providers", "x")
                .is_err()
        );
        let child = m.as_resource_id().child("extensions", "providers").unwrap();
        assert_eq!(ResourceId::parse(&child.to_string()).unwrap(), child);
    }

    #[test]
    fn serde_round_trip() {
        let m = MachineId::new(SUB, "rg", "vm").unwrap();
        let json = serde_json::to_string(&m).unwrap();
        let back: MachineId = serde_json::from_str(&json).unwrap();
        assert_eq!(m, back);
        assert!(serde_json::from_str::<MachineId>("\"/subscriptions/x\"").is_err());
    }
}
