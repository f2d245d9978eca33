//! The AWS configuration of the command line's `--aws` forms: the platform's trust roots
//! (or `AWS_CA_BUNDLE`), checked before the first call, so that a missing region or missing
//! credentials are one line saying what to set.

use orders_aws::clients::{check_access, load_sdk_config};
use orders_aws::{AwsClients, Endpoints, TrustRoots};

/// The loaded configuration; `region_needed` is false where an ARN names the region.
pub(crate) async fn sdk_config(region_needed: bool) -> anyhow::Result<aws_config::SdkConfig> {
    let roots = TrustRoots::from_env_or(TrustRoots::Platform)?;
    let sdk = load_sdk_config(&roots).await;
    check_access(&sdk, region_needed).await?;
    Ok(sdk)
}

pub(crate) async fn clients() -> anyhow::Result<AwsClients> {
    Ok(AwsClients::from_sdk_config(
        &sdk_config(true).await?,
        &Endpoints::default(),
    ))
}
