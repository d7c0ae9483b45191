//! Conversions between the generated bindings and the plain contract types.

use orchestrator_contract as contract;
use orchestrator_world::types as wit;
use orchestrator_world::v0_3;

pub(crate) fn plugin_info(info: wit::PluginInfo) -> contract::PluginInfo {
    contract::PluginInfo {
        name: info.name,
        version: info.version,
        description: info.description,
    }
}

pub(crate) fn job(job: &contract::JobContext) -> wit::JobContext {
    wit::JobContext {
        job_id: job.job_id.clone(),
        account: wit::Account {
            name: job.account.name.clone(),
            base_url: job.account.base_url.clone(),
            settings: job.account.settings.clone(),
        },
        payload: job.payload.clone(),
        attempt: job.attempt,
        pass: job.pass,
        idempotency_key: job.idempotency_key.clone(),
    }
}

pub(crate) fn receipt(r: wit::Receipt) -> contract::Receipt {
    contract::Receipt {
        remote_id: r.remote_id,
        url: r.url,
    }
}

pub(crate) fn failure_from_wit(f: wit::PostFailure) -> contract::PostFailure {
    contract::PostFailure {
        message: f.message,
        http_status: f.http_status,
        error_code: f.error_code,
        retry_after_ms: f.retry_after_ms,
        rate_limit_reset: f.rate_limit_reset,
        transport_error: f.transport_error,
    }
}

fn failure_to_wit(f: &contract::PostFailure) -> wit::PostFailure {
    wit::PostFailure {
        message: f.message.clone(),
        http_status: f.http_status,
        error_code: f.error_code.clone(),
        retry_after_ms: f.retry_after_ms,
        rate_limit_reset: f.rate_limit_reset.clone(),
        transport_error: f.transport_error.clone(),
    }
}

fn fault_to_wit(f: &contract::HostFault) -> wit::HostFault {
    match f {
        contract::HostFault::Trap(m) => wit::HostFault::Trap(m.clone()),
        contract::HostFault::Timeout(ms) => wit::HostFault::Timeout(*ms),
        contract::HostFault::OutOfMemory(m) => wit::HostFault::OutOfMemory(m.clone()),
        contract::HostFault::DeniedRequest(h) => wit::HostFault::DeniedRequest(h.clone()),
        contract::HostFault::ConnectionError(m) => wit::HostFault::ConnectionError(m.clone()),
    }
}

pub(crate) fn report(r: &contract::FailureReport) -> wit::FailureReport {
    wit::FailureReport {
        job: job(&r.job),
        failure: r.failure.as_ref().map(failure_to_wit),
        fault: r.fault.as_ref().map(fault_to_wit),
    }
}

pub(crate) fn verdict(v: wit::Verdict) -> contract::Verdict {
    match v {
        wit::Verdict::NoOpinion => contract::Verdict::NoOpinion,
        wit::Verdict::Decided(c) => contract::Verdict::Decided(contract::Classification {
            category: match c.category {
                wit::Category::Retryable => contract::Category::Retryable,
                wit::Category::Infrastructure => contract::Category::Infrastructure,
                wit::Category::NonRetryable => contract::Category::NonRetryable,
                wit::Category::Unknown => contract::Category::Unknown,
            },
            reason: c.reason,
            retry_after_ms: c.retry_after_ms,
            scope: match c.scope {
                wit::RetryScope::Job => contract::RetryScope::Job,
                wit::RetryScope::Account => contract::RetryScope::Account,
                wit::RetryScope::Platform => contract::RetryScope::Platform,
            },
        }),
    }
}

/// A poster's `auth-support` as the contract's type; the same record in
/// every version that has it, generated once per version.
macro_rules! auth_support {
    ($name:ident, $version:ident) => {
        pub(crate) fn $name(
            a: $version::poster::exports::orchestrator::plugin::auth::AuthSupport,
        ) -> contract::AuthSupport {
            contract::AuthSupport {
                session: a.session.map(|s| contract::SessionLogin {
                    login_path: s.login_path,
                    identifier_field: s.identifier_field,
                    password_field: s.password_field,
                    refresh_path: s.refresh_path,
                    access_token_field: s.access_token_field,
                    refresh_token_field: s.refresh_token_field,
                }),
                oauth2: a.oauth2.map(|o| contract::OAuth2Refresh {
                    token_path: o.token_path,
                }),
                token_lifetime_secs: a.token_lifetime_seconds,
                expired_codes: a.expired_codes,
            }
        }
    };
}

auth_support!(auth_support, orchestrator_world);

/// A poster's declared rate budgets as the contract's type (0.4.0 on).
pub(crate) fn rate_budgets(
    budgets: Vec<orchestrator_world::poster::exports::orchestrator::plugin::limits::RateBudget>,
) -> Vec<contract::RateBudget> {
    use orchestrator_world::poster::exports::orchestrator::plugin::limits::BudgetScope;
    budgets
        .into_iter()
        .map(|b| contract::RateBudget {
            count: b.count,
            per_ms: b.per_ms,
            platform: matches!(b.scope, BudgetScope::Platform),
        })
        .collect()
}
auth_support!(auth_support_v0_3, v0_3);
