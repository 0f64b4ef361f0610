//! An OpenFeature provider for the `open-feature` crate: Tower's flags evaluated locally by a
//! [`FlagClient`], so a Rust service writes
//!
//! ```no_run
//! # async fn demo(flags: flagtower_core::client::FlagClient) {
//! use open_feature::{EvaluationContext, OpenFeature};
//!
//! let mut api = OpenFeature::singleton_mut().await;
//! api.set_provider(flagtower_adapters::openfeature::TowerProvider::new(flags)).await;
//! drop(api);
//! let client = OpenFeature::singleton().await.create_client();
//! let ctx = EvaluationContext::default().with_targeting_key("user-42");
//! let on = client.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
//! # }
//! ```
//!
//! Booleans only (Tower's flags are on or off); the reasons, variants (`on`/`off`) and metadata
//! (`flagId`, `appId`, `revision`, `circuitStatus`) are those of Tower's OFREP answers. The
//! provider is `NotReady` until the client holds a ruleset.

use async_trait::async_trait;
use flagtower_core::client::FlagClient;
use flagtower_core::eval::{EvalError, Reason};
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationError, EvaluationErrorCode, EvaluationReason, EvaluationResult,
    FlagMetadata, StructValue,
};

/// Tower's flags for OpenFeature.
#[derive(Debug)]
pub struct TowerProvider {
    client: FlagClient,
    metadata: ProviderMetadata,
}

impl TowerProvider {
    /// A provider answering from `client`.
    pub fn new(client: FlagClient) -> Self {
        Self { client, metadata: ProviderMetadata::new("Tower") }
    }
}

fn error(code: EvaluationErrorCode, message: impl Into<String>) -> EvaluationError {
    EvaluationError { code, message: Some(message.into()) }
}

fn only_booleans<T>() -> EvaluationResult<ResolutionDetails<T>> {
    Err(error(EvaluationErrorCode::TypeMismatch, "Tower's flags are booleans"))
}

#[async_trait]
impl FeatureProvider for TowerProvider {
    fn status(&self) -> ProviderStatus {
        if self.client.ready() { ProviderStatus::Ready } else { ProviderStatus::NotReady }
    }

    fn metadata(&self) -> &ProviderMetadata {
        &self.metadata
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        let Some(index) = self.client.snapshot() else {
            return Err(error(EvaluationErrorCode::ProviderNotReady, "no ruleset yet"));
        };
        let Some(rule) = index.get(flag_key) else {
            return Err(error(
                EvaluationErrorCode::FlagNotFound,
                format!("app {} has no flag titled {flag_key:?}", index.app_id),
            ));
        };
        let e =
            rule.evaluate(ctx.targeting_key.as_deref(), self.client.bucketing()).map_err(|e| {
                match e {
                    EvalError::TargetingKeyMissing => {
                        error(EvaluationErrorCode::TargetingKeyMissing, e.to_string())
                    }
                }
            })?;
        let reason = match e.reason {
            Reason::Disabled => EvaluationReason::Disabled,
            Reason::TargetingMatch => EvaluationReason::TargetingMatch,
            Reason::Static => EvaluationReason::Static,
            Reason::Split => EvaluationReason::Split,
        };
        let metadata = FlagMetadata::default()
            .with_value("flagId", rule.id.get())
            .with_value("appId", index.app_id.get())
            .with_value("revision", index.revision.get() as i64)
            .with_value("circuitStatus", rule.state.circuit_status());
        Ok(ResolutionDetails {
            value: e.enabled,
            variant: Some(if e.enabled { "on" } else { "off" }.to_owned()),
            reason: Some(reason),
            flag_metadata: Some(metadata),
        })
    }

    async fn resolve_int_value(
        &self,
        _flag_key: &str,
        _ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        only_booleans()
    }

    async fn resolve_float_value(
        &self,
        _flag_key: &str,
        _ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        only_booleans()
    }

    async fn resolve_string_value(
        &self,
        _flag_key: &str,
        _ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        only_booleans()
    }

    async fn resolve_struct_value(
        &self,
        _flag_key: &str,
        _ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        only_booleans()
    }
}
