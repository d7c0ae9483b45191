"""{{name}}: a classifier for the orchestrator, in Python.

It is asked about every failed attempt (after the classifiers given before
it) and either decides its category or has no opinion, so the next one
decides. Build it with componentize-py (pip install componentize-py):

    componentize-py -d wit -w classifier componentize app -o {{name}}.wasm
    orchestrator plugins inspect {{name}}.wasm
"""

from wit_world import exports
from wit_world.imports import types


class Metadata(exports.Metadata):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            description="Classifies failures of ... (say what it knows)",
        )


class Classify(exports.Classify):
    def classify(self, report: types.FailureReport) -> types.Verdict:
        failure = report.failure
        if failure is None:
            # No answer from the platform: the host's rules know timeouts
            # and connection errors.
            return types.Verdict_NoOpinion()
        # An example rule: replace it with what your platform says.
        if failure.http_status == 429:
            return types.Verdict_Decided(
                types.Classification(
                    category=types.Category.RETRYABLE,
                    reason="the account is rate limited",
                    retry_after_ms=failure.retry_after_ms,
                    scope=types.RetryScope.ACCOUNT,
                )
            )
        return types.Verdict_NoOpinion()
