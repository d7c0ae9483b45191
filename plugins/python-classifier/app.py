"""A classifier written in Python: it reads Mastodon's own error text.

It shows that a plugin in another language loads into the same host with
no change to the host. Build it with componentize-py:

    componentize-py -d ../../wit -w classifier componentize app -o python-classifier.wasm

It decides what the words say and leaves the rest to the next classifier.
"""

from wit_world import exports
from wit_world.imports import types
from wit_world.imports.log import Level, log

# Phrases in Mastodon's `error` texts, what they mean for a retry, and who
# waits out the platform's retry-after.
RULES = [
    ("account is suspended", types.Category.NON_RETRYABLE,
     "the account is suspended; a retry will not help", types.RetryScope.JOB),
    ("login is currently disabled", types.Category.NON_RETRYABLE,
     "the account's login is disabled; a retry will not help", types.RetryScope.JOB),
    ("validation failed", types.Category.NON_RETRYABLE,
     "the platform rejected the content; edit the payload", types.RetryScope.JOB),
    ("too many requests", types.Category.RETRYABLE,
     "rate limited; the account retries after the reset", types.RetryScope.ACCOUNT),
]


class Metadata(exports.Metadata):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="python-classifier",
            version="0.1.0",
            description="Classifies by the words of Mastodon's error text (Python)",
        )


class Classify(exports.Classify):
    def classify(self, report: types.FailureReport) -> types.Verdict:
        failure = report.failure
        if failure is None or failure.error_code is None:
            return types.Verdict_NoOpinion()
        said = failure.error_code.lower()
        for phrase, category, reason, scope in RULES:
            if phrase in said:
                log(Level.DEBUG, f"job {report.job.job_id}: matched '{phrase}'")
                return types.Verdict_Decided(
                    types.Classification(
                        category=category,
                        reason=f"{reason} (platform said: {failure.error_code})",
                        retry_after_ms=failure.retry_after_ms,
                        scope=scope,
                    )
                )
        return types.Verdict_NoOpinion()
