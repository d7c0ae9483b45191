"""{{name}}: a poster for the orchestrator, in Python.

Each call is one attempt of one job: send the job's payload to the
account's platform and return what the platform made, or raise why not. It
never holds a secret: the host adds the account's credential to requests
for the account's own host, logs in or refreshes when `describe_auth` says
how, and cuts secrets out of the answers.

As written it posts `payload.text` to a Mastodon-style
`POST {base-url}/api/v1/statuses`; change `post` for your platform. Build
it with componentize-py (pip install componentize-py):

    componentize-py -d wit -w poster componentize app -o {{name}}.wasm
    orchestrator plugins inspect {{name}}.wasm
"""

import json
from urllib.parse import urlsplit

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import auth
from wit_world.imports import orchestrator_plugin_types as types
from wit_world.imports import outgoing_handler, streams
from wit_world.imports import wasi_http_types as http

MAX_RESPONSE_BYTES = 64 * 1024


class Metadata(exports.Metadata):
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name="{{name}}",
            version="0.1.0",
            description="Publishes posts to ... (say where)",
        )


class Auth(exports.Auth):
    def describe_auth(self) -> auth.AuthSupport:
        # Static tokens (auth = "bearer") and webhooks ("url-secret") need
        # nothing here; a platform with a login describes it (see
        # session-login and oauth2-refresh in wit/plugin.wit).
        return auth.AuthSupport(
            session=None, oauth2=None, token_lifetime_seconds=0, expired_codes=[]
        )


class Limits(exports.Limits):
    def rate_budgets(self):
        # The rate limits your platform publishes, as defaults for the
        # accounts this poster serves (an account's own `rate` wins), e.g.
        # limits.RateBudget(count=300, per_ms=300_000, scope=limits.BudgetScope.ACCOUNT).
        return []


def failure(message, status=None, code=None, retry_after_ms=None):
    return Err(
        types.PostFailure(
            message=message[:1024],
            http_status=status,
            error_code=code,
            retry_after_ms=retry_after_ms,
            rate_limit_reset=None,
            transport_error=None,
        )
    )


def send(method, url, headers, body):
    """One blocking request; (status, headers, body) or a raised failure."""
    parts = urlsplit(url)
    request = http.OutgoingRequest(
        http.Fields.from_list([(k, v.encode()) for k, v in headers])
    )
    request.set_method(method)
    request.set_scheme(http.Scheme_Https() if parts.scheme == "https" else http.Scheme_Http())
    request.set_authority(parts.netloc)
    request.set_path_with_query(parts.path + ("?" + parts.query if parts.query else ""))
    outgoing = request.body()
    try:
        pending = outgoing_handler.handle(request, None)
    except Err as e:
        raise failure(f"the host refused the request: {e.value}")
    # The stream is dropped (the `with` ends) before the body is finished.
    with outgoing.write() as stream:
        for i in range(0, len(body), 4096):
            stream.blocking_write_and_flush(body[i : i + 4096])
    http.OutgoingBody.finish(outgoing, None)
    pending.subscribe().block()
    answer = pending.get()
    if answer is None or isinstance(answer.value, Err) or isinstance(answer.value.value, Err):
        raise failure("no answer from the platform")
    response = answer.value.value
    status = response.status()
    found = response.headers().entries()
    incoming = response.consume()
    reading = incoming.stream()
    data = b""
    while len(data) < MAX_RESPONSE_BYTES:
        try:
            data += reading.blocking_read(MAX_RESPONSE_BYTES - len(data))
        except Err as e:
            if isinstance(e.value, streams.StreamError_Closed):
                break
            raise failure("the answer was cut off")
    return status, found, data


class Post(exports.Post):
    def post(self, job: types.JobContext) -> types.Receipt:
        payload = json.loads(job.payload)
        text = payload.get("text")
        if not isinstance(text, str):
            raise failure("the payload has no `text`")
        url = job.account.base_url.rstrip("/") + "/api/v1/statuses"
        status, _headers, body = send(
            http.Method_Post(),
            url,
            [("content-type", "application/json"), ("idempotency-key", job.idempotency_key)],
            json.dumps({"status": text}).encode(),
        )
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        if 200 <= status < 300 and isinstance(answer.get("id"), str):
            return types.Receipt(remote_id=answer["id"], url=answer.get("url"))
        raise failure(body.decode(errors="replace"), status=status, code=answer.get("error"))
