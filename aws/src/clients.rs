//! One `aws-config` load, every client built from it.
//!
//! The HTTP client is hyper + rustls with ring (no second TLS stack), trusting the roots the
//! caller chooses ([`TrustRoots`]: the platform's for the command line, Amazon Trust
//! Services' for the Lambda functions, `AWS_CA_BUNDLE` over either). Region, credentials
//! and endpoints come from the SDK's default chains (credentials and region straight from
//! the environment when it has them, see [`load_sdk_config`]), which honour `AWS_ENDPOINT_URL`
//! and the per-service `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_SFN` natively;
//! [`Endpoints`] overrides them in code (the emulator tests do).

use crate::config::{AppConfig, ConfigError, EventStoreConfig, ReadModelsConfig, WorkflowConfig};
use crate::event_store::DynamoEventStore;
use crate::read_models::DynamoReadModels;
use crate::sfn::{SfnInspector, SfnWorkflowStarter};
use crate::trust::TrustRoots;
use aws_config::environment::{
    EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
};
use aws_config::meta::region::ProvideRegion;
use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_sdk_dynamodb::config::ProvideCredentials;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use std::sync::{Arc, OnceLock};

/// Per-service endpoint overrides (`None`: the SDK's own resolution).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    pub dynamodb: Option<String>,
    pub sfn: Option<String>,
}

/// The shared SDK configuration with our one HTTP client; credentials and region straight
/// from the environment when it has them, else from the SDK's default chains.
pub async fn load_sdk_config(roots: &TrustRoots) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(https_client(roots));
    from_environment_first(loader).await.load().await
}

/// What a loaded configuration lacks before any call can succeed.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error("no AWS region: set AWS_REGION (or AWS_PROFILE, for a profile with a region)")]
    NoRegion,
    #[error(
        "no AWS credentials ({0}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws sso login`"
    )]
    NoCredentials(String),
}

/// Checks that `sdk` has a region (unless `region_needed` is false: a state machine ARN
/// names its own) and that its credentials load, so a command line can say what to set in
/// one line instead of failing its first call with the SDK's dispatch error.
pub async fn check_access(sdk: &SdkConfig, region_needed: bool) -> Result<(), AccessError> {
    if region_needed && sdk.region().is_none() {
        return Err(AccessError::NoRegion);
    }
    let Some(provider) = sdk.credentials_provider() else {
        return Err(AccessError::NoCredentials("no credentials provider".into()));
    };
    match provider.provide_credentials().await {
        Ok(_) => Ok(()),
        Err(e) => Err(AccessError::NoCredentials(e.to_string())),
    }
}

/// The SDK's default chains take credentials and region from the environment first whenever
/// it has them (every Lambda function's does), but their load builds every other provider of
/// the chain as well: an STS client (web identity) and an IMDS client, two more SDK clients at
/// each cold start that such a process never uses. When the environment has them, they are
/// given to the loader directly: the same values, without building the chains.
async fn from_environment_first(mut loader: ConfigLoader) -> ConfigLoader {
    let credentials = EnvironmentVariableCredentialsProvider::new();
    if credentials.provide_credentials().await.is_ok() {
        loader = loader.credentials_provider(credentials);
    }
    if let Some(region) = EnvironmentVariableRegionProvider::new().region().await {
        loader = loader.region(region);
    }
    loader
}

/// hyper + rustls (ring), trusting `roots`.
pub fn https_client(roots: &TrustRoots) -> aws_sdk_dynamodb::config::SharedHttpClient {
    let store = match roots {
        TrustRoots::Platform => TrustStore::default(),
        TrustRoots::AmazonTrustServices => TrustStore::empty()
            .with_pem_certificate(crate::trust::AMAZON_TRUST_SERVICES_PEM.as_bytes()),
        TrustRoots::Pem(pem) => TrustStore::empty().with_pem_certificate(pem.to_vec()),
    };
    let builder = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    // `build` only fails for additional server names, which are not set here.
    match TlsContext::builder().with_trust_store(store).build() {
        Ok(context) => builder.tls_context(context).build_https(),
        Err(_) => builder.build_https(),
    }
}

/// The SDK clients, all from one [`SdkConfig`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AwsClients {
    pub sdk: SdkConfig,
    pub dynamodb: aws_sdk_dynamodb::Client,
    sfn_endpoint: Option<String>,
    sfn: Arc<OnceLock<aws_sdk_sfn::Client>>,
}

impl AwsClients {
    /// Loads the configuration from the environment (one load), trusting `AWS_CA_BUNDLE`'s
    /// certificates if it is set, else `roots`.
    pub async fn load(roots: TrustRoots) -> Result<Self, ConfigError> {
        Self::load_with(&Endpoints::default(), roots).await
    }

    pub async fn load_with(endpoints: &Endpoints, roots: TrustRoots) -> Result<Self, ConfigError> {
        let roots = TrustRoots::from_env_or(roots)?;
        Ok(Self::from_sdk_config(
            &load_sdk_config(&roots).await,
            endpoints,
        ))
    }

    pub fn from_sdk_config(sdk: &SdkConfig, endpoints: &Endpoints) -> Self {
        let mut ddb = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(url) = &endpoints.dynamodb {
            ddb = ddb.endpoint_url(url);
        }
        AwsClients {
            sdk: sdk.clone(),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(ddb.build()),
            sfn_endpoint: endpoints.sfn.clone(),
            sfn: Arc::default(),
        }
    }

    /// The Step Functions client, built on first use: the functions that never start or
    /// read executions (api, fulfilment, recorder) neither build it at init nor link it.
    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        self.sfn
            .get_or_init(|| {
                let mut conf = aws_sdk_sfn::config::Builder::from(&self.sdk);
                if let Some(url) = &self.sfn_endpoint {
                    conf = conf.endpoint_url(url);
                }
                aws_sdk_sfn::Client::from_conf(conf.build())
            })
            .clone()
    }

    /// The configured region (`None` when the SDK found none).
    pub fn region(&self) -> Option<String> {
        self.sdk.region().map(|r| r.to_string())
    }

    pub fn event_store(&self, config: &EventStoreConfig) -> DynamoEventStore {
        DynamoEventStore::new(
            self.dynamodb.clone(),
            &config.events_table,
            &config.idempotency_table,
        )
    }

    pub fn read_models(&self, config: &ReadModelsConfig) -> DynamoReadModels {
        DynamoReadModels::new(self.dynamodb.clone(), &config.table)
    }

    pub fn workflow_starter(&self, config: &WorkflowConfig) -> SfnWorkflowStarter {
        SfnWorkflowStarter::new(self.sfn(), &config.state_machine_arn)
    }

    pub fn inspector(&self, config: &WorkflowConfig) -> SfnInspector {
        SfnInspector::new(self.sfn(), &config.state_machine_arn)
    }

    /// Needs `EVENTS_TABLE` and `IDEMPOTENCY_TABLE`.
    pub fn event_store_from_env(&self) -> Result<DynamoEventStore, ConfigError> {
        Ok(self.event_store(&EventStoreConfig::from_env()?))
    }

    /// Needs `READ_MODELS_TABLE`.
    pub fn read_models_from_env(&self) -> Result<DynamoReadModels, ConfigError> {
        Ok(self.read_models(&ReadModelsConfig::from_env()?))
    }

    /// Needs `STATE_MACHINE_ARN`.
    pub fn workflow_starter_from_env(&self) -> Result<SfnWorkflowStarter, ConfigError> {
        Ok(self.workflow_starter(&WorkflowConfig::from_env()?))
    }

    /// Needs `STATE_MACHINE_ARN`.
    pub fn inspector_from_env(&self) -> Result<SfnInspector, ConfigError> {
        Ok(self.inspector(&WorkflowConfig::from_env()?))
    }
}

/// The three ports a Lambda binary wires, from one configuration load.
#[derive(Debug, Clone)]
pub struct AwsPorts {
    pub clients: AwsClients,
    pub event_store: DynamoEventStore,
    pub read_models: DynamoReadModels,
    pub starter: SfnWorkflowStarter,
}

impl AwsPorts {
    /// Needs all four variables (every missing one is named). A binary that needs fewer
    /// uses [`AwsClients::load`] and the `*_from_env` constructors instead. Trusts Amazon
    /// Trust Services' roots (or `AWS_CA_BUNDLE`'s), as a Lambda function calling AWS does.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = AppConfig::from_env()?;
        let clients = AwsClients::load(TrustRoots::AmazonTrustServices).await?;
        Ok(Self::new(clients, &config))
    }

    pub fn new(clients: AwsClients, config: &AppConfig) -> Self {
        AwsPorts {
            event_store: clients.event_store(&config.event_store),
            read_models: clients.read_models(&config.read_models),
            starter: clients.workflow_starter(&config.workflow),
            clients,
        }
    }
}
