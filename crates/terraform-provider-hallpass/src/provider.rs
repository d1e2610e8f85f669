//! The `tfplugin6.Provider` service: schemas, the provider block, and
//! dispatch to the data sources and resources by type name.
//!
//! One process serves one Terraform phase. `ConfigureProvider` comes before
//! any read and builds the HTTP client every later call uses; nothing is
//! kept between processes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::api::{self, Api};
use crate::config;
use crate::data_sources::{self, DataSource};
use crate::diag;
use crate::ephemeral;
use crate::proto::tfplugin6::provider_server::Provider;
use crate::proto::tfplugin6::{
    ApplyResourceChangeRequest, ApplyResourceChangeResponse, CloseEphemeralRequest, CloseEphemeralResponse,
    ConfigureProviderRequest, ConfigureProviderResponse, Diagnostic, DynamicValue, GetMetadataRequest,
    GetMetadataResponse, GetProviderSchemaRequest, GetProviderSchemaResponse, ImportResourceStateRequest,
    ImportResourceStateResponse, ImportedResource, OpenEphemeralRequest, OpenEphemeralResponse,
    PlanResourceChangeRequest, PlanResourceChangeResponse, ReadDataSourceRequest, ReadDataSourceResponse,
    ReadResourceRequest, ReadResourceResponse, RenewEphemeralRequest, RenewEphemeralResponse, ServerCapabilities,
    StopProviderRequest, StopProviderResponse, TypeName, UpgradeResourceStateRequest, UpgradeResourceStateResponse,
    ValidateDataResourceConfigRequest, ValidateDataResourceConfigResponse, ValidateEphemeralConfigRequest,
    ValidateEphemeralConfigResponse, ValidateProviderConfigRequest, ValidateProviderConfigResponse,
    ValidateResourceConfigRequest, ValidateResourceConfigResponse,
};
use crate::resources::{self, Resource};
use crate::value::Object;
use crate::value::to_dynamic;

/// The provider: its data sources, and once configured, its client.
pub struct HallpassProvider {
    data_sources: BTreeMap<&'static str, Box<dyn DataSource>>,
    resources: BTreeMap<&'static str, Box<dyn Resource>>,
    api: Mutex<Option<Arc<Api>>>,
    /// Raised by `StopProvider`: calls in flight give up.
    stop: watch::Sender<bool>,
}

impl Default for HallpassProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl HallpassProvider {
    pub fn new() -> Self {
        Self {
            data_sources: data_sources::all()
                .into_iter()
                .map(|source| (source.type_name(), source))
                .collect(),
            resources: resources::all()
                .into_iter()
                .map(|resource| (resource.type_name(), resource))
                .collect(),
            api: Mutex::new(None),
            stop: watch::Sender::new(false),
        }
    }

    fn capabilities() -> ServerCapabilities {
        // Without `plan_destroy` Terraform plans a destroy itself (no
        // call); the schema is fetched in every process.
        ServerCapabilities {
            plan_destroy: false,
            get_provider_schema_optional: false,
            move_resource_state: false,
        }
    }

    fn data_source(&self, type_name: &str) -> Result<&dyn DataSource, Diagnostic> {
        self.data_sources
            .get(type_name)
            .map(|source| source.as_ref())
            .ok_or_else(|| {
                diag::error(
                    "Unknown data source",
                    format!("This provider has no data source {type_name:?}."),
                )
            })
    }

    fn resource(&self, type_name: &str) -> Result<&dyn Resource, Vec<Diagnostic>> {
        self.resources
            .get(type_name)
            .map(|resource| resource.as_ref())
            .ok_or_else(|| {
                vec![diag::error(
                    "Unknown resource type",
                    format!("This provider has no resource type {type_name:?}."),
                )]
            })
    }

    /// The client, or the diagnostic for a call before `ConfigureProvider`.
    fn client(&self) -> Result<Arc<Api>, Vec<Diagnostic>> {
        self.configured().ok_or_else(|| {
            vec![diag::error(
                "Provider not configured",
                "Terraform called the provider before configuring it.",
            )]
        })
    }

    /// Runs `work` unless Terraform stops the provider first.
    async fn unless_stopped<T>(
        &self,
        work: impl std::future::Future<Output = Result<T, Vec<Diagnostic>>>,
    ) -> Result<T, Vec<Diagnostic>> {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            result = work => result,
            _ = stop.wait_for(|stopped| *stopped) => Err(vec![diag::error(
                "Stopped",
                "Terraform stopped the provider (interrupted) before the call finished.",
            )]),
        }
    }

    fn configured(&self) -> Option<Arc<Api>> {
        // A panic elsewhere while holding the lock leaves a usable value.
        self.api.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The client for `settings`, reading `ca_file` when it is set.
    async fn connect(settings: config::Settings) -> Result<Api, Diagnostic> {
        let ca = match &settings.ca_file {
            Some(path) => {
                let shown = path.display().to_string();
                let text = tokio::fs::read(path).await.map_err(|e| {
                    diag::attribute_error(config::CA_FILE, "Cannot read the CA file", format!("{shown}: {e}"))
                })?;
                let certs = api::parse_ca_pem(&text)
                    .map_err(|e| diag::attribute_error(config::CA_FILE, "Unusable CA file", format!("{shown}: {e}")))?;
                Some(certs)
            }
            None => None,
        };
        Api::new(&settings.address, settings.token, ca).map_err(|error| match error {
            api::ApiError::InvalidAddress(..) => {
                diag::attribute_error(config::ADDRESS, "Invalid Hallpass address", error.to_string())
            }
            api::ApiError::CaFile(_) => diag::attribute_error(config::CA_FILE, "Unusable CA file", error.to_string()),
            other => diag::error("Cannot set up the Hallpass client", other.to_string()),
        })
    }
}

/// Nothing for the one ephemeral resource type, else the diagnostic.
fn ephemeral_type(type_name: &str) -> Result<(), Vec<Diagnostic>> {
    if type_name == ephemeral::TYPE_NAME {
        Ok(())
    } else {
        Err(vec![diag::error(
            "Unknown ephemeral resource type",
            format!("This provider has no ephemeral resource type {type_name:?}."),
        )])
    }
}

/// A time as the protocol's timestamp.
fn timestamp(at: chrono::DateTime<chrono::Utc>) -> crate::proto::tfplugin6::Timestamp {
    crate::proto::tfplugin6::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A config object, or the diagnostic for one the provider cannot read.
fn decode(value: Option<&crate::proto::tfplugin6::DynamicValue>) -> Result<Object, Vec<Diagnostic>> {
    Object::decode(value).map_err(|error| vec![diag::error("Unreadable configuration", error.to_string())])
}

#[tonic::async_trait]
impl Provider for HallpassProvider {
    async fn get_metadata(
        &self,
        _request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        Ok(Response::new(GetMetadataResponse {
            server_capabilities: Some(Self::capabilities()),
            diagnostics: Vec::new(),
            data_sources: self
                .data_sources
                .keys()
                .map(|name| TypeName {
                    type_name: (*name).to_string(),
                })
                .collect(),
            resources: self
                .resources
                .keys()
                .map(|name| TypeName {
                    type_name: (*name).to_string(),
                })
                .collect(),
            ephemeral_resources: vec![TypeName {
                type_name: ephemeral::TYPE_NAME.to_string(),
            }],
        }))
    }

    async fn get_provider_schema(
        &self,
        _request: Request<GetProviderSchemaRequest>,
    ) -> Result<Response<GetProviderSchemaResponse>, Status> {
        let data_source_schemas: HashMap<String, _> = self
            .data_sources
            .values()
            .map(|source| (source.type_name().to_string(), source.schema().to_proto()))
            .collect();
        let resource_schemas: HashMap<String, _> = self
            .resources
            .values()
            .map(|resource| (resource.type_name().to_string(), resource.schema().to_proto()))
            .collect();
        Ok(Response::new(GetProviderSchemaResponse {
            provider: Some(config::schema().to_proto()),
            resource_schemas,
            data_source_schemas,
            diagnostics: Vec::new(),
            server_capabilities: Some(Self::capabilities()),
            ephemeral_resource_schemas: HashMap::from([(
                ephemeral::TYPE_NAME.to_string(),
                ephemeral::schema().to_proto(),
            )]),
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<ValidateProviderConfigRequest>,
    ) -> Result<Response<ValidateProviderConfigResponse>, Status> {
        let diagnostics = match decode(request.get_ref().config.as_ref()) {
            Ok(config) => config::validate(&config),
            Err(diagnostics) => diagnostics,
        };
        Ok(Response::new(ValidateProviderConfigResponse { diagnostics }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<ValidateDataResourceConfigRequest>,
    ) -> Result<Response<ValidateDataResourceConfigResponse>, Status> {
        let request = request.into_inner();
        let diagnostics = match (self.data_source(&request.type_name), decode(request.config.as_ref())) {
            (Err(diagnostic), _) => vec![diagnostic],
            (_, Err(diagnostics)) => diagnostics,
            (Ok(source), Ok(config)) => source.validate(&config),
        };
        Ok(Response::new(ValidateDataResourceConfigResponse { diagnostics }))
    }

    async fn configure_provider(
        &self,
        request: Request<ConfigureProviderRequest>,
    ) -> Result<Response<ConfigureProviderResponse>, Status> {
        let request = request.into_inner();
        crate::log::debug(
            "configuring the provider",
            &[("terraform_version", &request.terraform_version)],
        );
        let settings =
            decode(request.config.as_ref()).and_then(|config| config::resolve(&config, |var| std::env::var(var).ok()));
        let diagnostics = match settings {
            Err(diagnostics) => diagnostics,
            Ok(settings) => match Self::connect(settings).await {
                Ok(api) => {
                    *self.api.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(api));
                    Vec::new()
                }
                Err(diagnostic) => vec![diagnostic],
            },
        };
        Ok(Response::new(ConfigureProviderResponse { diagnostics }))
    }

    async fn read_data_source(
        &self,
        request: Request<ReadDataSourceRequest>,
    ) -> Result<Response<ReadDataSourceResponse>, Status> {
        let request = request.into_inner();
        let failed = |diagnostics| {
            Ok(Response::new(ReadDataSourceResponse {
                state: None,
                diagnostics,
            }))
        };
        let source = match self.data_source(&request.type_name) {
            Ok(source) => source,
            Err(diagnostic) => return failed(vec![diagnostic]),
        };
        let config = match decode(request.config.as_ref()) {
            Ok(config) => config,
            Err(diagnostics) => return failed(diagnostics),
        };
        let api = match self.client() {
            Ok(api) => api,
            Err(diagnostics) => return failed(diagnostics),
        };
        let result = self.unless_stopped(source.read(&api, &config)).await;
        match result {
            Ok(state) => Ok(Response::new(ReadDataSourceResponse {
                state: Some(state),
                diagnostics: Vec::new(),
            })),
            Err(diagnostics) => failed(diagnostics),
        }
    }

    async fn validate_resource_config(
        &self,
        request: Request<ValidateResourceConfigRequest>,
    ) -> Result<Response<ValidateResourceConfigResponse>, Status> {
        let request = request.into_inner();
        let diagnostics = match (self.resource(&request.type_name), decode(request.config.as_ref())) {
            (Err(diagnostics), _) | (_, Err(diagnostics)) => diagnostics,
            (Ok(resource), Ok(config)) => resource.validate(&config),
        };
        Ok(Response::new(ValidateResourceConfigResponse { diagnostics }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<UpgradeResourceStateRequest>,
    ) -> Result<Response<UpgradeResourceStateResponse>, Status> {
        // Every resource is at schema version 0: the stored JSON is the
        // state as it is, and Terraform reads a JSON reply.
        let request = request.into_inner();
        let reply = match self.resource(&request.type_name) {
            Err(diagnostics) => UpgradeResourceStateResponse {
                upgraded_state: None,
                diagnostics,
            },
            Ok(_) => UpgradeResourceStateResponse {
                upgraded_state: Some(DynamicValue {
                    msgpack: Vec::new(),
                    json: request.raw_state.map(|raw| raw.json).unwrap_or_default(),
                }),
                diagnostics: Vec::new(),
            },
        };
        Ok(Response::new(reply))
    }

    async fn read_resource(
        &self,
        request: Request<ReadResourceRequest>,
    ) -> Result<Response<ReadResourceResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            let resource = self.resource(&request.type_name)?;
            let state = decode(request.current_state.as_ref())?;
            let api = self.client()?;
            self.unless_stopped(resource.read(&api, &state)).await
        }
        .await;
        Ok(Response::new(match result {
            Ok(state) => ReadResourceResponse {
                new_state: Some(to_dynamic(&state)),
                diagnostics: Vec::new(),
                private: request.private,
            },
            Err(diagnostics) => ReadResourceResponse {
                new_state: request.current_state,
                diagnostics,
                private: request.private,
            },
        }))
    }

    async fn plan_resource_change(
        &self,
        request: Request<PlanResourceChangeRequest>,
    ) -> Result<Response<PlanResourceChangeResponse>, Status> {
        let request = request.into_inner();
        let result = (|| {
            let resource = self.resource(&request.type_name)?;
            let prior = decode(request.prior_state.as_ref())?;
            let proposed = decode(request.proposed_new_state.as_ref())?;
            Ok(resource.plan(&prior, &proposed))
        })();
        let warnings = match (&result, self.resource(&request.type_name), self.configured()) {
            (Ok(planned), Ok(resource), Some(api)) if planned.state != rmpv::Value::Nil => {
                match Object::decode(Some(&to_dynamic(&planned.state))) {
                    Ok(planned) => resource.plan_warnings(&api, &planned).await,
                    Err(_) => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        Ok(Response::new(match result {
            Ok(planned) => PlanResourceChangeResponse {
                planned_state: Some(to_dynamic(&planned.state)),
                requires_replace: planned.requires_replace,
                planned_private: request.prior_private,
                diagnostics: warnings,
            },
            Err(diagnostics) => PlanResourceChangeResponse {
                planned_state: None,
                requires_replace: Vec::new(),
                planned_private: Vec::new(),
                diagnostics,
            },
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<ApplyResourceChangeRequest>,
    ) -> Result<Response<ApplyResourceChangeResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            let resource = self.resource(&request.type_name)?;
            let prior = decode(request.prior_state.as_ref())?;
            let planned = decode(request.planned_state.as_ref())?;
            // A delete comes with a null configuration, or none at all.
            let config = if planned.is_null() {
                Object::default()
            } else {
                decode(request.config.as_ref())?
            };
            // Computed values (a token's secret) may still be unknown in the
            // plan; what the configuration gives is known by now.
            if config.has_unknowns() {
                return Err(vec![diag::error(
                    "Unknown values at apply",
                    "Terraform sent a configuration with values still unknown.",
                )]);
            }
            let api = self.client()?;
            self.unless_stopped(resource.apply(&api, &prior, &planned, &config))
                .await
        }
        .await;
        Ok(Response::new(match result {
            Ok(state) => ApplyResourceChangeResponse {
                new_state: Some(to_dynamic(&state)),
                private: request.planned_private,
                diagnostics: Vec::new(),
            },
            // A failed create or update leaves the object as it was.
            Err(diagnostics) => ApplyResourceChangeResponse {
                new_state: request.prior_state,
                private: request.planned_private,
                diagnostics,
            },
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<ImportResourceStateRequest>,
    ) -> Result<Response<ImportResourceStateResponse>, Status> {
        let request = request.into_inner();
        let reply = match self
            .resource(&request.type_name)
            .and_then(|resource| resource.import(&request.id))
        {
            Err(diagnostics) => ImportResourceStateResponse {
                imported_resources: Vec::new(),
                diagnostics,
            },
            Ok(state) => ImportResourceStateResponse {
                imported_resources: vec![ImportedResource {
                    type_name: request.type_name.clone(),
                    state: Some(to_dynamic(&state)),
                    private: Vec::new(),
                }],
                diagnostics: Vec::new(),
            },
        };
        Ok(Response::new(reply))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        request: Request<ValidateEphemeralConfigRequest>,
    ) -> Result<Response<ValidateEphemeralConfigResponse>, Status> {
        let request = request.into_inner();
        let diagnostics = match (ephemeral_type(&request.type_name), decode(request.config.as_ref())) {
            (Err(diagnostics), _) | (_, Err(diagnostics)) => diagnostics,
            (Ok(()), Ok(config)) => ephemeral::validate(&config),
        };
        Ok(Response::new(ValidateEphemeralConfigResponse { diagnostics }))
    }

    async fn open_ephemeral_resource(
        &self,
        request: Request<OpenEphemeralRequest>,
    ) -> Result<Response<OpenEphemeralResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            ephemeral_type(&request.type_name)?;
            let config = decode(request.config.as_ref())?;
            let api = self.client()?;
            let mut stop = self.stop.subscribe();
            let stopped = async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            };
            ephemeral::open(&api, &config, stopped).await
        }
        .await;
        Ok(Response::new(match result {
            Ok(opened) => OpenEphemeralResponse {
                diagnostics: opened.warnings,
                renew_at: opened.renew_at.map(timestamp),
                result: Some(opened.result),
                private: Some(opened.private.to_bytes()),
            },
            Err(diagnostics) => OpenEphemeralResponse {
                diagnostics,
                renew_at: None,
                result: None,
                private: None,
            },
        }))
    }

    async fn renew_ephemeral_resource(
        &self,
        request: Request<RenewEphemeralRequest>,
    ) -> Result<Response<RenewEphemeralResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            ephemeral_type(&request.type_name)?;
            let private = ephemeral::Private::from_bytes(request.private.as_deref().unwrap_or_default())?;
            let api = self.client()?;
            ephemeral::renew(&api, &private).await
        }
        .await;
        Ok(Response::new(match result {
            Ok(renewed) => RenewEphemeralResponse {
                diagnostics: Vec::new(),
                renew_at: renewed.renew_at.map(timestamp),
                private: Some(renewed.private.to_bytes()),
            },
            Err(diagnostics) => RenewEphemeralResponse {
                diagnostics,
                renew_at: None,
                private: request.private,
            },
        }))
    }

    async fn close_ephemeral_resource(
        &self,
        request: Request<CloseEphemeralRequest>,
    ) -> Result<Response<CloseEphemeralResponse>, Status> {
        let request = request.into_inner();
        let result = async {
            ephemeral_type(&request.type_name)?;
            let private = ephemeral::Private::from_bytes(request.private.as_deref().unwrap_or_default())?;
            let api = self.client()?;
            ephemeral::close(&api, &private).await
        }
        .await;
        Ok(Response::new(CloseEphemeralResponse {
            diagnostics: result.err().unwrap_or_default(),
        }))
    }

    async fn stop_provider(
        &self,
        _request: Request<StopProviderRequest>,
    ) -> Result<Response<StopProviderResponse>, Status> {
        crate::log::info("Terraform asked the provider to stop its work", &[]);
        self.stop.send_replace(true);
        Ok(Response::new(StopProviderResponse { error: String::new() }))
    }
}
